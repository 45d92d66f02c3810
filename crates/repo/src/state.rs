//! Generation-numbered state objects (docs/FORMAT.md §13) and the store's clock.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use zaibei_format::{Condemned, Id, StateObject, Timestamp};

use crate::{RepoError, Repository, Result, names};

/// State kind of the packs marked for deletion.
pub const CONDEMNED: &str = "condemned";

/// Safety margin used when no `condemned` state exists yet.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(3600);

/// One generation of a state, as read.
#[derive(Debug, Clone)]
pub struct StateHead {
    /// Its generation (0: no state object exists).
    pub generation: u64,
    /// Its object id, when one exists.
    pub id: Option<Id>,
    /// The decoded state.
    pub object: Option<StateObject>,
    /// The highest generation listed, readable or not: the next one published comes after it,
    /// so a damaged newest object never blocks publishing.
    pub newest_listed: u64,
}

/// The latest `condemned` state.
#[derive(Debug, Clone, Default)]
pub struct CondemnedState {
    /// Generation (0 when prune never marked anything).
    pub generation: u64,
    /// Id of the state object, when one exists.
    pub id: Option<Id>,
    /// The packs marked for deletion.
    pub condemned: Condemned,
    /// The highest generation listed (see [`StateHead::newest_listed`]).
    pub newest_listed: u64,
}

fn state_dir(kind: &str) -> String {
    format!("{}/{kind}", names::STATE)
}

impl Repository {
    /// Reads the newest valid generation of a state. Of two objects of the same generation the
    /// one with the smaller id wins; objects that cannot be read are skipped with a warning,
    /// unless the store is unreachable.
    pub async fn read_state(&self, kind: &str) -> Result<StateHead> {
        let mut listed: Vec<(u64, Id, String)> = self
            .store
            .list(&state_dir(kind))
            .await?
            .into_iter()
            .filter_map(|o| {
                let file = o.name.rsplit('/').next()?;
                let (g, id) = zaibei_format::state::parse_state_name(file)?;
                Some((g, id, o.name))
            })
            .collect();
        listed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let newest_listed = listed.first().map_or(0, |l| l.0);
        for (generation, id, name) in listed {
            match self.read_state_object(&name, kind, generation).await {
                Ok(obj) => {
                    return Ok(StateHead {
                        generation,
                        id: Some(id),
                        object: Some(obj),
                        newest_listed,
                    });
                }
                Err(e) if e.is_store_unreachable() => return Err(e),
                Err(e) => tracing::warn!("state object ignored: {e}"),
            }
        }
        Ok(StateHead {
            generation: 0,
            id: None,
            object: None,
            newest_listed,
        })
    }

    /// Reads the newest listed generation of a state, which must be valid: of the objects
    /// listed (newest generation first, smaller id first), the first that still exists is
    /// returned, and an error naming it when it cannot be read or opened. An object deleted
    /// since the listing (an older generation a writer removed, or a losing writer's) is
    /// skipped.
    pub(crate) async fn read_newest_state(&self, kind: &str) -> Result<StateHead> {
        let mut listed: Vec<(u64, Id, String)> = self
            .store
            .list(&state_dir(kind))
            .await?
            .into_iter()
            .filter_map(|o| {
                let file = o.name.rsplit('/').next()?;
                let (g, id) = zaibei_format::state::parse_state_name(file)?;
                Some((g, id, o.name))
            })
            .collect();
        listed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let newest_listed = listed.first().map_or(0, |l| l.0);
        for (generation, id, name) in listed {
            match self.read_state_object(&name, kind, generation).await {
                Ok(obj) => {
                    return Ok(StateHead {
                        generation,
                        id: Some(id),
                        object: Some(obj),
                        newest_listed,
                    });
                }
                Err(RepoError::Store(e)) if e.is_not_found() => continue,
                // A format error names the object; a store error names it too.
                Err(e) => return Err(e),
            }
        }
        Ok(StateHead {
            generation: 0,
            id: None,
            object: None,
            newest_listed,
        })
    }

    /// Reads, verifies and opens the state object `name`, which its name says is generation
    /// `generation` of `kind`.
    pub(crate) async fn read_state_object(
        &self,
        name: &str,
        kind: &str,
        generation: u64,
    ) -> Result<StateObject> {
        let bytes = self.get_verified(name).await?;
        let obj = StateObject::open(self.keys.maintenance(), &bytes)
            .map_err(|e| RepoError::format(name, e))?;
        if obj.kind != kind || obj.generation != generation {
            return Err(RepoError::format(
                name,
                zaibei_format::FormatError::invalid(
                    "state",
                    format!(
                        "holds generation {} of {:?}, its name says {generation} of {kind:?}",
                        obj.generation, obj.kind
                    ),
                ),
            ));
        }
        Ok(obj)
    }

