//! `repair snapshots`: new snapshots without their damaged parts (see the parent module).
//!
//! Three passes. *Scan*: every tree reachable from the snapshots is loaded once, level by
//! level and concurrently, and judged: is it indexed and readable, do its files' data blobs
//! and its subtrees exist. *Plan*: a post-order walk of that graph (no I/O, an explicit stack)
//! marks the trees that must change — those with a damaged entry or a changed subtree — so a
//! subtree shared by many directories or snapshots is decided and rewritten once.
//! *Rewrite*: those trees, children first, are stored again without the damaged entries;
//! then each affected snapshot gets its replacement.

use std::sync::Arc;

use futures::StreamExt;
use zaibei_format::refs::TreeRefs;
use zaibei_format::{Id, NodeKind, PackKind, Snapshot, Tree};
use zaibei_store::StoreErrorKind;

use super::{REPAIRED_TAG, RepairProgress};
use crate::index::{IdMap, IdSet};
use crate::{BlobSaver, IndexedRepository, RepoError, Result, names};

/// Settings of [`repair_snapshots`].
#[derive(Debug, Clone)]
pub struct RepairSnapshotsOptions {
    /// The snapshots to repair; empty: all.
    pub snapshots: Vec<Id>,
    /// Delete each repaired snapshot once its replacement is stored.
    pub forget_originals: bool,
    /// Decide and report, write and delete nothing.
    pub dry_run: bool,
    /// Uploads at a time.
    pub connections: usize,
}

impl Default for RepairSnapshotsOptions {
    fn default() -> Self {
        RepairSnapshotsOptions {
            snapshots: Vec::new(),
            forget_originals: false,
            dry_run: false,
            connections: 4,
        }
    }
}

/// Why an entry was left out of a repaired snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalReason {
    /// A data blob of the file is not in the index, or its pack is not in the store.
    MissingData(Id),
    /// The directory's tree is not in the index, or its pack is not in the store.
    MissingTree(Id),
    /// The directory's tree is indexed but cannot be read or decoded.
    DamagedTree {
        /// The tree.
        tree: Id,
        /// What reading it gave.
        error: String,
    },
    /// The directory entry names no tree.
    NoSubtree,
}

impl std::fmt::Display for RemovalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemovalReason::MissingData(b) => write!(f, "data blob {b} is missing"),
            RemovalReason::MissingTree(t) => write!(f, "tree {t} is missing"),
            RemovalReason::DamagedTree { tree, error } => {
                write!(f, "tree {tree} cannot be read: {error}")
            }
            RemovalReason::NoSubtree => f.write_str("the directory entry names no tree"),
        }
    }
}

/// An entry left out of a repaired snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedPath {
    /// Its path in the snapshot (`/home/a/file`), as bytes.
    pub path: Vec<u8>,
    /// Why.
    pub reason: RemovalReason,
}

/// What became of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// Everything it refers to is there: nothing was written.
    Intact,
    /// It has a replacement without the damaged entries.
    Repaired {
        /// The replacement (`None` in a dry run).
        snapshot: Option<Id>,
        /// The replacement's root tree.
        tree: Id,
        /// True when an earlier repair had already stored this very replacement, which is
        /// used instead of writing another.
        earlier: bool,
    },
    /// Its root tree is missing or damaged: nothing of it can be restored, nothing was
    /// written, and the snapshot is never forgotten by repair.
    Unrepairable(RemovalReason),
}

/// The repair of one snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotRepair {
    /// The snapshot's id.
    pub id: Id,
    /// The snapshot as it was read.
    pub snapshot: Snapshot,
    /// What became of it.
    pub outcome: SnapshotOutcome,
    /// Entries its replacement leaves out, sorted by path.
    pub removed: Vec<RemovedPath>,
    /// True when it was deleted after its replacement was stored.
    pub forgotten: bool,
}

/// What [`repair_snapshots`] found and did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct RepairSnapshotsReport {
    /// Nothing was written or deleted.
    pub dry_run: bool,
    /// Every snapshot looked at, oldest first.
    pub snapshots: Vec<SnapshotRepair>,
    /// Snapshot objects that cannot be read (name, reason): they cannot be repaired (`forget`
    /// removes them).
    pub unreadable: Vec<(String, String)>,
    /// Distinct trees examined.
    pub trees: usize,
    /// Trees stored again without damaged entries.
    pub trees_written: usize,
    /// Reference blobs that were missing and were stored again from their trees.
    pub refs_restored: usize,
    /// Damaged packs in the store that no index lists (left out by `repair index`). An
    /// intact unindexed pack makes the repair refuse: run `repair index` first.
    pub unindexed_packs: usize,
}

