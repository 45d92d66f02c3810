//! `zaibei sync`.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use zaibei_format::{Id, SiteRecord, SiteRole, Snapshot, Timestamp};
use zaibei_repo::copy::{CopyOptions, copy_snapshots};
use zaibei_repo::site::{self, PeerAnswer, fencing_verdict};
use zaibei_repo::{PruneOptions, Repository, prune};

use crate::commands::copy::progress_printer;
use crate::commands::site::record_of;
use crate::sites::reach_peers;
use crate::{Cli, exit, output};

/// Bring every replica of this primary (`-r`) up to date and report each site's lag.
///
/// Copies the snapshots each replica lacks (packs as they are), carries the primary's forgets
/// over, and reports how far behind each site was and is.
///
/// A replica forgets a snapshot only when a forget record of the primary (written by `forget`,
/// `watch`'s retention, `repair snapshots --forget`, sealed with the repository's keys) names
/// it. A snapshot that vanished at the primary without one (its object deleted with storage
/// credentials alone, a lifecycle rule, a store rolled back) is kept at the replica and
/// reported as missing at the primary at every sync; --copy-back copies it back.
///
/// A site's lag is the age of the oldest snapshot of the primary that it does not hold: how
/// much recent history that site would lose if the primary burned down now (0 when it holds
/// everything). Exit code 3 when some site could not be brought up to date.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only these sites (repeatable; default every replica).
    #[arg(long = "site")]
    pub sites: Vec<String>,
    /// Only report each site's lag; copy nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Do not read objects back after writing them.
    #[arg(long)]
    pub no_verify: bool,
    /// Also prune each replica (default safety margin) once forgets are carried over:
    /// replicas delete only this way, under the primary's authority.
    #[arg(long)]
    pub prune: bool,
    /// Copy snapshots that vanished at the primary without a forget record back from the
    /// replicas that still hold them.
    #[arg(long)]
    pub copy_back: bool,
}

/// How one site's sync went.
#[derive(Serialize, Default, Debug, Clone)]
pub struct SiteSync {
    /// The site's name.
    pub site: String,
    /// Where its repository lives.
    pub location: String,
    /// Whether it could be reached.
    pub reachable: bool,
    /// Why it could not be brought up to date.
    pub error: Option<String>,
    /// Snapshots of the primary it lacked before.
    pub missing_before: usize,
    /// Age of the oldest of those, in seconds (0: none missing).
    pub lag_seconds_before: Option<f64>,
    /// Snapshots copied to it.
    pub snapshots_copied: usize,
    /// Bytes written to it.
    pub bytes_written: u64,
    /// Snapshots it lacks after the sync.
    pub missing_after: Option<usize>,
    /// Its lag after the sync, in seconds.
    pub lag_seconds_after: Option<f64>,
    /// Whether its site record was brought to this primary's epoch.
    pub role_updated: bool,
    /// Snapshots forgotten there because a forget record of the primary names them.
    pub snapshots_forgotten: usize,
    /// Snapshots the primary held at an earlier sync and lacks now without a forget record
    /// (deleted there without the repository's keys?): kept at this site.
    pub missing_at_primary: Vec<String>,
    /// Of those, how many were copied back to the primary (with `--copy-back`).
    pub snapshots_copied_back: usize,
    /// Bytes prune deleted there (with `--prune`).
    pub pruned_bytes: Option<u64>,
    /// Packs prune condemned there that wait for the safety margin (with `--prune`).
    pub pruned_waiting_packs: Option<usize>,
    /// Why forgets were not carried over (and nothing was pruned) there: this primary could
    /// not prove it is the current one.
    pub deletions_skipped: Option<String>,
}

/// How many of `wanted` `have` lacks, and the age of the oldest of those, in seconds. Sites
/// share keys, so a snapshot there has the same id.
pub fn lag(wanted: &[(Id, Snapshot)], have: &[(Id, Snapshot)], now: Timestamp) -> (usize, f64) {
    let there: HashSet<Id> = have.iter().map(|(id, _)| *id).collect();
    let missing: Vec<&Snapshot> = wanted
        .iter()
        .filter(|(id, _)| !there.contains(id))
        .map(|(_, s)| s)
        .collect();
    let oldest = missing.iter().map(|s| s.time).min();
    (
        missing.len(),
        oldest.map_or(0.0, |t| output::seconds_between(t, now).max(0.0)),
    )
}

