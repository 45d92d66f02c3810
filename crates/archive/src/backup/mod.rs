//! Backing up directory trees and streams.
//!
//! ```text
//! scout thread (started before the repository is opened; lists and lstats the sources)
//!      │ listings, at most 12 MiB
//!      ▼
//! walker thread ──file jobs──▶ N file workers ──▶ BlobSaver (packs) ──▶ uploader task
//!      │  (lstat, compare with parent)   │ read, chunk, hash, compress, encrypt
//!      ├──tree jobs (post-order)──▶ assembler thread ── waits for each entry's result,
//!      │                                                 stores the tree, answers its parent
//!      └──directories entered and left──▶ prefetch thread (loads the parent snapshot's trees
//!                                          depth first, holds them for the walker)
//! ```
//!
//! All channels are bounded, so memory does not grow with the size of the tree. An unchanged
//! file (same size, mtime, ctime and inode as in the parent snapshot, and all its blobs present)
//! costs one `lstat`, made by the scout while the key is derived when it got there first.

mod assembler;
mod files;
mod prefetch;
mod scout;
pub mod sources;
mod stream;
mod walker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use zaibei_format::{Id, Snapshot, SnapshotSummary, Timestamp, Tree};
use zaibei_repo::{BlobSaver, IndexedRepository};

pub use scout::{SCOUT_BYTES, Scout};
pub use stream::{StreamOptions, backup_stream};

use crate::ArchiveError;
use crate::budget::WindowBudget;
use crate::chunker::Chunker;
use crate::exclude::Excludes;
use crate::progress::Counters;

/// Most files waiting, open, for the file workers.
const MAX_QUEUED_FILES: usize = 256;

/// Most entries kept in a snapshot's list of skipped entries.
pub const MAX_SKIPPED_RECORDED: usize = 1000;

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Source paths.
    pub paths: Vec<PathBuf>,
    /// Exclude patterns (gitignore syntax).
    pub excludes: Vec<String>,
    /// Files of exclude patterns.
    pub exclude_files: Vec<PathBuf>,
    /// Skip directories containing a file of one of these names.
    pub exclude_if_present: Vec<Vec<u8>>,
    /// Do not cross filesystem boundaries below a source.
    pub one_file_system: bool,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name for the snapshot.
    pub host: String,
    /// Parent snapshot for change detection (default: the newest with the same host and paths).
    pub parent: Option<Id>,
    /// Read every file even when unchanged.
    pub force: bool,
    /// File reading workers (0: number of CPUs).
    pub workers: usize,
    /// Concurrent uploads.
    pub connections: usize,
    /// Time to record (default: now).
    pub time: Option<Timestamp>,
    /// Lists the sources ahead of the walk ([`Scout::start`], before opening the repository).
    pub scout: Option<Arc<Scout>>,
}

/// Entries skipped because they could not be read.
#[derive(Debug, Default)]
pub struct Skipped {
    list: Mutex<Vec<(Vec<u8>, String)>>,
    count: std::sync::atomic::AtomicU64,
}

impl Skipped {
    /// Records a skipped entry.
    pub fn record(&self, path: &[u8], reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!("skipped {}: {reason}", String::from_utf8_lossy(path));
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut l = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() < MAX_SKIPPED_RECORDED {
            l.push((path.to_vec(), reason));
        }
    }

