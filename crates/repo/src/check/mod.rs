//! `check`: proves that a repository is consistent and, with `read_data`, that every blob can
//! be read back; for every damaged object it says which snapshots and which files it affects.
//!
//! Structure: every key object and state object decodes; every index object decodes; every
//! indexed pack exists with the indexed size; every stored pack is indexed (an unindexed pack
//! is a leftover of an interrupted operation: a warning); every snapshot decodes; every tree
//! reachable from a snapshot decodes, its files' blobs and its subtrees are indexed, the sizes
//! of its files match their blobs, and its reference blob exists and matches it. With a
//! maintenance-only key the walk follows the reference blobs instead of the trees.
//!
//! Data (`read_data`): every pack is read whole; its bytes hash to its id; its prefix, trailer
//! and sealed header decode and agree with the index; every blob the index places in it
//! authenticates and (with the content key) hashes to its id. Blobs are checked where the
//! index places them, as a restore reads them, so a damaged header or a flipped byte in one
//! blob is charged to exactly the blobs a restore would fail on.
//!
//! Impact ([`impact`]): the blobs that damage makes unreadable (every copy of them is bad) are
//! traced through every snapshot, giving for each problem the snapshots and the paths (files,
//! or directories whose listing is lost) that cannot be restored.

mod impact;
mod subset;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures::StreamExt;
use zaibei_format::refs::TreeRefs;
use zaibei_format::{Id, NodeKind, PackKind};

pub use impact::{Affected, AffectedPath, MAX_PATHS_LISTED};
pub use subset::DataSubset;

use crate::index::{BlobLocation, BlobRef, IdSet, PackMeta};
use crate::opener::BlobOpener;
use crate::{IndexedRepository, RepoError, Result, names};

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Read and authenticate every blob (of the packs `subset` selects).
    pub read_data: bool,
    /// Which packs `read_data` reads.
    pub subset: DataSubset,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Harmless leftovers or redundancy.
    Warning,
    /// Damage: some data may not be restorable.
    Error,
}

/// One finding.
#[derive(Debug, Clone)]
pub struct CheckProblem {
    /// How bad.
    pub severity: Severity,
    /// The object concerned.
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// What the damage costs: the snapshots and paths that cannot be restored (errors only).
    pub affected: Option<Affected>,
}

/// A blob, by kind and id.
pub type BlobKey = (PackKind, Id);

/// What a problem makes unreadable; resolved into lost blobs once every phase has run.
#[derive(Debug, Clone)]
enum Cause {
    /// Nothing beyond the object itself (a header, a leftover).
    None,
    /// The whole pack: every blob the index places in it.
    Pack(Id),
    /// One blob record in one pack.
    Record(Id, BlobKey),
    /// A blob wherever it lies (missing from the index, or undecodable).
    Blob(BlobKey),
    /// A whole snapshot (its object is damaged).
    Snapshot(Id),
}

/// The outcome of a check.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Findings, errors first.
    pub problems: Vec<CheckProblem>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Trees checked.
    pub trees: usize,
    /// Packs in the index.
    pub packs: usize,
    /// Packs present that a data check could read (`read_data`).
    pub packs_total: usize,
    /// Packs read whole (`read_data`).
    pub packs_read: usize,
    /// Blobs authenticated (`read_data`).
    pub blobs_read: u64,
    /// Bytes read (`read_data`).
    pub bytes_read: u64,
    /// True when data and tree blobs could not be authenticated for lack of the content key.
    pub content_unverified: bool,
    /// Snapshots at least one error affects.
    pub snapshots_affected: usize,
    causes: Vec<Cause>,
}

impl CheckReport {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    fn push(&mut self, severity: Severity, object: String, message: String, cause: Cause) {
        self.problems.push(CheckProblem {
            severity,
            object,
            message,
            affected: None,
        });
        self.causes.push(cause);
    }

    fn error(&mut self, object: impl Into<String>, message: impl Into<String>, cause: Cause) {
        self.push(Severity::Error, object.into(), message.into(), cause);
    }

    fn warning(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.push(
            Severity::Warning,
            object.into(),
            message.into(),
            Cause::None,
        );
    }
}

/// Progress of a check: phase name, items done, items in total.
pub type CheckProgress<'a> = &'a (dyn Fn(&str, u64, u64) + Send + Sync);

