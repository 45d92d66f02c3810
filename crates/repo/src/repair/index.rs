//! `repair index`: the index rebuilt from the packs alone (see the parent module).

use bytes::Bytes;
use futures::StreamExt;
use zaibei_format::pack::PackBlob;
use zaibei_format::{Id, IndexPack, PackKind};

use super::RepairProgress;
use crate::index::{IdSet, PackMeta};
use crate::repack::{blob_record, parse_pack, shrink_pack};
use crate::saver::write_index_chunks;
use crate::{BlobRef, IndexedRepository, RepoError, Result, names};

/// Settings of [`repair_index`].
#[derive(Debug, Clone)]
pub struct RepairIndexOptions {
    /// Read and decide everything, write and delete nothing.
    pub dry_run: bool,
    /// Packs read (and written) at a time.
    pub connections: usize,
}

impl Default for RepairIndexOptions {
    fn default() -> Self {
        RepairIndexOptions {
            dry_run: false,
            connections: 4,
        }
    }
}

/// A pack whose bytes no longer hash to its name, whose header still decodes, and whose blobs
/// were authenticated one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedPack {
    /// The damaged pack (left in place, no longer indexed).
    pub id: Id,
    /// Kind of its blobs.
    pub kind: PackKind,
    /// Blobs its header lists.
    pub blobs: usize,
    /// Blobs that still authenticate: they stay indexed, in `new_pack` or in another pack
    /// that already held them.
    pub salvaged: usize,
    /// Of the salvaged blobs, those copied into `new_pack`.
    pub copied: usize,
    /// Blobs that do not authenticate.
    pub damaged: usize,
    /// Damaged blobs that no other pack holds: they are gone from the repository.
    pub lost: usize,
    /// The pack written with the copied blobs (`None` when nothing needed copying, and in a
    /// dry run).
    pub new_pack: Option<Id>,
}

/// A pack left out of the new index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadablePack {
    /// The pack.
    pub id: Id,
    /// Why it is left out.
    pub reason: String,
    /// Blobs its header lists, when the header could be read.
    pub blobs: Option<usize>,
}

/// What [`repair_index`] found and did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct RepairIndexReport {
    /// Nothing was written or deleted.
    pub dry_run: bool,
    /// Index objects listed before the packs: the new index replaces them all.
    pub index_replaced: usize,
    /// Packs the store listed.
    pub packs_listed: usize,
    /// Packs read whole.
    pub packs_read: usize,
    /// Bytes read.
    pub bytes_read: u64,
    /// Packs in the new index (salvage packs included).
    pub packs_indexed: usize,
    /// Blob entries in the new index.
    pub blobs_indexed: u64,
    /// Intact packs that the index loaded beforehand did not list (left by an interrupted
    /// backup, or listed by index objects that are lost): indexed again.
    pub packs_added: usize,
    /// Damaged packs whose intact blobs were saved.
    pub damaged: Vec<DamagedPack>,
    /// Packs left out of the index: their blobs are unknown from now on (a later backup
    /// stores them again).
    pub unreadable: Vec<UnreadablePack>,
    /// Packs the index loaded beforehand listed that the store no longer holds: their blobs
    /// are gone.
    pub missing: Vec<Id>,
    /// Blobs the index loaded beforehand located that the new index does not.
    pub blobs_unindexed: u64,
    /// Index objects written.
    pub index_written: usize,
    /// Old index objects deleted.
    pub index_deleted: usize,
}

impl RepairIndexReport {
    /// True when nothing was lost: no blob the old index located is missing from the new one,
    /// no damaged blob is without another copy, and every pack could be read.
    pub fn complete(&self) -> bool {
        self.blobs_unindexed == 0
            && self.unreadable.is_empty()
            && self.missing.is_empty()
            && self.damaged.iter().all(|d| d.lost == 0)
    }
}

/// What the first read of a pack gave.
enum FirstRead {
    /// Its bytes hash to its name and its header decodes.
    Intact(IndexPack),
    /// Its bytes do not hash to its name.
    Damaged,
    /// Left out, for this reason.
    Unreadable(UnreadablePack),
}

