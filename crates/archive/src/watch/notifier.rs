//! The kernel's change notification (inotify, through the `notify` crate), delivering into an
//! [`Inbox`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use notify::{RecursiveMode, Watcher as _};

use super::WatchError;
use super::events::Inbox;

/// A recursive watcher. Directories created below a watched path are watched as they appear;
/// symlinks are not followed.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Mutex<notify::RecommendedWatcher>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

/// A directory below a watched path that could not be watched (with everything below it):
/// its changes are found only by the periodic rescan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwatched {
    /// The directory.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

/// Directories whose watch fails in tests, as if inotify refused them (tests run as root,
/// who may watch anything).
#[cfg(test)]
pub(crate) static REFUSED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Watches `dir` and everything below it. Like notify itself: stops at the first directory
/// that cannot be watched, the watches set before it staying; the error names that directory.
fn watch_tree(w: &mut notify::RecommendedWatcher, dir: &Path) -> notify::Result<()> {
    #[cfg(test)]
    {
        let refused: Vec<PathBuf> = REFUSED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.starts_with(dir))
            .cloned()
            .collect();
        if let Some(r) = refused.first() {
            if r.as_path() != dir {
                w.watch(dir, RecursiveMode::Recursive)?;
                let _ = w.unwatch(r);
            }
            return Err(notify::Error::io(std::io::Error::from(
                std::io::ErrorKind::PermissionDenied,
            ))
            .add_path(r.clone()));
        }
    }
    w.watch(dir, RecursiveMode::Recursive)
}

impl Notifier {
    /// Starts the notification thread; its events go to `inbox`, stamped with the time they
    /// arrive.
    pub fn start(inbox: Arc<Inbox>) -> Result<Notifier, WatchError> {
        let handler = move |event: notify::Result<notify::Event>| {
            inbox.deliver(event, Instant::now());
        };
        let config = notify::Config::default().with_follow_symlinks(false);
        let watcher = notify::RecommendedWatcher::new(handler, config)
            .map_err(|source| WatchError::Start { source })?;
        Ok(Notifier {
            inner: Arc::new(Mutex::new(watcher)),
        })
    }

    /// Watches `path` and everything below it, dropping any earlier watch of it first. This
    /// walks the tree to set one watch per directory, so it blocks for a while on large
    /// trees: call it from a blocking thread.
    ///
    /// A directory below `path` that cannot be watched (one the user may not read, say) is
    /// left out with everything below it and listed in the answer; the rest is watched. Fails
    /// when `path` itself cannot be watched, or when the kernel's limit of watches is reached
    /// ([`notify::ErrorKind::MaxFilesWatch`]: what was watched until then stays watched).
    pub fn arm_blocking(&self, path: &Path) -> Result<Vec<Unwatched>, WatchError> {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // A stale watch (its directory deleted or unmounted) would shadow the new one.
        let _ = w.unwatch(path);
        let fail = |source| WatchError::Arm {
            path: path.to_path_buf(),
            source,
        };
        let mut skipped = Vec::new();
        let mut todo = vec![path.to_path_buf()];
        while let Some(dir) = todo.pop() {
            let e = match watch_tree(&mut w, &dir) {
                Ok(()) => continue,
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    return Err(fail(e));
                }
                Err(e) => e,
            };
            let at = e.paths.first().cloned().unwrap_or_else(|| dir.clone());
            if at == dir || !at.starts_with(&dir) {
                if dir == path {
                    return Err(fail(e));
                }
                skipped.push(Unwatched {
                    path: dir,
                    error: e.to_string(),
                });
                continue;
            }
            // Stopped below `dir` (whose own watch, the walk's first, is set): go on with each
            // of its subdirectories on its own, so one failure costs only its own subtree.
            // Those watched before the failure are walked again, which changes nothing.
            match std::fs::read_dir(&dir) {
                Ok(entries) => {
                    for entry in entries.flatten() {
                        if entry.file_type().is_ok_and(|t| t.is_dir()) {
                            todo.push(entry.path());
                        }
                    }
                }
                Err(e) => skipped.push(Unwatched {
                    path: dir,
                    error: e.to_string(),
                }),
            }
        }
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(skipped)
    }

    /// [`Notifier::arm_blocking`] on a blocking thread.
    pub async fn arm(&self, path: PathBuf) -> Result<Vec<Unwatched>, WatchError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.arm_blocking(&path))
            .await
            .map_err(|_| WatchError::Stopped)?
    }
}
