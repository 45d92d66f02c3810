//! What damage costs: for each problem, the snapshots and the paths that cannot be restored.
//!
//! A blob is lost when every copy of it is bad (its pack is missing or unreadable as a whole,
//! or its record fails to authenticate) or when no index lists it. The lost blobs are traced
//! through every snapshot: a file is affected when one of its data blobs is lost, a directory
//! when its tree blob is lost (a restore cannot list it). A lost reference blob does not stop a
//! restore, but prune and checks with the maintenance key need it: it marks its snapshots as
//! affected without naming paths. Shared subtrees are scanned once, level by level.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use zaibei_format::{Id, NodeKind, PackKind};

use super::{BlobKey, Cause, CheckProgress, CheckReport, Severity};
use crate::index::{IdMap, IdSet};
use crate::{IndexedRepository, Result};

/// At most this many paths are listed per problem (all are counted).
pub const MAX_PATHS_LISTED: usize = 1000;

/// What one problem costs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Affected {
    /// Snapshots that need something the damage made unreadable (empty: nothing needed is lost).
    pub snapshots: Vec<Id>,
    /// Paths that cannot be restored (files, or directories whose listing is lost), each with
    /// the snapshots in which it cannot be; at most [`MAX_PATHS_LISTED`].
    pub paths: Vec<AffectedPath>,
    /// Number of distinct paths affected, including any not listed.
    pub paths_total: usize,
    /// False when the repository was opened with a maintenance-only key: trees cannot be read,
    /// so only snapshots are known.
    pub paths_known: bool,
}

/// One path that cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedPath {
    /// The path inside the snapshots, from their root (`/` is the whole snapshot).
    pub path: String,
    /// The snapshots in which it cannot be restored.
    pub snapshots: Vec<Id>,
}

/// A lost blob met at a path relative to the tree scanned ("" is that tree itself).
type Hit = (String, BlobKey);

/// Fills in [`super::CheckProblem::affected`] for every problem with a cause.
pub(super) async fn assess(
    repo: &IndexedRepository,
    report: &mut CheckReport,
    progress: CheckProgress<'_>,
) -> Result<()> {
    let lost_by_problem = lost_blobs(repo, &report.causes);
    let lost: HashSet<BlobKey> = lost_by_problem.iter().flatten().copied().collect();
    let mut hits_by_key: HashMap<BlobKey, Vec<(Id, String)>> = HashMap::new();
    if !lost.is_empty() {
        let list = repo.list_snapshots().await?;
        let roots: Vec<Id> = list
            .snapshots
            .iter()
            .map(|(_, s)| s.tree)
            .filter(|t| !lost.contains(&(PackKind::Tree, *t)))
            .collect();
        let below = scan_trees(repo, &lost, &roots, progress).await?;
        let none = Arc::new(Vec::new());
        for (snap, s) in &list.snapshots {
            let hits = if lost.contains(&(PackKind::Tree, s.tree)) {
                Arc::new(vec![(String::new(), (PackKind::Tree, s.tree))])
            } else {
                below
                    .get(&s.tree)
                    .cloned()
                    .unwrap_or_else(|| Arc::clone(&none))
            };
            for (path, key) in hits.iter() {
                let path = if path.is_empty() { "/" } else { path };
                hits_by_key
                    .entry(*key)
                    .or_default()
                    .push((*snap, path.to_owned()));
            }
        }
    }
    let full = repo.keys().has_content();
    let mut all_affected: IdSet = IdSet::default();
    for (i, keys) in lost_by_problem.iter().enumerate() {
        let affected = match &report.causes[i] {
            Cause::None => continue,
            Cause::Snapshot(id) => Affected {
                snapshots: vec![*id],
                paths: vec![AffectedPath {
                    path: "/".into(),
                    snapshots: vec![*id],
                }],
                paths_total: 1,
                paths_known: true,
            },
            _ => summarize(keys, &hits_by_key, full),
        };
        if report.problems[i].severity == Severity::Error {
            all_affected.extend(affected.snapshots.iter().copied());
        }
        report.problems[i].affected = Some(affected);
    }
    report.snapshots_affected = all_affected.len();
    Ok(())
}

