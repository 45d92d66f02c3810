//! Tenant isolation and the privilege matrix, generated from the server's own route table
//! (`zaibei_server::api::routes()`): every route × method × role, with another tenant's real
//! ids, the repository data API included. A route added without a declared privilege, or with
//! one the roles do not hold as expected, fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::{BTreeSet, HashMap};

use common::{Backend, Method, Resp, StatusCode, TenantFixture, TestServer};
use serde_json::json;
use zaibei_server::routes::{Access, Route};
use zaibei_types::{Privilege, Role};

/// The routes anyone may call without a token. Anything else must declare a privilege.
const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/ready"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/login"),
    ("POST", "/api/v1/agents/register"),
];

/// Codes of refusals by the authorisation layer (as opposed to a handler's own checks).
const AUTHZ_CODES: &[&str] = &["forbidden", "wrong_tenant", "wrong_repo"];

fn privilege_of(route: &Route) -> Option<Privilege> {
    match route.access {
        Access::Public => None,
        Access::Requires(p) => Some(p),
    }
}

/// The route's path with every `{param}` (and `{*param}`) replaced from `ids`.
fn fill(path: &str, ids: &HashMap<&str, String>) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let name = name.trim_start_matches('*');
                    ids.get(name)
                        .unwrap_or_else(|| panic!("no id for path parameter {{{name}}} of {path}"))
                        .clone()
                }
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// Calls `route` on `path` with `token`: JSON `{}` as the body of the methods that take one.
async fn hit(srv: &TestServer, route: &Route, path: &str, token: Option<&str>) -> Resp {
    let body = json!({});
    let with_body = [Method::POST, Method::PUT, Method::PATCH].contains(&route.method);
    srv.call(
        route.method.clone(),
        path,
        token,
        with_body.then_some(&body),
    )
    .await
}

/// The ids of `t`'s real objects, by path parameter name.
fn ids_of(t: &TenantFixture) -> HashMap<&'static str, String> {
    HashMap::from([
        ("tenant", t.name.clone()),
        ("repo", t.repo.clone()),
        ("name", t.object.clone()),
        ("agent", t.agent.id.clone()),
        ("policy", t.policy.clone()),
        ("job", t.job.clone()),
        ("user", t.operator_name.clone()),
        ("token", t.api_token_id.clone()),
    ])
}

/// The route table itself: the public routes are exactly the allow-list, every other route
/// declares a privilege, routes are unique, and tenant privileges sit on tenant paths.
#[test]
fn route_table_declares_every_privilege() {
    let routes = zaibei_server::api::routes();
    let public: BTreeSet<(String, String)> = routes
        .iter()
        .filter(|r| r.access == Access::Public)
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let allowed: BTreeSet<(String, String)> = PUBLIC
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(public, allowed, "public routes differ from the allow-list");
    let mut seen = BTreeSet::new();
    for r in &routes {
        assert!(
            seen.insert((r.method.to_string(), r.path)),
            "{r:?} is declared twice"
        );
        if let Access::Requires(p) = r.access
            && p.scope() == zaibei_types::Scope::Tenant
        {
            assert!(
                r.path.contains("{tenant}"),
                "{r:?} needs the tenant privilege {} but names no tenant",
                p.code()
            );
        }
    }
    // The repository data API is in the table (and so in every matrix below).
    for (m, suffix) in [
        ("GET", "/objects"),
        ("GET", "{*name}"),
        ("HEAD", "{*name}"),
        ("PUT", "{*name}"),
        ("DELETE", "{*name}"),
    ] {
        assert!(
            routes
                .iter()
                .any(|r| r.method.as_str() == m && r.path.ends_with(suffix)),
            "no {m} …{suffix} route"
        );
    }
}

/// Without a token, or with a token that is not one, every non-public route answers 401.
async fn unauthenticated_is_401_everywhere(backend: Backend) {
    let srv = common::start(backend).await;
    let ids: HashMap<&str, String> = [
        "tenant", "repo", "name", "agent", "policy", "job", "user", "token",
    ]
    .into_iter()
    .map(|k| (k, "x1".to_owned()))
    .collect();
    let forged = format!("zb1_{}_{}", "0123456789abcdef", "ab".repeat(32));
    for route in zaibei_server::api::routes() {
        if route.access == Access::Public {
            continue;
        }
        let path = fill(route.path, &ids);
        let r = hit(&srv, &route, &path, None).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{route:?} without a token: {}",
            r.text()
        );
        if route.method != Method::HEAD {
            assert_eq!(r.error_code(), "missing_token", "{route:?}");
        }
        let r = hit(&srv, &route, &path, Some(&forged)).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{route:?} with a forged token"
        );
        if route.method != Method::HEAD {
            assert_eq!(r.error_code(), "invalid_token", "{route:?}");
        }
    }
}

