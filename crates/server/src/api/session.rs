//! Logging in and out, one's own account, TOTP and API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use sqlx::Row;
use zaibei_audit::{AuditAction, Outcome};
use zaibei_types::Privilege;
use zaibei_types::api::{
    ChangePassword, CreateToken, LoginRequest, Me, TokenInfo, TokenIssued, TotpCode, TotpEnrolment,
};

use super::ctx::{Ctx, Source, event};
use crate::auth::{kind, password, token, totp};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::{Access, Route, array_of, schema};
use crate::settings::security_policy;
use crate::state::AppState;
use crate::time::{now_ms, secs_to_ms};

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    use Access::*;
    vec![
        Route::new(
            Method::POST,
            "/api/v1/login",
            Public,
            "Log in: a session token",
            login,
        )
        .takes(schema::<LoginRequest>())
        .returns(schema::<TokenIssued>()),
        Route::new(
            Method::POST,
            "/api/v1/logout",
            Requires(Privilege::SelfService),
            "End this session (revokes the token used)",
            logout,
        ),
        Route::new(
            Method::GET,
            "/api/v1/me",
            Requires(Privilege::SelfService),
            "Who the caller is",
            me,
        )
        .returns(schema::<Me>()),
        Route::new(
            Method::POST,
            "/api/v1/me/password",
            Requires(Privilege::SelfService),
            "Change one's password",
            change_password,
        )
        .takes(schema::<ChangePassword>()),
        Route::new(
            Method::POST,
            "/api/v1/me/totp",
            Requires(Privilege::SelfService),
            "Start TOTP enrolment",
            totp_enrol,
        )
        .returns(schema::<TotpEnrolment>()),
        Route::new(
            Method::POST,
            "/api/v1/me/totp/confirm",
            Requires(Privilege::SelfService),
            "Confirm TOTP enrolment with a code",
            totp_confirm,
        )
        .takes(schema::<TotpCode>()),
        Route::new(
            Method::GET,
            "/api/v1/me/tokens",
            Requires(Privilege::SelfService),
            "List one's tokens",
            list_tokens,
        )
        .returns(array_of::<TokenInfo>()),
        Route::new(
            Method::POST,
            "/api/v1/me/tokens",
            Requires(Privilege::SelfService),
            "Create a scoped API token",
            create_token,
        )
        .takes(schema::<CreateToken>())
        .returns(schema::<TokenIssued>()),
        Route::new(
            Method::DELETE,
            "/api/v1/me/tokens/{token}",
            Requires(Privilege::SelfService),
            "Revoke one of one's tokens",
            revoke_own_token,
        ),
    ]
}

/// Records a failed login: counts it, locks the account at the threshold, audits both.
async fn login_failed(
    st: &AppState,
    user: Option<&str>,
    shown: &str,
    source: Option<&str>,
    reason: &'static str,
) -> ApiResult<()> {
    let policy = security_policy(&st.cat).await?;
    let mut tx = st.cat.begin_write().await?;
    let e = event(
        shown,
        source,
        AuditAction::LoginFailed,
        None,
        format!("user:{shown}"),
        Outcome::Failure,
    )
    .with_details(serde_json::json!({ "reason": reason }));
    st.audit.append(&st.cat, &mut tx, e).await?;
    if let Some(user) = user {
        let failures: i64 = sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE name = $1 RETURNING failed_logins",
        )
        .bind(user)
        .fetch_one(&mut *tx)
        .await?
        .try_get("failed_logins")?;
        if policy.lockout_threshold > 0 && failures >= i64::from(policy.lockout_threshold) {
            sqlx::query("UPDATE users SET locked_until_ms = $1, failed_logins = 0 WHERE name = $2")
                .bind(now_ms().saturating_add(secs_to_ms(policy.lockout_secs)))
                .bind(user)
                .execute(&mut *tx)
                .await?;
            let e = event(
                user,
                source,
                AuditAction::AccountLocked,
                None,
                format!("user:{user}"),
                Outcome::Success,
            );
            st.audit.append(&st.cat, &mut tx, e).await?;
        }
    }
    tx.commit().await?;
    st.audit.after_commit(&st.cat).await;
    Ok(())
}