/// For each problem, the blobs it makes unreadable.
fn lost_blobs(repo: &IndexedRepository, causes: &[Cause]) -> Vec<Vec<BlobKey>> {
    let index = repo.index();
    let bad_packs: IdSet = causes
        .iter()
        .filter_map(|c| match c {
            Cause::Pack(p) => Some(*p),
            _ => None,
        })
        .collect();
    let bad_records: HashSet<(Id, BlobKey)> = causes
        .iter()
        .filter_map(|c| match c {
            Cause::Record(p, key) => Some((*p, *key)),
            _ => None,
        })
        .collect();
    let mut in_bad_pack: IdMap<Vec<BlobKey>> = IdMap::default();
    if !bad_packs.is_empty() {
        for kind in PackKind::ALL {
            for loc in index.all_locations(kind) {
                let pack = index.packs()[loc.pack].id;
                if bad_packs.contains(&pack) {
                    in_bad_pack.entry(pack).or_default().push((kind, *loc.id));
                }
            }
        }
    }
    // Lost when no copy is left: every location is in a bad pack or is a bad record.
    let lost = |key: &BlobKey| {
        index.locations(key.0, &key.1).iter().all(|loc| {
            bad_packs.contains(&loc.pack.id) || bad_records.contains(&(loc.pack.id, *key))
        })
    };
    causes
        .iter()
        .map(|c| match c {
            Cause::None | Cause::Snapshot(_) => Vec::new(),
            Cause::Pack(p) => in_bad_pack
                .get(p)
                .into_iter()
                .flatten()
                .filter(|k| lost(k))
                .copied()
                .collect(),
            Cause::Record(_, key) => {
                if lost(key) {
                    vec![*key]
                } else {
                    Vec::new()
                }
            }
            Cause::Blob(key) => vec![*key],
        })
        .collect()
}

fn summarize(
    keys: &[BlobKey],
    hits_by_key: &HashMap<BlobKey, Vec<(Id, String)>>,
    full: bool,
) -> Affected {
    let mut snapshots = BTreeSet::new();
    let mut paths: BTreeMap<&str, BTreeSet<Id>> = BTreeMap::new();
    for key in keys {
        for (snap, path) in hits_by_key.get(key).into_iter().flatten() {
            snapshots.insert(*snap);
            // A lost reference blob does not stop a restore.
            if full && key.0 != PackKind::Refs {
                paths.entry(path).or_default().insert(*snap);
            }
        }
    }
    Affected {
        snapshots: snapshots.into_iter().collect(),
        paths_total: paths.len(),
        paths: paths
            .into_iter()
            .take(MAX_PATHS_LISTED)
            .map(|(path, snaps)| AffectedPath {
                path: path.to_owned(),
                snapshots: snaps.into_iter().collect(),
            })
            .collect(),
        paths_known: full,
    }
}

/// What one tree holds directly: lost blobs met in it, and its subtrees to follow.
#[derive(Default)]
struct TreeScan {
    hits: Vec<Hit>,
    subtrees: Vec<(String, Id)>,
}

