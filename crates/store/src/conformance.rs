//! The conformance suite every [`Store`] must pass.
//!
//! [`run`] exercises one store, which must start empty, and returns the first violation found.
//! Each store's tests call it (`tests/conformance.rs`); the repository-level part of the suite
//! (init, backup, restore, check on the store) lives with the repository crate.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::{Store, StoreErrorKind};

/// A violation of the store contract.
#[derive(Debug)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Violation(format!($($msg)+)));
        }
    };
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

/// Runs the whole suite against `store`, which must be empty.
pub async fn run(store: Arc<dyn Store>) -> Result<(), Violation> {
    let s = store.as_ref();
    let err_kind = |r: Result<(), crate::StoreError>| r.err().map(|e| e.kind);

    // Empty store.
    ensure!(
        s.list("data")
            .await
            .map_err(|e| Violation(e.to_string()))?
            .is_empty(),
        "fresh store lists objects"
    );
    let missing = s.get("keys/missing").await;
    ensure!(
        matches!(&missing, Err(e) if e.kind == StoreErrorKind::NotFound && !e.retryable),
        "get of a missing object: {missing:?}"
    );
    ensure!(
        err_kind(s.delete("keys/missing").await) == Some(StoreErrorKind::NotFound),
        "delete of a missing object is not NotFound"
    );
    ensure!(
        s.stat("keys/missing")
            .await
            .map(|_| ())
            .err()
            .map(|e| e.kind)
            == Some(StoreErrorKind::NotFound),
        "stat of a missing object is not NotFound"
    );

    // Put, get, stat, ranges.
    let small = pattern(1000, 1);
    s.put("keys/aa", small.clone())
        .await
        .map_err(|e| Violation(e.to_string()))?;
    ensure!(
        s.get("keys/aa")
            .await
            .map_err(|e| Violation(e.to_string()))?
            == small,
        "get returns other bytes than put"
    );
    ensure!(
        s.stat("keys/aa")
            .await
            .map_err(|e| Violation(e.to_string()))?
            .size
            == 1000,
        "stat size wrong"
    );
    let r = s
        .get_range("keys/aa", 10..20)
        .await
        .map_err(|e| Violation(e.to_string()))?;
    ensure!(r == small.slice(10..20), "ranged get returns wrong bytes");
    let r = s
        .get_range("keys/aa", 990..1000)
        .await
        .map_err(|e| Violation(e.to_string()))?;
    ensure!(
        r == small.slice(990..1000),
        "ranged get of the tail returns wrong bytes"
    );
    ensure!(
        s.get_range("keys/aa", 990..1001).await.is_err(),
        "ranged get past the end succeeds"
    );

    // Idempotent put, put_new.
    s.put("keys/aa", small.clone())
        .await
        .map_err(|e| Violation(format!("repeating a put failed: {e}")))?;
    ensure!(
        err_kind(s.put_new("keys/aa", pattern(10, 2)).await) == Some(StoreErrorKind::AlreadyExists),
        "put_new over an existing object did not fail with AlreadyExists"
    );
    ensure!(
        s.get("keys/aa")
            .await
            .map_err(|e| Violation(e.to_string()))?
            == small,
        "put_new replaced an existing object"
    );
    s.put_new("config", pattern(5, 3))
        .await
        .map_err(|e| Violation(e.to_string()))?;

    // Zero bytes.
    s.put("snapshots/empty", Bytes::new())
        .await
        .map_err(|e| Violation(e.to_string()))?;
    ensure!(
        s.get("snapshots/empty")
            .await
            .map_err(|e| Violation(e.to_string()))?
            .is_empty(),
        "zero-byte object not empty"
    );
    ensure!(
        s.stat("snapshots/empty")
            .await
            .map_err(|e| Violation(e.to_string()))?
            .size
            == 0,
        "zero-byte object has a size"
    );

    // Large object (several multipart parts on S3).
    let large = pattern(40 << 20, 4);
    s.put("data/ab/large", large.clone())
        .await
        .map_err(|e| Violation(e.to_string()))?;
    ensure!(
        s.get("data/ab/large")
            .await
            .map_err(|e| Violation(e.to_string()))?
            == large,
        "large object corrupted"
    );
    let mid = s
        .get_range("data/ab/large", (20 << 20) - 7..(20 << 20) + 9)
        .await
        .map_err(|e| Violation(e.to_string()))?;
    ensure!(
        mid == large.slice((20 << 20) - 7..(20 << 20) + 9),
        "ranged get inside a large object wrong"
    );

    // Listing: recursive, only below the prefix, exact sizes.
    let mut names = BTreeSet::new();
    for i in 0..300u32 {
        let name = format!("data/{:02x}/{:064x}", i % 7, i);
        names.insert(name);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for name in names.clone() {
        let st = Arc::clone(&store);
        tasks.spawn(async move { st.put(&name, pattern(17, 5)).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| Violation(e.to_string()))?
            .map_err(|e| Violation(format!("concurrent put: {e}")))?;
    }
    names.insert("data/ab/large".into());
    s.put("database/x", pattern(3, 6))
        .await
        .map_err(|e| Violation(e.to_string()))?;
    let listed = s.list("data").await.map_err(|e| Violation(e.to_string()))?;
    let listed_names: BTreeSet<String> = listed.iter().map(|o| o.name.clone()).collect();
    ensure!(
        listed_names == names,
        "list(data) returned {} names, expected {} (must be recursive and stop at the prefix boundary)",
        listed_names.len(),
        names.len()
    );
    ensure!(
        listed.iter().all(|o| o.size
            == if o.name == "data/ab/large" {
                40 << 20
            } else {
                17
            }),
        "listing reports wrong sizes"
    );
    let keys = s.list("keys").await.map_err(|e| Violation(e.to_string()))?;
    ensure!(
        keys.len() == 1 && keys[0].name == "keys/aa",
        "list(keys) wrong: {keys:?}"
    );

    // Delete.
    s.delete("data/ab/large")
        .await
        .map_err(|e| Violation(e.to_string()))?;
    ensure!(
        s.get("data/ab/large").await.err().map(|e| e.kind) == Some(StoreErrorKind::NotFound),
        "deleted object still readable"
    );
    ensure!(
        s.list("data")
            .await
            .map_err(|e| Violation(e.to_string()))?
            .len()
            == 300,
        "deleted object still listed"
    );

    // Invalid names are refused, never mapped outside the store.
    for bad in ["", "../x", "a//b", "/abs", "keys/.hidden", "UPPER"] {
        ensure!(
            err_kind(s.put(bad, Bytes::new()).await) == Some(StoreErrorKind::InvalidInput),
            "invalid name {bad:?} accepted"
        );
    }
    Ok(())
}
