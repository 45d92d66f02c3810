//! Backup policies and jobs: what each agent backs up and when, the queue and history of
//! jobs, and the per-host overview of time since the last good backup against the RPO target.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use sqlx::Row;
use zaibei_audit::{AuditAction, Outcome};
use zaibei_types::Privilege;
use zaibei_types::api::{CreateJob, HostStatus, Job, Policy, PolicySpec};
use zaibei_types::jobs::{JobKind, JobState};

use super::admin::require_tenant;
use super::ctx::Ctx;
use crate::auth::token;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, check_name};
use crate::routes::{Access, Route, array_of, schema};
use crate::schedule::Schedule;
use crate::state::AppState;
use crate::time::now_ms;

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    use Access::Requires;
    use Privilege::*;
    vec![
        Route::new(
            Method::GET,
            "/api/v1/tenants/{tenant}/policies",
            Requires(PolicyRead),
            "List backup policies",
            list_policies,
        )
        .returns(array_of::<Policy>()),
        Route::new(
            Method::POST,
            "/api/v1/tenants/{tenant}/policies",
            Requires(PolicyManage),
            "Create a backup policy",
            create_policy,
        )
        .takes(schema::<PolicySpec>())
        .returns(schema::<Policy>()),
        Route::new(
            Method::PUT,
            "/api/v1/tenants/{tenant}/policies/{policy}",
            Requires(PolicyManage),
            "Replace a backup policy",
            update_policy,
        )
        .takes(schema::<PolicySpec>())
        .returns(schema::<Policy>()),
        Route::new(
            Method::DELETE,
            "/api/v1/tenants/{tenant}/policies/{policy}",
            Requires(PolicyManage),
            "Delete a backup policy",
            delete_policy,
        ),
        Route::new(
            Method::GET,
            "/api/v1/tenants/{tenant}/jobs",
            Requires(JobRead),
            "Job history, newest first",
            list_jobs,
        )
        .returns(array_of::<Job>()),
        Route::new(
            Method::GET,
            "/api/v1/tenants/{tenant}/jobs/{job}",
            Requires(JobRead),
            "One job",
            get_job,
        )
        .returns(schema::<Job>()),
        Route::new(
            Method::POST,
            "/api/v1/tenants/{tenant}/jobs",
            Requires(JobManage),
            "Queue a backup of a policy now",
            create_job,
        )
        .takes(schema::<CreateJob>())
        .returns(schema::<Job>()),
        Route::new(
            Method::POST,
            "/api/v1/tenants/{tenant}/jobs/{job}/cancel",
            Requires(JobManage),
            "Cancel a queued job",
            cancel_job,
        ),
        Route::new(
            Method::GET,
            "/api/v1/tenants/{tenant}/overview",
            Requires(JobRead),
            "Per protected host: time since the last good backup against its RPO target",
            overview,
        )
        .returns(array_of::<HostStatus>()),
    ]
}

async fn check_spec(st: &AppState, tenant: &str, spec: &PolicySpec) -> ApiResult<Schedule> {
    check_name("policy", &spec.name)?;
    check_name("repository", &spec.repo)?;
    let bad = |code, msg: String| Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg));
    if spec.paths.is_empty()
        || spec
            .paths
            .iter()
            .any(|p| !p.starts_with('/') || p.contains('\0'))
    {
        return bad("bad_paths", "a policy needs absolute paths".into());
    }
    if spec.rpo_target_secs == 0 {
        return bad("bad_rpo", "the RPO target must be positive".into());
    }
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => return bad("bad_schedule", e),
    };
    if spec.copy_schedule.is_some() != spec.copy_to.is_some() {
        return bad("bad_copy", "copy_schedule and copy_to go together".into());
    }
    if let Some(to) = &spec.copy_to {
        check_name("repository", to)?;
        if to == &spec.repo {
            return bad("bad_copy", "a repository is not copied into itself".into());
        }
        let there = sqlx::query("SELECT 1 FROM repos WHERE name = $1 AND tenant = $2")
            .bind(to)
            .bind(tenant)
            .fetch_optional(&st.cat.pool)
            .await?;
        if there.is_none() {
            return bad("no_repo", format!("no repository {to:?} in this tenant"));
        }
    }
    for extra in [
        &spec.check_schedule,
        &spec.prune_schedule,
        &spec.copy_schedule,
    ]
    .into_iter()
    .flatten()
    {
        if let Err(e) = Schedule::parse(extra) {
            return bad("bad_schedule", e);
        }
    }
    let agent = sqlx::query("SELECT 1 FROM agents WHERE id = $1 AND tenant = $2")
        .bind(&spec.agent)
        .bind(tenant)
        .fetch_optional(&st.cat.pool)
        .await?;
    if agent.is_none() {
        return bad(
            "no_agent",
            format!("no agent {:?} in this tenant", spec.agent),
        );
    }
    let repo = sqlx::query("SELECT 1 FROM repos WHERE name = $1 AND tenant = $2")
        .bind(&spec.repo)
        .bind(tenant)
        .fetch_optional(&st.cat.pool)
        .await?;
    if repo.is_none() {
        return bad(
            "no_repo",
            format!("no repository {:?} in this tenant", spec.repo),
        );
    }
    Ok(schedule)
}

