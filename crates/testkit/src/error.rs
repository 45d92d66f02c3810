//! Errors of one proxied connection.

/// Why the proxy gave up on a connection. These never reach the caller of
/// [`FaultProxy`](crate::FaultProxy): a failed connection is logged and closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// Reading from or writing to a socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A peer closed its connection in the middle of a message.
    #[error("{0} closed the connection in the middle of a message")]
    Truncated(&'static str),
    /// A message head was longer than [`crate::http::MAX_HEAD`].
    #[error("message head longer than {0} bytes")]
    HeadTooLarge(usize),
    /// A chunk-size or trailer line was longer than [`crate::http::MAX_LINE`].
    #[error("chunked-encoding line longer than {0} bytes")]
    LineTooLong(usize),
    /// The bytes on the wire were not valid HTTP/1.1 framing.
    #[error("malformed HTTP: {0}")]
    Malformed(String),
}

impl ProxyError {
    /// A [`ProxyError::Malformed`] with the given description.
    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        Self::Malformed(what.into())
    }
}
