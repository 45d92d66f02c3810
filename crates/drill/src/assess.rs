//! The GB/T 20988 assessment: which capability level the measured figures support, on what
//! conditions, and what the next level needs.
//!
//! zaibei measures one of the seven elements, the data backup system (backup interval, and
//! off-site copies when site facts are given), and the RTO and RPO figures. Requirements it
//! cannot measure do not count against a level: they become its conditions
//! ([`Assessment::conditions`]), and `confirmed_level` says how far the figures go without
//! them. The six organisational elements are listed for the operator to attest.

use crate::levels::{BackupRequirement, Element, LEVELS, Level, NONE};
use crate::report::{
    Assessment, AttestItem, Check, CheckStatus, Missing, OffsiteFacts, OffsiteSite, RpoMeasure,
};
use crate::units;

/// The standard reports follow.
pub const STANDARD: &str = "GB/T 20988-2025";

/// How far behind a site's copy may be and still count as an off-site copy, in seconds, when
/// whether it holds the drilled snapshot is not known: the weekly full backup of levels 1
/// and 2.
pub const OFFSITE_MAX_LAG: u64 = 7 * 86_400;

/// What a drill measured, as the assessment needs it.
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    /// True when every entry was restored and verified.
    pub recovered: bool,
    /// The measured RTO in seconds.
    pub rto_seconds: f64,
    /// The RPO figures of the snapshot history.
    pub rpo: &'a RpoMeasure,
    /// Drills in the history, this one included.
    pub drills: usize,
    /// Of those, the ones that recovered everything.
    pub drills_recovered: usize,
}

fn check(level: u8, code: &str, zh: String, en: String, status: CheckStatus, m: String) -> Check {
    Check {
        level,
        requirement: code.into(),
        text_zh: zh,
        text_en: en,
        status,
        measured: m,
    }
}

fn rto_check(level: &Level, m: &Measured<'_>) -> Check {
    let (zh, en) = level.rto_range;
    let (text_zh, text_en) = (format!("RTO {zh}"), format!("RTO {en}"));
    let measured = units::duration(m.rto_seconds);
    let (status, detail) = if !m.recovered {
        (
            CheckStatus::NotMet,
            "the drill did not restore and verify every entry: the data was not recovered".into(),
        )
    } else {
        match level.rto_max {
            None => (
                CheckStatus::Met,
                format!("measured {measured}; the level sets no upper limit"),
            ),
            Some(max) if m.rto_seconds <= max as f64 => (
                CheckStatus::Met,
                format!(
                    "measured {measured}, within {}",
                    units::duration(max as f64)
                ),
            ),
            Some(max) => (
                CheckStatus::NotMet,
                format!("measured {measured}, over {}", units::duration(max as f64)),
            ),
        }
    };
    check(level.number, "rto", text_zh, text_en, status, detail)
}

fn rpo_check(level: &Level, m: &Measured<'_>) -> Check {
    let (zh, en) = level.rpo_range;
    let (text_zh, text_en) = (format!("RPO {zh}"), format!("RPO {en}"));
    let (status, detail) = match m.rpo.rpo_seconds {
        _ if level.rpo_max == 0 => (
            CheckStatus::NotMet,
            "RPO 0 means no data loss at all: it needs synchronous replication to a remote \
             site, which snapshot-based protection cannot reach"
                .to_owned(),
        ),
        None => (
            CheckStatus::NotMet,
            "no restorable snapshot in the group".to_owned(),
        ),
        Some(rpo) if rpo <= level.rpo_max as f64 => (
            CheckStatus::Met,
            format!(
                "measured {}, within {}",
                units::duration(rpo),
                units::duration(level.rpo_max as f64)
            ),
        ),
        Some(rpo) => (
            CheckStatus::NotMet,
            format!(
                "measured {}, over {}",
                units::duration(rpo),
                units::duration(level.rpo_max as f64)
            ),
        ),
    };
    check(level.number, "rpo", text_zh, text_en, status, detail)
}