fn policy_of(r: &sqlx::any::AnyRow) -> ApiResult<Policy> {
    let text: String = r.try_get("spec")?;
    Ok(Policy {
        id: r.try_get("id")?,
        spec: serde_json::from_str(&text).map_err(|e| ApiError::internal("reading a policy", e))?,
        next_run_ms: r.try_get("next_run_ms")?,
    })
}

async fn list_policies(
    State(st): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<Policy>>> {
    require_tenant(&st, &tenant).await?;
    let rows =
        sqlx::query("SELECT id, spec, next_run_ms FROM policies WHERE tenant = $1 ORDER BY name")
            .bind(&tenant)
            .fetch_all(&st.cat.pool)
            .await?;
    rows.iter()
        .map(policy_of)
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

async fn create_policy(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
    ApiJson(spec): ApiJson<PolicySpec>,
) -> ApiResult<(StatusCode, Json<Policy>)> {
    require_tenant(&st, &tenant).await?;
    let schedule = check_spec(&st, &tenant, &spec).await?;
    let id = token::random_id().map_err(|e| ApiError::internal("drawing an id", e))?;
    let next = if spec.disabled {
        None
    } else {
        schedule.next_after(now_ms())
    };
    let text =
        serde_json::to_string(&spec).map_err(|e| ApiError::internal("encoding a policy", e))?;
    let mut tx = st.cat.begin_write().await?;
    let (next_check, next_prune, next_copy) = maintenance_due(&spec);
    let inserted = sqlx::query("INSERT INTO policies (id, tenant, name, spec, agent, next_run_ms, next_check_ms, next_prune_ms, next_copy_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING")
        .bind(&id).bind(&tenant).bind(&spec.name).bind(&text).bind(&spec.agent).bind(next)
        .bind(next_check).bind(next_prune).bind(next_copy)
        .execute(&mut *tx).await?.rows_affected();
    if inserted == 0 {
        return Err(ApiError::conflict(
            "exists",
            format!("policy {:?} exists", spec.name),
        ));
    }
    let e = ctx
        .event(
            AuditAction::PolicyCreated,
            Some(&tenant),
            format!("policy:{}", spec.name),
            Outcome::Success,
        )
        .with_details(serde_json::to_value(&spec).unwrap_or_default());
    st.commit_audited(tx, e).await?;
    Ok((
        StatusCode::CREATED,
        Json(Policy {
            id,
            spec,
            next_run_ms: next,
        }),
    ))
}

async fn update_policy(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<PolicySpec>,
) -> ApiResult<Json<Policy>> {
    if spec.name != name {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_name",
            "the body's name must be the policy's",
        ));
    }
    let schedule = check_spec(&st, &tenant, &spec).await?;
    let next = if spec.disabled {
        None
    } else {
        schedule.next_after(now_ms())
    };
    let text =
        serde_json::to_string(&spec).map_err(|e| ApiError::internal("encoding a policy", e))?;
    let mut tx = st.cat.begin_write().await?;
    let (next_check, next_prune, next_copy) = maintenance_due(&spec);
    let row = sqlx::query("UPDATE policies SET spec = $1, agent = $2, next_run_ms = $3, next_check_ms = $4, next_prune_ms = $5, next_copy_ms = $6 WHERE tenant = $7 AND name = $8 RETURNING id")
        .bind(&text).bind(&spec.agent).bind(next).bind(next_check).bind(next_prune).bind(next_copy).bind(&tenant).bind(&name)
        .fetch_optional(&mut *tx).await?
        .ok_or_else(|| ApiError::not_found(format!("no policy {name:?}")))?;
    let id: String = row.try_get("id")?;
    let e = ctx
        .event(
            AuditAction::PolicyChanged,
            Some(&tenant),
            format!("policy:{name}"),
            Outcome::Success,
        )
        .with_details(serde_json::to_value(&spec).unwrap_or_default());
    st.commit_audited(tx, e).await?;
    Ok(Json(Policy {
        id,
        spec,
        next_run_ms: next,
    }))
}

