//! `zaibei watch`: continuous data protection.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use zaibei_archive::backup::{backup_unpublished, sources};
use zaibei_archive::progress::Counters;
use zaibei_archive::watch::{
    DebounceSettings, LONGEST, RootState, Step, Trigger, Watch, WatchOptions, below_roots,
    exclude_pattern,
};
use zaibei_format::{Id, SiteRecord, SiteRole, Snapshot, Timestamp};
use zaibei_repo::Repository;
use zaibei_repo::retention::{self, GroupBy, KeepPolicy};
use zaibei_store::Location;

use super::backup::SourceArgs;
use super::sync::{SiteSync, SyncRequest, sync_sites};
use crate::{Cli, exit, output};

/// How often the watched paths themselves are examined.
const ROOT_CHECK: Duration = Duration::from_secs(5);

/// How long a stop waits for the sync under way before cancelling it.
const SYNC_GRACE: Duration = Duration::from_secs(20);

/// The long help of `zaibei watch` (the command's entry in `commands/mod.rs` points here).
pub const LONG_ABOUT: &str = "Keep a series of snapshots of PATHs current: back up whenever \
they change.

Changes are noticed through inotify. After a change the watch waits until the paths have been \
quiet for --debounce, but no longer than --max-delay after the first change (so a tree that is \
never quiet is still backed up), then runs one cycle:

  1. an incremental backup of every PATH, as `zaibei backup PATH...` makes it (unchanged files \
are not read again); a snapshot equal to its parent is not stored, unless the parent is older \
than --heartbeat: then it is stored anyway, as a recovery point that shows the tree was checked;
  2. with --keep-* rules (which need --keep-within): the snapshots of this host and these PATHs \
(with --tag, only those carrying the tags) that no rule keeps are forgotten, as `zaibei forget` \
does, and fenced like it (a fenced forget is skipped with a warning). Retention is refused \
while the tree backed up is empty and it would forget a snapshot that is not (an unmounted \
disk, a wiped tree).

Unless --no-sync, when this repository is the primary of a set of sites, new snapshots are sent \
to every replica site, as `zaibei sync` does, in the background: backups go on while a sync \
runs (a long one, say the first copy to a new site), and snapshots stored meanwhile are sent by \
another sync as soon as it ends. One sync runs at a time.

Prune is NOT run by watch: run `zaibei prune` regularly (e.g. nightly) to free the space of \
forgotten snapshots.

The first cycle runs once the paths are quiet after the start. Every --rescan a cycle runs \
even without any event, to catch what notification missed: each backup walks the whole tree, \
so a missed event delays a change, it never loses it. A directory that cannot be watched \
(one the user may not read) is left out of the watch with a warning; its changes are found by \
the rescans. A failed cycle (storage unreachable) is retried 5 s later, then 10 s, ... up to 5 \
minutes; it never ends the watch. A watched PATH that vanishes, or whose filesystem changes \
(unmounted, or one mounted on it), holds the backups until it is back; a PATH that stays on its \
new filesystem for 10 s is backed up there from then on, unless it is an empty directory (an \
unmounted mount point). Filesystems mounted below a PATH are watched and backed up like the \
rest (with --one-file-system, backed up as empty mount points). The repository, its metadata \
cache and replicas on local disks are neither watched nor backed up when they lie below a PATH.