/// An off-site copy: a reachable site that holds the drilled snapshot, or (when that is not
/// known) is at most [`OFFSITE_MAX_LAG`] behind. A site that merely answers proves nothing.
fn offsite_copy(sites: &[OffsiteSite]) -> (CheckStatus, String) {
    if sites.is_empty() {
        return (CheckStatus::NotMeasured, "no site facts given".into());
    }
    let reachable = || sites.iter().filter(|s| s.reachable);
    if let Some(s) = reachable().find(|s| s.holds_drilled == Some(true)) {
        return (
            CheckStatus::Met,
            format!(
                "site {} ({}) holds the drilled snapshot",
                s.name, s.location
            ),
        );
    }
    if let Some(s) = reachable()
        .find(|s| s.holds_drilled.is_none() && s.lag_seconds.is_some_and(|l| l <= OFFSITE_MAX_LAG))
    {
        return (
            CheckStatus::Met,
            format!(
                "site {} ({}) is {} behind",
                s.name,
                s.location,
                units::duration(s.lag_seconds.unwrap_or(0) as f64)
            ),
        );
    }
    if reachable().any(|s| s.holds_drilled.is_none() && s.lag_seconds.is_none()) {
        return (
            CheckStatus::NotMeasured,
            "what the reachable sites hold is not known".into(),
        );
    }
    if reachable().next().is_some() {
        return (
            CheckStatus::NotMet,
            format!(
                "no reachable site holds the drilled snapshot or is within {} of this repository",
                units::duration(OFFSITE_MAX_LAG as f64)
            ),
        );
    }
    (
        CheckStatus::NotMet,
        "no site holding a copy could be reached".into(),
    )
}

/// A standby site at most `max_lag` seconds behind: met, not met, or not measured.
fn lag_status(sites: &[OffsiteSite], max_lag: u64) -> (CheckStatus, String) {
    if sites.is_empty() {
        return (CheckStatus::NotMeasured, "no site facts given".into());
    }
    if let Some(s) = sites
        .iter()
        .find(|s| s.reachable && s.lag_seconds.is_some_and(|l| l <= max_lag))
    {
        let lag = s.lag_seconds.unwrap_or(0) as f64;
        return (
            CheckStatus::Met,
            format!("site {} is {} behind", s.name, units::duration(lag)),
        );
    }
    if sites.iter().any(|s| s.reachable && s.lag_seconds.is_none()) {
        return (
            CheckStatus::NotMeasured,
            "a reachable site's lag is not measured".into(),
        );
    }
    (
        CheckStatus::NotMet,
        format!(
            "no reachable site within {} of this repository",
            units::duration(max_lag as f64)
        ),
    )
}

fn backup_check(
    level: u8,
    req: BackupRequirement,
    m: &Measured<'_>,
    sites: &[OffsiteSite],
) -> Check {
    let (status, detail) = match req {
        BackupRequirement::FullBackupEvery(interval) => {
            let every = units::duration(interval as f64);
            match (m.rpo.newest_age_seconds, m.rpo.worst_gap_seconds) {
                (None, _) => (
                    CheckStatus::NotMet,
                    "no restorable snapshot in the group".to_owned(),
                ),
                (Some(age), _) if age > interval as f64 => (
                    CheckStatus::NotMet,
                    format!(
                        "the newest restorable snapshot is {} old, over {every}",
                        units::duration(age)
                    ),
                ),
                (Some(age), None) => (
                    CheckStatus::NotMeasured,
                    format!(
                        "one restorable snapshot ({} old) shows no interval",
                        units::duration(age)
                    ),
                ),
                (Some(_), Some(gap)) if gap <= interval as f64 => (
                    CheckStatus::Met,
                    format!("worst gap {}, within {every}", units::duration(gap)),
                ),
                (Some(_), Some(gap)) => (
                    CheckStatus::NotMet,
                    format!("worst gap {}, over {every}", units::duration(gap)),
                ),
            }
        }
        BackupRequirement::OffsiteCopy => offsite_copy(sites),
        BackupRequirement::BatchTransfer(max) | BackupRequirement::RealTimeReplication(max) => {
            lag_status(sites, max)
        }
        BackupRequirement::ZeroLoss => (
            CheckStatus::NotMet,
            "snapshot-based protection loses what changed since the last snapshot; zero loss \
             needs synchronous (continuous) replication to a remote cluster, which zaibei does \
             not provide"
                .into(),
        ),
    };
    check(
        level,
        req.code(),
        req.text_zh(),
        req.text_en(),
        status,
        detail,
    )
}

