//! The drill's clock: started before the repository is opened (deriving the key from the
//! password is part of a real recovery), read at the end of each phase.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zaibei_format::Timestamp;

/// A phase of a drill, in the order they run. Together they make the measured RTO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reaching the store, reading the password, deriving the key, reading the config.
    Open,
    /// Loading the index.
    Index,
    /// Listing the snapshots and choosing the one to restore.
    Select,
    /// Restoring the snapshot into scratch space.
    Restore,
    /// Reading every restored file back and comparing it with the snapshot.
    Verify,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 5] = [
        Phase::Open,
        Phase::Index,
        Phase::Select,
        Phase::Restore,
        Phase::Verify,
    ];

    /// A stable name (`open`, `index`, `select`, `restore`, `verify`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Open => "open",
            Phase::Index => "index",
            Phase::Select => "select",
            Phase::Restore => "restore",
            Phase::Verify => "verify",
        }
    }

    /// The phase for people, in Chinese and English.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Open => "打开仓库/派生密钥 open & key",
            Phase::Index => "加载索引 index",
            Phase::Select => "选择快照 select",
            Phase::Restore => "恢复 restore",
            Phase::Verify => "校验 verify",
        }
    }
}

/// The duration of one phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    /// Which phase.
    pub phase: Phase,
    /// How long it took, in seconds.
    pub seconds: f64,
}

/// Measures a drill: one start, then a lap at the end of each phase.
#[derive(Debug, Clone)]
pub struct Stopwatch {
    started: Instant,
    started_at: Timestamp,
    last: Instant,
    laps: Vec<PhaseTime>,
}

impl Stopwatch {
    /// Starts the clock now. Call it first thing in the command.
    pub fn start() -> Self {
        let now = Instant::now();
        Stopwatch {
            started: now,
            started_at: Timestamp::now(),
            last: now,
            laps: Vec::new(),
        }
    }

    /// The wall-clock time the drill started.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// Ends `phase` now: records the time since the previous lap (or the start).
    pub fn lap(&mut self, phase: Phase) -> Duration {
        let now = Instant::now();
        let d = now.duration_since(self.last);
        self.last = now;
        self.laps.push(PhaseTime {
            phase,
            seconds: d.as_secs_f64(),
        });
        d
    }

    /// Runs `f` with the clock stopped: the time it takes counts in no phase. For work of the
    /// tool's own that a real recovery does not do (reading the drill history, say).
    pub fn stopped<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let from = Instant::now();
        let out = f();
        let d = from.elapsed();
        self.started += d;
        self.last += d;
        out
    }

    /// Whether `phase` has been lapped.
    pub fn has(&self, phase: Phase) -> bool {
        self.laps.iter().any(|l| l.phase == phase)
    }

    /// The time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The time from the start to the last lap.
    pub fn total(&self) -> Duration {
        self.last.duration_since(self.started)
    }

    /// The phases lapped so far.
    pub fn phases(&self) -> &[PhaseTime] {
        &self.laps
    }

    /// How long `phase` took (0 when it has not been lapped).
    pub fn seconds(&self, phase: Phase) -> f64 {
        self.laps
            .iter()
            .filter(|l| l.phase == phase)
            .map(|l| l.seconds)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_add_up_to_the_total() {
        let mut w = Stopwatch::start();
        w.lap(Phase::Open);
        w.lap(Phase::Index);
        w.lap(Phase::Restore);
        let sum: f64 = w.phases().iter().map(|p| p.seconds).sum();
        assert!(
            (sum - w.total().as_secs_f64()).abs() < 1e-6,
            "{sum} {:?}",
            w.total()
        );
        assert!(w.has(Phase::Index));
        assert!(!w.has(Phase::Verify));
        assert_eq!(w.seconds(Phase::Verify), 0.0);
        assert_eq!(
            Phase::ALL.iter().map(|p| p.name()).collect::<Vec<_>>(),
            ["open", "index", "select", "restore", "verify"]
        );
    }

    #[test]
    fn time_with_the_clock_stopped_counts_in_no_phase() {
        let pause = Duration::from_millis(300);
        let mut w = Stopwatch::start();
        let real = Instant::now();
        let v = w.stopped(|| {
            std::thread::sleep(pause);
            7
        });
        assert_eq!(v, 7);
        let open = w.lap(Phase::Open);
        assert!(real.elapsed() >= pause);
        assert!(open < pause, "{open:?}");
        assert!(w.total() < pause && w.elapsed() < pause, "{:?}", w.total());
        let sum: f64 = w.phases().iter().map(|p| p.seconds).sum();
        assert!((sum - w.total().as_secs_f64()).abs() < 1e-6);
    }
}