    fn take(&self) -> (Vec<(Vec<u8>, String)>, u64) {
        let l = std::mem::take(&mut *self.list.lock().unwrap_or_else(|p| p.into_inner()));
        (l, self.count.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// The result of a backup.
#[derive(Debug)]
pub struct BackupOutcome {
    /// Id of the new snapshot.
    pub snapshot_id: Id,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Id of the parent used for change detection.
    pub parent: Option<Id>,
}

/// What the pipeline threads share.
pub(crate) struct Context<'a> {
    pub repo: &'a IndexedRepository,
    pub saver: &'a BlobSaver,
    pub chunker: &'a Chunker,
    pub excludes: &'a Excludes,
    pub opts: &'a BackupOptions,
    pub counters: &'a Counters,
    pub skipped: &'a Skipped,
    pub runtime: tokio::runtime::Handle,
    /// What the file readers may add to their read windows, together.
    pub window_budget: &'a WindowBudget,
}

/// A backup whose snapshot is not stored yet (see [`backup_unpublished`]).
#[derive(Debug)]
pub struct UnpublishedBackup {
    /// The snapshot, ready to store.
    pub snapshot: Snapshot,
    /// Id of the parent used for change detection.
    pub parent: Option<Id>,
}

/// Backs up `opts.paths` into a new snapshot.
pub async fn backup(
    repo: Arc<IndexedRepository>,
    opts: BackupOptions,
    counters: Arc<Counters>,
) -> Result<BackupOutcome, ArchiveError> {
    let done = backup_unpublished(Arc::clone(&repo), opts, counters).await?;
    let snapshot_id = repo.save_snapshot(&done.snapshot).await?;
    Ok(BackupOutcome {
        snapshot_id,
        snapshot: done.snapshot,
        parent: done.parent,
    })
}

/// Backs up `opts.paths` like [`backup`], all data and trees stored, but leaves the snapshot
/// to the caller (who may find it equal to its parent and not store it).
pub async fn backup_unpublished(
    repo: Arc<IndexedRepository>,
    opts: BackupOptions,
    counters: Arc<Counters>,
) -> Result<UnpublishedBackup, ArchiveError> {
    if opts.paths.is_empty() {
        return Err(ArchiveError::Usage(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let start = Timestamp::now();
    let paths = sources::normalise(&opts.paths)?;
    let path_bytes: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
        .collect();
    let excludes = Excludes::new(&opts.excludes, &opts.exclude_files)?;
    let (parent_id, parent_tree) = find_parent(&repo, &opts, &path_bytes).await?;
    if parent_tree.is_none()
        && let Some(scout) = &opts.scout
    {
        // Without a parent snapshot every file is read: the file readers set the pace, not
        // the walker's system calls, and the listings would only hold memory.
        scout.stop();
    }
    let chunker = Chunker::new(repo.suite(), &repo.chunker_seed()?, repo.config().chunker);
    let saver = BlobSaver::start(Arc::clone(&repo), opts.connections.max(1)).await?;
    let skipped = Skipped::default();
    let runtime = tokio::runtime::Handle::current();
    let trie = sources::build_trie(&paths);

    let walk = {
        let (repo, saver) = (Arc::clone(&repo), saver.clone());
        let counters = Arc::clone(&counters);
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || {
            // One widened read window at a time (see `files::Window`).
            let window_budget = WindowBudget::new(files::READ_WINDOW_EXTRA_BYTES as u64);
            let ctx = Context {
                repo: &repo,
                saver: &saver,
                chunker: &chunker,
                excludes: &excludes,
                opts: &opts,
                counters: &counters,
                skipped: &skipped,
                runtime,
                window_budget: &window_budget,
            };
            let result = run_pipeline(&ctx, &trie, parent_tree);
            (result, skipped)
        })
    };
    let (result, skipped) = walk
        .await
        .map_err(|e| ArchiveError::Internal(format!("backup pipeline: {e}")))?;
    let (root, mut summary) = result?;
    let stats = saver.finish().await?;
    let (skipped_list, skipped_count) = skipped.take();
    // Metadata the walker took from the scout dates from when the scout started (before the
    // password was asked for, the key derived and the index loaded).
    summary.start = match &opts.scout {
        Some(scout) if scout.used() > 0 => scout.started().min(start),
        _ => start,
    };
    summary.end = Timestamp::now();
    summary.data_blobs_added = stats.data_blobs;
    summary.tree_blobs_added = stats.tree_blobs;
    summary.bytes_added_raw = stats.bytes_raw;
    summary.bytes_added_stored = stats.bytes_stored;
    summary.bytes_read = Counters::get(&counters.bytes);
    summary.skipped = skipped_list;
    summary.skipped_count = skipped_count;
    let snapshot = new_snapshot(&opts, root, path_bytes, parent_id, summary);
    Ok(UnpublishedBackup {
        snapshot,
        parent: parent_id,
    })
}

fn run_pipeline(
    ctx: &Context<'_>,
    trie: &sources::SourceNode,
    parent_tree: Option<Arc<Tree>>,
) -> Result<(Id, SnapshotSummary), ArchiveError> {
    let workers = if ctx.opts.workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        ctx.opts.workers
    };
    // Each queued file is an open descriptor: enough for every worker to take a full group of
    // small files, but never more than `MAX_QUEUED_FILES` however many cores there are.
    let queued_files = (workers * files::BATCH_FILES).min(MAX_QUEUED_FILES);
    let (file_tx, file_rx) = crossbeam_channel::bounded::<files::FileJob>(queued_files);
    let (tree_tx, tree_rx) = crossbeam_channel::bounded::<assembler::TreeJob>(1024);
    let prefetcher = prefetch::Prefetcher::default();
    std::thread::scope(|scope| {
        // Closes the prefetcher however the walk ends (a panic included), so its thread ends.
        let _closer = prefetch::CloseOnDrop(&prefetcher);
        let mut handles = Vec::new();
        for i in 0..workers {
            let rx = file_rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("zaibei-read-{i}"))
                    .spawn_scoped(scope, move || files::run_worker(ctx, rx))
                    .map_err(|e| ArchiveError::Internal(format!("starting a worker: {e}")))?,
            );
        }
        drop(file_rx);
        let assembler = std::thread::Builder::new()
            .name("zaibei-trees".into())
            .spawn_scoped(scope, move || assembler::run(ctx, tree_rx))
            .map_err(|e| ArchiveError::Internal(format!("starting the assembler: {e}")))?;
        let prefetching = match parent_tree {
            Some(_) => Some(
                std::thread::Builder::new()
                    .name("zaibei-prefetch".into())
                    .spawn_scoped(scope, || prefetch::run(ctx, &prefetcher))
                    .map_err(|e| ArchiveError::Internal(format!("starting the prefetch: {e}")))?,
            ),
            None => None,
        };
        let walked = walker::walk(
            ctx,
            trie,
            parent_tree,
            prefetching.as_ref().map(|_| &prefetcher),
            &file_tx,
            &tree_tx,
        );
        if let Some(scout) = &ctx.opts.scout {
            scout.stop();
        }
        prefetcher.close();
        if let Some(h) = prefetching {
            let _ = h.join();
        }
        drop(file_tx);
        drop(tree_tx);
        for h in handles {
            let _ = h.join();
        }
        let assembled = assembler
            .join()
            .map_err(|_| ArchiveError::Internal("tree assembler panicked".into()))?;
        // The assembler's error is the root cause when both failed (the walker then only saw a
        // closed channel).
        let summary = assembled?;
        let root_rx = walked?;
        let root = root_rx
            .recv()
            .map_err(|_| ArchiveError::Internal("root tree was not assembled".into()))?;
        Ok((root, summary))
    })
}

async fn find_parent(
    repo: &IndexedRepository,
    opts: &BackupOptions,
    paths: &[Vec<u8>],
) -> Result<(Option<Id>, Option<Arc<Tree>>), ArchiveError> {
    let parent = match opts.parent {
        Some(id) => Some((id, repo.load_snapshot(&id).await?)),
        None if opts.force => None,
        None => {
            let list = repo.list_snapshots().await?;
            list.snapshots
                .into_iter()
                .rev()
                .find(|(_, s)| s.hostname == opts.host && s.paths == paths)
        }
    };
    match parent {
        None => Ok((None, None)),
        Some((id, snap)) => match repo.load_tree(&snap.tree).await {
            Ok(t) => Ok((Some(id), Some(t))),
            Err(e) => {
                tracing::warn!(
                    "parent snapshot {} unusable, reading everything: {e}",
                    id.short()
                );
                Ok((None, None))
            }
        },
    }
}

pub(crate) fn new_snapshot(
    opts: &BackupOptions,
    tree: Id,
    paths: Vec<Vec<u8>>,
    parent: Option<Id>,
    summary: SnapshotSummary,
) -> Snapshot {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let mut names = crate::fsmeta::Names::default();
    Snapshot {
        time: opts.time.unwrap_or(summary.start),
        tree,
        paths,
        hostname: opts.host.clone(),
        username: names.user(uid).unwrap_or_else(|| uid.to_string()),
        uid,
        gid,
        tags: opts.tags.clone(),
        parent,
        program: format!("zaibei {}", env!("CARGO_PKG_VERSION")),
        excludes: opts.excludes.clone(),
        summary,
        original: None,
    }
}
