//! `zaibei backup`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use serde::Serialize;
use zaibei_archive::backup::{
    BackupOptions, BackupOutcome, Scout, StreamOptions, backup, backup_stream,
};
use zaibei_archive::progress::Counters;
use zaibei_format::Id;

use crate::progress::Progress;
use crate::{Cli, exit, output};

/// Back up files and directories, or a stream.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up (with --stdin-from-command: the command and its
    /// arguments, after `--`).
    pub paths: Vec<PathBuf>,
    /// What to leave out and how to label the snapshot.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Time to record for the snapshot instead of now: RFC 3339 (2026-11-23T02:00:00+08:00)
    /// or "YYYY-MM-DD HH:MM:SS" in the local time zone (e.g. when importing old backups).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub time: Option<zaibei_format::Timestamp>,
    /// Snapshot to compare against (default: the newest of the same host and paths).
    #[arg(long)]
    pub parent: Option<String>,
    /// Read every file, even unchanged ones.
    #[arg(long)]
    pub force: bool,
    /// Back up standard input.
    #[arg(long, conflicts_with = "paths")]
    pub stdin: bool,
    /// Name of the file holding standard input in the snapshot.
    #[arg(long, default_value = "stdin")]
    pub stdin_filename: String,
    /// Back up the standard output of the command given after `--`
    /// (`zaibei backup --stdin-from-command -- pg_dump db`). The backup fails, and no snapshot
    /// is written, unless the command exits with status 0.
    #[arg(long, conflicts_with = "stdin")]
    pub stdin_from_command: bool,
    /// File reading threads (default: number of CPUs).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

/// The options of a backup of files that `watch` shares.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Exclude paths matching a pattern (gitignore syntax; repeatable).
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from a file (repeatable).
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Exclude directories that contain a file of this name (repeatable).
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Stay on the filesystem of each source path.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Tag for the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
}

impl SourceArgs {
    /// The options of a backup of `paths` with these settings, `workers` file readers and
    /// the upload connections the global options ask for; the parent found as usual.
    pub fn options(&self, cli: &Cli, paths: Vec<PathBuf>, workers: usize) -> BackupOptions {
        BackupOptions {
            paths,
            excludes: self.excludes.clone(),
            exclude_files: self.exclude_files.clone(),
            exclude_if_present: self
                .exclude_if_present
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            one_file_system: self.one_file_system,
            tags: self.tags.clone(),
            host: self.host.clone().unwrap_or_else(super::hostname),
            parent: None,
            force: false,
            workers,
            connections: crate::repo::upload_connections(cli),
            time: None,
            scout: None,
        }
    }
}

#[derive(Serialize)]
struct Summary {
    message_type: &'static str,
    snapshot_id: String,
    parent: Option<String>,
    files_new: u64,
    files_changed: u64,
    files_unmodified: u64,
    dirs: u64,
    data_blobs: u64,
    tree_blobs: u64,
    data_added: u64,
    data_added_packed: u64,
    total_files_processed: u64,
    total_bytes_processed: u64,
    bytes_read: u64,
    skipped: u64,
    skipped_paths: Vec<(String, String)>,
    total_duration: f64,
    /// Traffic to the repository's storage during this command.
    storage: zaibei_store::StoreStats,
}

/// Parses `--time`.
fn parse_time(text: &str) -> Result<zaibei_format::Timestamp, String> {
    let ts = match text.parse::<jiff::Timestamp>() {
        Ok(ts) => ts,
        Err(_) => text
            .parse::<jiff::civil::DateTime>()
            .map_err(|e| format!("{text:?}: {e}"))?
            .to_zoned(jiff::tz::TimeZone::system())
            .map_err(|e| format!("{text:?}: {e}"))?
            .timestamp(),
    };
    // jiff counts the fraction towards zero; ours is always forward from the second.
    let (mut secs, mut nanos) = (ts.as_second(), ts.subsec_nanosecond());
    if nanos < 0 {
        secs -= 1;
        nanos += 1_000_000_000;
    }
    Ok(zaibei_format::Timestamp {
        secs,
        nanos: nanos.unsigned_abs(),
    })
}