/// What syncing asked for.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// Only these sites (empty: every replica).
    pub sites: Vec<String>,
    /// Only measure the lag.
    pub dry_run: bool,
    /// Read back what is written.
    pub verify: bool,
    /// Prune each replica after carrying forgets over.
    pub prune: bool,
    /// Copy snapshots that vanished at the primary back from the replicas.
    pub copy_back: bool,
}

/// Brings the replicas of the primary `repo` up to date (see [`SyncArgs`]); one entry per
/// site. Fails only when this repository may not sync at all (not the primary, or fenced);
/// a site that cannot be brought up to date is reported in its entry.
pub async fn sync_sites(
    cli: &Cli,
    repo: &Repository,
    req: &SyncRequest,
) -> Result<(SiteRecord, Vec<SiteSync>)> {
    let me = record_of(repo).await?;
    if me.role != SiteRole::Primary {
        bail!(exit::WithCode(
            exit::USAGE,
            format!(
                "sync runs at the primary; site {} is a replica of {}",
                me.name, me.primary
            )
        ));
    }
    for s in &req.sites {
        if me.peer(s).is_none() {
            bail!(exit::WithCode(
                exit::USAGE,
                format!("the set has no site named {s}")
            ));
        }
    }
    // Each peer's site state is read while it is reached, within --io-timeout.
    let (peers, all_answers): (Vec<_>, Vec<_>) =
        reach_peers(cli, repo, &me).await.into_iter().unzip();
    // A primary that was failed over from must not push its role onto anyone; and only a
    // primary that passes the fencing check (every site reached, none ahead) carries
    // deletions over to the replicas.
    let mut answers = Vec::new();
    for (p, answer) in peers.iter().zip(all_answers) {
        if let PeerAnswer::Reached(Some(theirs)) = &answer
            && theirs.epoch > me.epoch
        {
            bail!(exit::WithCode(
                exit::FENCED,
                format!(
                    "site {} records epoch {} with {} as the primary, later than this site's {}: \
                     this site was failed over from; run `zaibei failback` here",
                    theirs.name, theirs.epoch, theirs.primary, me.epoch
                )
            ));
        }
        answers.push((p.peer.clone(), answer));
    }
    let own_state = repo.site_state().await?;
    let may_delete = fencing_verdict(&own_state, &answers).map_err(|e| e.to_string());
    let src = Arc::new(
        repo.clone()
            .load_index()
            .await
            .context("loading the index")?,
    );
    let ours = src.list_snapshots().await?.snapshots;
    // Every snapshot object listed, readable or not: a damaged one is not "forgotten".
    let held = src.snapshot_ids().await?;
    let opts = CopyOptions {
        connections: cli.storage.requests().clamp(1, 32),
        verify: req.verify,
        dry_run: req.dry_run,
    };
    let progress = progress_printer(cli, "sync");
    let mut results = Vec::new();
    for p in peers
        .iter()
        .filter(|p| req.sites.is_empty() || req.sites.contains(&p.peer.name))
    {
        let mut r = SiteSync {
            site: p.peer.name.clone(),
            location: p.peer.location.clone(),
            ..Default::default()
        };
        let outcome: Result<()> = async {
            let peer = p.repo.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
            r.reachable = true;
            let dst = Arc::new(
                peer.clone()
                    .load_index()
                    .await
                    .context("loading its index")?,
            );
            let theirs = dst.list_snapshots().await?.snapshots;
            let (n, l) = lag(&ours, &theirs, Timestamp::now());
            r.missing_before = n;
            r.lag_seconds_before = Some(l);
            let report = copy_snapshots(&src, &dst, ours.clone(), &opts, &progress).await?;
            if !req.dry_run {
                r.snapshots_copied = report.copied.len();
                r.bytes_written = report.bytes_written;
                r.role_updated = site::align_replica(&me, &p.peer.name, peer).await?;
                match &may_delete {
                    Ok(()) => {
                        // Still the primary at this epoch, right before deleting there.
                        if repo.site_state().await?.record.as_ref() != Some(&me) {
                            bail!("this site's role changed during the sync; nothing deleted");
                        }
                        let mirrored = site::mirror_forgets(repo, &me, &held, peer).await?;
                        r.snapshots_forgotten = mirrored.forgotten.len();
                        r.missing_at_primary =
                            mirrored.missing_at_primary.iter().map(Id::to_hex).collect();
                        if req.copy_back && !mirrored.missing_at_primary.is_empty() {
                            let back: Vec<(Id, Snapshot)> = dst
                                .list_snapshots()
                                .await?
                                .snapshots
                                .into_iter()
                                .filter(|(id, _)| mirrored.missing_at_primary.contains(id))
                                .collect();
                            let copied = copy_snapshots(&dst, &src, back, &opts, &progress)
                                .await
                                .context("copying snapshots back to the primary")?;
                            r.snapshots_copied_back = copied.copied.len();
                        }
                        if req.prune {
                            let indexed = peer
                                .clone()
                                .load_index()
                                .await
                                .context("loading its index")?;
                            let pruned =
                                prune(&indexed, &PruneOptions::default(), &|_, _, _| {}).await?;
                            r.pruned_bytes = Some(pruned.deleted_bytes);
                            r.pruned_waiting_packs = Some(pruned.waiting_packs);
                        }
                    }
                    Err(why) => r.deletions_skipped = Some(why.clone()),
                }
                let after = peer.list_snapshots().await?.snapshots;
                let (n, l) = lag(&ours, &after, Timestamp::now());
                r.missing_after = Some(n);
                r.lag_seconds_after = Some(l);
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            r.error = Some(exit::describe(&e));
        }
        results.push(r);
    }
    Ok((me, results))
}

pub async fn run(cli: &Cli, a: &SyncArgs) -> Result<u8> {
    let started = std::time::SystemTime::now();
    let repo = crate::repo::open(cli).await?;
    let req = SyncRequest {
        sites: a.sites.clone(),
        dry_run: a.dry_run,
        verify: !a.no_verify,
        prune: a.prune,
        copy_back: a.copy_back,
    };
    let (me, results) = sync_sites(cli, &repo, &req).await?;
    let failed = results.iter().any(|r| r.error.is_some());
    if cli.json {
        output::json_line(&serde_json::json!({
            "message_type": "summary",
            "primary": me.name,
            "epoch": me.epoch,
            "dry_run": a.dry_run,
            "sites": results,
            "total_duration": output::seconds_since(started),
        }))?;
    } else if !cli.quiet {
        crate::say!(
            "{:<16} {:>8} {:>12} {:>8} {:>10} {:>12}",
            "site",
            "missing",
            "lag before",
            "copied",
            "written",
            "lag after"
        )?;
        for r in &results {
            let secs = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.0} s"));
            crate::say!(
                "{:<16} {:>8} {:>12} {:>8} {:>10} {:>12}{}",
                r.site,
                r.missing_before,
                secs(r.lag_seconds_before),
                r.snapshots_copied,
                output::bytes(r.bytes_written),
                secs(r.lag_seconds_after),
                r.error
                    .as_ref()
                    .map_or(String::new(), |e| format!("  error: {e}"))
            )?;
        }
    }
    if !cli.json {
        for r in results.iter().filter(|r| !r.missing_at_primary.is_empty()) {
            eprintln!(
                "warning: {} snapshot(s) that this primary held at an earlier sync are missing \
                 here without a forget record (deleted without the repository's keys?); site {} \
                 keeps them{}: {}",
                r.missing_at_primary.len(),
                r.site,
                if r.snapshots_copied_back > 0 {
                    format!(", and {} were copied back here", r.snapshots_copied_back)
                } else {
                    " (`zaibei sync --copy-back` copies them back here)".to_owned()
                },
                r.missing_at_primary.join(", ")
            );
        }
    }
    Ok(if failed { exit::PARTIAL } else { exit::OK })
}