impl RepairSnapshotsReport {
    /// Snapshots that have a replacement.
    pub fn repaired(&self) -> usize {
        self.count(|o| matches!(o, SnapshotOutcome::Repaired { .. }))
    }

    /// Snapshots whose root tree is lost.
    pub fn unrepairable(&self) -> usize {
        self.count(|o| matches!(o, SnapshotOutcome::Unrepairable(_)))
    }

    /// Snapshots that needed nothing.
    pub fn intact(&self) -> usize {
        self.count(|o| matches!(o, SnapshotOutcome::Intact))
    }

    /// Entries left out, over all snapshots.
    pub fn paths_removed(&self) -> usize {
        self.snapshots.iter().map(|s| s.removed.len()).sum()
    }

    /// True when every snapshot looked at is intact or repaired and every snapshot object
    /// could be read.
    pub fn complete(&self) -> bool {
        self.unrepairable() == 0 && self.unreadable.is_empty()
    }

    fn count(&self, f: impl Fn(&SnapshotOutcome) -> bool) -> usize {
        self.snapshots.iter().filter(|s| f(&s.outcome)).count()
    }
}

/// A tree as the scan judged it.
enum Scan {
    /// Indexed and readable.
    Usable {
        /// The trees of its directories.
        subtrees: Vec<Id>,
        /// Some file misses a data blob, or some directory names no tree.
        damaged_entries: bool,
        /// Its reference blob is not indexed.
        refs_missing: bool,
    },
    /// Missing or unreadable.
    Unusable(RemovalReason),
}

/// Entries a rewritten tree left out, and its directories whose trees were rewritten.
type Rewrite = (Vec<(Vec<u8>, RemovalReason)>, Vec<(Vec<u8>, Id)>);

/// True when a failure to load a tree says the tree is damaged or gone. Anything else (an
/// unreachable store, a newer format, an internal failure) says nothing about the tree:
/// repair stops instead of leaving a directory out.
fn is_damage(e: &RepoError) -> bool {
    match e {
        RepoError::Store(s) => {
            !s.is_unreachable() && (s.is_not_found() || s.kind == StoreErrorKind::InvalidInput)
        }
        RepoError::Format { .. } => !e.is_unsupported_version(),
        RepoError::BlobNotFound { .. } => true,
        _ => false,
    }
}

async fn scan_tree(
    repo: &IndexedRepository,
    present: &(dyn Fn(PackKind, &Id) -> bool + Sync),
    id: Id,
) -> Result<Scan> {
    if !present(PackKind::Tree, &id) {
        return Ok(Scan::Unusable(RemovalReason::MissingTree(id)));
    }
    let tree = match repo.load_tree(&id).await {
        Ok(t) => t,
        Err(e) if is_damage(&e) => {
            return Ok(Scan::Unusable(RemovalReason::DamagedTree {
                tree: id,
                error: e.to_string(),
            }));
        }
        Err(e) => return Err(e),
    };
    let mut subtrees = Vec::new();
    let mut damaged_entries = false;
    for node in &tree.nodes {
        match node.kind {
            NodeKind::File => {
                damaged_entries |= node.content.iter().any(|b| !present(PackKind::Data, b));
            }
            NodeKind::Dir => match node.subtree {
                Some(s) => subtrees.push(s),
                None => damaged_entries = true,
            },
            _ => {}
        }
    }
    Ok(Scan::Usable {
        subtrees,
        damaged_entries,
        refs_missing: !present(PackKind::Refs, &id),
    })
}

