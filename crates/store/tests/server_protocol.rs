//! The client of the zaibei server's repository API (`ServerStore`, `docs/API.md`) against a
//! protocol fixture.
//!
//! The fixture below is NOT the zaibei server (`crates/server`): it is a small in-test HTTP
//! server that implements the repository API of `docs/API.md` over an in-memory map, so that
//! the client can be tested on its own. It implements the whole protocol (bearer tokens,
//! `Range`, `If-None-Match: *`, paged listings with a tiny page size, append-only tokens,
//! body limits, quotas and the JSON error bodies) and can be told to answer the next requests
//! with given errors. The real server's own tests run the same `conformance::run` suite
//! against it.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The fixture's handlers pass finished responses around as errors; boxing them adds nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use zaibei_store::{
    CertFingerprint, Location, OpenOptions, RetryPolicy, ServerOptions, ServerStore, Store,
    StoreError, StoreErrorKind, check_name, conformance, open,
};
use zeroize::Zeroizing;

const TOKEN: &str = "zbt_test-token.0123456789";
const TENANT: &str = "acme";
const REPO: &str = "main";

/// The fixture's state.
struct Fixture {
    token: String,
    page_size: usize,
    objects: Mutex<BTreeMap<String, (Bytes, SystemTime)>>,
    /// The token may add but not delete or replace.
    append_only: AtomicBool,
    /// Largest body accepted by PUT.
    max_body: AtomicUsize,
    /// Bytes the tenant may keep in all.
    quota: AtomicU64,
    /// HEAD answers without `X-Zaibei-Modified-Ms` (only `Last-Modified`).
    no_modified_ms: AtomicBool,
    /// Answers for the next requests, whatever they ask.
    inject: Mutex<VecDeque<(StatusCode, &'static str)>>,
    /// Listing pages served.
    list_pages: AtomicU64,
}

type Shared = Arc<Fixture>;

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// What every request goes through first: injected answers, the bearer token, the tenant and
/// repository.
fn gate(fx: &Fixture, headers: &HeaderMap, tenant: &str, repo: &str) -> Result<(), Response> {
    if let Some((status, code)) = fx.inject.lock().unwrap().pop_front() {
        return Err(api_error(status, code, "injected by the test"));
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.and_then(|a| a.strip_prefix("Bearer ")) {
        None => {
            return Err(api_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token",
            ));
        }
        Some(t) if t != fx.token => {
            return Err(api_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "invalid token",
            ));
        }
        Some(_) => {}
    }
    if tenant != TENANT || repo != REPO {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "repo_not_found",
            "no such repository",
        ));
    }
    Ok(())
}

fn check(name: &str) -> Result<(), Response> {
    if check_name(name) {
        Ok(())
    } else {
        Err(api_error(
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "invalid object name",
        ))
    }
}

fn not_found() -> Response {
    api_error(StatusCode::NOT_FOUND, "not_found", "no such object")
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `bytes=FIRST-LAST` or `bytes=FIRST-`, as the API requires servers to support.
fn parse_range(text: &str) -> Option<(u64, Option<u64>)> {
    let spec = text.strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let first = first.parse().ok()?;
    let last = if last.is_empty() {
        None
    } else {
        Some(last.parse().ok()?)
    };
    Some((first, last))
}

type ObjectPath = Path<(String, String, String)>;

async fn get_object(
    State(fx): State<Shared>,
    Path((tenant, repo, name)): ObjectPath,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&fx, &headers, &tenant, &repo).and_then(|()| check(&name)) {
        return r;
    }
    let Some((data, _)) = fx.objects.lock().unwrap().get(&name).cloned() else {
        return not_found();
    };
    let octets = [(header::CONTENT_TYPE, "application/octet-stream")];
    let Some(range) = headers.get(header::RANGE) else {
        return (StatusCode::OK, octets, data).into_response();
    };
    let len = data.len() as u64;
    let unsatisfiable = || {
        let mut r = api_error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            "range outside the object",
        );
        r.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes */{len}")).unwrap(),
        );
        r
    };
    let Some((first, last)) = range.to_str().ok().and_then(parse_range) else {
        return unsatisfiable();
    };
    let last = last.unwrap_or(u64::MAX).min(len.saturating_sub(1));
    if first >= len || last < first {
        return unsatisfiable();
    }
    let body = data.slice(first as usize..=last as usize);
    let content_range = format!("bytes {first}-{last}/{len}");
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_RANGE, content_range),
        ],
        body,
    )
        .into_response()
}