/// What salvaging a damaged pack gave.
enum Salvage {
    /// A second read gave bytes that do hash to its name (the first read was corrupted on the
    /// way).
    Intact(IndexPack),
    /// Its blobs, authenticated one by one.
    Opened {
        kind: PackKind,
        bytes: Bytes,
        header: Vec<PackBlob>,
        opened: Vec<Id>,
        failed: Vec<Id>,
    },
    /// Left out, for this reason.
    Unreadable(UnreadablePack),
}

fn kind_slot(kind: PackKind) -> usize {
    kind as usize - 1
}

fn vanished(id: Id) -> UnreadablePack {
    UnreadablePack {
        id,
        reason: "it disappeared from the store while repair ran (a prune deleted it?)".into(),
        blobs: None,
    }
}

/// Reads a pack whole; `Ok(None)` when it is gone.
async fn fetch(repo: &IndexedRepository, id: &Id) -> Result<Option<Bytes>> {
    match repo.store().get(&names::pack(id)).await {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        // Anything else says nothing about the pack: stop rather than leave it out.
        Err(e) => Err(e.into()),
    }
}

/// Hashes `bytes` and, when they match `id`, decodes the pack's header (off the runtime).
/// `Ok(None)`: the bytes do not match.
async fn decode_intact(
    repo: &IndexedRepository,
    id: Id,
    bytes: Bytes,
) -> Result<Option<std::result::Result<IndexPack, RepoError>>> {
    let keys = repo.keys().maintenance().clone();
    let suite = repo.suite();
    tokio::task::spawn_blocking(move || {
        if Id(suite.hash(&bytes)) != id {
            return None;
        }
        let name = names::pack(&id);
        Some(
            parse_pack(&keys, &name, &bytes).map(|(kind, salt, blobs)| IndexPack {
                id,
                kind,
                salt,
                size: bytes.len() as u64,
                blobs,
            }),
        )
    })
    .await
    .map_err(|e| RepoError::Internal(format!("pack decoding task: {e}")))
}

/// An intact pack whose header does not decode: left out, unless its format is newer than
/// this build (then nothing may be decided).
fn undecodable(id: Id, e: RepoError) -> Result<UnreadablePack> {
    if e.is_unsupported_version() {
        return Err(e);
    }
    Ok(UnreadablePack {
        id,
        reason: format!("its header cannot be decoded: {e}"),
        blobs: None,
    })
}

/// Reads a pack for the first time; also the bytes read (`None` when it is gone).
async fn first_read(repo: &IndexedRepository, id: Id) -> Result<(FirstRead, Option<u64>)> {
    let Some(bytes) = fetch(repo, &id).await? else {
        return Ok((FirstRead::Unreadable(vanished(id)), None));
    };
    let len = bytes.len() as u64;
    let read = match decode_intact(repo, id, bytes).await? {
        None => FirstRead::Damaged,
        Some(Ok(pack)) => FirstRead::Intact(pack),
        Some(Err(e)) => FirstRead::Unreadable(undecodable(id, e)?),
    };
    Ok((read, Some(len)))
}

