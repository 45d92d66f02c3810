//! Changing site roles: creating a set, adding a replica, and taking the primary role
//! (failover at a replica, the last step of a failback at an old primary).
//!
//! Every change publishes new generations of the `site` state. A change of primary raises the
//! epoch and demotes the sites that can be reached before it promotes the new primary, so at
//! no instant do two reachable sites both hold the primary role at the highest epoch.

use zaibei_format::site::{SiteRecord, check_site_name};
use zaibei_format::{SitePeer, SiteRole};

use super::SiteState;
use crate::{RepoError, Repository, Result};

/// Another site as the caller opened it (with this repository's keys), or why it could not.
#[derive(Debug)]
pub struct PeerRepo {
    /// The site.
    pub peer: SitePeer,
    /// Its repository, or the reason it cannot be reached.
    pub repo: std::result::Result<Repository, String>,
}

/// What a change of primary did.
#[derive(Debug, Clone)]
pub struct RoleChange {
    /// The new primary's record.
    pub record: SiteRecord,
    /// Sites whose state now names the new primary.
    pub updated: Vec<String>,
    /// Sites that could not be reached; they learn of the change when they are next reached
    /// (and, meanwhile, cannot delete).
    pub unreachable: Vec<(String, String)>,
}

fn refused(msg: String) -> RepoError {
    RepoError::Refused(msg)
}

/// Refuses to change roles while a newer `site` generation is listed than could be read.
fn refuse_unreadable(state: &SiteState) -> Result<()> {
    if state.newer_unreadable() {
        return Err(refused(format!(
            "site state generation {} cannot be read, so the role is unknown; run `zaibei check`",
            state.head.newest_listed
        )));
    }
    Ok(())
}

/// Makes `local`, which belongs to no set yet, the primary of a new set at epoch 1.
pub async fn create_set(local: &Repository, name: &str) -> Result<SiteRecord> {
    check_site_name(name).map_err(|e| RepoError::format("site name", e))?;
    let state = local.site_state().await?;
    refuse_unreadable(&state)?;
    if let Some(r) = &state.record {
        return Err(refused(format!(
            "this repository is already site {} ({}, epoch {})",
            r.name,
            r.role.name(),
            r.epoch
        )));
    }
    let record = SiteRecord {
        name: name.to_owned(),
        role: SiteRole::Primary,
        epoch: 1,
        primary: name.to_owned(),
        peers: Vec::new(),
    };
    local.publish_site(&state, &record).await?;
    Ok(record)
}

/// Adds the repository `replica` (which must share key material with `local` and belong to
/// no set) as replica `new` of the set whose primary is `local`, reached by the others at
/// `local_location`. The other replicas (`others`) learn of it when they can be reached.
pub async fn add_replica(
    local: &Repository,
    local_location: &str,
    new: SitePeer,
    replica: &Repository,
    others: &[PeerRepo],
) -> Result<SiteRecord> {
    check_site_name(&new.name).map_err(|e| RepoError::format("site name", e))?;
    let state = local.site_state().await?;
    refuse_unreadable(&state)?;
    let Some(mut me) = state.record.clone() else {
        return Err(refused(
            "this repository belongs to no set of sites: make it the primary of one with \
             `zaibei site init --name NAME` first"
                .into(),
        ));
    };
    if me.role != SiteRole::Primary {
        return Err(refused(format!(
            "replicas are added at the primary; this is site {}, a replica of {}",
            me.name, me.primary
        )));
    }
    if new.name == me.name || me.peer(&new.name).is_some() {
        return Err(refused(format!(
            "the set already has a site named {}",
            new.name
        )));
    }
    if !replica.shares_keys_with(local) {
        return Err(refused(format!(
            "the repository at {} does not share key material with this one: create it with \
             `zaibei init --from`",
            new.location
        )));
    }
    if replica.config().id == local.config().id {
        return Err(refused(format!(
            "{} is this repository itself, not a replica",
            new.location
        )));
    }
    let theirs = replica.site_state().await?;
    refuse_unreadable(&theirs)?;
    let mut their_peers: Vec<SitePeer> = me.peers.clone();
    their_peers.push(SitePeer {
        name: me.name.clone(),
        location: local_location.to_owned(),
    });
    let record = SiteRecord {
        name: new.name.clone(),
        role: SiteRole::Replica,
        epoch: me.epoch,
        primary: me.name.clone(),
        peers: their_peers,
    };
    match &theirs.record {
        // An earlier `site add` that stopped after this step: finish it.
        Some(r) if *r == record => {}
        Some(r) => {
            return Err(refused(format!(
                "the repository at {} is already site {} of a set",
                new.location, r.name
            )));
        }
        None => {
            replica.publish_site(&theirs, &record).await?;
        }
    }
    me.peers.push(new.clone());
    local.publish_site(&state, &me).await?;
    for other in others {
        let Ok(repo) = &other.repo else { continue };
        if let Err(e) = add_peer_to(repo, &new).await {
            tracing::warn!(
                "site {} does not know of {} yet: {e}",
                other.peer.name,
                new.name
            );
        }
    }
    Ok(me)
}

/// Adds `peer` to the peers that the repository `repo` records.
async fn add_peer_to(repo: &Repository, peer: &SitePeer) -> Result<()> {
    let state = repo.site_state().await?;
    let Some(mut r) = state.record.clone() else {
        return Ok(());
    };
    if r.name == peer.name || r.peer(&peer.name).is_some() {
        return Ok(());
    }
    r.peers.push(peer.clone());
    repo.publish_site(&state, &r).await?;
    Ok(())
}

