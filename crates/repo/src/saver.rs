//! Saving blobs during a backup: deduplication, pack assembly on the caller's thread or on the
//! saver's sealer threads, uploads in the background, index objects as packs land.
//!
//! [`BlobSaver::save_blob`] is called from worker threads (never from async tasks: it may
//! block when uploads fall behind, which is what bounds memory) and compresses and encrypts on
//! the caller's thread; [`BlobSaver::save_blob_queued`] hands a new blob to the saver's sealer
//! threads (one per core, behind a short bounded queue) so that a reader of one large file is
//! not left doing all the work alone. Each kind of blob has a pool of open packs, so several
//! threads compress and encrypt at the same time. On a local disk, finished data packs wait
//! in their files, unnamed, until [`NAMED_TOGETHER`] of them can be named together (their
//! names hashed side by side; see `pack_writer::name_packs`). Finished packs go
//! through a bounded channel to an uploader task that keeps up to `connections` uploads in
//! flight and writes an index object for every [`PACKS_PER_INDEX`] packs stored. Nothing refers
//! to a pack before it is stored, and nothing refers to a blob before its index object is:
//! a backup interrupted at any point leaves a valid repository.
//!
//! **Prune running beside.** The saver reads the `condemned` state when it starts and treats
//! blobs that live in condemned packs as absent. It remembers every pack it relied on (for
//! deduplication) and every pack it wrote; at intervals shorter than the safety margin, and once
//! more in [`BlobSaver::finish`] after everything is indexed, it re-reads the `condemned` state
//! and stores again every blob of a newly condemned pack it relied on or wrote (those packs are
//! still readable: deletion waits for the margin). A pack it relied on that is already gone
//! fails the backup instead of publishing a snapshot with missing data (docs/FORMAT.md §14).

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zaibei_format::refs::TreeRefs;
use zaibei_format::{ContentKeys, Id, IndexFile, IndexPack, PackKind, Tree};

use crate::index::IdSet;
use crate::pack_writer::{Finished, FinishedPack, PackBody, PackWriter, UnnamedPack, name_packs};
use crate::{IndexedRepository, RepoError, Result, names};

/// Shortest and longest interval between two re-reads of the `condemned` state.
const RECHECK_BOUNDS: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(900));

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
    /// Blobs stored again because a prune condemned the pack holding them while this saver ran.
    pub blobs_rescued: u64,
}

/// What the uploader task is asked to do.
enum UploadMsg {
    /// Store a pack.
    Pack(Box<FinishedPack>),
    /// Wait for every upload so far and index it, then answer.
    Flush(oneshot::Sender<()>),
}

/// What the saver knows of prune's marks.
#[derive(Default)]
struct PruneWatch {
    /// Generation of the `condemned` state last read.
    generation: u64,
    /// Packs condemned as of that generation: blobs in them count as absent.
    excluded: IdSet,
    /// Interval between re-reads (a quarter of the margin, within [`RECHECK_BOUNDS`]).
    interval: Duration,
}

struct Shared {
    repo: Arc<IndexedRepository>,
    zstd_level: i32,
    pack_size: usize,
    seen: [Mutex<IdSet>; 3],
    pools: [Mutex<Vec<PackWriter>>; 3],
    /// Buffers of data packs already stored, for the next data packs.
    spare: Arc<SpareBuffers>,
    /// Finished packs in the store's files, waiting to be named together.
    unnamed: Mutex<Vec<UnnamedPack>>,
    /// How many of them are named together ([`named_together`]).
    named_together: usize,
    tx: Mutex<Option<mpsc::Sender<UploadMsg>>>,
    failure: Mutex<Option<String>>,
    watch: std::sync::RwLock<PruneWatch>,
    /// Packs of the loaded index this saver deduplicated against, by position.
    relied: PackBits,
    /// Packs of the loaded index condemned as of the last read, by position (the lock-free
    /// copy of `watch.excluded` that deduplication consults).
    condemned_bits: PackBits,
    /// Packs this saver stored.
    own: Mutex<IdSet>,
    /// Blobs stored again after their pack was condemned.
    rescued: Mutex<IdSet>,
    recheck_lock: tokio::sync::Mutex<()>,
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    bytes_raw: AtomicU64,
    bytes_stored: AtomicU64,
}

impl Shared {
    /// Adds a blob to an open pack of its kind, unconditionally.
    fn store_blob(&self, kind: PackKind, id: Id, payload: &[u8]) -> Result<()> {
        self.check_failure()?;
        let pooled = lock(&self.pools[kind.slot()]).pop();
        let mut writer = match pooled {
            Some(w) if w.has_room_for(payload.len()) => w,
            pooled => {
                // A data pack without room for this blob closes a little early rather than
                // grow: growing would copy it into a buffer twice as large.
                if let Some(full) = pooled {
                    self.send(full)?;
                }
                self.new_pack(kind)?
            }
        };
        let stored = writer.add(id, payload, self.zstd_level)?;
        self.bytes_raw
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        self.bytes_stored.fetch_add(stored, Ordering::Relaxed);
        match kind {
            PackKind::Data => self.data_blobs.fetch_add(1, Ordering::Relaxed),
            PackKind::Tree => self.tree_blobs.fetch_add(1, Ordering::Relaxed),
            PackKind::Refs => 0,
        };
        if writer.len() >= self.pack_size {
            self.send(writer)?;
        } else {
            lock(&self.pools[kind.slot()]).push(writer);
        }
        Ok(())
    }

