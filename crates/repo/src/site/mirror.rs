//! Carrying the primary's forgets to a replica (state kind `synced`, docs/FORMAT.md §13).

use zaibei_format::{Id, SiteRecord, SyncedRecord};

use crate::index::IdSet;
use crate::{RepoError, Repository, Result};

/// State kind recording what the primary held at the last sync of a replica.
pub const SYNCED: &str = "synced";

/// Forgets at `replica` every snapshot that the primary `me` held at its last sync there (at
/// the same epoch) and holds no more (`held`: the ids of every snapshot object the primary
/// lists now, readable or not), then records `held` for the next sync. Snapshots taken at the
/// replica itself were never listed and are left alone. The caller must have proved that `me`
/// is the current primary (fencing). Returns the ids forgotten.
pub async fn mirror_forgets(me: &SiteRecord, held: &[Id], replica: &Repository) -> Result<Vec<Id>> {
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
    let now: IdSet = held.iter().copied().collect();
    let mut forgotten = Vec::new();
    // Only a record this same primary wrote says what it forgot since: a snapshot it listed
    // then and lacks now was forgotten here (it cannot lose one otherwise, and a failback
    // merged in whatever the other side held). A record of another primary (written before a
    // failover or failback) lists snapshots this one may never have held, and those stay.
    if let Some(prev) = previous.filter(|p| p.primary == me.name && p.epoch <= me.epoch) {
        let there: IdSet = replica.snapshot_ids().await?.into_iter().collect();
        for id in prev.snapshots {
            if !now.contains(&id) && there.contains(&id) {
                replica.forget_snapshot(&id).await?;
                forgotten.push(id);
            }
        }
    }
    let record = SyncedRecord {
        primary: me.name.clone(),
        epoch: me.epoch,
        snapshots: held.to_vec(),
    };
    let head = replica
        .publish_state(SYNCED, &head, record.to_value())
        .await?;
    if let Err(e) = replica.delete_old_states(SYNCED, head.generation).await {
        tracing::warn!("older {SYNCED} states not deleted: {e}");
    }
    Ok(forgotten)
}
