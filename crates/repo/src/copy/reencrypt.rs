//! Copying by re-encryption: between repositories with different keys (or crypto suites).

use std::sync::Arc;

use tokio::runtime::Handle;
use zaibei_format::{Id, PackKind, Snapshot, Tree};

use super::{CopiedSnapshot, CopyOptions, CopyProgress, CopyReport};
use crate::index::{IdMap, IdSet};
use crate::reach::Reachable;
use crate::{BlobSaver, IndexedRepository, RepoError, Result};

/// What has been rewritten so far: source ids to destination ids.
#[derive(Default)]
struct Rewritten {
    trees: IdMap<Id>,
    data: IdMap<Id>,
}

/// Rewrites every tree and data blob `todo` needs under the destination's keys, then saves
/// the snapshots anew.
pub(super) async fn copy(
    src: &Arc<IndexedRepository>,
    dst: &Arc<IndexedRepository>,
    todo: &[(Id, Snapshot)],
    opts: &CopyOptions,
    progress: CopyProgress<'_>,
    report: &mut CopyReport,
) -> Result<()> {
    for (repo, side) in [(src, "source"), (dst, "destination")] {
        if !repo.keys().has_content() {
            return Err(RepoError::Refused(format!(
                "the two repositories do not share key material, so the copy decrypts and \
                 encrypts again, which needs the full key of the {side}; it was opened with a \
                 maintenance-only key"
            )));
        }
    }
    if opts.dry_run {
        let mut needed = Reachable::default();
        needed
            .extend_from(src, todo.iter().map(|(_, s)| s.tree), || {})
            .await?;
        report.blobs = (needed.data.len() + needed.trees.len()) as u64;
        report.copied = super::planned(todo);
        return Ok(());
    }

    let saver = BlobSaver::start(Arc::clone(dst), opts.connections).await?;
    let mut done = Rewritten::default();
    let mut roots = Vec::with_capacity(todo.len());
    for (n, (_, snap)) in todo.iter().enumerate() {
        let (s, sv, root) = (Arc::clone(src), saver.clone(), snap.tree);
        let rt = Handle::current();
        let (root, back) = tokio::task::spawn_blocking(move || {
            let r = rewrite(&rt, &s, &sv, root, &mut done);
            (r, done)
        })
        .await
        .map_err(|e| RepoError::Internal(format!("re-encryption task: {e}")))?;
        done = back;
        roots.push(root?);
        progress("snapshots", n as u64 + 1, todo.len() as u64);
    }
    let stats = saver.finish().await?;
    report.blobs = stats.data_blobs + stats.tree_blobs;
    report.packs_written = stats.packs;
    report.bytes_written = stats.bytes_stored;
    report.index_objects = stats.index_objects;
    if opts.verify {
        report.objects_verified = verify(dst, &done, progress).await?;
    }

    // Parents and originals point into the source; keep those copied in this run.
    let mut new_ids: IdMap<Id> = IdMap::default();
    for ((id, snap), root) in todo.iter().zip(roots) {
        let mut copy = snap.clone();
        copy.tree = root;
        copy.parent = snap.parent.and_then(|p| new_ids.get(&p).copied());
        copy.original = snap.original.and_then(|p| new_ids.get(&p).copied());
        let new = dst.save_snapshot(&copy).await?;
        new_ids.insert(*id, new);
        report.copied.push(CopiedSnapshot {
            source: *id,
            destination: Some(new),
            time: snap.time,
        });
    }
    Ok(())
}

/// Reads every blob the rewrite produced back from the destination, through a freshly loaded
/// index: each one is authenticated and checked against its id. Returns the blobs checked.
async fn verify(
    dst: &IndexedRepository,
    done: &Rewritten,
    progress: CopyProgress<'_>,
) -> Result<u64> {
    let reloaded = dst.repository().clone().load_index().await?;
    let blobs = done
        .trees
        .values()
        .flat_map(|id| [(PackKind::Tree, *id), (PackKind::Refs, *id)])
        .chain(done.data.values().map(|id| (PackKind::Data, *id)));
    let mut checked = 0u64;
    for (kind, id) in blobs {
        reloaded.read_blob(kind, &id).await.map_err(|e| {
            RepoError::Refused(format!(
                "{} blob {id} does not read back from the destination as written: {e}",
                kind.name()
            ))
        })?;
        checked += 1;
        progress("verify", checked, 0);
    }
    Ok(checked)
}

/// One tree on the way down: its id, its contents, and the next node to look at.
struct Frame {
    id: Id,
    tree: Arc<Tree>,
    next: usize,
}

/// Rewrites the tree `root` and everything under it (depth first, with an explicit stack);
/// returns its id at the destination. Runs on a blocking thread.
fn rewrite(
    rt: &Handle,
    src: &IndexedRepository,
    saver: &BlobSaver,
    root: Id,
    done: &mut Rewritten,
) -> Result<Id> {
    if let Some(id) = done.trees.get(&root) {
        return Ok(*id);
    }
    let mut on_stack = IdSet::default();
    on_stack.insert(root);
    let mut stack = vec![Frame {
        id: root,
        tree: rt.block_on(src.load_tree(&root))?,
        next: 0,
    }];
    while let Some(top) = stack.last_mut() {
        // Descend into the first subtree not rewritten yet.
        let child = top.tree.nodes[top.next..]
            .iter()
            .position(|n| n.subtree.is_some_and(|s| !done.trees.contains_key(&s)));
        if let Some(offset) = child {
            top.next += offset;
            let Some(sub) = top.tree.nodes[top.next].subtree else {
                continue;
            };
            if !on_stack.insert(sub) {
                return Err(RepoError::Refused(format!(
                    "tree {} lists its own ancestor {sub}: the source is damaged",
                    top.id
                )));
            }
            let tree = rt.block_on(src.load_tree(&sub))?;
            stack.push(Frame {
                id: sub,
                tree,
                next: 0,
            });
            continue;
        }
        let Some(frame) = stack.pop() else { break };
        on_stack.remove(&frame.id);
        let mut tree = (*frame.tree).clone();
        for node in &mut tree.nodes {
            if let Some(sub) = node.subtree {
                let new = done.trees.get(&sub).copied().ok_or_else(|| {
                    RepoError::Internal(format!(
                        "subtree {sub} of tree {} was not rewritten before it",
                        frame.id
                    ))
                })?;
                node.subtree = Some(new);
            }
            for id in &mut node.content {
                *id = rewrite_data(rt, src, saver, *id, done)?;
            }
        }
        let new = saver.save_tree(&tree)?;
        done.trees.insert(frame.id, new);
        if stack.is_empty() {
            return Ok(new);
        }
    }
    Err(RepoError::Internal(
        "tree rewrite ended without a root".into(),
    ))
}

/// Stores one data blob under the destination's keys; returns its id there.
fn rewrite_data(
    rt: &Handle,
    src: &IndexedRepository,
    saver: &BlobSaver,
    id: Id,
    done: &mut Rewritten,
) -> Result<Id> {
    if let Some(new) = done.data.get(&id) {
        return Ok(*new);
    }
    let plain = rt.block_on(src.read_blob(PackKind::Data, &id))?;
    let new = saver.blob_id(&plain)?;
    saver.save_blob_queued(PackKind::Data, new, &plain)?;
    done.data.insert(id, new);
    Ok(new)
}