    /// A new pack of `kind`. A data pack goes straight to its file where the store keeps
    /// objects as local files; otherwise it is assembled in a spare buffer.
    fn new_pack(&self, kind: PackKind) -> Result<PackWriter> {
        let repo = &self.repo;
        if kind == PackKind::Data {
            if let Some(object) = repo.store().stage(names::DATA)? {
                return PackWriter::new_staged(repo.keys(), kind, object);
            }
            return PackWriter::new_in(repo.keys(), kind, self.pack_size, self.spare.take());
        }
        PackWriter::new_in(repo.keys(), kind, self.pack_size, Vec::new())
    }

    /// Closes a pack and hands it to the uploader; a pack in the store's file waits until
    /// enough of them can be named together ([`named_together`]), or [`Shared::name_waiting`].
    fn send(&self, writer: PackWriter) -> Result<()> {
        let repo = &self.repo;
        match writer.finish(repo.keys().maintenance(), repo.suite())? {
            Finished::Named(pack) => self.upload(pack),
            Finished::Unnamed(pack) => {
                let batch = {
                    let mut waiting = lock(&self.unnamed);
                    waiting.push(pack);
                    if waiting.len() < self.named_together {
                        return Ok(());
                    }
                    std::mem::take(&mut *waiting)
                };
                self.name_and_upload(batch)
            }
        }
    }

    /// Names the packs waiting for a name, however few, and hands them to the uploader.
    fn name_waiting(&self) -> Result<()> {
        let batch = std::mem::take(&mut *lock(&self.unnamed));
        if batch.is_empty() {
            return Ok(());
        }
        self.name_and_upload(batch)
    }

    fn name_and_upload(&self, batch: Vec<UnnamedPack>) -> Result<()> {
        for pack in name_packs(batch, self.repo.suite())? {
            self.upload(pack)?;
        }
        Ok(())
    }

    fn upload(&self, pack: FinishedPack) -> Result<()> {
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else {
            return Err(RepoError::Internal("blob saver already finished".into()));
        };
        if tx.blocking_send(UploadMsg::Pack(Box::new(pack))).is_err() {
            self.check_failure()?;
            return Err(RepoError::Internal("pack uploader stopped".into()));
        }
        Ok(())
    }

    fn check_failure(&self) -> Result<()> {
        match lock(&self.failure).as_ref() {
            Some(msg) => Err(RepoError::Internal(format!(
                "the backup failed earlier: {msg}"
            ))),
            None => Ok(()),
        }
    }

    /// Records the first failure of a background thread or task; later calls see it.
    fn fail(&self, message: String) {
        lock(&self.failure).get_or_insert(message);
    }
}

/// Packs in the store's files named together where that pays: eight fill the lanes of the
/// multi-buffer SM3 engine. They hold no memory while they wait, only open files and the page
/// cache. With BLAKE3 (fast alone) or without the SM3 engine each pack is named at once.
const NAMED_TOGETHER: usize = 8;

/// How many finished packs to name together with `suite` on this CPU.
fn named_together(suite: zaibei_crypto::Suite) -> usize {
    use zaibei_crypto::sm3_multi::Sm3Impl;
    if suite == zaibei_crypto::Suite::Gm && Sm3Impl::detect() != Sm3Impl::Portable {
        NAMED_TOGETHER
    } else {
        1
    }
}

/// Buffers of stored data packs kept for reuse, at most [`SpareBuffers::MAX`].
///
/// Without them every pack allocates its 16 MiB anew. glibc serves such blocks from
/// per-thread arenas once a few have been freed, and keeps the freed ones there: a first
/// backup of the Linux tree peaked at 220–237 MiB without reuse and 190–199 MiB with it.
#[derive(Default)]
struct SpareBuffers(Mutex<Vec<Vec<u8>>>);

impl SpareBuffers {
    /// Most buffers kept.
    const MAX: usize = 2;

    /// A spare buffer, or a new empty one.
    fn take(&self) -> Vec<u8> {
        lock(&self.0).pop().unwrap_or_default()
    }

    /// Keeps the buffer of a stored pack if it is the only holder of its bytes, its buffer
    /// is at least `min_capacity` and fewer than [`SpareBuffers::MAX`] are kept.
    fn give_back(&self, bytes: Bytes, min_capacity: usize) {
        let Ok(bytes) = bytes.try_into_mut() else {
            return;
        };
        let buf = Vec::from(bytes);
        let mut spare = lock(&self.0);
        if buf.capacity() >= min_capacity && spare.len() < Self::MAX {
            spare.push(buf);
        }
    }
}

/// A blob handed to the sealer threads.
struct SealJob {
    kind: PackKind,
    id: Id,
    payload: QueuedCopy,
}

/// Threads that compress, encrypt and pack the blobs handed over with
/// [`BlobSaver::save_blob_queued`], so that the chunks of one large file keep every core busy.
/// They start with the first queued blob (a saver that only stores blobs itself, as repair
/// does, starts none). When the last [`BlobSaver`] holding the pool is dropped, or `finish`
/// closes it, the channel closes and the threads end.
struct Sealers {
    shared: Arc<Shared>,
    state: Mutex<SealerState>,
    queued: Arc<Queued>,
    /// One per core.
    threads: usize,
}

enum SealerState {
    NotStarted,
    Running(crossbeam_channel::Sender<SealJob>),
    Closed,
}