/// Runs a check.
pub async fn check(
    repo: &IndexedRepository,
    opts: CheckOptions,
    progress: CheckProgress<'_>,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    check_keys(repo, &mut report).await?;
    check_states(repo, &mut report).await?;
    for p in repo.index_problems() {
        report.error(
            p.name.clone(),
            format!(
                "{}; the blobs it lists are unknown until `zaibei repair index` rebuilds the index",
                p.error
            ),
            Cause::None,
        );
    }
    if repo.index().duplicates() > 0 {
        report.warning(
            "index",
            format!(
                "{} blobs are stored more than once (prune removes the copies)",
                repo.index().duplicates()
            ),
        );
    }
    let stored: HashMap<String, u64> = repo
        .store()
        .list(names::DATA)
        .await?
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    let to_read: Vec<PackMeta> = if opts.read_data {
        let present = repo
            .index()
            .packs()
            .iter()
            .filter(|p| stored.contains_key(&names::pack(&p.id)))
            .cloned()
            .collect::<Vec<_>>();
        report.packs_total = present.len();
        opts.subset.select(present)
    } else {
        Vec::new()
    };
    let reading: IdSet = to_read.iter().map(|p| p.id).collect();
    check_packs_present(repo, &stored, &reading, &mut report);
    check_snapshots_and_trees(repo, &mut report, progress).await?;
    if opts.read_data {
        read_packs(repo, to_read, &mut report, progress).await?;
    }
    if report.causes.iter().any(|c| !matches!(c, Cause::None)) {
        impact::assess(repo, &mut report, progress).await?;
    }
    let mut order: Vec<usize> = (0..report.problems.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&report.problems[a], &report.problems[b]);
        b.severity.cmp(&a.severity).then(a.object.cmp(&b.object))
    });
    let mut problems: Vec<Option<CheckProblem>> = std::mem::take(&mut report.problems)
        .into_iter()
        .map(Some)
        .collect();
    report.problems = order
        .into_iter()
        .filter_map(|i| problems[i].take())
        .collect();
    report.causes.clear();
    Ok(report)
}

async fn check_keys(repo: &IndexedRepository, report: &mut CheckReport) -> Result<()> {
    for info in repo.store().list(names::KEYS).await? {
        let Some(id) = names::id_of(&info.name) else {
            report.warning(info.name, "not a key object name (ignored)");
            continue;
        };
        let bytes = repo.store().get(&info.name).await?;
        if let Err(e) = crate::repository::decode_key(repo.suite(), &info.name, &id, &bytes) {
            report.error(
                info.name,
                format!("{e}; its password no longer opens the repository (other keys still do)"),
                Cause::None,
            );
        }
    }
    Ok(())
}

async fn check_states(repo: &IndexedRepository, report: &mut CheckReport) -> Result<()> {
    let dir = format!("{}/{}", names::STATE, crate::CONDEMNED);
    for info in repo.store().list(&dir).await? {
        let Some((generation, _)) = info
            .name
            .rsplit('/')
            .next()
            .and_then(zaibei_format::state::parse_state_name)
        else {
            report.warning(info.name, "not a state object name (ignored)");
            continue;
        };
        let opened = repo
            .read_state_object(&info.name, crate::CONDEMNED, generation)
            .await
            .and_then(|obj| {
                zaibei_format::Condemned::from_value(obj.body)
                    .map_err(|e| RepoError::format(&info.name, e))
            });
        if let Err(e) = opened {
            if e.is_store_unreachable() {
                return Err(e);
            }
            report.error(
                info.name,
                format!(
                    "{e}; prune and writers fall back to the previous generation (packs marked \
                     since are marked again), and the next prune publishes past it and deletes it"
                ),
                Cause::None,
            );
        }
    }
    Ok(())
}

