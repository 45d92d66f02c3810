//! Copying packs as they are between repositories that share key material.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use zaibei_format::{Id, IndexPack, PackKind, Snapshot};

use super::{CopiedSnapshot, CopyOptions, CopyProgress, CopyReport};
use crate::index::IdSet;
use crate::reach::Reachable;
use crate::repack::{parse_pack, shrink_pack};
use crate::saver::write_index;
use crate::{IndexedRepository, PACKS_PER_INDEX, RepoError, Result, names};

/// One pack written at the destination.
struct Written {
    index: IndexPack,
    whole: bool,
    bytes: u64,
    verified: bool,
}

/// Copies the blobs `todo` needs that `dst` lacks, pack by pack, then the snapshot objects.
pub(super) async fn copy(
    src: &Arc<IndexedRepository>,
    dst: &Arc<IndexedRepository>,
    todo: &[(Id, Snapshot)],
    opts: &CopyOptions,
    progress: CopyProgress<'_>,
    report: &mut CopyReport,
) -> Result<()> {
    let mut needed = Reachable::default();
    let mut trees = 0u64;
    needed
        .extend_from(src, todo.iter().map(|(_, s)| s.tree), || {
            trees += 1;
            progress("trees", trees, 0);
        })
        .await
        .map_err(|e| match e {
            RepoError::Refused(why) => {
                RepoError::Refused(format!("{why} (at the source {})", src.store().location()))
            }
            e => e,
        })?;

    // Blobs in packs a prune condemned at the destination count as absent there.
    let condemned: IdSet = dst
        .condemned_state()
        .await?
        .condemned
        .packs
        .iter()
        .map(|p| p.id)
        .collect();
    let mut relied = IdSet::default();
    let mut wanted: BTreeMap<Id, IdSet> = BTreeMap::new();
    let kinds_of = |kind: PackKind| -> Box<dyn Iterator<Item = &Id> + '_> {
        match kind {
            PackKind::Data => Box::new(needed.data.iter()),
            PackKind::Tree | PackKind::Refs => Box::new(needed.trees.iter()),
        }
    };
    for kind in PackKind::ALL {
        for id in kinds_of(kind) {
            let live = dst
                .index()
                .locations(kind, id)
                .into_iter()
                .find(|l| !condemned.contains(&l.pack.id));
            if let Some(l) = live {
                relied.insert(l.pack.id);
                continue;
            }
            let at_source = src.locate(kind, id).map_err(|_| {
                RepoError::Refused(format!(
                    "{} blob {id} is needed by the snapshots but the source's index does not \
                     locate it: the source is damaged; run `zaibei check` there",
                    kind.name()
                ))
            })?;
            wanted.entry(at_source.pack.id).or_default().insert(*id);
            report.blobs += 1;
        }
    }
    if opts.dry_run {
        report.copied = super::planned(todo);
        return Ok(());
    }

    let total = wanted.len() as u64;
    let mut results =
        futures::stream::iter(wanted.into_iter().map(|(pack, ids)| {
            copy_pack(src, dst, pack, ids, condemned.contains(&pack), opts.verify)
        }))
        .buffer_unordered(opts.connections.max(1));
    let mut pending = Vec::new();
    let mut wrote = IdSet::default();
    let mut done = 0u64;
    while let Some(written) = results.next().await {
        let w = written?;
        if w.whole {
            report.packs_whole += 1;
        } else {
            report.packs_written += 1;
        }
        report.bytes_written += w.bytes;
        report.objects_verified += u64::from(w.verified);
        wrote.insert(w.index.id);
        pending.push(w.index);
        if pending.len() >= PACKS_PER_INDEX {
            write_index(dst, std::mem::take(&mut pending)).await?;
            report.index_objects += 1;
        }
        done += 1;
        progress("packs", done, total);
    }
    drop(results);
    if !pending.is_empty() {
        write_index(dst, pending).await?;
        report.index_objects += 1;
    }

    // A prune at the destination may have condemned (or, had this copy outlived its margin,
    // deleted) a pack this copy wrote or deduplicated against; such a pack may go one margin
    // from now, so no snapshot relying on it is published (running the copy again stores
    // those blobs anew). Checked right before publishing: a pack condemned after this point
    // is taken back by the next prune, since the snapshots then need it.
    let mine: IdSet = relied.union(&wrote).copied().collect();
    let now = dst.condemned_state().await?;
    if let Some(p) = now.condemned.packs.iter().find(|p| mine.contains(&p.id)) {
        return Err(RepoError::Refused(format!(
            "a prune at the destination condemned pack {} while this copy relied on it; no \
             snapshot was published: run the copy again",
            p.id
        )));
    }
    let stored: IdSet = dst
        .store()
        .list(names::DATA)
        .await?
        .iter()
        .filter_map(|o| names::id_of(&o.name))
        .collect();
    if let Some(gone) = mine.iter().find(|id| !stored.contains(id)) {
        return Err(RepoError::Refused(format!(
            "pack {gone}, which this copy wrote or relied on, is gone from the destination (a \
             prune deleted it); no snapshot was published: run the copy again"
        )));
    }

    for (n, (id, snap)) in todo.iter().enumerate() {
        let name = names::snapshot(id);
        let bytes = src.get_verified(&name).await?;
        report.bytes_written += bytes.len() as u64;
        put_checked(dst, &name, bytes, opts.verify).await?;
        report.objects_verified += u64::from(opts.verify);
        report.copied.push(CopiedSnapshot {
            source: *id,
            destination: Some(*id),
            time: snap.time,
        });
        progress("snapshots", n as u64 + 1, todo.len() as u64);
    }
    Ok(())
}

