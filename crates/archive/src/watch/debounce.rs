//! When to back up: a state machine fed with change times that says when the next backup is
//! due and why. It reads no clock: every method takes the time it is told, so the tests drive
//! it through hours of simulated activity without sleeping.
//!
//! Changes are gathered into a *batch*. A batch is due once no change has come for the quiet
//! period (`quiet`), or at the latest `max_delay` after its first change, so that a tree that
//! never falls quiet is still backed up. With no batch, a backup is due `rescan` after the end
//! of the previous one (a periodic full walk that catches changes no event reported). A failed
//! backup puts its batch back and the next attempt waits (`retry_first`, doubling up to
//! `retry_max`). While the watched paths are *held* (one of them vanished) nothing is due.

use std::time::{Duration, Instant};

use super::WatchError;

/// The longest any setting may be (about 100 years): longer ones are surely typos, and the
/// times computed from them must stay representable.
pub const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `t + d`, or as late as can be represented when that overflows.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(LONGEST))
        .unwrap_or(t)
}

/// The timing of a [`Debouncer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebounceSettings {
    /// A batch is due once no change came for this long.
    pub quiet: Duration,
    /// A batch is due at the latest this long after its first change.
    pub max_delay: Duration,
    /// With no change reported, a backup is due this long after the previous one ended
    /// (`None`: never).
    pub rescan: Option<Duration>,
    /// Wait after the first failed backup; it doubles with each further failure.
    pub retry_first: Duration,
    /// Longest wait after failed backups.
    pub retry_max: Duration,
}

impl Default for DebounceSettings {
    fn default() -> Self {
        DebounceSettings {
            quiet: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            rescan: Some(Duration::from_secs(3600)),
            retry_first: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
        }
    }
}

impl DebounceSettings {
    /// Fails with a [`WatchError::Usage`] naming the first setting that makes no sense.
    pub fn check(&self) -> Result<(), WatchError> {
        let too_long = [
            self.quiet,
            self.max_delay,
            self.rescan.unwrap_or_default(),
            self.retry_first,
            self.retry_max,
        ]
        .into_iter()
        .any(|d| d > LONGEST);
        let problem = if too_long {
            Some("durations longer than 100 years are not supported")
        } else if self.quiet.is_zero() {
            Some("the quiet period (--debounce) must be longer than 0")
        } else if self.max_delay < self.quiet {
            Some(
                "the maximum delay (--max-delay) must not be shorter than the quiet period (--debounce)",
            )
        } else if self.rescan.is_some_and(|r| r.is_zero()) {
            Some("the rescan interval must be longer than 0 (leave it out to never rescan)")
        } else if self.retry_first.is_zero() || self.retry_max < self.retry_first {
            Some("the retry waits must be positive, the longest at least the first")
        } else {
            None
        };
        match problem {
            Some(p) => Err(WatchError::Usage(p.into())),
            None => Ok(()),
        }
    }
}

/// Why a backup is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerReason {
    /// The first backup after starting: changes made while nothing watched are unknown.
    Start,
    /// The tree fell quiet after changes.
    Quiet,
    /// Changes kept coming for the maximum delay.
    MaxDelay,
    /// The kernel dropped change notifications (queue overflow), or they could not all be
    /// set up: only a full walk can tell what changed.
    Overflow,
    /// Nothing was reported for the rescan interval.
    Rescan,
    /// The previous attempt failed; this one retries it.
    Retry,
    /// Every watched path is back after one vanished.
    Resumed,
}

impl TriggerReason {
    /// The name used in logs and JSON (`quiet`, `max_delay`...).
    pub fn name(self) -> &'static str {
        match self {
            TriggerReason::Start => "start",
            TriggerReason::Quiet => "quiet",
            TriggerReason::MaxDelay => "max_delay",
            TriggerReason::Overflow => "overflow",
            TriggerReason::Rescan => "rescan",
            TriggerReason::Retry => "retry",
            TriggerReason::Resumed => "resumed",
        }
    }
}

impl std::fmt::Display for TriggerReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Changes waiting for a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    first: Instant,
    last: Instant,
    changes: u64,
    start: bool,
    overflow: bool,
    resumed: bool,
    retry: bool,
}

