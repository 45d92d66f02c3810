use std::path::PathBuf;

use thiserror::Error;
use zaibei_crypto::CryptoError;
use zaibei_store::StoreError;

/// Errors of the audit crate: each names what it was working on (a file, a line of an export,
/// an anchor object).
///
/// Tampering found while verifying is never an error: it is a [`crate::Finding`] in the
/// [`crate::VerifyReport`]. Errors are what stops the work (a file that cannot be read, a key
/// that cannot be decoded, a store that cannot be reached).
#[derive(Debug, Error)]
pub enum AuditError {
    /// A file could not be read, written or synced.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `create`, `rename`, `sync`).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint signing key file already exists and was not to be overwritten.
    #[error("audit signing key {} already exists", path.display())]
    KeyFileExists {
        /// The key file.
        path: PathBuf,
    },
    /// A key could not be generated, decoded or encoded, or signing failed.
    #[error("audit signing key{}: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Key {
        /// The key file, where one was involved.
        path: Option<PathBuf>,
        /// The cryptographic layer's error.
        #[source]
        source: CryptoError,
    },
    /// A line of a JSON Lines export is not a valid audit record.
    #[error("audit log line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a JSON Lines export failed at the operating-system level.
    #[error("audit log line {line}: {source}")]
    LineIo {
        /// 1-based number of the line being read or written.
        line: u64,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint in JSON could not be decoded or encoded.
    #[error("audit checkpoint: {reason}")]
    BadCheckpoint {
        /// What is wrong with it.
        reason: String,
    },
    /// An anchor object exists but is not a valid checkpoint, or its name does not match its
    /// contents.
    #[error("audit anchor object {name:?} is corrupt: {reason}")]
    CorruptAnchor {
        /// The object name in the anchor store.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A different checkpoint already occupies the anchor object's name: anchors are never
    /// overwritten.
    #[error("audit anchor object {name:?} already holds a different checkpoint")]
    AnchorConflict {
        /// The object name in the anchor store.
        name: String,
    },
    /// The anchor store failed (the error names the operation and the object).
    #[error("audit anchor store: {0}")]
    Store(#[from] StoreError),
    /// A hash in text form is not 64 lowercase hexadecimal digits.
    #[error("invalid audit hash {0:?}: 64 lowercase hexadecimal digits expected")]
    BadHash(String),
}
