//! Checkpoints anchored as immutable objects in a store outside the server's database.

use std::sync::Arc;

use bytes::Bytes;
use zaibei_store::{Store, StoreErrorKind};

use crate::{AuditError, Checkpoint};

/// Folder of the checkpoint objects in the anchor store.
pub const ANCHOR_PREFIX: &str = "audit/checkpoints";

/// Hexadecimal digits of the head hash in an anchor object's name.
const HEAD_PREFIX_LEN: usize = 16;

/// The object name of a checkpoint:
/// `audit/checkpoints/{seq:020}-{first 16 hex digits of head}.json`.
///
/// Names sort by `seq`. Two checkpoints of the same `seq` with different heads (a fork, or a
/// rewrite) get different names, so neither can hide the other.
pub fn anchor_name(cp: &Checkpoint) -> String {
    format!(
        "{ANCHOR_PREFIX}/{:020}-{}.json",
        cp.seq,
        &cp.head.to_hex()[..HEAD_PREFIX_LEN]
    )
}

/// The `seq` and head prefix an anchor object name claims, if it has the shape of one.
fn parse_name(name: &str) -> Option<(u64, &str)> {
    let file = name.strip_prefix(ANCHOR_PREFIX)?.strip_prefix('/')?;
    let stem = file.strip_suffix(".json")?;
    let (seq, head) = stem.split_once('-')?;
    if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if head.len() != HEAD_PREFIX_LEN
        || !head.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    Some((seq.parse().ok()?, head))
}

/// One object of the anchor store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorEntry {
    /// The object name.
    pub name: String,
    /// The `seq` its name claims.
    pub seq: u64,
}

/// What [`AnchorStore::load_all`] found.
#[derive(Debug, Default)]
pub struct AnchorSet {
    /// The checkpoints that could be read, by `seq` (then name). Their signatures are not yet
    /// checked: that is [`crate::verify`]'s job.
    pub checkpoints: Vec<Checkpoint>,
    /// Objects under [`ANCHOR_PREFIX`] that are not valid checkpoints, or whose name is not
    /// the name of their contents, each with its error (naming the object).
    pub corrupt: Vec<AuditError>,
}

/// Writes and reads checkpoints in a store outside the server's database (a separate directory
/// or bucket, ideally one the server can only add to).
///
/// Each checkpoint is one JSON object published with `put_new`, so an anchored checkpoint is
/// never overwritten.
#[derive(Debug, Clone)]
pub struct AnchorStore {
    store: Arc<dyn Store>,
}

