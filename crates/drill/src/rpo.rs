//! The recovery point measured from the snapshot history: the worst gap between consecutive
//! restorable snapshots inside a recent window, and the age of the newest one when the drill
//! starts.
//!
//! Only the window counts because retention thins older history on purpose
//! (`--keep-daily`, `--keep-weekly`...): gaps there show how far apart the kept snapshots
//! are, not how much data a disaster would have lost when they were taken. A gap counts when
//! its newer snapshot was taken inside the window (the gap from the snapshot before it counts
//! whole, so a window never hides part of a long pause that ended in it).

use zaibei_format::{Id, Timestamp};

use crate::report::{NotRestorable, RpoMeasure, SnapshotGroup, SnapshotRef};
use crate::units;

/// The window of recent history the worst gap is measured over by default: seven days.
pub const DEFAULT_WINDOW_SECONDS: u64 = 7 * 86_400;

/// What counting a snapshot as restorable proves, and what it does not.
pub const PROOF: &str = "A snapshot counts as restorable when its snapshot object decrypts and \
    authenticates, and its root tree and the root tree's reference blob are listed in the \
    index. That does not prove that the packs holding its trees and file data are intact in \
    the store, nor that every subtree and data blob is indexed: `zaibei check --read-data` \
    proves that for all of them. The drilled snapshot alone is fully proven, by restoring it \
    and reading every file back; when that fails it does not count as restorable.";

/// A snapshot of the group, with whether it counts as restorable.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its id.
    pub id: Id,
    /// Its time.
    pub time: Timestamp,
    /// Why it is not restorable (`None`: it is).
    pub problem: Option<String>,
}

fn reference(c: &Candidate) -> SnapshotRef {
    SnapshotRef {
        id: c.id.to_hex(),
        time: units::rfc3339(c.time),
    }
}