async fn login(
    State(st): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenIssued>> {
    let bad = || ApiError::unauthorized("bad_credentials", "wrong user name or password");
    let source = source.as_deref();
    // Nothing that cannot be a user name or a password reaches the database or the KDF; what
    // was typed is not written to the audit log either (it is sometimes a password).
    if !crate::extract::valid_name(&req.user) || req.password.len() > 1024 {
        login_failed(&st, None, "anonymous", source, "malformed").await?;
        return Err(bad());
    }
    let user = req.user.as_str();
    let policy = security_policy(&st.cat).await?;
    let row = sqlx::query(
        "SELECT password_hash, tenant, disabled, locked_until_ms, totp_secret FROM users WHERE name = $1",
    )
    .bind(user)
    .fetch_optional(&st.cat.pool)
    .await?;
    let Some(row) = row else {
        // Spend the same time as for a real account, so timing does not reveal names.
        let _ = st.hash_password(&req.password).await;
        login_failed(&st, None, user, source, "unknown_user").await?;
        return Err(bad());
    };
    let now = now_ms();
    let locked = || {
        ApiError::unauthorized(
            "account_locked",
            "the account is locked after repeated failed logins; try later or ask the security administrator",
        )
    };
    if row.try_get::<i64, _>("disabled")? != 0 {
        login_failed(&st, None, user, source, "disabled").await?;
        return Err(ApiError::unauthorized(
            "account_disabled",
            "the account is disabled",
        ));
    }
    if row
        .try_get::<Option<i64>, _>("locked_until_ms")?
        .is_some_and(|t| t > now)
    {
        login_failed(&st, None, user, source, "locked").await?;
        return Err(locked());
    }
    let hash: String = row.try_get("password_hash")?;
    let pw = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash))
        .await
        .map_err(|e| ApiError::internal("checking a password", e))?;
    if !ok {
        login_failed(&st, Some(user), user, source, "bad_password").await?;
        return Err(bad());
    }
    let totp_secret: Option<String> = row.try_get("totp_secret")?;
    let mut totp_step = None;
    if let Some(secret) = totp_secret {
        let secret = open_totp(&st, user, &secret)?;
        let Some(code) = &req.totp else {
            login_failed(&st, Some(user), user, source, "totp_missing").await?;
            return Err(ApiError::unauthorized(
                "totp_required",
                "this account needs its TOTP code",
            ));
        };
        let Some(step) = totp::matching_step(&secret, code, u64::try_from(now / 1000).unwrap_or(0))
        else {
            login_failed(&st, Some(user), user, source, "bad_totp").await?;
            return Err(ApiError::unauthorized(
                "bad_totp",
                "the TOTP code is wrong or was already used",
            ));
        };
        totp_step = Some(i64::try_from(step).unwrap_or(i64::MAX));
    }
    let minted = token::mint().map_err(|e| ApiError::internal("minting a token", e))?;
    let expires = now.saturating_add(secs_to_ms(policy.session_ttl_secs));
    let tenant: Option<String> = row.try_get("tenant")?;
    let mut tx = st.cat.begin_write().await?;
    // Atomically: not locked meanwhile (parallel guesses), not disabled meanwhile, and the
    // TOTP step not used by a concurrent login.
    let admitted = sqlx::query(
        "UPDATE users SET failed_logins = 0, totp_last_step = COALESCE($1, totp_last_step) \
         WHERE name = $2 AND disabled = 0 AND (locked_until_ms IS NULL OR locked_until_ms <= $3) \
         AND ($4 IS NULL OR totp_last_step IS NULL OR totp_last_step < $5)",
    )
    .bind(totp_step)
    .bind(user)
    .bind(now)
    .bind(totp_step)
    .bind(totp_step)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if admitted != 1 {
        drop(tx);
        login_failed(&st, Some(user), user, source, "locked_or_replayed").await?;
        return Err(if totp_step.is_some() {
            ApiError::unauthorized("bad_totp", "the TOTP code is wrong or was already used")
        } else {
            locked()
        });
    }
    sqlx::query("INSERT INTO tokens (id, kind, name, user_name, tenant, secret_hash, expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&minted.id)
        .bind(kind::SESSION)
        .bind("login")
        .bind(user)
        .bind(tenant.clone())
        .bind(&minted.secret_hash)
        .bind(expires)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let e = event(
        user,
        source,
        AuditAction::Login,
        tenant.as_deref(),
        format!("user:{user}"),
        Outcome::Success,
    )
    .with_details(serde_json::json!({ "session": minted.id, "totp": totp_step.is_some() }));
    st.commit_audited(tx, e).await?;
    Ok(Json(TokenIssued {
        id: minted.id,
        token: minted.token,
        expires_ms: expires,
    }))
}

