//! `check`: proves that a repository is consistent and, with `read_data`, that every blob can
//! be read back.
//!
//! Structure: every index object decodes; every indexed pack exists with the indexed size; every
//! stored pack is indexed (an unindexed pack is a leftover of an interrupted operation: a
//! warning); every snapshot decodes; every tree reachable from a snapshot decodes, its files'
//! blobs and its subtrees are indexed, the sizes of its files match their blobs, and its
//! reference blob exists and matches it. With a maintenance-only key the walk follows the
//! reference blobs instead of the trees.
//!
//! Data (`read_data`): every pack is read whole; its bytes hash to its id; its prefix, trailer and
//! sealed header decode; the header agrees with the index; every blob authenticates and (with
//! the content key) hashes to its id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use zaibei_format::refs::TreeRefs;
use zaibei_format::{Id, NodeKind, PackKind};

use crate::index::{IdMap, IdSet, PackMeta};
use crate::{IndexedRepository, RepoError, Result, names};

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Read and authenticate every blob (of the packs `subset` selects).
    pub read_data: bool,
    /// Which packs `read_data` reads.
    pub subset: DataSubset,
}

/// Which packs a data check reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum DataSubset {
    /// Every pack.
    #[default]
    All,
    /// Part `n` of `m` (1 ≤ n ≤ m): the packs whose id, read as a number, is `n - 1` modulo
    /// `m`. Running parts 1 to m (say one a night) reads every pack exactly once, and a pack
    /// stays in its part as the repository grows.
    Part {
        /// Which part, from 1.
        n: u32,
        /// Of how many.
        m: u32,
    },
    /// A random selection of this share of the packs (0 < p ≤ 100), at least one pack.
    Percent(f64),
}

impl DataSubset {
    /// Parses `n/m` or `P%`.
    pub fn parse(text: &str) -> Result<DataSubset, String> {
        let bad = || format!("{text:?}: expected n/m (e.g. 2/7) or a percentage (e.g. 10%)");
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "{text:?}: the percentage must be above 0 and at most 100"
                ));
            }
            return Ok(DataSubset::Percent(p));
        }
        let (n, m) = text.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || n > m {
            return Err(format!("{text:?}: n must be between 1 and m"));
        }
        Ok(DataSubset::Part { n, m })
    }

    /// Picks the packs to read.
    fn select(&self, mut packs: Vec<PackMeta>) -> Vec<PackMeta> {
        match *self {
            DataSubset::All => packs,
            DataSubset::Part { n, m } => packs
                .into_iter()
                .filter(|p| {
                    let head = u64::from_be_bytes([
                        p.id.0[0], p.id.0[1], p.id.0[2], p.id.0[3], p.id.0[4], p.id.0[5],
                        p.id.0[6], p.id.0[7],
                    ]);
                    head % u64::from(m) == u64::from(n - 1)
                })
                .collect(),
            DataSubset::Percent(p) => {
                let want = ((packs.len() as f64 * p / 100.0).ceil() as usize)
                    .clamp(1, packs.len().max(1))
                    .min(packs.len());
                // A partial Fisher-Yates shuffle with fresh randomness.
                for i in 0..want {
                    let mut r = [0u8; 8];
                    let r = match getrandom::fill(&mut r) {
                        Ok(()) => u64::from_le_bytes(r),
                        Err(_) => i as u64,
                    };
                    let j = i + (r % (packs.len() - i) as u64) as usize;
                    packs.swap(i, j);
                }
                packs.truncate(want);
                packs
            }
        }
    }
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
}

impl CheckReport {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    fn error(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.problems.push(CheckProblem {
            severity: Severity::Error,
            object: object.into(),
            message: message.into(),
        });
    }

    fn warning(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.problems.push(CheckProblem {
            severity: Severity::Warning,
            object: object.into(),
            message: message.into(),
        });
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
    for p in repo.index_problems() {
        report.error(p.name.clone(), p.error.to_string());
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
    check_packs_present(repo, &mut report).await?;
    check_snapshots_and_trees(repo, &mut report, progress).await?;
    if opts.read_data {
        read_all_packs(repo, opts.subset, &mut report, progress).await?;
    }
    report
        .problems
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.object.cmp(&b.object)));
    Ok(report)
}

