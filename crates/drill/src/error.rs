//! Errors of drills, their reports and their history.

use std::path::{Path, PathBuf};

use thiserror::Error;
use zaibei_archive::ArchiveError;
use zaibei_repo::RepoError;

/// Errors of a drill. Repository and restore errors keep their own type as the source, so a
/// front end can tell damage from an unreachable store.
#[derive(Debug, Error)]
pub enum DrillError {
    /// The repository failed (listing snapshots, loading the index or a tree).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The restore stopped as a whole (not a single entry: those are listed in the report).
    #[error("restore into the scratch directory: {0}")]
    Restore(#[from] ArchiveError),
    /// No snapshot matches what the drill was asked to restore.
    #[error("no snapshot to drill: {0}")]
    NoSnapshot(String),
    /// The options are wrong (a non-empty scratch target, say).
    #[error("{0}")]
    Usage(String),
    /// A file or directory of the drill's own (scratch space, history, HTML page) failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A report could not be encoded or decoded.
    #[error("drill report {}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// Something inside the drill broke (a worker thread panicked, say).
    #[error("{0}")]
    Internal(String),
}

impl DrillError {
    /// An I/O error on a path.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        DrillError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the error is damage of the repository (an object failed authentication,
    /// or something referenced is missing).
    pub fn is_integrity(&self) -> bool {
        match self {
            DrillError::Repo(e) | DrillError::Restore(ArchiveError::Repo(e)) => e.is_integrity(),
            _ => false,
        }
    }
}
