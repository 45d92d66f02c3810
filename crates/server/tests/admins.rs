//! The three administrators (三员分立) end to end, and the account security around them:
//! password policy, lockout, session expiry and revocation, scoped API tokens, TOTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, Method, PASSWORD, StatusCode, TestServer};
use serde_json::{Value, json};
use zaibei_server::auth::totp;

fn policy(overrides: Value) -> Value {
    let mut p = json!({
        "min_password_len": 12,
        "min_password_classes": 3,
        "lockout_threshold": 5,
        "lockout_secs": 900,
        "session_ttl_secs": 28800,
        "max_token_ttl_secs": 31536000,
        "registration_ttl_secs": 86400
    });
    for (k, v) in overrides.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn roles(srv: &TestServer, token: &str) -> Value {
    let users = srv.get("/api/v1/users", token).await.ok();
    users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_owned(),
                json!([u["role"], u["disabled"]]),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// None of the three can do another's job, and nobody changes their own role.
async fn three_administrators_are_separated(backend: Backend) {
    let srv = common::start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let sec = srv.admin("secadmin").await;
    let aud = srv.admin("auditadmin").await;
    let alpha = srv.tenant_fixture(&sys, "alpha").await;
    let before = roles(&srv, &sys).await;

    // The system administrator: never the audit log, never who holds which role, never the
    // other administrators' accounts, never the security policy.
    for path in [
        "/api/v1/audit",
        "/api/v1/audit/export",
        "/api/v1/audit/checkpoints",
        "/api/v1/audit/key",
    ] {
        srv.get(path, &sys).await.assert_error(403, "forbidden");
    }
    srv.put(
        "/api/v1/users/alpha-view/role",
        &sys,
        json!({ "role": "tenant_operator", "tenant": "alpha" }),
    )
    .await
    .assert_error(403, "forbidden");
    srv.put(
        "/api/v1/users/sysadmin/role",
        &sys,
        json!({ "role": "audit_admin" }),
    )
    .await
    .assert_error(403, "forbidden");
    srv.post(
        "/api/v1/users",
        &sys,
        json!({ "name": "eve", "password": PASSWORD, "role": "audit_admin" }),
    )
    .await
    .assert_error(403, "role_needs_security_admin");
    for admin in ["secadmin", "auditadmin"] {
        let path = format!("/api/v1/users/{admin}");
        srv.call(
            Method::PATCH,
            &path,
            Some(&sys),
            Some(&json!({ "disabled": true })),
        )
        .await
        .assert_error(403, "administrator_account");
        srv.call(
            Method::PATCH,
            &path,
            Some(&sys),
            Some(&json!({ "password": "Brand-New-Pass-42" })),
        )
        .await
        .assert_error(403, "administrator_account");
        srv.delete(&path, &sys)
            .await
            .assert_error(403, "administrator_account");
    }
    srv.call(
        Method::POST,
        "/api/v1/users/alpha-op/unlock",
        Some(&sys),
        None,
    )
    .await
    .assert_error(403, "forbidden");
    srv.delete(&format!("/api/v1/tokens/{}", alpha.api_token_id), &sys)
        .await
        .assert_error(403, "forbidden");
    srv.put(
        "/api/v1/security-policy",
        &sys,
        policy(json!({ "lockout_threshold": 0 })),
    )
    .await
    .assert_error(403, "forbidden");

    // The audit administrator reads the log and changes nothing.
    srv.get("/api/v1/audit", &aud).await.ok();
    srv.post(
        "/api/v1/users",
        &aud,
        json!({ "name": "eve", "password": PASSWORD, "role": "tenant_viewer", "tenant": "alpha" }),
    )
    .await
    .assert_error(403, "forbidden");
    srv.call(
        Method::PATCH,
        "/api/v1/users/alpha-op",
        Some(&aud),
        Some(&json!({ "disabled": true })),
    )
    .await
    .assert_error(403, "forbidden");
    srv.put("/api/v1/security-policy", &aud, policy(json!({})))
        .await
        .assert_error(403, "forbidden");
    srv.post("/api/v1/tenants", &aud, json!({ "name": "gamma" }))
        .await
        .assert_error(403, "forbidden");
    srv.put(
        "/api/v1/users/alpha-view/role",
        &aud,
        json!({ "role": "tenant_operator", "tenant": "alpha" }),
    )
    .await
    .assert_error(403, "forbidden");
    srv.get("/metrics", &aud)
        .await
        .assert_error(403, "forbidden");

    // The security administrator decides who may do what, and runs no system.
    srv.post("/api/v1/tenants", &sec, json!({ "name": "gamma" }))
        .await
        .assert_error(403, "forbidden");
    srv.post(
        "/api/v1/tenants/alpha/repos",
        &sec,
        json!({ "name": "sneaky" }),
    )
    .await
    .assert_error(403, "forbidden");
    srv.post(
        "/api/v1/tenants/alpha/policies",
        &sec,
        json!({ "name": "p2", "agent": alpha.agent.id, "repo": alpha.repo, "paths": ["/"], "schedule": "0 0 * * *", "rpo_target_secs": 60 }),
    )
    .await
    .assert_error(403, "forbidden");
    srv.post(
        "/api/v1/users",
        &sec,
        json!({ "name": "eve", "password": PASSWORD, "role": "tenant_viewer", "tenant": "alpha" }),
    )
    .await
    .assert_error(403, "forbidden");
    srv.get("/api/v1/audit", &sec)
        .await
        .assert_error(403, "forbidden");
    srv.get("/metrics", &sec)
        .await
        .assert_error(403, "forbidden");

    // Nothing above changed anyone's role or account, or created anything.
    assert_eq!(roles(&srv, &sys).await, before);
    let tenants = srv.get("/api/v1/tenants", &sys).await.ok();
    assert_eq!(tenants.as_array().unwrap().len(), 1, "{tenants}");

    // Nobody changes their own role, the security administrator included.
    srv.put(
        "/api/v1/users/secadmin/role",
        &sec,
        json!({ "role": "system_admin" }),
    )
    .await
    .assert_error(403, "own_role");

    // What the security administrator may do: roles, the policy.
    srv.put(
        "/api/v1/users/alpha-view/role",
        &sec,
        json!({ "role": "tenant_operator", "tenant": "alpha" }),
    )
    .await
    .ok();
    // The old sessions carried the old role: they end.
    srv.get("/api/v1/me", &alpha.viewer)
        .await
        .assert_error(401, "token_revoked");
    let t = srv.login("alpha-view", PASSWORD).await;
    assert_eq!(
        srv.get("/api/v1/me", &t).await.ok()["role"],
        "tenant_operator"
    );
    // Agents are not users; administrators belong to no tenant.
    srv.put(
        "/api/v1/users/alpha-view/role",
        &sec,
        json!({ "role": "agent", "tenant": "alpha" }),
    )
    .await
    .assert_error(400, "bad_role");
    srv.put(
        "/api/v1/users/alpha-view/role",
        &sec,
        json!({ "role": "system_admin", "tenant": "alpha" }),
    )
    .await
    .assert_error(400, "bad_tenant");
    srv.put(
        "/api/v1/security-policy",
        &sec,
        policy(json!({ "min_password_len": 16 })),
    )
    .await
    .ok();
    assert_eq!(
        srv.get("/api/v1/security-policy", &sys).await.ok()["min_password_len"],
        16
    );
    srv.put(
        "/api/v1/security-policy",
        &sec,
        policy(json!({ "min_password_len": 4 })),
    )
    .await
    .assert_error(422, "bad_policy");
    let granted = srv.audit_records(&aud, "role_granted").await;
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(granted[0]["event"]["actor"], "secadmin");
    let changed = srv.audit_records(&aud, "config_changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
}

/// Weak passwords are refused wherever a password is set, with `weak_password`.
async fn password_policy(backend: Backend) {
    let srv = common::start(backend).await;
    let sys = srv.admin("sysadmin").await;
    srv.create_tenant(&sys, "alpha").await;
    for (name, pw) in [
        ("u1", "Short1!"),                // too short
        ("u2", "alllowercaseletters"),    // one class
        ("carol", "Carol-Is-Great-2024"), // contains the user name
    ] {
        let r = srv
            .post(
                "/api/v1/users",
                &sys,
                json!({ "name": name, "password": pw, "role": "tenant_viewer", "tenant": "alpha" }),
            )
            .await;
        r.assert_error(400, "weak_password");
    }
    let users = srv.get("/api/v1/users", &sys).await.ok();
    assert_eq!(
        users.as_array().unwrap().len(),
        3,
        "only the administrators: {users}"
    );

    srv.create_user(
        &sys,
        "dave",
        zaibei_types::Role::TenantViewer,
        Some("alpha"),
    )
    .await;
    let dave = srv.login("dave", PASSWORD).await;
    srv.post(
        "/api/v1/me/password",
        &dave,
        json!({ "old": PASSWORD, "new": "weak" }),
    )
    .await
    .assert_error(400, "weak_password");
    srv.call(
        Method::PATCH,
        "/api/v1/users/dave",
        Some(&sys),
        Some(&json!({ "password": "weak" })),
    )
    .await
    .assert_error(400, "weak_password");
    // The password did not change.
    srv.login("dave", PASSWORD).await;
    srv.post(
        "/api/v1/me/password",
        &dave,
        json!({ "old": "wrong-Old-pass-1", "new": "Another-Good-Pass-7" }),
    )
    .await
    .assert_error(403, "bad_credentials");
    srv.post(
        "/api/v1/me/password",
        &dave,
        json!({ "old": PASSWORD, "new": "Another-Good-Pass-7" }),
    )
    .await
    .ok();
    srv.login("dave", "Another-Good-Pass-7").await;
    srv.try_login("dave", PASSWORD, None)
        .await
        .assert_error(401, "bad_credentials");
}

/// After `lockout_threshold` failures even the right password is refused until the lock ends
/// or the security administrator unlocks the account.
async fn lockout_and_unlock(backend: Backend) {
    let srv = common::start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let sec = srv.admin("secadmin").await;
    let aud = srv.admin("auditadmin").await;
    srv.create_tenant(&sys, "alpha").await;
    srv.create_user(
        &sys,
        "erin",
        zaibei_types::Role::TenantOperator,
        Some("alpha"),
    )
    .await;
    srv.put(
        "/api/v1/security-policy",
        &sec,
        policy(json!({ "lockout_threshold": 3 })),
    )
    .await
    .ok();
    let session = srv.login("erin", PASSWORD).await;
    for _ in 0..3 {
        srv.try_login("erin", "Wrong-Password-1", None)
            .await
            .assert_error(401, "bad_credentials");
    }
    srv.try_login("erin", PASSWORD, None)
        .await
        .assert_error(401, "account_locked");
    // A locked account's sessions stop working too.
    srv.get("/api/v1/me", &session)
        .await
        .assert_error(401, "account_locked");
    let users = srv.get("/api/v1/users", &sec).await.ok();
    let erin = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "erin")
        .unwrap()
        .clone();
    assert!(erin["locked_until_ms"].as_i64().is_some(), "{erin}");
    assert_eq!(srv.audit_records(&aud, "account_locked").await.len(), 1);
    assert!(srv.audit_records(&aud, "login_failed").await.len() >= 4);
    // The system administrator cannot unlock; the security administrator can.
    srv.call(Method::POST, "/api/v1/users/erin/unlock", Some(&sys), None)
        .await
        .assert_error(403, "forbidden");
    srv.call(Method::POST, "/api/v1/users/erin/unlock", Some(&sec), None)
        .await
        .ok();
    srv.login("erin", PASSWORD).await;
    srv.get("/api/v1/me", &session).await.ok();
    assert_eq!(srv.audit_records(&aud, "account_unlocked").await.len(), 1);
    // Unknown users fail the same way as wrong passwords.
    srv.try_login("nobody", PASSWORD, None)
        .await
        .assert_error(401, "bad_credentials");
}

/// Sessions expire, and revoked tokens (logout, the security administrator) stop working.
async fn session_expiry_and_revocation(backend: Backend) {
    let srv = common::start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let sec = srv.admin("secadmin").await;
    srv.create_tenant(&sys, "alpha").await;
    srv.create_user(
        &sys,
        "frank",
        zaibei_types::Role::TenantViewer,
        Some("alpha"),
    )
    .await;

    srv.put(
        "/api/v1/security-policy",
        &sec,
        policy(json!({ "session_ttl_secs": 1 })),
    )
    .await
    .ok();
    let short = srv.login("frank", PASSWORD).await;
    srv.get("/api/v1/me", &short).await.ok();
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    srv.get("/api/v1/me", &short)
        .await
        .assert_error(401, "token_expired");
    // Sessions issued before the change keep their lifetime.
    srv.put("/api/v1/security-policy", &sec, policy(json!({})))
        .await
        .ok();

    // Logout revokes the session used.
    let s = srv.login("frank", PASSWORD).await;
    srv.call(Method::POST, "/api/v1/logout", Some(&s), None)
        .await
        .ok();
    srv.get("/api/v1/me", &s)
        .await
        .assert_error(401, "token_revoked");

    // The security administrator revokes anyone's token.
    let s = srv.login("frank", PASSWORD).await;
    let id = s.split('_').nth(1).unwrap().to_owned();
    let mine = srv.get("/api/v1/me/tokens", &s).await.ok();
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && t["revoked"] == false)
    );
    srv.delete(&format!("/api/v1/tokens/{id}"), &sec).await.ok();
    srv.get("/api/v1/me", &s)
        .await
        .assert_error(401, "token_revoked");
    srv.delete("/api/v1/tokens/ffffffffffffffff", &sec)
        .await
        .assert_error(404, "not_found");

    // Disabling an account ends its sessions.
    let s = srv.login("frank", PASSWORD).await;
    srv.call(
        Method::PATCH,
        "/api/v1/users/frank",
        Some(&sys),
        Some(&json!({ "disabled": true })),
    )
    .await
    .ok();
    let r = srv.get("/api/v1/me", &s).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    srv.try_login("frank", PASSWORD, None)
        .await
        .assert_error(401, "account_disabled");
}

