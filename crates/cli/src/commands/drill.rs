//! `zaibei drill`: a disaster-recovery drill with measured RTO and RPO and a GB/T 20988
//! assessment (the work is in `zaibei-drill`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use zaibei_archive::progress::Counters;
use zaibei_drill::{
    DrillError, DrillOptions, DrillReport, History, Observer, OffsiteFacts, OffsiteSite, Phase,
    Scratch, Selection, Stopwatch, Verdict, history, html, reassess_with_offsite, run_drill, table,
};

use crate::progress::Progress;
use crate::{Cli, exit};

const AFTER_HELP: &str = "\
What a drill measures:
  RTO  from the start of the command (opening the repository and deriving the key included)
       until the snapshot is restored into scratch space and every entry has been read back
       and compared with the snapshot; reported phase by phase (open, index, select, restore,
       verify) with files, bytes and throughput. The repository is opened without the local
       metadata cache, as on a machine recovering from scratch. Reading the drill history,
       tracing failed entries to their cause and asking other sites are not counted.
  RPO  over the snapshots of the drilled snapshot's host and paths (narrowed by --tag): the
       worst gap between consecutive restorable snapshots inside the --rpo-window (a gap
       counts when its newer snapshot was taken inside it), and the age of the newest one
       when the drill starts; the RPO is the larger. Retention thins older history on
       purpose, so keep the window within what retention keeps at full frequency: with
       `--keep-hourly 72`, `--rpo-window 2d`.
  The report says which GB/T 20988 capability level (1-6) the figures support, on which
  unmeasured conditions, what the next level lacks, and which organisational elements the
  operator must attest. Each drill is added to the history (--history), which the HTML page
  (--html) charts.