fn check_packs_present(
    repo: &IndexedRepository,
    stored: &HashMap<String, u64>,
    reading: &IdSet,
    report: &mut CheckReport,
) {
    let index = repo.index();
    report.packs = index.packs().len();
    let mut indexed = HashSet::new();
    for p in index.packs() {
        let name = names::pack(&p.id);
        match stored.get(&name) {
            None => report.error(
                name.clone(),
                "pack is in the index but missing from the store",
                Cause::Pack(p.id),
            ),
            Some(&size) if size != p.size => {
                // Reading the pack tells exactly which blobs survive; otherwise assume none.
                let cause = if reading.contains(&p.id) {
                    Cause::None
                } else {
                    Cause::Pack(p.id)
                };
                let assumed = if matches!(cause, Cause::Pack(_)) {
                    " (not read: every blob in it is counted lost; --read-data tells exactly)"
                } else {
                    ""
                };
                report.error(
                    name.clone(),
                    format!("pack is {size} bytes, the index says {}{assumed}", p.size),
                    cause,
                );
            }
            Some(_) => {}
        }
        indexed.insert(name);
    }
    let mut unindexed: Vec<&String> = stored.keys().filter(|n| !indexed.contains(*n)).collect();
    unindexed.sort();
    for name in unindexed {
        report.warning(
            name.clone(),
            "pack is not in any index (left over from an interrupted operation, or its index \
             object is lost: `zaibei repair index` indexes it, prune removes it)",
        );
    }
}

async fn check_snapshots_and_trees(
    repo: &IndexedRepository,
    report: &mut CheckReport,
    progress: CheckProgress<'_>,
) -> Result<()> {
    let mut list = repo.list_snapshots().await?;
    for (name, e) in std::mem::take(&mut list.damaged) {
        // Unreadable is not damaged: stop rather than report damage that may not exist.
        if e.is_store_unreachable() {
            return Err(e);
        }
        let cause = names::id_of(&name).map_or(Cause::None, Cause::Snapshot);
        report.error(name, e.to_string(), cause);
    }
    report.snapshots = list.snapshots.len();
    let full = repo.keys().has_content();
    let mut visited = IdSet::default();
    let mut frontier: Vec<(Id, String)> = Vec::new();
    for (id, snap) in &list.snapshots {
        if visited.insert(snap.tree) {
            frontier.push((snap.tree, format!("snapshot {}", id.short())));
        }
    }
    let mut missing: BTreeSet<BlobKey> = BTreeSet::new();
    let mut done = 0u64;
    while !frontier.is_empty() {
        let batch = std::mem::take(&mut frontier);
        let mut results = futures::stream::iter(batch.into_iter().map(|(tree, path)| async move {
            let r = if full {
                check_tree(repo, &tree, &path).await
            } else {
                check_refs(repo, &tree, &path).await
            };
            (tree, path, r)
        }))
        .buffer_unordered(8);
        while let Some((tree, path, r)) = results.next().await {
            done += 1;
            progress("trees", done, 0);
            match r {
                Ok(found) => {
                    missing.extend(found.missing);
                    for (object, msg, cause) in found.problems {
                        report.error(object, msg, cause);
                    }
                    for (sub, sub_path) in found.subtrees {
                        if visited.insert(sub) {
                            frontier.push((sub, sub_path));
                        }
                    }
                }
                Err(e) if e.is_store_unreachable() => return Err(e),
                // A blob no index lists is reported once, as missing, below.
                Err(RepoError::BlobNotFound { kind, id }) => {
                    missing.insert((kind, id));
                }
                Err(e) => {
                    // With the content key the tree failed; without it, its reference blob.
                    let kind = if full { PackKind::Tree } else { PackKind::Refs };
                    report.error(
                        format!("{} blob {tree}", kind.name()),
                        format!("{e} (first met at {path})"),
                        Cause::Blob((kind, tree)),
                    );
                }
            }
        }
    }
    for key @ (kind, id) in missing {
        report.error(
            format!("{} blob {id}", kind.name()),
            "needed but in no index: its pack is gone, or its index object is lost \
             (`zaibei repair index` finds it again if its pack survives)",
            Cause::Blob(key),
        );
    }
    report.trees = visited.len();
    Ok(())
}

/// What checking one tree found.
#[derive(Default)]
struct TreeFindings {
    /// Object, message and cause of each problem.
    problems: Vec<(String, String, Cause)>,
    /// Blobs it needs that no index lists.
    missing: Vec<BlobKey>,
    /// Its subtrees, with a path for messages.
    subtrees: Vec<(Id, String)>,
}

