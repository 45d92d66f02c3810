//! Storage for zaibei repositories: one small async [`Store`] trait and its implementations.
//!
//! A store keeps named, immutable objects. Names are relative paths of lowercase ASCII
//! segments (`config`, `keys/<id>`, `data/ab/<id>`); the store does not know what an object
//! means. Every implementation passes the same [`conformance`] suite.
//!
//! Publication rules every store keeps:
//! * `put` publishes an object atomically: a reader sees the whole object or nothing, and a
//!   crash never leaves a partial object under its final name. Objects are content-addressed,
//!   so `put` of an existing name with the same bytes is harmless (idempotent retries).
//! * `put_new` publishes only if the name is free (used for `config`).
//! * once `put` returns, the object is durable.

pub mod conformance;
mod error;
mod fs;
mod memory;

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

pub use error::{StoreError, StoreErrorKind};
pub use fs::FsStore;
pub use memory::MemoryStore;

/// What a listing says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full object name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time on the store's clock, where the store knows it.
    pub modified: Option<SystemTime>,
}

/// A place that keeps a repository's objects.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the store is, as the user named it (for messages).
    fn location(&self) -> &str;

    /// Publishes `data` under `name`, atomically and durably.
    async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError>;

    /// Publishes `data` under `name` only if no object has that name
    /// ([`StoreErrorKind::AlreadyExists`] otherwise).
    async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError>;

    /// Reads a whole object.
    async fn get(&self, name: &str) -> Result<Bytes, StoreError>;

    /// Reads the bytes `range` of an object; a range past the end is an error.
    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError>;

    /// Size and modification time of an object.
    async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError>;

    /// Every object whose name starts with `prefix/` (recursively), in no particular order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;

    /// Removes an object. Removing a missing object is [`StoreErrorKind::NotFound`].
    async fn delete(&self, name: &str) -> Result<(), StoreError>;
}

/// Checks an object name: non-empty segments of `[a-z0-9._-]` separated by `/`, no segment
/// starting with `.`.
pub fn check_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'_'
                        || b == b'.'
                })
        })
}
