//! `zaibei restore`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use zaibei_archive::progress::Counters;
use zaibei_archive::restore::{RestoreOptions, restore};
use zaibei_archive::snapshot_path::split_spec;

use crate::progress::Progress;
use crate::{Cli, exit, output};

/// Restore a snapshot, or a path inside it, into a directory.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id (or unique prefix, or `latest`), optionally with a path: `ID:/home/a`.
    pub snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(short, long)]
    pub target: PathBuf,
    /// Restore only paths matching a pattern (gitignore syntax; repeatable).
    #[arg(short = 'i', long = "include", value_name = "PATTERN")]
    pub includes: Vec<String>,
    /// Do not restore paths matching a pattern (gitignore syntax; repeatable).
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read every restored file back and compare it with the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// Writer threads (default: the number of CPUs or --connections, whichever is larger, on
    /// object storage or a server, where each thread waits for its reads; at least 4 on a
    /// local disk).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

#[derive(Serialize)]
struct Summary {
    message_type: &'static str,
    snapshot_id: String,
    files_restored: u64,
    files_unchanged: u64,
    files_verified: u64,
    dirs: u64,
    others: u64,
    bytes_restored: u64,
    errors: Vec<(String, String)>,
    total_duration: f64,
}

pub async fn run(cli: &Cli, a: &RestoreArgs) -> Result<u8> {
    let (spec, path) = split_spec(&a.snapshot);
    let repo = crate::repo::open_indexed(cli).await?;
    let (id, snapshot) = repo.find_snapshot(spec).await?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        subpath: path.as_bytes().to_vec(),
        includes: a.includes.clone(),
        excludes: a.excludes.clone(),
        verify: a.verify,
        workers: if a.workers == 0 {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .max(crate::repo::restore_writers(cli))
        } else {
            a.workers
        },
    };
    let start = std::time::SystemTime::now();
    let counters = Arc::new(Counters::default());
    let progress = Progress::start("restore", Arc::clone(&counters), cli.json, cli.quiet);
    let outcome = restore(Arc::clone(&repo), snapshot.tree, opts, counters).await;
    progress.finish();
    let o = outcome?;
    let duration = output::seconds_since(start);
    if cli.json {
        output::json_line(&Summary {
            message_type: "summary",
            snapshot_id: id.to_hex(),
            files_restored: o.files_written,
            files_unchanged: o.files_unchanged,
            files_verified: o.files_verified,
            dirs: o.dirs,
            others: o.others,
            bytes_restored: o.bytes_written,
            errors: o
                .errors
                .iter()
                .map(|(p, e)| (output::path(p), e.clone()))
                .collect(),
            total_duration: duration,
        })?;
    } else {
        for (p, e) in &o.errors {
            eprintln!("not restored: {}: {e}", output::path(p));
        }
        if !cli.quiet {
            crate::say!(
                "restored snapshot {} to {}: {} files written ({}), {} already correct, {} dirs, {} other entries in {:.1}s",
                id.short(),
                a.target.display(),
                o.files_written,
                output::bytes(o.bytes_written),
                o.files_unchanged,
                o.dirs,
                o.others,
                duration
            )?;
            if a.verify {
                crate::say!("verified {} files against the snapshot", o.files_verified)?;
            }
        }
    }
    if o.errors.is_empty() {
        Ok(exit::OK)
    } else {
        eprintln!("zaibei: {} entries could not be restored", o.errors.len());
        Ok(exit::PARTIAL)
    }
}