/// API tokens never exceed their privileges, their repository or their lifetime.
async fn scoped_api_tokens(backend: Backend) {
    let srv = common::start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let alpha = srv.tenant_fixture(&sys, "alpha").await;
    srv.create_repo("alpha", &alpha.operator, "other").await;
    let objects = format!("/api/v1/tenants/alpha/repos/{}/objects", alpha.repo);

    // Read-only on one repository.
    let ro = srv
        .post(
            "/api/v1/me/tokens",
            &alpha.operator,
            json!({ "name": "reader", "privileges": ["repo_data_read"], "repo": alpha.repo, "ttl_secs": 600 }),
        )
        .await;
    assert_eq!(ro.status, StatusCode::CREATED);
    let ro = ro.json();
    let ro_token = ro["token"].as_str().unwrap();
    assert!(ro["expires_ms"].as_i64().unwrap() <= zaibei_audit::now_ms() + 601_000);
    let list = srv.get(&objects, ro_token).await.ok();
    assert_eq!(list["objects"].as_array().unwrap().len(), 1);
    srv.put_object("alpha", &alpha.repo, "data/01/new", ro_token, b"x")
        .await
        .assert_error(403, "forbidden");
    srv.delete(&format!("{objects}/{}", alpha.object), ro_token)
        .await
        .assert_error(403, "forbidden");
    srv.get("/api/v1/tenants/alpha/repos/other/objects", ro_token)
        .await
        .assert_error(403, "wrong_repo");
    srv.get("/api/v1/tenants/alpha/repos", ro_token)
        .await
        .assert_error(403, "forbidden");
    srv.get("/api/v1/tenants/alpha/jobs", ro_token)
        .await
        .assert_error(403, "forbidden");
    // It cannot mint a broader token either.
    srv.post(
        "/api/v1/me/tokens",
        ro_token,
        json!({ "name": "wider", "privileges": ["repo_data_delete"] }),
    )
    .await
    .assert_error(403, "forbidden");

    // An append-only token adds objects but never replaces or deletes one.
    let ao = srv
        .post(
            "/api/v1/me/tokens",
            &alpha.operator,
            json!({ "name": "backup", "privileges": ["repo_data_read", "repo_data_append"], "repo": alpha.repo }),
        )
        .await
        .ok();
    let ao_token = ao["token"].as_str().unwrap();
    assert_eq!(
        srv.put_object("alpha", &alpha.repo, "data/01/new", ao_token, b"new")
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        srv.put_object("alpha", &alpha.repo, "data/01/new", ao_token, b"new")
            .await
            .status,
        StatusCode::OK
    );
    srv.put_object("alpha", &alpha.repo, "data/01/new", ao_token, b"changed")
        .await
        .assert_error(409, "object_exists");
    srv.delete(&format!("{objects}/data/01/new"), ao_token)
        .await
        .assert_error(403, "forbidden");
    let got = srv.get(&format!("{objects}/data/01/new"), ao_token).await;
    assert_eq!(got.body, b"new");

    // A viewer cannot mint a token with an operator's privileges.
    srv.post(
        "/api/v1/me/tokens",
        &alpha.viewer,
        json!({ "name": "x", "privileges": ["repo_manage"] }),
    )
    .await
    .assert_error(403, "forbidden");
    // Administrators cannot limit a token to a repository (they have none).
    let sec = srv.admin("secadmin").await;
    srv.post(
        "/api/v1/me/tokens",
        &sec,
        json!({ "name": "x", "repo": "r" }),
    )
    .await
    .assert_error(400, "no_tenant");
    // Lifetimes are capped by the policy.
    srv.put(
        "/api/v1/security-policy",
        &sec,
        policy(json!({ "max_token_ttl_secs": 60 })),
    )
    .await
    .ok();
    let capped = srv
        .post(
            "/api/v1/me/tokens",
            &alpha.operator,
            json!({ "name": "long", "ttl_secs": 999999 }),
        )
        .await
        .ok();
    assert!(capped["expires_ms"].as_i64().unwrap() <= zaibei_audit::now_ms() + 61_000);
    // An expired API token.
    let cat = srv.catalogue().await;
    sqlx::query("UPDATE tokens SET expires_ms = 1 WHERE id = $1")
        .bind(capped["id"].as_str().unwrap())
        .execute(&cat.pool)
        .await
        .unwrap();
    srv.get("/api/v1/me", capped["token"].as_str().unwrap())
        .await
        .assert_error(401, "token_expired");
}

