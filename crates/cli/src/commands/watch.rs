//! `zaibei watch`: continuous data protection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use zaibei_archive::backup::{backup_unpublished, sources};
use zaibei_archive::progress::Counters;
use zaibei_archive::watch::{
    DebounceSettings, RootState, Step, Trigger, Watch, WatchOptions, below_roots, exclude_pattern,
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

/// The long help of `zaibei watch` (the command's entry in `commands/mod.rs` points here).
pub const LONG_ABOUT: &str = "Keep a series of snapshots of PATHs current: back up whenever \
they change.

Changes are noticed through inotify. After a change the watch waits until the paths have been \
quiet for --debounce, but no longer than --max-delay after the first change (so a tree that is \
never quiet is still backed up), then runs one cycle:

  1. an incremental backup of every PATH, as `zaibei backup PATH...` makes it (unchanged files \
are not read again); a snapshot equal to its parent is not stored;
  2. unless --no-sync, when this repository is the primary of a set of sites: the new snapshot \
is sent to every replica site, as `zaibei sync` does;
  3. with --keep-* rules: the snapshots of this host and these PATHs (with --tag, only those \
carrying the tags) that no rule keeps are forgotten, as `zaibei forget` does, and fenced like \
it (a fenced forget is skipped with a warning).

Prune is NOT run by watch: run `zaibei prune` regularly (e.g. nightly) to free the space of \
forgotten snapshots.

The first cycle runs once the paths are quiet after the start. Every --rescan a cycle runs \
even without any event, to catch what notification missed: each backup walks the whole tree, \
so a missed event delays a change, it never loses it. A failed cycle (storage unreachable) is \
retried 5 s later, then 10 s, ... up to 5 minutes; it never ends the watch. A watched PATH \
that vanishes, or whose filesystem is unmounted, holds the backups until it is back. The \
repository, its metadata cache and replicas on local disks are neither watched nor backed up \
when they lie below a PATH.

Ctrl-C or SIGTERM ends the watch after the cycle under way (a second one ends it at once). \
With --json, one line per cycle (\"message_type\": \"cycle\") says why it ran, the snapshot, \
files and bytes added, the time taken, each site's sync and lag, and what was forgotten.";

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
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// … of each of the N most recent days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// … of each of the N most recent ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// … of each of the N most recent months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// … of each of the N most recent years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken less than DURATION before the newest one.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep_within: Option<Duration>,
    /// Keep every snapshot with this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
    /// Do not send snapshots to the replica sites.
    #[arg(long)]
    pub no_sync: bool,
    /// Run one cycle once the paths have been quiet after the start, then exit (for scripts
    /// and tests).
    #[arg(long)]
    pub once_settled: bool,
    /// File reading threads (default: number of CPUs).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

impl WatchArgs {
    fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tag.clone(),
        }
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
    /// The snapshot stored (none when the backup failed or nothing changed).
    snapshot_id: Option<String>,
    /// Its parent.
    parent: Option<String>,
    /// Nothing changed since the parent: no snapshot stored.
    unchanged: bool,
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
    /// Each replica site's sync (none: not synced this cycle).
    sync: Option<Vec<SiteSync>>,
    sync_seconds: Option<f64>,
    /// When the sync ended.
    synced: Option<String>,
    sync_error: Option<String>,
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
    /// A site was left behind, or the sync failed: sync even without a new snapshot.
    sync_behind: bool,
    /// Retention was skipped or failed: apply it even without a new snapshot.
    retention_behind: bool,
    /// The repository is a replica (warned once).
    replica_warned: bool,
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
    async fn backup(&self, report: &mut CycleReport) -> Result<()> {
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
        let unchanged = match done.parent {
            Some(p) => indexed.load_snapshot(&p).await?.tree == done.snapshot.tree,
            None => false,
        };
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
        if !unchanged {
            let id = indexed.save_snapshot(&done.snapshot).await?;
            report.published = Some(output::time(Timestamp::now()));
            report.snapshot_id = Some(id.to_hex());
        }
        report.backup_seconds = started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Sends new snapshots to the replica sites, when there are any and this is the primary.
    async fn sync(&mut self, report: &mut CycleReport, published: bool) {
        let record = match self.repo.site_state().await {
            Ok(state) => state.record,
            Err(e) => {
                if !self.args.no_sync {
                    report.sync_error = Some(format!("reading the site state: {e}"));
                    self.sync_behind = true;
                }
                return;
            }
        };
        self.refresh_ignored(record.as_ref());
        let Some(record) = record else {
            // No set of sites: nothing to send.
            return;
        };
        if self.args.no_sync || !(published || self.sync_behind) {
            return;
        }
        if record.role != SiteRole::Primary {
            if !self.replica_warned {
                self.replica_warned = true;
                tracing::warn!(
                    "this repository is site {}, a replica of {}: snapshots are not sent anywhere",
                    record.name,
                    record.primary
                );
            }
            return;
        }
        let started = Instant::now();
        // Every replica, objects read back; never a prune (see --help).
        let req = SyncRequest {
            verify: true,
            ..SyncRequest::default()
        };
        match sync_sites(self.cli, &self.repo, &req).await {
            Ok((_, sites)) => {
                self.sync_behind = sites
                    .iter()
                    .any(|s| s.error.is_some() || s.missing_after != Some(0));
                for s in sites.iter().filter(|s| s.error.is_some()) {
                    tracing::warn!(
                        "site {} was not brought up to date: {}",
                        s.site,
                        s.error.as_deref().unwrap_or_default()
                    );
                }
                report.sync = Some(sites);
            }
            Err(e) => {
                let why = exit::describe(&e);
                tracing::warn!("sync failed: {why}");
                report.sync_error = Some(why);
                self.sync_behind = true;
            }
        }
        report.sync_seconds = Some(started.elapsed().as_secs_f64());
        report.synced = Some(output::time(Timestamp::now()));
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
        let mut forgotten = Vec::new();
        for g in retention::apply(&self.policy, &ours, by, &tz) {
            for d in g.decisions.iter().filter(|d| !d.keep()) {
                self.repo
                    .forget_snapshot(&d.id)
                    .await
                    .with_context(|| format!("removing snapshot {}", d.id.short()))?;
                forgotten.push(d.id);
            }
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
        self.sync(&mut report, published).await;
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
    for s in r.sync.iter().flatten() {
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
    if let Some(e) = &r.sync_error {
        line.push_str(&format!("; sync failed: {e}"));
    }
    if !r.forgotten.is_empty() {
        line.push_str(&format!("; {} forgotten", r.forgotten.len()));
    }
    if let Some(e) = &r.retention_error {
        line.push_str(&format!("; retention skipped: {e}"));
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
        Step::Backup { .. } => {}
    }
    Ok(())
}

pub async fn run(cli: &Cli, a: &WatchArgs) -> Result<u8> {
    let timing = a.timing();
    timing
        .check()
        .map_err(|e| exit::WithCode(exit::USAGE, e.to_string()))?;
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
        policy: a.policy(),
        ignored: Vec::new(),
        sync_behind: false,
        retention_behind: false,
        replica_warned: false,
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
            () = shutdown.reached(1) => break,
        };
        let Step::Backup { trigger, sample } = step else {
            say_step(cli, &step, timing.rescan)?;
            continue;
        };
        cycles += 1;
        let (mut report, error) = tokio::select! {
            r = ctx.cycle(cycles, &trigger, &sample) => r,
            () = shutdown.reached(2) => bail!(exit::Interrupted),
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
        if a.once_settled {
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
    if !cli.json && !cli.quiet {
        crate::say!("stopped after {cycles} cycles")?;
    }
    Ok(exit::OK)
}