async fn check_tree(repo: &IndexedRepository, id: &Id, path: &str) -> Result<TreeFindings> {
    let tree = repo.load_tree(id).await?;
    let index = repo.index();
    let mut found = TreeFindings::default();
    for node in &tree.nodes {
        let node_path = format!("{path}/{}", String::from_utf8_lossy(&node.name));
        match node.kind {
            NodeKind::File => {
                let mut total = 0u64;
                let mut complete = true;
                for blob in &node.content {
                    match index.lookup(PackKind::Data, blob) {
                        Some(loc) => total += loc.raw_length,
                        None => {
                            complete = false;
                            found.missing.push((PackKind::Data, *blob));
                        }
                    }
                }
                let expected = node
                    .extents
                    .as_ref()
                    .map_or(node.size, |e| e.iter().map(|&(_, l)| l).sum());
                if complete && total != expected {
                    found.problems.push((
                        format!("tree {id}"),
                        format!("{node_path}: blobs hold {total} bytes, the file needs {expected}"),
                        Cause::None,
                    ));
                }
            }
            NodeKind::Dir => match node.subtree {
                Some(sub) if index.contains(PackKind::Tree, &sub) => {
                    found.subtrees.push((sub, node_path))
                }
                Some(sub) => found.missing.push((PackKind::Tree, sub)),
                None => found.problems.push((
                    format!("tree {id}"),
                    format!("{node_path}: directory without subtree"),
                    Cause::None,
                )),
            },
            _ => {}
        }
    }
    match repo.load_refs(id).await {
        Ok(refs) if refs == TreeRefs::of_tree(&tree) => {}
        Ok(_) => found.problems.push((
            format!("refs blob {id}"),
            format!("does not match its tree (first met at {path})"),
            Cause::Blob((PackKind::Refs, *id)),
        )),
        Err(e) if e.is_store_unreachable() => return Err(e),
        Err(RepoError::BlobNotFound { .. }) => found.missing.push((PackKind::Refs, *id)),
        Err(e) => found.problems.push((
            format!("refs blob {id}"),
            format!("{e} (first met at {path})"),
            Cause::Blob((PackKind::Refs, *id)),
        )),
    }
    Ok(found)
}

async fn check_refs(repo: &IndexedRepository, id: &Id, path: &str) -> Result<TreeFindings> {
    let refs = repo.load_refs(id).await?;
    let index = repo.index();
    let mut found = TreeFindings::default();
    if !index.contains(PackKind::Tree, id) {
        found.missing.push((PackKind::Tree, *id));
    }
    for blob in &refs.data {
        if !index.contains(PackKind::Data, blob) {
            found.missing.push((PackKind::Data, *blob));
        }
    }
    found.subtrees = refs
        .trees
        .iter()
        .map(|t| (*t, format!("{path}/{}", t.short())))
        .collect();
    Ok(found)
}

async fn read_packs(
    repo: &IndexedRepository,
    packs: Vec<PackMeta>,
    report: &mut CheckReport,
    progress: CheckProgress<'_>,
) -> Result<()> {
    // Where the index places each blob of the packs to read, sorted by pack and offset: 48
    // bytes per blob, the ids staying in the index.
    let wanted: std::collections::HashSet<usize> = packs
        .iter()
        .filter_map(|p| repo.index().pack_position(&p.id))
        .collect();
    let mut placed: Vec<BlobLocation<'_>> = PackKind::ALL
        .into_iter()
        .flat_map(|kind| repo.index().all_locations(kind))
        .filter(|loc| wanted.contains(&loc.pack))
        .collect();
    placed.sort_unstable_by_key(|loc| (loc.pack, loc.offset));
    let placed_in = |pack: &Id| -> &[BlobLocation<'_>] {
        let Some(n) = repo.index().pack_position(pack) else {
            return &[];
        };
        let start = placed.partition_point(|l| l.pack < n);
        let end = placed.partition_point(|l| l.pack <= n);
        &placed[start..end]
    };
    let total = packs.len() as u64;
    report.content_unverified = !repo.keys().has_content();
    let mut results = futures::stream::iter(packs.into_iter().map(|p| {
        let blobs = placed_in(&p.id);
        async move {
            let r = read_pack(repo, &p, blobs).await;
            (p, r)
        }
    }))
    .buffer_unordered(4);
    let mut done = 0;
    while let Some((p, r)) = results.next().await {
        done += 1;
        progress("packs", done, total);
        match r {
            Ok(outcome) => {
                report.packs_read += 1;
                report.blobs_read += outcome.blobs;
                report.bytes_read += outcome.bytes;
                for (object, msg, cause) in outcome.problems {
                    report.error(object, msg, cause);
                }
            }
            Err(e) if e.is_store_unreachable() => return Err(e),
            Err(e) => report.error(names::pack(&p.id), e.to_string(), Cause::Pack(p.id)),
        }
    }
    Ok(())
}

