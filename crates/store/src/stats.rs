//! Counting requests and bytes that reach a store.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectInfo, StagedObject, Store, StoreError};

/// Counters of the traffic to a store.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Requests sent (every attempt).
    pub requests: AtomicU64,
    /// Requests that failed.
    pub failures: AtomicU64,
    /// Bytes uploaded by successful puts.
    pub bytes_up: AtomicU64,
    /// Bytes downloaded by successful gets.
    pub bytes_down: AtomicU64,
    /// Successful gets (whole or ranged).
    pub gets: AtomicU64,
}

/// A snapshot of [`StoreCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Requests sent (every attempt).
    pub requests: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Bytes uploaded.
    pub bytes_up: u64,
    /// Bytes downloaded.
    pub bytes_down: u64,
    /// Successful gets.
    pub gets: u64,
}

impl StoreCounters {
    /// Reads the counters.
    pub fn snapshot(&self) -> StoreStats {
        StoreStats {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
        }
    }
}

/// Counts what passes to the inner store.
#[derive(Debug)]
pub struct StatsStore {
    inner: Arc<dyn Store>,
    counters: Arc<StoreCounters>,
}

impl StatsStore {
    /// Wraps `inner`, counting into `counters`.
    pub fn new(inner: Arc<dyn Store>, counters: Arc<StoreCounters>) -> StatsStore {
        StatsStore { inner, counters }
    }

    fn count<T>(&self, r: &Result<T, StoreError>) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if r.is_err() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn down(&self, r: &Result<Bytes, StoreError>) {
        self.count(r);
        if let Ok(b) = r {
            self.counters.gets.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes_down
                .fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    }

    fn up(&self, r: &Result<(), StoreError>, len: usize) {
        self.count(r);
        if r.is_ok() {
            self.counters
                .bytes_up
                .fetch_add(len as u64, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl Store for StatsStore {
    fn location(&self) -> &str {
        self.inner.location()
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let len = data.len();
        let r = self.inner.put(name, data).await;
        self.up(&r, len);
        r
    }

    async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let len = data.len();
        let r = self.inner.put_new(name, data).await;
        self.up(&r, len);
        r
    }

    async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let r = self.inner.get(name).await;
        self.down(&r);
        r
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let r = self.inner.get_range(name, range).await;
        self.down(&r);
        r
    }

    async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError> {
        let r = self.inner.stat(name).await;
        self.count(&r);
        r
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let r = self.inner.list(prefix).await;
        self.count(&r);
        r
    }

    fn stage(&self, prefix: &str) -> Result<Option<StagedObject>, StoreError> {
        self.inner.stage(prefix)
    }

    async fn publish(&self, name: &str, staged: StagedObject) -> Result<(), StoreError> {
        let len = usize::try_from(staged.len()).unwrap_or(usize::MAX);
        let r = self.inner.publish(name, staged).await;
        self.up(&r, len);
        r
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let r = self.inner.delete(name).await;
        self.count(&r);
        r
    }
}