/// The trees that must change, children before parents: those with a damaged entry, an
/// unusable subtree or a subtree that must change.
fn plan(roots: &[Id], scan: &IdMap<Scan>) -> Vec<Id> {
    let mut changed: IdMap<bool> = IdMap::default();
    let mut order = Vec::new();
    for &root in roots {
        if changed.contains_key(&root) {
            continue;
        }
        let mut stack: Vec<(Id, usize)> = vec![(root, 0)];
        let mut on_stack = IdSet::default();
        on_stack.insert(root);
        while let Some((tree, next)) = stack.last_mut() {
            let tree = *tree;
            let Some(Scan::Usable {
                subtrees,
                damaged_entries,
                ..
            }) = scan.get(&tree)
            else {
                changed.insert(tree, false);
                stack.pop();
                continue;
            };
            if let Some(&child) = subtrees.get(*next) {
                *next += 1;
                if !changed.contains_key(&child)
                    && matches!(scan.get(&child), Some(Scan::Usable { .. }))
                    && on_stack.insert(child)
                {
                    stack.push((child, 0));
                }
                continue;
            }
            let must_change = *damaged_entries
                || subtrees.iter().any(|c| match scan.get(c) {
                    Some(Scan::Unusable(_)) => true,
                    _ => changed.get(c) == Some(&true),
                });
            changed.insert(tree, must_change);
            if must_change {
                order.push(tree);
            }
            stack.pop();
            on_stack.remove(&tree);
        }
    }
    order
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(prefix.len() + 1 + name.len());
    p.extend_from_slice(prefix);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// Every entry left out below the rewritten root tree `root`, with its full path.
fn removed_paths(root: Id, rewrites: &IdMap<Rewrite>) -> Vec<RemovedPath> {
    let mut out = Vec::new();
    let mut stack: Vec<(Id, Vec<u8>)> = vec![(root, Vec::new())];
    while let Some((tree, prefix)) = stack.pop() {
        let Some((removed, dirs)) = rewrites.get(&tree) else {
            continue;
        };
        for (name, reason) in removed {
            out.push(RemovedPath {
                path: join(&prefix, name),
                reason: reason.clone(),
            });
        }
        for (name, sub) in dirs {
            stack.push((*sub, join(&prefix, name)));
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Stores a tree and its reference blob through the saver (off the runtime: the saver may
/// block). Each is stored even when the index locates it, unless `present` says a pack the
/// store holds has it: an index entry whose pack is gone must not stop it being stored.
async fn save_tree(
    saver: &BlobSaver,
    present: &(dyn Fn(PackKind, &Id) -> bool + Sync),
    tree: Tree,
) -> Result<Id> {
    let body = tree.encode();
    let id = saver.blob_id(&body)?;
    let (tree_there, refs_there) = (present(PackKind::Tree, &id), present(PackKind::Refs, &id));
    let saver = saver.clone();
    tokio::task::spawn_blocking(move || -> Result<Id> {
        if !tree_there {
            saver.save_blob_again(PackKind::Tree, id, &body)?;
        }
        if !refs_there {
            saver.save_blob_again(PackKind::Refs, id, &TreeRefs::of_tree(&tree).encode())?;
        }
        Ok(id)
    })
    .await
    .map_err(|e| RepoError::Internal(format!("tree saving task: {e}")))?
}

/// Packs the store holds that the index does not list and whose bytes still hash to their
/// names (sorted). Their blobs would look missing, and a repair would drop intact data.
async fn intact_unindexed(
    repo: &IndexedRepository,
    unindexed: Vec<Id>,
    connections: usize,
) -> Result<Vec<Id>> {
    let suite = repo.suite();
    let mut reads = futures::stream::iter(unindexed.into_iter().map(|id| async move {
        let bytes = match repo.store().get(&names::pack(&id)).await {
            Ok(b) => b,
            // Gone meanwhile (a prune): nothing to protect.
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(RepoError::from(e)),
        };
        let intact = tokio::task::spawn_blocking(move || Id(suite.hash(&bytes)) == id)
            .await
            .map_err(|e| RepoError::Internal(format!("pack hashing task: {e}")))?;
        Ok(intact.then_some(id))
    }))
    .buffer_unordered(connections.max(1));
    let mut out = Vec::new();
    while let Some(r) = reads.next().await {
        out.extend(r?);
    }
    out.sort();
    Ok(out)
}

/// Writes replacements of damaged snapshots; see the module docs of [`crate::repair`].
///
/// Needs the content key (trees are read and written). Refuses to run while an index object
/// cannot be read: the blobs it lists would look missing and intact files would be left out.
pub async fn repair_snapshots(
    repo: Arc<IndexedRepository>,
    opts: &RepairSnapshotsOptions,
    progress: RepairProgress<'_>,
) -> Result<RepairSnapshotsReport> {
    let content = repo.keys().content("repair snapshots").map_err(|_| {
        RepoError::Refused(
            "repair snapshots reads and writes trees, which needs a full key; the repository \
             was opened with a maintenance-only key"
                .into(),
        )
    })?;
    if let Some(p) = repo.index_problems().first() {
        return Err(RepoError::Refused(format!(
            "index object {} cannot be read ({}); the blobs it lists would look missing and \
             intact files would be left out. Run `zaibei repair index` first",
            p.name, p.error
        )));
    }
    let mut report = RepairSnapshotsReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };

    // The snapshots, and the replacements earlier repairs wrote (original → (id, tree)).
    let list = repo.list_snapshots().await?;
    let mut earlier: IdMap<Vec<(Id, Id)>> = IdMap::default();
    for (id, s) in &list.snapshots {
        if let Some(original) = s.original {
            earlier.entry(original).or_default().push((*id, s.tree));
        }
    }
    let damaged: Vec<(String, String)> = list
        .damaged
        .iter()
        .map(|(name, e)| (name.clone(), e.to_string()))
        .collect();
    let mut selected: Vec<(Id, Snapshot)> = Vec::new();
    if opts.snapshots.is_empty() {
        selected = list.snapshots;
        report.unreadable = damaged;
    } else {
        for id in &opts.snapshots {
            if selected.iter().any(|(s, _)| s == id) {
                continue;
            }
            if let Some(found) = list.snapshots.iter().find(|(s, _)| s == id) {
                selected.push(found.clone());
            } else if let Some(d) = damaged.iter().find(|(n, _)| *n == names::snapshot(id)) {
                report.unreadable.push(d.clone());
            } else {
                return Err(RepoError::SnapshotNotFound(id.to_hex()));
            }
        }
        selected.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    }

    // A blob counts as present when the index places one of its copies in a pack the store
    // holds.
    let stored: IdSet = repo
        .store()
        .list(names::DATA)
        .await?
        .iter()
        .filter_map(|o| names::id_of(&o.name))
        .collect();
    let index = repo.index();
    let unindexed: Vec<Id> = stored
        .iter()
        .filter(|p| index.pack(p).is_none())
        .copied()
        .collect();
    report.unindexed_packs = unindexed.len();
    // An intact pack that no index lists holds blobs that would look missing: refuse before
    // writing anything (damaged ones, left out by `repair index`, do not count).
    let intact = intact_unindexed(&repo, unindexed, opts.connections).await?;
    if !intact.is_empty() {
        let named: Vec<String> = intact.iter().take(3).map(|p| p.to_string()).collect();
        return Err(RepoError::Refused(format!(
            "{} packs are in the store but in no index ({}{}); their blobs would look missing \
             and intact files would be left out. Run `zaibei repair index` first (or wait for \
             a running backup to finish)",
            intact.len(),
            named.join(", "),
            if intact.len() > named.len() {
                ", …"
            } else {
                ""
            }
        )));
    }
    let present = |kind: PackKind, id: &Id| {
        index
            .locations(kind, id)
            .iter()
            .any(|l| stored.contains(&l.pack.id))
    };
    let present: &(dyn Fn(PackKind, &Id) -> bool + Sync) = &present;

    // 1. Scan every tree once, a level at a time.
    let mut roots: Vec<Id> = Vec::new();
    let mut seen = IdSet::default();
    for (_, s) in &selected {
        if seen.insert(s.tree) {
            roots.push(s.tree);
        }
    }
    let mut scan: IdMap<Scan> = IdMap::default();
    let mut frontier = roots.clone();
    let width = (opts.connections.max(1) * 4).clamp(8, 64);
    while !frontier.is_empty() {
        let batch = std::mem::take(&mut frontier);
        let repo = &repo;
        let mut loads = futures::stream::iter(
            batch
                .into_iter()
                .map(|id| async move { (id, scan_tree(repo, present, id).await) }),
        )
        .buffer_unordered(width);
        while let Some((id, r)) = loads.next().await {
            let judged = r?;
            if let Scan::Usable { subtrees, .. } = &judged {
                for t in subtrees {
                    if seen.insert(*t) {
                        frontier.push(*t);
                    }
                }
            }
            scan.insert(id, judged);
            progress("trees", scan.len() as u64, 0);
        }
    }
    report.trees = scan.len();

    // 2. What must change.
    let order = plan(&roots, &scan);
    let refs_missing: Vec<Id> = scan
        .iter()
        .filter(|(_, s)| {
            matches!(
                s,
                Scan::Usable {
                    refs_missing: true,
                    ..
                }
            )
        })
        .map(|(id, _)| *id)
        .collect();
    report.trees_written = order.len();
    if opts.dry_run {
        report.refs_restored = refs_missing.len();
    }

    // 3. Rewrite, children first; store missing reference blobs again.
    let saver = if !opts.dry_run && (!order.is_empty() || !refs_missing.is_empty()) {
        Some(BlobSaver::start(Arc::clone(&repo), opts.connections).await?)
    } else {
        None
    };
    let mut new_ids: IdMap<Id> = IdMap::default();
    let mut rewrites: IdMap<Rewrite> = IdMap::default();
    let total = (order.len() + refs_missing.len()) as u64;
    let mut done = 0u64;
    for old in &order {
        let tree = repo.load_tree(old).await?;
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let (mut removed, mut dirs) = (Vec::new(), Vec::new());
        for node in &tree.nodes {
            match (node.kind, node.subtree) {
                (NodeKind::File, _) => {
                    if let Some(b) = node.content.iter().find(|b| !present(PackKind::Data, b)) {
                        removed.push((node.name.clone(), RemovalReason::MissingData(*b)));
                        continue;
                    }
                }
                (NodeKind::Dir, None) => {
                    removed.push((node.name.clone(), RemovalReason::NoSubtree));
                    continue;
                }
                (NodeKind::Dir, Some(sub)) => {
                    if let Some(Scan::Unusable(reason)) = scan.get(&sub) {
                        removed.push((node.name.clone(), reason.clone()));
                        continue;
                    }
                    if let Some(&new) = new_ids.get(&sub) {
                        let mut n = node.clone();
                        n.subtree = Some(new);
                        dirs.push((node.name.clone(), sub));
                        nodes.push(n);
                        continue;
                    }
                }
                _ => {}
            }
            nodes.push(node.clone());
        }
        let rewritten = Tree { nodes };
        let new = match &saver {
            Some(saver) => save_tree(saver, present, rewritten).await?,
            None => content.blob_id(&rewritten.encode()),
        };
        new_ids.insert(*old, new);
        rewrites.insert(*old, (removed, dirs));
        done += 1;
        progress("rewrite", done, total);
    }
    if let Some(saver) = &saver {
        for id in &refs_missing {
            let tree = repo.load_tree(id).await?;
            let (saver, id) = (saver.clone(), *id);
            // Stored even when the index locates it: its indexed copy is in no stored pack.
            let stored = tokio::task::spawn_blocking(move || {
                saver.save_blob_again(PackKind::Refs, id, &TreeRefs::of_tree(&tree).encode())
            })
            .await
            .map_err(|e| RepoError::Internal(format!("reference saving task: {e}")))??;
            report.refs_restored += usize::from(stored);
            done += 1;
            progress("rewrite", done, total);
        }
        // Everything the replacements refer to is stored and indexed before any is published.
        saver.finish().await?;
    }

    // 4. Replacements, then (when asked) the originals go.
    let total = selected.len() as u64;
    for (n, (id, snap)) in selected.into_iter().enumerate() {
        let mut removed = Vec::new();
        let outcome = match (scan.get(&snap.tree), new_ids.get(&snap.tree)) {
            (Some(Scan::Unusable(reason)), _) => SnapshotOutcome::Unrepairable(reason.clone()),
            (None, _) => SnapshotOutcome::Unrepairable(RemovalReason::MissingTree(snap.tree)),
            (Some(Scan::Usable { .. }), None) => SnapshotOutcome::Intact,
            (Some(Scan::Usable { .. }), Some(&tree)) => {
                removed = removed_paths(snap.tree, &rewrites);
                let before = earlier
                    .get(&id)
                    .and_then(|v| v.iter().find(|(_, t)| *t == tree))
                    .map(|(s, _)| *s);
                let snapshot = match before {
                    Some(s) => Some(s),
                    None if opts.dry_run => None,
                    None => {
                        let mut replacement = snap.clone();
                        replacement.tree = tree;
                        if !replacement.tags.iter().any(|t| t == REPAIRED_TAG) {
                            replacement.tags.push(REPAIRED_TAG.to_owned());
                        }
                        replacement.original = Some(id);
                        Some(repo.save_snapshot(&replacement).await?)
                    }
                };
                SnapshotOutcome::Repaired {
                    snapshot,
                    tree,
                    earlier: before.is_some(),
                }
            }
        };
        let mut forgotten = false;
        if opts.forget_originals
            && !opts.dry_run
            && matches!(
                outcome,
                SnapshotOutcome::Repaired {
                    snapshot: Some(_),
                    ..
                }
            )
        {
            repo.forget_snapshot(&id).await?;
            forgotten = true;
        }
        report.snapshots.push(SnapshotRepair {
            id,
            snapshot: snap,
            outcome,
            removed,
            forgotten,
        });
        progress("snapshots", n as u64 + 1, total);
    }
    Ok(report)
}