/// Plaintext bytes of a pack's blobs opened before their ids are checked together.
const OPEN_GROUP_BYTES: usize = 16 << 20;

struct PackOutcome {
    blobs: u64,
    bytes: u64,
    problems: Vec<(String, String, Cause)>,
}

/// Reads one pack whole. Blobs are authenticated where the index places them (as a restore
/// reads them); the pack's hash and header are checked separately.
async fn read_pack(
    repo: &IndexedRepository,
    meta: &PackMeta,
    placed: &[BlobLocation<'_>],
) -> Result<PackOutcome> {
    let name = names::pack(&meta.id);
    let bytes = repo.store().get(&name).await?;
    let mut problems = Vec::new();
    let hash = Id(repo.suite().hash(&bytes));
    let intact = hash == meta.id;
    if !intact {
        problems.push((
            name.clone(),
            format!("content hash is {hash}, not the id in its name: the pack is damaged"),
            Cause::None,
        ));
    }
    match crate::repack::parse_pack(repo.keys().maintenance(), &name, &bytes) {
        Ok((kind, salt, header)) => {
            if kind != meta.kind || salt != meta.salt {
                problems.push((
                    name.clone(),
                    "the pack's kind or salt differ from the index".into(),
                    Cause::None,
                ));
            }
            let in_header: BTreeMap<u64, (Id, u64)> = header
                .iter()
                .map(|b| (b.offset, (b.id, b.length)))
                .collect();
            for loc in placed {
                let (offset, id) = (loc.offset, loc.id);
                if in_header.get(&offset) != Some(&(*id, loc.length)) {
                    problems.push((
                        name.clone(),
                        format!(
                            "the index places {} blob {id} at {offset}, the pack header does not",
                            meta.kind.name()
                        ),
                        Cause::None,
                    ));
                }
            }
        }
        Err(e) => problems.push((
            name.clone(),
            format!(
                "{e}; the blobs stay readable through the index, but `zaibei repair index` \
                 cannot rebuild this pack's entry"
            ),
            Cause::None,
        )),
    }
    let mut blobs = 0;
    if meta.kind == PackKind::Refs || repo.keys().has_content() {
        // Opened in groups, their ids checked side by side; each blob keeps its own verdict.
        let mut opener = BlobOpener::new(repo, meta.kind);
        let mut opened: Vec<(String, Cause)> = Vec::new();
        let mut settle = |opener: BlobOpener<'_>,
                          opened: &mut Vec<(String, Cause)>,
                          problems: &mut Vec<(String, String, Cause)>| {
            for ((_, result), (object, cause)) in opener.finish().into_iter().zip(opened.drain(..))
            {
                match result {
                    Ok(_) => blobs += 1,
                    Err(e) => problems.push((object, e.to_string(), cause)),
                }
            }
        };
        for loc in placed {
            let (offset, id, length, raw_length) =
                (loc.offset, *loc.id, loc.length, loc.raw_length);
            let object = format!("{} blob {id}", meta.kind.name());
            let cause = Cause::Record(meta.id, (meta.kind, id));
            let at = zaibei_format::pack::PackBlob {
                id,
                offset,
                length,
                raw_length,
            };
            let record = match crate::repack::blob_record(&name, &bytes, &at) {
                Ok(r) => r,
                Err(e) => {
                    problems.push((object, e.to_string(), cause));
                    continue;
                }
            };
            let loc = BlobRef {
                pack: meta,
                offset,
                length,
                raw_length,
            };
            match opener.add(&id, &loc, record) {
                Ok(()) => opened.push((object, cause)),
                Err(e) => problems.push((object, e.to_string(), cause)),
            }
            if opener.pending_bytes() >= OPEN_GROUP_BYTES {
                let full = std::mem::replace(&mut opener, BlobOpener::new(repo, meta.kind));
                settle(full, &mut opened, &mut problems);
            }
        }
        settle(opener, &mut opened, &mut problems);
    } else if !intact {
        // Without the content key the damaged blobs cannot be told apart: all are suspect.
        problems.push((
            name.clone(),
            "its data cannot be authenticated with a maintenance-only key; every blob in it \
             is suspect"
                .into(),
            Cause::Pack(meta.id),
        ));
    }
    Ok(PackOutcome {
        blobs,
        bytes: bytes.len() as u64,
        problems,
    })
}
