//! A repository with its index loaded: reading blobs, trees and reference blobs.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use zaibei_format::refs::TreeRefs;
use zaibei_format::{Id, PackKind, Tree};

use crate::gather::GatherLimits;
use crate::held::{HeldPacks, MAX_HELD_PACK};
use crate::index::{BlobRef, IdMap, IdSet, IndexProblem, MasterIndex};
use crate::opener::BlobOpener;
use crate::{Cache, RepoError, Repository, Result, names};

/// Most trees kept decoded in memory.
const TREE_CACHE_ENTRIES: usize = 4096;

/// How [`IndexedRepository::load_trees`] reads trees lying close together in a pack it does
/// not read whole (longer than `held::MAX_HELD_PACK`, or dropped once): with one request of at
/// most 1 MiB, gaps up to 64 KiB read through.
const TREE_READS: GatherLimits = GatherLimits {
    max_gap: 64 << 10,
    max_read: 1 << 20,
    in_flight: 4,
};

/// A repository whose index is loaded (the second state of the typestate `Repository` →
/// `IndexedRepository`).
pub struct IndexedRepository {
    repo: Repository,
    index: MasterIndex,
    problems: Vec<IndexProblem>,
    trees: Mutex<IdMap<Arc<Tree>>>,
    /// Packs of trees read whole by [`IndexedRepository::load_trees`] (without a metadata
    /// cache only).
    held: Mutex<HeldPacks>,
}

impl Deref for IndexedRepository {
    type Target = Repository;
    fn deref(&self) -> &Repository {
        &self.repo
    }
}

impl Repository {
    /// Loads the index, moving to the indexed state.
    pub async fn load_index(self) -> Result<IndexedRepository> {
        let (index, problems) = self.read_index().await?;
        if let Some(cache) = &self.cache {
            // Keep cached packs of trees and references the index still lists.
            let keep = index
                .packs()
                .iter()
                .filter(|p| p.kind != PackKind::Data)
                .map(|p| names::pack(&p.id))
                .collect();
            cache.retain(names::DATA, &keep);
        }
        Ok(IndexedRepository {
            repo: self,
            index,
            problems,
            trees: Mutex::new(IdMap::default()),
            held: Mutex::new(HeldPacks::default()),
        })
    }
}

impl IndexedRepository {
    /// The index.
    pub fn index(&self) -> &MasterIndex {
        &self.index
    }

    /// Index objects that could not be loaded.
    pub fn index_problems(&self) -> &[IndexProblem] {
        &self.problems
    }

