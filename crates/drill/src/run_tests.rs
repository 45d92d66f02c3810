//! Whole drills on a real repository in memory: a healthy one, one with targets, and one
//! with a damaged data pack.

use std::fs;
use std::time::Duration;

use zaibei_format::{NodeKind, PackKind};

use super::*;
use crate::fixture::{FILES, Fixture, backup_path};
use crate::report::{CauseCounts, CheckStatus, FailureCause, FailurePhase};

/// A download counter for one test: 100 bytes when first read, 250 after.
fn downloaded() -> u64 {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => 100,
        _ => 250,
    }
}

fn options(f: &Fixture, keep: bool) -> DrillOptions {
    DrillOptions {
        selection: Selection::default(),
        scratch: Scratch::fresh(Some(f.dir.path()), keep).unwrap(),
        restore_workers: 2,
        verify_workers: 2,
        rto_target: None,
        rpo_target: None,
        rpo_window: Duration::from_secs(crate::rpo::DEFAULT_WINDOW_SECONDS),
        downloaded: None,
        offsite: OffsiteFacts::default(),
        past_drills: (4, 3),
        program: "zaibei test".into(),
        drill_host: "drill-host".into(),
    }
}

async fn drill(f: &Fixture, opts: DrillOptions) -> DrillRun {
    let clock = Stopwatch::start();
    let repo = f.open().await;
    run_drill(repo, clock, opts, &Quiet).await.unwrap()
}