/// Blobs handed to the sealers and not yet in a pack, and the memory their copies hold; and the
/// buffers of large sealed blobs, kept for the next copies.
struct Queued {
    state: Mutex<QueuedState>,
    changed: Condvar,
    /// Most bytes of buffers queued or being sealed, beyond the first blob.
    limit: usize,
    /// Most bytes of buffers kept for reuse (and never more than the queue leaves of `limit`).
    keep_limit: usize,
}

#[derive(Default)]
struct QueuedState {
    count: usize,
    /// Capacity of the queued copies' buffers together.
    bytes: usize,
    /// Buffers of sealed blobs of at least [`RECYCLED_MIN`] bytes, and their capacity together.
    free: Vec<Vec<u8>>,
    free_bytes: usize,
    /// Callers of [`Queued::add`] are served in turn, so that a large blob waiting for room is
    /// not passed again and again by small ones.
    next_ticket: u64,
    serving: u64,
}

/// Most bytes of blobs queued for the sealers or being sealed, per sealer thread: besides the
/// queue's two blobs per thread, a bound that holds when the blobs are large (the chunks of long
/// runs of repeated bytes are of the maximum size, 8 MiB by default), so that each thread
/// seals one such blob while none waits.
const QUEUED_BYTES_PER_THREAD: usize = 8 << 20;

/// Most bytes of buffers kept for reuse, however many threads.
const KEPT_BYTES: usize = 32 << 20;

/// Copies of blobs this large go into buffers that are reused once sealed (with capacities in
/// whole multiples of it). glibc maps blocks of 1 MiB or more afresh (the threshold the CLI
/// fixes), so without reuse each copy of a large chunk faults in and zeroes its pages, and each
/// free unmaps them again.
const RECYCLED_MIN: usize = 1 << 20;

/// The copy of a queued blob, counted in the queue until it is dropped (sealed, or dropped
/// unsealed when the sealer threads are gone), when its buffer goes back for reuse.
struct QueuedCopy {
    buf: Vec<u8>,
    /// The capacity counted for it.
    counted: usize,
    queued: Arc<Queued>,
}

impl Drop for QueuedCopy {
    fn drop(&mut self) {
        self.queued
            .done(self.counted, std::mem::take(&mut self.buf));
    }
}

impl Queued {
    fn new(threads: usize) -> Self {
        let limit = QUEUED_BYTES_PER_THREAD * threads.max(1);
        Queued {
            state: Mutex::default(),
            changed: Condvar::new(),
            limit,
            keep_limit: limit.min(KEPT_BYTES),
        }
    }

    /// Counts a blob of `len` bytes in, first waiting for its turn and while the queued copies
    /// already hold the limit with it (a blob larger than the limit waits until nothing else is
    /// queued). Returns an empty buffer for its copy: a kept one of its size, or a new one.
    /// Memory is allocated and freed outside the lock.
    fn add(self: &Arc<Self>, len: usize) -> QueuedCopy {
        let planned = if len < RECYCLED_MIN {
            len
        } else {
            len.next_multiple_of(RECYCLED_MIN)
        };
        let mut state = lock(&self.state);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        while state.serving != ticket || (state.bytes > 0 && state.bytes + planned > self.limit) {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.serving += 1;
        // A kept buffer of this size, or of the next (its pages are in use: all of it is
        // counted), if the limit leaves room for it.
        let room = if state.bytes == 0 {
            usize::MAX
        } else {
            self.limit.saturating_sub(state.bytes)
        };
        let largest = planned.saturating_add(RECYCLED_MIN).min(room);
        let fit = (state.free.iter().enumerate())
            .filter(|(_, b)| (planned..=largest).contains(&b.capacity()))
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let kept = fit.map(|i| state.free.swap_remove(i));
        let counted = kept.as_ref().map_or(planned, Vec::capacity);
        if let Some(buf) = &kept {
            state.free_bytes -= buf.capacity();
        }
        state.count += 1;
        state.bytes += counted;
        // Kept buffers give way to queued copies.
        let mut dropped = Vec::new();
        while state.bytes + state.free_bytes > self.limit
            && let Some(buf) = state.free.pop()
        {
            state.free_bytes -= buf.capacity();
            dropped.push(buf);
        }
        self.changed.notify_all();
        drop(state);
        drop(dropped);
        QueuedCopy {
            buf: kept.unwrap_or_else(|| Vec::with_capacity(counted)),
            counted,
            queued: Arc::clone(self),
        }
    }

    /// Counts a copy out (`counted` bytes), keeping its buffer for reuse while the queued
    /// copies and the kept buffers stay within the limit together, and the kept ones within
    /// their own.
    fn done(&self, counted: usize, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        buffer.clear();
        let mut state = lock(&self.state);
        state.count = state.count.saturating_sub(1);
        state.bytes = state.bytes.saturating_sub(counted);
        if capacity >= RECYCLED_MIN
            && state.bytes + state.free_bytes + capacity <= self.limit
            && state.free_bytes + capacity <= self.keep_limit
        {
            state.free_bytes += capacity;
            state.free.push(std::mem::take(&mut buffer));
        }
        self.changed.notify_all();
        drop(state);
        drop(buffer);
    }

    fn wait_empty(&self) {
        let mut state = lock(&self.state);
        while state.count > 0 {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Fails the saver if a sealer thread panics while it is held.
struct PanicGuard<'a>(&'a Shared);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("a sealer thread panicked".into());
        }
    }
}

