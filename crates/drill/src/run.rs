//! Running a drill: index → pick the snapshot → restore into scratch space → verify → RPO of
//! the history → assessment, with every phase timed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use zaibei_archive::progress::Counters;
use zaibei_archive::restore::{RestoreOptions, RestoreOutcome, restore};
use zaibei_format::{Id, PackKind, Snapshot, Timestamp};
use zaibei_repo::{IndexedRepository, Repository};

use crate::cause::{self, MAX_EXAMINED, MAX_REREAD_BYTES};
use crate::clock::{Phase, Stopwatch};
use crate::report::{
    CauseCounts, DrillReport, DrillStatus, Failure, FailureCause, FailurePhase,
    MAX_FAILURES_LISTED, OffsiteFacts, REPORT_VERSION, RepositoryInfo, RtoMeasure, ScratchInfo,
    SnapshotGroup, SnapshotInfo, TargetResult, Targets, Verification,
};
use crate::rpo::{self, Candidate};
use crate::scratch::Scratch;
use crate::select::Selection;
use crate::verify::{self, Problem, Verified};
use crate::{DrillError, assess, units};

/// What a drill is asked to do.
#[derive(Debug)]
pub struct DrillOptions {
    /// Which snapshot, and which snapshots the RPO is measured over.
    pub selection: Selection,
    /// Where to restore.
    pub scratch: Scratch,
    /// Restore writer threads (0: the number of CPUs).
    pub restore_workers: usize,
    /// Verify threads (0: the number of CPUs).
    pub verify_workers: usize,
    /// The RTO target, if any.
    pub rto_target: Option<Duration>,
    /// The RPO target, if any.
    pub rpo_target: Option<Duration>,
    /// The window of recent history the RPO's worst gap is measured over (older history is
    /// thinned by retention) ([`crate::rpo::DEFAULT_WINDOW_SECONDS`] is the usual choice).
    pub rpo_window: Duration,
    /// Reads the bytes downloaded from the store so far, when the caller counts them: read
    /// when the verification is complete, and again after the failures are traced.
    pub downloaded: Option<fn() -> u64>,
    /// Copies at other sites (empty: not measured).
    pub offsite: OffsiteFacts,
    /// Earlier drills of this repository: how many, and how many recovered everything.
    pub past_drills: (usize, usize),
    /// The program, for the report (`zaibei 0.1.0`).
    pub program: String,
    /// This machine's name.
    pub drill_host: String,
}

/// Told when each long phase starts, with the counters it updates (for progress display).
pub trait Observer: Send + Sync {
    /// `phase` (restore or verify) starts and will update `counters`.
    fn phase_started(&self, phase: Phase, counters: &Arc<Counters>);
    /// The phase that started last is over.
    fn phase_finished(&self);
}

/// An observer that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {
    fn phase_started(&self, _: Phase, _: &Arc<Counters>) {}
    fn phase_finished(&self) {}
}

/// A finished drill: its report, and the error that stopped it early, if any (the report
/// says so too).
#[derive(Debug)]
pub struct DrillRun {
    /// The report.
    pub report: DrillReport,
    /// The error that stopped the drill before it verified everything.
    pub error: Option<DrillError>,
}

/// How a drill ended, as an exit code sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything recovered, every target met.
    Passed,
    /// Everything recovered, a target missed.
    TargetsMissed,
    /// Entries failed, and every one was traced to a local failure: the repository holds
    /// them intact.
    LocalFailures,
    /// A failed entry was traced to damage of the repository.
    Damage,
    /// Entries failed, not all were traced to a local failure (the store could not be
    /// reached to trace them, or tracing stopped at its bounds), and none to damage: the
    /// repository may or may not hold them intact.
    Untraced,
    /// The drill stopped on an error before it verified everything ([`DrillRun::error`]).
    Stopped,
}

impl DrillRun {
    /// How the drill ended.
    pub fn verdict(&self) -> Verdict {
        if self.error.is_some() {
            Verdict::Stopped
        } else if self.found_damage() {
            Verdict::Damage
        } else if self.failed_locally() {
            Verdict::LocalFailures
        } else if !self.report.recovered {
            Verdict::Untraced
        } else if self.report.status == DrillStatus::TargetsMissed {
            Verdict::TargetsMissed
        } else {
            Verdict::Passed
        }
    }

