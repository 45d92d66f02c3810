//! `zaibei stats`: sizes of snapshots and of the repository.

use std::sync::Arc;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde::Serialize;
use zaibei_format::{Id, NodeKind, PackKind, Snapshot, Tree};
use zaibei_repo::{IdMap, IdSet, IndexedRepository};

use crate::output::Out;
use crate::{Cli, exit, output};

/// Show how much data snapshots hold, and what the repository stores.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Snapshots (id, unique prefix or `latest`). Default: all.
    pub snapshots: Vec<String>,
    /// restore-size: files, directories and their total size as a restore would write them
    /// (shared data counted every time). raw-data: the distinct data blobs the snapshots
    /// use, their size before and after compression, and the deduplication ratio.
    #[arg(long, value_enum, default_value_t = Mode::RestoreSize)]
    pub mode: Mode,
}

/// What to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Files and sizes as restored.
    RestoreSize,
    /// Distinct data blobs, as stored.
    RawData,
}

/// Entries below a tree.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Totals {
    files: u64,
    dirs: u64,
    others: u64,
    size: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.others += o.others;
        self.size = self.size.saturating_add(o.size);
    }
}

#[derive(Serialize)]
struct Raw {
    blobs: u64,
    raw_size: u64,
    stored_size: u64,
    missing_blobs: u64,
    compression_ratio: Option<f64>,
    dedup_ratio: Option<f64>,
}

#[derive(Serialize)]
struct RepoTotals {
    snapshots: usize,
    packs: usize,
    data_packs: usize,
    tree_packs: usize,
    refs_packs: usize,
    data_blobs: usize,
    tree_blobs: usize,
    refs_blobs: usize,
    bytes_stored: u64,
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    snapshots: usize,
    restore: Totals,
    /// True with a maintenance-only key: the restore figures are the snapshots' summaries.
    restore_from_summaries: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<Raw>,
    repository: RepoTotals,
}

/// Totals below the tree `root`; each distinct tree is read once (`memo`).
async fn tree_totals(
    repo: &IndexedRepository,
    root: Id,
    memo: &mut IdMap<Totals>,
) -> Result<Totals> {
    if let Some(t) = memo.get(&root) {
        return Ok(*t);
    }
    struct Frame {
        id: Id,
        tree: Arc<Tree>,
        next: usize,
        acc: Totals,
    }
    let mut stack = vec![Frame {
        id: root,
        tree: repo.load_tree(&root).await?,
        next: 0,
        acc: Totals::default(),
    }];
    while let Some(top) = stack.last_mut() {
        let Some(node) = top.tree.nodes.get(top.next) else {
            let Some(done) = stack.pop() else { break };
            memo.insert(done.id, done.acc);
            match stack.last_mut() {
                Some(parent) => parent.acc.add(&done.acc),
                None => return Ok(done.acc),
            }
            continue;
        };
        top.next += 1;
        let descend = match node.kind {
            NodeKind::File => {
                top.acc.files += 1;
                top.acc.size = top.acc.size.saturating_add(node.size);
                None
            }
            NodeKind::Dir => {
                top.acc.dirs += 1;
                match node.subtree.map(|s| (s, memo.get(&s))) {
                    Some((_, Some(t))) => {
                        top.acc.add(t);
                        None
                    }
                    Some((s, None)) => Some(s),
                    None => None,
                }
            }
            _ => {
                top.acc.others += 1;
                None
            }
        };
        if let Some(id) = descend {
            let tree = repo.load_tree(&id).await?;
            stack.push(Frame {
                id,
                tree,
                next: 0,
                acc: Totals::default(),
            });
        }
    }
    Ok(Totals::default())
}

