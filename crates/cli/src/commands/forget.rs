//! `zaibei forget`: remove snapshots, by id or by retention policy.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use zaibei_format::{Id, Snapshot};
use zaibei_repo::retention::{self, GroupBy, KeepPolicy};

use crate::{Cli, exit, output};

/// Remove snapshots: the given ones, or those no --keep-* rule keeps.
///
/// Snapshots are grouped by host and paths (--group-by) and each group is judged on its own,
/// newest first; calendar rules count hours, days, ISO weeks, months and years in the local
/// time zone (TZ). Only snapshot objects are removed: the data stays until `prune` finds it
/// unreferenced. With --dry-run nothing is removed and every decision is explained.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots to remove (ids or unique prefixes); not together with --keep-* rules.
    pub snapshots: Vec<String>,
    /// What to keep.
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Group by these fields: a comma-separated list of host, paths, tags; "" for one group.
    #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
    pub group_by: String,
    /// Only consider snapshots of this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only consider snapshots with this tag (repeatable; any of them).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Say what would be removed, and why each snapshot is kept; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// The `--keep-*` rules of `forget` and `watch`.
#[derive(Debug, Args)]
pub struct KeepArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// … of each of the N most recent days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// … of each of the N most recent ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// … of each of the N most recent months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// … of each of the N most recent years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken less than DURATION (e.g. 30d, 2w, 1y 6months) before the
    /// group's newest one (`watch` requires it
    /// with any other rule).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep_within: Option<Duration>,
    /// Keep every snapshot with this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
}

impl KeepArgs {
    /// The rules as a retention policy.
    pub fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tag.clone(),
        }
    }
}

#[derive(Serialize)]
struct Item {
    id: String,
    time: String,
    #[serde(skip)]
    time_short: String,
    hostname: String,
    paths: Vec<String>,
    tags: Vec<String>,
    /// Rules that keep it (empty: removed).
    reasons: Vec<String>,
}

#[derive(Serialize)]
struct Group {
    host: Option<String>,
    paths: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    keep: Vec<Item>,
    remove: Vec<Item>,
}

#[derive(Serialize)]
struct Report {
    dry_run: bool,
    groups: Vec<Group>,
    removed: usize,
}

fn item(id: &Id, s: &Snapshot, reasons: Vec<String>) -> Item {
    Item {
        id: id.to_hex(),
        time: output::time(s.time),
        time_short: output::time_short(s.time),
        hostname: s.hostname.clone(),
        paths: s.paths.iter().map(|p| output::path(p)).collect(),
        tags: s.tags.clone(),
        reasons,
    }
}

pub async fn run(cli: &Cli, a: &ForgetArgs) -> Result<u8> {
    let policy = a.keep.policy();
    if !a.snapshots.is_empty() && !policy.is_empty() {
        bail!(exit::WithCode(
            exit::USAGE,
            "give snapshot ids or --keep-* rules, not both".into()
        ));
    }
    if a.snapshots.is_empty() && policy.is_empty() {
        bail!(exit::WithCode(
            exit::USAGE,
            "nothing to forget: give snapshot ids, or --keep-* rules saying what to keep".into()
        ));
    }
    let group_by = GroupBy::parse(&a.group_by).map_err(|e| exit::WithCode(exit::USAGE, e))?;
    let repo = crate::repo::open(cli).await?;
    if !a.dry_run {
        crate::sites::require_primary(cli, &repo, "forget").await?;
    }
    let list = repo.list_snapshots().await?;
    for (name, e) in &list.damaged {
        eprintln!("warning: {name} cannot be read and is left alone: {e}");
    }

    let mut groups = Vec::new();
    let mut doomed: Vec<Id> = Vec::new();
    if a.snapshots.is_empty() {
        let considered: Vec<(Id, Snapshot)> = list
            .snapshots
            .iter()
            .filter(|(_, s)| a.hosts.is_empty() || a.hosts.contains(&s.hostname))
            .filter(|(_, s)| a.tags.is_empty() || s.tags.iter().any(|t| a.tags.contains(t)))
            .cloned()
            .collect();
        let tz = jiff::tz::TimeZone::system();
        for g in retention::apply(&policy, &considered, group_by, &tz) {
            let mut group = Group {
                host: g.key.host.clone(),
                paths: g
                    .key
                    .paths
                    .as_ref()
                    .map(|p| p.iter().map(|x| output::path(x)).collect()),
                tags: g.key.tags.clone(),
                keep: Vec::new(),
                remove: Vec::new(),
            };
            for d in &g.decisions {
                let Some((_, snap)) = considered.iter().find(|(id, _)| *id == d.id) else {
                    continue;
                };
                let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
                if d.keep() {
                    group.keep.push(item(&d.id, snap, reasons));
                } else {
                    doomed.push(d.id);
                    group.remove.push(item(&d.id, snap, reasons));
                }
            }
            groups.push(group);
        }
    } else {
        let mut group = Group {
            host: None,
            paths: None,
            tags: None,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        for (id, snap) in repo.find_snapshots(&a.snapshots).await? {
            doomed.push(id);
            group.remove.push(item(&id, &snap, Vec::new()));
        }
        groups.push(group);
    }

    if !cli.json && !cli.quiet {
        for g in &groups {
            let mut title = Vec::new();
            if let Some(h) = &g.host {
                title.push(format!("host {h}"));
            }
            if let Some(p) = &g.paths {
                title.push(format!("paths {}", p.join(" ")));
            }
            if let Some(t) = &g.tags {
                title.push(format!("tags {}", t.join(",")));
            }
            crate::say!(
                "{}: keep {}, remove {}",
                if title.is_empty() {
                    "snapshots".to_owned()
                } else {
                    title.join(", ")
                },
                g.keep.len(),
                g.remove.len()
            )?;
            for (what, items) in [("keep", &g.keep), ("remove", &g.remove)] {
                for i in items {
                    crate::say!(
                        "  {what:<6} {}  {}  {}",
                        &i.id[..8],
                        i.time_short,
                        i.reasons.join(", ")
                    )?;
                }
            }
        }
    }

    let mut removed = 0;
    if !a.dry_run && !doomed.is_empty() {
        // One forget record for all of them (replicas forget only what such a record names),
        // published before the first snapshot object is deleted.
        repo.forget_snapshots(&doomed).await.with_context(|| {
            format!(
                "removing {} snapshot(s); run forget again to finish",
                doomed.len()
            )
        })?;
        removed = doomed.len();
    }
    if cli.json {
        output::json_pretty(&Report {
            dry_run: a.dry_run,
            groups,
            removed,
        })?;
    } else if !cli.quiet {
        if a.dry_run {
            crate::say!("dry run: {} snapshots would be removed", doomed.len())?;
        } else {
            crate::say!(
                "removed {removed} snapshots; run prune to free the space of data no snapshot uses"
            )?;
        }
    }
    Ok(exit::OK)
}