Ctrl-C or SIGTERM ends the watch after the cycle under way; a sync under way gets 20 s to end, \
then it is cancelled (the next sync resumes it). A second signal ends it at once. With --json, \
one line per cycle (\"message_type\": \"cycle\") says why it ran, the snapshot, files and bytes \
added, the time taken and what was forgotten; one line per sync (\"message_type\": \"sync\") \
says after which cycle it began, each site's result and lag, and when it ended.";

/// Keep snapshots of PATHs current from filesystem events (see [`LONG_ABOUT`]).
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Files and directories to protect.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// What to leave out and how to label the snapshots.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Back up once the paths have been quiet this long (e.g. 500ms, 2s).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub debounce: Duration,
    /// Back up at the latest this long after the first change, however busy the paths.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_delay: Duration,
    /// Back up after this long without any change reported (0s: never).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub rescan: Duration,
    /// Store a snapshot even when nothing changed once the previous one is this old, as a
    /// recovery point showing the tree was checked (0s: never). Stored by the cycles that run
    /// (a rescan at the latest).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// What to keep each cycle. --keep-within is required with any other rule: cycles run
    /// every minute or so, and without it a tree being encrypted or wiped would push every
    /// good snapshot out within a few cycles (and the next sync would carry those forgets to
    /// the replicas). Choose it longer than it may take to notice such damage (e.g. 2d).
    #[command(flatten)]
    pub keep: super::forget::KeepArgs,
    /// Do not send snapshots to the replica sites.
    #[arg(long)]
    pub no_sync: bool,
    /// Run one cycle once the paths have been quiet after the start (and the sync it calls
    /// for), then exit (for scripts and tests).
    #[arg(long)]
    pub once_settled: bool,
    /// File reading threads (default: number of CPUs).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

impl WatchArgs {
    /// Fails with a usage error naming the first option that makes no sense.
    fn check(&self) -> Result<()> {
        let usage = |m: String| Err(exit::WithCode(exit::USAGE, m).into());
        let policy = self.keep.policy();
        if !policy.is_empty() {
            match self.keep.keep_within {
                None => {
                    return usage(
                        "watch applies --keep-* rules every cycle: give --keep-within DURATION \
                         too (e.g. 2d), so that a tree being encrypted or wiped cannot push \
                         every good snapshot out within a few cycles"
                            .into(),
                    );
                }
                Some(w) if w.is_zero() => {
                    return usage("--keep-within must be longer than 0".into());
                }
                Some(_) => {}
            }
        }
        if self.heartbeat > LONGEST {
            return usage("--heartbeat: durations longer than 100 years are not supported".into());
        }
        Ok(())
    }

    fn timing(&self) -> DebounceSettings {
        DebounceSettings {
            quiet: self.debounce,
            max_delay: self.max_delay,
            rescan: (!self.rescan.is_zero()).then_some(self.rescan),
            ..DebounceSettings::default()
        }
    }
}

/// One cycle, as `--json` prints it.
#[derive(Serialize, Default)]
struct CycleReport {
    message_type: &'static str,
    /// Cycles since the start, this one included.
    cycle: u64,
    /// Why it ran: start, quiet, max_delay, overflow, rescan, retry, resumed.
    trigger: &'static str,
    /// Change notifications it covers.
    events: u64,
    /// Some changed paths.
    changed_paths: Vec<String>,
    /// Seconds from the first change it covers to its start.
    waited_seconds: Option<f64>,
    /// When it started.
    started: String,
    /// The snapshot stored (none when the backup failed, or nothing changed and no heartbeat
    /// was due).
    snapshot_id: Option<String>,
    /// Its parent.
    parent: Option<String>,
    /// Nothing changed since the parent.
    unchanged: bool,
    /// Nothing changed, but the parent was older than --heartbeat: stored anyway.
    heartbeat: bool,
    files_new: u64,
    files_changed: u64,
    files_unmodified: u64,
    dirs: u64,
    data_added: u64,
    data_added_packed: u64,
    skipped: u64,
    /// Seconds the backup took, up to the snapshot stored.
    backup_seconds: f64,
    /// When the snapshot was stored.
    published: Option<String>,
    /// Snapshots forgotten by the --keep-* rules.
    forgotten: Vec<String>,
    retention_error: Option<String>,
    /// Why the cycle failed; it is retried after `retry_in_seconds`.
    error: Option<String>,
    retry_in_seconds: Option<f64>,
    total_seconds: f64,
}

/// What the cycles share.
struct Ctx<'a> {
    cli: &'a Cli,
    args: &'a WatchArgs,
    repo: Repository,
    /// The watched paths, normalised as snapshots record them.
    paths: Vec<PathBuf>,
    path_bytes: Vec<Vec<u8>>,
    host: String,
    policy: KeepPolicy,
    /// Own paths below the watched ones: ignored and excluded.
    ignored: Vec<PathBuf>,
    /// Retention was skipped or failed: apply it even without a new snapshot.
    retention_behind: bool,
    /// The repository is a replica (warned once).
    replica_warned: bool,
    /// The tree of the latest backup holds no file and nothing else but directories.
    tree_empty: bool,
    /// This repository is the primary of a set of sites (as of the latest cycle).
    primary: bool,
    /// The site state could not be read in the latest cycle.
    site_error: bool,
}

