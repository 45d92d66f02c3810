//! `zaibei site`: the set of disaster-recovery sites a repository belongs to.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use zaibei_format::{SitePeer, SiteRecord};
use zaibei_repo::Repository;
use zaibei_repo::site::{self, PeerAnswer, fencing_verdict};

use crate::sites::open_peers;
use crate::{Cli, exit, output, sites};

/// Manage the sites of a repository: one primary that takes backups and alone may delete, and
/// replicas kept current by `zaibei sync`, any of which `zaibei failover` can promote.
///
/// A typical set-up, at the primary's host:
///
///   zaibei -r /srv/zaibei site init --name beijing
///   zaibei -r s3:https://oss.example/dr/zaibei init --from /srv/zaibei
///   zaibei -r /srv/zaibei site add --name shanghai s3:https://oss.example/dr/zaibei
///   zaibei -r /srv/zaibei sync
#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Show this site, the others, their roles, epochs and how far behind each one is.
    Show,
    /// Make this repository the primary of a new set of sites.
    Init(InitArgs),
    /// Add a replica (a repository created with `zaibei init --from` this one) to the set.
    Add(AddArgs),
    /// Drop a site from the set (at the primary), e.g. one that is gone for good.
    Remove(RemoveArgs),
}

/// `site init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// This site's name (1 to 64 of A-Z a-z 0-9 - _ .).
    #[arg(long)]
    pub name: String,
}

/// `site add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The new site's name.
    #[arg(long)]
    pub name: String,
    /// Where its repository lives.
    pub location: String,
}

/// `site remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The site to drop.
    pub name: String,
    /// Confirm that the site is gone for good. Dropping a site ends the fencing it provides:
    /// if it was promoted by a failover this site never saw, its data is no longer protected
    /// from deletions here.
    #[arg(long)]
    pub gone_for_good: bool,
}

#[derive(Serialize)]
struct SiteView {
    name: String,
    location: String,
    reachable: bool,
    error: Option<String>,
    role: Option<&'static str>,
    epoch: Option<u64>,
    primary: Option<String>,
    snapshots: Option<usize>,
    newest_snapshot: Option<String>,
}

/// The site record of `repo`, or a usage error saying it has none.
pub async fn record_of(repo: &Repository) -> Result<SiteRecord> {
    match repo.site_state().await?.record {
        Some(r) => Ok(r),
        None => bail!(exit::WithCode(
            exit::USAGE,
            "this repository belongs to no set of sites (see `zaibei site init --help`)".into()
        )),
    }
}

async fn view(
    name: &str,
    location: &str,
    repo: Option<&Repository>,
    answer: PeerAnswer,
) -> SiteView {
    let mut v = SiteView {
        name: name.to_owned(),
        location: location.to_owned(),
        reachable: false,
        error: None,
        role: None,
        epoch: None,
        primary: None,
        snapshots: None,
        newest_snapshot: None,
    };
    match answer {
        PeerAnswer::Unreachable(why) => v.error = Some(why),
        PeerAnswer::Reached(record) => {
            v.reachable = true;
            if let Some(r) = record {
                v.role = Some(r.role.name());
                v.epoch = Some(r.epoch);
                v.primary = Some(r.primary);
            }
            if let Some(repo) = repo {
                match repo.list_snapshots().await {
                    Ok(list) => {
                        v.snapshots = Some(list.snapshots.len());
                        v.newest_snapshot =
                            list.snapshots.last().map(|(_, s)| output::time(s.time));
                    }
                    Err(e) => v.error = Some(e.to_string()),
                }
            }
        }
    }
    v
}