impl Sealers {
    fn new(shared: &Arc<Shared>) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Sealers {
            shared: Arc::clone(shared),
            state: Mutex::new(SealerState::NotStarted),
            queued: Arc::new(Queued::new(threads)),
            threads,
        }
    }

    /// The queue to the threads, starting them on first use; `None` once closed.
    fn sender(&self) -> Result<Option<crossbeam_channel::Sender<SealJob>>> {
        let mut state = lock(&self.state);
        match &*state {
            SealerState::Running(tx) => return Ok(Some(tx.clone())),
            SealerState::Closed => return Ok(None),
            SealerState::NotStarted => {}
        }
        let tx = self.spawn()?;
        *state = SealerState::Running(tx.clone());
        Ok(Some(tx))
    }

    /// Closes the queue; the threads end once it is drained.
    fn close(&self) {
        *lock(&self.state) = SealerState::Closed;
    }

    /// One thread per core, with a queue of two blobs per thread (and at most
    /// [`QUEUED_BYTES_PER_THREAD`] each, counted by [`Queued`]).
    fn spawn(&self) -> Result<crossbeam_channel::Sender<SealJob>> {
        let threads = self.threads;
        let (tx, rx) = crossbeam_channel::bounded::<SealJob>(threads * 2);
        for i in 0..threads {
            let (rx, shared) = (rx.clone(), Arc::clone(&self.shared));
            std::thread::Builder::new()
                .name(format!("zaibei-seal-{i}"))
                .spawn(move || {
                    for job in rx {
                        // The job's copy is counted out when it drops, even in a panic, so
                        // `finish` cannot wait forever.
                        let _guard = PanicGuard(&shared);
                        if let Err(e) = shared.store_blob(job.kind, job.id, &job.payload.buf) {
                            shared.fail(format!("blob {}: {e}", job.id));
                        }
                    }
                })
                .map_err(|e| RepoError::Internal(format!("starting a sealer thread: {e}")))?;
        }
        Ok(tx)
    }
}

/// Saves blobs into new packs; see the module docs.
#[derive(Clone)]
pub struct BlobSaver {
    shared: Arc<Shared>,
    /// `None` in the watcher's own handle, so that the watcher does not keep the threads alive.
    sealers: Option<Arc<Sealers>>,
    uploader: Arc<Mutex<Option<UploaderHandle>>>,
    watcher: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// The uploader task; it returns the number of packs and index objects written.
type UploaderHandle = JoinHandle<Result<(u64, u64)>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlobSaver {
    /// Starts a saver with at most `connections` uploads at a time. Must be called inside a
    /// tokio runtime. Reads the `condemned` state first (see the module docs).
    pub async fn start(repo: Arc<IndexedRepository>, connections: usize) -> Result<Self> {
        repo.keys()
            .content("backup")
            .map_err(|e| RepoError::format("key", e))?;
        let state = repo.condemned_state().await?;
        let watch = PruneWatch {
            generation: state.generation,
            excluded: state.condemned.packs.iter().map(|p| p.id).collect(),
            interval: recheck_interval(state.condemned.margin),
        };
        let connections = connections.max(1);
        // One finished pack waits while `connections` are being stored: a deeper queue would
        // only hold more 16 MiB packs in memory.
        let (tx, rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            zstd_level: repo.config().zstd_level,
            pack_size: usize::try_from(repo.config().pack_size).unwrap_or(usize::MAX),
            repo: Arc::clone(&repo),
            seen: Default::default(),
            pools: Default::default(),
            spare: Default::default(),
            unnamed: Default::default(),
            named_together: named_together(repo.suite()),
            tx: Mutex::new(Some(tx)),
            failure: Mutex::new(None),
            watch: std::sync::RwLock::new(watch),
            relied: PackBits::new(repo.index().packs().len()),
            condemned_bits: PackBits::new(repo.index().packs().len()),
            own: Mutex::new(IdSet::default()),
            rescued: Mutex::new(IdSet::default()),
            recheck_lock: tokio::sync::Mutex::new(()),
            data_blobs: AtomicU64::new(0),
            tree_blobs: AtomicU64::new(0),
            bytes_raw: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
        });
        for (n, p) in repo.index().packs().iter().enumerate() {
            if read(&shared.watch).excluded.contains(&p.id) {
                shared.condemned_bits.set(n);
            }
        }
        let sealers = Arc::new(Sealers::new(&shared));
        let handle = tokio::spawn(upload_loop(Arc::clone(&shared), rx, connections));
        let saver = BlobSaver {
            shared,
            sealers: Some(sealers),
            uploader: Arc::new(Mutex::new(Some(handle))),
            watcher: Arc::new(Mutex::new(None)),
        };
        let watcher = tokio::spawn(watch_loop(BlobSaver {
            sealers: None,
            ..saver.clone()
        }));
        *lock(&saver.watcher) = Some(watcher);
        Ok(saver)
    }

    /// The content keys, which name blobs.
    fn content_keys(&self) -> Result<&ContentKeys> {
        self.shared
            .repo
            .keys()
            .content("backup")
            .map_err(|e| RepoError::format("key", e))
    }

    /// The id a blob with this plaintext would have.
    pub fn blob_id(&self, plaintext: &[u8]) -> Result<Id> {
        Ok(self.content_keys()?.blob_id(plaintext))
    }

