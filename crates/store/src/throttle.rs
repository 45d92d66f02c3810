//! Bounded request concurrency and bandwidth limits.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::{ObjectInfo, StagedObject, Store, StoreError};

/// An average byte rate: transfers are spaced so that over any stretch longer than a second
/// no more than `rate` bytes per second pass. A transfer is paid for as a whole (before an
/// upload, after a download whose size is not known in advance), so single transfers run at
/// link speed and the pauses fall between them.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: f64,
    /// When the link is next free on the virtual schedule.
    next_free: Mutex<Instant>,
}

impl RateLimit {
    /// A limit of `kib_per_sec` KiB/s (at least 1).
    pub fn new(kib_per_sec: u64) -> RateLimit {
        RateLimit {
            bytes_per_sec: kib_per_sec.clamp(1, u64::MAX / 1024).saturating_mul(1024) as f64,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Books `bytes` on the schedule and returns when this transfer may start.
    fn book(&self, bytes: u64) -> Instant {
        let now = Instant::now();
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        // Up to one second of unused capacity may be spent as a burst.
        let start = (*next).max(now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
        let cost = Duration::try_from_secs_f64(bytes as f64 / self.bytes_per_sec)
            .unwrap_or(Duration::from_secs(u64::from(u32::MAX)));
        *next = start.checked_add(cost).unwrap_or(start);
        start
    }

    /// Waits until `bytes` may be transferred.
    pub async fn take(&self, bytes: u64) {
        let start = self.book(bytes);
        tokio::time::sleep_until(start).await;
    }
}

/// Limits the inner store to `connections` requests at a time and, optionally, to average
/// upload and download rates.
#[derive(Debug)]
pub struct ThrottleStore {
    inner: Arc<dyn Store>,
    slots: Semaphore,
    upload: Option<RateLimit>,
    download: Option<RateLimit>,
}

impl ThrottleStore {
    /// Wraps `inner`; limits in KiB/s.
    pub fn new(
        inner: Arc<dyn Store>,
        connections: usize,
        upload_kib: Option<u64>,
        download_kib: Option<u64>,
    ) -> ThrottleStore {
        ThrottleStore {
            inner,
            slots: Semaphore::new(connections.max(1)),
            upload: upload_kib.map(RateLimit::new),
            download: download_kib.map(RateLimit::new),
        }
    }

    async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed.
        self.slots.acquire().await.ok()
    }
}

#[async_trait]
impl Store for ThrottleStore {
    fn location(&self) -> &str {
        self.inner.location()
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        if let Some(l) = &self.upload {
            l.take(data.len() as u64).await;
        }
        let _slot = self.slot().await;
        self.inner.put(name, data).await
    }

    async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        if let Some(l) = &self.upload {
            l.take(data.len() as u64).await;
        }
        let _slot = self.slot().await;
        self.inner.put_new(name, data).await
    }

    fn stage(&self, prefix: &str) -> Result<Option<StagedObject>, StoreError> {
        self.inner.stage(prefix)
    }

    async fn publish(&self, name: &str, staged: StagedObject) -> Result<(), StoreError> {
        if let Some(l) = &self.upload {
            l.take(staged.len()).await;
        }
        let _slot = self.slot().await;
        self.inner.publish(name, staged).await
    }

    async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let data = {
            let _slot = self.slot().await;
            self.inner.get(name).await?
        };
        if let Some(l) = &self.download {
            l.take(data.len() as u64).await;
        }
        Ok(data)
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        if let Some(l) = &self.download {
            l.take(range.end.saturating_sub(range.start)).await;
        }
        let _slot = self.slot().await;
        self.inner.get_range(name, range).await
    }

    async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError> {
        let _slot = self.slot().await;
        self.inner.stat(name).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let _slot = self.slot().await;
        self.inner.list(prefix).await
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let _slot = self.slot().await;
        self.inner.delete(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limit_spaces_transfers_to_the_average_rate() {
        let l = RateLimit::new(100); // 100 KiB/s
        let t0 = Instant::now();
        for _ in 0..10 {
            l.take(50 << 10).await; // 10 × 50 KiB = 5 s of budget
        }
        let spent = t0.elapsed();
        // The first second may be a burst; the rest is paced.
        assert!(spent >= Duration::from_millis(3900), "{spent:?}");
        assert!(spent <= Duration::from_millis(5000), "{spent:?}");
    }

    #[tokio::test]
    async fn connections_bound_concurrent_requests() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        #[derive(Debug, Default)]
        struct Count {
            now: AtomicUsize,
            peak: AtomicUsize,
        }
        #[derive(Debug)]
        struct Slow(Arc<Count>, crate::MemoryStore);
        #[async_trait]
        impl Store for Slow {
            fn location(&self) -> &str {
                "slow"
            }
            async fn put(&self, n: &str, d: Bytes) -> Result<(), StoreError> {
                let c = self.0.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.0.peak.fetch_max(c, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                self.0.now.fetch_sub(1, Ordering::SeqCst);
                self.1.put(n, d).await
            }
            async fn put_new(&self, n: &str, d: Bytes) -> Result<(), StoreError> {
                self.1.put_new(n, d).await
            }
            async fn get(&self, n: &str) -> Result<Bytes, StoreError> {
                self.1.get(n).await
            }
            async fn get_range(&self, n: &str, r: Range<u64>) -> Result<Bytes, StoreError> {
                self.1.get_range(n, r).await
            }
            async fn stat(&self, n: &str) -> Result<ObjectInfo, StoreError> {
                self.1.stat(n).await
            }
            async fn list(&self, p: &str) -> Result<Vec<ObjectInfo>, StoreError> {
                self.1.list(p).await
            }
            async fn delete(&self, n: &str) -> Result<(), StoreError> {
                self.1.delete(n).await
            }
        }
        let count = Arc::new(Count::default());
        let s = Arc::new(ThrottleStore::new(
            Arc::new(Slow(Arc::clone(&count), crate::MemoryStore::new())),
            3,
            None,
            None,
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let s = Arc::clone(&s);
            tasks.spawn(async move { s.put(&format!("data/{i}"), Bytes::new()).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(count.peak.load(Ordering::SeqCst), 3);
    }
}
