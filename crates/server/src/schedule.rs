//! Cron schedules of backup policies: `sec min hour day month weekday` or the usual five
//! fields (then at second 0), evaluated in UTC.

use chrono::{TimeZone, Utc};
use croner::Cron;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule(Cron);

impl Schedule {
    /// Parses `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        if text.len() > 200 {
            return Err("the schedule is longer than 200 characters".into());
        }
        Cron::new(text)
            .with_seconds_optional()
            .parse()
            .map(Schedule)
            .map_err(|e| format!("invalid schedule {text:?}: {e}"))
    }

    /// The first time strictly after `after_ms` (Unix ms) that the schedule fires.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after = Utc.timestamp_millis_opt(after_ms).single()?;
        self.0
            .find_next_occurrence(&after, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        // 2026-01-01T00:01:00Z → next multiple of five minutes.
        let t = 1_767_225_660_000;
        assert_eq!(s.next_after(t), Some(1_767_225_900_000));
        let s = Schedule::parse("*/2 * * * * *").unwrap();
        assert_eq!(s.next_after(t), Some(t + 2000));
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("nonsense").is_err());
    }
}