/// True when a snapshot holds no file and nothing else but directories.
fn holds_nothing(s: &zaibei_format::SnapshotSummary) -> bool {
    s.total_files == 0 && s.files_new + s.files_changed + s.files_unmodified == 0 && s.others == 0
}

/// A sync running in the background of the cycles.
type SyncTask<'a> = Pin<Box<dyn Future<Output = SyncReport> + 'a>>;

/// One sync, as `--json` prints it.
#[derive(Serialize)]
struct SyncReport {
    message_type: &'static str,
    /// Syncs since the start, this one included.
    sync: u64,
    /// The latest cycle that had ended when it began: every snapshot stored by that cycle or
    /// an earlier one was there to be sent.
    after_cycle: u64,
    /// When it began.
    started: String,
    /// Each replica site's result, and its lag after the sync.
    sites: Vec<SiteSync>,
    /// Why it failed altogether (not the primary, fenced, site state unreadable).
    error: Option<String>,
    sync_seconds: f64,
    /// When it ended.
    synced: String,
}

impl SyncReport {
    /// True when some site is not up to date after it.
    fn behind(&self) -> bool {
        self.error.is_some()
            || self
                .sites
                .iter()
                .any(|s| s.error.is_some() || s.missing_after != Some(0))
    }
}

/// Every replica, objects read back; never a prune (see --help).
async fn sync_once(cli: &Cli, repo: Repository, n: u64, after_cycle: u64) -> SyncReport {
    let started = Instant::now();
    let began = output::time(Timestamp::now());
    let req = SyncRequest {
        verify: true,
        ..SyncRequest::default()
    };
    let (sites, error) = match sync_sites(cli, &repo, &req).await {
        Ok((_, sites)) => (sites, None),
        Err(e) => (Vec::new(), Some(exit::describe(&e))),
    };
    SyncReport {
        message_type: "sync",
        sync: n,
        after_cycle,
        started: began,
        sites,
        error,
        sync_seconds: started.elapsed().as_secs_f64(),
        synced: output::time(Timestamp::now()),
    }
}

/// The background syncs: at most one runs; new snapshots stored while it runs are sent by the
/// next one, started as soon as it ends.
struct Syncer<'a> {
    cli: &'a Cli,
    repo: Repository,
    running: Option<SyncTask<'a>>,
    /// Cycles stored snapshots (or a site is behind) since the running sync began.
    again: bool,
    /// The latest sync left a site behind: sync at the next cycle even without a new snapshot.
    behind: bool,
    /// Syncs started.
    count: u64,
    /// Cycles ended.
    cycles: u64,
}

impl<'a> Syncer<'a> {
    /// Asks for a sync: starts one, or one after the sync under way.
    fn want(&mut self) {
        if self.running.is_some() {
            self.again = true;
        } else {
            self.start();
        }
    }

    fn start(&mut self) {
        self.count += 1;
        self.again = false;
        tracing::info!("sync {} started, after cycle {}", self.count, self.cycles);
        self.running = Some(Box::pin(sync_once(
            self.cli,
            self.repo.clone(),
            self.count,
            self.cycles,
        )));
    }