/// Drops the site `name` from the set as `local` (the primary) records it. The dropped site
/// is not contacted: it may be gone for good.
pub async fn remove_peer(local: &Repository, name: &str) -> Result<SiteRecord> {
    let state = local.site_state().await?;
    refuse_unreadable(&state)?;
    let Some(mut me) = state.record.clone() else {
        return Err(refused("this repository belongs to no set of sites".into()));
    };
    if me.role != SiteRole::Primary {
        return Err(refused(format!(
            "sites are removed at the primary; this is site {}, a replica of {}",
            me.name, me.primary
        )));
    }
    if me.peer(name).is_none() {
        return Err(refused(format!("the set has no site named {name}")));
    }
    me.peers.retain(|p| p.name != name);
    local.publish_site(&state, &me).await?;
    Ok(me)
}

/// Makes `local` the primary at an epoch above every epoch known: every site in `peers` that
/// can be reached is first recorded as a replica of `local` at the new epoch, then `local` as
/// the primary. With `need_primary_reachable`, refuses when the site that holds the primary
/// role now cannot be reached (failback needs it, to merge; failover does not).
pub async fn become_primary(
    local: &Repository,
    peers: &[PeerRepo],
    need_primary_reachable: bool,
) -> Result<RoleChange> {
    let state: SiteState = local.site_state().await?;
    refuse_unreadable(&state)?;
    let Some(me) = state.record.clone() else {
        return Err(refused("this repository belongs to no set of sites".into()));
    };
    let mut reached = Vec::new();
    let mut unreachable = Vec::new();
    for p in peers {
        match &p.repo {
            Ok(repo) => match repo.site_state().await {
                Ok(s) if s.newer_unreadable() => unreachable.push((
                    p.peer.name.clone(),
                    format!("site state generation {} unreadable", s.head.newest_listed),
                )),
                Ok(s) => reached.push((p, repo, s)),
                Err(e) => unreachable.push((p.peer.name.clone(), e.to_string())),
            },
            Err(why) => unreachable.push((p.peer.name.clone(), why.clone())),
        }
    }
    let epoch = reached
        .iter()
        .filter_map(|(_, _, s)| s.record.as_ref().map(|r| r.epoch))
        .fold(me.epoch, u64::max);
    let current = reached
        .iter()
        .filter_map(|(_, _, s)| s.record.as_ref())
        .filter(|r| r.role == SiteRole::Primary)
        .max_by_key(|r| r.epoch)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| me.primary.clone());
    if me.role == SiteRole::Primary && current == me.name && epoch == me.epoch {
        return Err(refused(format!(
            "site {} is already the primary at the highest epoch ({epoch})",
            me.name
        )));
    }
    if need_primary_reachable
        && current != me.name
        && !reached.iter().any(|(p, _, _)| p.peer.name == current)
    {
        return Err(refused(format!(
            "the current primary, site {current}, cannot be reached; failback merges with it \
             and needs it (use `zaibei failover` to take over without it)"
        )));
    }
    let new_epoch = epoch
        .checked_add(1)
        .ok_or_else(|| refused("the fencing epoch cannot grow any more".into()))?;
    // Every check before the first write, so that a refusal changes nothing.
    let mut demotions = Vec::new();
    for (p, repo, s) in &reached {
        let Some(theirs) = &s.record else {
            unreachable.push((
                p.peer.name.clone(),
                "its repository records no site role".into(),
            ));
            continue;
        };
        if theirs.name != p.peer.name || theirs.peer(&me.name).is_none() {
            return Err(refused(format!(
                "the repository listed as site {} calls itself {} and lists {} among its \
                 peers: the sets disagree; nothing was changed",
                p.peer.name,
                theirs.name,
                theirs
                    .peers
                    .iter()
                    .map(|x| x.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let demoted = SiteRecord {
            role: SiteRole::Replica,
            epoch: new_epoch,
            primary: me.name.clone(),
            ..theirs.clone()
        };
        demotions.push((*repo, s, demoted));
    }
    let mut updated = Vec::new();
    for (repo, s, demoted) in demotions {
        repo.publish_site(s, &demoted).await?;
        updated.push(demoted.name);
    }
    let record = SiteRecord {
        role: SiteRole::Primary,
        epoch: new_epoch,
        primary: me.name.clone(),
        ..me
    };
    local.publish_site(&state, &record).await?;
    Ok(RoleChange {
        record,
        updated,
        unreachable,
    })
}

/// Makes the replica `repo` record `primary` (the caller's record, which must hold the primary
/// role) as its primary at `primary`'s epoch, when it records an older epoch. A replica that
/// records a higher epoch, or none, is left alone and reported. Returns true when its record
/// changed.
pub async fn align_replica(primary: &SiteRecord, name: &str, repo: &Repository) -> Result<bool> {
    let state = repo.site_state().await?;
    refuse_unreadable(&state)?;
    let Some(theirs) = state.record.clone() else {
        return Err(refused(format!(
            "the repository of site {name} records no site role"
        )));
    };
    if theirs.name != name {
        return Err(refused(format!(
            "the repository listed as site {name} calls itself {}",
            theirs.name
        )));
    }
    if theirs.epoch > primary.epoch {
        return Err(refused(format!(
            "site {name} records epoch {}, later than this primary's {}: this site was failed \
             over from; run `zaibei failback` here",
            theirs.epoch, primary.epoch
        )));
    }
    if theirs.epoch == primary.epoch && theirs.primary == primary.name {
        return Ok(false);
    }
    let aligned = SiteRecord {
        role: SiteRole::Replica,
        epoch: primary.epoch,
        primary: primary.name.clone(),
        ..theirs
    };
    repo.publish_site(&state, &aligned).await?;
    Ok(true)
}
