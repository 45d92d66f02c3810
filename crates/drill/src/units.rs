//! Times, durations and sizes written for reports: RFC 3339 for machines, short forms for
//! people.

use zaibei_format::Timestamp;

/// A timestamp as RFC 3339 in UTC with nanoseconds (`2026-03-01T10:00:00.000000000Z`), the
/// form `zaibei snapshots --json` uses. Out-of-range values give `"invalid time"`.
pub fn rfc3339(t: Timestamp) -> String {
    match jiff_of(t) {
        Some(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
        None => "invalid time".into(),
    }
}

/// A timestamp as `YYYY-MM-DD HH:MM:SS UTC`, for people.
pub fn short_time(t: Timestamp) -> String {
    match jiff_of(t) {
        Some(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "invalid time".into(),
    }
}

/// The RFC 3339 form of [`rfc3339`] shortened for people; the text itself when it does not
/// parse.
pub fn short_time_text(text: &str) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => text.to_owned(),
    }
}

/// A timestamp as a compact name part: `20260301T100000.123Z`.
pub fn compact(t: Timestamp) -> String {
    match jiff_of(t) {
        Some(ts) => ts.strftime("%Y%m%dT%H%M%S%.3fZ").to_string(),
        None => format!("{}s", t.secs),
    }
}

/// Parses an RFC 3339 time written by [`rfc3339`] back into seconds since 1970.
pub fn parse_seconds(text: &str) -> Option<f64> {
    let ts = text.parse::<jiff::Timestamp>().ok()?;
    Some(ts.as_second() as f64 + f64::from(ts.subsec_nanosecond()) / 1e9)
}

fn jiff_of(t: Timestamp) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(t.secs, i32::try_from(t.nanos).ok()?).ok()
}

/// A duration in seconds for people: `4.2 ms`, `0.42 s`, `12.3 s`, `5 min 03 s`, `2 h 05 min`,
/// `3 d 04 h`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "—".into();
    }
    let s = seconds.max(0.0);
    if s < 0.1 {
        return format!("{:.1} ms", s * 1000.0);
    }
    if s < 10.0 {
        return format!("{s:.2} s");
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let whole = s.round() as u64;
    let (d, h, m, sec) = (
        whole / 86_400,
        whole / 3600 % 24,
        whole / 60 % 60,
        whole % 60,
    );
    if d > 0 {
        format!("{d} d {h:02} h")
    } else if h > 0 {
        format!("{h} h {m:02} min")
    } else {
        format!("{m} min {sec:02} s")
    }
}

/// Bytes in binary units: `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// A rate in bytes per second: `120.00 MiB/s`.
pub fn rate(bytes_per_second: f64) -> String {
    if !bytes_per_second.is_finite() || bytes_per_second <= 0.0 {
        return "—".into();
    }
    format!("{}/s", bytes(bytes_per_second as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_never_panic() {
        let t = Timestamp {
            secs: 1_772_359_200,
            nanos: 5,
        };
        let text = rfc3339(t);
        assert_eq!(text, "2026-03-01T10:00:00.000000005Z");
        assert_eq!(parse_seconds(&text), Some(1_772_359_200.000_000_005));
        assert_eq!(short_time(t), "2026-03-01 10:00:00 UTC");
        assert_eq!(short_time_text(&text), "2026-03-01 10:00:00 UTC");
        assert_eq!(short_time_text("garbage"), "garbage");
        assert_eq!(compact(t), "20260301T100000.000Z");
        let before = Timestamp {
            secs: -1,
            nanos: 999_999_999,
        };
        assert_eq!(rfc3339(before), "1969-12-31T23:59:59.999999999Z");
        let _ = rfc3339(Timestamp {
            secs: i64::MAX,
            nanos: 999_999_999,
        });
        let _ = compact(Timestamp {
            secs: i64::MIN,
            nanos: 0,
        });
    }

    #[test]
    fn durations_and_sizes_for_people() {
        assert_eq!(duration(0.4249), "0.42 s");
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(303.0), "5 min 03 s");
        assert_eq!(duration(7500.0), "2 h 05 min");
        assert_eq!(duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3 d 04 h");
        assert_eq!(duration(-5.0), "0.0 ms");
        assert_eq!(duration(0.0042), "4.2 ms");
        assert_eq!(duration(f64::NAN), "—");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536 << 20), "1.50 GiB");
        assert_eq!(rate(0.0), "—");
        assert_eq!(rate(2.0 * 1048576.0), "2.00 MiB/s");
    }
}