/// TOTP: enrolment needs a valid code, login then needs one, and a code works only once.
async fn totp_enrolment_and_replay(backend: Backend) {
    let srv = common::start(backend).await;
    let sys = srv.admin("sysadmin").await;
    srv.create_tenant(&sys, "alpha").await;
    srv.create_user(
        &sys,
        "gina",
        zaibei_types::Role::TenantOperator,
        Some("alpha"),
    )
    .await;
    let s = srv.login("gina", PASSWORD).await;
    srv.post("/api/v1/me/totp/confirm", &s, json!({ "code": "123456" }))
        .await
        .assert_error(409, "no_enrolment");
    let enrol = srv
        .call(Method::POST, "/api/v1/me/totp", Some(&s), None)
        .await
        .ok();
    let secret = totp::decode_secret(enrol["secret"].as_str().unwrap()).unwrap();
    assert!(
        enrol["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    // Codes of the current step and the next, fixed now: the server accepts one step of
    // skew either way, so both stay valid while this test runs.
    let now = u64::try_from(zaibei_audit::now_ms() / 1000).unwrap() / totp::STEP_SECS;
    let code0 = totp::code_at_step(&secret, now, 6).unwrap();
    let code1 = totp::code_at_step(&secret, now + 1, 6).unwrap();
    // A wrong code does not enrol.
    let wrong = (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| {
            (now - 1..=now + 2)
                .all(|st| totp::code_at_step(&secret, st, 6).as_deref() != Some(c.as_str()))
        })
        .unwrap();
    srv.post("/api/v1/me/totp/confirm", &s, json!({ "code": wrong }))
        .await
        .assert_error(400, "bad_totp");
    assert_eq!(srv.get("/api/v1/me", &s).await.ok()["totp"], false);
    srv.post("/api/v1/me/totp/confirm", &s, json!({ "code": code0 }))
        .await
        .ok();
    assert_eq!(srv.get("/api/v1/me", &s).await.ok()["totp"], true);
    // Once enrolled, a session cannot replace the second factor, and the catalogue holds the
    // secret sealed, not in the base32 an authenticator takes.
    srv.call(Method::POST, "/api/v1/me/totp", Some(&s), None)
        .await
        .assert_error(409, "totp_enrolled");
    let cat = srv.catalogue().await;
    let stored: String = sqlx::Row::try_get(
        &sqlx::query("SELECT totp_secret FROM users WHERE name = 'gina'")
            .fetch_one(&cat.pool)
            .await
            .unwrap(),
        "totp_secret",
    )
    .unwrap();
    assert_ne!(stored, enrol["secret"].as_str().unwrap());
    assert_ne!(totp::decode_secret(&stored), Some(secret.clone()));

    srv.try_login("gina", PASSWORD, None)
        .await
        .assert_error(401, "totp_required");
    srv.try_login("gina", PASSWORD, Some(&wrong))
        .await
        .assert_error(401, "bad_totp");
    // The code used to enrol is spent; the next one works once.
    srv.try_login("gina", PASSWORD, Some(&code0))
        .await
        .assert_error(401, "bad_totp");
    srv.try_login("gina", PASSWORD, Some(&code1)).await.ok();
    // Replayed: refused.
    srv.try_login("gina", PASSWORD, Some(&code1))
        .await
        .assert_error(401, "bad_totp");
    // A wrong password is refused before the code is looked at.
    srv.try_login("gina", "Wrong-Password-9", Some(&code1))
        .await
        .assert_error(401, "bad_credentials");
    let aud = srv.admin("auditadmin").await;
    let failed = srv.audit_records(&aud, "login_failed").await;
    assert!(
        failed
            .iter()
            .any(|r| r["event"]["details"]["reason"] == "bad_totp"),
        "the replay is audited: {failed:?}"
    );
}

/// Review findings: only sessions mint tokens or change credentials; security policy values
/// are bounded; restores are the tenant's decision; the system administrator cannot reach an
/// account that became an administrator's; large JSON bodies are refused before any work.
async fn credential_changes_need_a_session(backend: Backend) {
    let srv = common::start(backend).await;
    let sys = srv.admin("sysadmin").await;
    let sec = srv.admin("secadmin").await;
    let fx = srv.tenant_fixture(&sys, "alpha").await;
    // An API token (even limited to one repository) cannot mint tokens, change the password
    // or enrol TOTP.
    let limited = srv
        .post(
            "/api/v1/me/tokens",
            &fx.operator,
            json!({ "name": "ci", "repo": fx.repo }),
        )
        .await
        .ok();
    let limited = limited["token"].as_str().unwrap().to_owned();
    let full = srv
        .post("/api/v1/me/tokens", &fx.operator, json!({ "name": "all" }))
        .await
        .ok();
    let full = full["token"].as_str().unwrap().to_owned();
    for token in [&limited, &full] {
        let r = srv
            .post("/api/v1/me/tokens", token, json!({ "name": "escape" }))
            .await;
        assert!(r.status == 403, "minting with an API token: {}", r.text());
        let r = srv.post("/api/v1/me/totp", token, json!({})).await;
        assert!(
            r.status == 403,
            "TOTP enrolment with an API token: {}",
            r.text()
        );
    }
    srv.post(
        "/api/v1/me/password",
        &full,
        json!({ "old": PASSWORD, "new": "Another-Secret-42!" }),
    )
    .await
    .assert_error(403, "session_required");
    // Lifetimes and counts are bounded.
    for bad in [
        json!({ "session_ttl_secs": u64::MAX }),
        json!({ "max_token_ttl_secs": u64::MAX }),
        json!({ "registration_ttl_secs": 0 }),
        json!({ "lockout_secs": u64::MAX }),
        json!({ "min_password_len": 100000 }),
    ] {
        srv.put("/api/v1/security-policy", &sec, policy(bad))
            .await
            .assert_error(422, "bad_policy");
    }
    // Restores are queued by the tenant's operators, not by the system administrator.
    srv.post(
        "/api/v1/tenants/alpha/jobs",
        &sys,
        json!({ "kind": "restore", "policy": fx.policy, "target": "/srv/restores/x" }),
    )
    .await
    .assert_error(403, "tenant_only");
    srv.post(
        "/api/v1/tenants/alpha/jobs",
        &fx.operator,
        json!({ "kind": "restore", "policy": fx.policy, "target": "relative" }),
    )
    .await
    .assert_error(422, "bad_target");
    // A JSON body over 64 KiB is refused, even on the public login route.
    let big = "x".repeat(70 << 10);
    srv.call(
        Method::POST,
        "/api/v1/login",
        None,
        Some(&json!({ "user": "erin", "password": big })),
    )
    .await
    .assert_error(413, "too_large");
}

both_backends!(
    credential_changes_need_a_session,
    three_administrators_are_separated,
    password_policy,
    lockout_and_unlock,
    session_expiry_and_revocation,
    scoped_api_tokens,
    totp_enrolment_and_replay,
);