pub async fn run(cli: &Cli, a: &BackupArgs) -> Result<u8> {
    if a.paths.is_empty() && !a.stdin {
        let what = if a.stdin_from_command {
            "--stdin-from-command needs a command after --"
        } else {
            "nothing to back up: give paths, --stdin or --stdin-from-command"
        };
        bail!(exit::WithCode(exit::USAGE, what.into()));
    }
    if a.stdin && !a.paths.is_empty() {
        bail!(exit::WithCode(exit::USAGE, "--stdin takes no paths".into()));
    }
    // Lists the sources while the repository's key is derived from the password.
    let opened = crate::repo::store(cli)?;
    let scout = if a.stdin || a.stdin_from_command || a.force || !has_snapshots(&opened).await {
        None
    } else {
        Scout::start(&a.source.options(cli, a.paths.clone(), a.workers))
    };
    let repo = crate::repo::open_indexed_store(cli, opened).await?;
    let parent = match &a.parent {
        Some(spec) => Some(repo.find_snapshot(spec).await?.0),
        None => None,
    };
    let base = BackupOptions {
        parent,
        force: a.force,
        time: a.time,
        scout,
        ..a.source.options(cli, a.paths.clone(), a.workers)
    };
    let counters = Arc::new(Counters::default());
    let progress = Progress::start("backup", Arc::clone(&counters), cli.json, cli.quiet);
    let outcome = if a.stdin || a.stdin_from_command {
        let command = a
            .stdin_from_command
            .then(|| a.paths.iter().map(|p| p.clone().into_os_string()).collect());
        let opts = StreamOptions {
            filename: a.stdin_filename.clone(),
            command,
            base: BackupOptions {
                paths: Vec::new(),
                ..base
            },
        };
        backup_stream(Arc::clone(&repo), opts, Arc::clone(&counters)).await
    } else {
        backup(Arc::clone(&repo), base, Arc::clone(&counters)).await
    };
    progress.finish();
    let outcome = outcome?;
    report(cli, &outcome)?;
    Ok(if outcome.snapshot.summary.skipped_count > 0 {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

/// True when the repository in `opened` holds snapshots (one listing, no key needed). Without
/// any there is no parent: every file is read, the file readers set the pace, and the scout's
/// listings would only hold memory. Any error says false: opening the repository reports it.
async fn has_snapshots(opened: &zaibei_store::OpenedStore) -> bool {
    opened
        .store
        .list(zaibei_repo::names::SNAPSHOTS)
        .await
        .is_ok_and(|list| !list.is_empty())
}

fn short(id: &Id) -> String {
    id.short()
}

fn report(cli: &Cli, o: &BackupOutcome) -> Result<()> {
    let s = &o.snapshot.summary;
    let duration = output::seconds_between(s.start, s.end);
    if cli.json {
        output::json_line(&Summary {
            message_type: "summary",
            snapshot_id: o.snapshot_id.to_hex(),
            parent: o.parent.map(|p| p.to_hex()),
            files_new: s.files_new,
            files_changed: s.files_changed,
            files_unmodified: s.files_unmodified,
            dirs: s.dirs,
            data_blobs: s.data_blobs_added,
            tree_blobs: s.tree_blobs_added,
            data_added: s.bytes_added_raw,
            data_added_packed: s.bytes_added_stored,
            total_files_processed: s.total_files,
            total_bytes_processed: s.total_bytes,
            bytes_read: s.bytes_read,
            skipped: s.skipped_count,
            skipped_paths: s
                .skipped
                .iter()
                .map(|(p, e)| (output::path(p), e.clone()))
                .collect(),
            total_duration: duration,
            storage: crate::repo::traffic(),
        })?;
        return Ok(());
    }
    for (p, e) in &s.skipped {
        eprintln!("skipped {}: {e}", output::path(p));
    }
    if cli.quiet {
        return Ok(());
    }
    if let Some(p) = o.parent {
        crate::say!("using parent snapshot {}", short(&p))?;
    }
    crate::say!(
        "Files: {} new, {} changed, {} unmodified",
        s.files_new,
        s.files_changed,
        s.files_unmodified
    )?;
    crate::say!("Dirs:  {}", s.dirs)?;
    crate::say!(
        "Added to the repository: {} ({} stored)",
        output::bytes(s.bytes_added_raw),
        output::bytes(s.bytes_added_stored)
    )?;
    crate::say!(
        "processed {} files, {} in {:.1}s; read {}",
        s.total_files,
        output::bytes(s.total_bytes),
        duration,
        output::bytes(s.bytes_read)
    )?;
    let t = crate::repo::traffic();
    crate::say!(
        "storage: {} requests, {} uploaded, {} downloaded",
        t.requests,
        output::bytes(t.bytes_up),
        output::bytes(t.bytes_down)
    )?;
    if s.skipped_count > 0 {
        crate::say!(
            "{} entries could not be read and are not in the snapshot",
            s.skipped_count
        )?;
    }
    crate::say!("snapshot {} saved", short(&o.snapshot_id))?;
    Ok(())
}