    /// True when a failed entry was traced to damage of the repository, or the drill stopped
    /// on damage.
    pub fn found_damage(&self) -> bool {
        let v = &self.report.verification;
        self.error.as_ref().is_some_and(DrillError::is_integrity)
            || v.failure_causes.repository_damage > 0
            || v.failures
                .iter()
                .any(|f| f.cause == FailureCause::RepositoryDamage)
    }

    /// True when entries failed and every one of them was traced to a local failure: the
    /// repository holds them intact. False when the drill recovered everything, stopped on
    /// an error, or a failure is damage, met an unreachable store or was not traced.
    pub fn failed_locally(&self) -> bool {
        let v = &self.report.verification;
        self.error.is_none()
            && v.failures_total > 0
            && !v.causes_incomplete
            && v.failure_causes.local == v.failures_total
    }
}

/// Runs a drill on `repo`, opened by the caller after starting `clock` (the time to open is
/// the drill's first phase). Errors before a snapshot is chosen (index, listing, no
/// snapshot) are returned as errors; from the restore on, the drill always gives a report.
pub async fn run_drill(
    repo: Repository,
    mut clock: Stopwatch,
    opts: DrillOptions,
    observer: &dyn Observer,
) -> Result<DrillRun, DrillError> {
    clock.lap(Phase::Open);
    if !repo.keys().has_content() {
        return Err(DrillError::Usage(
            "a drill restores file data, which needs a full key; the repository was opened \
             with a maintenance-only key"
                .into(),
        ));
    }
    let repository = RepositoryInfo {
        id: repo.config().id.to_hex(),
        location: repo.store().location().to_owned(),
        suite: repo.suite().to_string(),
    };
    let repo = Arc::new(repo.load_index().await?);
    for p in repo.index_problems() {
        tracing::warn!("index object {} is unusable: {}", p.name, p.error);
    }
    clock.lap(Phase::Index);
    let list = repo.list_snapshots().await?;
    let (id, snapshot) = opts.selection.pick(&list.snapshots)?.clone();
    let group: Vec<(Id, Snapshot)> = opts
        .selection
        .group(&id, &snapshot, &list.snapshots)
        .into_iter()
        .cloned()
        .collect();
    clock.lap(Phase::Select);

    let mut run = Recovery {
        repo: &repo,
        opts: &opts,
        observer,
        clock,
        outcome: RestoreOutcome::default(),
        verified: Verified::default(),
        failures: Vec::new(),
        failures_total: 0,
        causes: CauseCounts::default(),
        causes_incomplete: false,
        downloaded_rto: None,
        cause_bytes: None,
    };
    let error = run.restore_and_verify(snapshot.tree).await.err();
    if run.downloaded_rto.is_none() {
        // Stopped before the verification was complete.
        run.downloaded_rto = opts.downloaded.map(|f| f());
    }
    let recovered = error.is_none() && run.failures_total == 0;
    let rto_seconds = run.clock.total().as_secs_f64();
    let started_at = run.clock.started_at();

    let candidates: Vec<Candidate> = group
        .iter()
        .map(|(gid, s)| Candidate {
            id: *gid,
            time: s.time,
            problem: restorable(&repo, s, (*gid == id).then_some(recovered)),
        })
        .collect();
    let rpo = rpo::measure(
        SnapshotGroup {
            hostname: snapshot.hostname.clone(),
            paths: sorted_paths(&snapshot),
            tags: opts.selection.tags.clone(),
        },
        &candidates,
        started_at,
        opts.rpo_window.as_secs_f64(),
        list.damaged.len() as u64,
    );
    let targets = Targets {
        rto: opts
            .rto_target
            .map(|t| judge(t, recovered.then_some(rto_seconds))),
        rpo: opts.rpo_target.map(|t| judge(t, rpo.rpo_seconds)),
    };
    let (past, past_recovered) = opts.past_drills;
    let assessment = assess::assess(
        &assess::Measured {
            recovered,
            rto_seconds,
            rpo: &rpo,
            drills: past + 1,
            drills_recovered: past_recovered + usize::from(recovered),
        },
        &opts.offsite,
    );
    let status = if !recovered {
        DrillStatus::Failed
    } else if targets.all_met() {
        DrillStatus::Passed
    } else {
        DrillStatus::TargetsMissed
    };
    let restore_secs = run.clock.seconds(Phase::Restore);
    let verify_secs = run.clock.seconds(Phase::Verify);
    let Recovery {
        outcome,
        verified,
        failures,
        failures_total,
        causes,
        causes_incomplete,
        downloaded_rto,
        cause_bytes,
        clock,
        ..
    } = run;
    let scratch_path = opts.scratch.path().display().to_string();
    let kept = match opts.scratch.finish() {
        Ok(kept) => kept,
        Err(e) => {
            tracing::warn!("{e}");
            true
        }
    };
    let report = DrillReport {
        version: REPORT_VERSION,
        drill_id: format!("{}-{}", units::compact(started_at), id.short()),
        program: opts.program,
        status,
        passed: status == DrillStatus::Passed,
        recovered,
        error: error.as_ref().map(ToString::to_string),
        started_at: units::rfc3339(started_at),
        finished_at: units::rfc3339(Timestamp::now()),
        drill_host: opts.drill_host,
        repository,
        snapshot: snapshot_info(&id, &snapshot),
        scratch: ScratchInfo {
            path: scratch_path,
            kept,
        },
        rto: RtoMeasure {
            seconds: rto_seconds,
            phases: clock.phases().to_vec(),
            files_restored: outcome.files_written,
            dirs_restored: outcome.dirs,
            others_restored: outcome.others,
            bytes_restored: outcome.bytes_written,
            restore_bytes_per_second: per_second(outcome.bytes_written, restore_secs),
            bytes_downloaded: downloaded_rto,
        },
        verification: Verification {
            files_expected: verified.files_expected,
            files_verified: verified.files_verified,
            bytes_verified: verified.bytes_verified,
            dirs_verified: verified.dirs_verified,
            others_verified: verified.others_verified,
            verify_bytes_per_second: per_second(verified.bytes_verified, verify_secs),
            failures_total,
            failure_causes: causes,
            causes_incomplete,
            cause_bytes_downloaded: cause_bytes,
            failures,
        },
        rpo,
        targets,
        assessment,
    };
    Ok(DrillRun { report, error })
}