/// Every caller of tenant `alpha` (operator, viewer, agent, and an API token limited to one
/// repository) is refused with 403 on every route given tenant `beta`'s real ids — before
/// any handler looks them up, so never a 404 that would tell what exists — and nothing of
/// `beta` changes.
async fn other_tenants_ids_are_refused(backend: Backend) {
    let srv = common::start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let alpha = srv.tenant_fixture(&sys, "alpha").await;
    let beta = srv.tenant_fixture(&sys, "beta").await;
    let scoped = srv
        .post(
            "/api/v1/me/tokens",
            &alpha.operator,
            json!({ "name": "one-repo", "repo": alpha.repo, "ttl_secs": 3600 }),
        )
        .await
        .ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let callers: Vec<(&str, String, Option<Role>)> = vec![
        (
            "alpha operator",
            alpha.operator.clone(),
            Some(Role::TenantOperator),
        ),
        (
            "alpha viewer",
            alpha.viewer.clone(),
            Some(Role::TenantViewer),
        ),
        ("alpha agent", alpha.agent.token.clone(), Some(Role::Agent)),
        ("alpha repo-scoped API token", scoped, None),
    ];
    let ids = ids_of(&beta);
    let audit = srv.admin("auditadmin").await;
    let denied_before = srv.audit_records(&audit, "access_denied").await.len();
    let mut refused = 0;
    for route in zaibei_server::api::routes() {
        let Some(privilege) = privilege_of(&route) else {
            continue;
        };
        if route.params().is_empty() {
            continue; // no ids to substitute: covered by the privilege matrix
        }
        let path = fill(route.path, &ids);
        for (who, token, role) in &callers {
            let r = hit(&srv, &route, &path, Some(token)).await;
            assert!(
                !r.status.is_success(),
                "{who} got {} on {route:?} with beta's ids",
                r.status
            );
            if route.path == "/api/v1/me/tokens/{token}" && role.is_none_or(|r| r.holds(privilege))
            {
                // One's own tokens: another user's token id is simply not among them (the
                // same answer as for an id that does not exist), and it stays valid.
                r.assert_error(404, "not_found");
                continue;
            }
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{who} on {} {path} ({route:?}): {}",
                route.method,
                r.text()
            );
            if route.method != Method::HEAD {
                let code = r.error_code();
                assert!(
                    AUTHZ_CODES.contains(&code.as_str()),
                    "{who} on {route:?}: {code}"
                );
            }
            refused += 1;
        }
    }
    assert!(
        refused > 100,
        "only {refused} refusals: the matrix is too small"
    );

    // Nothing of beta changed.
    let obj = srv
        .get(
            &format!(
                "/api/v1/tenants/beta/repos/{}/objects/{}",
                beta.repo, beta.object
            ),
            &beta.operator,
        )
        .await;
    assert_eq!(obj.status, StatusCode::OK);
    assert_eq!(obj.body, b"encrypted bytes");
    let job = srv
        .get(
            &format!("/api/v1/tenants/beta/jobs/{}", beta.job),
            &beta.operator,
        )
        .await
        .ok();
    assert_eq!(job["state"], "queued", "{job}");
    let policies = srv
        .get("/api/v1/tenants/beta/policies", &beta.operator)
        .await
        .ok();
    assert_eq!(policies.as_array().unwrap().len(), 1);
    let agents = srv
        .get("/api/v1/tenants/beta/agents", &beta.operator)
        .await
        .ok();
    assert_eq!(agents.as_array().unwrap().len(), 1);
    let repos = srv
        .get("/api/v1/tenants/beta/repos", &beta.operator)
        .await
        .ok();
    assert_eq!(repos.as_array().unwrap().len(), 1);
    let tokens = srv.get("/api/v1/me/tokens", &beta.operator).await.ok();
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["revoked"] == false),
        "{tokens}"
    );
    srv.login(&beta.operator_name, common::PASSWORD).await;
    let claimed = srv
        .call(
            Method::POST,
            "/api/v1/tenants/beta/agent/jobs/claim",
            Some(&beta.agent.token),
            None,
        )
        .await;
    assert_eq!(
        claimed.ok()["id"],
        beta.job.as_str(),
        "beta's job is still beta's to claim"
    );
    // Every refusal is in the audit log.
    let denied_after = srv.audit_records(&audit, "access_denied").await.len();
    assert!(
        denied_after - denied_before >= refused,
        "{refused} refusals, {} access_denied records",
        denied_after - denied_before
    );
}