/// The distinct data blobs below the trees `roots` (through reference blobs without the
/// content key).
async fn data_blobs(repo: &IndexedRepository, roots: &[Id]) -> Result<IdSet> {
    let full = repo.keys().has_content();
    let mut blobs = IdSet::default();
    let mut visited = IdSet::default();
    let mut stack: Vec<Id> = roots
        .iter()
        .copied()
        .filter(|r| visited.insert(*r))
        .collect();
    while let Some(id) = stack.pop() {
        if full {
            let tree = repo.load_tree(&id).await?;
            for n in &tree.nodes {
                blobs.extend(n.content.iter().copied());
                if let Some(s) = n.subtree.filter(|s| visited.insert(*s)) {
                    stack.push(s);
                }
            }
        } else {
            let refs = repo.load_refs(&id).await?;
            blobs.extend(refs.data);
            stack.extend(refs.trees.into_iter().filter(|s| visited.insert(*s)));
        }
    }
    Ok(blobs)
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn repo_totals(repo: &IndexedRepository, snapshots: usize) -> RepoTotals {
    let index = repo.index();
    let packs = |k| index.packs().iter().filter(|p| p.kind == k).count();
    RepoTotals {
        snapshots,
        packs: index.packs().len(),
        data_packs: packs(PackKind::Data),
        tree_packs: packs(PackKind::Tree),
        refs_packs: packs(PackKind::Refs),
        data_blobs: index.blob_count(PackKind::Data),
        tree_blobs: index.blob_count(PackKind::Tree),
        refs_blobs: index.blob_count(PackKind::Refs),
        bytes_stored: index.packs().iter().map(|p| p.size).sum(),
    }
}

pub async fn run(cli: &Cli, a: &StatsArgs) -> Result<u8> {
    let repo = crate::repo::open_indexed(cli).await?;
    let list = repo.list_snapshots().await?;
    let mut code = exit::OK;
    for (name, e) in &list.damaged {
        eprintln!("error: {}", output::naming(name, e));
        code = exit::DAMAGED;
    }
    let all = list.snapshots.len() + list.damaged.len();
    let chosen: Vec<(Id, Snapshot)> = if a.snapshots.is_empty() {
        list.snapshots
    } else {
        repo.find_snapshots(&a.snapshots).await?
    };
    let from_summaries = !repo.keys().has_content();
    let mut restore = Totals::default();
    let mut memo = IdMap::default();
    for (_, s) in &chosen {
        if from_summaries {
            restore.files += s.summary.total_files;
            restore.size = restore.size.saturating_add(s.summary.total_bytes);
        } else {
            restore.add(&tree_totals(&repo, s.tree, &mut memo).await?);
        }
    }
    let raw = if a.mode == Mode::RawData {
        let roots: Vec<Id> = chosen.iter().map(|(_, s)| s.tree).collect();
        let (mut raw_size, mut stored, mut missing) = (0u64, 0u64, 0u64);
        let blobs = data_blobs(&repo, &roots).await?;
        for id in &blobs {
            match repo.index().lookup(PackKind::Data, id) {
                Some(loc) => {
                    raw_size += loc.raw_length;
                    stored += loc.length;
                }
                None => {
                    eprintln!("error: data blob {id} is missing from the index");
                    missing += 1;
                    code = exit::DAMAGED;
                }
            }
        }
        Some(Raw {
            blobs: blobs.len() as u64,
            raw_size,
            stored_size: stored,
            missing_blobs: missing,
            compression_ratio: ratio(raw_size, stored),
            dedup_ratio: ratio(restore.size, raw_size),
        })
    } else {
        None
    };
    let report = Report {
        mode: if a.mode == Mode::RawData {
            "raw-data"
        } else {
            "restore-size"
        },
        snapshots: chosen.len(),
        restore,
        restore_from_summaries: from_summaries,
        raw,
        repository: repo_totals(&repo, all),
    };
    let mut out = Out::new();
    if cli.json {
        out.json_pretty(&report)?;
    } else {
        print_text(&mut out, &report)?;
    }
    out.flush()?;
    Ok(code)
}

fn print_text(out: &mut Out, r: &Report) -> Result<()> {
    let x = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}x"));
    let mut lines = vec![format!(
        "Stats in {} mode for {} snapshots:",
        r.mode, r.snapshots
    )];
    let t = &r.restore;
    lines.push(format!("  Files:            {}", t.files));
    if !r.restore_from_summaries {
        lines.push(format!("  Directories:      {}", t.dirs));
        lines.push(format!("  Other entries:    {}", t.others));
    }
    lines.push(format!(
        "  Restore size:     {} ({} bytes)",
        output::bytes(t.size),
        t.size
    ));
    if r.restore_from_summaries {
        lines.push(
            "  (from the snapshots' summaries: a maintenance-only key cannot read trees)".into(),
        );
    }
    if let Some(raw) = &r.raw {
        lines.push(format!("  Data blobs:       {}", raw.blobs));
        lines.push(format!(
            "  Raw data size:    {} ({} bytes)",
            output::bytes(raw.raw_size),
            raw.raw_size
        ));
        lines.push(format!(
            "  Stored size:      {} ({} bytes)",
            output::bytes(raw.stored_size),
            raw.stored_size
        ));
        lines.push(format!("  Compression:      {}", x(raw.compression_ratio)));
        lines.push(format!(
            "  Deduplication:    {} (restore size / raw data size)",
            x(raw.dedup_ratio)
        ));
        if raw.missing_blobs > 0 {
            lines.push(format!("  Missing blobs:    {}", raw.missing_blobs));
        }
    }
    let p = &r.repository;
    lines.push("Repository:".into());
    lines.push(format!("  Snapshots:        {}", p.snapshots));
    lines.push(format!(
        "  Packs:            {} ({} data, {} tree, {} refs)",
        p.packs, p.data_packs, p.tree_packs, p.refs_packs
    ));
    lines.push(format!(
        "  Blobs:            {} data, {} tree, {} refs",
        p.data_blobs, p.tree_blobs, p.refs_blobs
    ));
    lines.push(format!(
        "  Stored:           {} ({} bytes)",
        output::bytes(p.bytes_stored),
        p.bytes_stored
    ));
    for l in &lines {
        out.line(l)?;
    }
    Ok(())
}
