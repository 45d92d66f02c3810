//! Saving blobs during a backup: deduplication, pack assembly on the caller's thread, uploads
//! in the background, index objects as packs land.
//!
//! [`BlobSaver::save_blob`] is called from worker threads (never from async tasks: it may
//! block when uploads fall behind, which is what bounds memory). Each kind of blob has a pool
//! of open packs, so several workers compress and encrypt at the same time. Finished packs go
//! through a bounded channel to an uploader task that keeps up to `connections` uploads in
//! flight and writes an index object for every [`PACKS_PER_INDEX`] packs stored. Nothing refers
//! to a pack before it is stored, and nothing refers to a blob before its index object is:
//! a backup interrupted at any point leaves a valid repository.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zaibei_format::refs::TreeRefs;
use zaibei_format::{Id, IndexFile, IndexPack, PackKind, Tree};

use crate::index::IdSet;
use crate::pack_writer::{FinishedPack, PackWriter};
use crate::{IndexedRepository, RepoError, Result, names};

/// Packs listed per index object written during a backup.
pub const PACKS_PER_INDEX: usize = 64;

/// Figures of what a saver stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct SaverStats {
    /// New data blobs.
    pub data_blobs: u64,
    /// New tree blobs.
    pub tree_blobs: u64,
    /// Payload bytes of new blobs.
    pub bytes_raw: u64,
    /// Stored bytes of new blobs (compressed and encrypted).
    pub bytes_stored: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Index objects written.
    pub index_objects: u64,
}

struct Shared {
    repo: Arc<IndexedRepository>,
    zstd_level: i32,
    pack_size: usize,
    seen: [Mutex<IdSet>; 3],
    pools: [Mutex<Vec<PackWriter>>; 3],
    tx: Mutex<Option<mpsc::Sender<FinishedPack>>>,
    failure: Mutex<Option<String>>,
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    bytes_raw: AtomicU64,
    bytes_stored: AtomicU64,
}

/// Saves blobs into new packs; see the module docs.
#[derive(Clone)]
pub struct BlobSaver {
    shared: Arc<Shared>,
    uploader: Arc<Mutex<Option<UploaderHandle>>>,
}

/// The uploader task; it returns the number of packs and index objects written.
type UploaderHandle = JoinHandle<Result<(u64, u64)>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn slot(kind: PackKind) -> usize {
    kind as usize - 1
}