    /// Waits for the running sync (forever when none runs). Cancel-safe.
    async fn finished(&mut self) -> SyncReport {
        match self.running.as_mut() {
            Some(task) => {
                let report = task.await;
                self.running = None;
                report
            }
            None => std::future::pending().await,
        }
    }

    /// Reports a sync that ended; starts the next one when snapshots wait for it.
    fn ended(&mut self, r: &SyncReport) -> Result<()> {
        self.behind = r.behind();
        for s in r.sites.iter().filter(|s| s.error.is_some()) {
            tracing::warn!(
                "site {} was not brought up to date: {}",
                s.site,
                s.error.as_deref().unwrap_or_default()
            );
        }
        if let Some(e) = &r.error {
            tracing::warn!("sync failed: {e}");
        }
        say_sync(self.cli, r)?;
        if self.again {
            self.start();
        }
        Ok(())
    }
}

/// Ctrl-C and SIGTERM, counted.
struct Shutdown {
    rx: tokio::sync::watch::Receiver<u32>,
}

impl Shutdown {
    fn listen() -> Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    s = int.recv() => if s.is_none() { return },
                    s = term.recv() => if s.is_none() { return },
                }
                tx.send_modify(|n| *n += 1);
                if *tx.borrow() == 1 {
                    tracing::warn!("stopping once no cycle runs (a second signal stops at once)");
                }
            }
        });
        Ok(Shutdown { rx })
    }

    fn count(&self) -> u32 {
        *self.rx.borrow()
    }

    /// Waits until `n` signals have come.
    async fn reached(&self, n: u32) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|c| *c >= n).await.is_err() {
            // The listener ended: no signal will come.
            std::future::pending::<()>().await;
        }
    }
}

/// Paths of this repository, its cache and its local replicas.
fn own_candidates(cli: &Cli, record: Option<&SiteRecord>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut local = |text: &str| {
        if let Ok(Location::Fs(p)) = Location::parse(text) {
            out.push(p);
        }
    };
    if let Some(r) = cli.repo.as_deref() {
        local(r);
    }
    if let Some(record) = record {
        for p in &record.peers {
            local(&p.location);
        }
    }
    if let Some(cache) = cli.storage.cache_base(true) {
        out.push(cache);
    }
    out
}

