//! The platform's administration: tenants and user accounts (system administrator), roles,
//! unlocking, token revocation and the security policy (security administrator).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use sqlx::Row;
use zaibei_audit::{AuditAction, Outcome};
use zaibei_types::api::{
    AssignRole, CreateTenant, CreateUser, SecurityPolicy, Tenant, UpdateUser, User,
};
use zaibei_types::{Privilege, Role};

use super::ctx::Ctx;
use crate::auth::password;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, check_name};
use crate::routes::{Access, Route, array_of, schema};
use crate::settings::{security_policy, set_security_policy};
use crate::state::AppState;
use crate::time::now_ms;

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    use Access::Requires;
    use Privilege::*;
    vec![
        Route::new(
            Method::GET,
            "/api/v1/tenants",
            Requires(TenantRead),
            "List tenants",
            list_tenants,
        )
        .returns(array_of::<Tenant>()),
        Route::new(
            Method::POST,
            "/api/v1/tenants",
            Requires(TenantManage),
            "Create a tenant",
            create_tenant,
        )
        .takes(schema::<CreateTenant>())
        .returns(schema::<Tenant>()),
        Route::new(
            Method::DELETE,
            "/api/v1/tenants/{tenant}",
            Requires(TenantManage),
            "Delete a tenant that has no repositories, users or agents",
            delete_tenant,
        ),
        Route::new(
            Method::GET,
            "/api/v1/users",
            Requires(UserRead),
            "List user accounts",
            list_users,
        )
        .returns(array_of::<User>()),
        Route::new(
            Method::POST,
            "/api/v1/users",
            Requires(UserManage),
            "Create a tenant user account",
            create_user,
        )
        .takes(schema::<CreateUser>())
        .returns(schema::<User>()),
        Route::new(
            Method::PATCH,
            "/api/v1/users/{user}",
            Requires(UserManage),
            "Disable, enable or reset the password of an account",
            update_user,
        )
        .takes(schema::<UpdateUser>()),
        Route::new(
            Method::DELETE,
            "/api/v1/users/{user}",
            Requires(UserManage),
            "Delete an account",
            delete_user,
        ),
        Route::new(
            Method::PUT,
            "/api/v1/users/{user}/role",
            Requires(RoleAssign),
            "Give an account its role",
            assign_role,
        )
        .takes(schema::<AssignRole>()),
        Route::new(
            Method::POST,
            "/api/v1/users/{user}/unlock",
            Requires(RoleAssign),
            "Unlock an account locked by failed logins",
            unlock_user,
        ),
        Route::new(
            Method::DELETE,
            "/api/v1/tokens/{token}",
            Requires(RoleAssign),
            "Revoke anyone's token",
            revoke_token,
        ),
        Route::new(
            Method::GET,
            "/api/v1/security-policy",
            Requires(SecurityPolicyRead),
            "The security policy",
            get_policy,
        )
        .returns(schema::<SecurityPolicy>()),
        Route::new(
            Method::PUT,
            "/api/v1/security-policy",
            Requires(SecurityPolicyManage),
            "Change the security policy",
            put_policy,
        )
        .takes(schema::<SecurityPolicy>()),
    ]
}

async fn tenant_exists(st: &AppState, tenant: &str) -> ApiResult<bool> {
    Ok(sqlx::query("SELECT 1 FROM tenants WHERE name = $1")
        .bind(tenant)
        .fetch_optional(&st.cat.pool)
        .await?
        .is_some())
}

/// 404 `no_tenant` unless the tenant exists.
pub async fn require_tenant(st: &AppState, tenant: &str) -> ApiResult<()> {
    if tenant_exists(st, tenant).await? {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_tenant",
            format!("no tenant {tenant:?}"),
        ))
    }
}