/// Changes the source and backs it up again: two snapshots in the group.
async fn second_backup(f: &mut Fixture) -> zaibei_archive::backup::BackupOutcome {
    fs::write(f.source.join("small"), b"changed between the backups\n").unwrap();
    fs::write(f.source.join("new"), b"a new file\n").unwrap();
    let out = backup_path(&f.repo, &f.source).await;
    f.reindex().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_repository_passes_with_measured_figures() {
    let mut f = Fixture::new().await;
    let second = second_backup(&mut f).await;
    let run = drill(&f, options(&f, false)).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(!run.found_damage());
    let r = &run.report;
    assert_eq!(r.status, DrillStatus::Passed, "{r:#?}");
    assert!(r.passed && r.recovered);
    assert_eq!(r.snapshot.id, second.snapshot_id.to_hex());
    assert!(
        r.drill_id.ends_with(&second.snapshot_id.short()),
        "{}",
        r.drill_id
    );
    // Every file of the newest snapshot verified.
    assert_eq!(r.verification.files_expected, FILES + 1);
    assert_eq!(r.verification.files_verified, FILES + 1);
    assert_eq!(r.verification.failures_total, 0);
    assert_eq!(r.rto.files_restored, FILES + 1);
    // The phases in order, adding up to the RTO.
    let phases: Vec<Phase> = r.rto.phases.iter().map(|p| p.phase).collect();
    assert_eq!(phases, Phase::ALL);
    let sum: f64 = r.rto.phases.iter().map(|p| p.seconds).sum();
    assert!(
        (sum - r.rto.seconds).abs() < 1e-6,
        "{sum} vs {}",
        r.rto.seconds
    );
    // RPO: two restorable snapshots; the gap is the difference of their times.
    let gap = f.first.snapshot.time.seconds_until(second.snapshot.time);
    assert_eq!(r.rpo.snapshots, 2);
    assert_eq!(r.rpo.restorable, 2);
    assert_eq!(r.rpo.worst_gap_seconds, Some(gap));
    assert_eq!(
        r.rpo.worst_gap_from.as_ref().map(|s| s.id.clone()),
        Some(f.first.snapshot_id.to_hex())
    );
    assert_eq!(r.rpo.group.hostname, "drill-test");
    // The assessment counts the history given plus this drill.
    let evidence = r
        .assessment
        .attest
        .iter()
        .find_map(|i| i.evidence.clone())
        .unwrap();
    assert!(evidence.contains("5 drills, 4 recovered"), "{evidence}");
    assert!(r.assessment.level >= 1, "{:#?}", r.assessment);
    assert_eq!(r.assessment.confirmed_level, 0, "off-site is not measured");
    // The scratch directory is gone.
    assert!(!r.scratch.kept);
    assert!(!std::path::Path::new(&r.scratch.path).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_judged_and_scratch_can_be_kept() {
    let f = Fixture::new().await;
    let mut opts = options(&f, true);
    opts.rto_target = Some(Duration::ZERO);
    opts.rpo_target = Some(Duration::from_secs(100 * 365 * 86_400));
    let run = drill(&f, opts).await;
    let r = &run.report;
    assert!(r.recovered);
    assert_eq!(r.status, DrillStatus::TargetsMissed);
    assert!(!r.passed);
    let rto = r.targets.rto.unwrap();
    assert!(!rto.met);
    assert_eq!(rto.measured_seconds, Some(r.rto.seconds));
    assert!(r.targets.rpo.unwrap().met);
    // One snapshot: no gap; its age is the RPO.
    assert_eq!(r.rpo.worst_gap_seconds, None);
    assert_eq!(r.rpo.rpo_seconds, r.rpo.newest_age_seconds);
    assert!(r.scratch.kept);
    let kept = std::path::Path::new(&r.scratch.path);
    let restored = kept.join(f.source.strip_prefix("/").unwrap()).join("small");
    assert_eq!(fs::read(restored).unwrap(), b"hello, drill\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_pack_fails_the_drill_naming_the_file_and_the_damage() {
    let mut f = Fixture::new().await;
    second_backup(&mut f).await;
    // Flip a byte in the middle of the stored record of the first blob of "big".
    let root = f.repo.load_tree(&f.first.snapshot.tree).await.unwrap();
    let mut tree = root;
    for name in f.source.strip_prefix("/").unwrap().iter() {
        let node = tree
            .nodes
            .iter()
            .find(|n| n.name == name.as_encoded_bytes())
            .unwrap();
        tree = f.repo.load_tree(&node.subtree.unwrap()).await.unwrap();
    }
    let big = tree.nodes.iter().find(|n| n.name == b"big").unwrap();
    assert_eq!(big.kind, NodeKind::File);
    let loc = f.repo.locate(PackKind::Data, &big.content[0]).unwrap();
    let name = zaibei_repo::names::pack(&loc.pack.id);
    let mut bytes = f.store.get(&name).await.unwrap().to_vec();
    let at = usize::try_from(loc.offset + loc.length / 2).unwrap();
    bytes[at] ^= 0xff;
    f.store.put(&name, bytes.into()).await.unwrap();

    let mut opts = options(&f, false);
    opts.downloaded = Some(downloaded);
    let run = drill(&f, opts).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(run.found_damage());
    assert_eq!(run.verdict(), Verdict::Damage);
    assert!(!run.failed_locally());
    // What tracing the failure read again is counted apart from the RTO's downloads.
    assert_eq!(run.report.rto.bytes_downloaded, Some(100));
    assert_eq!(run.report.verification.cause_bytes_downloaded, Some(150));
    assert_eq!(run.report.verification.failure_causes.repository_damage, 1);
    assert!(!run.report.verification.causes_incomplete);
    let r = &run.report;
    assert_eq!(r.status, DrillStatus::Failed);
    assert!(!r.recovered && !r.passed);
    let big_path = f.source.join("big").display().to_string();
    let failure = r
        .verification
        .failures
        .iter()
        .find(|x| x.path == big_path)
        .unwrap_or_else(|| panic!("{:#?}", r.verification));
    assert_eq!(failure.phase, FailurePhase::Restore);
    assert_eq!(failure.cause, FailureCause::RepositoryDamage);
    assert_eq!(
        r.verification.failures_total,
        r.verification.failures.len() as u64
    );
    assert_eq!(r.verification.files_verified, FILES);
    // The drilled snapshot does not count as restorable; the older one does.
    assert_eq!(r.rpo.restorable, 1);
    assert_eq!(r.rpo.not_restorable.len(), 1);
    assert_eq!(r.rpo.not_restorable[0].id, r.snapshot.id);
    assert_eq!(r.assessment.level, 0);
    assert!(
        r.assessment
            .checks
            .iter()
            .any(|c| c.requirement == "rto" && c.status == CheckStatus::NotMet)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_snapshot_is_an_error() {
    let f = Fixture::new().await;
    let mut opts = options(&f, false);
    opts.selection.hosts = vec!["elsewhere".into()];
    let repo = f.open().await;
    let e = run_drill(repo, Stopwatch::start(), opts, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(e, DrillError::NoSnapshot(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gap_counts_only_inside_the_rpo_window() {
    let mut f = Fixture::new().await;
    let second = second_backup(&mut f).await;
    // A snapshot named by id, and a window that ends before both snapshots were taken.
    let mut opts = options(&f, false);
    opts.selection.snapshot = Some(f.first.snapshot_id.to_hex());
    opts.rpo_window = Duration::ZERO;
    let run = drill(&f, opts).await;
    let r = &run.report;
    assert_eq!(run.verdict(), Verdict::Passed, "{r:#?}");
    assert_eq!(r.snapshot.id, f.first.snapshot_id.to_hex());
    assert_eq!(r.rpo.snapshots, 2);
    assert_eq!(r.rpo.window_seconds, Some(0.0));
    assert_eq!(r.rpo.restorable_in_window, Some(0));
    assert_eq!(r.rpo.worst_gap_seconds, None);
    assert_eq!(
        r.rpo.newest.as_ref().map(|n| n.id.clone()),
        Some(second.snapshot_id.to_hex())
    );
    assert_eq!(r.rpo.rpo_seconds, r.rpo.newest_age_seconds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_stops_at_the_first_bad_blob_and_within_its_budget() {
    let f = Fixture::new().await;
    let blobs = |name: &[u8]| {
        let repo = std::sync::Arc::clone(&f.repo);
        let source = f.source.clone();
        let tree = f.first.snapshot.tree;
        let name = name.to_vec();
        async move {
            let mut t = repo.load_tree(&tree).await.unwrap();
            for part in source.strip_prefix("/").unwrap().iter() {
                let node = t
                    .nodes
                    .iter()
                    .find(|n| n.name == part.as_encoded_bytes())
                    .unwrap();
                t = repo.load_tree(&node.subtree.unwrap()).await.unwrap();
            }
            t.nodes
                .iter()
                .find(|n| n.name == name)
                .unwrap()
                .content
                .clone()
        }
    };
    let big = blobs(b"big").await;
    assert!(big.len() > 1);
    let stored = |ids: &[zaibei_format::Id]| -> u64 {
        ids.iter()
            .map(|id| f.repo.locate(PackKind::Data, id).unwrap().length)
            .sum()
    };
    // Intact: local, every blob read once; a second failure needing them reads nothing.
    let mut t = cause::Tracer::new(&f.repo, u64::MAX);
    let needs = cause::Needs::Blobs(big.clone());
    assert_eq!(t.classify(&needs).await, FailureCause::Local);
    assert_eq!(t.bytes_read, stored(&big));
    assert_eq!(t.classify(&needs).await, FailureCause::Local);
    assert_eq!(t.bytes_read, stored(&big));
    assert!(!t.exhausted);
    // A budget too small for the file leaves it untraced.
    let mut small = cause::Tracer::new(&f.repo, stored(&big[..1]));
    assert_eq!(small.classify(&needs).await, FailureCause::Unknown);
    assert!(small.exhausted);
    assert_eq!(small.bytes_read, stored(&big[..1]));
    // A blob missing from the index first: damage, nothing read.
    let mut missing = vec![zaibei_format::Id([0xee; 32])];
    missing.extend_from_slice(&big);
    let mut d = cause::Tracer::new(&f.repo, u64::MAX);
    assert_eq!(
        d.classify(&cause::Needs::Blobs(missing)).await,
        FailureCause::RepositoryDamage
    );
    assert_eq!(d.bytes_read, 0);
}

#[test]
fn exit_verdicts_need_every_failure_traced() {
    let damaged = DrillRun {
        report: crate::testdata::failed_report("repo1", 1_000_000, "/srv/x"),
        error: None,
    };
    assert_eq!(damaged.verdict(), Verdict::Damage);
    let with_causes = |causes: CauseCounts, incomplete: bool| {
        let mut r = crate::testdata::failed_report("repo1", 1_000_000, "/srv/x");
        r.verification.failures.clear();
        r.verification.failures_total =
            causes.repository_damage + causes.store_unreachable + causes.local + causes.unknown;
        r.verification.failure_causes = causes;
        r.verification.causes_incomplete = incomplete;
        DrillRun {
            report: r,
            error: None,
        }
    };
    let local = CauseCounts {
        local: 3,
        ..Default::default()
    };
    assert_eq!(with_causes(local, false).verdict(), Verdict::LocalFailures);
    // Past the cap, damage might hide among the untraced failures.
    let capped = CauseCounts {
        local: 1000,
        unknown: 5,
        ..Default::default()
    };
    assert_eq!(with_causes(capped, true).verdict(), Verdict::Untraced);
    let unreachable = CauseCounts {
        local: 2,
        store_unreachable: 1,
        ..Default::default()
    };
    assert_eq!(with_causes(unreachable, false).verdict(), Verdict::Untraced);
    let untraced = CauseCounts {
        unknown: 1,
        ..Default::default()
    };
    assert_eq!(with_causes(untraced, false).verdict(), Verdict::Untraced);
    // Damage counts even when it is not among the failures listed.
    let hidden = CauseCounts {
        local: 1,
        repository_damage: 1,
        ..Default::default()
    };
    assert_eq!(with_causes(hidden, false).verdict(), Verdict::Damage);
    let passed = DrillRun {
        report: crate::testdata::report("repo1", 1_000_000, 3.0, "db", "/srv"),
        error: None,
    };
    assert_eq!(passed.verdict(), Verdict::Passed);
    let stopped = DrillRun {
        report: crate::testdata::report("repo1", 1_000_000, 3.0, "db", "/srv"),
        error: Some(DrillError::Internal("x".into())),
    };
    assert_eq!(stopped.verdict(), Verdict::Stopped);
}
