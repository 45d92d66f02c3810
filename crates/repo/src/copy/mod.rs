//! Copying snapshots from one repository to another, any store to any store.
//!
//! Two ways, chosen by the keys:
//!
//! * **Packs as they are** ([`CopyMode::Packs`]) when both repositories share key material (one
//!   was created from the other with `init --from`): every blob keeps its id, and a source
//!   pack whose blobs are all missing at the destination is copied byte for byte under its own
//!   name; a pack of which only some blobs are missing is shrunk to those blobs, copied record
//!   by record under the same salt (as prune's repacking does). Nothing is decrypted, so the
//!   maintenance key of each side suffices. Snapshot objects are copied as they are and keep
//!   their ids.
//! * **Re-encryption** ([`CopyMode::Reencrypt`]) otherwise, even across crypto suites: every
//!   blob is read and decrypted at the source and stored again at the destination under its
//!   keys, where it gets a new id; trees are rewritten bottom up and snapshots saved anew.
//!   This needs the full key of both.
//!
//! Either way the destination is written like a backup writes: packs, then the index objects
//! listing them, then the snapshots, so an interrupted copy leaves a valid repository and
//! running it again transfers only what is still missing. A snapshot counts as present at the
//! destination when one there has its id, or (re-encryption, where ids change) the same time,
//! host, user, paths and tags.

mod packs;
mod reencrypt;

use std::collections::HashSet;
use std::sync::Arc;

use zaibei_format::{Id, Snapshot};

use crate::index::IdSet;
use crate::{IndexedRepository, Result};

/// How a copy moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// Packs copied as they are (shared key material).
    Packs,
    /// Blobs decrypted and encrypted again under the destination's keys.
    Reencrypt,
}

impl CopyMode {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            CopyMode::Packs => "packs",
            CopyMode::Reencrypt => "reencrypt",
        }
    }
}

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Transfers in flight at most.
    pub connections: usize,
    /// Read every object written back from the destination and check its hash.
    pub verify: bool,
    /// Only say what would be copied.
    pub dry_run: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            connections: 4,
            verify: true,
            dry_run: false,
        }
    }
}

/// One snapshot copied.
#[derive(Debug, Clone)]
pub struct CopiedSnapshot {
    /// Its id at the source.
    pub source: Id,
    /// Its id at the destination (the same in [`CopyMode::Packs`]; none in a dry run).
    pub destination: Option<Id>,
    /// When it was taken.
    pub time: zaibei_format::Timestamp,
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// How data moved.
    pub mode: CopyMode,
    /// Snapshots copied (or, in a dry run, to be copied), oldest first.
    pub copied: Vec<CopiedSnapshot>,
    /// Snapshots already present at the destination (source ids).
    pub present: Vec<Id>,
    /// Packs copied byte for byte.
    pub packs_whole: u64,
    /// Packs written with part of a source pack's blobs, or written anew (re-encryption).
    pub packs_written: u64,
    /// Blobs the destination lacked (to be copied, in a dry run).
    pub blobs: u64,
    /// Bytes written to the destination's store.
    pub bytes_written: u64,
    /// Index objects written.
    pub index_objects: u64,
    /// Objects read back and checked after writing.
    pub objects_verified: u64,
}

impl CopyReport {
    fn new(mode: CopyMode) -> Self {
        CopyReport {
            mode,
            copied: Vec::new(),
            present: Vec::new(),
            packs_whole: 0,
            packs_written: 0,
            blobs: 0,
            bytes_written: 0,
            index_objects: 0,
            objects_verified: 0,
        }
    }
}

/// The snapshots a dry run would copy.
fn planned(todo: &[(Id, Snapshot)]) -> Vec<CopiedSnapshot> {
    todo.iter()
        .map(|(id, s)| CopiedSnapshot {
            source: *id,
            destination: None,
            time: s.time,
        })
        .collect()
}

/// Progress of a copy: phase name, items done, items in total (0: unknown).
pub type CopyProgress<'a> = &'a (dyn Fn(&str, u64, u64) + Send + Sync);

/// The mode a copy from `src` to `dst` would use.
pub fn copy_mode(src: &IndexedRepository, dst: &IndexedRepository) -> CopyMode {
    if dst.shares_keys_with(src) {
        CopyMode::Packs
    } else {
        CopyMode::Reencrypt
    }
}

/// What identifies a backup across repositories that do not share keys (where its ids
/// differ): its time, host, user, paths and tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackupKey<'a> {
    time: zaibei_format::Timestamp,
    hostname: &'a str,
    username: &'a str,
    paths: &'a [Vec<u8>],
    tags: &'a [String],
}

impl<'a> BackupKey<'a> {
    /// The key of `s`.
    pub fn of(s: &'a Snapshot) -> Self {
        BackupKey {
            time: s.time,
            hostname: &s.hostname,
            username: &s.username,
            paths: &s.paths,
            tags: &s.tags,
        }
    }
}

/// Copies `snapshots` of `src` (ids and contents as listed there) to `dst`, skipping those
/// already present; see the module docs.
pub async fn copy_snapshots(
    src: &Arc<IndexedRepository>,
    dst: &Arc<IndexedRepository>,
    mut snapshots: Vec<(Id, Snapshot)>,
    opts: &CopyOptions,
    progress: CopyProgress<'_>,
) -> Result<CopyReport> {
    let mode = copy_mode(src, dst);
    let mut report = CopyReport::new(mode);
    let there = dst.list_snapshots().await?;
    if let Some((name, e)) = there.damaged.first() {
        tracing::warn!("destination snapshot {name} cannot be read ({e}); it is not compared");
    }
    snapshots.sort_by_key(|(_, s)| s.time);
    let mut seen = IdSet::default();
    snapshots.retain(|(id, _)| seen.insert(*id));
    // With shared keys a copied snapshot keeps its id, so the id alone says whether it is
    // there; otherwise the same backup is recognised by what it records.
    let ids: IdSet = there.snapshots.iter().map(|(id, _)| *id).collect();
    let backups: HashSet<BackupKey<'_>> = there
        .snapshots
        .iter()
        .map(|(_, s)| BackupKey::of(s))
        .collect();
    let mut todo = Vec::new();
    for (id, snap) in snapshots {
        let present = match mode {
            CopyMode::Packs => ids.contains(&id),
            CopyMode::Reencrypt => ids.contains(&id) || backups.contains(&BackupKey::of(&snap)),
        };
        if present {
            report.present.push(id);
        } else {
            todo.push((id, snap));
        }
    }
    if todo.is_empty() {
        return Ok(report);
    }
    match mode {
        CopyMode::Packs => packs::copy(src, dst, &todo, opts, progress, &mut report).await?,
        CopyMode::Reencrypt => {
            reencrypt::copy(src, dst, &todo, opts, progress, &mut report).await?
        }
    }
    Ok(report)
}
