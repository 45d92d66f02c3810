//! `zaibei diff`: what changed between two snapshots.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use serde::Serialize;
use zaibei_archive::snapshot_path::{Located, locate};
use zaibei_format::{Node, NodeKind, Tree};
use zaibei_repo::IndexedRepository;

use crate::output::{Out, hex_if_not_utf8};
use crate::repo::split_spec_os;
use crate::{Cli, exit};

/// Show the differences between two snapshots.
#[derive(Debug, Args)]
#[command(
    after_help = "Output: `+ path` added, `- path` removed, `M path` contents changed \
(data, size, symlink target, device number), `T path` type changed, and with --metadata `U path` \
only metadata changed (permissions, owner, modification time, extended attributes). \
Directories end in `/`; the contents of an added or removed directory are listed too. \
Identical subtrees are skipped without being read."
)]
pub struct DiffArgs {
    /// The first snapshot (id, unique prefix or `latest`), optionally with a path: `ID:/home`.
    pub first: OsString,
    /// The second snapshot, optionally with a path.
    pub second: OsString,
    /// Also report entries whose metadata alone changed.
    #[arg(long)]
    pub metadata: bool,
}

#[derive(Serialize)]
struct Change<'a> {
    message_type: &'static str,
    modifier: &'static str,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    what: &'a [&'static str],
}

#[derive(Serialize, Default)]
struct Summary {
    message_type: &'static str,
    added: u64,
    removed: u64,
    modified: u64,
    type_changed: u64,
    metadata_changed: u64,
}

/// One directory being compared: the trees on both sides (a missing side is empty).
struct Frame {
    prefix: Vec<u8>,
    a: Option<Arc<Tree>>,
    b: Option<Arc<Tree>>,
    ia: usize,
    ib: usize,
}

async fn open_dir(
    repo: &IndexedRepository,
    spec: &OsString,
) -> Result<(Vec<u8>, Arc<Tree>, String)> {
    let (snap, path) = split_spec_os(spec)?;
    let (id, snapshot) = repo.find_snapshot(&snap).await?;
    match locate(repo, &snapshot.tree, &path).await? {
        Located::Dir(_, tree) => Ok((path, tree, id.short())),
        Located::Entry(_) => bail!(exit::WithCode(
            exit::USAGE,
            format!(
                "{} is not a directory in snapshot {}",
                crate::output::path(&path),
                id.short()
            )
        )),
    }
}

/// What differs between two entries of the same name and type: (modifier, details).
fn compare(a: &Node, b: &Node, metadata: bool) -> Option<(&'static str, Vec<&'static str>)> {
    if a.kind != b.kind {
        return Some(("T", vec!["type"]));
    }
    let mut what = Vec::new();
    match a.kind {
        NodeKind::File => {
            if a.size != b.size {
                what.push("size");
            }
            if a.content != b.content || a.extents != b.extents {
                what.push("content");
            }
        }
        NodeKind::Symlink if a.target != b.target => what.push("target"),
        NodeKind::CharDevice | NodeKind::BlockDevice if a.rdev != b.rdev => what.push("rdev"),
        _ => {}
    }
    if !what.is_empty() {
        return Some(("M", what));
    }
    if metadata {
        if a.mode != b.mode {
            what.push("mode");
        }
        if a.uid != b.uid || a.gid != b.gid || a.user != b.user || a.group != b.group {
            what.push("owner");
        }
        if a.mtime != b.mtime {
            what.push("mtime");
        }
        if a.xattrs != b.xattrs {
            what.push("xattrs");
        }
        if !what.is_empty() {
            return Some(("U", what));
        }
    }
    None
}

struct Printer<'a> {
    cli: &'a Cli,
    out: Out,
    summary: Summary,
}

impl Printer<'_> {
    fn emit(
        &mut self,
        modifier: &'static str,
        path: &[u8],
        n: &Node,
        what: &[&'static str],
    ) -> Result<()> {
        let s = &mut self.summary;
        match modifier {
            "+" => s.added += 1,
            "-" => s.removed += 1,
            "M" => s.modified += 1,
            "T" => s.type_changed += 1,
            _ => s.metadata_changed += 1,
        }
        if self.cli.json {
            return self.out.json(&Change {
                message_type: "change",
                modifier,
                path: crate::output::path(path),
                path_hex: hex_if_not_utf8(path),
                kind: n.kind.name(),
                what,
            });
        }
        let slash = if n.kind == NodeKind::Dir { "/" } else { "" };
        self.out.line(&format!(
            "{modifier:<5}{}{slash}",
            crate::output::path(path)
        ))
    }
}

