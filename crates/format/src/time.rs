use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time with nanosecond precision, before or after 1970.
///
/// Encoded as the CBOR array `[seconds, nanoseconds]` with seconds a signed integer and
/// nanoseconds in `0..1_000_000_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub secs: i64,
    /// Nanoseconds within the second, always below one billion.
    pub nanos: u32,
}

impl Timestamp {
    /// Builds a timestamp; `None` if `nanos` is not below one billion.
    pub fn new(secs: i64, nanos: u32) -> Option<Self> {
        (nanos < 1_000_000_000).then_some(Timestamp { secs, nanos })
    }

    /// The current time of this machine.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a [`SystemTime`].
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    Timestamp {
                        secs: -(d.as_secs() as i64),
                        nanos: 0,
                    }
                } else {
                    Timestamp {
                        secs: -(d.as_secs() as i64) - 1,
                        nanos: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }

    /// Converts to [`SystemTime`]; `None` when the platform cannot represent the time.
    pub fn to_system_time(self) -> Option<SystemTime> {
        if self.secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(self.secs as u64, self.nanos))
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(self.secs.unsigned_abs()))?
                .checked_add(Duration::from_nanos(u64::from(self.nanos)))
        }
    }

    /// Seconds from `self` to `later` (negative when `later` is earlier), without overflow.
    pub fn seconds_until(self, later: Timestamp) -> f64 {
        (later.secs as f64 - self.secs as f64)
            + (f64::from(later.nanos) - f64::from(self.nanos)) / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_round_trip_before_and_after_epoch() {
        for (s, n) in [
            (0i64, 0u32),
            (1, 5),
            (-1, 999_999_999),
            (-86400 * 365 * 50, 123),
            (1_700_000_000, 1),
        ] {
            let t = Timestamp::new(s, n).unwrap_or_default();
            assert_eq!(t.to_system_time().map(Timestamp::from_system_time), Some(t));
        }
        // Extreme values from a hostile object never panic.
        let _ = Timestamp {
            secs: i64::MAX,
            nanos: 999_999_999,
        }
        .to_system_time();
        let _ = Timestamp {
            secs: i64::MIN,
            nanos: 999_999_999,
        }
        .to_system_time();
    }
}
