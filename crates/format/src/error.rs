use thiserror::Error;
use zaibei_crypto::CryptoError;

use crate::cbor::CborError;

/// Why bytes are not a valid object of the format.
///
/// `what` names the kind of object ("pack header", "tree", "snapshot", ...); the caller adds
/// which object (its id or name).
#[derive(Debug, Error)]
pub enum FormatError {
    /// The leading magic bytes are wrong: not an object of this kind.
    #[error("not a zaibei {what} (bad magic bytes)")]
    BadMagic {
        /// Kind of object.
        what: &'static str,
    },
    /// The object declares a format version this build cannot read.
    #[error(
        "{what} has format version {found}, this zaibei reads up to version {supported}; upgrade zaibei"
    )]
    UnsupportedVersion {
        /// Kind of object.
        what: &'static str,
        /// Version found.
        found: u64,
        /// Highest version supported.
        supported: u64,
    },
    /// The object is shorter than its layout requires.
    #[error("{what} is truncated: {have} bytes, layout needs at least {need}")]
    Truncated {
        /// Kind of object.
        what: &'static str,
        /// Bytes required.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The CBOR body is malformed or not canonical.
    #[error("{what} has malformed CBOR: {source}")]
    Cbor {
        /// Kind of object.
        what: &'static str,
        /// Decoder error.
        source: CborError,
    },
    /// A field is missing or has the wrong type or an invalid value.
    #[error("{what}: field {field:?}: {problem}")]
    Field {
        /// Kind of object.
        what: &'static str,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Decryption or authentication failed.
    #[error("{what}: {source}")]
    Crypto {
        /// Kind of object.
        what: &'static str,
        /// Crypto error.
        source: CryptoError,
    },
    /// The operation needs the content key, and only the maintenance key is held.
    #[error(
        "{operation} needs the content key, but the repository was opened with a maintenance-only key"
    )]
    NeedsContentKey {
        /// What was attempted.
        operation: &'static str,
    },
    /// The object violates a rule of the format.
    #[error("{what}: {problem}")]
    Invalid {
        /// Kind of object.
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl FormatError {
    /// A [`FormatError::Field`] error.
    pub fn field(what: &'static str, field: &'static str, problem: impl Into<String>) -> Self {
        FormatError::Field {
            what,
            field,
            problem: problem.into(),
        }
    }

    /// A [`FormatError::Invalid`] error.
    pub fn invalid(what: &'static str, problem: impl Into<String>) -> Self {
        FormatError::Invalid {
            what,
            problem: problem.into(),
        }
    }

    /// True when the error means "authentication failed" (altered data or wrong key).
    pub fn is_authentication_failure(&self) -> bool {
        matches!(
            self,
            FormatError::Crypto {
                source: CryptoError::AuthenticationFailed,
                ..
            }
        )
    }
}
