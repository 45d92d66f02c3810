//! `repair index`: the index rebuilt from the packs alone (see the parent module).

use bytes::Bytes;
use futures::StreamExt;
use zaibei_format::pack::PackBlob;
use zaibei_format::{Id, IndexPack, PackKind};

use super::RepairProgress;
use crate::index::{IdMap, IdSet, PackMeta};
use crate::repack::{blob_record, build_pack, parse_pack};
use crate::saver::write_index_chunks;
use crate::{BlobRef, IndexedRepository, RepoError, Result, names};

/// Settings of [`repair_index`].
#[derive(Debug, Clone)]
pub struct RepairIndexOptions {
    /// Read and decide everything, write and delete nothing.
    pub dry_run: bool,
    /// Packs read (and written) at a time.
    pub connections: usize,
    /// Go on even when more than a tenth of the packs the index lists are missing from the
    /// store (normally a sign of a wrong location or an incomplete listing).
    pub force: bool,
}

impl Default for RepairIndexOptions {
    fn default() -> Self {
        RepairIndexOptions {
            dry_run: false,
            connections: 4,
            force: false,
        }
    }
}

/// Share of the indexed packs that may be missing from the store before repair refuses
/// (without [`RepairIndexOptions::force`]): one in ten.
const MISSING_LIMIT_DIVISOR: usize = 10;

/// A damaged pack: its bytes no longer hash to its name, or its header cannot be decoded.
/// Its blobs were authenticated one by one where its header or the old index places them, or,
/// when the key cannot authenticate them, its old index entry is kept as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedPack {
    /// The damaged pack (left in place; no longer indexed unless `kept`).
    pub id: Id,
    /// Kind of its blobs.
    pub kind: PackKind,
    /// Its header cannot be decoded: its blobs were located through the old index alone.
    pub header_damaged: bool,
    /// Nothing could be authenticated (a data or tree pack, and a maintenance-only key): its
    /// old index entry is carried forward unchanged, so reads still get whatever bytes are
    /// intact. Salvaging it needs a `repair index` with a full key.
    pub kept: bool,
    /// Blobs its header (or, when the header is damaged, the old index) lists.
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
    /// Its blobs could be authenticated with a full key, not with the maintenance-only key
    /// the repair ran with.
    pub needs_full_key: bool,
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
    /// Packs the old index lists that the listing lacked but that the store holds when asked
    /// directly: read like the others.
    pub packs_unlisted: usize,
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
    /// no damaged blob is without another copy, every pack could be read, and no damaged
    /// pack waits for a full key.
    pub fn complete(&self) -> bool {
        self.blobs_unindexed == 0
            && self.unreadable.is_empty()
            && self.missing.is_empty()
            && self.damaged.iter().all(|d| d.lost == 0 && !d.kept)
    }

    /// True when some damaged pack could not be salvaged for want of a full key (kept as
    /// indexed, or left unindexed): run `repair index` again with a full key.
    pub fn needs_full_key(&self) -> bool {
        self.damaged.iter().any(|d| d.kept) || self.unreadable.iter().any(|u| u.needs_full_key)
    }
}

/// What the first read of a pack gave.
enum FirstRead {
    /// Its bytes hash to its name and its header decodes.
    Intact(IndexPack),
    /// Its bytes do not hash to its name, or its header does not decode.
    Damaged,
    /// Left out, for this reason.
    Unreadable(UnreadablePack),
}

/// What salvaging a damaged pack gave.
enum Salvage {
    /// A second read gave bytes that do hash to its name and a header that decodes (the first
    /// read was corrupted on the way).
    Intact(IndexPack),
    /// Its blobs, authenticated one by one.
    Opened {
        kind: PackKind,
        salt: [u8; 32],
        bytes: Bytes,
        header_damaged: bool,
        /// Blobs its header (or the old index) lists.
        listed: usize,
        /// Records that authenticate, in pack order (one per blob id).
        opened: Vec<PackBlob>,
        /// Blobs none of whose records authenticate.
        failed: Vec<Id>,
    },
    /// Nothing can be authenticated with the key at hand: the old index entry, unchanged.
    Kept {
        old: IndexPack,
        header_damaged: bool,
    },
    /// Left out, for this reason.
    Unreadable(UnreadablePack),
}

