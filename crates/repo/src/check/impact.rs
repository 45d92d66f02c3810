//! What damage costs: for each problem, the snapshots and the paths that cannot be restored.
//!
//! A blob is lost when every copy of it is bad (its pack is missing or unreadable as a whole,
//! or its record fails to authenticate) or when no index lists it. The lost blobs are traced
//! through every snapshot: a file is affected when one of its data blobs is lost, a directory
//! when its tree blob is lost (a restore cannot list it). A lost reference blob does not stop a
//! restore, but prune and checks with the maintenance key need it: it marks its snapshots as
//! affected without naming paths. Shared subtrees are scanned once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
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
        let scanner = Scanner {
            repo,
            lost: &lost,
            full: repo.keys().has_content(),
            memo: Mutex::new(IdMap::default()),
            permits: tokio::sync::Semaphore::new(8),
        };
        let total = list.snapshots.len() as u64;
        for (done, (snap, s)) in list.snapshots.iter().enumerate() {
            progress("impact", done as u64 + 1, total);
            let hits = if lost.contains(&(PackKind::Tree, s.tree)) {
                Arc::new(vec![(String::new(), (PackKind::Tree, s.tree))])
            } else {
                scanner.scan(s.tree).await?
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

/// Finds lost blobs below trees, remembering each tree's findings.
struct Scanner<'a> {
    repo: &'a IndexedRepository,
    lost: &'a HashSet<BlobKey>,
    /// Read trees (content key) or only reference blobs (maintenance key).
    full: bool,
    memo: Mutex<IdMap<Arc<Vec<Hit>>>>,
    /// Bounds the reads in flight (scans of subtrees run side by side).
    permits: tokio::sync::Semaphore,
}

impl Scanner<'_> {
    fn remembered(&self, tree: &Id) -> Option<Arc<Vec<Hit>>> {
        self.memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tree)
            .cloned()
    }

    fn remember(&self, tree: Id, hits: Vec<Hit>) -> Arc<Vec<Hit>> {
        let hits = Arc::new(hits);
        self.memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tree, Arc::clone(&hits));
        hits
    }

    /// The lost blobs at and below `tree`, with their paths relative to it.
    fn scan(&self, tree: Id) -> BoxFuture<'_, Result<Arc<Vec<Hit>>>> {
        async move {
            if let Some(hits) = self.remembered(&tree) {
                return Ok(hits);
            }
            let mut hits = Vec::new();
            let refs_key = (PackKind::Refs, tree);
            if self.lost.contains(&refs_key) {
                hits.push((String::new(), refs_key));
            }
            let mut subtrees: Vec<(String, Id)> = Vec::new();
            if self.full {
                let loaded = {
                    let _permit = self.permits.acquire().await;
                    self.repo.load_tree(&tree).await
                };
                let t = match loaded {
                    Ok(t) => t,
                    Err(e) if e.is_store_unreachable() => return Err(e),
                    Err(_) => {
                        hits.push((String::new(), (PackKind::Tree, tree)));
                        return Ok(self.remember(tree, hits));
                    }
                };
                for node in &t.nodes {
                    let name = format!("/{}", String::from_utf8_lossy(&node.name));
                    match node.kind {
                        NodeKind::File => {
                            for blob in &node.content {
                                let key = (PackKind::Data, *blob);
                                if self.lost.contains(&key) {
                                    hits.push((name.clone(), key));
                                }
                            }
                        }
                        NodeKind::Dir => {
                            if let Some(sub) = node.subtree {
                                let key = (PackKind::Tree, sub);
                                if self.lost.contains(&key) {
                                    hits.push((name, key));
                                } else {
                                    subtrees.push((name, sub));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                let loaded = {
                    let _permit = self.permits.acquire().await;
                    self.repo.load_refs(&tree).await
                };
                let refs = match loaded {
                    Ok(r) => r,
                    Err(e) if e.is_store_unreachable() => return Err(e),
                    Err(_) => {
                        if hits.is_empty() {
                            hits.push((String::new(), refs_key));
                        }
                        return Ok(self.remember(tree, hits));
                    }
                };
                for blob in &refs.data {
                    let key = (PackKind::Data, *blob);
                    if self.lost.contains(&key) {
                        hits.push((String::new(), key));
                    }
                }
                for sub in &refs.trees {
                    let key = (PackKind::Tree, *sub);
                    if self.lost.contains(&key) {
                        hits.push((String::new(), key));
                    }
                    subtrees.push((String::new(), *sub));
                }
            }
            let mut children = futures::stream::iter(
                subtrees
                    .into_iter()
                    .map(|(name, sub)| async move { (name, self.scan(sub).await) }),
            )
            .buffered(4);
            while let Some((name, found)) = children.next().await {
                for (path, key) in found?.iter() {
                    hits.push((format!("{name}{path}"), *key));
                }
            }
            Ok(self.remember(tree, hits))
        }
        .boxed()
    }
}