impl AnchorStore {
    /// Anchors in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        AnchorStore { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Anchors `cp` and returns its object name. Storing the very same checkpoint again (a
    /// retry after a lost answer) succeeds; a different checkpoint under the same name is
    /// [`AuditError::AnchorConflict`].
    pub async fn put(&self, cp: &Checkpoint) -> Result<String, AuditError> {
        let name = anchor_name(cp);
        let data = cp.to_json()?;
        match self.store.put_new(&name, Bytes::from(data.clone())).await {
            Ok(()) => Ok(name),
            Err(e) if e.kind == StoreErrorKind::AlreadyExists => {
                let existing = self.store.get(&name).await?;
                if existing.as_ref() == data.as_slice() {
                    Ok(name)
                } else {
                    Err(AuditError::AnchorConflict { name })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every anchor object, by `seq` then name. Objects under [`ANCHOR_PREFIX`] whose names do
    /// not have the shape of an anchor are listed with `seq` 0 (reading them fails as corrupt).
    pub async fn list(&self) -> Result<Vec<AnchorEntry>, AuditError> {
        let mut out: Vec<AnchorEntry> = self
            .store
            .list(ANCHOR_PREFIX)
            .await?
            .into_iter()
            .map(|o| AnchorEntry {
                seq: parse_name(&o.name).map_or(0, |(s, _)| s),
                name: o.name,
            })
            .collect();
        out.sort_by(|a, b| (a.seq, &a.name).cmp(&(b.seq, &b.name)));
        Ok(out)
    }

    /// Reads the checkpoint in object `name`. A malformed object, or one whose contents do not
    /// match its name, is [`AuditError::CorruptAnchor`] naming it.
    pub async fn get(&self, name: &str) -> Result<Checkpoint, AuditError> {
        let corrupt = |reason: String| AuditError::CorruptAnchor {
            name: name.to_owned(),
            reason,
        };
        let (seq, head) =
            parse_name(name).ok_or_else(|| corrupt("not the name of an anchor object".into()))?;
        let data = self.store.get(name).await?;
        let cp = Checkpoint::from_json(&data).map_err(|e| corrupt(e.to_string()))?;
        if cp.seq != seq || !cp.head.to_hex().starts_with(head) {
            return Err(corrupt(format!(
                "holds the checkpoint of seq {} head {}",
                cp.seq, cp.head
            )));
        }
        Ok(cp)
    }

    /// Reads every anchor object. Store failures are errors; corrupt objects are collected in
    /// [`AnchorSet::corrupt`] so that the others can still be used.
    pub async fn load_all(&self) -> Result<AnchorSet, AuditError> {
        let mut set = AnchorSet::default();
        for entry in self.list().await? {
            match self.get(&entry.name).await {
                Ok(cp) => set.checkpoints.push(cp),
                Err(e @ AuditError::CorruptAnchor { .. }) => set.corrupt.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok(set)
    }

    /// The checkpoint with the highest `seq` that can be read (the newest one the server
    /// anchored), if any. Corrupt objects are skipped.
    pub async fn latest(&self) -> Result<Option<Checkpoint>, AuditError> {
        for entry in self.list().await?.into_iter().rev() {
            match self.get(&entry.name).await {
                Ok(cp) => return Ok(Some(cp)),
                Err(AuditError::CorruptAnchor { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use zaibei_store::MemoryStore;

    use super::*;
    use crate::{CheckpointSigner, Hash};

    #[test]
    fn names() {
        let s = CheckpointSigner::generate().unwrap();
        let cp = s.sign(42, Hash([0xab; 32]), 0).unwrap();
        let name = anchor_name(&cp);
        assert_eq!(
            name,
            "audit/checkpoints/00000000000000000042-abababababababab.json"
        );
        assert!(zaibei_store::check_name(&name));
        assert_eq!(parse_name(&name), Some((42, "abababababababab")));
        assert_eq!(
            parse_name("audit/checkpoints/42-abababababababab.json"),
            None
        );
        assert_eq!(
            parse_name("audit/other/00000000000000000042-abababababababab.json"),
            None
        );
        let max = s.sign(u64::MAX, Hash::ZERO, 0).unwrap();
        assert_eq!(parse_name(&anchor_name(&max)).map(|x| x.0), Some(u64::MAX));
    }

    #[tokio::test]
    async fn put_list_get() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let anchors = AnchorStore::new(Arc::clone(&store));
        assert!(anchors.latest().await.unwrap().is_none());
        let s = CheckpointSigner::generate().unwrap();
        let cp10 = s.sign(10, Hash([1; 32]), 5).unwrap();
        let cp2 = s.sign(2, Hash([2; 32]), 4).unwrap();
        let n10 = anchors.put(&cp10).await.unwrap();
        anchors.put(&cp2).await.unwrap();
        // Idempotent retry, but never an overwrite.
        assert_eq!(anchors.put(&cp10).await.unwrap(), n10);
        let mut other = s.sign(10, Hash([1; 32]), 6).unwrap();
        assert!(matches!(
            anchors.put(&other).await,
            Err(AuditError::AnchorConflict { .. })
        ));
        other.head = Hash([3; 32]);
        let other = s.sign(other.seq, other.head, other.time).unwrap();
        anchors.put(&other).await.unwrap();

        let listed: Vec<u64> = anchors
            .list()
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(listed, vec![2, 10, 10]);
        assert_eq!(anchors.get(&n10).await.unwrap(), cp10);
        let all = anchors.load_all().await.unwrap();
        assert_eq!(all.checkpoints.len(), 3);
        assert!(all.corrupt.is_empty());
        assert_eq!(anchors.latest().await.unwrap().unwrap().seq, 10);
    }

    #[tokio::test]
    async fn corrupt_objects_are_named_errors() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let anchors = AnchorStore::new(Arc::clone(&store));
        let s = CheckpointSigner::generate().unwrap();
        let good = s.sign(1, Hash([1; 32]), 0).unwrap();
        anchors.put(&good).await.unwrap();
        let garbage = "audit/checkpoints/00000000000000000005-0101010101010101.json";
        store
            .put(garbage, Bytes::from_static(b"{\"seq\": "))
            .await
            .unwrap();
        // A valid checkpoint under the wrong name (renamed to look newer).
        let renamed = "audit/checkpoints/00000000000000000009-0101010101010101.json";
        store
            .put(renamed, Bytes::from(good.to_json().unwrap()))
            .await
            .unwrap();
        let stray = "audit/checkpoints/readme.txt";
        store.put(stray, Bytes::from_static(b"hi")).await.unwrap();

        for name in [garbage, renamed, stray] {
            let err = anchors.get(name).await.unwrap_err();
            assert!(matches!(err, AuditError::CorruptAnchor { .. }), "{err}");
            assert!(err.to_string().contains(name), "{err}");
        }
        let all = anchors.load_all().await.unwrap();
        assert_eq!(all.checkpoints, vec![good.clone()]);
        assert_eq!(all.corrupt.len(), 3);
        assert_eq!(anchors.latest().await.unwrap(), Some(good));
        let missing = anchors
            .get("audit/checkpoints/00000000000000000007-0101010101010101.json")
            .await
            .unwrap_err();
        assert!(matches!(missing, AuditError::Store(ref e) if e.is_not_found()));
    }
}