fn vanished(id: Id) -> UnreadablePack {
    UnreadablePack {
        id,
        reason: "it disappeared from the store while repair ran (a prune deleted it?)".into(),
        blobs: None,
        needs_full_key: false,
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

/// Reads a pack for the first time; also the bytes read (`None` when it is gone).
async fn first_read(repo: &IndexedRepository, id: Id) -> Result<(FirstRead, Option<u64>)> {
    let Some(bytes) = fetch(repo, &id).await? else {
        return Ok((FirstRead::Unreadable(vanished(id)), None));
    };
    let len = bytes.len() as u64;
    let read = match decode_intact(repo, id, bytes).await? {
        Some(Ok(pack)) => FirstRead::Intact(pack),
        // A format newer than this build: nothing may be decided.
        Some(Err(e)) if e.is_unsupported_version() => return Err(e),
        None | Some(Err(_)) => FirstRead::Damaged,
    };
    Ok((read, Some(len)))
}

/// The blob records to try in a damaged pack: those its header lists, then those the old
/// index places elsewhere in it (when the old entry agrees on kind and salt), in pack order.
fn candidates(header: Vec<PackBlob>, old: Option<&IndexPack>) -> Vec<PackBlob> {
    let mut all = header;
    let known: std::collections::HashSet<(Id, u64)> =
        all.iter().map(|b| (b.id, b.offset)).collect();
    if let Some(old) = old {
        all.extend(
            old.blobs
                .iter()
                .filter(|b| !known.contains(&(b.id, b.offset)))
                .copied(),
        );
    }
    all.sort_by_key(|b| (b.offset, b.id));
    all
}

/// Reads a damaged pack again and authenticates each blob where its header, or the old index
/// (`old`, this pack's entry in the index loaded beforehand), places it.
async fn salvage(repo: &IndexedRepository, id: Id, old: Option<IndexPack>) -> Result<Salvage> {
    let Some(bytes) = fetch(repo, &id).await? else {
        return Ok(Salvage::Unreadable(vanished(id)));
    };
    let name = names::pack(&id);
    let parsed = match decode_intact(repo, id, bytes.clone()).await? {
        Some(Ok(pack)) => return Ok(Salvage::Intact(pack)),
        Some(Err(e)) => Err(e),
        None => parse_pack(repo.keys().maintenance(), &name, &bytes),
    };
    let (kind, salt, header_damaged, records) = match parsed {
        Ok((kind, salt, header)) => {
            let old = old.as_ref().filter(|o| o.kind == kind && o.salt == salt);
            (kind, salt, false, candidates(header, old))
        }
        Err(e) if e.is_unsupported_version() => return Err(e),
        Err(e) => match &old {
            // The old index is the only record left of where its blobs lie.
            Some(o) => (o.kind, o.salt, true, candidates(Vec::new(), Some(o))),
            None => {
                return Ok(Salvage::Unreadable(UnreadablePack {
                    id,
                    reason: format!(
                        "it is damaged, its header cannot be decoded ({e}) and no index lists it"
                    ),
                    blobs: None,
                    needs_full_key: false,
                }));
            }
        },
    };
    if kind != PackKind::Refs && !repo.keys().has_content() {
        return Ok(match old {
            Some(old) => Salvage::Kept {
                old,
                header_damaged,
            },
            None => Salvage::Unreadable(UnreadablePack {
                id,
                reason: format!(
                    "it is damaged and no index lists it; saving its intact {} blobs needs a \
                     full key (the repository was opened with a maintenance-only key), so it \
                     stays unindexed",
                    kind.name()
                ),
                blobs: Some(records.len()),
                needs_full_key: true,
            }),
        });
    }
    let meta = PackMeta {
        id,
        kind,
        salt,
        size: bytes.len() as u64,
    };
    let listed: IdSet = records.iter().map(|b| b.id).collect();
    let mut opened: Vec<PackBlob> = Vec::new();
    let mut good = IdSet::default();
    for b in &records {
        if good.contains(&b.id) {
            continue;
        }
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
            good.insert(b.id);
            opened.push(*b);
        }
    }
    let mut failed: Vec<Id> = listed
        .iter()
        .filter(|b| !good.contains(b))
        .copied()
        .collect();
    failed.sort();
    Ok(Salvage::Opened {
        kind,
        salt,
        bytes,
        header_damaged,
        listed: listed.len(),
        opened,
        failed,
    })
}

/// Each pack's entry in the index loaded beforehand, for the packs in `wanted`.
fn old_entries(repo: &IndexedRepository, wanted: &IdSet) -> IdMap<IndexPack> {
    let packs = repo.index().packs();
    let mut out: IdMap<IndexPack> = IdMap::default();
    for kind in PackKind::ALL {
        for loc in repo.index().all_locations(kind) {
            let Some(meta) = packs.get(loc.pack) else {
                continue;
            };
            if !wanted.contains(&meta.id) {
                continue;
            }
            out.entry(meta.id)
                .or_insert_with(|| IndexPack {
                    id: meta.id,
                    kind: meta.kind,
                    salt: meta.salt,
                    size: meta.size,
                    blobs: Vec::new(),
                })
                .blobs
                .push(PackBlob {
                    id: *loc.id,
                    offset: loc.offset,
                    length: loc.length,
                    raw_length: loc.raw_length,
                });
        }
    }
    for p in out.values_mut() {
        p.blobs.sort_by_key(|b| (b.offset, b.id));
    }
    out
}

/// Looks up directly each pack the old index lists that the listing lacks: those the store
/// holds after all, and those it does not.
async fn unlisted(
    repo: &IndexedRepository,
    listed: &IdSet,
    connections: usize,
) -> Result<(Vec<Id>, Vec<Id>)> {
    let absent: Vec<Id> = repo
        .index()
        .packs()
        .iter()
        .map(|p| p.id)
        .filter(|id| !listed.contains(id))
        .collect();
    let mut looks = futures::stream::iter(absent.into_iter().map(|id| async move {
        let r = repo.store().stat(&names::pack(&id)).await;
        (id, r)
    }))
    .buffer_unordered(connections);
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    while let Some((id, r)) = looks.next().await {
        match r {
            Ok(_) => found.push(id),
            Err(e) if e.is_not_found() => missing.push(id),
            Err(e) => return Err(e.into()),
        }
    }
    found.sort();
    missing.sort();
    Ok((found, missing))
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
    // A pack the old index lists but the listing lacks gets a second look before it counts
    // as missing; too many missing ones stop the repair (a wrong location, a partial listing).
    let (found, missing) = unlisted(repo, &packs.iter().copied().collect(), connections).await?;
    report.packs_unlisted = found.len();
    packs.extend(found);
    packs.sort();
    let indexed = repo.index().packs().len();
    if !opts.force && !missing.is_empty() && missing.len() * MISSING_LIMIT_DIVISOR > indexed {
        let named: Vec<String> = missing.iter().take(3).map(|p| p.to_string()).collect();
        return Err(RepoError::Refused(format!(
            "{} of the {indexed} packs the index lists are not in the store ({}{}); refusing \
             to drop them all from the index (is the repository location right?). Use --force \
             to rebuild the index anyway",
            missing.len(),
            named.join(", "),
            if missing.len() > named.len() {
                ", …"
            } else {
                ""
            }
        )));
    }

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
        held[p.kind.slot()].extend(p.blobs.iter().map(|b| b.id));
    }

    // 3. Damaged packs: what still authenticates and no intact pack holds goes into a new pack.
    damaged_ids.sort();
    let mut old = old_entries(repo, &damaged_ids.iter().copied().collect());
    let mut failed_by_pack: Vec<(usize, PackKind, Vec<Id>)> = Vec::new();
    {
        let total = damaged_ids.len() as u64;
        let mut salvages = futures::stream::iter(damaged_ids.iter().map(|&id| {
            let old = old.remove(&id);
            async move { (id, salvage(repo, id, old).await) }
        }))
        .buffer_unordered(connections);
        let mut done = 0u64;
        while let Some((id, r)) = salvages.next().await {
            done += 1;
            progress("salvage", done, total);
            match r? {
                Salvage::Intact(p) => {
                    held[p.kind.slot()].extend(p.blobs.iter().map(|b| b.id));
                    intact.push(p);
                }
                Salvage::Unreadable(u) => report.unreadable.push(u),
                Salvage::Kept {
                    old,
                    header_damaged,
                } => {
                    held[old.kind.slot()].extend(old.blobs.iter().map(|b| b.id));
                    report.damaged.push(DamagedPack {
                        id,
                        kind: old.kind,
                        header_damaged,
                        kept: true,
                        blobs: old.blobs.iter().map(|b| b.id).collect::<IdSet>().len(),
                        salvaged: 0,
                        copied: 0,
                        damaged: 0,
                        lost: 0,
                        new_pack: None,
                    });
                    intact.push(old);
                }
                Salvage::Opened {
                    kind,
                    salt,
                    bytes,
                    header_damaged,
                    listed,
                    opened,
                    failed,
                } => {
                    let slot = kind.slot();
                    let copy: Vec<PackBlob> = opened
                        .iter()
                        .filter(|b| !held[slot].contains(&b.id))
                        .copied()
                        .collect();
                    let mut entry = DamagedPack {
                        id,
                        kind,
                        header_damaged,
                        kept: false,
                        blobs: listed,
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
                        let ids: Vec<Id> = copy.iter().map(|b| b.id).collect();
                        let built = tokio::task::spawn_blocking(move || {
                            let records = copy
                                .into_iter()
                                .map(|b| blob_record(&name, &bytes, &b).map(|r| (b, r)))
                                .collect::<Result<Vec<_>>>()?;
                            build_pack(&keys, suite, kind, salt, &name, records)
                        })
                        .await
                        .map_err(|e| RepoError::Internal(format!("salvage task: {e}")))??;
                        if !opts.dry_run {
                            repo.store()
                                .put(&names::pack(&built.id), built.bytes.clone())
                                .await?;
                            entry.new_pack = Some(built.id);
                        }
                        held[slot].extend(ids);
                        intact.push(built.index);
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
            .filter(|b| !held[kind.slot()].contains(b))
            .count();
    }
    report.damaged.sort_by_key(|d| d.id);
    report.unreadable.sort_by_key(|u| u.id);

    // 4. What the old index knew that the new one does not.
    report.missing = missing;
    for kind in PackKind::ALL {
        report.blobs_unindexed += repo
            .index()
            .blobs(kind)
            .filter(|(id, _)| !held[kind.slot()].contains(id))
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