async fn delete_policy(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let mut tx = st.cat.begin_write().await?;
    let done = sqlx::query("DELETE FROM policies WHERE tenant = $1 AND name = $2")
        .bind(&tenant)
        .bind(&name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if done == 0 {
        return Err(ApiError::not_found(format!("no policy {name:?}")));
    }
    let e = ctx.event(
        AuditAction::PolicyDeleted,
        Some(&tenant),
        format!("policy:{name}"),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

const JOB_COLUMNS: &str = "id, kind, state, policy, repo, agent, queued_ms, started_ms, finished_ms, progress, snapshot, error, summary";

fn job_of(r: &sqlx::any::AnyRow) -> ApiResult<Job> {
    let kind: String = r.try_get("kind")?;
    let state: String = r.try_get("state")?;
    let json = |col: &str| -> ApiResult<Option<serde_json::Value>> {
        let t: Option<String> = r.try_get(col)?;
        t.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| ApiError::internal("reading a job", e))
    };
    Ok(Job {
        id: r.try_get("id")?,
        kind: JobKind::from_code(&kind)
            .ok_or_else(|| ApiError::internal("reading a job", kind.clone()))?,
        state: JobState::from_code(&state)
            .ok_or_else(|| ApiError::internal("reading a job", state.clone()))?,
        policy: r.try_get("policy")?,
        repo: r.try_get("repo")?,
        agent: r.try_get("agent")?,
        queued_ms: r.try_get("queued_ms")?,
        started_ms: r.try_get("started_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        progress: json("progress")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| ApiError::internal("reading a job", e))?,
        snapshot: r.try_get("snapshot")?,
        error: r.try_get("error")?,
        summary: json("summary")?,
    })
}

async fn list_jobs(
    State(st): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<Job>>> {
    require_tenant(&st, &tenant).await?;
    let rows = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 ORDER BY queued_ms DESC, id LIMIT 1000"
    ))
    .bind(&tenant)
    .fetch_all(&st.cat.pool)
    .await?;
    rows.iter()
        .map(job_of)
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

async fn get_job(
    State(st): State<AppState>,
    Path((tenant, job)): Path<(String, String)>,
) -> ApiResult<Json<Job>> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 AND id = $2"
    ))
    .bind(&tenant)
    .bind(&job)
    .fetch_optional(&st.cat.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no job {job:?}")))?;
    job_of(&row).map(Json)
}

/// Queues a backup job of the policy `policy_id` unless one is already queued or running.
/// Returns the new job's id.
pub async fn queue_backup(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    policy_id: &str,
    spec: &PolicySpec,
) -> ApiResult<Option<String>> {
    // The partial unique index `jobs_one_pending_backup` keeps one pending backup per
    // policy, whichever replica queues it: a second insert does nothing.
    let id = token::random_id().map_err(|e| ApiError::internal("drawing an id", e))?;
    let inserted = sqlx::query("INSERT INTO jobs (id, tenant, kind, state, policy, repo, agent, queued_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
        .bind(&id).bind(tenant).bind(JobKind::Backup.code()).bind(JobState::Queued.code())
        .bind(policy_id).bind(&spec.repo).bind(&spec.agent).bind(now_ms())
        .execute(&mut *conn).await?
        .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }

    Ok(Some(id))
}

async fn create_job(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
    ApiJson(req): ApiJson<CreateJob>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let unprocessable =
        |code, msg: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg);
    // The policy named (backup, forget), and the repository the job is for.
    let policy = match &req.policy {
        Some(name) => {
            let row = sqlx::query("SELECT id, spec FROM policies WHERE tenant = $1 AND name = $2")
                .bind(&tenant)
                .bind(name)
                .fetch_optional(&st.cat.pool)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no policy {name:?}")))?;
            let id: String = row.try_get("id")?;
            let spec: PolicySpec = serde_json::from_str(&row.try_get::<String, _>("spec")?)
                .map_err(|e| ApiError::internal("reading a policy", e))?;
            Some((id, spec))
        }
        None => None,
    };
    let mut tx = st.cat.begin_write().await?;
    let id = match req.kind {
        JobKind::Backup => {
            let (policy_id, spec) = policy
                .as_ref()
                .ok_or_else(|| unprocessable("no_policy", "a backup job names its policy"))?;
            queue_backup(&mut tx, &tenant, policy_id, spec).await?
        }
        kind @ (JobKind::Verify | JobKind::Drill | JobKind::Restore) => {
            // Writing files on a protected host is the tenant's own decision, never a platform
            // administrator's.
            if kind == JobKind::Restore && ctx.caller.role != zaibei_types::Role::TenantOperator {
                return Err(ApiError::forbidden(
                    "tenant_only",
                    "restores are queued by the tenant's operators",
                ));
            }
            let (policy_id, spec) = policy.as_ref().ok_or_else(|| {
                unprocessable("no_policy", "verify, drill and restore jobs run on a policy's agent: name the policy")
            })?;
            let snapshot = req.snapshot.clone().unwrap_or_else(|| "latest".into());
            if snapshot.is_empty() || snapshot.len() > 200 || snapshot.starts_with('-') {
                return Err(unprocessable("bad_snapshot", "a snapshot id, prefix or `latest`"));
            }
            let target = match (kind, &req.target) {
                (JobKind::Restore, Some(t)) if t.starts_with('/') && !t.contains('\0') && t.len() <= 4096 => Some(t.clone()),
                (JobKind::Restore, _) => {
                    return Err(unprocessable("bad_target", "a restore needs an absolute target directory on the agent's host"));
                }
                (_, _) => None,
            };
            let params = serde_json::json!({ "snapshot": snapshot, "target": target }).to_string();
            let id = token::random_id().map_err(|e| ApiError::internal("drawing an id", e))?;
            sqlx::query("INSERT INTO jobs (id, tenant, kind, state, policy, repo, agent, queued_ms, params) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(&id)
                .bind(&tenant)
                .bind(kind.code())
                .bind(JobState::Queued.code())
                .bind(policy_id)
                .bind(&spec.repo)
                .bind(&spec.agent)
                .bind(now_ms())
                .bind(params)
                .execute(&mut *tx)
                .await?;
            Some(id)
        }
        kind => {
            let repo = match (&policy, &req.repo) {
                (_, Some(repo)) => repo.clone(),
                (Some((_, spec)), None) => spec.repo.clone(),
                (None, None) => {
                    return Err(unprocessable(
                        "no_repo",
                        "name the repository (or, for forget, the policy)",
                    ));
                }
            };
            if kind == JobKind::Forget && policy.is_none() {
                return Err(unprocessable(
                    "no_policy",
                    "a forget job applies a policy's retention: name the policy",
                ));
            }
            let key =
                sqlx::query("SELECT maintenance_key FROM repos WHERE tenant = $1 AND name = $2")
                    .bind(&tenant)
                    .bind(&repo)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("no repository {repo:?}")))?;
            if key
                .try_get::<Option<String>, _>("maintenance_key")?
                .is_none()
            {
                return Err(ApiError::conflict(
                    "no_maintenance_key",
                    "register a maintenance-only key first (PUT …/repos/{repo}/maintenance-key)",
                ));
            }
            let target = if kind == JobKind::Copy {
                let target = req.target.clone().ok_or_else(|| {
                    unprocessable("no_target", "a copy names its target repository")
                })?;
                check_name("repository", &target)?;
                let key = sqlx::query("SELECT maintenance_key FROM repos WHERE tenant = $1 AND name = $2")
                    .bind(&tenant)
                    .bind(&target)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("no repository {target:?}")))?;
                if target == repo || key.try_get::<Option<String>, _>("maintenance_key")?.is_none() {
                    return Err(ApiError::conflict(
                        "no_maintenance_key",
                        "the target must be another repository with a registered maintenance-only key",
                    ));
                }
                Some(target)
            } else {
                None
            };
            queue_server_job(
                &mut tx,
                &tenant,
                kind,
                policy.as_ref().map(|p| p.0.as_str()),
                &repo,
                target.as_deref(),
            )
            .await?
        }
    }
    .ok_or_else(|| {
        ApiError::conflict("already_pending", "such a job is already queued or running")
    })?;
    let action = if req.kind == JobKind::Restore {
        AuditAction::Restore
    } else {
        AuditAction::JobCreated
    };
    let e = ctx
        .event(action, Some(&tenant), format!("job:{id}"), Outcome::Success)
        .with_details(serde_json::json!({ "kind": req.kind.code(), "policy": req.policy, "repo": req.repo, "snapshot": req.snapshot, "target": req.target }));
    st.commit_audited(tx, e).await?;
    let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .bind(&id)
        .fetch_one(&st.cat.pool)
        .await?;
    Ok((StatusCode::CREATED, Json(job_of(&row)?)))
}