async fn check_packs_present(repo: &IndexedRepository, report: &mut CheckReport) -> Result<()> {
    let stored: HashMap<String, u64> = repo
        .store()
        .list(names::DATA)
        .await?
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    let index = repo.index();
    report.packs = index.packs().len();
    let mut indexed = std::collections::HashSet::new();
    for p in index.packs() {
        let name = names::pack(&p.id);
        match stored.get(&name) {
            None => report.error(
                name.clone(),
                "pack is in the index but missing from the store",
            ),
            Some(&size) if size != p.size => {
                report.error(
                    name.clone(),
                    format!("pack is {size} bytes, the index says {}", p.size),
                );
            }
            Some(_) => {}
        }
        indexed.insert(name);
    }
    for name in stored.keys() {
        if !indexed.contains(name) {
            report.warning(name.clone(), "pack is not in any index (left over from an interrupted operation; prune removes it)");
        }
    }
    Ok(())
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
        report.error(name, e.to_string());
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
                Ok((problems, subtrees)) => {
                    for (object, msg) in problems {
                        report.error(object, msg);
                    }
                    for (sub, sub_path) in subtrees {
                        if visited.insert(sub) {
                            frontier.push((sub, sub_path));
                        }
                    }
                }
                Err(e) if e.is_store_unreachable() => return Err(e),
                Err(e) => report.error(format!("tree {tree} ({path})"), e.to_string()),
            }
        }
    }
    report.trees = visited.len();
    Ok(())
}

type TreeFindings = (Vec<(String, String)>, Vec<(Id, String)>);

async fn check_tree(repo: &IndexedRepository, id: &Id, path: &str) -> Result<TreeFindings> {
    let tree = repo.load_tree(id).await?;
    let index = repo.index();
    let mut problems = Vec::new();
    let mut subtrees = Vec::new();
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
                            problems.push((
                                format!("data blob {blob}"),
                                format!("missing; needed by {node_path}"),
                            ));
                        }
                    }
                }
                let expected = node
                    .extents
                    .as_ref()
                    .map_or(node.size, |e| e.iter().map(|&(_, l)| l).sum());
                if complete && total != expected {
                    problems.push((
                        node_path.clone(),
                        format!("blobs hold {total} bytes, the file needs {expected}"),
                    ));
                }
            }
            NodeKind::Dir => match node.subtree {
                Some(sub) if index.contains(PackKind::Tree, &sub) => {
                    subtrees.push((sub, node_path))
                }
                Some(sub) => problems.push((
                    format!("tree {sub}"),
                    format!("missing; needed by {node_path}"),
                )),
                None => problems.push((node_path, "directory without subtree".into())),
            },
            _ => {}
        }
    }
    match repo.load_refs(id).await {
        Ok(refs) if refs == TreeRefs::of_tree(&tree) => {}
        Ok(_) => problems.push((
            format!("refs blob {id}"),
            format!("does not match its tree ({path})"),
        )),
        Err(e) if e.is_store_unreachable() => return Err(e),
        Err(e) => problems.push((format!("refs blob {id}"), format!("{e} ({path})"))),
    }
    Ok((problems, subtrees))
}

async fn check_refs(repo: &IndexedRepository, id: &Id, path: &str) -> Result<TreeFindings> {
    let refs = repo.load_refs(id).await?;
    let index = repo.index();
    let mut problems = Vec::new();
    if !index.contains(PackKind::Tree, id) {
        problems.push((format!("tree {id}"), format!("missing ({path})")));
    }
    for blob in &refs.data {
        if !index.contains(PackKind::Data, blob) {
            problems.push((
                format!("data blob {blob}"),
                format!("missing; needed below {path}"),
            ));
        }
    }
    let subtrees = refs
        .trees
        .iter()
        .map(|t| (*t, format!("{path}/{}", t.short())))
        .collect();
    Ok((problems, subtrees))
}