    /// The repository in its opened state.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Where a blob lies, or an error naming it.
    pub fn locate(&self, kind: PackKind, id: &Id) -> Result<BlobRef<'_>> {
        self.index
            .lookup(kind, id)
            .ok_or(RepoError::BlobNotFound { kind, id: *id })
    }

    /// Reads, authenticates, decrypts and decompresses one blob. Data and tree blobs are also
    /// checked against their id (the keyed hash of the plaintext).
    ///
    /// A blob stored more than once is read from its other copies when the first is damaged.
    pub async fn read_blob(&self, kind: PackKind, id: &Id) -> Result<Vec<u8>> {
        let first = self.locate(kind, id)?;
        let first_error = match self.read_blob_at(kind, id, first).await {
            Ok(plain) => return Ok(plain),
            Err(e) if e.is_store_unreachable() => return Err(e),
            Err(e) => e,
        };
        // Only now look for copies (normally there are none).
        for loc in self.index.locations(kind, id).into_iter().skip(1) {
            match self.read_blob_at(kind, id, loc).await {
                Ok(plain) => {
                    tracing::warn!("{first_error}; read its copy in pack {}", loc.pack.id);
                    return Ok(plain);
                }
                Err(e) if e.is_store_unreachable() => return Err(e),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Err(first_error)
    }

    async fn read_blob_at(&self, kind: PackKind, id: &Id, loc: BlobRef<'_>) -> Result<Vec<u8>> {
        if kind != PackKind::Data
            && let Some(cache) = self.repo.cache.clone()
        {
            match self.read_cached(&cache, &loc).await {
                Ok(stored) => match self.open_stored_blob(kind, id, &loc, &stored) {
                    Ok(plain) => return Ok(plain),
                    // Cached bytes that do not open: drop them and ask the store.
                    Err(e) => {
                        tracing::warn!(
                            "cache: {e}; reading pack {} from the repository",
                            loc.pack.id
                        );
                        cache.forget_pack(&loc.pack.id);
                    }
                },
                Err(e) if e.is_store_unreachable() => return Err(e),
                // The whole pack cannot be cached (damaged elsewhere, say): the blob's own
                // record may still be intact, as check reports it.
                Err(e) => tracing::debug!("cache: {e}; reading the blob alone"),
            }
        } else if kind == PackKind::Tree {
            // Not locked while the blob is opened.
            let held = self.held().get(&loc.pack.id);
            // Held bytes that do not open are read again from the store, which reports them.
            if let Some(stored) = held.as_deref().and_then(|pack| blob_in(pack, &loc))
                && let Ok(plain) = self.open_stored_blob(kind, id, &loc, stored)
            {
                return Ok(plain);
            }
        }
        let name = names::pack(&loc.pack.id);
        let stored = self
            .store
            .get_range(&name, loc.offset..loc.offset + loc.length)
            .await?;
        self.open_stored_blob(kind, id, &loc, &stored)
    }

    /// Reads a blob's stored bytes through the metadata cache, fetching (and verifying) its
    /// whole pack when the cache does not hold it.
    async fn read_cached(&self, cache: &Arc<Cache>, loc: &BlobRef<'_>) -> Result<Vec<u8>> {
        let pack = loc.pack.id;
        let (offset, length) = (loc.offset, loc.length);
        let c = Arc::clone(cache);
        let hit = tokio::task::spawn_blocking(move || c.read_pack_range(&pack, offset, length))
            .await
            .map_err(|e| RepoError::Internal(format!("cache task: {e}")))?;
        if let Some(stored) = hit {
            return Ok(stored);
        }
        let name = names::pack(&pack);
        let bytes = self.get_verified(&name).await?;
        let stored = blob_in(&bytes, loc)
            .ok_or_else(|| {
                RepoError::format(
                    &name,
                    zaibei_format::FormatError::invalid(
                        "pack",
                        format!(
                            "the index places a blob at {offset}+{length}, past the pack's end"
                        ),
                    ),
                )
            })?
            .to_vec();
        let c = Arc::clone(cache);
        tokio::task::spawn_blocking(move || c.put_pack(&pack, &bytes))
            .await
            .map_err(|e| RepoError::Internal(format!("cache task: {e}")))?;
        Ok(stored)
    }

    /// Opens a blob's stored bytes (already read from its pack at `loc`): authenticates,
    /// decrypts, decompresses and checks the plaintext against the id. To open many blobs, a
    /// [`BlobOpener`] is faster.
    pub fn open_stored_blob(
        &self,
        kind: PackKind,
        id: &Id,
        loc: &BlobRef<'_>,
        stored: &[u8],
    ) -> Result<Vec<u8>> {
        let mut opener = BlobOpener::new(self, kind);
        opener.add(id, loc, stored)?;
        match opener.finish().pop() {
            Some((_, plain)) => plain,
            None => Err(RepoError::Internal(format!("blob {id}: opened nothing"))),
        }
    }

    /// Loads and decodes a tree (cached).
    pub async fn load_tree(&self, id: &Id) -> Result<Arc<Tree>> {
        if let Some(t) = self.cache().get(id) {
            return Ok(Arc::clone(t));
        }
        let tree = Arc::new(self.decode_tree(id).await?);
        self.cache_tree(*id, Arc::clone(&tree));
        Ok(tree)
    }

    /// Loads and decodes a tree for one use: a cached copy is taken out of the cache, and a
    /// tree loaded here is not cached. For walks that need each tree once, such as a backup
    /// reading its parent snapshot while a prefetch thread loads the trees ahead of it: the
    /// cache then holds only the trees loaded ahead and not used yet.
    pub async fn take_tree(&self, id: &Id) -> Result<Arc<Tree>> {
        if let Some(t) = self.cache().remove(id) {
            return Ok(t);
        }
        Ok(Arc::new(self.decode_tree(id).await?))
    }

    /// Loads several trees at once, as a walk ahead of its use does (the caller holds them:
    /// trees found in the cache are used, none is added): a pack of trees is read whole once
    /// and held in memory, at most 24 MiB of them (`crate::held`; through the metadata cache
    /// where there is one), trees of longer packs lying close together are read with one request, and each
    /// batch's pack keys are derived once and its ids checked side by side ([`BlobOpener`]).
    /// A tree that does not open this way is loaded alone (which also tries its copies), so
    /// each result, and each error naming its tree, is what loading it alone gives. An id
    /// given twice may be answered once. Fails as a whole only when the store cannot be
    /// reached.
    pub async fn load_trees(&self, ids: &[Id]) -> Result<Vec<(Id, Result<Arc<Tree>>)>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut wanted = Vec::with_capacity(ids.len());
        {
            let cache = self.cache();
            for id in ids {
                match cache.get(id) {
                    Some(t) => out.push((*id, Ok(Arc::clone(t)))),
                    None => wanted.push(*id),
                }
            }
        }
        // With a metadata cache the packs of trees are read whole through it; one by one is
        // then as good. Without one, they are read whole and held here.
        let mut alone = Vec::new();
        if self.repo.cache.is_some() {
            alone = wanted;
        } else {
            let mut opener = BlobOpener::new(self, PackKind::Tree);
            let ranged = self.open_from_held_packs(&mut opener, &wanted).await?;
            self.gather(&mut opener, ranged.iter(), TREE_READS).await?;
            let mut opened = IdSet::default();
            for (id, plain) in opener.finish() {
                opened.insert(id);
                let tree = plain.and_then(|body| {
                    Tree::decode(&body).map_err(|e| RepoError::format(format!("tree {id}"), e))
                });
                match tree {
                    Ok(tree) => {
                        let tree = Arc::new(tree);
                        out.push((id, Ok(tree)));
                    }
                    Err(_) => alone.push(id),
                }
            }
            alone.extend(wanted.into_iter().filter(|id| !opened.contains(id)));
        }
        for id in alone {
            let loaded = self.decode_tree(&id).await.map(Arc::new);
            out.push((id, loaded));
        }
        Ok(out)
    }

    /// Adds to `opener` the trees of `ids` whose packs are short enough to read whole
    /// ([`MAX_HELD_PACK`]), reading each such pack once and holding it (`crate::held`).
    /// Returns the trees left for ranged reads: those of longer packs, of packs that could not
    /// be read whole or were held and dropped already, and those the index does not know.
    /// Fails only when the store cannot be reached.
    async fn open_from_held_packs(
        &self,
        opener: &mut BlobOpener<'_>,
        ids: &[Id],
    ) -> Result<Vec<Id>> {
        let mut ranged = Vec::new();
        for id in ids {
            let Some(loc) = self.index.lookup(PackKind::Tree, id) else {
                ranged.push(*id);
                continue;
            };
            let pack_id = loc.pack.id;
            if loc.pack.size > MAX_HELD_PACK {
                ranged.push(*id);
                continue;
            }
            let held = {
                let mut held = self.held();
                match held.get(&pack_id) {
                    Some(pack) => Some(pack),
                    None if !held.may_hold(&pack_id) => {
                        ranged.push(*id);
                        continue;
                    }
                    None => None,
                }
            };
            let pack = match held {
                Some(pack) => pack,
                None => match self.store.get(&names::pack(&pack_id)).await {
                    Ok(pack) if pack.len() as u64 == loc.pack.size => {
                        self.held().insert(pack_id, pack.clone());
                        pack
                    }
                    Err(e) if e.is_unreachable() => return Err(e.into()),
                    // Ranged reads report what is wrong, blob by blob, and the pack is not
                    // read whole again.
                    other => {
                        match other {
                            Ok(pack) => tracing::debug!(
                                "pack {pack_id} holds {} bytes, the index says {}",
                                pack.len(),
                                loc.pack.size
                            ),
                            Err(e) => tracing::debug!("reading pack {pack_id} whole: {e}"),
                        }
                        self.held().refuse(pack_id);
                        ranged.push(*id);
                        continue;
                    }
                },
            };
            match blob_in(&pack, &loc) {
                // A tree that does not open is loaded alone afterwards, which reports it.
                Some(stored) => {
                    let _ = opener.add(id, &loc, stored);
                }
                None => ranged.push(*id),
            }
        }
        Ok(ranged)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HeldPacks> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache_tree(&self, id: Id, tree: Arc<Tree>) {
        let mut cache = self.cache();
        if cache.len() >= TREE_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(id, tree);
    }

    /// Reads, authenticates and decodes a tree, bypassing the cache.
    async fn decode_tree(&self, id: &Id) -> Result<Tree> {
        let body = self.read_blob(PackKind::Tree, id).await?;
        Tree::decode(&body).map_err(|e| RepoError::format(format!("tree {id}"), e))
    }

    /// Loads the reference blob of a tree (maintenance key suffices).
    pub async fn load_refs(&self, tree: &Id) -> Result<TreeRefs> {
        let body = self.read_blob(PackKind::Refs, tree).await?;
        TreeRefs::decode(&body).map_err(|e| RepoError::format(format!("refs of tree {tree}"), e))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, IdMap<Arc<Tree>>> {
        self.trees.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The stored bytes of the blob at `loc` within the whole pack `pack`, if the pack is that long.
fn blob_in<'p>(pack: &'p [u8], loc: &BlobRef<'_>) -> Option<&'p [u8]> {
    let start = usize::try_from(loc.offset).ok()?;
    let end = start.checked_add(usize::try_from(loc.length).ok()?)?;
    pack.get(start..end)
}
