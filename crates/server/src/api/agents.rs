//! Agents: one-time registration, the tenant's list, and the agent's own routes to pull jobs
//! and report on them (the agent connects out, so protected hosts need no open port).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use sqlx::Row;
use zaibei_audit::{AuditAction, Outcome};
use zaibei_types::Privilege;
use zaibei_types::api::{Agent, AgentCredentials, PolicySpec, RegisterAgent, RegistrationIssued};
use zaibei_types::jobs::{AgentJob, JobKind, JobReport, JobState};

use super::admin::require_tenant;
use super::ctx::{Ctx, Source, event};
use crate::auth::{kind, password, token};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::{Access, Route, array_of, schema};
use crate::settings::security_policy;
use crate::state::AppState;
use crate::time::{now_ms, secs_to_ms};

/// Agent tokens last this long (they are revoked by removing the agent).
const AGENT_TOKEN_SECS: u64 = 10 * 365 * 86400;

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    use Access::*;
    use Privilege::*;
    vec![
        Route::new(
            Method::POST,
            "/api/v1/tenants/{tenant}/agents/registrations",
            Requires(AgentManage),
            "Issue a one-time agent registration token",
            issue_registration,
        )
        .returns(schema::<RegistrationIssued>()),
        Route::new(
            Method::POST,
            "/api/v1/agents/register",
            Public,
            "Register an agent with a one-time token",
            register,
        )
        .takes(schema::<RegisterAgent>())
        .returns(schema::<AgentCredentials>()),
        Route::new(
            Method::GET,
            "/api/v1/tenants/{tenant}/agents",
            Requires(AgentRead),
            "List the tenant's agents",
            list_agents,
        )
        .returns(array_of::<Agent>()),
        Route::new(
            Method::DELETE,
            "/api/v1/tenants/{tenant}/agents/{agent}",
            Requires(AgentManage),
            "Remove an agent (its token stops working)",
            delete_agent,
        ),
        Route::new(
            Method::POST,
            "/api/v1/tenants/{tenant}/agent/jobs/claim",
            Requires(AgentWork),
            "The agent claims its next queued job (204: none)",
            claim,
        )
        .returns(schema::<AgentJob>()),
        Route::new(
            Method::POST,
            "/api/v1/tenants/{tenant}/agent/jobs/{job}/report",
            Requires(AgentWork),
            "The agent reports progress or the result of a job",
            report,
        )
        .takes(schema::<JobReport>()),
    ]
}