async fn read_all_packs(
    repo: &IndexedRepository,
    subset: DataSubset,
    report: &mut CheckReport,
    progress: CheckProgress<'_>,
) -> Result<()> {
    // The blobs the index places in each pack.
    let mut expected: IdMap<BTreeMap<u64, (Id, u64)>> = IdMap::default();
    for kind in PackKind::ALL {
        for (id, loc) in repo.index().blobs(kind) {
            expected
                .entry(loc.pack.id)
                .or_default()
                .insert(loc.offset, (*id, loc.length));
        }
    }
    let expected = Arc::new(expected);
    let stored: std::collections::HashSet<String> = repo
        .store()
        .list(names::DATA)
        .await?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let packs: Vec<PackMeta> = repo
        .index()
        .packs()
        .iter()
        .filter(|p| stored.contains(&names::pack(&p.id)))
        .cloned()
        .collect();
    report.packs_total = packs.len();
    let packs = subset.select(packs);
    let total = packs.len() as u64;
    report.content_unverified = !repo.keys().has_content();
    let mut results = futures::stream::iter(packs.into_iter().map(|p| {
        let expected = Arc::clone(&expected);
        async move {
            let r = read_pack(repo, &p, &expected).await;
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
                report.bytes_read += p.size;
                for (object, msg) in outcome.problems {
                    report.error(object, msg);
                }
            }
            Err(e) if e.is_store_unreachable() => return Err(e),
            Err(e) => report.error(names::pack(&p.id), e.to_string()),
        }
    }
    Ok(())
}

struct PackOutcome {
    blobs: u64,
    problems: Vec<(String, String)>,
}

async fn read_pack(
    repo: &IndexedRepository,
    meta: &PackMeta,
    expected: &IdMap<BTreeMap<u64, (Id, u64)>>,
) -> Result<PackOutcome> {
    let name = names::pack(&meta.id);
    let bytes = repo.get_verified(&name).await?;
    let (kind, salt, header) = crate::repack::parse_pack(repo.keys().maintenance(), &name, &bytes)?;
    if kind != meta.kind || salt != meta.salt {
        return Err(RepoError::Refused(format!(
            "{name}: kind or salt differ from the index"
        )));
    }
    let mut problems = Vec::new();
    let in_header: BTreeMap<u64, (Id, u64)> = header
        .iter()
        .map(|b| (b.offset, (b.id, b.length)))
        .collect();
    for (offset, (id, length)) in expected.get(&meta.id).into_iter().flatten() {
        if in_header.get(offset) != Some(&(*id, *length)) {
            problems.push((
                format!("{} blob {id}", kind.name()),
                format!("the index places it at {offset} in {name}, the pack header does not"),
            ));
        }
    }
    let mut blobs = 0;
    if kind == PackKind::Refs || repo.keys().has_content() {
        for b in &header {
            let stored = crate::repack::blob_record(&name, &bytes, b)?;
            let loc = crate::index::BlobRef {
                pack: meta,
                offset: b.offset,
                length: b.length,
                raw_length: b.raw_length,
            };
            match repo.open_stored_blob(kind, &b.id, &loc, stored) {
                Ok(_) => blobs += 1,
                Err(e) => problems.push((format!("{} blob {}", kind.name(), b.id), e.to_string())),
            }
        }
    }
    Ok(PackOutcome { blobs, problems })
}

#[cfg(test)]
mod subset_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn packs(n: u8) -> Vec<PackMeta> {
        (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(
                    &u64::from(i)
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        .to_be_bytes(),
                );
                PackMeta {
                    id: Id(id),
                    kind: PackKind::Data,
                    salt: [0; 32],
                    size: 1,
                }
            })
            .collect()
    }

    #[test]
    fn parts_cover_every_pack_exactly_once() {
        let all = packs(200);
        let mut seen = Vec::new();
        for n in 1..=7 {
            let part = DataSubset::Part { n, m: 7 }.select(all.clone());
            assert!(
                !part.is_empty() && part.len() < 60,
                "part {n}: {}",
                part.len()
            );
            seen.extend(part.into_iter().map(|p| p.id));
        }
        seen.sort();
        let mut expected: Vec<Id> = all.iter().map(|p| p.id).collect();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn percentages_pick_that_share_at_least_one() {
        assert_eq!(DataSubset::Percent(10.0).select(packs(200)).len(), 20);
        assert_eq!(DataSubset::Percent(0.1).select(packs(5)).len(), 1);
        assert_eq!(DataSubset::Percent(100.0).select(packs(5)).len(), 5);
        assert!(DataSubset::Percent(50.0).select(Vec::new()).is_empty());
        let mut ids: Vec<Id> = DataSubset::Percent(50.0)
            .select(packs(10))
            .iter()
            .map(|p| p.id)
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 5, "no pack twice");
    }

    #[test]
    fn parsing() {
        assert_eq!(
            DataSubset::parse("2/7"),
            Ok(DataSubset::Part { n: 2, m: 7 })
        );
        assert_eq!(DataSubset::parse("12.5%"), Ok(DataSubset::Percent(12.5)));
        for bad in ["0/3", "4/3", "1/0", "0%", "101%", "x", "1/", "%"] {
            assert!(DataSubset::parse(bad).is_err(), "{bad}");
        }
    }
}