/// Reads a damaged pack again and authenticates each blob its header lists.
async fn salvage(repo: &IndexedRepository, id: Id) -> Result<Salvage> {
    let Some(bytes) = fetch(repo, &id).await? else {
        return Ok(Salvage::Unreadable(vanished(id)));
    };
    match decode_intact(repo, id, bytes.clone()).await? {
        Some(Ok(pack)) => return Ok(Salvage::Intact(pack)),
        Some(Err(e)) => return Ok(Salvage::Unreadable(undecodable(id, e)?)),
        None => {}
    }
    let name = names::pack(&id);
    let (kind, salt, header) = match parse_pack(repo.keys().maintenance(), &name, &bytes) {
        Ok(parsed) => parsed,
        Err(e) if e.is_unsupported_version() => return Err(e),
        Err(e) => {
            return Ok(Salvage::Unreadable(UnreadablePack {
                id,
                reason: format!(
                    "it is damaged (its bytes no longer hash to its name) and its header cannot \
                     be decoded: {e}"
                ),
                blobs: None,
            }));
        }
    };
    if kind != PackKind::Refs && !repo.keys().has_content() {
        return Ok(Salvage::Unreadable(UnreadablePack {
            id,
            reason: format!(
                "it is damaged (its bytes no longer hash to its name); saving its intact {} \
                 blobs needs a full key, and the repository was opened with a maintenance-only \
                 key",
                kind.name()
            ),
            blobs: Some(header.len()),
        }));
    }
    let meta = PackMeta {
        id,
        kind,
        salt,
        size: bytes.len() as u64,
    };
    let (mut opened, mut failed) = (Vec::new(), Vec::new());
    for b in &header {
        let loc = BlobRef {
            pack: &meta,
            offset: b.offset,
            length: b.length,
            raw_length: b.raw_length,
        };
        let ok = blob_record(&name, &bytes, b)
            .and_then(|stored| repo.open_stored_blob(kind, &b.id, &loc, stored))
            .is_ok();
        if ok {
            opened.push(b.id);
        } else {
            failed.push(b.id);
        }
    }
    Ok(Salvage::Opened {
        kind,
        bytes,
        header,
        opened,
        failed,
    })
}

