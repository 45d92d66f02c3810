//! `zaibei repair index` and `zaibei repair snapshots`.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;
use zaibei_format::Id;
use zaibei_repo::repair::{RemovedPath, SnapshotOutcome};
use zaibei_repo::{
    RepairIndexOptions, RepairIndexReport, RepairSnapshotsOptions, RepairSnapshotsReport,
    repair_index, repair_snapshots,
};

use crate::{Cli, exit, output};

/// Repair a damaged repository: first the index, then the snapshots.
#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the packs alone.
    ///
    /// Every pack is read whole. Intact packs are indexed from their own headers (a
    /// maintenance-only key is enough). From a pack whose bytes changed or whose header cannot
    /// be decoded, every blob that still authenticates where the header or the old index
    /// places it is copied into a new pack (this needs a full key for file data and trees);
    /// the damaged pack is left in place, unindexed, and `prune` removes it later. With a
    /// maintenance-only key a damaged data or tree pack keeps its old index entry until a
    /// repair with a full key salvages it. No pack is ever deleted. The new index is written
    /// before the old index objects are removed, so an interrupted repair leaves a valid
    /// repository. Refuses when more than a tenth of the indexed packs are missing from the
    /// store, unless --force is given. Exit code 4 when blobs were lost (then run `zaibei
    /// repair snapshots`) or a damaged pack waits for a full key.
    Index(IndexArgs),
    /// Write new snapshots that leave out files and directories whose data is lost.
    ///
    /// A file is left out when one of its data blobs is not in the index; a directory when
    /// its tree is missing or cannot be read. Each snapshot that needs it gets a replacement
    /// with the same host, paths and time, the tag `repaired`, and the original's id in
    /// `original`; unchanged snapshots and the originals are left alone, unless --forget is
    /// given. Run `zaibei repair index` first. Needs a full key. Exit code 4 when a snapshot
    /// cannot be repaired (its root tree is lost).
    Snapshots(SnapshotsArgs),
}

/// Options of `repair index`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Read every pack and report what would be done; write and delete nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Rebuild the index even when more than a tenth of the packs it lists are missing from
    /// the store (their blobs are dropped from the index).
    #[arg(long)]
    pub force: bool,
}

/// Options of `repair snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Snapshots to repair (ids or unique prefixes, or `latest`); all when none is given.
    pub snapshots: Vec<String>,
    /// Remove each repaired snapshot once its replacement is stored.
    #[arg(long)]
    pub forget: bool,
    /// Report what would be done; write and delete nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub async fn run(cli: &Cli, c: &RepairCommand) -> Result<u8> {
    match c {
        RepairCommand::Index(a) => index(cli, a).await,
        RepairCommand::Snapshots(a) => snapshots(cli, a).await,
    }
}

/// A progress printer on standard error (only for people watching a terminal).
fn progress(cli: &Cli, what: &'static str) -> (bool, impl Fn(&str, u64, u64) + Send + Sync) {
    let show = !cli.quiet && !cli.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let f = move |phase: &str, done: u64, total: u64| {
        if show && (done.is_multiple_of(16) || done == total) {
            if total > 0 {
                eprint!("\r{what} {phase}: {done}/{total}   ");
            } else {
                eprint!("\r{what} {phase}: {done}   ");
            }
        }
    };
    (show, f)
}

fn connections(cli: &Cli) -> usize {
    cli.storage.requests().clamp(1, 16)
}

#[derive(Serialize)]
struct DamagedJson {
    pack: String,
    kind: &'static str,
    header_damaged: bool,
    kept: bool,
    blobs: usize,
    salvaged: usize,
    copied: usize,
    damaged: usize,
    lost: usize,
    new_pack: Option<String>,
}

#[derive(Serialize)]
struct UnreadableJson {
    pack: String,
    reason: String,
    blobs: Option<usize>,
    needs_full_key: bool,
}

#[derive(Serialize)]
struct IndexSummary<'a> {
    message_type: &'static str,
    dry_run: bool,
    complete: bool,
    needs_full_key: bool,
    index_replaced: usize,
    index_written: usize,
    index_deleted: usize,
    packs_listed: usize,
    packs_unlisted: usize,
    packs_read: usize,
    bytes_read: u64,
    packs_indexed: usize,
    blobs_indexed: u64,
    packs_added: usize,
    blobs_unindexed: u64,
    damaged: Vec<DamagedJson>,
    unreadable: Vec<UnreadableJson>,
    missing: Vec<String>,
    storage: &'a zaibei_store::StoreStats,
}