Exit codes: 0 passed; 3 entries could not be restored or verified and every one was traced
to a local failure (the repository holds them intact: scratch disk, permissions); 4 the
repository is damaged (a failed entry's data or tree does not authenticate or is missing);
5 everything was recovered but a target was missed; 1 entries failed and not all could be
traced to a cause (the store was unreachable, or tracing stopped at its bounds: 1000
failures, 1 GiB read again) with no damage found among those traced, or another error;
otherwise as for every command (10 no repository, 12 wrong password...). Once a snapshot is
chosen, the report is written whatever the outcome (a page that cannot be written is a
warning).

Scheduling drills: a drill is an ordinary command; run it from cron or a systemd timer with
the password in a file and the history in a fixed place.
  crontab (Sundays at 03:30; one line):
    30 3 * * 0  ZAIBEI_PASSWORD_FILE=/etc/zaibei/password zaibei -r /srv/repo drill --rto-target 4h --rpo-target 1d --history /var/lib/zaibei/drills --html /var/lib/zaibei/drill.html -q
  systemd, /etc/systemd/system/zaibei-drill.service:
    [Service]
    Type=oneshot
    Environment=ZAIBEI_REPOSITORY=/srv/repo ZAIBEI_PASSWORD_FILE=/etc/zaibei/password
    ExecStart=/usr/local/bin/zaibei drill --rto-target 4h --history /var/lib/zaibei/drills --html /var/lib/zaibei/drill.html
  and /etc/systemd/system/zaibei-drill.timer:
    [Timer]
    OnCalendar=Sun *-*-* 03:30
    Persistent=true
    [Install]
    WantedBy=timers.target
  then `systemctl enable --now zaibei-drill.timer`; a non-zero exit marks the unit failed.";

/// Run a disaster-recovery drill: restore a snapshot into scratch space, verify every file,
/// measure RTO and RPO, and report the GB/T 20988 level they support.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct DrillArgs {
    /// Snapshot to drill: an id, a unique prefix of one, or `latest` [default: the newest
    /// snapshot matching --host, --path and --tag].
    pub snapshot: Option<String>,
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots containing this path (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// Only snapshots with this tag (repeatable); also narrows the snapshots the RPO is
    /// measured over.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Restore into this directory (created if missing, refused if not empty) instead of a
    /// fresh directory in $TMPDIR; choose one on a disk with room for the snapshot.
    #[arg(long, value_name = "DIR")]
    pub target: Option<PathBuf>,
    /// Keep what was restored (by default the scratch space is removed afterwards).
    #[arg(long)]
    pub keep: bool,
    /// Also write the report as a self-contained HTML page, with charts of past drills.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Directory of the drill history [default: $XDG_DATA_HOME/zaibei/drills/<repository id>,
    /// or ~/.local/share/zaibei/drills/<repository id>].
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,
    /// RTO target (e.g. 30min, 4h): the drill fails (exit 5) when the measured RTO is longer.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub rto_target: Option<Duration>,
    /// RPO target (e.g. 1h, 1d): the drill fails (exit 5) when the measured RPO is longer.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub rpo_target: Option<Duration>,
    /// Measure the RPO's worst gap over the snapshots taken this long before the drill (e.g.
    /// 2d, 7d); older history, thinned by retention, does not count.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub rpo_window: Duration,
    /// Restore writer threads (default: as `zaibei restore`, the number of CPUs or
    /// --connections, whichever is larger, on object storage or a server; at least 4 on a
    /// local disk).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

/// Shows a progress display for the restore and the verify phases.
struct Show {
    json: bool,
    quiet: bool,
    current: Mutex<Option<Progress>>,
}

impl Observer for Show {
    fn phase_started(&self, phase: Phase, counters: &Arc<Counters>) {
        let action = match phase {
            Phase::Verify => "verify",
            _ => "restore",
        };
        let progress = Progress::start(action, Arc::clone(counters), self.json, self.quiet);
        let old = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(progress);
        if let Some(p) = old {
            p.finish();
        }
    }

    fn phase_finished(&self) {
        let old = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = old {
            p.finish();
        }
    }
}

/// A drill error as the exit codes see it: repository and restore errors keep their type.
fn into_anyhow(e: DrillError) -> anyhow::Error {
    match e {
        DrillError::Repo(r) => r.into(),
        DrillError::Restore(a) => {
            anyhow::Error::new(a).context("restore into the scratch directory")
        }
        DrillError::Usage(m) => exit::WithCode(exit::USAGE, m).into(),
        other => other.into(),
    }
}

/// How long one peer may take to answer, as `crate::sites` allows it (`--io-timeout`).
fn peer_timeout(cli: &Cli) -> Duration {
    Duration::from_secs(cli.storage.io_timeout.clamp(1, 600))
}

/// What the other sites of this repository's set hold: for each, whether it answered, how
/// far behind this repository it is (the age of the oldest snapshot here that it lacks; 0 when
/// it holds all) and whether it holds the drilled snapshot (`drilled`, hex). Empty for a
/// repository that belongs to no set of sites.
async fn offsite_facts(cli: &Cli, repo: &zaibei_repo::Repository, drilled: &str) -> OffsiteFacts {
    let record = match repo.site_state().await {
        Ok(state) => match state.record {
            Some(r) => r,
            None => return OffsiteFacts::default(),
        },
        Err(e) => {
            tracing::warn!("the site state cannot be read ({e}); off-site copies not measured");
            return OffsiteFacts::default();
        }
    };
    let ours = match repo.list_snapshots().await {
        Ok(list) => list.snapshots,
        Err(e) => {
            tracing::warn!("listing snapshots for the off-site lag: {e}");
            return OffsiteFacts::default();
        }
    };
    let peers = crate::sites::open_peers(cli, repo, &record).await;
    let timeout = peer_timeout(cli);
    let listings = peers.iter().map(|p| async move {
        let r = p.repo.as_ref().ok()?;
        match tokio::time::timeout(timeout, r.list_snapshots()).await {
            Ok(Ok(list)) => Some(list.snapshots),
            Ok(Err(e)) => {
                tracing::warn!("listing the snapshots of site {}: {e}", p.peer.name);
                None
            }
            Err(_) => {
                tracing::warn!(
                    "listing the snapshots of site {}: no answer within {} s",
                    p.peer.name,
                    timeout.as_secs()
                );
                None
            }
        }
    });
    let listings = futures::future::join_all(listings).await;
    let now = zaibei_format::Timestamp::now();
    let sites = peers
        .iter()
        .zip(listings)
        .map(|(p, theirs)| {
            let lag = theirs.as_ref().map(|t| {
                let (_, secs) = super::sync::lag(&ours, t, now);
                secs.round() as u64
            });
            OffsiteSite {
                name: p.peer.name.clone(),
                location: p.peer.location.clone(),
                lag_seconds: lag,
                holds_drilled: theirs
                    .as_ref()
                    .map(|t| t.iter().any(|(id, _)| id.to_hex() == drilled)),
                reachable: lag.is_some(),
            }
        })
        .collect();
    OffsiteFacts { sites }
}

pub async fn run(cli: &Cli, a: &DrillArgs) -> Result<u8> {
    // The clock starts before anything else: opening the repository is part of the RTO.
    let mut clock = Stopwatch::start();
    let scratch = match &a.target {
        Some(dir) => Scratch::at(dir, a.keep),
        None => Scratch::fresh(None, a.keep),
    }
    .map_err(into_anyhow)?;
    let repo = crate::repo::open_with(cli, false).await?;
    // The drill's own bookkeeping is no part of a recovery: the clock stands still for it.
    let (history, past) = clock.stopped(|| -> Result<_> {
        crate::repo::require_content(&repo, "drill")?;
        let repo_id = repo.config().id.to_hex();
        let history = match &a.history {
            Some(dir) => Some(History::new(dir.clone())),
            None => history::default_dir(&repo_id).map(History::new),
        };
        if history.is_none() {
            eprintln!(
                "warning: neither HOME nor XDG_DATA_HOME is set and --history is not given: the drill is not recorded"
            );
        }
        let past = history
            .as_ref()
            .map(|h| h.load(&repo_id))
            .unwrap_or_default();
        Ok((history, past))
    })?;
    let opts = DrillOptions {
        selection: Selection {
            snapshot: a.snapshot.clone(),
            hosts: a.hosts.clone(),
            paths: a.paths.clone(),
            tags: a.tags.clone(),
        },
        scratch,
        // As many writers as `zaibei restore` would run, so that the drill's RTO is a restore's.
        restore_workers: if a.workers == 0 {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .max(crate::repo::restore_writers(cli))
        } else {
            a.workers
        },
        verify_workers: 0,
        rto_target: a.rto_target,
        rpo_target: a.rpo_target,
        rpo_window: a.rpo_window,
        downloaded: Some(|| crate::repo::traffic().bytes_down),
        // Filled in after the drill (see `offsite_facts`).
        offsite: OffsiteFacts::default(),
        past_drills: past.counts(),
        program: format!("zaibei {}", env!("CARGO_PKG_VERSION")),
        drill_host: super::hostname(),
    };
    let show = Show {
        json: cli.json,
        quiet: cli.quiet,
        current: Mutex::new(None),
    };
    let site_repo = repo.clone();
    let outcome = run_drill(repo, clock, opts, &show).await;
    show.phase_finished();
    let mut run = outcome.map_err(into_anyhow)?;
    // The other sites are asked only now, so that reaching them does not count in the RTO.
    let offsite = offsite_facts(cli, &site_repo, &run.report.snapshot.id).await;
    if !offsite.sites.is_empty() {
        reassess_with_offsite(&mut run.report, &offsite, past.counts());
    }
    let report = &run.report;

    if let Some(h) = &history {
        match h.save(report) {
            Ok(path) => tracing::info!("drill recorded in {}", path.display()),
            Err(e) => eprintln!("warning: the drill could not be recorded in the history: {e}"),
        }
    }
    if let Some(path) = &a.html {
        let mut charted = past.reports;
        charted.push(report.clone());
        // A page that cannot be written must not hide the drill's outcome.
        if let Err(e) = html::write_page(path, &html::render(report, &charted)) {
            eprintln!("warning: the HTML report could not be written: {e}");
        }
    }
    print(cli, report)?;

    let v = &report.verification;
    let failed = v.failures_total;
    let code = match run.verdict() {
        Verdict::Stopped => None,
        Verdict::Damage => {
            eprintln!(
                "zaibei: drill failed: the repository is damaged; {failed} entries could not be restored or verified"
            );
            Some(exit::DAMAGED)
        }
        Verdict::LocalFailures => {
            eprintln!(
                "zaibei: drill failed: {failed} entries could not be restored or verified; the repository holds them intact (a local failure)"
            );
            Some(exit::PARTIAL)
        }
        Verdict::Untraced => {
            let c = &v.failure_causes;
            eprintln!(
                "zaibei: drill failed: {failed} entries could not be restored or verified, and {} of them could not be traced to a cause ({} store unreachable, {} not traced{}); run `zaibei check --read-data`",
                failed.saturating_sub(c.local),
                c.store_unreachable,
                c.unknown,
                if v.causes_incomplete {
                    ", tracing stopped at its bounds"
                } else {
                    ""
                }
            );
            Some(exit::ERROR)
        }
        Verdict::TargetsMissed => {
            eprintln!("zaibei: drill recovered everything but missed its target");
            Some(exit::TARGET_MISSED)
        }
        Verdict::Passed => Some(exit::OK),
    };
    match (code, run.error) {
        (Some(code), _) => Ok(code),
        (None, Some(e)) => Err(into_anyhow(e).context("drill failed")),
        (None, None) => Ok(exit::ERROR),
    }
}

/// Prints the report: one JSON line (`"message_type": "summary"`) or the table.
fn print(cli: &Cli, report: &DrillReport) -> Result<()> {
    if cli.json {
        let mut value = serde_json::to_value(report).context("encoding the drill report")?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("message_type".into(), "summary".into());
        }
        return crate::output::json_line(&value);
    }
    if !cli.quiet {
        let text = table::render(report);
        crate::say!("{}", text.trim_end())?;
    }
    Ok(())
}