impl Ctx<'_> {
    /// Recomputes the own paths below the watched ones; true when they changed.
    fn refresh_ignored(&mut self, record: Option<&SiteRecord>) -> bool {
        let ignored = below_roots(&own_candidates(self.cli, record), &self.paths);
        if ignored == self.ignored {
            return false;
        }
        for p in ignored.iter().filter(|p| !self.ignored.contains(p)) {
            tracing::info!(
                "{} lies below a watched path: its changes are ignored and it is not backed up",
                p.display()
            );
        }
        self.ignored = ignored;
        true
    }

    fn excludes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.ignored {
            match exclude_pattern(p) {
                Some(e) => out.push(e),
                None => tracing::warn!(
                    "{} cannot be written as an exclude pattern and is backed up",
                    p.display()
                ),
            }
        }
        out
    }

    /// Runs the backup of a cycle (storing the snapshot unless it equals its parent) and
    /// fills in the report.
    async fn backup(&mut self, report: &mut CycleReport) -> Result<()> {
        let started = Instant::now();
        // The repository opened at the start must still be there: a local one that vanished
        // (an unmounted disk) would otherwise get a new, keyless tree of directories.
        let config = zaibei_repo::read_config(self.repo.store().as_ref())
            .await
            .context("reading the repository's config")?;
        if config.id != self.repo.config().id {
            bail!(
                "the repository at {} is no longer the one opened at the start",
                self.repo.store().location()
            );
        }
        let indexed = Arc::new(
            self.repo
                .clone()
                .load_index()
                .await
                .context("loading the index")?,
        );
        for p in indexed.index_problems() {
            tracing::warn!("index object {} is unusable: {}", p.name, p.error);
        }
        let mut opts = self
            .args
            .source
            .options(self.cli, self.paths.clone(), self.args.workers);
        opts.excludes.extend(self.excludes());
        let done =
            backup_unpublished(Arc::clone(&indexed), opts, Arc::new(Counters::default())).await?;
        let parent = match done.parent {
            Some(p) => Some(indexed.load_snapshot(&p).await?),
            None => None,
        };
        let unchanged = parent
            .as_ref()
            .is_some_and(|p| p.tree == done.snapshot.tree);
        // An unchanged tree is still recorded once the parent is --heartbeat old, so that the
        // series (and the RPO drills measure from it) shows it was checked.
        let heartbeat = unchanged
            && !self.args.heartbeat.is_zero()
            && parent.as_ref().is_some_and(|p| {
                p.time.seconds_until(done.snapshot.time) >= self.args.heartbeat.as_secs_f64()
            });
        self.tree_empty = holds_nothing(&done.snapshot.summary);
        let s = &done.snapshot.summary;
        report.parent = done.parent.map(|p| p.to_hex());
        report.files_new = s.files_new;
        report.files_changed = s.files_changed;
        report.files_unmodified = s.files_unmodified;
        report.dirs = s.dirs;
        report.data_added = s.bytes_added_raw;
        report.data_added_packed = s.bytes_added_stored;
        report.skipped = s.skipped_count;
        for (p, e) in &s.skipped {
            tracing::warn!("skipped {}: {e}", output::path(p));
        }
        report.unchanged = unchanged;
        report.heartbeat = heartbeat;
        if !unchanged || heartbeat {
            let id = indexed.save_snapshot(&done.snapshot).await?;
            report.published = Some(output::time(Timestamp::now()));
            report.snapshot_id = Some(id.to_hex());
        }
        report.backup_seconds = started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Reads the site state: whether this is the primary of a set of sites (the snapshots are
    /// then sent to the replicas), and which own paths lie below the watched ones.
    async fn sites(&mut self) {
        let record = match self.repo.site_state().await {
            Ok(state) => state.record,
            Err(e) => {
                if !self.args.no_sync {
                    tracing::warn!("reading the site state: {e}");
                }
                self.site_error = true;
                return;
            }
        };
        self.site_error = false;
        self.refresh_ignored(record.as_ref());
        self.primary = false;
        let Some(record) = record else {
            // No set of sites: nothing to send.
            return;
        };
        if record.role != SiteRole::Primary {
            if !self.replica_warned && !self.args.no_sync {
                self.replica_warned = true;
                tracing::warn!(
                    "this repository is site {}, a replica of {}: snapshots are not sent anywhere",
                    record.name,
                    record.primary
                );
            }
            return;
        }
        self.primary = true;
    }

    /// Applies the --keep-* rules to the snapshots of this watch.
    async fn retention(&mut self, report: &mut CycleReport, published: bool) {
        if self.policy.is_empty() || !(published || self.retention_behind) {
            return;
        }
        match self.forget().await {
            Ok(ids) => {
                self.retention_behind = false;
                report.forgotten = ids.iter().map(Id::to_hex).collect();
            }
            Err(e) => {
                let why = exit::describe(&e);
                tracing::warn!("retention skipped: {why}");
                report.retention_error = Some(why);
                self.retention_behind = true;
            }
        }
    }

    async fn forget(&self) -> Result<Vec<Id>> {
        crate::sites::require_primary(self.cli, &self.repo, "forget").await?;
        let list = self.repo.list_snapshots().await?;
        let tags = &self.args.source.tags;
        let tree_empty = self.tree_empty;
        let ours: Vec<(Id, Snapshot)> = list
            .snapshots
            .into_iter()
            .filter(|(_, s)| {
                s.hostname == self.host
                    && s.paths == self.path_bytes
                    && tags.iter().all(|t| s.tags.contains(t))
            })
            .collect();
        let by = GroupBy::parse("host,paths").map_err(|e| anyhow::anyhow!(e))?;
        let tz = jiff::tz::TimeZone::system();
        let groups = retention::apply(&self.policy, &ours, by, &tz);
        if tree_empty {
            // An unmounted disk or a wiped tree must not push the real data out.
            let holding: Vec<&Id> = groups
                .iter()
                .flat_map(|g| g.decisions.iter().filter(|d| !d.keep()))
                .map(|d| &d.id)
                .filter(|id| {
                    ours.iter()
                        .any(|(i, s)| i == *id && !holds_nothing(&s.summary))
                })
                .collect();
            if !holding.is_empty() {
                bail!(
                    "the watched paths are empty now, and retention would forget {} snapshots \
                     that are not: refusing to apply retention until they hold something again",
                    holding.len()
                );
            }
        }
        let forgotten: Vec<Id> = groups
            .iter()
            .flat_map(|g| g.decisions.iter().filter(|d| !d.keep()))
            .map(|d| d.id)
            .collect();
        // One forget record for the cycle's whole batch, then the deletions.
        if !forgotten.is_empty() {
            self.repo
                .forget_snapshots(&forgotten)
                .await
                .with_context(|| format!("removing {} snapshots", forgotten.len()))?;
        }
        Ok(forgotten)
    }

    /// Runs one cycle; its report, and the error that failed it.
    async fn cycle(
        &mut self,
        n: u64,
        trigger: &Trigger,
        sample: &[PathBuf],
    ) -> (CycleReport, Option<anyhow::Error>) {
        let started = Instant::now();
        let mut report = CycleReport {
            message_type: "cycle",
            cycle: n,
            trigger: trigger.reason.name(),
            events: trigger.changes,
            changed_paths: sample
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            waited_seconds: trigger
                .first_change
                .map(|f| started.saturating_duration_since(f).as_secs_f64()),
            started: output::time(Timestamp::now()),
            ..CycleReport::default()
        };
        tracing::info!(
            "cycle {n}: {} ({} change notifications)",
            trigger.reason,
            trigger.changes
        );
        if let Err(e) = self.backup(&mut report).await {
            report.error = Some(exit::describe(&e));
            report.total_seconds = started.elapsed().as_secs_f64();
            return (report, Some(e));
        }
        let published = report.snapshot_id.is_some();
        self.sites().await;
        self.retention(&mut report, published).await;
        report.total_seconds = started.elapsed().as_secs_f64();
        (report, None)
    }
}

#[derive(Serialize)]
struct Absent {
    path: String,
    state: &'static str,
}

fn say_cycle(cli: &Cli, r: &CycleReport) -> Result<()> {
    if cli.json {
        return output::json_line(r);
    }
    if cli.quiet {
        return Ok(());
    }
    let head = format!("cycle {} ({}, {} events)", r.cycle, r.trigger, r.events);
    if let Some(e) = &r.error {
        return crate::say!(
            "{head}: failed: {e}; retrying in {:.0} s",
            r.retry_in_seconds.unwrap_or(0.0)
        );
    }
    let mut line = match &r.snapshot_id {
        Some(id) => format!(
            "{head}: snapshot {} saved: {} new, {} changed files, {} added in {:.1} s",
            &id[..8.min(id.len())],
            r.files_new,
            r.files_changed,
            output::bytes(r.data_added),
            r.backup_seconds
        ),
        None => format!("{head}: nothing changed, no snapshot"),
    };
    if r.heartbeat {
        line.push_str(" (nothing changed: heartbeat)");
    }
    if !r.forgotten.is_empty() {
        line.push_str(&format!("; {} forgotten", r.forgotten.len()));
    }
    if let Some(e) = &r.retention_error {
        line.push_str(&format!("; retention skipped: {e}"));
    }
    crate::say!("{line}")
}

fn say_sync(cli: &Cli, r: &SyncReport) -> Result<()> {
    if cli.json {
        return output::json_line(r);
    }
    if cli.quiet {
        return Ok(());
    }
    let mut line = format!(
        "sync {} (after cycle {}) in {:.1} s",
        r.sync, r.after_cycle, r.sync_seconds
    );
    for s in &r.sites {
        match &s.error {
            Some(e) => line.push_str(&format!("; site {}: {e}", s.site)),
            None => line.push_str(&format!(
                "; site {}: {} copied, lag {:.0} s",
                s.site,
                s.snapshots_copied,
                s.lag_seconds_after.unwrap_or(0.0)
            )),
        }
    }
    if let Some(e) = &r.error {
        line.push_str(&format!("; failed: {e}"));
    }
    crate::say!("{line}")
}

fn say_step(cli: &Cli, step: &Step, rescan: Option<Duration>) -> Result<()> {
    match step {
        Step::Held(absent) => {
            let list: Vec<Absent> = absent
                .iter()
                .map(|a| Absent {
                    path: a.path.to_string_lossy().into_owned(),
                    state: match a.state {
                        RootState::Present => "present",
                        RootState::Missing => "missing",
                        RootState::Moved { .. } => "other_filesystem",
                    },
                })
                .collect();
            for a in &list {
                tracing::warn!(
                    "{} is {}: backups are held until it is back",
                    a.path,
                    a.state.replace('_', " ")
                );
            }
            if cli.json {
                output::json_line(&serde_json::json!({
                    "message_type": "held",
                    "paths": list,
                }))?;
            }
        }
        Step::Resumed => {
            tracing::warn!("every watched path is back: backups resume");
            if cli.json {
                output::json_line(&serde_json::json!({"message_type": "resumed"}))?;
            }
        }
        Step::LimitReached => tracing::warn!(
            "the kernel's limit of inotify watches is reached: changes in some directories are \
             found only by the next backup{}; raise fs.inotify.max_user_watches",
            rescan.map_or(String::new(), |r| format!(
                " (a rescan runs every {})",
                humantime::format_duration(r)
            ))
        ),
        Step::Unwatched(list) => {
            for u in list {
                tracing::warn!(
                    "cannot watch {}: {}; changes below it are found only by the next backup{}",
                    u.path.display(),
                    u.error,
                    rescan.map_or(String::new(), |r| format!(
                        " (a rescan runs every {})",
                        humantime::format_duration(r)
                    ))
                );
            }
            if cli.json {
                let paths: Vec<serde_json::Value> = list
                    .iter()
                    .map(
                        |u| serde_json::json!({"path": u.path.to_string_lossy(), "error": u.error}),
                    )
                    .collect();
                output::json_line(&serde_json::json!({
                    "message_type": "unwatched",
                    "paths": paths,
                }))?;
            }
        }
        Step::Backup { .. } => {}
    }
    Ok(())
}

pub async fn run(cli: &Cli, a: &WatchArgs) -> Result<u8> {
    let timing = a.timing();
    timing
        .check()
        .map_err(|e| exit::WithCode(exit::USAGE, e.to_string()))?;
    a.check()?;
    let paths = sources::normalise(&a.paths)?;
    let repo = crate::repo::open(cli).await?;
    crate::repo::require_content(&repo, "watch")?;
    let record = repo
        .site_state()
        .await
        .context("reading the site state")?
        .record;
    let mut ctx = Ctx {
        cli,
        args: a,
        host: a.source.host.clone().unwrap_or_else(super::hostname),
        path_bytes: paths
            .iter()
            .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
            .collect(),
        paths,
        repo,
        policy: a.keep.policy(),
        ignored: Vec::new(),
        retention_behind: false,
        replica_warned: false,
        tree_empty: false,
        primary: false,
        site_error: false,
    };
    let mut syncer = Syncer {
        cli,
        repo: ctx.repo.clone(),
        running: None,
        again: false,
        // Bring the replicas up to date at the first cycle, even without a new snapshot.
        behind: true,
        count: 0,
        cycles: 0,
    };
    ctx.refresh_ignored(record.as_ref());
    // From here on, Ctrl-C and SIGTERM end the watch between cycles (before, they kill it).
    let shutdown = Shutdown::listen()?;
    let mut watch = Watch::start(WatchOptions {
        paths: ctx.paths.clone(),
        ignored: ctx.ignored.clone(),
        timing,
        root_check: ROOT_CHECK,
    })
    .await?;
    let paths_text: Vec<String> = ctx
        .paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if cli.json {
        output::json_line(&serde_json::json!({
            "message_type": "watching",
            "paths": paths_text,
            "ignored": ctx.ignored.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
            "debounce_seconds": a.debounce.as_secs_f64(),
            "max_delay_seconds": a.max_delay.as_secs_f64(),
            "rescan_seconds": timing.rescan.map(|r| r.as_secs_f64()),
        }))?;
    } else if !cli.quiet {
        crate::say!("watching {}", paths_text.join(" "))?;
    }

    let mut cycles = 0u64;
    loop {
        let step = tokio::select! {
            s = watch.next() => s?,
            r = syncer.finished() => {
                syncer.ended(&r)?;
                continue;
            }
            () = shutdown.reached(1) => break,
        };
        let Step::Backup { trigger, sample } = step else {
            say_step(cli, &step, timing.rescan)?;
            continue;
        };
        cycles += 1;
        // The sync under way goes on while the cycle runs.
        let (mut report, error) = {
            let cycle = ctx.cycle(cycles, &trigger, &sample);
            tokio::pin!(cycle);
            loop {
                tokio::select! {
                    r = &mut cycle => break r,
                    r = syncer.finished() => syncer.ended(&r)?,
                    () = shutdown.reached(2) => bail!(exit::Interrupted),
                }
            }
        };
        let failed = error.is_some();
        if failed {
            let wait = watch.failed(trigger);
            report.retry_in_seconds = Some(wait.as_secs_f64());
            tracing::warn!(
                "cycle {cycles} failed: {}; retrying in {} s",
                report.error.as_deref().unwrap_or_default(),
                wait.as_secs()
            );
        } else {
            watch.succeeded();
        }
        watch.set_ignored(ctx.ignored.clone());
        say_cycle(cli, &report)?;
        syncer.cycles = cycles;
        if !failed && !a.no_sync {
            let published = report.snapshot_id.is_some();
            if ctx.primary && (published || syncer.behind) {
                syncer.want();
            } else if ctx.site_error && published {
                // Unknown whether there are sites: the sync finds out (and says why not).
                syncer.want();
            }
        }
        if a.once_settled {
            if syncer.running.is_some() {
                let r = tokio::select! {
                    r = syncer.finished() => r,
                    () = shutdown.reached(1) => bail!(exit::Interrupted),
                };
                syncer.again = false;
                syncer.ended(&r)?;
            }
            if let Some(e) = error {
                return Err(e);
            }
            return Ok(if report.skipped > 0 {
                exit::PARTIAL
            } else {
                exit::OK
            });
        }
        if shutdown.count() > 0 {
            break;
        }
    }
    if syncer.running.is_some() {
        tracing::warn!(
            "waiting up to {} s for the sync under way (a second signal cancels it)",
            SYNC_GRACE.as_secs()
        );
        syncer.again = false;
        tokio::select! {
            r = syncer.finished() => syncer.ended(&r)?,
            () = tokio::time::sleep(SYNC_GRACE) => tracing::warn!(
                "the sync under way was cancelled; the next sync resumes it"
            ),
            () = shutdown.reached(2) => {
                tracing::warn!("the sync under way was cancelled; the next sync resumes it");
                bail!(exit::Interrupted);
            }
        }
    }
    if !cli.json && !cli.quiet {
        crate::say!("stopped after {cycles} cycles")?;
    }
    Ok(exit::OK)
}