async fn index(cli: &Cli, a: &IndexArgs) -> Result<u8> {
    // Never through the cache: repair judges what the store holds.
    let repo = crate::repo::open_indexed_with(cli, false).await?;
    let (show, progress) = progress(cli, "repair index");
    let opts = RepairIndexOptions {
        dry_run: a.dry_run,
        connections: connections(cli),
        force: a.force,
    };
    let r = repair_index(&repo, &opts, &progress).await?;
    if show {
        eprint!("\r\x1b[K");
    }
    if cli.json {
        let storage = crate::repo::traffic();
        output::json_line(&index_summary(&r, &storage))?;
    } else {
        print_index(cli, &r)?;
    }
    Ok(if r.complete() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}

fn index_summary<'a>(
    r: &RepairIndexReport,
    storage: &'a zaibei_store::StoreStats,
) -> IndexSummary<'a> {
    IndexSummary {
        message_type: "summary",
        dry_run: r.dry_run,
        complete: r.complete(),
        needs_full_key: r.needs_full_key(),
        index_replaced: r.index_replaced,
        index_written: r.index_written,
        index_deleted: r.index_deleted,
        packs_listed: r.packs_listed,
        packs_unlisted: r.packs_unlisted,
        packs_read: r.packs_read,
        bytes_read: r.bytes_read,
        packs_indexed: r.packs_indexed,
        blobs_indexed: r.blobs_indexed,
        packs_added: r.packs_added,
        blobs_unindexed: r.blobs_unindexed,
        damaged: r
            .damaged
            .iter()
            .map(|d| DamagedJson {
                pack: d.id.to_hex(),
                kind: d.kind.name(),
                header_damaged: d.header_damaged,
                kept: d.kept,
                blobs: d.blobs,
                salvaged: d.salvaged,
                copied: d.copied,
                damaged: d.damaged,
                lost: d.lost,
                new_pack: d.new_pack.map(|p| p.to_hex()),
            })
            .collect(),
        unreadable: r
            .unreadable
            .iter()
            .map(|u| UnreadableJson {
                pack: u.id.to_hex(),
                reason: u.reason.clone(),
                blobs: u.blobs,
                needs_full_key: u.needs_full_key,
            })
            .collect(),
        missing: r.missing.iter().map(Id::to_hex).collect(),
        storage,
    }
}