pub async fn run(cli: &Cli, cmd: &SiteCommand) -> Result<u8> {
    let repo = crate::repo::open(cli).await?;
    match cmd {
        SiteCommand::Init(a) => {
            let r = site::create_set(&repo, &a.name).await?;
            if cli.json {
                output::json_line(&serde_json::json!({
                    "message_type": "site", "name": r.name, "role": r.role.name(), "epoch": r.epoch
                }))?;
            } else if !cli.quiet {
                crate::say!(
                    "this repository is now site {}, the primary (epoch {})",
                    r.name,
                    r.epoch
                )?;
            }
        }
        SiteCommand::Add(a) => {
            let me = record_of(&repo).await?;
            let location = sites::canonical_location(&a.location)?;
            let replica = sites::open_peer(cli, &location, &repo).await?;
            let others = open_peers(cli, &repo, &me).await;
            let own = sites::own_location(cli)?;
            let peer = SitePeer {
                name: a.name.clone(),
                location: location.clone(),
            };
            let r = site::add_replica(&repo, &own, peer, &replica, &others).await?;
            if cli.json {
                output::json_line(&serde_json::json!({
                    "message_type": "site_added", "name": a.name, "location": location,
                    "primary": r.name, "epoch": r.epoch
                }))?;
            } else if !cli.quiet {
                crate::say!(
                    "site {} ({location}) is now a replica of {}; run `zaibei sync` to copy the snapshots",
                    a.name,
                    r.name
                )?;
            }
        }
        SiteCommand::Remove(a) => {
            if !a.gone_for_good {
                bail!(exit::WithCode(
                    exit::USAGE,
                    format!(
                        "dropping site {} ends the fencing that protects it; if it is gone for \
                         good, say so with --gone-for-good",
                        a.name
                    )
                ));
            }
            // Every site must agree that this one is the primary; the one dropped may be
            // unreachable (it is gone), but if it answers, it must not be ahead.
            let state = repo.site_state().await?;
            let answers = sites::ask_peers(cli, &repo, &state).await;
            let (dropped, staying): (Vec<_>, Vec<_>) =
                answers.into_iter().partition(|(p, _)| p.name == a.name);
            let mut without = state.clone();
            if let Some(r) = without.record.as_mut() {
                r.peers.retain(|p| p.name != a.name);
            }
            let dropped_ok = match dropped.first() {
                Some((p, PeerAnswer::Reached(Some(theirs)))) => {
                    let me = without.record.as_ref();
                    let ahead = me.is_some_and(|m| {
                        theirs.epoch > m.epoch
                            || (theirs.role == zaibei_format::SiteRole::Primary
                                && theirs.name != m.name)
                    });
                    if ahead {
                        Err(format!(
                            "site {} at {} records epoch {} with {} as the primary: this site \
                             was failed over from and may not drop it",
                            p.name, p.location, theirs.epoch, theirs.primary
                        ))
                    } else {
                        Ok(())
                    }
                }
                _ => Ok(()),
            };
            if let Err(e) = dropped_ok
                .map_err(zaibei_repo::RepoError::Refused)
                .and_then(|()| fencing_verdict(&without, &staying))
            {
                bail!(exit::WithCode(
                    exit::FENCED,
                    format!("removing site {} refused: {e}", a.name)
                ));
            }
            let r = site::remove_peer(&repo, &a.name).await?;
            if !cli.quiet && !cli.json {
                crate::say!("site {} left the set of {}", a.name, r.name)?;
            }
        }
        SiteCommand::Show => {
            let me = record_of(&repo).await?;
            let peers = open_peers(cli, &repo, &me).await;
            let own = sites::own_location(cli)?;
            let mut views = vec![
                view(
                    &me.name,
                    &own,
                    Some(&repo),
                    PeerAnswer::Reached(Some(me.clone())),
                )
                .await,
            ];
            for p in &peers {
                let answer = match &p.repo {
                    Ok(r) => match r.site_state().await {
                        Ok(s) => PeerAnswer::Reached(s.record),
                        Err(e) => PeerAnswer::Unreachable(e.to_string()),
                    },
                    Err(why) => PeerAnswer::Unreachable(why.clone()),
                };
                views
                    .push(view(&p.peer.name, &p.peer.location, p.repo.as_ref().ok(), answer).await);
            }
            if cli.json {
                output::json_pretty(&views)?;
            } else {
                crate::say!(
                    "{:<16} {:<8} {:>5} {:<16} {:>9}  {:<20} location",
                    "site",
                    "role",
                    "epoch",
                    "primary",
                    "snapshots",
                    "newest"
                )?;
                for v in &views {
                    crate::say!(
                        "{:<16} {:<8} {:>5} {:<16} {:>9}  {:<20} {}{}",
                        v.name,
                        v.role.unwrap_or("?"),
                        v.epoch.map_or("?".into(), |e| e.to_string()),
                        v.primary.as_deref().unwrap_or("?"),
                        v.snapshots.map_or("?".into(), |n| n.to_string()),
                        v.newest_snapshot.as_deref().unwrap_or("-"),
                        v.location,
                        v.error
                            .as_ref()
                            .map_or(String::new(), |e| format!("  (unreachable: {e})"))
                    )?;
                }
            }
        }
    }
    Ok(exit::OK)
}
