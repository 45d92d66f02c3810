use thiserror::Error;

/// Errors of the cryptographic layer.
///
/// They never carry secret material; callers add the context (which object, which key).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// An AEAD tag did not verify: the data was altered, or the key is wrong.
    #[error("authentication failed (wrong key or altered data)")]
    AuthenticationFailed,
    /// The input is shorter than the smallest valid ciphertext.
    #[error("ciphertext too short: {len} bytes, at least {min} expected")]
    CiphertextTooShort {
        /// Length given.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// A key-derivation parameter is outside the accepted range.
    #[error("invalid key-derivation parameters: {0}")]
    InvalidKdfParams(String),
    /// The operating system could not provide random bytes.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// A signature or public/private key could not be decoded or did not verify.
    #[error("signature error: {0}")]
    Signature(String),
}
