//! `zaibei prune`: delete data no snapshot needs, in two phases.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use zaibei_repo::{MaxUnused, PruneOptions, PruneReport, prune};

use crate::{Cli, exit, output};

/// Delete data that no snapshot needs.
///
/// Deletion has two phases, measured on the store's clock: a run marks (condemns) the packs no
/// snapshot needs and shrinks partly used ones; a later run, once the safety margin has passed,
/// deletes what is still unneeded. Backups and copies may run at the same time: they notice
/// packs condemned under them and store those blobs again. Only one prune runs at a time (a
/// second one backs off). The maintenance key is enough.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Unused space to tolerate in partly used packs: a share of the repository (5%) or a
    /// size (500M). Packs with the most unused space are repacked until the rest is within it.
    #[arg(long, value_name = "LIMIT", default_value = "5%", value_parser = MaxUnused::parse)]
    pub max_unused: MaxUnused,
    /// Repack at most this much pack data in one run (e.g. 10G).
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size)]
    pub max_repack: Option<u64>,
    /// How long condemned packs stay readable before deletion, on the store's clock. 0 deletes
    /// in the same run: only when no backup or copy writes to the repository meanwhile.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub safety_margin: Duration,
    /// Report what would be done; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    message_type: &'static str,
    dry_run: bool,
    snapshots: usize,
    packs: usize,
    pack_bytes: u64,
    used_blobs: u64,
    used_bytes: u64,
    unused_bytes: u64,
    unused_bytes_after: u64,
    unused_packs: usize,
    orphan_packs: usize,
    repacked_packs: usize,
    repacked_bytes_before: u64,
    repacked_bytes_after: u64,
    taken_back: usize,
    deleted_packs: usize,
    deleted_bytes: u64,
    waiting_packs: usize,
    waiting_bytes: u64,
    next_sweep: Option<String>,
    missing_dropped: usize,
    index_written: usize,
    index_deleted: usize,
    store_time: String,
    generation: u64,
    storage: &'a zaibei_store::StoreStats,
}

fn time(secs: u64) -> String {
    jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| secs.to_string())
}

pub async fn run(cli: &Cli, a: &PruneArgs) -> Result<u8> {
    let repo = crate::repo::open_indexed(cli).await?;
    if !a.dry_run {
        crate::sites::require_primary(cli, &repo, "prune").await?;
    }
    let show = !cli.quiet && !cli.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = move |phase: &str, done: u64, total: u64| {
        if show && (done.is_multiple_of(16) || done == total) {
            if total > 0 {
                eprint!("\rprune {phase}: {done}/{total}   ");
            } else {
                eprint!("\rprune {phase}: {done}   ");
            }
        }
    };
    let opts = PruneOptions {
        max_unused: a.max_unused,
        max_repack: a.max_repack,
        margin: a.safety_margin,
        dry_run: a.dry_run,
        connections: cli.storage.requests().clamp(1, 16),
    };
    let r = prune(&repo, &opts, &progress).await?;
    if show {
        eprint!("\r\x1b[K");
    }
    if cli.json {
        let storage = crate::repo::traffic();
        output::json_line(&summary(&r, a.dry_run, &storage))?;
    } else if !cli.quiet {
        print_report(&r, a)?;
    }
    Ok(exit::OK)
}

fn summary<'a>(
    r: &PruneReport,
    dry_run: bool,
    storage: &'a zaibei_store::StoreStats,
) -> Summary<'a> {
    Summary {
        message_type: "summary",
        dry_run,
        snapshots: r.snapshots,
        packs: r.packs,
        pack_bytes: r.pack_bytes,
        used_blobs: r.used_blobs,
        used_bytes: r.used_bytes,
        unused_bytes: r.unused_bytes,
        unused_bytes_after: r.unused_bytes_after,
        unused_packs: r.unused_packs,
        orphan_packs: r.orphan_packs,
        repacked_packs: r.repacked_packs,
        repacked_bytes_before: r.repacked_bytes_before,
        repacked_bytes_after: r.repacked_bytes_after,
        taken_back: r.taken_back,
        deleted_packs: r.deleted_packs,
        deleted_bytes: r.deleted_bytes,
        waiting_packs: r.waiting_packs,
        waiting_bytes: r.waiting_bytes,
        next_sweep: r.next_sweep.map(time),
        missing_dropped: r.missing_dropped,
        index_written: r.index_written,
        index_deleted: r.index_deleted,
        store_time: time(r.store_time),
        generation: r.generation,
        storage,
    }
}

fn print_report(r: &PruneReport, a: &PruneArgs) -> Result<()> {
    let b = output::bytes;
    let would = if a.dry_run { "would be " } else { "" };
    crate::say!(
        "{} snapshots need {} blobs ({}); the store holds {} packs ({})",
        r.snapshots,
        r.used_blobs,
        b(r.used_bytes),
        r.packs,
        b(r.pack_bytes)
    )?;
    crate::say!(
        "{} packs unused, {} left over from interrupted work, {} {}condemned",
        r.unused_packs,
        r.orphan_packs,
        r.unused_packs + r.orphan_packs + r.repacked_packs,
        would
    )?;
    crate::say!(
        "{} packs {}repacked: {} -> {}; unused space in kept packs {} -> {}",
        r.repacked_packs,
        would,
        b(r.repacked_bytes_before),
        b(r.repacked_bytes_after),
        b(r.unused_bytes),
        b(r.unused_bytes_after)
    )?;
    if r.taken_back > 0 {
        crate::say!(
            "{} condemned packs {}taken back: snapshots written since need them",
            r.taken_back,
            would
        )?;
    }
    crate::say!(
        "{} packs {}deleted ({})",
        r.deleted_packs,
        would,
        b(r.deleted_bytes)
    )?;
    if r.waiting_packs > 0 {
        crate::say!(
            "{} packs ({}) wait for the safety margin; a prune after {} deletes them",
            r.waiting_packs,
            b(r.waiting_bytes),
            r.next_sweep.map(time).unwrap_or_default()
        )?;
    }
    Ok(())
}
