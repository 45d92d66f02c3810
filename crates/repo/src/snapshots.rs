//! Listing, finding and saving snapshots.

use futures::StreamExt;
use zaibei_format::{Id, Snapshot};

use crate::{RepoError, Repository, Result, names};

/// All snapshots, sorted by time, and those that could not be read.
#[derive(Debug, Default)]
pub struct SnapshotList {
    /// Readable snapshots, oldest first.
    pub snapshots: Vec<(Id, Snapshot)>,
    /// Snapshot objects that could not be read, with the reason.
    pub damaged: Vec<(String, RepoError)>,
}

impl Repository {
    /// Seals and stores a snapshot; returns its id. Call only once everything it references is
    /// stored and indexed.
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        let bytes = snapshot
            .seal(self.keys.maintenance())
            .map_err(|e| RepoError::format("new snapshot", e))?;
        self.put_hashed(names::SNAPSHOTS, bytes).await
    }

    /// Forgets one snapshot: [`Repository::forget_snapshots`] with one id.
    pub async fn forget_snapshot(&self, id: &Id) -> Result<()> {
        self.forget_snapshots(std::slice::from_ref(id)).await
    }

    /// Forgets snapshots: first publishes a forget record naming them (the `forgotten` state,
    /// docs/FORMAT.md §13.1), which is what lets replicas forget them too, then deletes their
    /// objects. The data they referenced stays until prune finds it unreferenced. A crash
    /// after the record leaves snapshots that a second run forgets; until then the record
    /// is harmless (replicas delete only what the primary no longer holds). Snapshot objects
    /// already gone are skipped.
    pub async fn forget_snapshots(&self, ids: &[Id]) -> Result<()> {
        self.record_forgets(ids).await?;
        for id in ids {
            self.delete_snapshot_object(id).await?;
        }
        Ok(())
    }

    /// Deletes a snapshot object, without a forget record. Only for callers that publish the
    /// record themselves.
    async fn delete_snapshot_object(&self, id: &Id) -> Result<()> {
        let name = names::snapshot(id);
        match self.store.delete(&name).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(cache) = &self.cache {
            cache.forget(&name);
        }
        Ok(())
    }

    /// Reads one snapshot.
    pub async fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let name = names::snapshot(id);
        let bytes = self.get_verified(&name).await?;
        Snapshot::open(self.keys.maintenance(), &bytes).map_err(|e| RepoError::format(name, e))
    }

    /// Ids of all snapshot objects.
    pub async fn snapshot_ids(&self) -> Result<Vec<Id>> {
        let listed = self.store.list(names::SNAPSHOTS).await?;
        if let Some(cache) = &self.cache {
            cache.retain(
                names::SNAPSHOTS,
                &listed.iter().map(|o| o.name.clone()).collect(),
            );
        }
        Ok(listed
            .iter()
            .filter_map(|o| names::id_of(&o.name))
            .collect())
    }

    /// Reads every snapshot.
    pub async fn list_snapshots(&self) -> Result<SnapshotList> {
        let ids = self.snapshot_ids().await?;
        let mut list = SnapshotList::default();
        let mut loads = futures::stream::iter(
            ids.into_iter()
                .map(|id| async move { (id, self.load_snapshot(&id).await) }),
        )
        .buffer_unordered(16);
        while let Some((id, res)) = loads.next().await {
            match res {
                Ok(s) => list.snapshots.push((id, s)),
                // Unreadable (network, credentials) is not damaged.
                Err(e) if e.is_store_unreachable() => return Err(e),
                // Listed, then gone before it was read: forgotten meanwhile by another
                // process, not damaged.
                Err(RepoError::Store(e)) if e.is_not_found() => {
                    tracing::debug!("snapshot {id} was removed while the snapshots were listed");
                }
                Err(e) => list.damaged.push((names::snapshot(&id), e)),
            }
        }
        list.snapshots
            .sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(list)
    }

    /// Finds each of `specs` (as [`Repository::find_snapshot`]), in order, each snapshot once.
    pub async fn find_snapshots(&self, specs: &[String]) -> Result<Vec<(Id, Snapshot)>> {
        let mut found: Vec<(Id, Snapshot)> = Vec::new();
        for spec in specs {
            let (id, snap) = self.find_snapshot(spec).await?;
            if !found.iter().any(|(f, _)| *f == id) {
                found.push((id, snap));
            }
        }
        Ok(found)
    }

    /// Finds a snapshot by full id, unique id prefix, or `latest`.
    pub async fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            let list = self.list_snapshots().await?;
            return list
                .snapshots
                .into_iter()
                .last()
                .ok_or_else(|| RepoError::SnapshotNotFound(spec.to_owned()));
        }
        let spec_lc = spec.to_ascii_lowercase();
        if spec_lc.is_empty() || !spec_lc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RepoError::SnapshotNotFound(spec.to_owned()));
        }
        let matches: Vec<Id> = self
            .snapshot_ids()
            .await?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&spec_lc))
            .collect();
        match matches.as_slice() {
            [] => Err(RepoError::SnapshotNotFound(spec.to_owned())),
            [id] => Ok((*id, self.load_snapshot(id).await?)),
            _ => Err(RepoError::AmbiguousSnapshot(spec.to_owned())),
        }
    }
}
