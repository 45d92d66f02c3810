//! Forget records ("tombstones"): the `forgotten` state (docs/FORMAT.md §13.1).
//!
//! Every forget through [`Repository::forget_snapshots`] first publishes the next generation of
//! the `forgotten` state, naming the snapshots about to be deleted and the site and epoch that
//! forgot them, and only then deletes the snapshot objects. State objects are sealed with the
//! maintenance key, so the record cannot be forged, altered or moved between sites by someone
//! who holds only storage credentials. A replica carries over only the forgets that such a
//! record of its current primary names (see [`super::mirror_forgets`]); a snapshot that merely
//! disappeared at the primary is never taken for a forget.
//!
//! A crash between the publication and the deletions leaves a record naming snapshots that
//! still exist: harmless, because a replica deletes a snapshot only when the primary no longer
//! holds it, and running the forget again deletes them (its record merges with the old one).
//!
//! Each generation repeats every entry of the one before it: the state grows by about 34 bytes
//! per forgotten snapshot and is rewritten whole by every forget. Writers keep the newest two
//! generations. Nothing is compacted yet.

use zaibei_format::{ForgottenRecord, Id, Timestamp};

use crate::{RepoError, Repository, Result, StateHead, names};

/// State kind of the forget records.
pub const FORGOTTEN: &str = "forgotten";

/// The latest `forgotten` state.
#[derive(Debug, Clone)]
pub struct ForgottenState {
    /// The state generation read (generation 0: nothing was ever forgotten with a record).
    pub head: StateHead,
    /// Its record (empty for generation 0).
    pub record: ForgottenRecord,
}

fn object_name(head: &StateHead) -> String {
    match &head.id {
        Some(id) => format!("{}/{FORGOTTEN}/{:016x}-{id}", names::STATE, head.generation),
        None => format!("{}/{FORGOTTEN}", names::STATE),
    }
}

fn decode(head: StateHead) -> Result<ForgottenState> {
    let record = match &head.object {
        Some(obj) => ForgottenRecord::from_value(obj.body.clone())
            .map_err(|e| RepoError::format(object_name(&head), e))?,
        None => ForgottenRecord::default(),
    };
    Ok(ForgottenState { head, record })
}

impl Repository {
    /// The newest readable `forgotten` state; unreadable newer generations are skipped with a
    /// warning. For writers: building on an older generation only loses forget records, which
    /// makes replicas keep more, never less.
    pub async fn forgotten_state(&self) -> Result<ForgottenState> {
        decode(self.read_state(FORGOTTEN).await?)
    }

    /// The newest listed `forgotten` state, which must be valid: an object there that cannot
    /// be read or opened (damaged, or written by someone without the repository's keys) fails
    /// with an error naming it. For replicas, which delete on the authority of this record.
    pub async fn forgotten_state_strict(&self) -> Result<ForgottenState> {
        let head = self
            .read_newest_state(FORGOTTEN)
            .await
            .map_err(|e| match e {
                RepoError::Format { object, source } => RepoError::Refused(format!(
                    "forget record {object} is not valid ({source}): it is damaged, or was \
                     written by someone without the repository's keys; no forget is carried \
                     over to the replicas (and nothing is deleted there) until it is removed \
                     or a new forget at the primary supersedes it"
                )),
                other => other,
            })?;
        decode(head)
    }

    /// Publishes the next generation of the `forgotten` state with `ids` added under this
    /// repository's site name and epoch (none outside a set of sites). Call before deleting
    /// the snapshot objects.
    pub async fn record_forgets(&self, ids: &[Id]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let site = self.site_state().await?;
        let (name, epoch) = match &site.record {
            Some(r) => (Some(r.name.as_str()), r.epoch),
            None => (None, 0),
        };
        let state = self.forgotten_state().await?;
        if state.head.newest_listed > state.head.generation {
            tracing::warn!(
                "{FORGOTTEN} state generation {} cannot be read; the next generation builds on \
                 generation {}, so replicas may keep snapshots forgotten before",
                state.head.newest_listed,
                state.head.generation
            );
        }
        let mut record = state.record.clone();
        record.add(name, epoch, Timestamp::now(), ids);
        let head = self
            .publish_state(FORGOTTEN, &state.head, record.to_value())
            .await?;
        // Keep the generation before too: a replica's sync that listed it may be reading it.
        if let Err(e) = self
            .delete_old_states(FORGOTTEN, head.generation.saturating_sub(1))
            .await
        {
            tracing::warn!("older {FORGOTTEN} states not deleted: {e}");
        }
        Ok(())
    }
}