/// Rebuilds the index from the packs; see the module docs of [`crate::repair`].
///
/// Index objects are listed before the packs, so every index object replaced describes only
/// packs that were read. Errors of the store other than a pack that disappeared stop the
/// repair before anything is written: a pack is left out only for what its bytes say.
pub async fn repair_index(
    repo: &IndexedRepository,
    opts: &RepairIndexOptions,
    progress: RepairProgress<'_>,
) -> Result<RepairIndexReport> {
    let connections = opts.connections.max(1);
    let mut report = RepairIndexReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // 1. Index objects first, then packs.
    let old_index: Vec<Id> = repo
        .store()
        .list(names::INDEX)
        .await?
        .iter()
        .filter_map(|o| names::id_of(&o.name))
        .collect();
    report.index_replaced = old_index.len();
    let mut packs: Vec<Id> = Vec::new();
    for o in repo.store().list(names::DATA).await? {
        match names::id_of(&o.name) {
            Some(id) => packs.push(id),
            None => tracing::warn!("{} is not a pack name; ignored", o.name),
        }
    }
    packs.sort();
    report.packs_listed = packs.len();
    if packs.is_empty() && !repo.index().packs().is_empty() {
        return Err(RepoError::Refused(format!(
            "the store lists no packs, but the index lists {}; refusing to replace the index \
             with an empty one (is the repository location right?)",
            repo.index().packs().len()
        )));
    }
    let stored: IdSet = packs.iter().copied().collect();

    // 2. Every pack, whole.
    let total = packs.len() as u64;
    let mut intact: Vec<IndexPack> = Vec::new();
    let mut damaged_ids: Vec<Id> = Vec::new();
    {
        let mut reads = futures::stream::iter(
            packs
                .iter()
                .map(|&id| async move { (id, first_read(repo, id).await) }),
        )
        .buffer_unordered(connections);
        let mut done = 0u64;
        while let Some((id, r)) = reads.next().await {
            let (read, len) = r?;
            done += 1;
            progress("packs", done, total);
            if let Some(len) = len {
                report.packs_read += 1;
                report.bytes_read += len;
            }
            match read {
                FirstRead::Intact(p) => intact.push(p),
                FirstRead::Damaged => damaged_ids.push(id),
                FirstRead::Unreadable(u) => report.unreadable.push(u),
            }
        }
    }
    report.packs_added = intact
        .iter()
        .filter(|p| repo.index().pack(&p.id).is_none())
        .count();
    // Blobs that intact packs hold, by kind.
    let mut held: [IdSet; 3] = Default::default();
    for p in &intact {
        held[kind_slot(p.kind)].extend(p.blobs.iter().map(|b| b.id));
    }

    // 3. Damaged packs: what still authenticates and no intact pack holds goes into a new pack.
    damaged_ids.sort();
    let mut failed_by_pack: Vec<(usize, PackKind, Vec<Id>)> = Vec::new();
    {
        let total = damaged_ids.len() as u64;
        let mut salvages = futures::stream::iter(
            damaged_ids
                .iter()
                .map(|&id| async move { (id, salvage(repo, id).await) }),
        )
        .buffer_unordered(connections);
        let mut done = 0u64;
        while let Some((id, r)) = salvages.next().await {
            done += 1;
            progress("salvage", done, total);
            match r? {
                Salvage::Intact(p) => {
                    held[kind_slot(p.kind)].extend(p.blobs.iter().map(|b| b.id));
                    intact.push(p);
                }
                Salvage::Unreadable(u) => report.unreadable.push(u),
                Salvage::Opened {
                    kind,
                    bytes,
                    header,
                    opened,
                    failed,
                } => {
                    let slot = kind_slot(kind);
                    let copy: IdSet = opened
                        .iter()
                        .filter(|b| !held[slot].contains(b))
                        .copied()
                        .collect();
                    let mut entry = DamagedPack {
                        id,
                        kind,
                        blobs: header.len(),
                        salvaged: opened.len(),
                        copied: copy.len(),
                        damaged: failed.len(),
                        lost: 0,
                        new_pack: None,
                    };
                    if !copy.is_empty() {
                        let keys = repo.keys().maintenance().clone();
                        let suite = repo.suite();
                        let name = names::pack(&id);
                        let keep = copy.clone();
                        let shrunk = tokio::task::spawn_blocking(move || {
                            shrink_pack(&keys, suite, &name, &bytes, |b| keep.contains(b))
                        })
                        .await
                        .map_err(|e| RepoError::Internal(format!("salvage task: {e}")))??;
                        if !opts.dry_run {
                            repo.store()
                                .put(&names::pack(&shrunk.id), shrunk.bytes.clone())
                                .await?;
                            entry.new_pack = Some(shrunk.id);
                        }
                        held[slot].extend(copy);
                        intact.push(shrunk.index);
                    }
                    failed_by_pack.push((report.damaged.len(), kind, failed));
                    report.damaged.push(entry);
                }
            }
        }
    }
    // A damaged blob is lost only when no pack of the new index holds it.
    for (n, kind, failed) in failed_by_pack {
        report.damaged[n].lost = failed
            .iter()
            .filter(|b| !held[kind_slot(kind)].contains(b))
            .count();
    }
    report.damaged.sort_by_key(|d| d.id);
    report.unreadable.sort_by_key(|u| u.id);

    // 4. What the old index knew that the new one does not.
    report.missing = repo
        .index()
        .packs()
        .iter()
        .filter(|p| !stored.contains(&p.id))
        .map(|p| p.id)
        .collect();
    report.missing.sort();
    for kind in PackKind::ALL {
        report.blobs_unindexed += repo
            .index()
            .blobs(kind)
            .filter(|(id, _)| !held[kind_slot(kind)].contains(id))
            .count() as u64;
    }
    intact.sort_by_key(|p| p.id);
    report.packs_indexed = intact.len();
    report.blobs_indexed = intact.iter().map(|p| p.blobs.len() as u64).sum();
    if opts.dry_run || (intact.is_empty() && old_index.is_empty()) {
        return Ok(report);
    }

    // 5. The new index, whose last object supersedes every old one; then the old ones go.
    let written = write_index_chunks(repo, intact, &old_index).await?;
    report.index_written = written.len();
    let total = old_index.len() as u64;
    for (n, id) in old_index.iter().enumerate() {
        if written.contains(id) {
            continue;
        }
        let name = names::index(id);
        match repo.store().delete(&name).await {
            Ok(()) => report.index_deleted += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(cache) = repo.metadata_cache() {
            cache.forget(&name);
        }
        progress("delete", n as u64 + 1, total);
    }
    Ok(report)
}