async fn issue_registration(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> ApiResult<(StatusCode, Json<RegistrationIssued>)> {
    require_tenant(&st, &tenant).await?;
    let policy = security_policy(&st.cat).await?;
    let minted = token::mint().map_err(|e| ApiError::internal("minting a token", e))?;
    let now = now_ms();
    let expires = now.saturating_add(secs_to_ms(policy.registration_ttl_secs));
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("INSERT INTO tokens (id, kind, name, user_name, tenant, secret_hash, expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&minted.id)
        .bind(kind::REGISTER)
        .bind("agent registration")
        .bind(ctx.caller.user.clone())
        .bind(&tenant)
        .bind(&minted.secret_hash)
        .bind(expires)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let e = ctx
        .event(
            AuditAction::TokenCreated,
            Some(&tenant),
            format!("token:{}", minted.id),
            Outcome::Success,
        )
        .with_details(serde_json::json!({ "kind": kind::REGISTER, "expires_ms": expires }));
    st.commit_audited(tx, e).await?;
    Ok((
        StatusCode::CREATED,
        Json(RegistrationIssued {
            token: minted.token,
            expires_ms: expires,
        }),
    ))
}

async fn register(
    State(st): State<AppState>,
    Source(source): Source,
    ApiJson(req): ApiJson<RegisterAgent>,
) -> ApiResult<(StatusCode, Json<AgentCredentials>)> {
    let hostname = req.hostname.trim();
    if hostname.is_empty() || hostname.len() > 255 || hostname.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "bad_hostname",
            "the host name is empty, too long or has control characters",
        ));
    }
    let invalid = || ApiError::unauthorized("invalid_token", "the registration token is not valid");
    let (id, secret) = token::parse(&req.token).ok_or_else(invalid)?;
    let row = sqlx::query(
        "SELECT kind, tenant, secret_hash, expires_ms, used, revoked FROM tokens WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&st.cat.pool)
    .await?;
    let deny = |reason: &'static str, action: AuditAction| {
        event(
            "anonymous",
            source.as_deref(),
            action,
            None,
            format!("token:{id}"),
            Outcome::Denied,
        )
        .with_details(serde_json::json!({ "reason": reason, "hostname": hostname }))
    };
    let Some(row) = row else {
        st.audit
            .append_alone(&st.cat, deny("unknown_token", AuditAction::AccessDenied))
            .await;
        return Err(invalid());
    };
    let stored: String = row.try_get("secret_hash")?;
    let kind_: String = row.try_get("kind")?;
    if kind_ != kind::REGISTER
        || !password::constant_time_eq(token::hash_secret(secret).as_bytes(), stored.as_bytes())
    {
        st.audit
            .append_alone(&st.cat, deny("forged_token", AuditAction::AccessDenied))
            .await;
        return Err(invalid());
    }
    let tenant: String = row
        .try_get::<Option<String>, _>("tenant")?
        .ok_or_else(invalid)?;
    if row.try_get::<i64, _>("used")? != 0 {
        st.audit
            .append_alone(
                &st.cat,
                deny("replayed", AuditAction::AgentTokenReplayed).with_tenant(tenant.clone()),
            )
            .await;
        return Err(ApiError::unauthorized(
            "token_replayed",
            "this registration token was already used",
        ));
    }
    if row.try_get::<i64, _>("revoked")? != 0 {
        return Err(ApiError::unauthorized(
            "token_revoked",
            "the registration token was revoked",
        ));
    }
    let now = now_ms();
    if row.try_get::<i64, _>("expires_ms")? <= now {
        st.audit
            .append_alone(
                &st.cat,
                deny("expired", AuditAction::AccessDenied).with_tenant(tenant.clone()),
            )
            .await;
        return Err(ApiError::unauthorized(
            "token_expired",
            "the registration token has expired",
        ));
    }
    let agent = token::random_id().map_err(|e| ApiError::internal("drawing an id", e))?;
    let minted = token::mint().map_err(|e| ApiError::internal("minting a token", e))?;
    let mut tx = st.cat.begin_write().await?;
    // Only one registration can consume the token, however many race for it.
    let consumed =
        sqlx::query("UPDATE tokens SET used = 1, last_used_ms = $1 WHERE id = $2 AND used = 0")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if consumed != 1 {
        drop(tx);
        st.audit
            .append_alone(
                &st.cat,
                deny("replayed", AuditAction::AgentTokenReplayed).with_tenant(tenant.clone()),
            )
            .await;
        return Err(ApiError::unauthorized(
            "token_replayed",
            "this registration token was already used",
        ));
    }
    sqlx::query("INSERT INTO agents (id, tenant, hostname, registered_ms) VALUES ($1, $2, $3, $4)")
        .bind(&agent)
        .bind(&tenant)
        .bind(hostname)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO tokens (id, kind, name, agent, tenant, secret_hash, expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&minted.id)
        .bind(kind::AGENT)
        .bind(hostname)
        .bind(&agent)
        .bind(&tenant)
        .bind(&minted.secret_hash)
        .bind(now.saturating_add(secs_to_ms(AGENT_TOKEN_SECS)))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let e = event(
        format!("agent:{agent}"),
        source.as_deref(),
        AuditAction::AgentRegistered,
        Some(&tenant),
        format!("agent:{agent}"),
        Outcome::Success,
    )
    .with_details(serde_json::json!({ "hostname": hostname, "registration": id }));
    st.commit_audited(tx, e).await?;
    Ok((
        StatusCode::CREATED,
        Json(AgentCredentials {
            agent,
            tenant,
            token: minted.token,
        }),
    ))
}

