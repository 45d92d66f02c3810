//! Carrying the primary's forgets to a replica (state kinds `forgotten` and `synced`,
//! docs/FORMAT.md §13 and §13.1).
//!
//! A replica forgets a snapshot only on the authority of a forget record of its primary: the
//! primary's `forgotten` state, sealed with the maintenance key, must name it under the
//! primary's site name at an epoch not above the primary's current one, and the primary must
//! no longer hold it. A snapshot that merely disappeared at the primary (its object deleted by
//! someone with storage credentials only, a lifecycle rule, a store rolled back) is kept at
//! the replica and reported, sync after sync, until a forget record names it or it is copied
//! back.

use std::collections::BTreeSet;

use zaibei_format::{Id, SiteRecord, SyncedRecord};

use crate::index::IdSet;
use crate::{RepoError, Repository, Result};

/// State kind recording what the primary held at the last sync of a replica.
pub const SYNCED: &str = "synced";

/// What carrying forgets over to one replica did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorReport {
    /// Snapshots forgotten at the replica: the primary's forget records name them.
    pub forgotten: Vec<Id>,
    /// Snapshots the primary held at an earlier sync and lacks now without a forget record
    /// naming them: they vanished there (deleted without the repository's keys, a lifecycle
    /// rule, a store rolled back...). Kept at the replica, and reported again at every sync
    /// until a forget at the primary names them or they are copied back.
    pub missing_at_primary: Vec<Id>,
}

/// Carries the forgets of the primary `primary` (whose record is `me`) over to `replica`:
/// forgets there every snapshot that `primary`'s forget records (state `forgotten`) name
/// under `me`'s name at an epoch not above `me`'s, that the primary no longer holds (`held`:
/// the ids of every snapshot object it lists now, readable or not) and that the replica
/// holds. Then records `held`, with the snapshots that vanished at the primary without a
/// forget record, as the replica's `synced` state. Snapshots taken at the replica itself are
/// never named by the primary's records and are left alone. The caller must have proved that
/// `me` is the current primary (fencing).
///
/// Fails, deleting nothing, when the newest forget record listed at the primary cannot be
/// read or opened (the error names it), or when the replica's `synced` state cannot be read.
pub async fn mirror_forgets(
    primary: &Repository,
    me: &SiteRecord,
    held: &[Id],
    replica: &Repository,
) -> Result<MirrorReport> {
    let head = replica.read_state(SYNCED).await?;
    if head.newest_listed > head.generation {
        return Err(RepoError::Refused(format!(
            "the replica's {SYNCED} state generation {} cannot be read; forgets are not carried \
             over until `zaibei check` there finds why",
            head.newest_listed
        )));
    }
    let previous = match &head.object {
        Some(obj) => Some(SyncedRecord::from_value(obj.body.clone()).map_err(|e| {
            RepoError::format(format!("state/{SYNCED}/{:016x}", head.generation), e)
        })?),
        None => None,
    };
    // Only forgets this primary recorded, at an epoch it has held: a record of another site
    // (sites share keys, so one could be copied here) or of a later epoch says nothing about
    // what this primary decided.
    let tombstones: BTreeSet<Id> = primary
        .forgotten_state_strict()
        .await?
        .record
        .forgotten_by(&me.name, me.epoch);
    let now: IdSet = held.iter().copied().collect();
    let there: IdSet = replica.snapshot_ids().await?.into_iter().collect();
    let mut report = MirrorReport::default();
    let doomed: Vec<Id> = tombstones
        .iter()
        .filter(|id| !now.contains(*id) && there.contains(*id))
        .copied()
        .collect();
    // Snapshots this same primary held at an earlier sync (or had already lost then) that it
    // lacks now and never recorded a forget of. A record of another primary (written before
    // a failover or failback) lists snapshots this one may never have held: nothing vanished.
    if let Some(prev) = previous.filter(|p| p.primary == me.name && p.epoch <= me.epoch) {
        report.missing_at_primary = prev
            .snapshots
            .iter()
            .filter(|id| !now.contains(*id) && !tombstones.contains(*id) && there.contains(*id))
            .copied()
            .collect();
    }
    if !report.missing_at_primary.is_empty() {
        tracing::warn!(
            "{} snapshot(s) that the primary {} held at an earlier sync are missing there \
             without a forget record; the replica keeps them: {}",
            report.missing_at_primary.len(),
            me.name,
            report
                .missing_at_primary
                .iter()
                .map(Id::to_hex)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The replica records its own forgets as well (under its own name), so that if it is
    // promoted later, the sites it then syncs learn of them.
    replica.forget_snapshots(&doomed).await?;
    report.forgotten = doomed;
    let mut listed: Vec<Id> = held.to_vec();
    listed.extend_from_slice(&report.missing_at_primary);
    let record = SyncedRecord {
        primary: me.name.clone(),
        epoch: me.epoch,
        snapshots: listed,
    };
    let head = replica
        .publish_state(SYNCED, &head, record.to_value())
        .await?;
    if let Err(e) = replica.delete_old_states(SYNCED, head.generation).await {
        tracing::warn!("older {SYNCED} states not deleted: {e}");
    }
    Ok(report)
}