/// Measures the RPO of `candidates` (any order) at `drill_start`; gaps count when their newer
/// snapshot was taken at most `window_seconds` before `drill_start`.
pub fn measure(
    group: SnapshotGroup,
    candidates: &[Candidate],
    drill_start: Timestamp,
    window_seconds: f64,
    unreadable_objects: u64,
) -> RpoMeasure {
    let window_seconds = if window_seconds.is_finite() {
        window_seconds.max(0.0)
    } else {
        f64::MAX
    };
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    let restorable: Vec<&Candidate> = sorted
        .iter()
        .copied()
        .filter(|c| c.problem.is_none())
        .collect();
    let not_restorable = sorted
        .iter()
        .filter_map(|c| {
            c.problem.as_ref().map(|reason| NotRestorable {
                id: c.id.to_hex(),
                time: units::rfc3339(c.time),
                reason: reason.clone(),
            })
        })
        .collect();

    let in_window = |c: &Candidate| c.time.seconds_until(drill_start) <= window_seconds;
    let mut worst: Option<(f64, &Candidate, &Candidate)> = None;
    for pair in restorable.windows(2).filter(|pair| in_window(pair[1])) {
        let gap = pair[0].time.seconds_until(pair[1].time);
        if worst.is_none_or(|(w, _, _)| gap > w) {
            worst = Some((gap, pair[0], pair[1]));
        }
    }
    let newest = restorable.last().copied();
    let newest_age = newest.map(|n| n.time.seconds_until(drill_start).max(0.0));
    let worst_gap = worst.map(|(g, _, _)| g);
    let rpo = newest_age.map(|age| age.max(worst_gap.unwrap_or(0.0)));
    RpoMeasure {
        group,
        snapshots: sorted.len() as u64,
        restorable: restorable.len() as u64,
        not_restorable,
        unreadable_snapshot_objects: unreadable_objects,
        window_seconds: Some(window_seconds),
        restorable_in_window: Some(restorable.iter().filter(|c| in_window(c)).count() as u64),
        worst_gap_seconds: worst_gap,
        worst_gap_from: worst.map(|(_, a, _)| reference(a)),
        worst_gap_to: worst.map(|(_, _, b)| reference(b)),
        newest: newest.map(reference),
        newest_age_seconds: newest_age,
        rpo_seconds: rpo,
        proof: PROOF.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u8, secs: i64, ok: bool) -> Candidate {
        Candidate {
            id: Id([n; 32]),
            time: Timestamp { secs, nanos: 0 },
            problem: (!ok).then(|| "root tree missing".to_owned()),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp { secs, nanos: 0 }
    }

    /// A window longer than any test's history.
    const ALL: f64 = 1e9;
    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;

    #[test]
    fn no_snapshot_gives_no_figures() {
        let m = measure(SnapshotGroup::default(), &[], at(1000), ALL, 2);
        assert_eq!(m.snapshots, 0);
        assert_eq!(m.restorable, 0);
        assert_eq!(m.worst_gap_seconds, None);
        assert_eq!(m.newest, None);
        assert_eq!(m.newest_age_seconds, None);
        assert_eq!(m.rpo_seconds, None);
        assert_eq!(m.unreadable_snapshot_objects, 2);
    }

    #[test]
    fn one_snapshot_gives_its_age_and_no_gap() {
        let m = measure(
            SnapshotGroup::default(),
            &[c(1, 400, true)],
            at(1000),
            ALL,
            0,
        );
        assert_eq!(m.worst_gap_seconds, None);
        assert_eq!(m.worst_gap_from, None);
        assert_eq!(m.newest_age_seconds, Some(600.0));
        assert_eq!(m.rpo_seconds, Some(600.0));
        assert_eq!(m.newest.map(|n| n.id), Some(Id([1; 32]).to_hex()));
    }

    #[test]
    fn many_unsorted_snapshots_give_the_worst_gap() {
        // Times 100, 400, 450, 1450 (given out of order): gaps 300, 50, 1000.
        let input = [
            c(3, 450, true),
            c(1, 100, true),
            c(4, 1450, true),
            c(2, 400, true),
        ];
        let m = measure(SnapshotGroup::default(), &input, at(1500), ALL, 0);
        assert_eq!(m.snapshots, 4);
        assert_eq!(m.restorable, 4);
        assert_eq!(m.worst_gap_seconds, Some(1000.0));
        assert_eq!(m.worst_gap_from.map(|r| r.id), Some(Id([3; 32]).to_hex()));
        assert_eq!(m.worst_gap_to.map(|r| r.id), Some(Id([4; 32]).to_hex()));
        assert_eq!(m.newest_age_seconds, Some(50.0));
        // The worst gap dominates the newest age.
        assert_eq!(m.rpo_seconds, Some(1000.0));
        // ...unless the newest is older than the worst gap.
        let later = measure(SnapshotGroup::default(), &input, at(5000), ALL, 0);
        assert_eq!(later.rpo_seconds, Some(3550.0));
    }

    #[test]
    fn snapshots_that_are_not_restorable_widen_the_gap() {
        let input = [c(1, 0, true), c(2, 100, false), c(3, 250, true)];
        let m = measure(SnapshotGroup::default(), &input, at(250), ALL, 0);
        assert_eq!(m.snapshots, 3);
        assert_eq!(m.restorable, 2);
        assert_eq!(m.worst_gap_seconds, Some(250.0));
        assert_eq!(m.not_restorable.len(), 1);
        assert_eq!(m.not_restorable[0].id, Id([2; 32]).to_hex());
        assert_eq!(m.not_restorable[0].reason, "root tree missing");
        // None restorable at all.
        let none = measure(SnapshotGroup::default(), &[c(9, 5, false)], at(10), ALL, 0);
        assert_eq!(none.restorable, 0);
        assert_eq!(none.rpo_seconds, None);
    }

    #[test]
    fn fractions_count_and_future_times_are_age_zero() {
        let a = Candidate {
            id: Id([1; 32]),
            time: Timestamp {
                secs: 10,
                nanos: 250_000_000,
            },
            problem: None,
        };
        let b = Candidate {
            id: Id([2; 32]),
            time: Timestamp { secs: 12, nanos: 0 },
            problem: None,
        };
        let m = measure(SnapshotGroup::default(), &[a, b], at(11), ALL, 0);
        assert_eq!(m.worst_gap_seconds, Some(1.75));
        assert_eq!(m.newest_age_seconds, Some(0.0));
        assert_eq!(m.rpo_seconds, Some(1.75));
    }

    #[test]
    fn thinned_history_outside_the_window_does_not_count() {
        // Retention as `--keep-hourly 72 --keep-daily 30`: hourly snapshots for the last three
        // days, daily ones before that, for thirty days.
        let now = 40 * DAY;
        let mut input = Vec::new();
        let mut n = 0u8;
        for h in 0..72 {
            n = n.wrapping_add(1);
            input.push(c(n, now - 10 * 60 - h * HOUR, true));
        }
        for d in 3..30 {
            n = n.wrapping_add(1);
            input.push(c(n, now - d * DAY - 2 * HOUR, true));
        }
        let window = |d: i64| (d * DAY) as f64;
        let whole = measure(SnapshotGroup::default(), &input, at(now), ALL, 0);
        assert_eq!(
            whole.worst_gap_seconds,
            Some(DAY as f64),
            "the daily spacing"
        );
        // A window inside the hourly part sees the hourly spacing, and the RPO is an hour.
        let recent = measure(SnapshotGroup::default(), &input, at(now), window(2), 0);
        assert_eq!(recent.worst_gap_seconds, Some(HOUR as f64));
        assert_eq!(recent.rpo_seconds, Some(HOUR as f64));
        assert_eq!(recent.window_seconds, Some(window(2)));
        assert_eq!(recent.restorable_in_window, Some(48));
        assert_eq!(recent.newest_age_seconds, Some(600.0));
        // The default window of seven days still reaches the daily part.
        let week = measure(
            SnapshotGroup::default(),
            &input,
            at(now),
            DEFAULT_WINDOW_SECONDS as f64,
            0,
        );
        assert_eq!(week.worst_gap_seconds, Some(DAY as f64));
        assert_eq!(week.snapshots, 99);
        assert_eq!(week.restorable, 99);
    }

    #[test]
    fn a_gap_ending_inside_the_window_counts_whole() {
        // Backups stopped for nine days and resumed a day ago.
        let now = 20 * DAY;
        let input = [
            c(1, now - 11 * DAY, true),
            c(2, now - 10 * DAY, true),
            c(3, now - DAY, true),
            c(4, now - DAY / 2, true),
        ];
        let m = measure(
            SnapshotGroup::default(),
            &input,
            at(now),
            DEFAULT_WINDOW_SECONDS as f64,
            0,
        );
        assert_eq!(m.worst_gap_seconds, Some((9 * DAY) as f64));
        assert_eq!(m.worst_gap_from.map(|r| r.id), Some(Id([2; 32]).to_hex()));
        assert_eq!(m.restorable_in_window, Some(2));
        // Only old snapshots: no gap inside the window; the newest age is the RPO.
        let old = [c(1, 0, true), c(2, DAY, true)];
        let m = measure(
            SnapshotGroup::default(),
            &old,
            at(30 * DAY),
            (7 * DAY) as f64,
            0,
        );
        assert_eq!(m.worst_gap_seconds, None);
        assert_eq!(m.rpo_seconds, Some((29 * DAY) as f64));
        assert_eq!(m.restorable_in_window, Some(0));
    }
}
