use thiserror::Error;
use zaibei_crypto::CryptoError;
use zaibei_format::{FormatError, Id, PackKind};
use zaibei_store::StoreError;

/// Errors of repository operations. Each names the object concerned.
#[derive(Debug, Error)]
pub enum RepoError {
    /// There is no config object at the location.
    #[error("no repository at {location} (no config object); create one with `zaibei init`")]
    NotFound {
        /// The store location.
        location: String,
    },
    /// `init` found an existing repository.
    #[error("a repository already exists at {location}")]
    AlreadyExists {
        /// The store location.
        location: String,
    },
    /// No key object opens with the password.
    #[error("wrong password: none of the {tried} key(s) of the repository opens with it")]
    WrongPassword {
        /// Number of key objects tried.
        tried: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An object is malformed, altered, or of an unsupported version.
    #[error("{object}: {source}")]
    Format {
        /// The object (name or blob id).
        object: String,
        /// What is wrong with it.
        source: FormatError,
    },
    /// A blob is not in the index.
    #[error("{} blob {id} is not in the index", kind.name())]
    BlobNotFound {
        /// Kind.
        kind: PackKind,
        /// Blob id.
        id: Id,
    },
    /// No snapshot matches what the user asked for.
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    /// A short id matches more than one snapshot.
    #[error("snapshot id prefix {0:?} matches more than one snapshot; give more digits")]
    AmbiguousSnapshot(String),
    /// A cryptographic operation failed (outside object decoding).
    #[error("{context}: {source}")]
    Crypto {
        /// What was being done.
        context: String,
        /// The error.
        source: CryptoError,
    },
    /// A request that the repository refuses.
    #[error("{0}")]
    Refused(String),
    /// Another task of the same operation failed first.
    #[error("{0}")]
    Internal(String),
}

impl RepoError {
    /// Wraps a format error with the object it concerns.
    pub fn format(object: impl Into<String>, source: FormatError) -> Self {
        RepoError::Format {
            object: object.into(),
            source,
        }
    }

    /// True when the repository (or one of its objects) has a newer format than this build reads.
    pub fn is_unsupported_version(&self) -> bool {
        matches!(
            self,
            RepoError::Format {
                source: FormatError::UnsupportedVersion { .. },
                ..
            }
        )
    }

    /// True when data in the repository is damaged, altered or missing.
    pub fn is_integrity(&self) -> bool {
        match self {
            RepoError::Format { source, .. } => {
                !matches!(source, FormatError::UnsupportedVersion { .. })
            }
            RepoError::BlobNotFound { .. } => true,
            // A referenced object that cannot be read is damage; a failed write is not.
            RepoError::Store(e) => e.is_not_found() && e.op == "get",
            _ => false,
        }
    }

    /// True when the store could not be asked (a transient failure that outlasted every
    /// retry, or refused credentials): the error says nothing about the repository's
    /// contents, so commands stop instead of recording the object as damaged or unusable.
    /// A missing object, or an answer that contradicts the index (a range past the end of a
    /// pack), is damage, not this.
    pub fn is_store_unreachable(&self) -> bool {
        matches!(self, RepoError::Store(e) if e.is_unreachable())
    }
}

/// Result of repository operations.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;
