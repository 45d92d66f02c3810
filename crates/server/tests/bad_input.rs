//! Bad input: malformed JSON, oversized bodies, wrong content types, unknown fields, path
//! traversal, forged, expired and revoked tokens, replayed one-time tokens. Each is answered
//! with the right 4xx and a stable code in `{"error":{"code","message"}}`, changes nothing,
//! and leaves an audit record where it matters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, Method, StatusCode, TestServer};
use serde_json::{Value, json};

const LIMIT: usize = 16 * 1024;

async fn start(backend: Backend) -> TestServer {
    common::start_with(backend, |c| c.max_body_bytes = LIMIT).await
}

async fn tenants(srv: &TestServer, sys: &str) -> Value {
    srv.get("/api/v1/tenants", sys).await.ok()
}

/// JSON bodies: malformed, unknown fields, wrong types, wrong content type, too large.
async fn bad_bodies(backend: Backend) {
    let srv = start(backend).await;
    let sys = srv.admin("sysadmin").await;
    srv.create_tenant(&sys, "alpha").await;
    let before = tenants(&srv, &sys).await;
    let post = |ct: Option<&'static str>, body: Vec<u8>| {
        let srv = &srv;
        let sys = sys.clone();
        async move {
            srv.raw(Method::POST, "/api/v1/tenants", Some(&sys), ct, body)
                .await
        }
    };
    let json_ct = Some("application/json");
    post(json_ct, br#"{"name": "beta""#.to_vec())
        .await
        .assert_error(400, "malformed_json");
    post(json_ct, b"not json at all".to_vec())
        .await
        .assert_error(400, "malformed_json");
    post(json_ct, Vec::new())
        .await
        .assert_error(400, "malformed_json");
    post(Some("text/plain"), br#"{"name": "beta"}"#.to_vec())
        .await
        .assert_error(415, "unsupported_media_type");
    post(None, br#"{"name": "beta"}"#.to_vec())
        .await
        .assert_error(415, "unsupported_media_type");
    post(
        Some("application/x-www-form-urlencoded"),
        b"name=beta".to_vec(),
    )
    .await
    .assert_error(415, "unsupported_media_type");
    post(json_ct, br#"{"name": "beta", "owner": "eve"}"#.to_vec())
        .await
        .assert_error(422, "invalid_body");
    post(json_ct, br#"{"name": 5}"#.to_vec())
        .await
        .assert_error(422, "invalid_body");
    post(json_ct, br#"["beta"]"#.to_vec())
        .await
        .assert_error(422, "invalid_body");
    post(json_ct, br#"{"name": "Beta/../x"}"#.to_vec())
        .await
        .assert_error(400, "bad_name");
    let huge = format!(r#"{{"name": "beta", "pad": "{}"}}"#, "x".repeat(LIMIT * 2));
    post(json_ct, huge.into_bytes())
        .await
        .assert_error(413, "too_large");
    assert_eq!(tenants(&srv, &sys).await, before, "nothing was created");

    // The public routes parse the same way.
    srv.raw(Method::POST, "/api/v1/login", None, json_ct, b"{".to_vec())
        .await
        .assert_error(400, "malformed_json");
    srv.raw(
        Method::POST,
        "/api/v1/login",
        None,
        Some("text/plain"),
        br#"{"user":"a","password":"b"}"#.to_vec(),
    )
    .await
    .assert_error(415, "unsupported_media_type");
    srv.call(
        Method::POST,
        "/api/v1/login",
        None,
        Some(&json!({ "user": "sysadmin", "password": "x", "admin": true })),
    )
    .await
    .assert_error(422, "invalid_body");
    srv.raw(
        Method::POST,
        "/api/v1/agents/register",
        None,
        json_ct,
        b"[1,2".to_vec(),
    )
    .await
    .assert_error(400, "malformed_json");
    // Queries too.
    let aud = srv.admin("auditadmin").await;
    srv.get("/api/v1/audit?limit=many", &aud)
        .await
        .assert_error(400, "bad_query");
    srv.get("/api/v1/audit?action=no_such_action", &aud)
        .await
        .assert_error(400, "bad_query");
    srv.get("/api/v1/audit?colour=red", &aud)
        .await
        .assert_error(400, "bad_query");
    // Unknown routes.
    srv.get("/api/v1/no/such/route", &sys)
        .await
        .assert_error(404, "not_found");
}

/// Repository objects: too large, and names that try to leave the repository.
async fn object_names_and_sizes(backend: Backend) {
    let srv = start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let alpha = srv.tenant_fixture(&sys, "alpha").await;
    let base = format!("/api/v1/tenants/alpha/repos/{}/objects", alpha.repo);
    let listing = srv.get(&base, &alpha.operator).await.ok();

    srv.put_object(
        "alpha",
        &alpha.repo,
        "data/02/big",
        &alpha.operator,
        &vec![7u8; LIMIT + 1],
    )
    .await
    .assert_error(413, "too_large");
    assert_eq!(
        srv.put_object(
            "alpha",
            &alpha.repo,
            "data/02/fits",
            &alpha.operator,
            &vec![7u8; LIMIT / 2]
        )
        .await
        .status,
        StatusCode::CREATED
    );
    srv.delete(&format!("{base}/data/02/fits"), &alpha.operator)
        .await
        .ok();

    let targets = [
        "../../../escape",
        "data/../../../../escape",
        "%2e%2e/%2e%2e/%2e%2e/escape",
        "%2E%2E%2F%2E%2E%2F%2E%2E%2Fescape",
        "..%2f..%2f..%2fescape",
        "data/%2e%2e/%2e%2e/escape",
        "/tmp/zaibei-escape",
        "%2ftmp%2fzaibei-escape",
        "data/./escape",
        ".hidden",
        "data//escape",
        "data/ESCAPE",
        "data/esc%00ape",
    ];
    for t in targets {
        let target = format!("{base}/{t}");
        for method in ["PUT", "GET", "HEAD", "DELETE"] {
            let r = srv
                .raw_http(method, &target, Some(&alpha.operator), b"evil")
                .await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{method} {target}: {}",
                r.text()
            );
            if method != "HEAD" {
                assert_eq!(r.error_code(), "bad_name", "{method} {target}");
            }
        }
    }
    // A listing prefix cannot climb out either.
    srv.get(&format!("{base}?prefix=../"), &alpha.operator)
        .await
        .assert_error(400, "bad_name");
    srv.get(&format!("{base}?prefix=/etc"), &alpha.operator)
        .await
        .assert_error(400, "bad_name");
    // Neither can a repository or tenant name in the path.
    for target in [
        "/api/v1/tenants/alpha/repos/..%2f..%2f..%2fescape/objects/data/x",
        "/api/v1/tenants/alpha/repos/../objects/data/x",
        "/api/v1/tenants/alpha/repos/%2e%2e/objects/data/x",
    ] {
        let r = srv
            .raw_http("PUT", target, Some(&alpha.operator), b"evil")
            .await;
        assert!(r.status.is_client_error(), "{target}: {}", r.status);
        assert!(r.status != StatusCode::CREATED);
    }

    // Nothing was written anywhere: not outside the repository, not inside it.
    assert_eq!(srv.get(&base, &alpha.operator).await.ok(), listing);
    let mut stack = vec![srv.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains("escape") && name != ".hidden",
                "{} was written",
                entry.path().display()
            );
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    assert!(!std::path::Path::new("/tmp/zaibei-escape").exists());
    let repos = srv
        .get("/api/v1/tenants/alpha/repos", &alpha.operator)
        .await
        .ok();
    assert_eq!(repos.as_array().unwrap().len(), 1, "{repos}");
}

/// Listings take a prefix of names, as the repository client sends it (`data/`), page with
/// `after` and `limit`, and list the whole repository without one.
async fn object_listing(backend: Backend) {
    let srv = start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let alpha = srv.tenant_fixture(&sys, "alpha").await;
    for name in [
        "config",
        "data/0a/one",
        "data/0a/two",
        "data/0b/three",
        "snapshots/s1",
    ] {
        assert_eq!(
            srv.put_object("alpha", &alpha.repo, name, &alpha.operator, b"x")
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let base = format!("/api/v1/tenants/alpha/repos/{}/objects", alpha.repo);
    let names = |v: Value| -> Vec<String> {
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = srv.get(&base, &alpha.operator).await.ok();
    assert_eq!(
        names(all.clone()),
        [
            "config",
            "data/00/object-1",
            "data/0a/one",
            "data/0a/two",
            "data/0b/three",
            "snapshots/s1"
        ]
    );
    assert_eq!(all["truncated"], false);
    let data = srv
        .get(&format!("{base}?prefix=data/"), &alpha.operator)
        .await
        .ok();
    assert_eq!(
        names(data),
        [
            "data/00/object-1",
            "data/0a/one",
            "data/0a/two",
            "data/0b/three"
        ]
    );
    let d0a = srv
        .get(&format!("{base}?prefix=data/0a"), &alpha.operator)
        .await
        .ok();
    assert_eq!(names(d0a), ["data/0a/one", "data/0a/two"]);
    let page = srv
        .get(
            &format!("{base}?prefix=data/&limit=2&after=data/0a/one"),
            &alpha.operator,
        )
        .await
        .ok();
    assert_eq!(names(page.clone()), ["data/0a/two", "data/0b/three"]);
    assert_eq!(page["truncated"], false);
    let page = srv
        .get(&format!("{base}?prefix=data/&limit=1"), &alpha.operator)
        .await
        .ok();
    assert_eq!(page["truncated"], true);
    let none = srv
        .get(&format!("{base}?prefix=nothing/"), &alpha.operator)
        .await
        .ok();
    assert_eq!(names(none), Vec::<String>::new());
    // Usage follows the objects, and an emptied repository can be deleted.
    let repos = srv
        .get("/api/v1/tenants/alpha/repos", &alpha.operator)
        .await
        .ok();
    assert_eq!(repos[0]["objects"], 6, "{repos}");
    srv.delete(
        &format!("/api/v1/tenants/alpha/repos/{}", alpha.repo),
        &alpha.operator,
    )
    .await
    .assert_error(409, "not_empty");
    srv.create_repo("alpha", &alpha.operator, "empty").await;
    srv.delete("/api/v1/tenants/alpha/repos/empty", &alpha.operator)
        .await
        .ok();
}

fn forge(token: &str) -> String {
    let (head, secret) = token.rsplit_once('_').unwrap();
    let flipped: String = secret
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    format!("{head}_{flipped}")
}

async fn denials(srv: &TestServer, aud: &str, reason: &str) -> usize {
    srv.audit_records(aud, "access_denied")
        .await
        .iter()
        .filter(|r| r["event"]["details"]["reason"] == reason)
        .count()
}

/// Forged, expired and revoked bearer tokens: 401 with their code, nothing done, audited.
async fn bad_bearer_tokens(backend: Backend) {
    let srv = start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let aud = srv.admin("auditadmin").await;
    srv.create_tenant(&sys, "alpha").await;
    srv.create_user(
        &sys,
        "alpha-op",
        zaibei_types::Role::TenantOperator,
        Some("alpha"),
    )
    .await;
    let before = tenants(&srv, &sys).await;
    let create = |token: String| {
        let srv = &srv;
        async move {
            srv.post("/api/v1/tenants", &token, json!({ "name": "evil" }))
                .await
        }
    };

    // Forged: a real token's id with another secret.
    let forged = forge(&sys);
    create(forged.clone())
        .await
        .assert_error(401, "invalid_token");
    srv.get("/api/v1/me", &forged)
        .await
        .assert_error(401, "invalid_token");
    assert!(denials(&srv, &aud, "invalid_token").await >= 2);
    // Not a token of ours at all, or not a bearer header.
    create("garbage".into())
        .await
        .assert_error(401, "invalid_token");
    let r = srv
        .raw(Method::GET, "/api/v1/me", None, None, Vec::new())
        .await;
    r.assert_error(401, "missing_token");
    let r = srv
        .client
        .get(format!("{}/api/v1/me", srv.base))
        .header("Authorization", format!("Basic {sys}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let denied = srv.audit_records(&aud, "access_denied").await;
    assert!(
        denied
            .iter()
            .all(|r| r["event"]["actor"] == "anonymous" || r["event"]["outcome"] == "denied")
    );
    assert!(
        denied
            .iter()
            .any(|r| r["event"]["target"] == "POST /api/v1/tenants"),
        "{denied:?}"
    );

    // Expired.
    let op = srv.login("alpha-op", common::PASSWORD).await;
    let id = op.split('_').nth(1).unwrap().to_owned();
    let cat = srv.catalogue().await;
    sqlx::query("UPDATE tokens SET expires_ms = $1 WHERE id = $2")
        .bind(zaibei_audit::now_ms() - 1)
        .bind(&id)
        .execute(&cat.pool)
        .await
        .unwrap();
    srv.post("/api/v1/tenants/alpha/repos", &op, json!({ "name": "r1" }))
        .await
        .assert_error(401, "token_expired");
    assert!(denials(&srv, &aud, "token_expired").await >= 1);

    // Revoked.
    let op = srv.login("alpha-op", common::PASSWORD).await;
    srv.call(Method::POST, "/api/v1/logout", Some(&op), None)
        .await
        .ok();
    srv.post("/api/v1/tenants/alpha/repos", &op, json!({ "name": "r1" }))
        .await
        .assert_error(401, "token_revoked");
    assert!(denials(&srv, &aud, "token_revoked").await >= 1);
    let op = srv.login("alpha-op", common::PASSWORD).await;
    assert_eq!(
        srv.get("/api/v1/tenants/alpha/repos", &op).await.ok(),
        json!([]),
        "no repository was created"
    );

    // A one-time registration token is never a bearer token.
    let reg = srv.registration_token("alpha", &op).await;
    srv.get("/api/v1/tenants/alpha/agents", &reg)
        .await
        .assert_error(401, "invalid_token");
    assert_eq!(tenants(&srv, &sys).await, before);
}

/// One-time agent registration tokens: replayed, forged, expired.
async fn registration_tokens(backend: Backend) {
    let srv = start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let aud = srv.admin("auditadmin").await;
    srv.create_tenant(&sys, "alpha").await;
    srv.create_user(
        &sys,
        "alpha-op",
        zaibei_types::Role::TenantOperator,
        Some("alpha"),
    )
    .await;
    let op = srv.login("alpha-op", common::PASSWORD).await;
    let register = |token: String, host: &'static str| {
        let srv = &srv;
        async move {
            srv.call(
                Method::POST,
                "/api/v1/agents/register",
                None,
                Some(&json!({ "token": token, "hostname": host })),
            )
            .await
        }
    };

    let reg = srv.registration_token("alpha", &op).await;
    assert_eq!(
        register(reg.clone(), "host-1").await.status,
        StatusCode::CREATED
    );
    register(reg.clone(), "host-2")
        .await
        .assert_error(401, "token_replayed");
    let replays = srv.audit_records(&aud, "agent_token_replayed").await;
    assert_eq!(replays.len(), 1, "{replays:?}");
    assert_eq!(replays[0]["event"]["tenant"], "alpha");
    assert_eq!(replays[0]["event"]["details"]["hostname"], "host-2");

    // Concurrent replays: exactly one registration wins.
    let reg = srv.registration_token("alpha", &op).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let reg = reg.clone();
        let client = srv.client.clone();
        let url = format!("{}/api/v1/agents/register", srv.base);
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(json!({ "token": reg, "hostname": "racer" }).to_string())
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut won = 0;
    for t in tasks {
        let status = t.await.unwrap();
        if status == StatusCode::CREATED {
            won += 1;
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }
    assert_eq!(won, 1, "one registration per token");

    // Forged: the id of a live token, another secret.
    let reg = srv.registration_token("alpha", &op).await;
    register(forge(&reg), "host-3")
        .await
        .assert_error(401, "invalid_token");
    assert!(denials(&srv, &aud, "forged_token").await >= 1);
    register("zb1_nothex_nothex".into(), "host-3")
        .await
        .assert_error(401, "invalid_token");
    // A user's session token is not a registration token.
    register(op.clone(), "host-3")
        .await
        .assert_error(401, "invalid_token");
    // Bad host names.
    register(reg.clone(), "")
        .await
        .assert_error(400, "bad_hostname");
    register(reg.clone(), "a\u{7}b")
        .await
        .assert_error(400, "bad_hostname");
    // Still good after all that, once.
    assert_eq!(
        register(reg.clone(), "host-3").await.status,
        StatusCode::CREATED
    );

    // Expired.
    let reg = srv.registration_token("alpha", &op).await;
    let id = reg.split('_').nth(1).unwrap().to_owned();
    let cat = srv.catalogue().await;
    sqlx::query("UPDATE tokens SET expires_ms = 1 WHERE id = $1")
        .bind(&id)
        .execute(&cat.pool)
        .await
        .unwrap();
    register(reg, "host-4")
        .await
        .assert_error(401, "token_expired");
    assert!(denials(&srv, &aud, "expired").await >= 1);

    let agents = srv.get("/api/v1/tenants/alpha/agents", &op).await.ok();
    let hosts: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        ["host-1", "host-3", "racer"],
        "only the legitimate registrations"
    );
}

both_backends!(
    bad_bodies,
    object_names_and_sizes,
    object_listing,
    bad_bearer_tokens,
    registration_tokens
);
