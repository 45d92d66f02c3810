//! The blobs a set of snapshots needs, found through the reference layer (the maintenance key
//! suffices): what prune keeps and what copy transfers.

use futures::StreamExt;
use zaibei_format::{Id, PackKind};

use crate::index::IdSet;
use crate::{IndexedRepository, RepoError, Result};

/// Reference blobs read at a time.
const READS_IN_FLIGHT: usize = 16;

/// Blobs needed by some snapshots: data blobs, and trees (each tree id names a tree blob and
/// the reference blob of that tree).
#[derive(Debug, Default)]
pub struct Reachable {
    /// Data blobs.
    pub data: IdSet,
    /// Trees (tree blobs and their reference blobs).
    pub trees: IdSet,
}

impl Reachable {
    /// True when a blob of `kind` is needed.
    pub fn contains(&self, kind: PackKind, id: &Id) -> bool {
        match kind {
            PackKind::Data => self.data.contains(id),
            PackKind::Tree | PackKind::Refs => self.trees.contains(id),
        }
    }

    /// Adds every blob reachable from the root trees `roots`, reading each tree's reference
    /// blob once, level by level (no recursion, so depth does not matter, and a cycle in
    /// forged references ends because a tree is read only once). `on_tree` is called after
    /// each tree read. A reference blob that cannot be read is an error naming its tree.
    pub async fn extend_from(
        &mut self,
        repo: &IndexedRepository,
        roots: impl IntoIterator<Item = Id>,
        mut on_tree: impl FnMut(),
    ) -> Result<()> {
        let mut frontier: Vec<Id> = roots
            .into_iter()
            .filter(|t| self.trees.insert(*t))
            .collect();
        while !frontier.is_empty() {
            let batch = std::mem::take(&mut frontier);
            let mut results = futures::stream::iter(
                batch
                    .into_iter()
                    .map(|tree| async move { (tree, repo.load_refs(&tree).await) }),
            )
            .buffer_unordered(READS_IN_FLIGHT);
            while let Some((tree, refs)) = results.next().await {
                let refs = refs.map_err(|e| match e {
                    e if e.is_store_unreachable() => e,
                    e => RepoError::Refused(format!(
                        "the references of tree {tree} cannot be read: {e}"
                    )),
                })?;
                self.data.extend(refs.data.iter().copied());
                for t in refs.trees {
                    if self.trees.insert(t) {
                        frontier.push(t);
                    }
                }
                on_tree();
            }
        }
        Ok(())
    }
}