fn per_second(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    }
}

fn judge(target: Duration, measured: Option<f64>) -> TargetResult {
    let t = target.as_secs_f64();
    TargetResult {
        target_seconds: t,
        measured_seconds: measured,
        met: measured.is_some_and(|m| m <= t),
    }
}

fn sorted_paths(s: &Snapshot) -> Vec<String> {
    let mut p: Vec<String> = s
        .paths
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    p.sort();
    p.dedup();
    p
}

/// Why a snapshot of the group is not restorable (`None`: it counts as restorable).
/// `drilled` is `Some(recovered)` for the snapshot the drill restored.
fn restorable(repo: &IndexedRepository, s: &Snapshot, drilled: Option<bool>) -> Option<String> {
    if drilled == Some(false) {
        return Some("this drill could not restore and verify it in full".into());
    }
    if !repo.index().contains(PackKind::Tree, &s.tree) {
        return Some(format!(
            "its root tree {} is not in the index",
            s.tree.short()
        ));
    }
    if !repo.index().contains(PackKind::Refs, &s.tree) {
        return Some(format!(
            "the reference blob of its root tree {} is not in the index",
            s.tree.short()
        ));
    }
    None
}

fn snapshot_info(id: &Id, s: &Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        id: id.to_hex(),
        short_id: id.short(),
        time: units::rfc3339(s.time),
        hostname: s.hostname.clone(),
        paths: s
            .paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
        tags: s.tags.clone(),
        total_files: s.summary.total_files,
        total_bytes: s.summary.total_bytes,
    }
}

