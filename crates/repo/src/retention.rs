//! Retention policies: which snapshots `forget` keeps, and why.
//!
//! Snapshots are grouped (by default by host and paths) and each group is judged on its own.
//! Within a group, newest first:
//! * `last n` keeps the `n` newest snapshots;
//! * `hourly n` … `yearly n` keep the newest snapshot of each of the `n` most recent hours …
//!   years that have one, in the time zone given (the machine's own by default);
//! * `within d` keeps every snapshot taken less than `d` before the group's newest one
//!   (measured from the newest snapshot, not from now, so a host that stopped backing up
//!   keeps its last ones);
//! * `tags` keeps every snapshot carrying any of the tags.
//!
//! A snapshot is kept when any rule keeps it; every rule that does is reported. A policy
//! without any rule keeps everything: forgetting needs an explicit rule.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::tz::TimeZone;
use zaibei_format::{Id, Snapshot};

/// How many snapshots each rule keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// The newest n.
    pub last: Option<u32>,
    /// The newest of each of the n most recent hours.
    pub hourly: Option<u32>,
    /// … days.
    pub daily: Option<u32>,
    /// … ISO weeks.
    pub weekly: Option<u32>,
    /// … months.
    pub monthly: Option<u32>,
    /// … years.
    pub yearly: Option<u32>,
    /// Everything less than this older than the group's newest snapshot.
    pub within: Option<Duration>,
    /// Everything carrying one of these tags.
    pub tags: Vec<String>,
}

impl KeepPolicy {
    /// True when no rule is set (such a policy keeps everything).
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
            && self.hourly.is_none()
            && self.daily.is_none()
            && self.weekly.is_none()
            && self.monthly.is_none()
            && self.yearly.is_none()
            && self.within.is_none()
            && self.tags.is_empty()
    }
}

/// A rule that keeps a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeepReason {
    /// `--keep-last`.
    Last,
    /// `--keep-hourly`.
    Hourly,
    /// `--keep-daily`.
    Daily,
    /// `--keep-weekly`.
    Weekly,
    /// `--keep-monthly`.
    Monthly,
    /// `--keep-yearly`.
    Yearly,
    /// `--keep-within`.
    Within,
    /// `--keep-tag` with this tag.
    Tag(String),
    /// No rule was given: nothing is forgotten.
    NoPolicy,
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::Last => f.write_str("last"),
            KeepReason::Hourly => f.write_str("hourly"),
            KeepReason::Daily => f.write_str("daily"),
            KeepReason::Weekly => f.write_str("weekly"),
            KeepReason::Monthly => f.write_str("monthly"),
            KeepReason::Yearly => f.write_str("yearly"),
            KeepReason::Within => f.write_str("within"),
            KeepReason::Tag(t) => write!(f, "tag {t}"),
            KeepReason::NoPolicy => f.write_str("no policy"),
        }
    }
}

/// Which fields group snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the set of backed-up paths.
    pub paths: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// Host and paths, as restic does.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// Parses a comma-separated list of `host`, `paths`, `tags` (empty: one group).
    pub fn parse(text: &str) -> Result<GroupBy, String> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => {
                    return Err(format!(
                        "cannot group by {other:?}: use host, paths and/or tags"
                    ));
                }
            }
        }
        Ok(g)
    }
}

/// What a group is, for display.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    /// Host, when grouping by host.
    pub host: Option<String>,
    /// Paths (sorted), when grouping by paths.
    pub paths: Option<Vec<Vec<u8>>>,
    /// Tags (sorted), when grouping by tags.
    pub tags: Option<Vec<String>>,
}

/// The decision about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot.
    pub id: Id,
    /// Kept when non-empty: every rule that keeps it.
    pub reasons: Vec<KeepReason>,
}

