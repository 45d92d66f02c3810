//! Tests of the assessment: levels at their exact thresholds.

use super::*;

const MIN: f64 = 60.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;

/// RPO figures with the given worst gap and newest age.
fn rpo(gap: Option<f64>, age: f64) -> RpoMeasure {
    RpoMeasure {
        snapshots: if gap.is_some() { 5 } else { 1 },
        restorable: if gap.is_some() { 5 } else { 1 },
        worst_gap_seconds: gap,
        newest_age_seconds: Some(age),
        rpo_seconds: Some(age.max(gap.unwrap_or(0.0))),
        ..Default::default()
    }
}

fn measured(rpo: &RpoMeasure, rto: f64) -> Measured<'_> {
    Measured {
        recovered: true,
        rto_seconds: rto,
        rpo,
        drills: 3,
        drills_recovered: 2,
    }
}

fn site(lag: Option<u64>, reachable: bool) -> OffsiteFacts {
    OffsiteFacts {
        sites: vec![OffsiteSite {
            name: "dr-b".into(),
            location: "Guiyang".into(),
            lag_seconds: lag,
            holds_drilled: (reachable && lag.is_some()).then_some(true),
            reachable,
        }],
    }
}

fn status(a: &Assessment, level: u8, code: &str) -> CheckStatus {
    a.checks
        .iter()
        .find(|c| c.level == level && c.requirement == code)
        .map(|c| c.status)
        .unwrap_or_else(|| panic!("no check {code} at level {level}"))
}

#[test]
fn rpo_exactly_at_each_limit_supports_the_level_and_just_over_does_not() {
    let far = site(Some(60), true);
    // 30 minutes exactly: level 5.
    let r = rpo(Some(30.0 * MIN), 10.0 * MIN);
    let a = assess(&measured(&r, 10.0 * MIN), &far);
    assert_eq!(a.level, 5, "{a:#?}");
    assert_eq!(a.confirmed_level, 5);
    // A millisecond over: level 4.
    let r = rpo(Some(30.0 * MIN + 0.001), 10.0 * MIN);
    let a = assess(&measured(&r, 10.0 * MIN), &far);
    assert_eq!(a.level, 4);
    assert_eq!(status(&a, 5, "rpo"), CheckStatus::NotMet);
    // One day exactly: level 4; a second over: level 2 (levels 3 and 4 both need a day).
    let r = rpo(Some(DAY), HOUR);
    assert_eq!(assess(&measured(&r, HOUR), &far).level, 4);
    let r = rpo(Some(DAY + 1.0), HOUR);
    let a = assess(&measured(&r, HOUR), &far);
    assert_eq!(a.level, 2);
    assert_eq!(status(&a, 3, "full_backup_interval"), CheckStatus::NotMet);
    // Seven days exactly: level 2; a second over: nothing.
    let r = rpo(Some(7.0 * DAY), HOUR);
    assert_eq!(assess(&measured(&r, HOUR), &far).level, 2);
    let r = rpo(Some(7.0 * DAY + 1.0), HOUR);
    let a = assess(&measured(&r, HOUR), &far);
    assert_eq!(a.level, 0);
    assert_eq!(a.level_name_en, "");
    assert_eq!(a.next_level, Some(1));
}

#[test]
fn rto_limits_apply_from_level_4() {
    let far = site(Some(60), true);
    let r = rpo(Some(20.0 * MIN), MIN);
    assert_eq!(assess(&measured(&r, 2.0 * DAY), &far).level, 5);
    let a = assess(&measured(&r, 2.0 * DAY + 0.5), &far);
    assert_eq!(a.level, 3);
    assert_eq!(status(&a, 4, "rto"), CheckStatus::NotMet);
    // Levels 1 to 3 set no RTO limit.
    assert_eq!(status(&a, 3, "rto"), CheckStatus::Met);
}

#[test]
fn standby_lag_at_the_transfer_and_replication_limits() {
    let r = rpo(Some(20.0 * MIN), MIN);
    let m = measured(&r, MIN);
    assert_eq!(assess(&m, &site(Some(30 * 60), true)).confirmed_level, 5);
    let a = assess(&m, &site(Some(30 * 60 + 1), true));
    assert_eq!(a.level, 4);
    assert_eq!(status(&a, 5, "real_time_replication"), CheckStatus::NotMet);
    assert_eq!(assess(&m, &site(Some(12 * 3600), true)).level, 4);
    assert_eq!(assess(&m, &site(Some(12 * 3600 + 1), true)).level, 2);
    // An unreachable site holds no usable copy.
    let a = assess(&m, &site(Some(0), false));
    assert_eq!(a.level, 0);
    assert_eq!(status(&a, 1, "offsite_copy"), CheckStatus::NotMet);
    // A reachable site whose lag and holdings are unknown leaves the copy and the transfer
    // unmeasured.
    let a = assess(&m, &site(None, true));
    assert_eq!(a.level, 5);
    assert_eq!(a.confirmed_level, 0);
    assert_eq!(status(&a, 1, "offsite_copy"), CheckStatus::NotMeasured);
    assert_eq!(
        status(&a, 3, "batch_transfer_to_standby"),
        CheckStatus::NotMeasured
    );
}

