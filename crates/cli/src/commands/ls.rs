//! `zaibei ls`.

use std::ffi::OsString;

use anyhow::Result;
use clap::Args;
use zaibei_archive::snapshot_path::{Located, locate};
use zaibei_archive::tree_walk::TreeWalker;
use zaibei_format::Node;

use crate::node_view::{NodeJson, long_line};
use crate::output::Out;
use crate::repo::{require_content, split_spec_os};
use crate::{Cli, exit};

/// List the entries of a snapshot.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id (or unique prefix, or `latest`), optionally with a path: `ID:/home/a`.
    /// Every entry below the path is listed, recursively.
    pub snapshot: OsString,
    /// Long listing: type and permissions, owner, group, size, modification time.
    #[arg(short, long)]
    pub long: bool,
}

fn print(out: &mut Out, json: bool, long: bool, path: &[u8], n: &Node) -> Result<()> {
    if json {
        out.json(&NodeJson::new(path, n))
    } else if long {
        out.line(&long_line(path, n))
    } else {
        out.line(&crate::output::path(path))
    }
}

pub async fn run(cli: &Cli, a: &LsArgs) -> Result<u8> {
    let (spec, prefix) = split_spec_os(&a.snapshot)?;
    let repo = crate::repo::open_indexed(cli).await?;
    require_content(&repo, "ls")?;
    let (_, snapshot) = repo.find_snapshot(&spec).await?;
    let mut out = Out::new();
    let tree = match locate(&repo, &snapshot.tree, &prefix).await? {
        Located::Entry(node) => {
            print(&mut out, cli.json, a.long, &prefix, &node)?;
            out.flush()?;
            return Ok(exit::OK);
        }
        Located::Dir(_, tree) => tree,
    };
    let mut walk = TreeWalker::new(&repo, tree, prefix);
    let mut damaged = 0usize;
    loop {
        match walk.next().await {
            Ok(Some(e)) => print(&mut out, cli.json, a.long, &e.path, e.node())?,
            Ok(None) => break,
            Err(e) => {
                out.flush()?;
                eprintln!("error: {e}");
                damaged += 1;
            }
        }
    }
    out.flush()?;
    if damaged > 0 {
        eprintln!("zaibei: {damaged} directories could not be read");
        return Ok(exit::DAMAGED);
    }
    Ok(exit::OK)
}