/// Queues a job the server runs with the repository's maintenance key (check, forget, prune)
/// unless one of the same kind is pending for the repository. Returns the new job's id.
pub async fn queue_server_job(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    kind: JobKind,
    policy: Option<&str>,
    repo: &str,
    target: Option<&str>,
) -> ApiResult<Option<String>> {
    // The partial unique index `jobs_one_pending_server_job` keeps one pending job per
    // repository and kind.
    let id = token::random_id().map_err(|e| ApiError::internal("drawing an id", e))?;
    let params = target.map(|t| serde_json::json!({ "target": t }).to_string());
    let inserted = sqlx::query("INSERT INTO jobs (id, tenant, kind, state, policy, repo, queued_ms, params) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
        .bind(&id)
        .bind(tenant)
        .bind(kind.code())
        .bind(JobState::Queued.code())
        .bind(policy)
        .bind(repo)
        .bind(now_ms())
        .bind(params)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }

    Ok(Some(id))
}

async fn cancel_job(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, job)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let mut tx = st.cat.begin_write().await?;
    let done = sqlx::query("UPDATE jobs SET state = 'cancelled', finished_ms = $1 WHERE tenant = $2 AND id = $3 AND state = 'queued'")
        .bind(now_ms()).bind(&tenant).bind(&job).execute(&mut *tx).await?.rows_affected();
    if done == 0 {
        return Err(ApiError::conflict(
            "not_queued",
            "only queued jobs can be cancelled",
        ));
    }
    let e = ctx
        .event(
            AuditAction::JobChanged,
            Some(&tenant),
            format!("job:{job}"),
            Outcome::Success,
        )
        .with_details(serde_json::json!({ "state": "cancelled" }));
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn overview(
    State(st): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<HostStatus>>> {
    require_tenant(&st, &tenant).await?;
    let rows = sqlx::query(
        "SELECT p.id, p.name, p.spec, a.id AS agent, a.hostname, \
         (SELECT MAX(j.finished_ms) FROM jobs j WHERE j.policy = p.id AND j.kind = 'backup' AND j.state = 'succeeded') AS last \
         FROM policies p JOIN agents a ON a.id = p.agent WHERE p.tenant = $1 ORDER BY a.hostname, p.name",
    )
    .bind(&tenant).fetch_all(&st.cat.pool).await?;
    let now = now_ms();
    rows.iter()
        .map(|r| {
            let spec: PolicySpec = serde_json::from_str(&r.try_get::<String, _>("spec")?)
                .map_err(|e| ApiError::internal("reading a policy", e))?;
            let last: Option<i64> = r.try_get("last")?;
            let lag = last.map(|l| u64::try_from((now - l).max(0) / 1000).unwrap_or(0));
            Ok(HostStatus {
                agent: r.try_get("agent")?,
                hostname: r.try_get("hostname")?,
                policy: r.try_get("name")?,
                last_good_ms: last,
                lag_secs: lag,
                rpo_target_secs: spec.rpo_target_secs,
                within_target: lag.is_some_and(|l| l <= spec.rpo_target_secs),
            })
        })
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

/// When a policy's scheduled check and prune are first due (none when disabled or unset).
pub fn maintenance_due(spec: &PolicySpec) -> (Option<i64>, Option<i64>, Option<i64>) {
    let due = |text: &Option<String>| {
        if spec.disabled {
            return None;
        }
        text.as_deref()
            .and_then(|t| Schedule::parse(t).ok())
            .and_then(|s| s.next_after(now_ms()))
    };
    (
        due(&spec.check_schedule),
        due(&spec.prune_schedule),
        due(&spec.copy_schedule),
    )
}