/// On its own tenant, each role (the three administrators, operator, viewer, agent, and an
/// API token limited to one repository) is refused with 403 exactly where its role lacks the
/// route's declared privilege, and let through to the handler everywhere else.
async fn each_role_gets_exactly_its_privileges(backend: Backend) {
    let srv = common::start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let alpha = srv.tenant_fixture(&sys, "alpha").await;
    let scoped = srv
        .post(
            "/api/v1/me/tokens",
            &alpha.operator,
            json!({ "name": "one-repo", "repo": alpha.repo, "ttl_secs": 3600 }),
        )
        .await
        .ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Own tenant; ids that do not exist, so that permitted calls change nothing that matters.
    let missing: HashMap<&str, String> = HashMap::from([
        ("tenant", "alpha".to_owned()),
        ("repo", "no-such-repo".to_owned()),
        ("name", "data/zz/none".to_owned()),
        ("agent", "ffffffffffffffff".to_owned()),
        ("policy", "no-such-policy".to_owned()),
        ("job", "ffffffffffffffff".to_owned()),
        ("user", "no-such-user".to_owned()),
        ("token", "ffffffffffffffff".to_owned()),
    ]);
    let mut in_repo = missing.clone();
    in_repo.insert("repo", alpha.repo.clone());

    // (label, role, user for a fresh session, token, repo limit)
    type Caller = (String, Role, Option<String>, String, Option<String>);
    let mut callers: Vec<Caller> = Vec::new();
    for (name, role) in zaibei_server::bootstrap::ADMINS {
        callers.push((
            name.to_owned(),
            role,
            Some(name.to_owned()),
            srv.admin(name).await,
            None,
        ));
    }
    callers.push((
        "alpha operator".into(),
        Role::TenantOperator,
        Some(alpha.operator_name.clone()),
        alpha.operator.clone(),
        None,
    ));
    callers.push((
        "alpha viewer".into(),
        Role::TenantViewer,
        Some(alpha.viewer_name.clone()),
        alpha.viewer.clone(),
        None,
    ));
    callers.push((
        "alpha agent".into(),
        Role::Agent,
        None,
        alpha.agent.token.clone(),
        None,
    ));
    callers.push((
        "repo-scoped token".into(),
        Role::TenantOperator,
        None,
        scoped,
        Some(alpha.repo.clone()),
    ));

    let mut routes = zaibei_server::api::routes();
    // Logging out ends the session used: do it last.
    routes.sort_by_key(|r| r.path == "/api/v1/logout");
    let mut checked = 0;
    for route in &routes {
        let Some(privilege) = privilege_of(route) else {
            continue;
        };
        for (who, role, user, token, limit) in &callers {
            let ids = if limit.is_some() { &in_repo } else { &missing };
            let path = fill(route.path, ids);
            let token = if route.path == "/api/v1/logout" {
                match user {
                    Some(u) if u.contains('-') => srv.login(u, common::PASSWORD).await,
                    Some(u) => srv.admin(u).await,
                    None => token.clone(),
                }
            } else {
                token.clone()
            };
            let r = hit(&srv, route, &path, Some(&token)).await;
            let repo_ok = match limit {
                None => true,
                Some(_) => route.params().contains(&"repo") || privilege == Privilege::SelfService,
            };
            let expect_allowed = role.holds(privilege) && repo_ok;
            let authz_refusal = r.status == StatusCode::FORBIDDEN
                && (route.method == Method::HEAD || AUTHZ_CODES.contains(&r.error_code().as_str()));
            if expect_allowed {
                assert!(
                    r.status != StatusCode::UNAUTHORIZED && !authz_refusal,
                    "{who} ({}) should pass {route:?}: {} {}",
                    role.code(),
                    r.status,
                    r.text()
                );
            } else {
                assert!(
                    authz_refusal,
                    "{who} ({}) lacks {} for {route:?} but got {} {}",
                    role.code(),
                    privilege.code(),
                    r.status,
                    r.text()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} cases");
}

/// The OpenAPI document has every route of the table with its method, and each protected
/// operation names its privilege in `x-zaibei-privilege`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_route_table() {
    let srv = common::start(Backend::Sqlite).await;
    let r = srv
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let routes = zaibei_server::api::routes();
    for route in &routes {
        let path = route.path.replace("{*", "{");
        let method = route.method.as_str().to_lowercase();
        let op = paths
            .get(&path)
            .and_then(|item| item.get(&method))
            .unwrap_or_else(|| panic!("{route:?} is not in the OpenAPI document"));
        match route.access {
            Access::Public => {
                assert!(op.get("x-zaibei-privilege").is_none(), "{route:?}");
                assert!(op.get("security").is_none(), "{route:?}");
            }
            Access::Requires(p) => {
                assert_eq!(op["x-zaibei-privilege"], p.code(), "{route:?}");
                assert!(
                    op["security"].as_array().is_some_and(|s| !s.is_empty()),
                    "{route:?}"
                );
                assert!(op["responses"].get("403").is_some(), "{route:?}");
            }
        }
        for param in route.params() {
            let params = op["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{route:?} has no parameters"));
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == param && p["in"] == "path"),
                "{route:?} lacks {param}"
            );
        }
    }
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let operations: usize = paths
        .values()
        .map(|item| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| methods.contains(&k.as_str()))
                .count()
        })
        .sum();
    assert_eq!(
        operations,
        routes.len(),
        "the document has operations the table does not"
    );
}

both_backends!(
    unauthenticated_is_401_everywhere,
    other_tenants_ids_are_refused,
    each_role_gets_exactly_its_privileges,
);
