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

    /// Converts to [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::new(self.secs as u64, self.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.secs.unsigned_abs())
                + Duration::from_nanos(u64::from(self.nanos))
        }
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
            assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        }
    }
}