async fn subtree(repo: &IndexedRepository, n: &Node) -> Result<Option<Arc<Tree>>> {
    match (n.kind, n.subtree) {
        (NodeKind::Dir, Some(id)) => Ok(Some(repo.load_tree(&id).await?)),
        _ => Ok(None),
    }
}

pub async fn run(cli: &Cli, a: &DiffArgs) -> Result<u8> {
    let repo = crate::repo::open_indexed(cli).await?;
    crate::repo::require_content(&repo, "diff")?;
    let (pa, ta, ida) = open_dir(&repo, &a.first).await?;
    let (pb, tb, idb) = open_dir(&repo, &a.second).await?;
    if !cli.json && !cli.quiet {
        eprintln!(
            "comparing snapshot {ida}:{} to {idb}:{}",
            crate::output::path(if pa.is_empty() { b"/" } else { &pa }),
            crate::output::path(if pb.is_empty() { b"/" } else { &pb })
        );
    }
    // Paths are shown as in the snapshots when both sides are the same directory, else
    // relative to the directories compared.
    let prefix = if pa == pb { pa } else { Vec::new() };
    let mut p = Printer {
        cli,
        out: Out::new(),
        summary: Summary {
            message_type: "summary",
            ..Summary::default()
        },
    };
    let mut stack = vec![Frame {
        prefix,
        a: Some(ta),
        b: Some(tb),
        ia: 0,
        ib: 0,
    }];
    while let Some(f) = stack.last_mut() {
        let na = f.a.as_ref().and_then(|t| t.nodes.get(f.ia)).cloned();
        let nb = f.b.as_ref().and_then(|t| t.nodes.get(f.ib)).cloned();
        let order = match (&na, &nb) {
            (None, None) => {
                stack.pop();
                continue;
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.name.cmp(&y.name),
        };
        let mut path = f.prefix.clone();
        path.push(b'/');
        let (old, new) = match order {
            Ordering::Less => {
                f.ia += 1;
                (na, None)
            }
            Ordering::Greater => {
                f.ib += 1;
                (None, nb)
            }
            Ordering::Equal => {
                f.ia += 1;
                f.ib += 1;
                (na, nb)
            }
        };
        let mut next = Frame {
            prefix: Vec::new(),
            a: None,
            b: None,
            ia: 0,
            ib: 0,
        };
        match (&old, &new) {
            (Some(o), None) => {
                path.extend_from_slice(&o.name);
                p.emit("-", &path, o, &[])?;
                next.a = subtree(&repo, o).await?;
            }
            (None, Some(n)) => {
                path.extend_from_slice(&n.name);
                p.emit("+", &path, n, &[])?;
                next.b = subtree(&repo, n).await?;
            }
            (Some(o), Some(n)) => {
                path.extend_from_slice(&n.name);
                if let Some((m, what)) = compare(o, n, a.metadata) {
                    p.emit(m, &path, n, &what)?;
                }
                if o.kind != NodeKind::Dir || n.kind != NodeKind::Dir || o.subtree != n.subtree {
                    next.a = subtree(&repo, o).await?;
                    next.b = subtree(&repo, n).await?;
                }
            }
            (None, None) => {}
        }
        if next.a.is_some() || next.b.is_some() {
            next.prefix = path;
            stack.push(next);
        }
    }
    let s = &p.summary;
    if cli.json {
        p.out.json(&p.summary)?;
    } else if !cli.quiet {
        let line = format!(
            "{} added, {} removed, {} modified, {} type changed{}",
            s.added,
            s.removed,
            s.modified,
            s.type_changed,
            if a.metadata {
                format!(", {} metadata changed", s.metadata_changed)
            } else {
                String::new()
            }
        );
        p.out.line("")?;
        p.out.line(&line)?;
    }
    p.out.flush()?;
    Ok(exit::OK)
}
