//! Site roles and fencing (docs/FORMAT.md §13, kind `site`): which repository of a set of
//! disaster-recovery sites is the primary, at which epoch, and whether a repository may delete.
//!
//! **The fencing rule.** Deleting (forget, prune, key removal) is allowed in a repository that
//! belongs to a set of sites only when it is the primary, its own site state can be read, every
//! other site can be reached, and none of them records a higher epoch (or another primary at
//! the same epoch). Failover at a replica raises the epoch there; an old primary cut off from
//! the others can then neither learn that it was demoted nor prove that it was not, and refuses
//! to delete until it can. Once it reaches the new primary it sees the higher epoch and keeps
//! refusing until a failback makes it primary again at a still higher epoch. So a demoted or
//! partitioned old primary can never delete what the new primary relies on. Adding data is
//! never fenced: snapshots are immutable, and backups taken at both sides during a partition
//! are merged by failback.

mod forgotten;
mod mirror;
mod roles;

use zaibei_format::site::SiteRecord;
use zaibei_format::{SitePeer, SiteRole};

use crate::{RepoError, Repository, Result, StateHead};

pub use forgotten::{FORGOTTEN, ForgottenState};
pub use mirror::{MirrorReport, SYNCED, mirror_forgets};
pub use roles::{
    PeerRepo, RoleChange, add_replica, align_replica, become_primary, create_set, remove_peer,
};

/// State kind of a repository's site role.
pub const SITE: &str = "site";

/// The latest `site` state of a repository.
#[derive(Debug, Clone)]
pub struct SiteState {
    /// The state generation read (generation 0: the repository belongs to no set of sites).
    pub head: StateHead,
    /// The record, when there is one.
    pub record: Option<SiteRecord>,
}

impl SiteState {
    /// True when a newer generation is listed than could be read: the role is unknown.
    pub fn newer_unreadable(&self) -> bool {
        self.head.newest_listed > self.head.generation
    }
}

/// What asking another site for its state gave.
#[derive(Debug, Clone)]
pub enum PeerAnswer {
    /// Its site state (`None`: the repository there belongs to no set).
    Reached(Option<SiteRecord>),
    /// It could not be reached or read; the reason.
    Unreachable(String),
}

impl Repository {
    /// Reads the newest readable `site` state.
    pub async fn site_state(&self) -> Result<SiteState> {
        let head = self.read_state(SITE).await?;
        let record = match &head.object {
            Some(obj) => Some(SiteRecord::from_value(obj.body.clone()).map_err(|e| {
                RepoError::format(format!("state/{SITE}/{:016x}", head.generation), e)
            })?),
            None => None,
        };
        Ok(SiteState { head, record })
    }

    /// Publishes `record` as the next generation after `state` and deletes older generations.
    pub async fn publish_site(&self, state: &SiteState, record: &SiteRecord) -> Result<SiteState> {
        let head = self
            .publish_state(SITE, &state.head, record.to_value())
            .await?;
        if let Err(e) = self.delete_old_states(SITE, head.generation).await {
            tracing::warn!("older site states not deleted: {e}");
        }
        Ok(SiteState {
            head,
            record: Some(record.clone()),
        })
    }
}