    /// The ids of many blobs at once, in order (multi-buffer HMAC-SM3 in the `gm` suite, several
    /// times faster than one plaintext at a time).
    pub fn blob_ids(&self, plaintexts: &[&[u8]]) -> Result<Vec<Id>> {
        Ok(self.content_keys()?.blob_ids(plaintexts))
    }

    /// True when the repository already has the blob (outside condemned packs) or this saver
    /// stored it.
    pub fn has_blob(&self, kind: PackKind, id: &Id) -> bool {
        self.indexed(kind, id) || lock(&self.shared.seen[kind.slot()]).contains(id)
    }

    /// True when the loaded index has the blob in a pack not condemned; records the reliance.
    fn indexed(&self, kind: PackKind, id: &Id) -> bool {
        let s = &self.shared;
        let Some(pack) = s.repo.index().pack_number(kind, id) else {
            return false;
        };
        if s.condemned_bits.get(pack) {
            return false;
        }
        s.relied.set(pack);
        true
    }

    /// Stores a blob unless it is already known; returns true when it was new. Blocks while
    /// uploads are behind. Call from a blocking thread, never from an async task.
    pub fn save_blob(&self, kind: PackKind, id: Id, payload: &[u8]) -> Result<bool> {
        let s = &self.shared;
        if self.indexed(kind, &id) || !lock(&s.seen[kind.slot()]).insert(id) {
            return Ok(false);
        }
        self.shared.store_blob(kind, id, payload)?;
        Ok(true)
    }

    /// Like [`save_blob`](Self::save_blob), but a new blob is copied and compressed, encrypted
    /// and packed on the saver's own threads while the caller goes on (reading the next chunks,
    /// say). Blocks while those threads are behind, which bounds the memory held by queued
    /// blobs. Call from a blocking thread, never from an async task.
    pub fn save_blob_queued(&self, kind: PackKind, id: Id, payload: &[u8]) -> Result<bool> {
        let s = &self.shared;
        if self.indexed(kind, &id) || !lock(&s.seen[kind.slot()]).insert(id) {
            return Ok(false);
        }
        s.check_failure()?;
        let pool = match &self.sealers {
            Some(p) => p.sender()?.map(|tx| (p, tx)),
            None => None,
        };
        match pool {
            Some((pool, tx)) => {
                let mut copy = pool.queued.add(payload.len());
                copy.buf.extend_from_slice(payload);
                if tx
                    .send(SealJob {
                        kind,
                        id,
                        payload: copy,
                    })
                    .is_err()
                {
                    return Err(RepoError::Internal("sealer threads stopped".into()));
                }
            }
            None => s.store_blob(kind, id, payload)?,
        }
        Ok(true)
    }

    /// Waits until the sealer threads have packed every blob handed to them.
    async fn wait_sealed(&self) -> Result<()> {
        if let Some(pool) = &self.sealers {
            let queued = Arc::clone(&pool.queued);
            tokio::task::spawn_blocking(move || queued.wait_empty())
                .await
                .map_err(|e| RepoError::Internal(format!("waiting for the sealers: {e}")))?;
        }
        self.shared.check_failure()
    }