fn level_checks(level: &Level, m: &Measured<'_>, sites: &[OffsiteSite]) -> Vec<Check> {
    let mut v = vec![rto_check(level, m), rpo_check(level, m)];
    for &req in level.backup {
        v.push(backup_check(level.number, req, m, sites));
    }
    v
}

fn attest_items(level: &Level, m: &Measured<'_>) -> Vec<AttestItem> {
    Element::ORGANISATIONAL
        .iter()
        .zip(level.organisational)
        .map(|(&element, (zh, en))| AttestItem {
            element,
            element_zh: element.name_zh().into(),
            element_en: element.name_en().into(),
            level: level.number,
            requirement_zh: zh.into(),
            requirement_en: en.into(),
            evidence: match element {
                Element::OperationsManagement | Element::DrPlan => Some(format!(
                    "zaibei drill history: {} drills, {} recovered every entry (this one {})",
                    m.drills,
                    m.drills_recovered,
                    if m.recovered { "did" } else { "did not" }
                )),
                _ => None,
            },
        })
        .collect()
}

/// Judges the measured figures against levels 1 to 6.
pub fn assess(m: &Measured<'_>, offsite: &OffsiteFacts) -> Assessment {
    let sites = &offsite.sites;
    let per_level: Vec<Vec<Check>> = LEVELS.iter().map(|l| level_checks(l, m, sites)).collect();
    let mut level = 0u8;
    let mut confirmed = 0u8;
    for (l, checks) in LEVELS.iter().zip(&per_level) {
        if checks.iter().any(|c| c.status == CheckStatus::NotMet) {
            break;
        }
        level = l.number;
        if confirmed + 1 == l.number && checks.iter().all(|c| c.status == CheckStatus::Met) {
            confirmed = l.number;
        }
    }
    let current = LEVELS.iter().find(|l| l.number == level);
    let conditions: Vec<Check> = per_level
        .get(usize::from(level).wrapping_sub(1))
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c.status == CheckStatus::NotMeasured)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let next = LEVELS.iter().find(|l| l.number == level + 1);
    let mut missing_for_next = Vec::new();
    if let Some(next) = next {
        for c in &per_level[usize::from(next.number) - 1] {
            if c.status != CheckStatus::Met {
                let element = match c.requirement.as_str() {
                    "rto" | "rpo" => None,
                    _ => Some(Element::DataBackupSystem),
                };
                missing_for_next.push(Missing {
                    element,
                    requirement: c.requirement.clone(),
                    status: c.status,
                    text_zh: c.text_zh.clone(),
                    text_en: format!("{} ({})", c.text_en, c.measured),
                });
            }
        }
        for item in attest_items(next, m) {
            if (item.requirement_zh.as_str(), item.requirement_en.as_str()) == NONE {
                continue;
            }
            missing_for_next.push(Missing {
                element: Some(item.element),
                requirement: "attest".into(),
                status: CheckStatus::NotMeasured,
                text_zh: format!("{}：{}", item.element_zh, item.requirement_zh),
                text_en: format!(
                    "{}: {} (for the operator to attest)",
                    item.element_en, item.requirement_en
                ),
            });
        }
    }
    let attest = attest_items(current.unwrap_or(&LEVELS[0]), m);
    let mut notes = vec![
        "RTO here is the time to open the repository, restore this snapshot and verify it on \
         the drill machine. The standard's RTO covers the whole recovery of the service \
         (standby systems, network, switch-over): add those to judge the level."
            .to_owned(),
        "Level definitions follow GB/T 20988-2007 Annex A and its RTO/RPO table, as carried \
         into GB/T 20988-2025; check them against the standard's text before an audit."
            .to_owned(),
    ];
    if sites.is_empty() {
        notes.push(
            "Off-site copies and transfer to a standby site were not measured: no site facts \
             were given."
                .to_owned(),
        );
    }
    Assessment {
        standard: STANDARD.into(),
        level,
        level_name_zh: current.map(|l| l.name_zh.to_owned()).unwrap_or_default(),
        level_name_en: current.map(|l| l.name_en.to_owned()).unwrap_or_default(),
        confirmed_level: confirmed,
        conditions,
        next_level: next.map(|l| l.number),
        missing_for_next,
        checks: per_level.into_iter().flatten().collect(),
        attest,
        offsite_measured: !sites.is_empty(),
        offsite_sites: sites.clone(),
        notes,
    }
}

#[cfg(test)]
#[path = "assess_tests.rs"]
mod tests;