async fn head_object(
    State(fx): State<Shared>,
    Path((tenant, repo, name)): ObjectPath,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&fx, &headers, &tenant, &repo).and_then(|()| check(&name)) {
        // HEAD answers carry no body.
        return r.status().into_response();
    }
    let Some((data, modified)) = fx.objects.lock().unwrap().get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let http_date = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&jiff::Timestamp::try_from(modified).unwrap())
        .unwrap();
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_LENGTH, data.len().into());
    out.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&http_date).unwrap(),
    );
    if !fx.no_modified_ms.load(Ordering::Relaxed) {
        out.insert("x-zaibei-modified-ms", ms(modified).into());
    }
    (StatusCode::OK, out).into_response()
}

async fn put_object(
    State(fx): State<Shared>,
    Path((tenant, repo, name)): ObjectPath,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&fx, &headers, &tenant, &repo).and_then(|()| check(&name)) {
        return r;
    }
    if body.len() > fx.max_body.load(Ordering::Relaxed) {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "body over the server's limit",
        );
    }
    let only_new = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let mut objects = fx.objects.lock().unwrap();
    let old = objects.get(&name).map(|(d, _)| d.clone());
    match &old {
        Some(_) if only_new => {
            return api_error(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the object exists",
            );
        }
        Some(d) if *d == body => return StatusCode::OK.into_response(),
        Some(_) if fx.append_only.load(Ordering::Relaxed) => {
            return api_error(
                StatusCode::CONFLICT,
                "object_exists",
                "an append-only token cannot replace an object",
            );
        }
        _ => {}
    }
    let used: u64 = objects.values().map(|(d, _)| d.len() as u64).sum();
    let after = used - old.as_ref().map_or(0, |d| d.len() as u64) + body.len() as u64;
    if after > fx.quota.load(Ordering::Relaxed) {
        return api_error(
            StatusCode::INSUFFICIENT_STORAGE,
            "quota_exceeded",
            "the tenant's quota is used up",
        );
    }
    objects.insert(name, (body, SystemTime::now()));
    if old.is_some() {
        StatusCode::OK.into_response()
    } else {
        StatusCode::CREATED.into_response()
    }
}

async fn delete_object(
    State(fx): State<Shared>,
    Path((tenant, repo, name)): ObjectPath,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&fx, &headers, &tenant, &repo).and_then(|()| check(&name)) {
        return r;
    }
    if fx.append_only.load(Ordering::Relaxed) {
        return api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an append-only token cannot delete",
        );
    }
    match fx.objects.lock().unwrap().remove(&name) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_objects(
    State(fx): State<Shared>,
    Path((tenant, repo)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&fx, &headers, &tenant, &repo) {
        return r;
    }
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            "limit must be positive",
        );
    }
    let limit = limit.min(fx.page_size);
    // `prefix` names a directory: the objects whose names start with `prefix/`.
    let dir = if q.prefix.is_empty() {
        String::new()
    } else if check_name(&q.prefix) {
        format!("{}/", q.prefix)
    } else {
        return api_error(StatusCode::BAD_REQUEST, "invalid_name", "invalid prefix");
    };
    fx.list_pages.fetch_add(1, Ordering::Relaxed);
    let objects = fx.objects.lock().unwrap();
    let mut page: Vec<serde_json::Value> = Vec::new();
    let mut truncated = false;
    let start = match &q.after {
        Some(a) if *a >= dir => std::ops::Bound::Excluded(a.clone()),
        _ => std::ops::Bound::Included(dir.clone()),
    };
    for (name, (data, modified)) in objects.range((start, std::ops::Bound::Unbounded)) {
        if !name.starts_with(&dir) {
            break;
        }
        if page.len() == limit {
            truncated = true;
            break;
        }
        page.push(serde_json::json!({
            "name": name,
            "size": data.len(),
            "modified_ms": ms(*modified),
        }));
    }
    axum::Json(serde_json::json!({"objects": page, "truncated": truncated})).into_response()
}

fn router(fx: Shared) -> Router {
    Router::new()
        .route(
            "/api/v1/tenants/{tenant}/repos/{repo}/objects",
            get(list_objects),
        )
        .route(
            "/api/v1/tenants/{tenant}/repos/{repo}/objects/{*name}",
            get(get_object)
                .head(head_object)
                .put(put_object)
                .delete(delete_object),
        )
        .layer(DefaultBodyLimit::disable())
        .with_state(fx)
}

