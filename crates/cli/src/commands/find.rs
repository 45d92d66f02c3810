//! `zaibei find`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;
use zaibei_archive::tree_walk::TreeWalker;
use zaibei_format::{Id, Snapshot};

use crate::node_view::{NodeJson, long_line};
use crate::output::Out;
use crate::{Cli, exit, output};

/// Find entries by name (or path) in snapshots.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// Glob patterns (`*`, `?`, `[abc]`, `{a,b}`, `**`); an entry matching any of them is
    /// printed. Matched against the entry's name, or with --path-match its full path.
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Search only this snapshot (id, unique prefix or `latest`; repeatable). Default: all.
    #[arg(short, long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Match against the full path in the snapshot (`/home/*/notes.txt`, `**/src/*.rs`)
    /// instead of the name; `*` then stops at `/`, `**` crosses it.
    #[arg(long)]
    pub path_match: bool,
    /// Ignore case.
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Long listing: type and permissions, owner, group, size, modification time.
    #[arg(short, long)]
    pub long: bool,
}

#[derive(Serialize)]
struct Match {
    snapshot: String,
    snapshot_time: String,
    #[serde(flatten)]
    node: NodeJson,
}

fn build(a: &FindArgs) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for p in &a.patterns {
        let glob = GlobBuilder::new(p)
            .case_insensitive(a.ignore_case)
            .literal_separator(a.path_match)
            .backslash_escape(true)
            .build();
        match glob {
            Ok(g) => set.add(g),
            Err(e) => bail!(exit::WithCode(
                exit::USAGE,
                format!("invalid pattern {p:?}: {e}")
            )),
        };
    }
    Ok(set.build()?)
}

pub async fn run(cli: &Cli, a: &FindArgs) -> Result<u8> {
    let globs = build(a)?;
    let repo = crate::repo::open_indexed(cli).await?;
    crate::repo::require_content(&repo, "find")?;
    let mut damaged = 0usize;
    let snapshots: Vec<(Id, Snapshot)> = if a.snapshots.is_empty() {
        let list = repo.list_snapshots().await?;
        for (name, e) in &list.damaged {
            eprintln!("error: {}", output::naming(name, e));
            damaged += 1;
        }
        list.snapshots
    } else {
        repo.find_snapshots(&a.snapshots).await?
    };
    let mut out = Out::new();
    let mut matches = 0u64;
    for (id, snap) in &snapshots {
        let root = match repo.load_tree(&snap.tree).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: snapshot {}: {e}", id.short());
                damaged += 1;
                continue;
            }
        };
        let mut walk = TreeWalker::new(&repo, root, Vec::new());
        loop {
            let entry = match walk.next().await {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => {
                    out.flush()?;
                    eprintln!("error: snapshot {}: {e}", id.short());
                    damaged += 1;
                    continue;
                }
            };
            let node = entry.node();
            let subject: &[u8] = if a.path_match {
                &entry.path
            } else {
                &node.name
            };
            if !globs.is_match(Path::new(OsStr::from_bytes(subject))) {
                continue;
            }
            matches += 1;
            if cli.json {
                out.json(&Match {
                    snapshot: id.to_hex(),
                    snapshot_time: crate::output::time(snap.time),
                    node: NodeJson::new(&entry.path, node),
                })?;
            } else if a.long {
                out.line(&format!("{} {}", id.short(), long_line(&entry.path, node)))?;
            } else {
                out.line(&format!(
                    "{} {}",
                    id.short(),
                    crate::output::path(&entry.path)
                ))?;
            }
        }
    }
    out.flush()?;
    if !cli.json && !cli.quiet {
        eprintln!(
            "{matches} matching entries in {} snapshots",
            snapshots.len()
        );
    }
    Ok(if damaged > 0 { exit::DAMAGED } else { exit::OK })
}