#[test]
fn without_site_facts_offsite_is_not_measured_and_a_condition() {
    let r = rpo(Some(6.0 * HOUR), HOUR);
    let a = assess(&measured(&r, 5.0 * MIN), &OffsiteFacts::default());
    assert_eq!(a.level, 4);
    assert_eq!(a.confirmed_level, 0);
    assert!(!a.offsite_measured);
    let codes: Vec<&str> = a
        .conditions
        .iter()
        .map(|c| c.requirement.as_str())
        .collect();
    assert_eq!(codes, ["offsite_copy", "batch_transfer_to_standby"]);
    assert!(a.notes.iter().any(|n| n.contains("not measured")));
    // The next level needs real-time replication and a 30-minute RPO.
    let missing: Vec<&str> = a
        .missing_for_next
        .iter()
        .map(|m| m.requirement.as_str())
        .collect();
    assert!(missing.contains(&"rpo"), "{missing:?}");
    assert!(missing.contains(&"real_time_replication"), "{missing:?}");
    assert_eq!(missing.iter().filter(|m| **m == "attest").count(), 6);
}

#[test]
fn level_6_is_out_of_reach_and_says_why() {
    let r = rpo(Some(MIN), 1.0);
    let a = assess(&measured(&r, 30.0), &site(Some(0), true));
    assert_eq!(a.level, 5);
    assert_eq!(a.next_level, Some(6));
    let zero = a
        .missing_for_next
        .iter()
        .find(|m| m.requirement == "zero_data_loss")
        .unwrap_or_else(|| panic!("{a:#?}"));
    assert!(zero.text_en.contains("snapshot-based"), "{}", zero.text_en);
    assert_eq!(zero.status, CheckStatus::NotMet);
    assert!(
        a.missing_for_next
            .iter()
            .any(|m| m.requirement == "rpo" && m.text_en.contains("snapshot-based"))
    );
    assert_eq!(a.attest.len(), 6);
    assert!(a.attest.iter().all(|i| i.level == 5));
}

#[test]
fn a_failed_drill_supports_no_level() {
    let r = rpo(Some(MIN), 1.0);
    let mut m = measured(&r, 30.0);
    m.recovered = false;
    let a = assess(&m, &site(Some(0), true));
    assert_eq!(a.level, 0);
    assert_eq!(a.confirmed_level, 0);
    assert!(a.conditions.is_empty());
    assert_eq!(status(&a, 1, "rto"), CheckStatus::NotMet);
    // Attestation is listed for level 1; what level 1 does not require is not missing.
    assert!(a.attest.iter().all(|i| i.level == 1));
    assert_eq!(a.attest.len(), 6);
    let to_attest: Vec<Element> = a
        .missing_for_next
        .iter()
        .filter(|m| m.requirement == "attest")
        .filter_map(|m| m.element)
        .collect();
    assert_eq!(
        to_attest,
        [
            Element::StandbyInfrastructure,
            Element::OperationsManagement,
            Element::DrPlan
        ]
    );
    let evidence = a
        .attest
        .iter()
        .find(|i| i.element == Element::DrPlan)
        .and_then(|i| i.evidence.clone())
        .unwrap_or_default();
    assert!(evidence.contains("did not"), "{evidence}");
}

#[test]
fn one_snapshot_leaves_the_interval_unmeasured_but_an_old_one_fails_it() {
    let fresh = rpo(None, 10.0 * MIN);
    let a = assess(&measured(&fresh, MIN), &site(Some(60), true));
    assert_eq!(
        status(&a, 3, "full_backup_interval"),
        CheckStatus::NotMeasured
    );
    assert_eq!(a.level, 5);
    assert_eq!(a.confirmed_level, 0);
    let stale = rpo(None, 2.0 * DAY);
    let a = assess(&measured(&stale, MIN), &site(Some(60), true));
    assert_eq!(status(&a, 3, "full_backup_interval"), CheckStatus::NotMet);
    assert_eq!(a.level, 2);
    // No restorable snapshot at all.
    let none = RpoMeasure::default();
    let a = assess(&measured(&none, MIN), &site(Some(60), true));
    assert_eq!(a.level, 0);
}

#[test]
fn an_offsite_copy_must_hold_the_drilled_snapshot() {
    let r = rpo(Some(20.0 * MIN), MIN);
    let m = measured(&r, MIN);
    let with = |holds: Option<bool>, lag: Option<u64>| OffsiteFacts {
        sites: vec![OffsiteSite {
            name: "dr-b".into(),
            location: "Guiyang".into(),
            lag_seconds: lag,
            holds_drilled: holds,
            reachable: true,
        }],
    };
    // A reachable site that holds nothing (its lag is the age of this repository's oldest
    // snapshot) is no off-site copy.
    let empty = assess(&m, &with(Some(false), Some(400 * 86_400)));
    assert_eq!(status(&empty, 1, "offsite_copy"), CheckStatus::NotMet);
    assert_eq!(empty.level, 0);
    // Holding the drilled snapshot is enough for the copy, whatever the lag.
    let holds = assess(&m, &with(Some(true), Some(400 * 86_400)));
    assert_eq!(status(&holds, 1, "offsite_copy"), CheckStatus::Met);
    assert_eq!(holds.level, 2);
    // Holdings unknown: a bounded lag counts, a longer one does not.
    let near = assess(&m, &with(None, Some(OFFSITE_MAX_LAG)));
    assert_eq!(status(&near, 1, "offsite_copy"), CheckStatus::Met);
    let far = assess(&m, &with(None, Some(OFFSITE_MAX_LAG + 1)));
    assert_eq!(status(&far, 1, "offsite_copy"), CheckStatus::NotMet);
}
