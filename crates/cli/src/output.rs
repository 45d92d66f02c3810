//! Formatting for people and for scripts.

use std::time::SystemTime;

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

/// A timestamp as RFC 3339 in UTC with nanoseconds.
pub fn time(t: Timestamp) -> String {
    humantime::format_rfc3339_nanos(t.to_system_time()).to_string()
}

/// A timestamp as RFC 3339 in UTC to the second.
pub fn time_short(t: Timestamp) -> String {
    humantime::format_rfc3339_seconds(t.to_system_time()).to_string()
}

/// Seconds between two timestamps.
pub fn seconds_between(a: Timestamp, b: Timestamp) -> f64 {
    b.to_system_time()
        .duration_since(a.to_system_time())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since a point in time.
pub fn seconds_since(start: SystemTime) -> f64 {
    start.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Path bytes for display (invalid UTF-8 shown as U+FFFD).
pub fn path(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Prints one JSON line to standard output.
pub fn json_line<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("zaibei: cannot encode JSON output: {e}"),
    }
}

/// Prints pretty JSON to standard output.
pub fn json_pretty<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("zaibei: cannot encode JSON output: {e}"),
    }
}