    /// Stores a blob even when the loaded index locates it (for a blob whose indexed copy is
    /// lost or damaged); only a blob this saver already stored is not stored twice. Returns
    /// true when it was stored. Call from a blocking thread, never from an async task.
    pub fn save_blob_again(&self, kind: PackKind, id: Id, payload: &[u8]) -> Result<bool> {
        if !lock(&self.shared.seen[kind.slot()]).insert(id) {
            return Ok(false);
        }
        self.shared.store_blob(kind, id, payload)?;
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
            blobs_rescued: lock(&s.rescued).len() as u64,
        }
    }

    /// Sends every open pack, and every pack waiting for its name, to the uploader.
    async fn flush_pools(&self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || -> Result<()> {
            for kind in PackKind::ALL {
                let writers: Vec<PackWriter> =
                    std::mem::take(&mut *lock(&shared.pools[kind.slot()]));
                for w in writers.into_iter().filter(|w| !w.is_empty()) {
                    shared.send(w)?;
                }
            }
            shared.name_waiting()
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))?
    }

    /// Closes every open pack, waits until every pack is stored and indexed, and makes sure
    /// none of the blobs saved or relied on lives only in a pack a prune has condemned (storing
    /// such blobs again). After this returns `Ok`, every blob saved is stored and indexed, and a
    /// snapshot referring to them may be published at once.
    pub async fn finish(&self) -> Result<SaverStats> {
        if let Some(w) = lock(&self.watcher).take() {
            w.abort();
        }
        self.wait_sealed().await?;
        if let Some(pool) = &self.sealers {
            // Every blob from now on is stored on the calling thread; the sealers end.
            pool.close();
        }
        loop {
            self.flush_pools().await?;
            let tx = lock(&self.shared.tx).clone();
            let Some(tx) = tx else {
                return Err(RepoError::Internal("blob saver finished twice".into()));
            };
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(UploadMsg::Flush(done_tx)).await.is_err() || done_rx.await.is_err() {
                self.shared.check_failure()?;
                return Err(RepoError::Internal("pack uploader stopped".into()));
            }
            self.shared.check_failure()?;
            if self.recheck().await? == 0 {
                break;
            }
        }
        // Nothing may be left unstored: a blob stored after the last flush (a rescue the
        // watcher had under way when it was stopped) is in no pack yet, and a snapshot must
        // not refer to it.
        let left_open = self
            .shared
            .pools
            .iter()
            .any(|pool| lock(pool).iter().any(|w| !w.is_empty()));
        if left_open || !lock(&self.shared.unnamed).is_empty() {
            return Err(RepoError::Internal(
                "blobs were stored after the last flush of the saver; the backup stops".into(),
            ));
        }
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

    /// Re-reads the `condemned` state; when a prune condemned packs since the last read, stores
    /// again every blob of those packs that this saver relied on or wrote and that no other pack
    /// holds. Returns the number of blobs stored again.
    pub async fn recheck(&self) -> Result<u64> {
        let s = &self.shared;
        let _one_at_a_time = s.recheck_lock.lock().await;
        let state = s.repo.condemned_state().await?;
        if state.generation == read(&s.watch).generation {
            return Ok(0);
        }
        let condemned: IdSet = state.condemned.packs.iter().map(|p| p.id).collect();
        let mine: IdSet = {
            let packs = s.repo.index().packs();
            let mut m: IdSet = s.relied.ones().map(|n| packs[n].id).collect();
            m.extend(lock(&s.own).iter().copied());
            m
        };
        // A pack relied on that is neither condemned nor stored any more was deleted while this
        // saver was not looking (it ran past the margin without a re-read): the data is gone.
        let present: IdSet = s
            .repo
            .store()
            .list(names::DATA)
            .await?
            .iter()
            .filter_map(|o| names::id_of(&o.name))
            .collect();
        if let Some(gone) = mine.iter().find(|p| !present.contains(p)) {
            return Err(RepoError::Refused(format!(
                "pack {gone}, which this backup relies on, was deleted by a prune while the \
                 backup ran (it was not re-checked within the safety margin); no snapshot is \
                 written: run the backup again"
            )));
        }
        let excluded_before = read(&s.watch).excluded.clone();
        let doomed: Vec<Id> = condemned
            .iter()
            .filter(|p| mine.contains(p) && !excluded_before.contains(p))
            .copied()
            .collect();
        let mut rescued = 0u64;
        for pack in &doomed {
            rescued += self.rescue_pack(pack, &condemned).await?;
        }
        {
            let mut w = write(&s.watch);
            w.generation = state.generation;
            for (n, p) in s.repo.index().packs().iter().enumerate() {
                if condemned.contains(&p.id) {
                    s.condemned_bits.set(n);
                }
            }
            w.excluded = condemned;
            w.interval = recheck_interval(state.condemned.margin);
        }
        // Every blob of those packs is stored again: they no longer matter to this saver.
        for pack in &doomed {
            if let Some(n) = s.repo.index().pack_position(pack) {
                s.relied.clear(n);
            }
            lock(&s.own).remove(pack);
        }
        if rescued > 0 {
            tracing::info!(
                "a prune condemned packs this backup uses: {rescued} blobs stored again"
            );
        }
        Ok(rescued)
    }

    /// Stores again the blobs of a condemned pack that no live pack of the loaded index holds.
    async fn rescue_pack(&self, pack: &Id, condemned: &IdSet) -> Result<u64> {
        let s = &self.shared;
        let name = names::pack(pack);
        let bytes = s.repo.get_verified(&name).await?;
        let (kind, salt, header) =
            crate::repack::parse_pack(s.repo.keys().maintenance(), &name, &bytes)?;
        let meta = crate::PackMeta {
            id: *pack,
            kind,
            salt,
            size: bytes.len() as u64,
        };
        let mut payloads = Vec::new();
        for b in &header {
            let live_elsewhere = s
                .repo
                .index()
                .lookup(kind, &b.id)
                .is_some_and(|l| !condemned.contains(&l.pack.id));
            if live_elsewhere || !lock(&s.rescued).insert(b.id) {
                continue;
            }
            let loc = crate::BlobRef {
                pack: &meta,
                offset: b.offset,
                length: b.length,
                raw_length: b.raw_length,
            };
            let stored = crate::repack::blob_record(&name, &bytes, b)?;
            payloads.push((b.id, s.repo.open_stored_blob(kind, &b.id, &loc, stored)?));
        }
        let n = payloads.len() as u64;
        let this = self.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for (id, payload) in payloads {
                lock(&this.shared.seen[kind.slot()]).insert(id);
                this.shared.store_blob(kind, id, &payload)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))??;
        Ok(n)
    }
}

fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// One bit per pack of the loaded index, set and read without locks (deduplication consults
/// it for every blob).
struct PackBits(Vec<AtomicU64>);

impl PackBits {
    fn new(packs: usize) -> Self {
        PackBits((0..packs.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }
    fn get(&self, n: usize) -> bool {
        self.0[n / 64].load(Ordering::Relaxed) & (1 << (n % 64)) != 0
    }
    fn set(&self, n: usize) {
        // Read first: most calls find the bit set and need not write the shared line.
        if !self.get(n) {
            self.0[n / 64].fetch_or(1 << (n % 64), Ordering::Relaxed);
        }
    }
    fn clear(&self, n: usize) {
        self.0[n / 64].fetch_and(!(1 << (n % 64)), Ordering::Relaxed);
    }
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.0.len() * 64).filter(|&n| self.get(n))
    }
}

/// A quarter of the margin, within [`RECHECK_BOUNDS`].
fn recheck_interval(margin_secs: u64) -> Duration {
    (Duration::from_secs(margin_secs) / 4).clamp(RECHECK_BOUNDS.0, RECHECK_BOUNDS.1)
}

