//! The store conformance suite against a real S3 server (Garage, started by `scripts/test`),
//! directly and through a proxy that injects network faults; listings across pages; and
//! multipart uploads cut off halfway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zaibei_store::{Location, OpenOptions, RetryPolicy, Store, StoreErrorKind, conformance, open};
use zaibei_testkit::{FaultPlan, FaultProxy, S3Target};

fn target() -> S3Target {
    S3Target::from_env().unwrap_or_else(|e| panic!("{e}"))
}

fn options(target: &S3Target, io_timeout: Duration, retry: RetryPolicy) -> OpenOptions {
    let mut o = OpenOptions::default();
    o.bucket.region = Some(target.credentials.region.clone());
    o.bucket.access_key_id = Some(target.credentials.access_key_id.clone());
    o.bucket.secret_access_key = Some(target.credentials.secret_access_key.clone());
    o.bucket.io_timeout = io_timeout;
    o.retry = retry;
    o
}

fn store_at(location: &str, opts: &OpenOptions) -> Arc<dyn Store> {
    open(&Location::parse(location).unwrap(), opts)
        .unwrap()
        .store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_conforms() {
    let t = target();
    let loc = t.location(&S3Target::unique_prefix("conformance"), None);
    let store = store_at(
        &loc,
        &options(&t, Duration::from_secs(30), RetryPolicy::default()),
    );
    conformance::run(store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_conforms_through_resets_stalls_503s_and_truncated_bodies() {
    let t = target();
    let plan = FaultPlan {
        reset: 0.04,
        stall: 0.01,
        stall_for: Duration::from_secs(3),
        unavailable: 0.05,
        truncate: 0.04,
        seed: 0x5eed,
        ..FaultPlan::default()
    };
    let proxy = FaultProxy::start(t.addr().unwrap(), plan).await.unwrap();
    let endpoint = format!("http://{}", proxy.addr());
    let loc = t.location(&S3Target::unique_prefix("faults"), Some(&endpoint));
    let retry = RetryPolicy {
        attempts: 12,
        base: Duration::from_millis(20),
        max: Duration::from_millis(500),
    };
    let store = store_at(&loc, &options(&t, Duration::from_secs(1), retry));
    conformance::run(store).await.unwrap();
    let counts = proxy.counts();
    eprintln!("faults injected: {counts}");
    assert!(counts.reset > 0 && counts.unavailable > 0, "{counts}");
    assert!(counts.truncate > 0 && counts.stall > 0, "{counts}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_crosses_pages() {
    let t = target();
    let loc = t.location(&S3Target::unique_prefix("listing"), None);
    let store = store_at(
        &loc,
        &options(&t, Duration::from_secs(30), RetryPolicy::default()),
    );
    // Garage answers at most 1000 keys per page.
    let n = 2345u32;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let s = Arc::clone(&store);
        tasks.spawn(async move {
            s.put(
                &format!("index/{i:064x}"),
                Bytes::from(i.to_le_bytes().to_vec()),
            )
            .await
        });
        if tasks.len() >= 32 {
            tasks.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let mut names: Vec<String> = store
        .list("index")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n as usize);
    assert_eq!(names[0], format!("index/{:064x}", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_multipart_upload_never_becomes_an_object() {
    let t = target();
    // The upload is started and its first part lands; every request after that is cut, so
    // it is never completed (nor aborted).
    let plan = FaultPlan {
        reset: 1.0,
        seed: 7,
        spare_first: 2,
        ..FaultPlan::default()
    };
    let proxy = FaultProxy::start(t.addr().unwrap(), FaultPlan::default())
        .await
        .unwrap();
    let endpoint = format!("http://{}", proxy.addr());
    let prefix = S3Target::unique_prefix("multipart");
    let no_retry = RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    };
    let through_proxy = store_at(
        &t.location(&prefix, Some(&endpoint)),
        &options(&t, Duration::from_secs(5), no_retry),
    );
    let direct = store_at(
        &t.location(&prefix, None),
        &options(&t, Duration::from_secs(30), RetryPolicy::default()),
    );
    let big = Bytes::from(
        (0..(zaibei_store::MULTIPART_PART_SIZE * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    proxy.set_plan(plan);
    let err = through_proxy
        .put("data/ab/big", big.clone())
        .await
        .unwrap_err();
    assert!(err.retryable, "{err}");
    let counts = proxy.counts();
    assert!(counts.requests >= 3 && counts.reset >= 1, "{counts}");
    proxy.set_plan(FaultPlan::default());
    assert_eq!(
        direct.stat("data/ab/big").await.unwrap_err().kind,
        StoreErrorKind::NotFound
    );
    assert!(direct.list("data").await.unwrap().is_empty());
    // The same upload, uninterrupted, publishes the whole object.
    through_proxy.put("data/ab/big", big.clone()).await.unwrap();
    assert_eq!(direct.get("data/ab/big").await.unwrap(), big);
    proxy.shutdown().await;
}