/// Decides whether the repository whose site state is `own` may delete, given what every peer
/// it lists answered (see the module docs). `Ok` for a repository in no set of sites.
pub fn fencing_verdict(own: &SiteState, peers: &[(SitePeer, PeerAnswer)]) -> Result<()> {
    if own.newer_unreadable() {
        return Err(RepoError::Refused(format!(
            "site state generation {} cannot be read, so this repository's role is unknown; \
             nothing is deleted until `zaibei check` finds why",
            own.head.newest_listed
        )));
    }
    let Some(me) = &own.record else {
        return Ok(());
    };
    if me.role != SiteRole::Primary {
        return Err(RepoError::Refused(format!(
            "site {} is a replica of {} (epoch {}): snapshots are forgotten and data is pruned \
             at the primary only (`zaibei sync` carries forgets to the replicas)",
            me.name, me.primary, me.epoch
        )));
    }
    for peer in &me.peers {
        let answer = peers
            .iter()
            .find(|(p, _)| p.name == peer.name)
            .map(|(_, a)| a);
        match answer {
            None | Some(PeerAnswer::Unreachable(_)) => {
                let why = match answer {
                    Some(PeerAnswer::Unreachable(why)) => why.as_str(),
                    _ => "not asked",
                };
                return Err(RepoError::Refused(format!(
                    "site {} at {} cannot be reached ({why}), so site {} cannot prove it is \
                     still the primary: a failover there may have replaced it. Nothing is \
                     deleted until every site answers",
                    peer.name, peer.location, me.name
                )));
            }
            Some(PeerAnswer::Reached(None)) => {
                return Err(RepoError::Refused(format!(
                    "the repository of site {} at {} records no site role: it is not part of \
                     this set any more (or was replaced); fix the set with `zaibei site` first",
                    peer.name, peer.location
                )));
            }
            Some(PeerAnswer::Reached(Some(theirs))) => {
                if theirs.name != peer.name {
                    return Err(RepoError::Refused(format!(
                        "the repository at {} calls itself site {}, not {}: the set's \
                         locations are wrong (a local path may name another repository on \
                         this host)",
                        peer.location, theirs.name, peer.name
                    )));
                }
                if theirs.epoch > me.epoch {
                    return Err(RepoError::Refused(format!(
                        "site {} records epoch {} with {} as the primary, later than this \
                         site's epoch {}: site {} was failed over from and may not delete. \
                         Run `zaibei failback` here to merge and take the primary role back, \
                         or make it a replica",
                        theirs.name, theirs.epoch, theirs.primary, me.epoch, me.name
                    )));
                }
                if theirs.epoch == me.epoch
                    && theirs.role == SiteRole::Primary
                    && theirs.name != me.name
                {
                    return Err(RepoError::Refused(format!(
                        "sites {} and {} both claim the primary role at epoch {}; nothing is \
                         deleted until one of them fails over or back",
                        me.name, theirs.name, me.epoch
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The highest epoch among `own` and the peers that answered.
pub fn highest_epoch(own: &SiteRecord, peers: &[(SitePeer, PeerAnswer)]) -> u64 {
    peers
        .iter()
        .filter_map(|(_, a)| match a {
            PeerAnswer::Reached(Some(r)) => Some(r.epoch),
            _ => None,
        })
        .fold(own.epoch, u64::max)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(name: &str, role: SiteRole, epoch: u64, primary: &str, peers: &[&str]) -> SiteRecord {
        SiteRecord {
            name: name.into(),
            role,
            epoch,
            primary: primary.into(),
            peers: peers
                .iter()
                .map(|p| SitePeer {
                    name: (*p).into(),
                    location: format!("/srv/{p}"),
                })
                .collect(),
        }
    }

    fn state(r: Option<SiteRecord>, generation: u64, newest_listed: u64) -> SiteState {
        SiteState {
            head: StateHead {
                generation,
                id: None,
                object: None,
                newest_listed,
            },
            record: r,
        }
    }

    fn peer(name: &str) -> SitePeer {
        SitePeer {
            name: name.into(),
            location: format!("/srv/{name}"),
        }
    }

    fn refused(r: Result<()>, words: &str) {
        match r {
            Err(RepoError::Refused(m)) => assert!(m.contains(words), "{m}"),
            other => panic!("expected a refusal with {words:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_standalone_repository_may_delete() {
        fencing_verdict(&state(None, 0, 0), &[]).unwrap();
    }

    #[test]
    fn the_primary_may_delete_when_every_peer_agrees() {
        let a = record("a", SiteRole::Primary, 2, "a", &["b", "c"]);
        let b = record("b", SiteRole::Replica, 2, "a", &["a", "c"]);
        let c = record("c", SiteRole::Replica, 1, "a", &["a", "b"]);
        let peers = [
            (peer("b"), PeerAnswer::Reached(Some(b))),
            (peer("c"), PeerAnswer::Reached(Some(c))),
        ];
        fencing_verdict(&state(Some(a.clone()), 5, 5), &peers).unwrap();
        assert_eq!(highest_epoch(&a, &peers), 2);
    }

    #[test]
    fn an_unreachable_peer_blocks_deletion() {
        let a = record("a", SiteRole::Primary, 1, "a", &["b"]);
        let peers = [(
            peer("b"),
            PeerAnswer::Unreachable("connection refused".into()),
        )];
        refused(
            fencing_verdict(&state(Some(a.clone()), 1, 1), &peers),
            "cannot be reached",
        );
        refused(fencing_verdict(&state(Some(a), 1, 1), &[]), "not asked");
    }

    #[test]
    fn a_higher_epoch_elsewhere_fences_the_old_primary() {
        let a = record("a", SiteRole::Primary, 1, "a", &["b"]);
        let b = record("b", SiteRole::Primary, 2, "b", &["a"]);
        let peers = [(peer("b"), PeerAnswer::Reached(Some(b)))];
        refused(
            fencing_verdict(&state(Some(a), 1, 1), &peers),
            "failed over from",
        );
    }

    #[test]
    fn a_peer_answering_with_another_name_blocks_deletion() {
        let a = record("a", SiteRole::Primary, 1, "a", &["b"]);
        let peers = [(peer("b"), PeerAnswer::Reached(Some(a.clone())))];
        refused(
            fencing_verdict(&state(Some(a), 1, 1), &peers),
            "calls itself site a",
        );
    }

    #[test]
    fn two_primaries_at_one_epoch_block_deletion() {
        let a = record("a", SiteRole::Primary, 3, "a", &["b"]);
        let b = record("b", SiteRole::Primary, 3, "b", &["a"]);
        let peers = [(peer("b"), PeerAnswer::Reached(Some(b)))];
        refused(fencing_verdict(&state(Some(a), 1, 1), &peers), "both claim");
    }

    #[test]
    fn replicas_and_unknown_roles_may_not_delete() {
        let b = record("b", SiteRole::Replica, 1, "a", &["a"]);
        refused(fencing_verdict(&state(Some(b), 1, 1), &[]), "replica of a");
        refused(fencing_verdict(&state(None, 0, 4), &[]), "cannot be read");
        let a = record("a", SiteRole::Primary, 1, "a", &["b"]);
        let peers = [(peer("b"), PeerAnswer::Reached(None))];
        refused(
            fencing_verdict(&state(Some(a), 1, 1), &peers),
            "no site role",
        );
    }
}