/// Re-reads the `condemned` state at intervals while the saver runs.
async fn watch_loop(saver: BlobSaver) {
    loop {
        let interval = read(&saver.shared.watch).interval;
        tokio::time::sleep(interval).await;
        // Only this task still holds the saver: it was dropped unfinished.
        if Arc::strong_count(&saver.uploader) <= 1 {
            return;
        }
        if let Err(e) = saver.recheck().await {
            saver.shared.fail(e.to_string());
            return;
        }
    }
}

async fn upload_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<UploadMsg>,
    connections: usize,
) -> Result<(u64, u64)> {
    let result = upload_all(&shared, &mut rx, connections).await;
    if let Err(e) = &result {
        shared.fail(e.to_string());
        rx.close();
    }
    result
}

async fn upload_all(
    shared: &Shared,
    rx: &mut mpsc::Receiver<UploadMsg>,
    connections: usize,
) -> Result<(u64, u64)> {
    let repo = &shared.repo;
    let mut inflight = tokio::task::JoinSet::new();
    let mut pending: Vec<IndexPack> = Vec::new();
    let (mut packs, mut index_objects) = (0u64, 0u64);
    let mut open = true;
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while open || !inflight.is_empty() {
        tokio::select! {
            msg = rx.recv(), if open && inflight.len() < connections && flushes.is_empty() => match msg {
                Some(UploadMsg::Pack(pack)) => {
                    let store = Arc::clone(repo.store());
                    let cache = repo.cache.clone().filter(|_| pack.index.kind != PackKind::Data);
                    let (spare, pack_size) = (Arc::clone(&shared.spare), shared.pack_size);
                    inflight.spawn(async move {
                        let name = names::pack(&pack.id);
                        let bytes = match pack.body {
                            PackBody::Staged(object) => {
                                store.publish(&name, object).await?;
                                return Ok::<_, RepoError>(pack.index);
                            }
                            PackBody::Memory(bytes) => bytes,
                        };
                        store.put(&name, bytes.clone()).await?;
                        match cache {
                            Some(cache) => {
                                let id = pack.id;
                                tokio::task::spawn_blocking(move || cache.put_pack(&id, &bytes))
                                    .await
                                    .map_err(|e| RepoError::Internal(format!("cache task: {e}")))?;
                            }
                            None if pack.index.kind == PackKind::Data => {
                                spare.give_back(bytes, pack_size);
                            }
                            None => {}
                        }
                        Ok::<_, RepoError>(pack.index)
                    });
                }
                Some(UploadMsg::Flush(reply)) => flushes.push(reply),
                None => open = false,
            },
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                let index = done.map_err(|e| RepoError::Internal(format!("upload task: {e}")))??;
                lock(&shared.own).insert(index.id);
                packs += 1;
                pending.push(index);
                if pending.len() >= PACKS_PER_INDEX {
                    write_index(repo, std::mem::take(&mut pending)).await?;
                    index_objects += 1;
                }
            }
        }
        if !flushes.is_empty() && inflight.is_empty() {
            if !pending.is_empty() {
                write_index(repo, std::mem::take(&mut pending)).await?;
                index_objects += 1;
            }
            for reply in flushes.drain(..) {
                let _ = reply.send(());
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
    write_index_superseding(repo, packs, Vec::new()).await
}

/// Writes one index object listing `packs` that makes the index objects `supersedes`
/// redundant; returns its id.
pub(crate) async fn write_index_superseding(
    repo: &IndexedRepository,
    packs: Vec<IndexPack>,
    supersedes: Vec<Id>,
) -> Result<Id> {
    let file = IndexFile { packs, supersedes };
    let maint = repo.keys().maintenance().clone();
    let bytes = tokio::task::spawn_blocking(move || file.seal(&maint))
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))?
        .map_err(|e| RepoError::format("new index", e))?;
    repo.put_hashed(names::INDEX, bytes).await
}

/// Writes index objects listing `packs`, [`PACKS_PER_INDEX`] to an object; the last one (empty
/// when `packs` is) makes the index objects `supersedes` redundant. Every object listing packs
/// is stored before the one that supersedes, so a reader never loses a pack: the caller may
/// delete the superseded objects once this returns. Returns the ids written.
pub(crate) async fn write_index_chunks(
    repo: &IndexedRepository,
    mut packs: Vec<IndexPack>,
    supersedes: &[Id],
) -> Result<Vec<Id>> {
    let mut written = Vec::new();
    loop {
        let tail = packs.split_off(packs.len().min(PACKS_PER_INDEX));
        let chunk = std::mem::replace(&mut packs, tail);
        let last = packs.is_empty();
        let supersede = if last {
            supersedes.to_vec()
        } else {
            Vec::new()
        };
        written.push(write_index_superseding(repo, chunk, supersede).await?);
        if last {
            return Ok(written);
        }
    }
}

