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
    pub fn arm_blocking(&self, path: &Path) -> Result<(), WatchError> {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // A stale watch (its directory deleted or unmounted) would shadow the new one.
        let _ = w.unwatch(path);
        w.watch(path, RecursiveMode::Recursive)
            .map_err(|source| WatchError::Arm {
                path: path.to_path_buf(),
                source,
            })
    }

    /// [`Notifier::arm_blocking`] on a blocking thread.
    pub async fn arm(&self, path: PathBuf) -> Result<(), WatchError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.arm_blocking(&path))
            .await
            .map_err(|_| WatchError::Stopped)?
    }
}