impl Decision {
    /// True when some rule keeps the snapshot.
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The decisions for one group, newest snapshot first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDecision {
    /// The group.
    pub key: GroupKey,
    /// Its snapshots, newest first.
    pub decisions: Vec<Decision>,
}

fn group_key(s: &Snapshot, by: GroupBy) -> GroupKey {
    GroupKey {
        host: by.host.then(|| s.hostname.clone()),
        paths: by.paths.then(|| {
            let mut p = s.paths.clone();
            p.sort();
            p
        }),
        tags: by.tags.then(|| {
            let mut t = s.tags.clone();
            t.sort();
            t
        }),
    }
}

/// Bucket of a time for each calendar rule, in `tz`.
fn buckets(ts: jiff::Timestamp, tz: &TimeZone) -> [i64; 5] {
    let z = ts.to_zoned(tz.clone());
    let (y, m, d, h) = (
        i64::from(z.year()),
        i64::from(z.month()),
        i64::from(z.day()),
        i64::from(z.hour()),
    );
    let week = z.date().iso_week_date();
    [
        ((y * 100 + m) * 100 + d) * 100 + h,
        (y * 100 + m) * 100 + d,
        i64::from(week.year()) * 100 + i64::from(week.week()),
        y * 100 + m,
        y,
    ]
}

fn jiff_time(s: &Snapshot) -> jiff::Timestamp {
    jiff::Timestamp::new(s.time.secs, s.time.nanos as i32).unwrap_or(if s.time.secs < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    })
}

/// Applies `policy` to `snapshots`, grouped by `by`, with calendar rules in `tz`.
pub fn apply(
    policy: &KeepPolicy,
    snapshots: &[(Id, Snapshot)],
    by: GroupBy,
    tz: &TimeZone,
) -> Vec<GroupDecision> {
    let mut groups: BTreeMap<GroupKey, Vec<&(Id, Snapshot)>> = BTreeMap::new();
    for s in snapshots {
        groups.entry(group_key(&s.1, by)).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(key, mut members)| {
            // Newest first. Of snapshots taken at the same time, a repaired replacement (which
            // keeps its original's time) comes before the original, so a policy that keeps
            // one of them keeps the repaired one; then ids, so the result does not depend on
            // input order.
            members.sort_by(|a, b| {
                b.1.time
                    .cmp(&a.1.time)
                    .then(b.1.original.is_some().cmp(&a.1.original.is_some()))
                    .then(b.0.cmp(&a.0))
            });
            GroupDecision {
                key,
                decisions: decide(policy, &members, tz),
            }
        })
        .collect()
}

