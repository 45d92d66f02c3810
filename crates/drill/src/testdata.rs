//! Reports for the unit tests of the report forms and the history.

use crate::assess::{Measured, assess};
use crate::clock::{Phase, PhaseTime};
use crate::report::*;
use crate::rpo::{self, Candidate};
use zaibei_format::{Id, Timestamp};

/// A report of a drill of repository `repo` started at `secs`, with `rto` seconds of RTO;
/// `host` and `path` name the snapshot's host and path (hostile names welcome).
pub(crate) fn report(repo: &str, secs: i64, rto: f64, host: &str, path: &str) -> DrillReport {
    let start = Timestamp { secs, nanos: 0 };
    let candidates = [
        Candidate {
            id: Id([1; 32]),
            time: Timestamp {
                secs: secs - 7200,
                nanos: 0,
            },
            problem: None,
        },
        Candidate {
            id: Id([2; 32]),
            time: Timestamp {
                secs: secs - 600,
                nanos: 0,
            },
            problem: None,
        },
    ];
    let rpo = rpo::measure(
        SnapshotGroup {
            hostname: host.into(),
            paths: vec![path.into()],
            tags: Vec::new(),
        },
        &candidates,
        start,
        rpo::DEFAULT_WINDOW_SECONDS as f64,
        0,
    );
    let assessment = assess(
        &Measured {
            recovered: true,
            rto_seconds: rto,
            rpo: &rpo,
            drills: 1,
            drills_recovered: 1,
        },
        &OffsiteFacts::default(),
    );
    let phases = vec![
        PhaseTime {
            phase: Phase::Open,
            seconds: rto * 0.1,
        },
        PhaseTime {
            phase: Phase::Index,
            seconds: rto * 0.1,
        },
        PhaseTime {
            phase: Phase::Select,
            seconds: 0.0,
        },
        PhaseTime {
            phase: Phase::Restore,
            seconds: rto * 0.5,
        },
        PhaseTime {
            phase: Phase::Verify,
            seconds: rto * 0.3,
        },
    ];
    DrillReport {
        version: REPORT_VERSION,
        drill_id: format!("{}-02020202", crate::units::compact(start)),
        program: "zaibei test".into(),
        status: DrillStatus::Passed,
        passed: true,
        recovered: true,
        error: None,
        started_at: crate::units::rfc3339(start),
        finished_at: crate::units::rfc3339(start),
        drill_host: host.into(),
        repository: RepositoryInfo {
            id: repo.into(),
            location: format!("/srv/{path}"),
            suite: "gm".into(),
        },
        snapshot: SnapshotInfo {
            id: Id([2; 32]).to_hex(),
            short_id: Id([2; 32]).short(),
            time: crate::units::rfc3339(Timestamp {
                secs: secs - 600,
                nanos: 0,
            }),
            hostname: host.into(),
            paths: vec![path.into()],
            tags: vec!["nightly".into()],
            total_files: 3,
            total_bytes: 3000,
        },
        scratch: ScratchInfo {
            path: "/tmp/zaibei-drill-test".into(),
            kept: false,
        },
        rto: RtoMeasure {
            seconds: rto,
            phases,
            files_restored: 3,
            dirs_restored: 2,
            others_restored: 1,
            bytes_restored: 3000,
            restore_bytes_per_second: 6000.0,
            bytes_downloaded: Some(4000),
        },
        verification: Verification {
            files_expected: 3,
            files_verified: 3,
            bytes_verified: 3000,
            dirs_verified: 2,
            others_verified: 1,
            verify_bytes_per_second: 10_000.0,
            failures_total: 0,
            failure_causes: CauseCounts::default(),
            causes_incomplete: false,
            cause_bytes_downloaded: Some(0),
            failures: Vec::new(),
        },
        rpo,
        targets: Targets::default(),
        assessment,
    }
}

/// [`report`], failed on one file at `path`.
pub(crate) fn failed_report(repo: &str, secs: i64, path: &str) -> DrillReport {
    let mut r = report(repo, secs, 5.0, "db", "/srv");
    r.status = DrillStatus::Failed;
    r.passed = false;
    r.recovered = false;
    r.verification.files_verified = 2;
    r.verification.failures_total = 1;
    r.verification.failure_causes.repository_damage = 1;
    r.assessment = assess(
        &Measured {
            recovered: false,
            rto_seconds: 5.0,
            rpo: &r.rpo,
            drills: 1,
            drills_recovered: 0,
        },
        &OffsiteFacts::default(),
    );
    r.verification.failures = vec![Failure {
        path: path.into(),
        phase: FailurePhase::Restore,
        cause: FailureCause::RepositoryDamage,
        reason: "data blob 5b3b3fb9: authentication failed <b>".into(),
    }];
    r
}