    /// Publishes the generation after `head` with `body`, then lists that generation again:
    /// when another writer's object of the same generation is there too, this one lost (or
    /// both did): it deletes its own object and fails with [`RepoError::Refused`]. With a
    /// store whose listings are consistent, at most one writer of a generation goes on.
    pub async fn publish_state(
        &self,
        kind: &str,
        head: &StateHead,
        body: zaibei_format::cbor::Value,
    ) -> Result<StateHead> {
        let object = StateObject {
            kind: kind.to_owned(),
            generation: head.generation.max(head.newest_listed) + 1,
            previous: head.id,
            time: Timestamp::now(),
            body,
        };
        let bytes = object
            .seal(self.keys.maintenance())
            .map_err(|e| RepoError::format("new state object", e))?;
        let id = Id(self.suite().hash(&bytes));
        let name = object.object_name(&id);
        self.store.put(&name, Bytes::from(bytes)).await?;
        let rival = self
            .store
            .list(&state_dir(kind))
            .await?
            .into_iter()
            .filter_map(|o| {
                let file = o.name.rsplit('/').next()?.to_owned();
                zaibei_format::state::parse_state_name(&file)
            })
            .any(|(g, other)| g >= object.generation && other != id);
        if rival {
            if let Err(e) = self.store.delete(&name).await {
                tracing::warn!("losing state object {name} not deleted: {e}");
            }
            return Err(RepoError::Refused(format!(
                "another process published {kind} state generation {} at the same time \
                 (prunes, and changes of site roles, run one at a time): try again when it \
                 has finished",
                object.generation
            )));
        }
        Ok(StateHead {
            generation: object.generation,
            id: Some(id),
            newest_listed: object.generation,
            object: Some(object),
        })
    }

    /// Deletes every generation of a state older than `keep_from`.
    pub async fn delete_old_states(&self, kind: &str, keep_from: u64) -> Result<usize> {
        let mut deleted = 0;
        for o in self.store.list(&state_dir(kind)).await? {
            let Some(file) = o.name.rsplit('/').next() else {
                continue;
            };
            if let Some((g, _)) = zaibei_format::state::parse_state_name(file)
                && g < keep_from
            {
                match self.store.delete(&o.name).await {
                    Ok(()) => deleted += 1,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(deleted)
    }

    /// The latest `condemned` state (empty when prune never marked anything).
    pub async fn condemned_state(&self) -> Result<CondemnedState> {
        let head = self.read_state(CONDEMNED).await?;
        let condemned = match &head.object {
            Some(obj) => Condemned::from_value(obj.body.clone()).map_err(|e| {
                RepoError::format(
                    format!("{}/{:016x}", state_dir(CONDEMNED), head.generation),
                    e,
                )
            })?,
            None => Condemned {
                margin: DEFAULT_MARGIN.as_secs(),
                packs: Vec::new(),
            },
        };
        Ok(CondemnedState {
            generation: head.generation,
            id: head.id,
            condemned,
            newest_listed: head.newest_listed,
        })
    }

    /// The store's current time in Unix seconds: the modification time the store gives a
    /// marker object written for the purpose (which is then deleted). Never the client's clock.
    pub async fn store_time(&self) -> Result<u64> {
        let salt: [u8; 16] = zaibei_crypto::random_array().map_err(|source| RepoError::Crypto {
            context: "naming a clock marker".into(),
            source,
        })?;
        let hex: String = salt.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("{}/clock/{hex}", names::STATE);
        self.store
            .put(&name, Bytes::from_static(b"zaibei clock marker"))
            .await?;
        let info = self.store.stat(&name).await;
        if let Err(e) = self.store.delete(&name).await {
            tracing::warn!("clock marker {name} not deleted: {e}");
        }
        let modified = info?.modified.ok_or_else(|| {
            RepoError::Refused(format!(
                "the store at {} does not report modification times, which prune needs",
                self.store.location()
            ))
        })?;
        Ok(modified
            .duration_since(UNIX_EPOCH)
            .map_err(|_| RepoError::Refused("the store's clock is before 1970".into()))?
            .as_secs())
    }
}