fn decide(policy: &KeepPolicy, members: &[&(Id, Snapshot)], tz: &TimeZone) -> Vec<Decision> {
    let calendar = [
        (policy.hourly, KeepReason::Hourly),
        (policy.daily, KeepReason::Daily),
        (policy.weekly, KeepReason::Weekly),
        (policy.monthly, KeepReason::Monthly),
        (policy.yearly, KeepReason::Yearly),
    ];
    let mut left: Vec<u32> = calendar.iter().map(|(n, _)| n.unwrap_or(0)).collect();
    let mut last_bucket: [Option<i64>; 5] = [None; 5];
    let newest = members.first().map(|m| jiff_time(&m.1));
    let mut last_left = policy.last.unwrap_or(0);
    members
        .iter()
        .map(|(id, snap)| {
            let mut reasons = Vec::new();
            if policy.is_empty() {
                reasons.push(KeepReason::NoPolicy);
            }
            if last_left > 0 {
                last_left -= 1;
                reasons.push(KeepReason::Last);
            }
            let t = jiff_time(snap);
            let b = buckets(t, tz);
            for (i, (_, reason)) in calendar.iter().enumerate() {
                if left[i] > 0 && last_bucket[i] != Some(b[i]) {
                    left[i] -= 1;
                    last_bucket[i] = Some(b[i]);
                    reasons.push(reason.clone());
                }
            }
            if let (Some(within), Some(newest)) = (policy.within, newest) {
                let age = newest.duration_since(t);
                if age.unsigned_abs() < within || age.is_negative() {
                    reasons.push(KeepReason::Within);
                }
            }
            for tag in &policy.tags {
                if snap.tags.iter().any(|t| t == tag) {
                    reasons.push(KeepReason::Tag(tag.clone()));
                }
            }
            Decision { id: *id, reasons }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use zaibei_format::{SnapshotSummary, Timestamp};

    fn snap(n: u8, iso: &str, host: &str, tags: &[&str]) -> (Id, Snapshot) {
        let t: jiff::Timestamp = iso.parse().unwrap();
        (
            Id([n; 32]),
            Snapshot {
                time: Timestamp {
                    secs: t.as_second(),
                    nanos: 0,
                },
                tree: Id([0; 32]),
                paths: vec![b"/data".to_vec()],
                hostname: host.into(),
                username: "root".into(),
                uid: 0,
                gid: 0,
                tags: tags.iter().map(|s| s.to_string()).collect(),
                parent: None,
                program: "test".into(),
                excludes: vec![],
                summary: SnapshotSummary::default(),
                original: None,
            },
        )
    }

    fn kept(groups: &[GroupDecision]) -> Vec<u8> {
        let mut v: Vec<u8> = groups
            .iter()
            .flat_map(|g| g.decisions.iter())
            .filter(|d| d.keep())
            .map(|d| d.id.0[0])
            .collect();
        v.sort();
        v
    }

    /// Two snapshots a day, at 03:00 and 15:00 UTC, for 40 days from 2026-01-01.
    fn series() -> Vec<(Id, Snapshot)> {
        let mut v = Vec::new();
        let start: jiff::Timestamp = "2026-01-01T03:00:00Z".parse().unwrap();
        for i in 0..80u8 {
            let t = start
                .checked_add(jiff::SignedDuration::from_hours(12 * i64::from(i)))
                .unwrap();
            v.push(snap(i, &t.to_string(), "h", &[]));
        }
        v
    }

    #[test]
    fn a_repaired_replacement_wins_over_its_original() {
        let original = snap(200, "2026-03-01T03:00:00Z", "h", &[]);
        let mut repaired = snap(1, "2026-03-01T03:00:00Z", "h", &["repaired"]);
        repaired.1.original = Some(original.0);
        let s = vec![original, repaired];
        for policy in [
            KeepPolicy {
                last: Some(1),
                ..Default::default()
            },
            KeepPolicy {
                daily: Some(1),
                ..Default::default()
            },
        ] {
            let g = apply(&policy, &s, GroupBy::default(), &TimeZone::UTC);
            assert_eq!(kept(&g), vec![1], "{policy:?}");
        }
    }

    #[test]
    fn no_policy_keeps_everything() {
        let s = series();
        let g = apply(
            &KeepPolicy::default(),
            &s,
            GroupBy::default(),
            &TimeZone::UTC,
        );
        assert_eq!(kept(&g).len(), 80);
        assert!(
            g[0].decisions
                .iter()
                .all(|d| d.reasons == [KeepReason::NoPolicy])
        );
    }

    #[test]
    fn last_and_daily() {
        let s = series();
        let p = KeepPolicy {
            last: Some(3),
            daily: Some(5),
            ..KeepPolicy::default()
        };
        let g = apply(&p, &s, GroupBy::default(), &TimeZone::UTC);
        // Newest three (79, 78, 77), and the newest of each of the last five days: the 15:00
        // ones of days 39..35 (79, 77, 75, 73, 71).
        assert_eq!(kept(&g), vec![71, 73, 75, 77, 78, 79]);
        let d79 = &g[0].decisions[0];
        assert_eq!(d79.reasons, vec![KeepReason::Last, KeepReason::Daily]);
    }

    #[test]
    fn days_follow_the_time_zone() {
        // 20:00 UTC on the 1st and 03:00 UTC on the 2nd are two days in UTC but one day
        // (04:00 and 11:00 on the 2nd) in UTC+8.
        let s = vec![
            snap(1, "2026-03-01T20:00:00Z", "h", &[]),
            snap(2, "2026-03-02T03:00:00Z", "h", &[]),
        ];
        let p = KeepPolicy {
            daily: Some(2),
            ..KeepPolicy::default()
        };
        let utc = apply(&p, &s, GroupBy::default(), &TimeZone::UTC);
        assert_eq!(kept(&utc), vec![1, 2]);
        let shanghai = TimeZone::fixed(jiff::tz::offset(8));
        let cn = apply(&p, &s, GroupBy::default(), &shanghai);
        assert_eq!(kept(&cn), vec![2], "one day in UTC+8: only its newest");
    }

    #[test]
    fn weekly_monthly_yearly_within_and_tags() {
        let s = series();
        let p = KeepPolicy {
            weekly: Some(2),
            ..KeepPolicy::default()
        };
        // 2026-02-09 (day 39) is a Monday: ISO weeks 7 (Feb 9) and 6 (Feb 2-8).
        let g = apply(&p, &s, GroupBy::default(), &TimeZone::UTC);
        assert_eq!(kept(&g), vec![77, 79]);

        let p = KeepPolicy {
            monthly: Some(12),
            yearly: Some(1),
            ..KeepPolicy::default()
        };
        let g = apply(&p, &s, GroupBy::default(), &TimeZone::UTC);
        // Newest of February (79) and of January (61: Jan 31 15:00).
        assert_eq!(kept(&g), vec![61, 79]);

        let p = KeepPolicy {
            within: Some(Duration::from_secs(36 * 3600)),
            ..KeepPolicy::default()
        };
        let g = apply(&p, &s, GroupBy::default(), &TimeZone::UTC);
        assert_eq!(kept(&g), vec![77, 78, 79]);

        let mut s = series();
        s[10].1.tags = vec!["audit".into()];
        let p = KeepPolicy {
            last: Some(1),
            tags: vec!["audit".into()],
            ..KeepPolicy::default()
        };
        let g = apply(&p, &s, GroupBy::default(), &TimeZone::UTC);
        assert_eq!(kept(&g), vec![10, 79]);
    }

    #[test]
    fn groups_are_judged_apart() {
        let s = vec![
            snap(1, "2026-03-01T00:00:00Z", "a", &[]),
            snap(2, "2026-03-02T00:00:00Z", "a", &[]),
            snap(3, "2026-03-01T00:00:00Z", "b", &[]),
        ];
        let p = KeepPolicy {
            last: Some(1),
            ..KeepPolicy::default()
        };
        assert_eq!(
            kept(&apply(&p, &s, GroupBy::default(), &TimeZone::UTC)),
            vec![2, 3]
        );
        let one = GroupBy::parse("").unwrap();
        assert_eq!(kept(&apply(&p, &s, one, &TimeZone::UTC)), vec![2]);
        assert!(GroupBy::parse("host,colour").is_err());
    }

    proptest::proptest! {
        /// Every snapshot is decided exactly once, the newest of each group is kept by any
        /// count rule, and adding a rule never removes a kept snapshot.
        #[test]
        fn decisions_are_complete_and_monotone(
            times in proptest::collection::vec(0i64..4_000_000_000, 1..60),
            last in 0u32..5, daily in 0u32..5, monthly in 0u32..3,
        ) {
            let s: Vec<(Id, Snapshot)> = times.iter().enumerate().map(|(i, t)| {
                let mut x = snap(i as u8, "2026-01-01T00:00:00Z", if i % 3 == 0 { "a" } else { "b" }, &[]);
                x.1.time.secs = *t;
                x
            }).collect();
            let p = KeepPolicy { last: Some(last.max(1)), daily: Some(daily), ..KeepPolicy::default() };
            let g = apply(&p, &s, GroupBy::default(), &TimeZone::UTC);
            let n: usize = g.iter().map(|g| g.decisions.len()).sum();
            proptest::prop_assert_eq!(n, s.len());
            for grp in &g {
                proptest::prop_assert!(grp.decisions[0].keep());
            }
            let more = KeepPolicy { monthly: Some(monthly), ..p.clone() };
            let g2 = apply(&more, &s, GroupBy::default(), &TimeZone::UTC);
            let k1 = kept(&g);
            let k2 = kept(&g2);
            proptest::prop_assert!(k1.iter().all(|id| k2.contains(id)));
        }
    }
}