async fn logout(State(st): State<AppState>, ctx: Ctx) -> ApiResult<StatusCode> {
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE id = $1")
        .bind(&ctx.caller.token_id)
        .execute(&mut *tx)
        .await?;
    let e = ctx.event(
        AuditAction::Logout,
        ctx.caller.tenant.as_deref(),
        format!("token:{}", ctx.caller.token_id),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(st): State<AppState>, ctx: Ctx) -> ApiResult<Json<Me>> {
    let totp = match &ctx.caller.user {
        Some(u) => sqlx::query("SELECT totp_secret FROM users WHERE name = $1")
            .bind(u)
            .fetch_optional(&st.cat.pool)
            .await?
            .map(|r| r.try_get::<Option<String>, _>("totp_secret"))
            .transpose()?
            .flatten()
            .is_some(),
        None => false,
    };
    Ok(Json(Me {
        user: ctx.caller.actor(),
        role: ctx.caller.role,
        tenant: ctx.caller.tenant.clone(),
        privileges: ctx.caller.privileges(),
        totp,
    }))
}

/// The caller's user name, for changes of its own credentials: only a login session (never an
/// API token, which may be limited or leaked) may change passwords, TOTP or tokens.
fn session_user(ctx: &Ctx) -> ApiResult<&str> {
    if ctx.caller.kind != kind::SESSION {
        return Err(ApiError::forbidden(
            "session_required",
            "log in to change passwords, TOTP or tokens; API tokens cannot",
        ));
    }
    user_of(ctx)
}

fn user_of(ctx: &Ctx) -> ApiResult<&str> {
    ctx.caller
        .user
        .as_deref()
        .ok_or_else(|| ApiError::forbidden("not_a_user", "only user accounts can do this"))
}

async fn change_password(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    let user = session_user(&ctx)?.to_owned();
    let policy = security_policy(&st.cat).await?;
    let stored: String = sqlx::query("SELECT password_hash FROM users WHERE name = $1")
        .bind(&user)
        .fetch_one(&st.cat.pool)
        .await?
        .try_get("password_hash")?;
    let old = req.old.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify(&old, &stored))
        .await
        .map_err(|e| ApiError::internal("checking a password", e))?;
    if !ok {
        let e = ctx.event(
            AuditAction::PasswordChanged,
            None,
            format!("user:{user}"),
            Outcome::Failure,
        );
        st.audit.append_alone(&st.cat, e).await;
        return Err(ApiError::forbidden(
            "bad_credentials",
            "the current password is wrong",
        ));
    }
    if let Some(why) = password::policy_violation(&req.new, &user, &policy) {
        return Err(ApiError::bad_request("weak_password", why));
    }
    let hash = st.hash_password(&req.new).await?;
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
        .bind(hash)
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    // Other sessions of the account end with the old password.
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE user_name = $1 AND kind = $2 AND id <> $3")
        .bind(&user)
        .bind(kind::SESSION)
        .bind(&ctx.caller.token_id)
        .execute(&mut *tx)
        .await?;
    let e = ctx.event(
        AuditAction::PasswordChanged,
        None,
        format!("user:{user}"),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// TOTP secrets are kept sealed under the server's secret key, bound to their account, so a
/// copy of the catalogue yields no second factor.
fn seal_totp(st: &AppState, user: &str, secret: &[u8]) -> ApiResult<String> {
    st.secret
        .seal(&format!("zaibei totp v1 {user}"), secret)
        .map_err(|e| ApiError::internal("sealing a TOTP secret", e))
}

/// Opens a secret sealed by [`seal_totp`].
fn open_totp(st: &AppState, user: &str, sealed: &str) -> ApiResult<Vec<u8>> {
    st.secret
        .open(&format!("zaibei totp v1 {user}"), sealed)
        .map(|s| s.to_vec())
        .map_err(|e| ApiError::internal("opening a TOTP secret", e))
}

async fn totp_enrol(State(st): State<AppState>, ctx: Ctx) -> ApiResult<Json<TotpEnrolment>> {
    let user = session_user(&ctx)?.to_owned();
    // A second factor is never replaced by whoever holds a session: once enrolled, it stays
    // until an administrator resets the account.
    let enrolled = sqlx::query("SELECT totp_secret FROM users WHERE name = $1")
        .bind(&user)
        .fetch_one(&st.cat.pool)
        .await?
        .try_get::<Option<String>, _>("totp_secret")?
        .is_some();
    if enrolled {
        return Err(ApiError::conflict(
            "totp_enrolled",
            "TOTP is already enrolled for this account",
        ));
    }
    let secret: [u8; 20] = zaibei_crypto::random_array()
        .map_err(|e| ApiError::internal("drawing a TOTP secret", e))?;
    let text = totp::encode_secret(&secret);
    sqlx::query("UPDATE users SET totp_pending = $1 WHERE name = $2")
        .bind(seal_totp(&st, &user, &secret)?)
        .bind(&user)
        .execute(&st.cat.pool)
        .await?;
    Ok(Json(TotpEnrolment {
        uri: format!("otpauth://totp/zaibei:{user}?secret={text}&issuer=zaibei"),
        secret: text,
    }))
}

async fn totp_confirm(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<TotpCode>,
) -> ApiResult<StatusCode> {
    let user = session_user(&ctx)?.to_owned();
    let pending: Option<String> = sqlx::query("SELECT totp_pending FROM users WHERE name = $1")
        .bind(&user)
        .fetch_one(&st.cat.pool)
        .await?
        .try_get("totp_pending")?;
    let pending = pending
        .ok_or_else(|| ApiError::conflict("no_enrolment", "start with POST /api/v1/me/totp"))?;
    let secret = open_totp(&st, &user, &pending)?;
    let step = totp::matching_step(
        &secret,
        &req.code,
        u64::try_from(now_ms() / 1000).unwrap_or(0),
    )
    .ok_or_else(|| ApiError::bad_request("bad_totp", "the code does not match"))?;
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = $1 WHERE name = $2")
        .bind(i64::try_from(step).unwrap_or(i64::MAX))
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    let mut e = ctx.event(
        AuditAction::UserChanged,
        None,
        format!("user:{user}"),
        Outcome::Success,
    );
    e.details = serde_json::json!({ "totp": "enrolled" });
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn token_info(row: &sqlx::any::AnyRow) -> ApiResult<TokenInfo> {
    let privileges: Option<String> = row.try_get("privileges")?;
    Ok(TokenInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        privileges: privileges.map(|p| p.split(',').filter_map(Privilege::from_code).collect()),
        repo: row.try_get("repo")?,
        expires_ms: row.try_get("expires_ms")?,
        revoked: row.try_get::<i64, _>("revoked")? != 0,
    })
}

async fn list_tokens(State(st): State<AppState>, ctx: Ctx) -> ApiResult<Json<Vec<TokenInfo>>> {
    let user = user_of(&ctx)?;
    let rows = sqlx::query("SELECT id, name, kind, privileges, repo, expires_ms, revoked FROM tokens WHERE user_name = $1 ORDER BY created_ms")
        .bind(user)
        .fetch_all(&st.cat.pool)
        .await?;
    rows.iter()
        .map(token_info)
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

async fn create_token(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<TokenIssued>)> {
    let user = session_user(&ctx)?.to_owned();
    if req.name.is_empty() || req.name.len() > 200 {
        return Err(ApiError::bad_request(
            "bad_name",
            "token names are 1 to 200 characters",
        ));
    }
    let policy = security_policy(&st.cat).await?;
    let wanted = req
        .privileges
        .clone()
        .unwrap_or_else(|| ctx.caller.privileges());
    if let Some(p) = wanted.iter().find(|p| !ctx.caller.holds(**p)) {
        return Err(ApiError::forbidden(
            "forbidden",
            format!("you do not hold {} yourself", p.code()),
        ));
    }
    if let Some(repo) = &req.repo {
        crate::extract::check_name("repository", repo)?;
        if ctx.caller.tenant.is_none() {
            return Err(ApiError::bad_request(
                "no_tenant",
                "only tenant accounts can limit a token to a repository",
            ));
        }
    }
    let ttl = req
        .ttl_secs
        .unwrap_or(policy.max_token_ttl_secs)
        .min(policy.max_token_ttl_secs);
    if ttl == 0 {
        return Err(ApiError::bad_request(
            "bad_ttl",
            "the lifetime must be positive",
        ));
    }
    let minted = token::mint().map_err(|e| ApiError::internal("minting a token", e))?;
    let now = now_ms();
    let expires = now.saturating_add(secs_to_ms(ttl));
    let codes = wanted
        .iter()
        .map(|p| p.code())
        .collect::<Vec<_>>()
        .join(",");
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("INSERT INTO tokens (id, kind, name, user_name, tenant, secret_hash, privileges, repo, expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind(&minted.id)
        .bind(kind::API)
        .bind(&req.name)
        .bind(&user)
        .bind(ctx.caller.tenant.clone())
        .bind(&minted.secret_hash)
        .bind(codes.clone())
        .bind(req.repo.clone())
        .bind(expires)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let mut e = ctx.event(
        AuditAction::TokenCreated,
        ctx.caller.tenant.as_deref(),
        format!("token:{}", minted.id),
        Outcome::Success,
    );
    e.details = serde_json::json!({ "privileges": codes, "repo": req.repo, "expires_ms": expires });
    st.commit_audited(tx, e).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenIssued {
            id: minted.id,
            token: minted.token,
            expires_ms: expires,
        }),
    ))
}

async fn revoke_own_token(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let user = user_of(&ctx)?.to_owned();
    let mut tx = st.cat.begin_write().await?;
    let done = sqlx::query("UPDATE tokens SET revoked = 1 WHERE id = $1 AND user_name = $2")
        .bind(&id)
        .bind(&user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if done == 0 {
        return Err(ApiError::not_found("no such token of yours"));
    }
    let e = ctx.event(
        AuditAction::TokenRevoked,
        ctx.caller.tenant.as_deref(),
        format!("token:{id}"),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}