/// The restore and verify phases and what they found.
struct Recovery<'a> {
    repo: &'a Arc<IndexedRepository>,
    opts: &'a DrillOptions,
    observer: &'a dyn Observer,
    clock: Stopwatch,
    outcome: RestoreOutcome,
    verified: Verified,
    failures: Vec<Failure>,
    failures_total: u64,
    causes: CauseCounts,
    causes_incomplete: bool,
    /// Bytes downloaded when the verification was complete.
    downloaded_rto: Option<u64>,
    /// Bytes downloaded to trace the failures.
    cause_bytes: Option<u64>,
}

impl Recovery<'_> {
    async fn restore_and_verify(&mut self, root: Id) -> Result<(), DrillError> {
        let counters = Arc::new(Counters::default());
        self.observer.phase_started(Phase::Restore, &counters);
        let restore_opts = RestoreOptions {
            target: self.opts.scratch.path().to_path_buf(),
            verify: false,
            workers: self.opts.restore_workers,
            ..Default::default()
        };
        let restored = restore(Arc::clone(self.repo), root, restore_opts, counters).await;
        self.observer.phase_finished();
        self.clock.lap(Phase::Restore);
        self.outcome = restored?;

        let counters = Arc::new(Counters::default());
        self.observer.phase_started(Phase::Verify, &counters);
        let repo = Arc::clone(self.repo);
        let target = self.opts.scratch.path().to_path_buf();
        let reported = self.outcome.errors.clone();
        let workers = match self.opts.verify_workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Handle::current();
        let verified = tokio::task::spawn_blocking(move || {
            verify::verify_tree(
                &repo, &runtime, root, &target, &reported, workers, &counters,
            )
        })
        .await
        .map_err(|e| DrillError::Internal(format!("verify: {e}")));
        self.observer.phase_finished();
        self.clock.lap(Phase::Verify);
        self.downloaded_rto = self.opts.downloaded.map(|f| f());
        let mut verified = verified??;
        let problems = std::mem::take(&mut verified.problems);
        self.verified = verified;
        self.record(problems).await;
        Ok(())
    }

    /// Turns problems (and restore failures the walk did not meet) into failures with their
    /// causes.
    async fn record(&mut self, mut problems: Vec<Problem>) {
        let seen: HashSet<Vec<u8>> = problems.iter().map(|p| p.path.clone()).collect();
        for (path, reason) in &self.outcome.errors {
            if !seen.contains(path) {
                problems.push(Problem {
                    path: path.clone(),
                    phase: FailurePhase::Restore,
                    reason: reason.clone(),
                    needs: cause::Needs::Unexamined,
                });
            }
        }
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        self.failures_total = problems.len() as u64;
        let mut tracer = cause::Tracer::new(self.repo, MAX_REREAD_BYTES);
        for (i, p) in problems.into_iter().enumerate() {
            let cause = if i < MAX_EXAMINED {
                tracer.classify(&p.needs).await
            } else {
                self.causes_incomplete = true;
                FailureCause::Unknown
            };
            self.causes.add(cause);
            if self.failures.len() < MAX_FAILURES_LISTED {
                self.failures.push(Failure {
                    path: String::from_utf8_lossy(&p.path).into_owned(),
                    phase: p.phase,
                    cause,
                    reason: p.reason,
                });
            }
        }
        if tracer.exhausted {
            self.causes_incomplete = true;
        }
        if let (Some(read), Some(before)) = (self.opts.downloaded, self.downloaded_rto) {
            self.cause_bytes = Some(read().saturating_sub(before));
        }
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;

/// Judges a finished drill again with facts about the other sites gathered after it, so that
/// reaching them does not count in the RTO. `past_drills`: drills in the history before this
/// one, and of those the ones that recovered everything.
pub fn reassess_with_offsite(
    report: &mut DrillReport,
    offsite: &OffsiteFacts,
    past_drills: (usize, usize),
) {
    let (past, past_recovered) = past_drills;
    report.assessment = assess::assess(
        &assess::Measured {
            recovered: report.recovered,
            rto_seconds: report.rto.seconds,
            rpo: &report.rpo,
            drills: past + 1,
            drills_recovered: past_recovered + usize::from(report.recovered),
        },
        offsite,
    );
}
