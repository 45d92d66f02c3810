//! Errors of watching source trees.

use std::path::PathBuf;

use thiserror::Error;

/// Errors of [`crate::watch`].
#[derive(Debug, Error)]
pub enum WatchError {
    /// The settings contradict each other or name nothing to watch.
    #[error("{0}")]
    Usage(String),
    /// The kernel's change notification could not be set up at all (inotify unavailable,
    /// the per-user limit of inotify instances reached).
    #[error("cannot start watching for changes: {source}")]
    Start {
        /// What the notification library said.
        #[source]
        source: notify::Error,
    },
    /// A path could not be watched.
    #[error("cannot watch {}: {source}", path.display())]
    Arm {
        /// The path.
        path: PathBuf,
        /// What the notification library said.
        #[source]
        source: notify::Error,
    },
    /// A path given to watch could not be examined.
    #[error("cannot examine {}: {source}", path.display())]
    Stat {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The thread delivering change notifications ended.
    #[error("the change notification thread ended")]
    Stopped,
}