fn print_index(cli: &Cli, r: &RepairIndexReport) -> Result<()> {
    for d in &r.damaged {
        let what = if d.header_damaged {
            "its header cannot be decoded; its blobs were located through the old index"
        } else {
            "its bytes no longer match its name"
        };
        if d.kept {
            eprintln!(
                "damaged: pack {} ({}, {} blobs): {what}; kept as indexed (reads get whatever \
                 bytes are intact). Salvage needs the full key: run `zaibei repair index` with \
                 a full key",
                d.id,
                d.kind.name(),
                d.blobs
            );
            continue;
        }
        let copied = match (d.copied, d.new_pack) {
            (0, _) => String::new(),
            (n, Some(p)) => format!(", {n} copied into pack {}", p.short()),
            (n, None) => format!(", {n} would be copied into a new pack"),
        };
        eprintln!(
            "damaged: pack {} ({} blobs): {what}; {} of {} blobs intact{copied}; {} damaged, \
             {} of them lost. The pack is left in place, unindexed",
            d.id,
            d.kind.name(),
            d.salvaged,
            d.blobs,
            d.damaged,
            d.lost
        );
    }
    for u in &r.unreadable {
        let blobs = u.blobs.map(|n| format!(" ({n} blobs)")).unwrap_or_default();
        eprintln!("left out: pack {}{blobs}: {}", u.id, u.reason);
    }
    for m in &r.missing {
        eprintln!("missing: pack {m} is in the index but not in the store; its blobs are gone");
    }
    if cli.quiet {
        return Ok(());
    }
    let would = if r.dry_run { "would be " } else { "" };
    crate::say!(
        "read {} of {} packs ({}); {} packs with {} blobs {}indexed ({} packs not indexed before)",
        r.packs_read,
        r.packs_listed,
        output::bytes(r.bytes_read),
        r.packs_indexed,
        r.blobs_indexed,
        would,
        r.packs_added
    )?;
    if r.packs_unlisted > 0 {
        crate::say!(
            "{} packs the index lists were missing from the store's listing but found when \
             asked for directly",
            r.packs_unlisted
        )?;
    }
    if r.dry_run {
        crate::say!(
            "dry run: {} index objects would be replaced; nothing was written",
            r.index_replaced
        )?;
    } else if r.index_deleted > 0 {
        crate::say!(
            "wrote {} index objects; deleted the {} they replace",
            r.index_written,
            r.index_deleted
        )?;
    } else {
        crate::say!("wrote {} index objects", r.index_written)?;
    }
    if r.complete() {
        crate::say!("the index is complete: no blob was lost")?;
    } else if r.needs_full_key() {
        // `repair snapshots` now would drop what a full key can still save.
        crate::say!(
            "damaged packs hold data that only a full key can authenticate and salvage; run \
             `zaibei repair index` with a full key (not `repair snapshots` yet)"
        )?;
    } else {
        let lost: usize = r.damaged.iter().map(|d| d.lost).sum();
        let mut parts = Vec::new();
        if lost > 0 {
            parts.push(format!("{lost} damaged blobs have no other copy"));
        }
        if r.blobs_unindexed > 0 {
            parts.push(format!(
                "{} blobs the previous index listed are no longer indexed",
                r.blobs_unindexed
            ));
        }
        if !r.unreadable.is_empty() {
            parts.push(format!("{} packs were left out", r.unreadable.len()));
        }
        if !r.missing.is_empty() {
            parts.push(format!(
                "{} indexed packs are missing from the store",
                r.missing.len()
            ));
        }
        crate::say!(
            "data was lost: {}; run `zaibei repair snapshots` to write snapshots without what \
             needs it",
            parts.join(", ")
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct RemovedJson {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
    reason: String,
}

#[derive(Serialize)]
struct SnapshotJson {
    id: String,
    time: String,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    replacement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tree: Option<String>,
    earlier: bool,
    forgotten: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    removed: Vec<RemovedJson>,
}

#[derive(Serialize)]
struct UnreadableSnapshotJson {
    object: String,
    reason: String,
}

#[derive(Serialize)]
struct SnapshotsSummary<'a> {
    message_type: &'static str,
    dry_run: bool,
    complete: bool,
    repaired: usize,
    intact: usize,
    unrepairable: usize,
    paths_removed: usize,
    forgotten: usize,
    trees: usize,
    trees_written: usize,
    refs_restored: usize,
    unindexed_packs: usize,
    snapshots: Vec<SnapshotJson>,
    unreadable: Vec<UnreadableSnapshotJson>,
    storage: &'a zaibei_store::StoreStats,
}

fn removed_json(r: &RemovedPath) -> RemovedJson {
    RemovedJson {
        path: output::path(&r.path),
        path_hex: output::hex_if_not_utf8(&r.path),
        reason: r.reason.to_string(),
    }
}

async fn snapshots(cli: &Cli, a: &SnapshotsArgs) -> Result<u8> {
    // Never through the cache: repair judges what the store holds.
    let repo = crate::repo::open_indexed_with(cli, false).await?;
    if a.forget && !a.dry_run {
        crate::sites::require_primary(cli, &repo, "repair snapshots --forget").await?;
    }
    crate::repo::require_content(repo.repository(), "repair snapshots")?;
    let ids: Vec<Id> = if a.snapshots.is_empty() {
        Vec::new()
    } else {
        repo.find_snapshots(&a.snapshots)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    };
    let (show, progress) = progress(cli, "repair snapshots");
    let opts = RepairSnapshotsOptions {
        snapshots: ids,
        forget_originals: a.forget,
        dry_run: a.dry_run,
        connections: connections(cli),
    };
    let r = repair_snapshots(repo, &opts, &progress).await?;
    if show {
        eprint!("\r\x1b[K");
    }
    if cli.json {
        let storage = crate::repo::traffic();
        output::json_line(&snapshots_summary(&r, &storage))?;
    } else {
        print_snapshots(cli, &r)?;
    }
    Ok(if r.complete() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}

fn snapshots_summary<'a>(
    r: &RepairSnapshotsReport,
    storage: &'a zaibei_store::StoreStats,
) -> SnapshotsSummary<'a> {
    SnapshotsSummary {
        message_type: "summary",
        dry_run: r.dry_run,
        complete: r.complete(),
        repaired: r.repaired(),
        intact: r.intact(),
        unrepairable: r.unrepairable(),
        paths_removed: r.paths_removed(),
        forgotten: r.snapshots.iter().filter(|s| s.forgotten).count(),
        trees: r.trees,
        trees_written: r.trees_written,
        refs_restored: r.refs_restored,
        unindexed_packs: r.unindexed_packs,
        snapshots: r
            .snapshots
            .iter()
            .map(|s| {
                let (outcome, replacement, tree, earlier, reason) = match &s.outcome {
                    SnapshotOutcome::Intact => ("intact", None, None, false, None),
                    SnapshotOutcome::Repaired {
                        snapshot,
                        tree,
                        earlier,
                    } => (
                        "repaired",
                        snapshot.map(|i| i.to_hex()),
                        Some(tree.to_hex()),
                        *earlier,
                        None,
                    ),
                    SnapshotOutcome::Unrepairable(reason) => {
                        ("unrepairable", None, None, false, Some(reason.to_string()))
                    }
                };
                SnapshotJson {
                    id: s.id.to_hex(),
                    time: output::time(s.snapshot.time),
                    outcome,
                    replacement,
                    tree,
                    earlier,
                    forgotten: s.forgotten,
                    reason,
                    removed: s.removed.iter().map(removed_json).collect(),
                }
            })
            .collect(),
        unreadable: r
            .unreadable
            .iter()
            .map(|(object, reason)| UnreadableSnapshotJson {
                object: object.clone(),
                reason: reason.clone(),
            })
            .collect(),
        storage,
    }
}

fn print_snapshots(cli: &Cli, r: &RepairSnapshotsReport) -> Result<()> {
    for (object, reason) in &r.unreadable {
        eprintln!("error: {object} cannot be read ({reason}); `zaibei forget` removes it");
    }
    for s in &r.snapshots {
        let name = format!(
            "snapshot {} ({})",
            s.id.short(),
            output::time_short(s.snapshot.time)
        );
        match &s.outcome {
            SnapshotOutcome::Intact => {}
            SnapshotOutcome::Unrepairable(reason) => {
                eprintln!("error: {name} cannot be repaired: its root {reason}");
            }
            SnapshotOutcome::Repaired {
                snapshot, earlier, ..
            } => {
                for p in &s.removed {
                    eprintln!("{name}: left out {}: {}", output::path(&p.path), p.reason);
                }
                if cli.quiet {
                    continue;
                }
                let forgotten = if s.forgotten {
                    "; original removed"
                } else {
                    ""
                };
                match (snapshot, earlier) {
                    (Some(new), true) => crate::say!(
                        "{name}: already replaced by snapshot {}{forgotten}",
                        new.short()
                    )?,
                    (Some(new), false) => crate::say!(
                        "{name}: {} entries left out; replaced by snapshot {}{forgotten}",
                        s.removed.len(),
                        new.short()
                    )?,
                    (None, _) => crate::say!(
                        "{name}: {} entries would be left out in a replacement",
                        s.removed.len()
                    )?,
                }
            }
        }
    }
    if cli.quiet {
        return Ok(());
    }
    if r.refs_restored > 0 {
        let would = if r.dry_run { "would be " } else { "" };
        crate::say!(
            "{} reference blobs were missing and {would}stored again from their trees",
            r.refs_restored
        )?;
    }
    let forgotten = r.snapshots.iter().filter(|s| s.forgotten).count();
    crate::say!(
        "{}{} snapshots repaired ({} entries left out), {} intact, {} cannot be repaired{}",
        if r.dry_run { "dry run: " } else { "" },
        r.repaired(),
        r.paths_removed(),
        r.intact(),
        r.unrepairable() + r.unreadable.len(),
        if forgotten > 0 {
            format!("; {forgotten} originals removed")
        } else {
            String::new()
        }
    )?;
    Ok(())
}
