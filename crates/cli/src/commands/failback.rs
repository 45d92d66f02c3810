//! `zaibei failback`.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use zaibei_format::SiteRole;
use zaibei_repo::copy::{CopyOptions, copy_snapshots};
use zaibei_repo::site::{self, RoleChange};

use crate::commands::copy::progress_printer;
use crate::commands::site::record_of;
use crate::sites::open_peers;
use crate::{Cli, exit, output};

/// Fail back to this old primary (`-r`): merge both sides' snapshots, take the primary role back.
///
/// Run at a site that was failed over from: the snapshots written at each side during the
/// outage are copied into both, then this site becomes the primary again at a new epoch.
///
/// The current primary must be reachable. Nothing is deleted: backups taken here after the
/// failover and backups taken at the new primary are all kept, at both sites. Snapshots the
/// new primary forgot during the outage come back too (this site still holds them): forget
/// them again here afterwards if they should go.
#[derive(Debug, Args)]
pub struct FailbackArgs {
    /// Do not read objects back after writing them.
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Serialize)]
struct Merged {
    from: String,
    to: String,
    snapshots: usize,
    bytes_written: u64,
}

pub async fn run(cli: &Cli, a: &FailbackArgs) -> Result<u8> {
    let started = std::time::SystemTime::now();
    let repo = crate::repo::open(cli).await?;
    let me = record_of(&repo).await?;
    let peers = open_peers(cli, &repo, &me).await;
    // The site holding the primary role now: a reachable peer that is primary at an epoch not
    // below this site's (equal only in a split brain, which this resolves).
    let mut current: Option<(&str, &zaibei_repo::Repository, u64)> = None;
    let mut names_me_ahead = false;
    for p in &peers {
        let Ok(r) = &p.repo else { continue };
        let Some(rec) = r.site_state().await?.record else {
            continue;
        };
        if rec.role == SiteRole::Primary
            && rec.name != me.name
            && rec.epoch >= me.epoch
            && current.is_none_or(|(_, _, e)| rec.epoch > e)
        {
            current = Some((p.peer.name.as_str(), r, rec.epoch));
        }
        names_me_ahead |= rec.primary == me.name && rec.epoch > me.epoch;
    }
    let Some((primary, primary_repo, _)) = current else {
        if names_me_ahead {
            // An earlier failback demoted the others and stopped before promoting this site:
            // finish it (the merge was done before the demotions).
            let change = site::become_primary(&repo, &peers, false).await?;
            report(cli, &change, "", &[], started)?;
            return Ok(exit::OK);
        }
        let unreachable: Vec<&str> = peers
            .iter()
            .filter(|p| p.repo.is_err())
            .map(|p| p.peer.name.as_str())
            .collect();
        bail!(exit::WithCode(
            exit::USAGE,
            if me.role == SiteRole::Primary && unreachable.is_empty() {
                format!(
                    "site {} is the primary already; nothing to fail back",
                    me.name
                )
            } else {
                format!(
                    "no reachable site holds the primary role at an epoch of at least this \
                     site's {} (unreachable: {})",
                    me.epoch,
                    if unreachable.is_empty() {
                        "none".into()
                    } else {
                        unreachable.join(", ")
                    }
                )
            }
        ));
    };
    let here = Arc::new(
        repo.clone()
            .load_index()
            .await
            .context("loading the index")?,
    );
    let there = Arc::new(
        primary_repo
            .clone()
            .load_index()
            .await
            .with_context(|| format!("loading the index of site {primary}"))?,
    );
    let opts = CopyOptions {
        connections: cli.storage.requests().clamp(1, 32),
        verify: !a.no_verify,
        dry_run: false,
    };
    let progress = progress_printer(cli, "failback");
    let mut merged = Vec::new();
    for (from, to, src, dst) in [
        (me.name.as_str(), primary, &here, &there),
        (primary, me.name.as_str(), &there, &here),
    ] {
        let all = src.list_snapshots().await?.snapshots;
        let r = copy_snapshots(src, dst, all, &opts, &progress)
            .await
            .with_context(|| format!("copying snapshots from site {from} to site {to}"))?;
        merged.push(Merged {
            from: from.to_owned(),
            to: to.to_owned(),
            snapshots: r.copied.len(),
            bytes_written: r.bytes_written,
        });
    }
    let change = site::become_primary(&repo, &peers, true).await?;
    report(cli, &change, primary, &merged, started)?;
    Ok(exit::OK)
}

/// Prints what a failback did.
fn report(
    cli: &Cli,
    change: &RoleChange,
    previous: &str,
    merged: &[Merged],
    started: std::time::SystemTime,
) -> Result<()> {
    if cli.json {
        output::json_line(&serde_json::json!({
            "message_type": "failback",
            "site": change.record.name,
            "epoch": change.record.epoch,
            "previous_primary": previous,
            "merged": merged,
            "updated": change.updated,
            "unreachable": change.unreachable.iter().map(|(n, e)| serde_json::json!({"site": n, "error": e})).collect::<Vec<_>>(),
            "total_duration": output::seconds_since(started),
        }))?;
    } else if !cli.quiet {
        for m in merged {
            crate::say!(
                "merged {} snapshot(s) from site {} into site {} ({})",
                m.snapshots,
                m.from,
                m.to,
                output::bytes(m.bytes_written)
            )?;
        }
        crate::say!(
            "site {} is the primary again (epoch {})",
            change.record.name,
            change.record.epoch
        )?;
        for (n, e) in &change.unreachable {
            crate::say!("  site {n} could not be reached ({e}); `zaibei sync` updates it later")?;
        }
    }
    Ok(())
}
