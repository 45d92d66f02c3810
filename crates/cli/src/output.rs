//! Formatting for people and for scripts.

use std::io::{BufWriter, StdoutLock, Write};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::Serialize;
use zaibei_format::Timestamp;

/// Bytes in binary units: `1.5 GiB`.
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

/// A timestamp as RFC 3339 in UTC with nanoseconds, for any value (years before 1970 or after
/// 9999 included).
pub fn time(t: Timestamp) -> String {
    let (date, clock) = civil(t.secs);
    format!("{date}T{clock}.{:09}Z", t.nanos.min(999_999_999))
}

/// A timestamp as `YYYY-MM-DD HH:MM:SS` (UTC), for any value.
pub fn time_short(t: Timestamp) -> String {
    let (date, clock) = civil(t.secs);
    format!("{date} {clock}")
}

/// Date and time of day of a count of seconds since 1970 (days-from-civil, inverted).
fn civil(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+}")
    };
    (
        format!("{year}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60),
    )
}

/// Seconds between two timestamps.
pub fn seconds_between(a: Timestamp, b: Timestamp) -> f64 {
    a.seconds_until(b).max(0.0)
}

/// Seconds since a point in time.
pub fn seconds_since(start: SystemTime) -> f64 {
    start.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Path bytes for display (invalid UTF-8 shown as U+FFFD).
pub fn path(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Writes one line to standard output; a closed standard output is an error, never a panic.
pub fn say_fmt(args: std::fmt::Arguments<'_>) -> Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_fmt(args)
        .and_then(|()| o.write_all(b"\n"))
        .context("writing to standard output")
}

/// Like `println!`, but returns the error of a closed standard output (use with `?`).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say_fmt(format_args!($($arg)*))
    };
}

/// Prints one JSON line to standard output.
pub fn json_line<T: Serialize>(value: &T) -> Result<()> {
    let mut out = Out::new();
    out.json(value)?;
    out.flush()
}

/// Prints pretty JSON to standard output.
pub fn json_pretty<T: Serialize>(value: &T) -> Result<()> {
    let mut out = Out::new();
    out.json_pretty(value)?;
    out.flush()
}

/// The hex form of bytes that are not valid UTF-8 (`None` when they are).
pub fn hex_if_not_utf8(b: &[u8]) -> Option<String> {
    std::str::from_utf8(b).is_err().then(|| hex::encode(b))
}

/// Standard output, buffered; write errors (a closed pipe) are errors, never panics.
pub struct Out(BufWriter<StdoutLock<'static>>);

impl Out {
    /// Locks standard output.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Out(BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout().lock(),
        ))
    }

    /// Writes one line.
    pub fn line(&mut self, s: &str) -> Result<()> {
        writeln!(self.0, "{s}").context("writing to standard output")
    }

    /// Writes one JSON object on one line.
    pub fn json<T: Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer(&mut self.0, value).context("writing JSON output")?;
        self.line("")
    }

    /// Writes pretty JSON.
    pub fn json_pretty<T: Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer_pretty(&mut self.0, value).context("writing JSON output")?;
        self.line("")
    }

    /// Writes raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.0.write_all(b).context("writing to standard output")
    }

    /// Flushes.
    pub fn flush(&mut self) -> Result<()> {
        self.0.flush().context("writing to standard output")
    }
}

/// `error` prefixed with the object `name` unless the error already names it.
pub fn naming(name: &str, error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    if text.contains(name) {
        text
    } else {
        format!("{name}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_1970_and_after_9999_do_not_panic() {
        let t = |secs, nanos| time(Timestamp { secs, nanos });
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(t(-1, 5), "1969-12-31T23:59:59.000000005Z");
        assert_eq!(t(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(t(253_402_300_800, 0), "+10000-01-01T00:00:00.000000000Z");
        let _ = t(i64::MIN, 0);
        let _ = t(i64::MAX, 999_999_999);
    }
}