/// The lost blobs at and below every tree reachable from `roots`, with paths relative to each
/// tree; trees with none are left out. Trees are read level by level (each once, 8 at a time)
/// and the findings then carried up with an explicit stack, so neither deep nesting nor a
/// reference blob that lists its own ancestor can exhaust the stack or loop.
async fn scan_trees(
    repo: &IndexedRepository,
    lost: &HashSet<BlobKey>,
    roots: &[Id],
    progress: CheckProgress<'_>,
) -> Result<IdMap<Arc<Vec<Hit>>>> {
    let full = repo.keys().has_content();
    let mut seen: IdSet = roots.iter().copied().collect();
    let mut frontier: Vec<Id> = seen.iter().copied().collect();
    let mut scans: IdMap<TreeScan> = IdMap::default();
    while !frontier.is_empty() {
        let batch = std::mem::take(&mut frontier);
        let mut results = futures::stream::iter(
            batch
                .into_iter()
                .map(|tree| async move { (tree, scan_one(repo, lost, full, tree).await) }),
        )
        .buffer_unordered(8);
        while let Some((tree, scanned)) = results.next().await {
            let scanned = scanned?;
            for (_, sub) in &scanned.subtrees {
                if seen.insert(*sub) {
                    frontier.push(*sub);
                }
            }
            scans.insert(tree, scanned);
            progress("impact", scans.len() as u64, 0);
        }
    }
    // Carry findings up in post-order (an explicit stack): every subtree is finished before
    // the trees holding it. A subtree met again while still open (a cycle, which only a
    // forged reference blob could make) adds nothing.
    let mut below: IdMap<Arc<Vec<Hit>>> = IdMap::default();
    let mut finished: IdSet = IdSet::default();
    let mut open: IdSet = IdSet::default();
    for root in roots {
        let mut stack = vec![(*root, false)];
        while let Some((tree, expanded)) = stack.pop() {
            let Some(scanned) = scans.get(&tree) else {
                continue;
            };
            if expanded {
                let mut hits = scanned.hits.clone();
                for (name, sub) in &scanned.subtrees {
                    for (path, key) in below.get(sub).into_iter().flat_map(|h| h.iter()) {
                        hits.push((format!("{name}{path}"), *key));
                    }
                }
                if !hits.is_empty() {
                    below.insert(tree, Arc::new(hits));
                }
                open.remove(&tree);
                finished.insert(tree);
            } else if !finished.contains(&tree) && open.insert(tree) {
                stack.push((tree, true));
                for (_, sub) in &scanned.subtrees {
                    if !finished.contains(sub) && !open.contains(sub) {
                        stack.push((*sub, false));
                    }
                }
            }
        }
    }
    Ok(below)
}

/// Reads one tree (content key) or its reference blob (maintenance key).
async fn scan_one(
    repo: &IndexedRepository,
    lost: &HashSet<BlobKey>,
    full: bool,
    tree: Id,
) -> Result<TreeScan> {
    let mut out = TreeScan::default();
    let refs_key = (PackKind::Refs, tree);
    if lost.contains(&refs_key) {
        out.hits.push((String::new(), refs_key));
    }
    if full {
        let t = match repo.load_tree(&tree).await {
            Ok(t) => t,
            Err(e) if e.is_store_unreachable() => return Err(e),
            Err(_) => {
                out.hits.push((String::new(), (PackKind::Tree, tree)));
                return Ok(out);
            }
        };
        for node in &t.nodes {
            let name = format!("/{}", String::from_utf8_lossy(&node.name));
            match node.kind {
                NodeKind::File => {
                    for blob in &node.content {
                        let key = (PackKind::Data, *blob);
                        if lost.contains(&key) {
                            out.hits.push((name.clone(), key));
                        }
                    }
                }
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree {
                        let key = (PackKind::Tree, sub);
                        if lost.contains(&key) {
                            out.hits.push((name, key));
                        } else {
                            out.subtrees.push((name, sub));
                        }
                    }
                }
                _ => {}
            }
        }
    } else {
        let refs = match repo.load_refs(&tree).await {
            Ok(r) => r,
            Err(e) if e.is_store_unreachable() => return Err(e),
            Err(_) => {
                if out.hits.is_empty() {
                    out.hits.push((String::new(), refs_key));
                }
                return Ok(out);
            }
        };
        for blob in &refs.data {
            let key = (PackKind::Data, *blob);
            if lost.contains(&key) {
                out.hits.push((String::new(), key));
            }
        }
        for sub in &refs.trees {
            let key = (PackKind::Tree, *sub);
            if lost.contains(&key) {
                out.hits.push((String::new(), key));
            }
            out.subtrees.push((String::new(), *sub));
        }
    }
    Ok(out)
}