/// Copies the blobs `ids` of the source pack `pack`: the whole pack when it holds nothing
/// else, or a pack shrunk to them.
/// A pack whose id the destination has condemned is never copied whole: it would land under
/// a name a prune is about to delete. It is rebuilt instead (same records, fresh header, new
/// id).
async fn copy_pack(
    src: &IndexedRepository,
    dst: &IndexedRepository,
    pack: Id,
    ids: IdSet,
    condemned_there: bool,
    verify: bool,
) -> Result<Written> {
    let name = names::pack(&pack);
    let bytes = src.get_verified(&name).await?;
    let keys = src.keys().maintenance().clone();
    let suite = src.suite();
    let (index, body) = tokio::task::spawn_blocking(move || -> Result<(IndexPack, Bytes)> {
        let (kind, salt, blobs) = parse_pack(&keys, &name, &bytes)?;
        if let Some(missing) = ids.iter().find(|id| !blobs.iter().any(|b| b.id == **id)) {
            return Err(RepoError::Refused(format!(
                "{name}: the source's index places blob {missing} in this pack, but its header \
                 does not list it; run `zaibei repair index` at the source"
            )));
        }
        if !condemned_there && blobs.iter().all(|b| ids.contains(&b.id)) {
            let index = IndexPack {
                id: pack,
                kind,
                salt,
                size: bytes.len() as u64,
                blobs,
            };
            Ok((index, bytes))
        } else {
            let shrunk = shrink_pack(&keys, suite, &name, &bytes, |id| ids.contains(id))?;
            Ok((shrunk.index, shrunk.bytes))
        }
    })
    .await
    .map_err(|e| RepoError::Internal(format!("pack copy task: {e}")))??;
    let whole = index.id == pack;
    let size = body.len() as u64;
    put_checked(dst, &names::pack(&index.id), body, verify).await?;
    Ok(Written {
        index,
        whole,
        bytes: size,
        verified: verify,
    })
}

/// Stores an object named by the hash of its bytes and, with `verify`, reads it back and
/// checks that hash.
async fn put_checked(
    dst: &IndexedRepository,
    name: &str,
    bytes: Bytes,
    verify: bool,
) -> Result<()> {
    dst.store().put(name, bytes).await?;
    if verify {
        let back = dst.store().get(name).await?;
        let Some(id) = names::id_of(name) else {
            return Err(RepoError::Internal(format!("{name} is not a hashed name")));
        };
        if Id(dst.suite().hash(&back)) != id {
            return Err(RepoError::Refused(format!(
                "{name} reads back from {} with other bytes than were written: the \
                 destination's storage is not reliable",
                dst.store().location()
            )));
        }
    }
    Ok(())
}
