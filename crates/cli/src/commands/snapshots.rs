//! `zaibei snapshots`.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::{Cli, exit, output};

/// List snapshots.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable; any of them).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots containing this path (repeatable).
    #[arg(long = "path")]
    pub paths: Vec<String>,
}

#[derive(Serialize)]
struct Entry {
    id: String,
    short_id: String,
    time: String,
    #[serde(skip)]
    time_short: String,
    hostname: String,
    username: String,
    tags: Vec<String>,
    paths: Vec<String>,
    parent: Option<String>,
    /// The snapshot this one repairs (written by `repair snapshots`).
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<String>,
    tree: String,
    program: String,
    total_files: u64,
    total_bytes: u64,
    skipped: u64,
}

pub async fn run(cli: &Cli, a: &SnapshotsArgs) -> Result<u8> {
    let repo = crate::repo::open(cli).await?;
    let list = repo.list_snapshots().await?;
    for (name, e) in &list.damaged {
        eprintln!("error: {}", output::naming(name, e));
    }
    let entries: Vec<Entry> = list
        .snapshots
        .iter()
        .filter(|(_, s)| a.hosts.is_empty() || a.hosts.contains(&s.hostname))
        .filter(|(_, s)| a.tags.is_empty() || s.tags.iter().any(|t| a.tags.contains(t)))
        .filter(|(_, s)| {
            a.paths.is_empty()
                || a.paths
                    .iter()
                    .all(|p| s.paths.iter().any(|sp| sp == p.as_bytes()))
        })
        .map(|(id, s)| Entry {
            id: id.to_hex(),
            short_id: id.short(),
            time: output::time(s.time),
            time_short: output::time_short(s.time),
            hostname: s.hostname.clone(),
            username: s.username.clone(),
            tags: s.tags.clone(),
            paths: s.paths.iter().map(|p| output::path(p)).collect(),
            parent: s.parent.map(|p| p.to_hex()),
            original: s.original.map(|p| p.to_hex()),
            tree: s.tree.to_hex(),
            program: s.program.clone(),
            total_files: s.summary.total_files,
            total_bytes: s.summary.total_bytes,
            skipped: s.summary.skipped_count,
        })
        .collect();
    if cli.json {
        output::json_pretty(&entries)?;
    } else {
        crate::say!(
            "{:<10} {:<20} {:<16} {:<16} {:>10} {:>10}  paths",
            "id",
            "time",
            "host",
            "tags",
            "files",
            "size"
        )?;
        for e in &entries {
            crate::say!(
                "{:<10} {:<20} {:<16} {:<16} {:>10} {:>10}  {}",
                e.short_id,
                e.time_short,
                e.hostname,
                e.tags.join(","),
                e.total_files,
                output::bytes(e.total_bytes),
                e.paths.join(" ")
            )?;
        }
        crate::say!("{} snapshots", entries.len())?;
    }
    Ok(if list.damaged.is_empty() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}