impl Batch {
    fn at(at: Instant) -> Batch {
        Batch {
            first: at,
            last: at,
            changes: 0,
            start: false,
            overflow: false,
            resumed: false,
            retry: false,
        }
    }

    fn merge(&mut self, other: &Batch) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.changes += other.changes;
        self.start |= other.start;
        self.overflow |= other.overflow;
        self.resumed |= other.resumed;
        self.retry |= other.retry;
    }
}

/// A backup that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Why.
    pub reason: TriggerReason,
    /// Change notifications gathered since the previous backup began.
    pub changes: u64,
    /// When the earliest of them came (`None` for a rescan).
    pub first_change: Option<Instant>,
    /// When the latest of them came.
    pub last_change: Option<Instant>,
    /// Failed attempts before this one.
    pub failures: u32,
    batch: Option<Batch>,
}

/// The state machine (see the module documentation).
#[derive(Debug, Clone)]
pub struct Debouncer {
    settings: DebounceSettings,
    pending: Option<Batch>,
    /// When the previous backup ended (or the debouncer was made): the rescan counts from here.
    idle_since: Instant,
    failures: u32,
    retry_at: Option<Instant>,
    held: bool,
}

impl Debouncer {
    /// A debouncer made at `now`, with the first backup pending ([`TriggerReason::Start`]):
    /// it is due after the quiet period, like any change.
    pub fn new(settings: DebounceSettings, now: Instant) -> Debouncer {
        let mut start = Batch::at(now);
        start.start = true;
        Debouncer {
            settings,
            pending: Some(start),
            idle_since: now,
            failures: 0,
            retry_at: None,
            held: false,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &DebounceSettings {
        &self.settings
    }

    fn add(&mut self, batch: Batch) {
        match &mut self.pending {
            Some(p) => p.merge(&batch),
            None => self.pending = Some(batch),
        }
    }

    /// Records `count` change notifications, the first at `first` and the last at `last`.
    pub fn changes(&mut self, first: Instant, last: Instant, count: u64) {
        if count == 0 {
            return;
        }
        let mut b = Batch::at(first);
        b.last = last.max(first);
        b.changes = count;
        self.add(b);
    }

    /// Records that notifications were lost at `at`: the next backup must walk everything
    /// (every backup does) and reports [`TriggerReason::Overflow`].
    pub fn overflow(&mut self, at: Instant) {
        let mut b = Batch::at(at);
        b.overflow = true;
        self.add(b);
    }

    /// Holds every backup (a watched path vanished); changes are still gathered.
    pub fn hold(&mut self) {
        self.held = true;
    }

    /// Ends a hold at `at`: a backup is due after the quiet period
    /// ([`TriggerReason::Resumed`]).
    pub fn release(&mut self, at: Instant) {
        if !self.held {
            return;
        }
        self.held = false;
        let mut b = Batch::at(at);
        b.resumed = true;
        self.add(b);
    }

    /// True while held.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// True while changes wait for a backup.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn due(&self, b: &Batch) -> Instant {
        let settled =
            later(b.last, self.settings.quiet).min(later(b.first, self.settings.max_delay));
        match self.retry_at {
            Some(r) => settled.max(r),
            None => settled,
        }
    }

    /// When the next backup is due if nothing else is reported (`None`: not before some
    /// change or a release).
    pub fn deadline(&self) -> Option<Instant> {
        if self.held {
            return None;
        }
        match &self.pending {
            Some(b) => Some(self.due(b)),
            None => self.settings.rescan.map(|r| {
                let at = later(self.idle_since, r);
                self.retry_at.map_or(at, |x| at.max(x))
            }),
        }
    }

    /// The backup due at `now`, if one is; the batch it covers is taken (changes reported
    /// from now on form the next batch).
    pub fn poll(&mut self, now: Instant) -> Option<Trigger> {
        let due = self.deadline()?;
        if now < due {
            return None;
        }
        let failures = self.failures;
        let Some(b) = self.pending.take() else {
            return Some(Trigger {
                reason: TriggerReason::Rescan,
                changes: 0,
                first_change: None,
                last_change: None,
                failures,
                batch: None,
            });
        };
        let reason = if b.retry {
            TriggerReason::Retry
        } else if b.start {
            TriggerReason::Start
        } else if b.resumed {
            TriggerReason::Resumed
        } else if b.overflow {
            TriggerReason::Overflow
        } else if later(b.last, self.settings.quiet) <= later(b.first, self.settings.max_delay) {
            TriggerReason::Quiet
        } else {
            TriggerReason::MaxDelay
        };
        let seen = b.changes > 0;
        Some(Trigger {
            reason,
            changes: b.changes,
            first_change: seen.then_some(b.first),
            last_change: seen.then_some(b.last),
            failures,
            batch: Some(b),
        })
    }

    /// The backup of `trigger` ended well at `now`.
    pub fn succeeded(&mut self, now: Instant) {
        self.failures = 0;
        self.retry_at = None;
        self.idle_since = now;
    }

    /// The backup of `trigger` failed at `now`: its batch is pending again, due no earlier
    /// than the returned wait from now.
    pub fn failed(&mut self, now: Instant, trigger: Trigger) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doublings = self.failures.saturating_sub(1).min(30);
        let wait = self
            .settings
            .retry_first
            .saturating_mul(1u32 << doublings)
            .min(self.settings.retry_max);
        self.retry_at = Some(later(now, wait));
        self.idle_since = now;
        let mut b = trigger.batch.unwrap_or_else(|| Batch::at(now));
        b.retry = true;
        self.add(b);
        wait
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings() -> DebounceSettings {
        DebounceSettings {
            quiet: ms(2000),
            max_delay: ms(10_000),
            rescan: Some(ms(3_600_000)),
            retry_first: ms(5000),
            retry_max: ms(40_000),
        }
    }

    /// A debouncer whose start backup already ran at `t0`.
    fn settled(s: DebounceSettings, t0: Instant) -> Debouncer {
        let mut d = Debouncer::new(s, t0);
        let t = d
            .poll(t0 + s.quiet)
            .expect("start is due after the quiet period");
        assert_eq!(t.reason, TriggerReason::Start);
        d.succeeded(t0 + s.quiet);
        d
    }

    #[test]
    fn first_backup_waits_for_quiet_after_start() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings(), t0);
        assert_eq!(d.deadline(), Some(t0 + ms(2000)));
        assert!(d.poll(t0 + ms(1999)).is_none());
        // A change before then moves the start backup back.
        d.changes(t0 + ms(1500), t0 + ms(1500), 1);
        assert!(d.poll(t0 + ms(2000)).is_none());
        assert_eq!(d.deadline(), Some(t0 + ms(3500)));
        let t = d.poll(t0 + ms(3500)).unwrap();
        assert_eq!(t.reason, TriggerReason::Start);
        assert_eq!(t.changes, 1);
        assert!(!d.is_pending());
    }

    #[test]
    fn one_change_is_backed_up_after_the_quiet_period() {
        let t0 = Instant::now();
        let mut d = settled(settings(), t0);
        let at = t0 + ms(60_000);
        d.changes(at, at, 3);
        assert_eq!(d.deadline(), Some(at + ms(2000)));
        assert!(d.poll(at + ms(1999)).is_none());
        let t = d.poll(at + ms(2000)).unwrap();
        assert_eq!(t.reason, TriggerReason::Quiet);
        assert_eq!(t.changes, 3);
        assert_eq!(t.first_change, Some(at));
        assert_eq!(t.last_change, Some(at));
        assert_eq!(d.poll(at + ms(5000)), None, "the batch was taken");
    }

    #[test]
    fn a_busy_tree_is_backed_up_at_the_maximum_delay() {
        let t0 = Instant::now();
        let mut d = settled(settings(), t0);
        let start = t0 + ms(100_000);
        // A change every 500 ms, never quiet for 2 s.
        let mut t = start;
        let mut fired = None;
        while t < start + ms(30_000) {
            d.changes(t, t, 1);
            if let Some(tr) = d.poll(t) {
                fired = Some((t, tr));
                break;
            }
            t += ms(500);
        }
        let (at, tr) = fired.expect("a backup is due while changes keep coming");
        assert_eq!(tr.reason, TriggerReason::MaxDelay);
        assert_eq!(at, start + ms(10_000));
        assert_eq!(tr.first_change, Some(start));
        assert_eq!(tr.changes, 21);
    }

    #[test]
    fn changes_during_a_backup_form_the_next_batch() {
        let t0 = Instant::now();
        let mut d = settled(settings(), t0);
        let a = t0 + ms(50_000);
        d.changes(a, a, 1);
        let first = d.poll(a + ms(2000)).unwrap();
        assert_eq!(first.changes, 1);
        // Reported after the backup ended, with the times they happened.
        let during = a + ms(2500);
        d.changes(during, during, 2);
        d.succeeded(a + ms(4000));
        assert_eq!(d.deadline(), Some(during + ms(2000)));
        let second = d.poll(a + ms(4500)).unwrap();
        assert_eq!(second.reason, TriggerReason::Quiet);
        assert_eq!(second.changes, 2);
    }

    #[test]
    fn rescan_runs_after_the_interval_without_changes() {
        let t0 = Instant::now();
        let mut d = settled(settings(), t0);
        let end = t0 + ms(2000);
        assert_eq!(d.deadline(), Some(end + ms(3_600_000)));
        assert!(d.poll(end + ms(3_599_999)).is_none());
        let t = d.poll(end + ms(3_600_000)).unwrap();
        assert_eq!(t.reason, TriggerReason::Rescan);
        assert_eq!(t.first_change, None);
        // The next rescan counts from the end of this one.
        d.succeeded(end + ms(3_700_000));
        assert_eq!(d.deadline(), Some(end + ms(7_300_000)));
    }

    #[test]
    fn without_rescan_nothing_is_due_until_a_change() {
        let t0 = Instant::now();
        let mut s = settings();
        s.rescan = None;
        let mut d = settled(s, t0);
        assert_eq!(d.deadline(), None);
        assert!(d.poll(t0 + ms(1_000_000_000)).is_none());
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut d = settled(settings(), t0);
        let a = t0 + ms(10_000);
        d.changes(a, a, 1);
        let mut now = a + ms(2000);
        let mut tr = d.poll(now).unwrap();
        assert_eq!(tr.reason, TriggerReason::Quiet);
        let mut waits = Vec::new();
        for attempt in 0..6 {
            assert_eq!(tr.failures, attempt);
            let wait = d.failed(now, tr);
            waits.push(wait.as_millis());
            assert!(
                d.poll(now + wait - ms(1)).is_none(),
                "not before the backoff"
            );
            now += wait;
            tr = d.poll(now).expect("retried once the backoff has passed");
            assert_eq!(tr.reason, TriggerReason::Retry);
            assert_eq!(tr.changes, 1, "the failed batch is kept");
            assert_eq!(tr.first_change, Some(a));
        }
        assert_eq!(waits, [5000, 10_000, 20_000, 40_000, 40_000, 40_000]);
        d.succeeded(now);
        let b = now + ms(100);
        d.changes(b, b, 1);
        let tr = d.poll(b + ms(2000)).unwrap();
        assert_eq!(tr.reason, TriggerReason::Quiet);
        assert_eq!(tr.failures, 0);
        // The backoff starts over.
        assert_eq!(d.failed(b + ms(2000), tr), ms(5000));
    }

    #[test]
    fn changes_after_a_failure_wait_for_the_backoff_too() {
        let t0 = Instant::now();
        let mut d = settled(settings(), t0);
        let tr = d.poll(t0 + ms(3_602_000)).unwrap();
        assert_eq!(tr.reason, TriggerReason::Rescan);
        let failed_at = t0 + ms(3_603_000);
        assert_eq!(d.failed(failed_at, tr), ms(5000));
        d.changes(failed_at + ms(100), failed_at + ms(100), 4);
        assert!(d.poll(failed_at + ms(4999)).is_none());
        let tr = d.poll(failed_at + ms(5000)).unwrap();
        assert_eq!(tr.reason, TriggerReason::Retry);
        assert_eq!(tr.changes, 4);
    }

    #[test]
    fn held_paths_hold_every_backup_until_released() {
        let t0 = Instant::now();
        let mut d = settled(settings(), t0);
        let a = t0 + ms(5000);
        d.changes(a, a, 1);
        d.hold();
        assert!(d.is_held());
        assert_eq!(d.deadline(), None);
        assert!(
            d.poll(a + ms(100_000_000)).is_none(),
            "nothing while held, rescan included"
        );
        let back = a + ms(100_000_000);
        d.release(back);
        assert!(!d.is_held());
        // The old changes are past their maximum delay: due at once.
        let tr = d.poll(back).unwrap();
        assert_eq!(tr.reason, TriggerReason::Resumed);
        assert_eq!(tr.changes, 1);
        // Releasing what is not held does nothing.
        d.release(back);
        assert!(!d.is_pending());
    }

    #[test]
    fn overflow_is_reported_as_the_reason() {
        let t0 = Instant::now();
        let mut d = settled(settings(), t0);
        let a = t0 + ms(9000);
        d.changes(a, a, 10);
        d.overflow(a + ms(10));
        let tr = d.poll(a + ms(2010)).unwrap();
        assert_eq!(tr.reason, TriggerReason::Overflow);
        assert_eq!(tr.changes, 10);
    }

    #[test]
    fn settings_are_checked() {
        assert!(DebounceSettings::default().check().is_ok());
        let bad = [
            DebounceSettings {
                quiet: Duration::ZERO,
                ..DebounceSettings::default()
            },
            DebounceSettings {
                quiet: ms(5000),
                max_delay: ms(4000),
                ..DebounceSettings::default()
            },
            DebounceSettings {
                rescan: Some(Duration::ZERO),
                ..DebounceSettings::default()
            },
            DebounceSettings {
                retry_first: ms(10),
                retry_max: ms(5),
                ..DebounceSettings::default()
            },
        ];
        for s in bad {
            assert!(matches!(s.check(), Err(WatchError::Usage(_))), "{s:?}");
        }
    }

    #[test]
    fn absurd_durations_are_refused_and_never_overflow() {
        // `--rescan 400000000000y`, say.
        let absurd = Duration::from_secs(400_000_000_000 * 365 * 24 * 3600);
        for s in [
            DebounceSettings {
                rescan: Some(absurd),
                ..DebounceSettings::default()
            },
            DebounceSettings {
                max_delay: absurd,
                ..DebounceSettings::default()
            },
            DebounceSettings {
                quiet: absurd,
                max_delay: absurd,
                ..DebounceSettings::default()
            },
            DebounceSettings {
                retry_max: absurd,
                ..DebounceSettings::default()
            },
        ] {
            assert!(matches!(s.check(), Err(WatchError::Usage(_))), "{s:?}");
        }
        let longest = DebounceSettings {
            quiet: LONGEST,
            max_delay: LONGEST,
            rescan: Some(LONGEST),
            retry_first: LONGEST,
            retry_max: LONGEST,
        };
        assert!(longest.check().is_ok());
        // Even unchecked settings never make the arithmetic panic.
        let t0 = Instant::now();
        let huge = DebounceSettings {
            quiet: Duration::MAX,
            max_delay: Duration::MAX,
            rescan: Some(Duration::MAX),
            retry_first: Duration::MAX,
            retry_max: Duration::MAX,
        };
        for s in [longest, huge] {
            let mut d = Debouncer::new(s, t0);
            assert!(d.deadline().is_some_and(|at| at > t0));
            assert!(d.poll(t0).is_none());
            d.changes(t0, t0, 1);
            assert!(d.poll(t0 + ms(1000)).is_none());
            d.succeeded(t0);
            assert!(d.deadline().is_some());
            let mut d = Debouncer::new(s, t0);
            d.pending = None;
            assert!(d.poll(t0).is_none(), "the rescan is far away");
            let tr = Trigger {
                reason: TriggerReason::Rescan,
                changes: 0,
                first_change: None,
                last_change: None,
                failures: 0,
                batch: None,
            };
            assert!(d.failed(t0, tr) > Duration::ZERO);
            assert!(d.deadline().is_some());
        }
    }

    mod simulated {
        use super::*;
        use proptest::prelude::*;

        /// Runs a debouncer the way the watch loop does: changes reported when they happen,
        /// or at the end of the backup running then; every backup takes `cycle`. Returns
        /// (fired at, ended at, trigger) for each backup.
        fn simulate(
            s: DebounceSettings,
            t0: Instant,
            changes: &[Instant],
            cycle: Duration,
        ) -> Vec<(Instant, Instant, Trigger)> {
            let mut d = Debouncer::new(s, t0);
            let mut out = Vec::new();
            let mut i = 0;
            let mut now = t0;
            let horizon = changes.last().copied().unwrap_or(t0) + s.max_delay + cycle * 4;
            loop {
                let next_change = changes.get(i).copied();
                let next_due = d.deadline();
                let step = match (next_change, next_due) {
                    (Some(c), Some(due)) => c.min(due),
                    (Some(c), None) => c,
                    (None, Some(due)) => due,
                    (None, None) => break,
                };
                if step > horizon {
                    break;
                }
                now = now.max(step);
                while let Some(&c) = changes.get(i)
                    && c <= now
                {
                    d.changes(c, c, 1);
                    i += 1;
                }
                if let Some(tr) = d.poll(now) {
                    let end = now + cycle;
                    // Changes during the backup are reported when it ends.
                    while let Some(&c) = changes.get(i)
                        && c < end
                    {
                        d.changes(c, c, 1);
                        i += 1;
                    }
                    out.push((now, end, tr));
                    d.succeeded(end);
                    now = end;
                }
            }
            out
        }

        proptest! {
            #[test]
            fn every_change_is_backed_up_within_the_maximum_delay(
                gaps in prop::collection::vec(0u64..4000, 0..200),
                quiet_ms in 1u64..3000,
                extra_ms in 0u64..20_000,
                cycle_ms in 1u64..15_000,
            ) {
                let s = DebounceSettings {
                    quiet: ms(quiet_ms),
                    max_delay: ms(quiet_ms + extra_ms),
                    rescan: None,
                    ..DebounceSettings::default()
                };
                let t0 = Instant::now();
                let mut t = t0;
                let changes: Vec<Instant> = gaps.iter().map(|g| { t += ms(*g); t }).collect();
                let cycle = ms(cycle_ms);
                let runs = simulate(s, t0, &changes, cycle);
                prop_assert!(!runs.is_empty(), "the start backup always runs");
                prop_assert_eq!(runs[0].2.reason, TriggerReason::Start);
                // Each change is covered by the first backup that begins after it; that
                // begins at most max_delay after the change, or when the backup running
                // at the change ends.
                for &c in &changes {
                    let running_end = runs
                        .iter()
                        .find(|(fired, end, _)| *fired < c && c < *end)
                        .map(|(_, end, _)| *end);
                    let (fired, _, _) = runs
                        .iter()
                        .find(|(fired, _, _)| *fired >= c && running_end.is_none_or(|e| *fired >= e))
                        .ok_or_else(|| TestCaseError::fail(format!("change at {:?} never backed up", c - t0)))?;
                    let bound = (c + s.max_delay).max(running_end.unwrap_or(c));
                    prop_assert!(*fired <= bound, "backed up {:?} after the change", *fired - c);
                }
                // Every backup but the first covers changes, and a quiet one came after a
                // quiet period.
                let mut counted = 0;
                for (fired, _, tr) in &runs {
                    counted += tr.changes;
                    if tr.reason != TriggerReason::Start {
                        prop_assert!(tr.changes > 0, "a backup without changes: {tr:?}");
                    }
                    if tr.reason == TriggerReason::Quiet {
                        let last = tr.last_change.unwrap_or(*fired);
                        prop_assert!(*fired >= last + s.quiet);
                    }
                }
                prop_assert_eq!(counted, changes.len() as u64, "every change reported once");
            }
        }
    }
}
