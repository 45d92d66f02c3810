use std::fmt;

use thiserror::Error;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The object does not exist.
    NotFound,
    /// The object exists and the operation required that it did not.
    AlreadyExists,
    /// The credentials do not allow the operation (e.g. an append-only credential deleting).
    PermissionDenied,
    /// The request itself is invalid (bad name, bad range).
    InvalidInput,
    /// The store is temporarily unable to answer (timeouts, resets, throttling, 5xx).
    Unavailable,
    /// Any other failure.
    Other,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreErrorKind::NotFound => "not found",
            StoreErrorKind::AlreadyExists => "already exists",
            StoreErrorKind::PermissionDenied => "permission denied",
            StoreErrorKind::InvalidInput => "invalid request",
            StoreErrorKind::Unavailable => "temporarily unavailable",
            StoreErrorKind::Other => "failed",
        })
    }
}

/// An error of a [`crate::Store`] operation: its kind, whether retrying may help, and which
/// operation on which object failed.
#[derive(Debug, Error)]
#[error("{op} {name:?} on {location}: {kind}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct StoreError {
    /// What went wrong.
    pub kind: StoreErrorKind,
    /// True when the same request may succeed if tried again.
    pub retryable: bool,
    /// The operation (`put`, `get`, `list`, ...).
    pub op: &'static str,
    /// The object name (or prefix for `list`).
    pub name: String,
    /// The store, as the user named it.
    pub location: String,
    /// Details from the underlying layer.
    pub detail: Option<String>,
}

impl StoreError {
    /// A new error.
    pub fn new(
        kind: StoreErrorKind,
        op: &'static str,
        name: impl Into<String>,
        location: impl Into<String>,
    ) -> Self {
        let retryable = kind == StoreErrorKind::Unavailable;
        StoreError {
            kind,
            retryable,
            op,
            name: name.into(),
            location: location.into(),
            detail: None,
        }
    }

    /// Adds details.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Maps an I/O error.
    pub fn from_io(e: &std::io::Error, op: &'static str, name: &str, location: &str) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => StoreErrorKind::NotFound,
            K::AlreadyExists => StoreErrorKind::AlreadyExists,
            K::PermissionDenied | K::ReadOnlyFilesystem => StoreErrorKind::PermissionDenied,
            K::InvalidInput | K::InvalidData => StoreErrorKind::InvalidInput,
            K::Interrupted | K::TimedOut | K::WouldBlock => StoreErrorKind::Unavailable,
            _ => StoreErrorKind::Other,
        };
        StoreError::new(kind, op, name, location).with_detail(e.to_string())
    }

    /// True when the store could not be asked: a transient failure (that outlasted any
    /// retries) or refused credentials. Such an error says nothing about the object.
    pub fn is_unreachable(&self) -> bool {
        self.retryable || self.kind == StoreErrorKind::PermissionDenied
    }

    /// True for [`StoreErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind == StoreErrorKind::NotFound
    }
}