async fn list_agents(
    State(st): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<Agent>>> {
    require_tenant(&st, &tenant).await?;
    let rows = sqlx::query(
        "SELECT id, hostname, last_seen_ms FROM agents WHERE tenant = $1 ORDER BY hostname, id",
    )
    .bind(&tenant)
    .fetch_all(&st.cat.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Agent {
                id: r.try_get("id")?,
                hostname: r.try_get("hostname")?,
                last_seen_ms: r.try_get("last_seen_ms")?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

async fn delete_agent(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, agent)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let mut tx = st.cat.begin_write().await?;
    let found = sqlx::query("SELECT 1 FROM agents WHERE id = $1 AND tenant = $2")
        .bind(&agent)
        .bind(&tenant)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if !found {
        return Err(ApiError::not_found(format!("no agent {agent:?}")));
    }
    if sqlx::query("SELECT 1 FROM policies WHERE agent = $1 LIMIT 1")
        .bind(&agent)
        .fetch_optional(&mut *tx)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            "in_use",
            "policies still name this agent",
        ));
    }
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE agent = $1")
        .bind(&agent)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE jobs SET state = 'cancelled', finished_ms = $1 WHERE agent = $2 AND state IN ('queued', 'running')")
        .bind(now_ms())
        .bind(&agent)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM agents WHERE id = $1")
        .bind(&agent)
        .execute(&mut *tx)
        .await?;
    let e = ctx.event(
        AuditAction::AgentRevoked,
        Some(&tenant),
        format!("agent:{agent}"),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn agent_of(ctx: &Ctx) -> ApiResult<&str> {
    ctx.caller
        .agent
        .as_deref()
        .ok_or_else(|| ApiError::forbidden("not_an_agent", "only agents pull jobs"))
}

/// Claims the agent's oldest queued job. On PostgreSQL `FOR UPDATE SKIP LOCKED` keeps two
/// replicas from handing out the same job; the conditional update makes it certain on both.
async fn claim(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> ApiResult<Response> {
    let agent = agent_of(&ctx)?.to_owned();
    let now = now_ms();
    sqlx::query("UPDATE agents SET last_seen_ms = $1 WHERE id = $2")
        .bind(now)
        .bind(&agent)
        .execute(&st.cat.pool)
        .await?;
    let mut tx = st.cat.begin_write().await?;
    let row = sqlx::query(&format!(
        "SELECT id, kind, policy, repo, params FROM jobs WHERE agent = $1 AND tenant = $2 AND state = 'queued' ORDER BY queued_ms, id LIMIT 1{}",
        st.cat.skip_locked()
    ))
    .bind(&agent)
    .bind(&tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let id: String = row.try_get("id")?;
    let claimed = sqlx::query("UPDATE jobs SET state = 'running', runner = $1, started_ms = $2, heartbeat_ms = $3 WHERE id = $4 AND state = 'queued'")
        .bind(format!("agent:{agent}"))
        .bind(now)
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if claimed != 1 {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let kind: String = row.try_get("kind")?;
    let kind =
        JobKind::from_code(&kind).ok_or_else(|| ApiError::internal("reading a job", kind))?;
    let policy: Option<String> = row.try_get("policy")?;
    let repo: String = row.try_get("repo")?;
    let spec = match &policy {
        Some(p) => {
            let text: Option<String> = sqlx::query("SELECT spec FROM policies WHERE id = $1")
                .bind(p)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("spec"))
                .transpose()?;
            text.map(|t| serde_json::from_str::<PolicySpec>(&t))
                .transpose()
                .map_err(|e| ApiError::internal("reading a policy", e))?
        }
        None => None,
    };
    tx.commit().await?;
    let params: Option<String> = row.try_get("params")?;
    let params: serde_json::Value = params
        .map(|p| serde_json::from_str(&p))
        .transpose()
        .map_err(|e| ApiError::internal("reading a job", e))?
        .unwrap_or_default();
    let text = |k: &str| params.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let job = AgentJob {
        snapshot: text("snapshot"),
        target: text("target"),
        id,
        kind,
        repo,
        paths: spec.as_ref().map(|s| s.paths.clone()).unwrap_or_default(),
        excludes: spec
            .as_ref()
            .map(|s| s.excludes.clone())
            .unwrap_or_default(),
        tags: policy
            .map(|p| vec![format!("policy:{p}")])
            .unwrap_or_default(),
    };
    Ok(Json(job).into_response())
}

async fn report(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, job)): Path<(String, String)>,
    ApiJson(req): ApiJson<JobReport>,
) -> ApiResult<StatusCode> {
    let agent = agent_of(&ctx)?.to_owned();
    let now = now_ms();
    if !matches!(
        req.state,
        JobState::Running | JobState::Succeeded | JobState::Failed
    ) {
        return Err(ApiError::bad_request(
            "bad_state",
            "report running, succeeded or failed",
        ));
    }
    let progress = req
        .progress
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| ApiError::internal("encoding progress", e))?;
    let summary = req
        .summary
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| ApiError::internal("encoding a summary", e))?;
    let mut tx = st.cat.begin_write().await?;
    let row = sqlx::query(&format!(
        "SELECT state FROM jobs WHERE id = $1 AND tenant = $2 AND agent = $3{}",
        st.cat.for_update()
    ))
    .bind(&job)
    .bind(&tenant)
    .bind(&agent)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no job {job:?} of this agent")))?;
    let state: String = row.try_get("state")?;
    if state != "running" {
        return Err(ApiError::conflict(
            "job_not_running",
            format!("the job is {state}"),
        ));
    }
    let finished = req.state.is_final().then_some(now);
    sqlx::query("UPDATE jobs SET state = $1, heartbeat_ms = $2, finished_ms = $3, progress = COALESCE($4, progress), snapshot = COALESCE($5, snapshot), error = $6, summary = COALESCE($7, summary) WHERE id = $8")
        .bind(req.state.code())
        .bind(now)
        .bind(finished)
        .bind(progress)
        .bind(req.snapshot.clone())
        .bind(req.error.clone())
        .bind(summary)
        .bind(&job)
        .execute(&mut *tx)
        .await?;
    if req.state == JobState::Succeeded {
        queue_retention(&st, &mut tx, &tenant, &job).await?;
    }
    if req.state.is_final() {
        let outcome = if req.state == JobState::Succeeded {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let e = ctx.event(AuditAction::JobRun, Some(&tenant), format!("job:{job}"), outcome)
            .with_details(serde_json::json!({ "state": req.state.code(), "snapshot": req.snapshot, "error": req.error }));
        st.audit.append(&st.cat, &mut tx, e).await?;
    }
    tx.commit().await?;
    if req.state.is_final() {
        st.audit.after_commit(&st.cat).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// After a successful backup, queues the policy's retention (a server-side forget job) when it
/// keeps less than everything and the repository has a registered maintenance key.
async fn queue_retention(
    st: &AppState,
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    job: &str,
) -> ApiResult<()> {
    let row = sqlx::query(
        "SELECT p.id, p.spec, r.maintenance_key FROM jobs j JOIN policies p ON p.id = j.policy \
         JOIN repos r ON r.tenant = j.tenant AND r.name = j.repo WHERE j.id = $1 AND j.kind = 'backup'",
    )
    .bind(job)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(());
    };
    let spec: PolicySpec = serde_json::from_str(&row.try_get::<String, _>("spec")?)
        .map_err(|e| ApiError::internal("reading a policy", e))?;
    if spec.retention.keeps_all()
        || row
            .try_get::<Option<String>, _>("maintenance_key")?
            .is_none()
    {
        return Ok(());
    }
    let policy: String = row.try_get("id")?;
    if let Some(id) = crate::api::policies::queue_server_job(
        conn,
        tenant,
        JobKind::Forget,
        Some(&policy),
        &spec.repo,
        None,
    )
    .await?
    {
        let e = event("scheduler", None, AuditAction::JobCreated, Some(tenant), format!("job:{id}"), Outcome::Success)
            .with_details(serde_json::json!({ "kind": "forget", "policy": spec.name, "after": job, "replica": st.replica }));
        st.audit.append(&st.cat, conn, e).await?;
    }
    Ok(())
}
