//! Retries of transient failures, with exponential backoff and full jitter.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectInfo, StagedObject, Store, StoreError, StoreErrorKind};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay cap before the second attempt; doubles with every further attempt.
    pub base: Duration,
    /// Largest delay between two attempts.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// Fifteen attempts, the delay cap doubling from 0.5 s to 60 s: up to about eight
    /// minutes of patience (four on average, with jitter), enough to ride out a router
    /// restart or a failover of the storage without losing a long backup.
    fn default() -> Self {
        RetryPolicy {
            attempts: 15,
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt` (2 for the first retry): uniformly random between
    /// zero and the exponential cap ("full jitter"), so that many clients that failed together
    /// do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(2).min(30);
        let cap = self
            .base
            .saturating_mul(1u32 << exp)
            .min(self.max)
            .as_nanos() as u64;
        let mut r = [0u8; 8];
        // Without randomness the full cap is a safe (if less spread) delay.
        let jitter = match getrandom::fill(&mut r) {
            Ok(()) => u64::from_le_bytes(r) % cap.max(1),
            Err(_) => cap,
        };
        Duration::from_nanos(jitter)
    }
}

/// Retries every operation of the inner store that fails with a retryable error, and makes
/// uploads idempotent: a `put` whose earlier attempt may have landed (or that meets an
/// object a store refuses to overwrite) succeeds when the stored bytes are the ones being
/// put.
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
    retries: Arc<AtomicU64>,
}

impl RetryStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, policy: RetryPolicy) -> RetryStore {
        RetryStore {
            inner,
            policy,
            retries: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Number of retries made so far (shared counter).
    pub fn retries(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.retries)
    }

    async fn run<T, F, Fut>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 1;
        loop {
            match f(attempt).await {
                Err(e) if e.retryable && attempt < self.policy.attempts => {
                    attempt += 1;
                    let delay = self.policy.delay(attempt);
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "{e}; retrying in {:.1} s (attempt {attempt} of {})",
                        delay.as_secs_f64(),
                        self.policy.attempts
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(mut e) => {
                    if e.retryable {
                        e.detail = Some(format!(
                            "{} (gave up after {} attempts)",
                            e.detail.as_deref().unwrap_or("transient failure"),
                            attempt
                        ));
                    }
                    return Err(e);
                }
                Ok(v) => return Ok(v),
            }
        }
    }

    /// True when `name` holds exactly `data`.
    async fn holds(&self, name: &str, data: &Bytes) -> bool {
        match self.run(|_| self.inner.get(name)).await {
            Ok(stored) => stored == *data,
            Err(_) => false,
        }
    }
}

#[async_trait]
impl Store for RetryStore {
    fn location(&self) -> &str {
        self.inner.location()
    }

    async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        match self.run(|_| self.inner.put(name, data.clone())).await {
            // An append-only store refuses to overwrite, also when the object is the same.
            Err(e)
                if e.kind == StoreErrorKind::PermissionDenied && self.holds(name, &data).await =>
            {
                Ok(())
            }
            other => other,
        }
    }

    async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        self.run(|attempt| {
            let data = data.clone();
            async move {
                match self.inner.put_new(name, data.clone()).await {
                    // An earlier attempt that timed out may have published it.
                    Err(e)
                        if e.kind == StoreErrorKind::AlreadyExists
                            && attempt > 1
                            && self.holds(name, &data).await =>
                    {
                        Ok(())
                    }
                    other => other,
                }
            }
        })
        .await
    }

    fn stage(&self, prefix: &str) -> Result<Option<StagedObject>, StoreError> {
        self.inner.stage(prefix)
    }

    /// Not retried: the object is a local file, consumed by the attempt.
    async fn publish(&self, name: &str, staged: StagedObject) -> Result<(), StoreError> {
        self.inner.publish(name, staged).await
    }

    async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        self.run(|_| self.inner.get(name)).await
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.run(|_| self.inner.get_range(name, range.clone()))
            .await
    }

    async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError> {
        self.run(|_| self.inner.stat(name)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.run(|_| self.inner.list(prefix)).await
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.run(|attempt| async move {
            match self.inner.delete(name).await {
                // An earlier attempt whose answer was lost may have deleted it.
                Err(e) if e.is_not_found() && attempt > 1 => Ok(()),
                other => other,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use std::sync::Mutex;

    /// Fails the first `n` calls of every operation with a retryable error.
    #[derive(Debug)]
    struct Flaky {
        inner: MemoryStore,
        left: Mutex<u32>,
        kind: StoreErrorKind,
    }

    impl Flaky {
        fn fail(&self, op: &'static str) -> Result<(), StoreError> {
            let mut left = self.left.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(StoreError::new(self.kind, op, "x", "flaky"));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Store for Flaky {
        fn location(&self) -> &str {
            "flaky"
        }
        async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
            self.fail("put")?;
            self.inner.put(name, data).await
        }
        async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
            // Publishes, then loses the answer.
            let r = self.inner.put_new(name, data).await;
            self.fail("put")?;
            r
        }
        async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
            self.fail("get")?;
            self.inner.get(name).await
        }
        async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
            self.fail("get")?;
            self.inner.get_range(name, range).await
        }
        async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError> {
            self.inner.stat(name).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, name: &str) -> Result<(), StoreError> {
            self.fail("delete")?;
            self.inner.delete(name).await
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    fn flaky(n: u32, kind: StoreErrorKind) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: MemoryStore::new(),
            left: Mutex::new(n),
            kind,
        })
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_counted() {
        let f = flaky(3, StoreErrorKind::Unavailable);
        let s = RetryStore::new(f.clone(), quick());
        s.put("keys/a", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(s.retries().load(Ordering::Relaxed), 3);
        assert_eq!(&s.get("keys/a").await.unwrap()[..], b"x");
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let f = flaky(1, StoreErrorKind::PermissionDenied);
        let s = RetryStore::new(f.clone(), quick());
        let e = s.get("keys/a").await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::PermissionDenied);
        assert_eq!(s.retries().load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn giving_up_says_so() {
        let f = flaky(100, StoreErrorKind::Unavailable);
        let s = RetryStore::new(f.clone(), quick());
        let e = s.get("keys/a").await.unwrap_err();
        assert!(e.to_string().contains("gave up after 5 attempts"), "{e}");
        assert_eq!(s.retries().load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn put_new_whose_answer_was_lost_succeeds_once_and_only_for_the_same_bytes() {
        let f = flaky(1, StoreErrorKind::Unavailable);
        let s = RetryStore::new(f.clone(), quick());
        s.put_new("config", Bytes::from_static(b"c1"))
            .await
            .unwrap();
        let e = s
            .put_new("config", Bytes::from_static(b"c2"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::AlreadyExists);
        let e = s
            .put_new("config", Bytes::from_static(b"c1"))
            .await
            .unwrap_err();
        assert_eq!(
            e.kind,
            StoreErrorKind::AlreadyExists,
            "first attempt must not pass"
        );
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy::default();
        for attempt in 2..40 {
            let cap = p
                .base
                .saturating_mul(1u32 << (attempt - 2).min(30))
                .min(p.max);
            assert!(p.delay(attempt) <= cap);
        }
    }
}
