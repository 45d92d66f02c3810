//! Restoring snapshots.
//!
//! Safety: everything is written relative to directory handles that restore opened itself,
//! one path component at a time, with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or
//! `O_NOFOLLOW` where unavailable). A symlink is never followed while writing, whether it came
//! from the snapshot or was planted in the target; names are checked (no `/`, NUL, `.` or `..`)
//! and trees with duplicate names are refused. Nothing is written outside the target.
//!
//! Order: directories and special entries are created as the walk meets them; files are
//! created and written by workers; each directory's metadata (owner, mode, xattrs, times) is
//! applied after all its children exist. Over a partially restored target, a file already holding the right contents (checked
//! by hashing it against the blob ids) is not rewritten.

mod files;
mod meta;
mod prefetch;
mod walker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use zaibei_format::Id;
use zaibei_repo::IndexedRepository;

use crate::ArchiveError;
use crate::exclude::Excludes;
use crate::progress::Counters;
use crate::snapshot_path::locate;

/// What to restore where.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Target directory (created if missing).
    pub target: PathBuf,
    /// Path inside the snapshot to restore (`/`: everything). A directory's contents go into
    /// the target; a file goes into the target under its name.
    pub subpath: Vec<u8>,
    /// Restore only these paths (gitignore syntax, matched against snapshot paths).
    pub includes: Vec<String>,
    /// Leave these paths out (gitignore syntax).
    pub excludes: Vec<String>,
    /// Re-read every restored file and compare it with the snapshot.
    pub verify: bool,
    /// Writer threads (0: number of CPUs).
    pub workers: usize,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    /// Files written.
    pub files_written: u64,
    /// Files already correct in the target (resume), not rewritten.
    pub files_unchanged: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other entries restored.
    pub others: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Files verified after writing (`verify`).
    pub files_verified: u64,
    /// Entries that could not be restored, with the reason.
    pub errors: Vec<(Vec<u8>, String)>,
}

/// Failures collected during a restore.
#[derive(Debug, Default)]
pub(crate) struct Failures(Mutex<Vec<(Vec<u8>, String)>>);

impl Failures {
    pub(crate) fn record(&self, path: &[u8], reason: impl Into<String>) {
        let reason = reason.into();
        // Reported with the outcome (the CLI prints every one); logged here for tracing.
        tracing::debug!("cannot restore {}: {reason}", String::from_utf8_lossy(path));
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path.to_vec(), reason));
    }

    /// Reports the failure of a hard-linked file under each of its other names too.
    pub(crate) fn extend_to_links(
        &self,
        linked: &std::collections::HashMap<Vec<u8>, Vec<Vec<u8>>>,
    ) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut extra = Vec::new();
        for (path, reason) in list.iter() {
            for other in linked.get(path).into_iter().flatten() {
                extra.push((
                    other.clone(),
                    format!(
                        "hard link to {}, which could not be restored: {reason}",
                        String::from_utf8_lossy(path)
                    ),
                ));
            }
        }
        list.extend(extra);
    }

    fn take(&self) -> Vec<(Vec<u8>, String)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Include patterns: an entry is restored when it or one of its parents matches.
#[derive(Debug)]
pub(crate) struct Includes(Option<ignore::gitignore::Gitignore>);

impl Includes {
    fn new(patterns: &[String]) -> Result<Self, ArchiveError> {
        if patterns.is_empty() {
            return Ok(Includes(None));
        }
        let mut b = ignore::gitignore::GitignoreBuilder::new("/");
        for p in patterns {
            b.add_line(None, p)
                .map_err(|e| ArchiveError::Usage(format!("include pattern {p:?}: {e}")))?;
        }
        Ok(Includes(Some(b.build().map_err(|e| {
            ArchiveError::Usage(format!("include patterns: {e}"))
        })?)))
    }

    /// True when everything is included.
    pub(crate) fn all(&self) -> bool {
        self.0.is_none()
    }

    /// True when `path` or one of its parents matches.
    pub(crate) fn matches(&self, path: &[u8], is_dir: bool) -> bool {
        match &self.0 {
            None => true,
            Some(gi) => {
                use std::os::unix::ffi::OsStrExt;
                let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
                gi.matched_path_or_any_parents(p, is_dir).is_ignore()
            }
        }
    }
}

pub(crate) struct Shared<'a> {
    pub repo: &'a IndexedRepository,
    pub opts: &'a RestoreOptions,
    pub counters: &'a Counters,
    pub failures: &'a Failures,
    pub runtime: tokio::runtime::Handle,
    pub outcome: Mutex<RestoreOutcome>,
    /// Plaintext the writers may hold beyond their batches, together.
    pub window_budget: prefetch::WindowBudget,
    /// Most file data each writer gathers in one batch ([`prefetch::batch_bytes`]).
    pub batch_bytes: u64,
}

/// The writers' shared budget ([`prefetch::WindowBudget`]): one
/// [`prefetch::EXTRA_WINDOW_BYTES`] for each writer that can run at once (no more than the
/// CPUs, however many writers wait on the store), and no more than eight of them.
fn window_budget_bytes(workers: usize) -> u64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let running = if workers == 0 {
        cpus
    } else {
        workers.min(cpus)
    };
    prefetch::EXTRA_WINDOW_BYTES * running.min(8) as u64
}

/// The writer threads a restore runs: `workers`, or the number of CPUs when that is 0.
pub(crate) fn writer_count(workers: usize) -> usize {
    if workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        workers
    }
}

/// Restores the snapshot whose root tree is `root` according to `opts`.
pub async fn restore(
    repo: Arc<IndexedRepository>,
    root: Id,
    opts: RestoreOptions,
    counters: Arc<Counters>,
) -> Result<RestoreOutcome, ArchiveError> {
    let includes = Includes::new(&opts.includes)?;
    let excludes = Excludes::new(&opts.excludes, &[])?;
    let subpath = if opts.subpath.is_empty() {
        b"/".to_vec()
    } else {
        opts.subpath.clone()
    };
    let located = locate(&repo, &root, &subpath).await?;
    std::fs::create_dir_all(&opts.target)
        .map_err(|e| ArchiveError::io("creating target", &opts.target, e))?;
    let runtime = tokio::runtime::Handle::current();
    let failures = Failures::default();
    let task = tokio::task::spawn_blocking(move || {
        let shared = Shared {
            repo: &repo,
            opts: &opts,
            counters: &counters,
            failures: &failures,
            runtime,
            outcome: Mutex::new(RestoreOutcome::default()),
            window_budget: prefetch::WindowBudget::new(window_budget_bytes(opts.workers)),
            batch_bytes: prefetch::batch_bytes(writer_count(opts.workers)),
        };
        let base =
            crate::snapshot_path::components(&subpath)
                .iter()
                .fold(Vec::new(), |mut p, c| {
                    p.push(b'/');
                    p.extend_from_slice(c);
                    p
                });
        let result = walker::run(&shared, located, base, &includes, &excludes);
        let mut outcome = shared
            .outcome
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        outcome.errors = failures.take();
        result.map(|()| outcome)
    });
    task.await
        .map_err(|e| ArchiveError::Internal(format!("restore: {e}")))?
}