fn fixture() -> Shared {
    Arc::new(Fixture {
        token: TOKEN.to_owned(),
        page_size: 7,
        objects: Mutex::default(),
        append_only: AtomicBool::new(false),
        max_body: AtomicUsize::new(usize::MAX),
        quota: AtomicU64::new(u64::MAX),
        no_modified_ms: AtomicBool::new(false),
        inject: Mutex::default(),
        list_pages: AtomicU64::new(0),
    })
}

/// Serves the fixture over plain HTTP on loopback.
async fn serve(fx: Shared) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(fx)).await });
    addr
}

fn options(token: &str) -> ServerOptions {
    ServerOptions {
        token: Some(Zeroizing::new(token.to_owned())),
        io_timeout: Duration::from_secs(10),
        ..ServerOptions::default()
    }
}

fn location(base: &str) -> zaibei_store::ServerLocation {
    match Location::parse(&format!("{base}/{TENANT}/{REPO}")).unwrap() {
        Location::Server(s) => s,
        other => panic!("{other:?}"),
    }
}

/// The bare client (no retries) on a fresh fixture.
async fn bare() -> (Shared, ServerStore) {
    let fx = fixture();
    let addr = serve(Arc::clone(&fx)).await;
    let store = ServerStore::new(&location(&format!("http://{addr}")), &options(TOKEN)).unwrap();
    (fx, store)
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, StoreError>) -> StoreError {
    r.expect_err("the request should have failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_store_conforms_through_the_protocol_fixture() {
    let (fx, store) = bare().await;
    conformance::run(Arc::new(store)).await.unwrap();
    // 300+ names at 7 a page: the listings really were paged.
    assert!(fx.list_pages.load(Ordering::Relaxed) > 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_opened_store_with_its_wrappers_conforms_too() {
    let fx = fixture();
    let addr = serve(Arc::clone(&fx)).await;
    let opts = OpenOptions {
        server: options(TOKEN),
        ..OpenOptions::default()
    };
    let loc = Location::parse(&format!("http://{addr}/{TENANT}/{REPO}")).unwrap();
    let opened = open(&loc, &opts).unwrap();
    assert!(opened.remote);
    assert_eq!(
        opened.store.location(),
        format!("http://{addr}/{TENANT}/{REPO}")
    );
    conformance::run(opened.store).await.unwrap();
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_permission_denied_and_not_retried() {
    let fx = fixture();
    let addr = serve(Arc::clone(&fx)).await;
    let loc = location(&format!("http://{addr}"));
    let wrong = ServerStore::new(&loc, &options("zbt_not-the-token")).unwrap();
    for e in [
        expect_err(wrong.get("config").await),
        expect_err(wrong.put("keys/aa", Bytes::from_static(b"x")).await),
        expect_err(wrong.list("keys").await),
    ] {
        assert_eq!(e.kind, StoreErrorKind::PermissionDenied, "{e}");
        assert!(!e.retryable);
        assert!(e.is_unreachable());
        assert!(e.to_string().contains("unauthorized: invalid token"), "{e}");
        assert!(!e.to_string().contains("zbt_"), "{e}");
    }
    // HEAD answers have no body: the status alone says it.
    let e = expect_err(wrong.stat("config").await);
    assert_eq!(e.kind, StoreErrorKind::PermissionDenied, "{e}");
    assert!(fx.objects.lock().unwrap().is_empty());

    // Through the wrappers too: a refused token is reported at once, not retried.
    let mut opts = OpenOptions {
        server: options("zbt_not-the-token"),
        retry: RetryPolicy {
            attempts: 5,
            base: Duration::from_secs(5),
            max: Duration::from_secs(5),
        },
        ..OpenOptions::default()
    };
    let opened = open(&Location::Server(loc.clone()), &opts).unwrap();
    let started = std::time::Instant::now();
    let e = expect_err(opened.store.get("config").await);
    assert_eq!(e.kind, StoreErrorKind::PermissionDenied);
    assert!(started.elapsed() < Duration::from_secs(4));

    // Without a token the store does not open at all.
    opts.server.token = None;
    let e = open(&Location::Server(loc), &opts).unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::InvalidInput);
}

#[tokio::test]
async fn a_request_for_another_tenant_is_not_found() {
    let fx = fixture();
    let addr = serve(Arc::clone(&fx)).await;
    let other = ServerStore::new(
        &location_of(&format!("http://{addr}/other/{REPO}")),
        &options(TOKEN),
    )
    .unwrap();
    let e = expect_err(other.get("config").await);
    assert_eq!(e.kind, StoreErrorKind::NotFound);
    assert!(e.to_string().contains("repo_not_found"), "{e}");
}

fn location_of(text: &str) -> zaibei_store::ServerLocation {
    match Location::parse(text).unwrap() {
        Location::Server(s) => s,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn injected_answers_map_to_the_documented_kinds() {
    use StoreErrorKind as K;
    let (fx, store) = bare().await;
    store
        .put("keys/aa", Bytes::from_static(b"key"))
        .await
        .unwrap();
    for (status, code, kind, retryable) in [
        (401, "unauthorized", K::PermissionDenied, false),
        (403, "forbidden", K::PermissionDenied, false),
        (404, "not_found", K::NotFound, false),
        (409, "object_exists", K::AlreadyExists, false),
        (409, "conflict", K::Other, false),
        (412, "precondition_failed", K::AlreadyExists, false),
        (400, "bad_request", K::InvalidInput, false),
        (413, "too_large", K::InvalidInput, false),
        (416, "range_not_satisfiable", K::InvalidInput, false),
        (422, "unprocessable", K::InvalidInput, false),
        (408, "timeout", K::Unavailable, true),
        (429, "too_many_requests", K::Unavailable, true),
        (500, "internal", K::Unavailable, true),
        (502, "bad_gateway", K::Unavailable, true),
        (503, "unavailable", K::Unavailable, true),
        (504, "gateway_timeout", K::Unavailable, true),
        (507, "quota_exceeded", K::Other, false),
    ] {
        fx.inject
            .lock()
            .unwrap()
            .push_back((StatusCode::from_u16(status).unwrap(), code));
        let e = expect_err(store.get("keys/aa").await);
        assert_eq!((e.kind, e.retryable), (kind, retryable), "{status}: {e}");
        assert!(e.to_string().contains(code), "{status}: {e}");
        assert!(e.to_string().contains("keys/aa"), "{status}: {e}");
        if status == 507 {
            assert!(
                e.detail.as_deref().unwrap().starts_with("quota exceeded"),
                "{e}"
            );
        }
    }
    // Nothing left over: the next request is answered normally.
    assert_eq!(&store.get("keys/aa").await.unwrap()[..], b"key");
}

#[tokio::test]
async fn real_answers_map_to_the_documented_kinds() {
    use StoreErrorKind as K;
    let (fx, store) = bare().await;
    let x = Bytes::from_static(b"x");

    // 404
    let e = expect_err(store.get("keys/none").await);
    assert_eq!((e.kind, e.retryable), (K::NotFound, false));
    assert_eq!(expect_err(store.stat("keys/none").await).kind, K::NotFound);
    assert_eq!(
        expect_err(store.delete("keys/none").await).kind,
        K::NotFound
    );

    // 412: put_new over an existing object.
    store.put_new("config", x.clone()).await.unwrap();
    let e = expect_err(store.put_new("config", x.clone()).await);
    assert_eq!(e.kind, K::AlreadyExists, "{e}");

    // 416: a range that starts past the end; a short 206 for one that ends past it.
    let e = expect_err(store.get_range("config", 5..9).await);
    assert_eq!(e.kind, K::InvalidInput, "{e}");
    let e = expect_err(store.get_range("config", 0..2).await);
    assert_eq!(e.kind, K::InvalidInput, "{e}");
    assert!(expect_err(store.get_range("config", 2..2).await).kind == K::InvalidInput);
    assert!(store.get_range("config", 1..1).await.unwrap().is_empty());

    // 413: a body over the server's limit.
    fx.max_body.store(4, Ordering::Relaxed);
    let e = expect_err(store.put("data/aa/big", Bytes::from_static(b"12345")).await);
    assert_eq!((e.kind, e.retryable), (K::InvalidInput, false), "{e}");
    assert!(e.to_string().contains("too_large"), "{e}");
    fx.max_body.store(usize::MAX, Ordering::Relaxed);

    // 507: over the tenant's quota.
    fx.quota.store(10, Ordering::Relaxed);
    let e = expect_err(store.put("data/aa/big", Bytes::from(vec![0u8; 10])).await);
    assert_eq!((e.kind, e.retryable), (K::Other, false), "{e}");
    assert!(e.to_string().contains("quota exceeded"), "{e}");
    fx.quota.store(u64::MAX, Ordering::Relaxed);

    // Append-only: 409 for a replacement with other bytes, 200 for the same bytes, 403 for a
    // deletion.
    fx.append_only.store(true, Ordering::Relaxed);
    store.put("config", x.clone()).await.unwrap();
    let e = expect_err(store.put("config", Bytes::from_static(b"y")).await);
    assert_eq!((e.kind, e.retryable), (K::AlreadyExists, false), "{e}");
    assert!(e.to_string().contains("object_exists"), "{e}");
    let e = expect_err(store.delete("config").await);
    assert_eq!((e.kind, e.retryable), (K::PermissionDenied, false), "{e}");
    assert!(e.to_string().contains("forbidden"), "{e}");
    assert!(e.to_string().contains("append-only"), "{e}");
    assert_eq!(&store.get("config").await.unwrap()[..], b"x");
}

#[tokio::test]
async fn a_429_is_retried_by_the_wrappers() {
    let fx = fixture();
    let addr = serve(Arc::clone(&fx)).await;
    let opts = OpenOptions {
        server: options(TOKEN),
        retry: RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        ..OpenOptions::default()
    };
    let loc = Location::parse(&format!("http://{addr}/{TENANT}/{REPO}")).unwrap();
    let store = open(&loc, &opts).unwrap().store;
    {
        let mut inject = fx.inject.lock().unwrap();
        inject.push_back((StatusCode::TOO_MANY_REQUESTS, "too_many_requests"));
        inject.push_back((StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    }
    store
        .put("keys/aa", Bytes::from_static(b"key"))
        .await
        .unwrap();
    assert!(fx.inject.lock().unwrap().is_empty());
    assert_eq!(&store.get("keys/aa").await.unwrap()[..], b"key");

    // An append-only replacement that meets the same bytes (a retried put whose first answer
    // was lost) succeeds; other bytes do not.
    fx.append_only.store(true, Ordering::Relaxed);
    store
        .put("keys/aa", Bytes::from_static(b"key"))
        .await
        .unwrap();
    let e = expect_err(store.put("keys/aa", Bytes::from_static(b"other")).await);
    assert_eq!(e.kind, StoreErrorKind::AlreadyExists, "{e}");
}

#[tokio::test]
async fn stat_takes_the_servers_clock_with_or_without_the_millisecond_header() {
    let (fx, store) = bare().await;
    let before = SystemTime::now() - Duration::from_secs(1);
    store
        .put("locks/aa", Bytes::from_static(b"lock"))
        .await
        .unwrap();
    let stored = fx.objects.lock().unwrap()["locks/aa"].1;
    let info = store.stat("locks/aa").await.unwrap();
    assert_eq!(info.size, 4);
    assert_eq!(
        info.modified.map(ms),
        Some(ms(stored)),
        "the millisecond header is exact"
    );
    fx.no_modified_ms.store(true, Ordering::Relaxed);
    let info = store.stat("locks/aa").await.unwrap();
    let modified = info.modified.expect("Last-Modified is parsed");
    // HTTP dates have whole seconds.
    assert!(modified >= before && modified <= stored, "{modified:?}");
    let listed = store.list("locks").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].modified.map(ms), Some(ms(stored)));
}

#[tokio::test]
async fn listings_page_and_stop_at_the_prefix_boundary() {
    let (fx, store) = bare().await;
    for i in 0..50 {
        store
            .put(&format!("index/{i:03}"), Bytes::from(vec![1u8; i]))
            .await
            .unwrap();
    }
    store
        .put("indexes/zz", Bytes::from_static(b"z"))
        .await
        .unwrap();
    store
        .put("index-x", Bytes::from_static(b"z"))
        .await
        .unwrap();
    fx.list_pages.store(0, Ordering::Relaxed);
    let listed = store.list("index").await.unwrap();
    assert_eq!(listed.len(), 50);
    assert!(
        listed
            .iter()
            .all(|o| o.size == o.name[6..].parse::<u64>().unwrap())
    );
    // 50 names at 7 a page: 8 pages.
    assert_eq!(fx.list_pages.load(Ordering::Relaxed), 8);
    assert!(store.list("snapshots").await.unwrap().is_empty());
}

/// A server that never answers.
#[tokio::test]
async fn a_server_that_does_not_answer_is_a_retryable_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.push(s);
        }
    });
    let store = ServerStore::new(
        &location(&format!("http://{addr}")),
        &ServerOptions {
            io_timeout: Duration::from_millis(300),
            ..options(TOKEN)
        },
    )
    .unwrap();
    let e = expect_err(store.get("config").await);
    assert_eq!(
        (e.kind, e.retryable),
        (StoreErrorKind::Unavailable, true),
        "{e}"
    );
    held.abort();
}

mod tls {
    //! The fixture behind TLS with a self-signed certificate, as the server makes on its first
    //! start.

    use super::*;

    /// Accepts TLS connections for `axum::serve` (handshakes that fail are dropped).
    struct TlsListener {
        tcp: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
    }

    impl axum::serve::Listener for TlsListener {
        type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                let Ok((stream, addr)) = self.tcp.accept().await else {
                    continue;
                };
                if let Ok(tls) = self.acceptor.accept(stream).await {
                    return (tls, addr);
                }
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            self.tcp.local_addr()
        }
    }

    struct TlsServer {
        addr: SocketAddr,
        cert_pem: String,
        fingerprint: CertFingerprint,
    }

    async fn serve_tls(fx: Shared) -> TlsServer {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let cert_der = certified.cert.der().clone();
        let key_der =
            rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
                .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        tokio::spawn(async move { axum::serve(listener, router(fx)).await });
        TlsServer {
            addr,
            cert_pem: certified.cert.pem(),
            fingerprint: CertFingerprint::of_der(cert_der.as_ref()),
        }
    }

    #[tokio::test]
    async fn a_self_signed_certificate_is_trusted_only_when_given_or_pinned() {
        let fx = fixture();
        let server = serve_tls(Arc::clone(&fx)).await;
        let by_name = location(&format!("https://localhost:{}", server.addr.port()));
        let by_ip = location(&format!("https://{}", server.addr));

        // Unknown certificate: refused, not retried, with a hint.
        let plain = ServerStore::new(&by_name, &options(TOKEN)).unwrap();
        let e = expect_err(plain.get("config").await);
        assert_eq!(
            (e.kind, e.retryable),
            (StoreErrorKind::PermissionDenied, false),
            "{e}"
        );
        assert!(e.to_string().contains("--server-ca"), "{e}");

        // The certificate as an extra CA: the whole protocol works.
        let with_ca = ServerOptions {
            ca_pem: Some(server.cert_pem.clone().into_bytes()),
            ..options(TOKEN)
        };
        let store = ServerStore::new(&by_name, &with_ca).unwrap();
        store
            .put("keys/aa", Bytes::from_static(b"over tls"))
            .await
            .unwrap();
        assert_eq!(&store.get("keys/aa").await.unwrap()[..], b"over tls");
        let store = ServerStore::new(&by_ip, &with_ca).unwrap();
        assert_eq!(store.stat("keys/aa").await.unwrap().size, 8);

        // Pinned by fingerprint: trusted without the CA.
        let pinned = ServerOptions {
            fingerprint: Some(server.fingerprint),
            ..options(TOKEN)
        };
        let store = ServerStore::new(&by_name, &pinned).unwrap();
        assert_eq!(store.list("keys").await.unwrap().len(), 1);

        // A wrong pin is refused even though the CA would be trusted.
        let wrong = ServerOptions {
            fingerprint: Some(CertFingerprint([7; 32])),
            ca_pem: Some(server.cert_pem.into_bytes()),
            ..options(TOKEN)
        };
        let store = ServerStore::new(&by_name, &wrong).unwrap();
        let e = expect_err(store.get("keys/aa").await);
        assert_eq!(
            (e.kind, e.retryable),
            (StoreErrorKind::PermissionDenied, false),
            "{e}"
        );
        assert!(e.to_string().contains("fingerprint"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_store_conforms_over_tls() {
        let fx = fixture();
        let server = serve_tls(Arc::clone(&fx)).await;
        let store = ServerStore::new(
            &location(&format!("https://localhost:{}", server.addr.port())),
            &ServerOptions {
                ca_pem: Some(server.cert_pem.into_bytes()),
                ..options(TOKEN)
            },
        )
        .unwrap();
        conformance::run(Arc::new(store)).await.unwrap();
    }
}