impl std::fmt::Debug for BlobSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSaver")
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(queued: &Queued) -> (usize, usize, usize) {
        let state = lock(&queued.state);
        (state.count, state.bytes, state.free_bytes)
    }

    #[test]
    fn queued_blobs_wait_in_turn_while_their_buffers_are_over_the_limit() {
        let mb = 1 << 20;
        let queued = Arc::new(Queued::new(1));
        assert_eq!(queued.limit, QUEUED_BYTES_PER_THREAD);
        // A blob larger than the limit goes in when nothing else is queued.
        drop(queued.add(QUEUED_BYTES_PER_THREAD + mb));
        assert_eq!(counts(&queued).0, 0);
        let five = queued.add(5 * mb);
        let two = queued.add(2 * mb - 100);
        assert_eq!(two.counted, 2 * mb, "counted by the capacity of its buffer");
        let (tx, rx) = std::sync::mpsc::channel();
        let spawn = |len: usize, tx: std::sync::mpsc::Sender<usize>| {
            let queued = Arc::clone(&queued);
            std::thread::spawn(move || {
                let copy = queued.add(len);
                tx.send(len).unwrap();
                copy
            })
        };
        // 5 + 2 + 3 MiB is over the 8 MiB limit: the 3 MiB blob waits, and a small one that
        // comes after it waits behind it although it would fit.
        let three = spawn(3 * mb, tx.clone());
        // Three tickets taken before it: the oversized blob's, `five`'s and `two`'s.
        while lock(&queued.state).next_ticket < 4 {
            std::thread::yield_now();
        }
        let small = spawn(500_000, tx);
        let no_more = |rx: &std::sync::mpsc::Receiver<usize>| {
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        };
        assert!(no_more(&rx));
        let wait = std::time::Duration::from_secs(10);
        drop(two);
        assert_eq!(rx.recv_timeout(wait).unwrap(), 3 * mb);
        // 5 + 3 MiB: now the small one does not fit.
        assert!(no_more(&rx));
        drop(five);
        assert_eq!(rx.recv_timeout(wait).unwrap(), 500_000);
        let (three, small) = (three.join().unwrap(), small.join().unwrap());
        assert_eq!(counts(&queued).0, 2);
        drop((three, small));
        assert_eq!(counts(&queued).0, 0);
        assert_eq!(counts(&queued).1, 0);
    }

    #[test]
    fn buffers_of_large_sealed_blobs_are_reused_within_the_limits() {
        let mb = 1 << 20;
        let queued = Arc::new(Queued::new(2));
        let limit = 2 * QUEUED_BYTES_PER_THREAD;
        // Small copies get buffers of their size, never kept.
        let small = queued.add(1000);
        assert_eq!(small.buf.capacity(), 1000);
        drop(small);
        assert_eq!(counts(&queued), (0, 0, 0));
        // A large copy gets whole MiB; once sealed its buffer is kept, emptied, and handed to
        // the next copy of its size.
        let mut a = queued.add(3 * mb - 5);
        assert_eq!(a.buf.capacity(), 3 * mb);
        a.buf.extend_from_slice(&vec![1; 3 * mb - 5]);
        let a_at = a.buf.as_ptr();
        let b = queued.add(5 * mb);
        drop(a);
        drop(b);
        assert_eq!(counts(&queued), (0, 0, 8 * mb));
        let c = queued.add(2 * mb + 1);
        assert_eq!(c.buf.as_ptr(), a_at);
        assert!(c.buf.is_empty());
        assert_eq!(c.counted, 3 * mb);
        // A buffer two sizes larger is not used: a new one is.
        let d = queued.add(mb);
        assert_eq!(d.buf.capacity(), mb);
        drop(d);
        // Queued copies and kept buffers stay within the limit together.
        let big = queued.add(limit - 4 * mb);
        {
            let (_, bytes, free) = counts(&queued);
            assert!(bytes + free <= limit, "{bytes} + {free}");
        }
        drop(c);
        drop(big);
        let (count, bytes, free) = counts(&queued);
        assert_eq!((count, bytes), (0, 0));
        assert!(free <= queued.keep_limit);
        let state = lock(&queued.state);
        assert_eq!(free, state.free.iter().map(Vec::capacity).sum::<usize>());
    }

    #[test]
    fn kept_buffers_are_bounded_however_many_threads() {
        let mb = 1 << 20;
        let queued = Arc::new(Queued::new(64));
        assert_eq!(queued.keep_limit, KEPT_BYTES);
        let copies: Vec<_> = (0..40).map(|_| queued.add(2 * mb)).collect();
        drop(copies);
        let (count, bytes, free) = counts(&queued);
        assert_eq!((count, bytes), (0, 0));
        assert_eq!(free, KEPT_BYTES);
    }

    #[test]
    fn a_stored_pack_gives_its_buffer_back_without_a_copy() {
        let spare = SpareBuffers::default();
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(&[7; 1000]);
        let address = buf.as_ptr();
        spare.give_back(Bytes::from(buf), 1 << 20);
        let again = spare.take();
        assert_eq!(again.as_ptr(), address, "the allocation itself comes back");
        assert!(again.capacity() >= 1 << 20);
        assert!(spare.take().capacity() == 0, "one buffer was kept, not two");
    }

    #[test]
    fn shared_small_or_surplus_buffers_are_not_kept() {
        let spare = SpareBuffers::default();
        let bytes = Bytes::from(vec![1u8; 4096]);
        let other = bytes.clone();
        spare.give_back(bytes, 1024);
        assert_eq!(spare.take().capacity(), 0, "still held elsewhere");
        drop(other);
        spare.give_back(Bytes::from(vec![1u8; 100]), 1024);
        assert_eq!(spare.take().capacity(), 0, "smaller than a pack");
        for _ in 0..SpareBuffers::MAX + 3 {
            spare.give_back(Bytes::from(vec![1u8; 2048]), 1024);
        }
        assert_eq!(lock(&spare.0).len(), SpareBuffers::MAX);
    }
}
