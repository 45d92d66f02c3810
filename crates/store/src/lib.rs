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
mod location;
mod memory;
mod object;
mod retry;
mod server;
mod staged;
mod stats;
mod throttle;

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

pub use error::{StoreError, StoreErrorKind};
pub use fs::FsStore;
pub use location::{
    BucketLocation, Location, LocationError, ServerLocation, Service, check_server_name,
};
pub use memory::MemoryStore;
pub use object::{BucketOptions, MULTIPART_PART_SIZE, ObjectStore};
pub use retry::{RetryPolicy, RetryStore};
pub use server::{
    API_PREFIX, CertFingerprint, FingerprintError, LIST_PAGE_LIMIT, MODIFIED_MS_HEADER,
    ServerOptions, ServerStore,
};
pub use staged::StagedObject;
pub use stats::{StatsStore, StoreCounters, StoreStats};
pub use throttle::{RateLimit, ThrottleStore};
/// The wrapper that wipes [`ServerOptions::token`] from memory when dropped.
pub use zeroize::Zeroizing;

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

    /// Starts an object to be written a piece at a time (a blocking call) and published with
    /// [`Store::publish`] under a name below `prefix`, where the store keeps objects as local
    /// files. `None` (the default) where it does not: the caller assembles the object in memory
    /// and [`Store::put`]s it.
    fn stage(&self, prefix: &str) -> Result<Option<StagedObject>, StoreError> {
        let _ = prefix;
        Ok(None)
    }

    /// Publishes a staged object under `name`, atomically and durably, as [`Store::put`]
    /// would. Only a store whose [`Store::stage`] made it can publish it.
    async fn publish(&self, name: &str, staged: StagedObject) -> Result<(), StoreError> {
        drop(staged);
        Err(
            StoreError::new(StoreErrorKind::InvalidInput, "put", name, self.location())
                .with_detail("this store does not stage objects"),
        )
    }
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

/// How to reach a repository: the options of [`open`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Credentials and addressing for object storage.
    pub bucket: BucketOptions,
    /// Token and TLS trust for a repository on a zaibei server.
    pub server: ServerOptions,
    /// Requests in flight at most.
    pub connections: usize,
    /// Average upload limit in KiB/s.
    pub limit_upload: Option<u64>,
    /// Average download limit in KiB/s.
    pub limit_download: Option<u64>,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            bucket: BucketOptions {
                io_timeout: std::time::Duration::from_secs(60),
                ..BucketOptions::default()
            },
            server: ServerOptions::default(),
            connections: 8,
            limit_upload: None,
            limit_download: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// A store ready for use, with the counters of its traffic.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    /// The store: retries over limits over counting over the backend.
    pub store: std::sync::Arc<dyn Store>,
    /// Requests and bytes that reached the backend.
    pub counters: std::sync::Arc<StoreCounters>,
    /// True for stores on the network (object storage, a zaibei server), where a local
    /// metadata cache pays.
    pub remote: bool,
}

/// Opens the store at `location` with the standard wrappers: retries of transient failures
/// on top of concurrency and bandwidth limits on top of traffic counters on top of the
/// backend.
pub fn open(location: &Location, opts: &OpenOptions) -> Result<OpenedStore, StoreError> {
    use std::sync::Arc;
    let (backend, remote): (Arc<dyn Store>, bool) = match location {
        Location::Fs(path) => (Arc::new(FsStore::new(path)), false),
        Location::Memory(_) => (Arc::new(MemoryStore::new()), false),
        Location::Bucket(b) => (Arc::new(ObjectStore::new(b, &opts.bucket)?), true),
        Location::Server(s) => (Arc::new(ServerStore::new(s, &opts.server)?), true),
    };
    let counters = Arc::new(StoreCounters::default());
    let counted = Arc::new(StatsStore::new(backend, Arc::clone(&counters)));
    let limited = Arc::new(ThrottleStore::new(
        counted,
        opts.connections,
        opts.limit_upload,
        opts.limit_download,
    ));
    Ok(OpenedStore {
        store: Arc::new(RetryStore::new(limited, opts.retry)),
        counters,
        remote,
    })
}