async fn list_tenants(State(st): State<AppState>) -> ApiResult<Json<Vec<Tenant>>> {
    let rows = sqlx::query(
        "SELECT t.name, t.quota_bytes, CAST(COALESCE((SELECT SUM(r.used_bytes) FROM repos r WHERE r.tenant = t.name), 0) AS BIGINT) AS used \
         FROM tenants t ORDER BY t.name",
    )
    .fetch_all(&st.cat.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Tenant {
                name: r.try_get("name")?,
                quota_bytes: r
                    .try_get::<Option<i64>, _>("quota_bytes")?
                    .map(|q| q.max(0) as u64),
                used_bytes: r.try_get::<i64, _>("used")?.max(0) as u64,
            })
        })
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

async fn create_tenant(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    check_name("tenant", &req.name)?;
    let quota = req
        .quota_bytes
        .map(i64::try_from)
        .transpose()
        .map_err(|_| ApiError::bad_request("bad_quota", "the quota is too large"))?;
    let mut tx = st.cat.begin_write().await?;
    let inserted = sqlx::query("INSERT INTO tenants (name, quota_bytes, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(&req.name)
        .bind(quota)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if inserted == 0 {
        return Err(ApiError::conflict(
            "exists",
            format!("tenant {:?} exists", req.name),
        ));
    }
    let mut e = ctx.event(
        AuditAction::TenantCreated,
        Some(&req.name),
        format!("tenant:{}", req.name),
        Outcome::Success,
    );
    e.details = serde_json::json!({ "quota_bytes": req.quota_bytes });
    st.commit_audited(tx, e).await?;
    Ok((
        StatusCode::CREATED,
        Json(Tenant {
            name: req.name,
            quota_bytes: req.quota_bytes,
            used_bytes: 0,
        }),
    ))
}

async fn delete_tenant(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    require_tenant(&st, &tenant).await?;
    let mut tx = st.cat.begin_write().await?;
    for (table, what) in [
        ("repos", "repositories"),
        ("users", "users"),
        ("agents", "agents"),
    ] {
        let used = sqlx::query(&format!("SELECT 1 FROM {table} WHERE tenant = $1 LIMIT 1"))
            .bind(&tenant)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if used {
            return Err(ApiError::conflict(
                "not_empty",
                format!("tenant {tenant:?} still has {what}"),
            ));
        }
    }
    for table in ["policies", "jobs", "tokens"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE tenant = $1"))
            .bind(&tenant)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM tenants WHERE name = $1")
        .bind(&tenant)
        .execute(&mut *tx)
        .await?;
    let e = ctx.event(
        AuditAction::TenantDeleted,
        Some(&tenant),
        format!("tenant:{tenant}"),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn user_of_row(r: &sqlx::any::AnyRow) -> ApiResult<User> {
    let role: String = r.try_get("role")?;
    Ok(User {
        name: r.try_get("name")?,
        role: Role::from_code(&role).ok_or_else(|| ApiError::internal("reading a role", role))?,
        tenant: r.try_get("tenant")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        locked_until_ms: r
            .try_get::<Option<i64>, _>("locked_until_ms")?
            .filter(|t| *t > now_ms()),
        totp: r.try_get::<Option<String>, _>("totp_secret")?.is_some(),
    })
}

async fn list_users(State(st): State<AppState>) -> ApiResult<Json<Vec<User>>> {
    let rows = sqlx::query("SELECT name, role, tenant, disabled, locked_until_ms, totp_secret FROM users ORDER BY name")
        .fetch_all(&st.cat.pool)
        .await?;
    rows.iter()
        .map(user_of_row)
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

async fn check_role_tenant(st: &AppState, role: Role, tenant: Option<&str>) -> ApiResult<()> {
    match (role.is_tenant_role(), tenant) {
        (_, _) if role == Role::Agent => Err(ApiError::bad_request(
            "bad_role",
            "agents register themselves; no user has the agent role",
        )),
        (true, Some(t)) => require_tenant(st, t).await,
        (true, None) => Err(ApiError::bad_request(
            "no_tenant",
            "a tenant role needs a tenant",
        )),
        (false, Some(_)) => Err(ApiError::bad_request(
            "bad_tenant",
            "administrators belong to no tenant",
        )),
        (false, None) => Ok(()),
    }
}

async fn create_user(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    check_name("user", &req.name)?;
    if !req.role.is_tenant_role() {
        return Err(ApiError::forbidden(
            "role_needs_security_admin",
            "administrator roles are given only by the security administrator (PUT /api/v1/users/{user}/role)",
        ));
    }
    check_role_tenant(&st, req.role, req.tenant.as_deref()).await?;
    let policy = security_policy(&st.cat).await?;
    if let Some(why) = password::policy_violation(&req.password, &req.name, &policy) {
        return Err(ApiError::bad_request("weak_password", why));
    }
    let hash = st.hash_password(&req.password).await?;
    let mut tx = st.cat.begin_write().await?;
    let inserted = sqlx::query("INSERT INTO users (name, role, tenant, password_hash, created_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
        .bind(&req.name)
        .bind(req.role.code())
        .bind(req.tenant.clone())
        .bind(hash)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if inserted == 0 {
        return Err(ApiError::conflict(
            "exists",
            format!("user {:?} exists", req.name),
        ));
    }
    let mut e = ctx.event(
        AuditAction::UserCreated,
        req.tenant.as_deref(),
        format!("user:{}", req.name),
        Outcome::Success,
    );
    e.details = serde_json::json!({ "role": req.role.code() });
    st.commit_audited(tx, e).await?;
    Ok((
        StatusCode::CREATED,
        Json(User {
            name: req.name,
            role: req.role,
            tenant: req.tenant,
            disabled: false,
            locked_until_ms: None,
            totp: false,
        }),
    ))
}

async fn load_user(st: &AppState, name: &str) -> ApiResult<User> {
    let row = sqlx::query("SELECT name, role, tenant, disabled, locked_until_ms, totp_secret FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&st.cat.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {name:?}")))?;
    user_of_row(&row)
}

/// 403 `administrator_account`.
fn administrator_account() -> ApiError {
    ApiError::forbidden(
        "administrator_account",
        "administrator accounts are managed by the security administrator",
    )
}

/// The system administrator manages tenant accounts only: the administrators' accounts are
/// beyond its reach, so it cannot disable or reset the auditor or the security administrator.
fn only_tenant_accounts(user: &User) -> ApiResult<()> {
    if user.role.is_tenant_role() {
        Ok(())
    } else {
        Err(administrator_account())
    }
}

async fn update_user(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> ApiResult<StatusCode> {
    let user = load_user(&st, &name).await?;
    only_tenant_accounts(&user)?;
    let hash = match &req.password {
        Some(pw) => {
            let policy = security_policy(&st.cat).await?;
            if let Some(why) = password::policy_violation(pw, &name, &policy) {
                return Err(ApiError::bad_request("weak_password", why));
            }
            let iterations = st.password_iterations;
            let pw = pw.clone();
            Some(
                tokio::task::spawn_blocking(move || password::hash(&pw, iterations))
                    .await
                    .map_err(|e| ApiError::internal("hashing a password", e))?
                    .map_err(|e| ApiError::internal("hashing a password", e))?,
            )
        }
        None => None,
    };
    let mut tx = st.cat.begin_write().await?;
    // Re-checked inside the transaction: a role given meanwhile cannot open an administrator's
    // account to the system administrator.
    let still_tenant = sqlx::query(&format!(
        "SELECT 1 FROM users WHERE name = $1 AND role IN ('tenant_operator', 'tenant_viewer'){}",
        st.cat.for_update()
    ))
    .bind(&name)
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    if !still_tenant {
        return Err(administrator_account());
    }
    if let Some(disabled) = req.disabled {
        sqlx::query("UPDATE users SET disabled = $1 WHERE name = $2")
            .bind(i64::from(disabled))
            .bind(&name)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(hash) = hash {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
    }
    if req.disabled == Some(true) || req.password.is_some() {
        // A reset means the old credentials may be known: every token of the account ends.
        sqlx::query("UPDATE tokens SET revoked = 1 WHERE user_name = $1")
            .bind(&name)
            .execute(&mut *tx)
            .await?;
    }
    let mut e = ctx.event(
        AuditAction::UserChanged,
        user.tenant.as_deref(),
        format!("user:{name}"),
        Outcome::Success,
    );
    e.details =
        serde_json::json!({ "disabled": req.disabled, "password_reset": req.password.is_some() });
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_user(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let user = load_user(&st, &name).await?;
    only_tenant_accounts(&user)?;
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE user_name = $1")
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query(
        "DELETE FROM users WHERE name = $1 AND role IN ('tenant_operator', 'tenant_viewer')",
    )
    .bind(&name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if deleted != 1 {
        return Err(administrator_account());
    }
    let e = ctx.event(
        AuditAction::UserDeleted,
        user.tenant.as_deref(),
        format!("user:{name}"),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn assign_role(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<AssignRole>,
) -> ApiResult<StatusCode> {
    let user = load_user(&st, &name).await?;
    if ctx.caller.user.as_deref() == Some(name.as_str()) {
        return Err(ApiError::forbidden(
            "own_role",
            "nobody changes their own role",
        ));
    }
    check_role_tenant(&st, req.role, req.tenant.as_deref()).await?;
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("UPDATE users SET role = $1, tenant = $2 WHERE name = $3")
        .bind(req.role.code())
        .bind(req.tenant.clone())
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    // Tokens carry the old role's reach: end them.
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE user_name = $1")
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    let mut e = ctx.event(
        AuditAction::RoleGranted,
        req.tenant.as_deref(),
        format!("user:{name}"),
        Outcome::Success,
    );
    e.details = serde_json::json!({ "from": user.role.code(), "to": req.role.code(), "from_tenant": user.tenant, "tenant": req.tenant });
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unlock_user(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let user = load_user(&st, &name).await?;
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("UPDATE users SET locked_until_ms = NULL, failed_logins = 0 WHERE name = $1")
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    let e = ctx.event(
        AuditAction::AccountUnlocked,
        user.tenant.as_deref(),
        format!("user:{name}"),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_token(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut tx = st.cat.begin_write().await?;
    let row = sqlx::query("UPDATE tokens SET revoked = 1 WHERE id = $1 RETURNING tenant")
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no token {id:?}")))?;
    let tenant: Option<String> = row.try_get("tenant")?;
    let e = ctx.event(
        AuditAction::TokenRevoked,
        tenant.as_deref(),
        format!("token:{id}"),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_policy(State(st): State<AppState>) -> ApiResult<Json<SecurityPolicy>> {
    security_policy(&st.cat).await.map(Json)
}

async fn put_policy(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<SecurityPolicy>,
) -> ApiResult<StatusCode> {
    const DAY: u64 = 86_400;
    let in_range = (8..=256).contains(&req.min_password_len)
        && req.min_password_classes <= 4
        && req.lockout_threshold <= 1000
        && req.lockout_secs <= 365 * DAY
        && (1..=30 * DAY).contains(&req.session_ttl_secs)
        && (1..=10 * 365 * DAY).contains(&req.max_token_ttl_secs)
        && (1..=30 * DAY).contains(&req.registration_ttl_secs);
    if !in_range {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_policy",
            "passwords need 8 to 256 characters and at most 4 classes; lockout: at most 1000 failures and a year; sessions and registration tokens live 1 s to 30 days, API tokens up to 10 years",
        ));
    }
    let before = security_policy(&st.cat).await?;
    let mut tx = st.cat.begin_write().await?;
    set_security_policy(&mut tx, &req).await?;
    let mut e = ctx.event(
        AuditAction::ConfigChanged,
        None,
        "security_policy",
        Outcome::Success,
    );
    e.details = serde_json::json!({ "from": before, "to": req });
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}
