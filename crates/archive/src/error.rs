use std::path::{Path, PathBuf};

use thiserror::Error;
use zaibei_repo::RepoError;

/// Errors of backup and restore.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A filesystem operation failed on a path.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: String,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The options are wrong.
    #[error("{0}")]
    Usage(String),
    /// The command feeding `--stdin-from-command` failed; no snapshot was written.
    #[error("command {command:?} failed ({status}); no snapshot was written")]
    CommandFailed {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
    },
    /// Something inside the pipeline broke.
    #[error("{0}")]
    Internal(String),
}

impl ArchiveError {
    /// An I/O error on a path.
    pub fn io(op: impl Into<String>, path: &Path, source: std::io::Error) -> Self {
        ArchiveError::Io {
            op: op.into(),
            path: path.to_path_buf(),
            source,
        }
    }
}