impl BlobSaver {
    /// Starts a saver with at most `connections` uploads at a time. Must be called inside a
    /// tokio runtime.
    pub fn start(repo: Arc<IndexedRepository>, connections: usize) -> Result<Self> {
        repo.keys()
            .content("backup")
            .map_err(|e| RepoError::format("key", e))?;
        let connections = connections.max(1);
        let (tx, rx) = mpsc::channel(connections);
        let shared = Arc::new(Shared {
            zstd_level: repo.config().zstd_level,
            pack_size: usize::try_from(repo.config().pack_size).unwrap_or(usize::MAX),
            repo: Arc::clone(&repo),
            seen: Default::default(),
            pools: Default::default(),
            tx: Mutex::new(Some(tx)),
            failure: Mutex::new(None),
            data_blobs: AtomicU64::new(0),
            tree_blobs: AtomicU64::new(0),
            bytes_raw: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
        });
        let handle = tokio::spawn(upload_loop(Arc::clone(&shared), rx, connections));
        Ok(BlobSaver {
            shared,
            uploader: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// The id a blob with this plaintext would have.
    pub fn blob_id(&self, plaintext: &[u8]) -> Result<Id> {
        let content = self
            .shared
            .repo
            .keys()
            .content("backup")
            .map_err(|e| RepoError::format("key", e))?;
        Ok(content.blob_id(plaintext))
    }

    /// True when the repository already has the blob or this saver stored it.
    pub fn has_blob(&self, kind: PackKind, id: &Id) -> bool {
        self.shared.repo.index().contains(kind, id)
            || lock(&self.shared.seen[slot(kind)]).contains(id)
    }

    /// Stores a blob unless it is already known; returns true when it was new. Blocks while
    /// uploads are behind. Call from a blocking thread, never from an async task.
    pub fn save_blob(&self, kind: PackKind, id: Id, payload: &[u8]) -> Result<bool> {
        let s = &self.shared;
        if s.repo.index().contains(kind, &id) || !lock(&s.seen[slot(kind)]).insert(id) {
            return Ok(false);
        }
        self.check_failure()?;
        let pooled = lock(&s.pools[slot(kind)]).pop();
        let mut writer = match pooled {
            Some(w) => w,
            None => PackWriter::new(s.repo.keys(), kind, s.pack_size)
                .map_err(|e| RepoError::format("new pack", e))?,
        };
        let stored = writer
            .add(id, payload, s.zstd_level)
            .map_err(|e| RepoError::format(format!("blob {id}"), e))?;
        s.bytes_raw
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        s.bytes_stored.fetch_add(stored, Ordering::Relaxed);
        match kind {
            PackKind::Data => s.data_blobs.fetch_add(1, Ordering::Relaxed),
            PackKind::Tree => s.tree_blobs.fetch_add(1, Ordering::Relaxed),
            PackKind::Refs => 0,
        };
        if writer.len() >= s.pack_size {
            self.send(writer)?;
        } else {
            lock(&s.pools[slot(kind)]).push(writer);
        }
        Ok(true)
    }

    /// Stores a tree and its reference blob; returns the tree's id. Call from a blocking thread.
    pub fn save_tree(&self, tree: &Tree) -> Result<Id> {
        let body = tree.encode();
        let id = self.blob_id(&body)?;
        self.save_blob(PackKind::Tree, id, &body)?;
        if !self.has_blob(PackKind::Refs, &id) {
            self.save_blob(PackKind::Refs, id, &TreeRefs::of_tree(tree).encode())?;
        }
        Ok(id)
    }

    fn send(&self, writer: PackWriter) -> Result<()> {
        let repo = &self.shared.repo;
        let pack = writer
            .finish(repo.keys().maintenance(), repo.suite())
            .map_err(|e| RepoError::format("pack", e))?;
        let tx = lock(&self.shared.tx).clone();
        let Some(tx) = tx else {
            return Err(RepoError::Internal("blob saver already finished".into()));
        };
        if tx.blocking_send(pack).is_err() {
            self.check_failure()?;
            return Err(RepoError::Internal("pack uploader stopped".into()));
        }
        Ok(())
    }

    fn check_failure(&self) -> Result<()> {
        match lock(&self.shared.failure).as_ref() {
            Some(msg) => Err(RepoError::Internal(format!("upload failed earlier: {msg}"))),
            None => Ok(()),
        }
    }

    /// Figures so far.
    pub fn stats(&self) -> SaverStats {
        let s = &self.shared;
        SaverStats {
            data_blobs: s.data_blobs.load(Ordering::Relaxed),
            tree_blobs: s.tree_blobs.load(Ordering::Relaxed),
            bytes_raw: s.bytes_raw.load(Ordering::Relaxed),
            bytes_stored: s.bytes_stored.load(Ordering::Relaxed),
            packs: 0,
            index_objects: 0,
        }
    }

    /// Closes every open pack, waits for all uploads and writes the last index object. After
    /// this returns `Ok`, every blob saved is stored and indexed.
    pub async fn finish(&self) -> Result<SaverStats> {
        let shared = Arc::clone(&self.shared);
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for kind in PackKind::ALL {
                let writers: Vec<PackWriter> =
                    std::mem::take(&mut *lock(&shared.pools[slot(kind)]));
                for w in writers.into_iter().filter(|w| !w.is_empty()) {
                    this.send(w)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))??;
        lock(&self.shared.tx).take();
        let handle = lock(&self.uploader).take();
        let (packs, index_objects) = match handle {
            Some(h) => h
                .await
                .map_err(|e| RepoError::Internal(format!("uploader task: {e}")))??,
            None => return Err(RepoError::Internal("blob saver finished twice".into())),
        };
        Ok(SaverStats {
            packs,
            index_objects,
            ..self.stats()
        })
    }
}

async fn upload_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<FinishedPack>,
    connections: usize,
) -> Result<(u64, u64)> {
    let result = upload_all(&shared, &mut rx, connections).await;
    if let Err(e) = &result {
        *lock(&shared.failure) = Some(e.to_string());
        rx.close();
    }
    result
}

async fn upload_all(
    shared: &Shared,
    rx: &mut mpsc::Receiver<FinishedPack>,
    connections: usize,
) -> Result<(u64, u64)> {
    let repo = &shared.repo;
    let mut inflight = tokio::task::JoinSet::new();
    let mut pending: Vec<IndexPack> = Vec::new();
    let (mut packs, mut index_objects) = (0u64, 0u64);
    let mut open = true;
    while open || !inflight.is_empty() {
        tokio::select! {
            msg = rx.recv(), if open && inflight.len() < connections => match msg {
                Some(pack) => {
                    let store = Arc::clone(repo.store());
                    let cache = repo.cache.clone().filter(|_| pack.index.kind != PackKind::Data);
                    inflight.spawn(async move {
                        store.put(&names::pack(&pack.id), pack.bytes.clone()).await?;
                        if let Some(cache) = cache {
                            tokio::task::spawn_blocking(move || cache.put_pack(&pack.id, &pack.bytes))
                                .await
                                .map_err(|e| RepoError::Internal(format!("cache task: {e}")))?;
                        }
                        Ok::<_, RepoError>(pack.index)
                    });
                }
                None => open = false,
            },
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                let index = done.map_err(|e| RepoError::Internal(format!("upload task: {e}")))??;
                packs += 1;
                pending.push(index);
                if pending.len() >= PACKS_PER_INDEX {
                    write_index(repo, std::mem::take(&mut pending)).await?;
                    index_objects += 1;
                }
            }
        }
    }
    if !pending.is_empty() {
        write_index(repo, pending).await?;
        index_objects += 1;
    }
    Ok((packs, index_objects))
}

/// Writes one index object listing `packs`; returns its id.
pub(crate) async fn write_index(repo: &IndexedRepository, packs: Vec<IndexPack>) -> Result<Id> {
    let file = IndexFile {
        packs,
        supersedes: Vec::new(),
    };
    let maint = repo.keys().maintenance().clone();
    let bytes = tokio::task::spawn_blocking(move || file.seal(&maint))
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))?
        .map_err(|e| RepoError::format("new index", e))?;
    repo.put_hashed(names::INDEX, bytes).await
}

impl std::fmt::Debug for BlobSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSaver")
            .field("stats", &self.stats())
            .finish()
    }
}
