//! A tenant's repositories, and the repository API through which clients read and write their
//! objects (`zaibei … -r https://SERVER/TENANT/REPO`). Data arrives encrypted: the server
//! stores bytes it cannot read.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sqlx::Row;
use zaibei_audit::{AuditAction, Outcome};
use zaibei_store::StoreErrorKind;
use zaibei_types::Privilege;
use zaibei_types::api::{CreateRepo, MaintenanceKey, ObjectEntry, ObjectList, Repo};

use super::admin::require_tenant;
use super::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiBytes, ApiJson, ApiQuery, check_name};
use crate::routes::{Access, Route, array_of, schema};
use crate::state::AppState;
use crate::time::now_ms;

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    use Access::Requires;
    use Privilege::*;
    const OBJECT: &str = "/api/v1/tenants/{tenant}/repos/{repo}/objects/{*name}";
    vec![
        Route::new(
            Method::GET,
            "/api/v1/tenants/{tenant}/repos",
            Requires(RepoRead),
            "List the tenant's repositories",
            list_repos,
        )
        .returns(array_of::<Repo>()),
        Route::new(
            Method::POST,
            "/api/v1/tenants/{tenant}/repos",
            Requires(RepoManage),
            "Create a repository (then `zaibei init -r https://SERVER/TENANT/REPO`)",
            create_repo,
        )
        .takes(schema::<CreateRepo>())
        .returns(schema::<Repo>()),
        Route::new(
            Method::DELETE,
            "/api/v1/tenants/{tenant}/repos/{repo}",
            Requires(RepoManage),
            "Delete an empty repository",
            delete_repo,
        ),
        Route::new(
            Method::PUT,
            "/api/v1/tenants/{tenant}/repos/{repo}/maintenance-key",
            Requires(RepoManage),
            "Register the password of a maintenance-only key for server-side check, forget and prune",
            put_maintenance_key,
        )
        .takes(schema::<MaintenanceKey>()),
        Route::new(
            Method::DELETE,
            "/api/v1/tenants/{tenant}/repos/{repo}/maintenance-key",
            Requires(RepoManage),
            "Forget the registered maintenance key",
            delete_maintenance_key,
        ),
        Route::new(
            Method::GET,
            "/api/v1/tenants/{tenant}/repos/{repo}/objects",
            Requires(RepoDataRead),
            "List objects (prefix, after, limit)",
            list_objects,
        )
        .returns(schema::<ObjectList>()),
        Route::new(
            Method::GET,
            OBJECT,
            Requires(RepoDataRead),
            "Read an object (Range supported)",
            get_object,
        )
        .binary(),
        Route::new(
            Method::HEAD,
            OBJECT,
            Requires(RepoDataRead),
            "An object's size and modification time",
            head_object,
        ),
        Route::new(
            Method::PUT,
            OBJECT,
            Requires(RepoDataAppend),
            "Add an object (If-None-Match: * to require a new name)",
            put_object,
        )
        .binary(),
        Route::new(
            Method::DELETE,
            OBJECT,
            Requires(RepoDataDelete),
            "Delete an object",
            delete_object,
        ),
    ]
}

fn repo_of(r: &sqlx::any::AnyRow) -> ApiResult<Repo> {
    Ok(Repo {
        name: r.try_get("name")?,
        used_bytes: r.try_get::<i64, _>("used_bytes")?.max(0) as u64,
        objects: r.try_get::<i64, _>("objects")?.max(0) as u64,
        site: r.try_get("site")?,
    })
}

async fn list_repos(
    State(st): State<AppState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<Vec<Repo>>> {
    require_tenant(&st, &tenant).await?;
    let rows = sqlx::query(
        "SELECT name, used_bytes, objects, site FROM repos WHERE tenant = $1 ORDER BY name",
    )
    .bind(&tenant)
    .fetch_all(&st.cat.pool)
    .await?;
    rows.iter()
        .map(repo_of)
        .collect::<ApiResult<Vec<_>>>()
        .map(Json)
}

async fn create_repo(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
    ApiJson(req): ApiJson<CreateRepo>,
) -> ApiResult<(StatusCode, Json<Repo>)> {
    require_tenant(&st, &tenant).await?;
    check_name("repository", &req.name)?;
    if let Some(site) = &req.site
        && !st.storage.has_site(site)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_site",
            format!("no storage site {site:?} is configured on this server"),
        ));
    }
    let mut tx = st.cat.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO repos (tenant, name, created_ms, site) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(&tenant)
    .bind(&req.name)
    .bind(now_ms())
    .bind(req.site.clone())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError::conflict(
            "exists",
            format!("repository {:?} exists", req.name),
        ));
    }
    let e = ctx
        .event(
            AuditAction::RepoCreated,
            Some(&tenant),
            format!("repo:{tenant}/{}", req.name),
            Outcome::Success,
        )
        .with_details(serde_json::json!({ "site": req.site }));
    st.commit_audited(tx, e).await?;
    Ok((
        StatusCode::CREATED,
        Json(Repo {
            name: req.name,
            used_bytes: 0,
            objects: 0,
            site: req.site,
        }),
    ))
}

/// The storage site of a repository (none: the default storage), or 404 `no_repo`.
pub async fn require_repo(st: &AppState, tenant: &str, repo: &str) -> ApiResult<Option<String>> {
    let row = sqlx::query("SELECT site FROM repos WHERE tenant = $1 AND name = $2")
        .bind(tenant)
        .bind(repo)
        .fetch_optional(&st.cat.pool)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_repo",
                format!("no repository {repo:?} in tenant {tenant:?}"),
            )
        })?;
    Ok(row.try_get("site")?)
}

async fn delete_repo(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, repo)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let site = require_repo(&st, &tenant, &repo).await?;
    if !st
        .storage
        .list(site.as_deref(), &tenant, &repo, "")
        .await?
        .is_empty()
    {
        return Err(ApiError::conflict(
            "not_empty",
            "the repository still holds objects; nothing is deleted that is not proven unused",
        ));
    }
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("DELETE FROM repos WHERE tenant = $1 AND name = $2")
        .bind(&tenant)
        .bind(&repo)
        .execute(&mut *tx)
        .await?;
    let e = ctx.event(
        AuditAction::RepoDeleted,
        Some(&tenant),
        format!("repo:{tenant}/{repo}"),
        Outcome::Success,
    );
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of an object listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_objects(
    State(st): State<AppState>,
    Path((tenant, repo)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ObjectList>> {
    let site = require_repo(&st, &tenant, &repo).await?;
    // `prefix` is a prefix of names ("data/", "data/0a", "snap"): list the directory it lies
    // in, then keep the names that start with it.
    let dir = q.prefix.rsplit_once('/').map_or("", |(d, _)| d);
    if q.prefix.contains("..")
        || q.prefix.starts_with('/')
        || !(dir.is_empty() || zaibei_store::check_name(dir))
    {
        return Err(ApiError::bad_request("bad_name", "invalid prefix"));
    }
    // A prefix that names a directory ("data", as the client sends) lists just that
    // directory, not the whole repository for every page.
    let mut all = Vec::new();
    if !q.prefix.is_empty() && !q.prefix.ends_with('/') && zaibei_store::check_name(&q.prefix) {
        all = st
            .storage
            .list(site.as_deref(), &tenant, &repo, &q.prefix)
            .await?;
    }
    if all.is_empty() {
        all = st
            .storage
            .list(site.as_deref(), &tenant, &repo, dir)
            .await?;
    }
    all.retain(|o| o.name.starts_with(&q.prefix));
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let start = match &q.after {
        Some(after) => all.partition_point(|o| o.name.as_str() <= after.as_str()),
        None => 0,
    };
    let page: Vec<ObjectEntry> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|o| ObjectEntry {
            name: o.name.clone(),
            size: o.size,
            modified_ms: o
                .modified
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_millis()).ok()),
        })
        .collect();
    let truncated = start + page.len() < all.len();
    Ok(Json(ObjectList {
        objects: page,
        truncated,
    }))
}

fn object_name(name: &str) -> ApiResult<&str> {
    if zaibei_store::check_name(name) {
        Ok(name)
    } else {
        Err(ApiError::bad_request(
            "bad_name",
            format!("invalid object name {name:?}"),
        ))
    }
}

/// `bytes=START-END` (inclusive) as a half-open range.
fn parse_range(value: &str) -> Option<std::ops::Range<u64>> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = b.trim().parse().ok()?;
    (end >= start).then(|| start..end.saturating_add(1))
}

async fn get_object(
    State(st): State<AppState>,
    Path((tenant, repo, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let site = require_repo(&st, &tenant, &repo).await?;
    let name = object_name(&name)?;
    let store = st
        .storage
        .open(site.as_deref(), &tenant, &repo)
        .map_err(|e| ApiError::internal("opening storage", e))?;
    if let Some(range) = headers.get(header::RANGE) {
        let range = range.to_str().ok().and_then(parse_range).ok_or_else(|| {
            ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                "use Range: bytes=START-END",
            )
        })?;
        let bytes = store.get_range(name, range).await?;
        st.metrics.add_read(bytes.len());
        return Ok((
            StatusCode::PARTIAL_CONTENT,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response());
    }
    let bytes = store.get(name).await?;
    st.metrics.add_read(bytes.len());
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn head_object(
    State(st): State<AppState>,
    Path((tenant, repo, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let site = require_repo(&st, &tenant, &repo).await?;
    let name = object_name(&name)?;
    let store = st
        .storage
        .open(site.as_deref(), &tenant, &repo)
        .map_err(|e| ApiError::internal("opening storage", e))?;
    let info = store.stat(name).await?;
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    if let Some(modified) = info.modified {
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_str(&httpdate(modified))
                .map_err(|e| ApiError::internal("formatting a date", e))?,
        );
        if let Some(ms) = modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
        {
            h.insert("x-zaibei-modified-ms", HeaderValue::from(ms));
        }
    }
    Ok(response)
}

fn httpdate(t: std::time::SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

async fn add_usage(
    st: &AppState,
    tenant: &str,
    repo: &str,
    bytes: i64,
    objects: i64,
) -> ApiResult<()> {
    sqlx::query("UPDATE repos SET used_bytes = used_bytes + $1, objects = objects + $2 WHERE tenant = $3 AND name = $4")
        .bind(bytes)
        .bind(objects)
        .bind(tenant)
        .bind(repo)
        .execute(&st.cat.pool)
        .await?;
    Ok(())
}

async fn put_object(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, repo, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<StatusCode> {
    let site = require_repo(&st, &tenant, &repo).await?;
    let name = object_name(&name)?;
    let store = st
        .storage
        .open(site.as_deref(), &tenant, &repo)
        .map_err(|e| ApiError::internal("opening storage", e))?;
    let len = i64::try_from(body.len()).unwrap_or(i64::MAX);
    let existing = match store.stat(name).await {
        Ok(info) => Some(info.size),
        Err(e) if e.kind == StoreErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let must_be_new = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    if let Some(size) = existing {
        if must_be_new {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "object_exists",
                format!("object {name:?} exists"),
            ));
        }
        // Append-only callers may repeat an upload with the same bytes, never change one.
        if !ctx.caller.holds(Privilege::RepoDataDelete) {
            let same = size == body.len() as u64 && store.get(name).await? == body;
            if same {
                return Ok(StatusCode::OK);
            }
            let e = ctx.event(
                AuditAction::AccessDenied,
                Some(&tenant),
                format!("object:{tenant}/{repo}/{name}"),
                Outcome::Denied,
            );
            st.audit.append_alone(&st.cat, e).await;
            return Err(ApiError::conflict(
                "object_exists",
                "append-only tokens cannot replace an object",
            ));
        }
    }
    check_quota(
        &st,
        &tenant,
        len - existing.map_or(0, |s| i64::try_from(s).unwrap_or(0)),
    )
    .await?;
    if must_be_new {
        store.put_new(name, body).await?;
    } else if !ctx.caller.holds(Privilege::RepoDataDelete) {
        // Append-only: publish only if the name is still free, so an object written between
        // the check above and now is never replaced.
        match store.put_new(name, body.clone()).await {
            Ok(()) => {}
            Err(e) if e.kind == StoreErrorKind::AlreadyExists => {
                if store.get(name).await? == body {
                    return Ok(StatusCode::OK);
                }
                return Err(ApiError::conflict(
                    "object_exists",
                    "append-only tokens cannot replace an object",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        store.put(name, body).await?;
    }
    st.metrics.add_written(len);
    match existing {
        Some(old) => {
            add_usage(
                &st,
                &tenant,
                &repo,
                len - i64::try_from(old).unwrap_or(0),
                0,
            )
            .await?
        }
        None => add_usage(&st, &tenant, &repo, len, 1).await?,
    }
    Ok(if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    })
}

async fn check_quota(st: &AppState, tenant: &str, growth: i64) -> ApiResult<()> {
    if growth <= 0 {
        return Ok(());
    }
    let row = sqlx::query("SELECT t.quota_bytes, CAST(COALESCE((SELECT SUM(r.used_bytes) FROM repos r WHERE r.tenant = t.name), 0) AS BIGINT) AS used FROM tenants t WHERE t.name = $1")
        .bind(tenant)
        .fetch_one(&st.cat.pool)
        .await?;
    let quota: Option<i64> = row.try_get("quota_bytes")?;
    let used: i64 = row.try_get("used")?;
    if let Some(quota) = quota
        && used.saturating_add(growth) > quota
    {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "quota_exceeded",
            format!("tenant {tenant:?} would exceed its quota of {quota} bytes"),
        ));
    }
    Ok(())
}

async fn delete_object(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, repo, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let site = require_repo(&st, &tenant, &repo).await?;
    let name = object_name(&name)?;
    let store = st
        .storage
        .open(site.as_deref(), &tenant, &repo)
        .map_err(|e| ApiError::internal("opening storage", e))?;
    let size = store.stat(name).await?.size;
    // The record is committed before the deletion (a deletion the log cannot show does not
    // happen); clock markers are routine and not recorded.
    let audited = !name.starts_with("state/clock/");
    if audited {
        let e = ctx
            .event(
                AuditAction::ObjectDeleted,
                Some(&tenant),
                format!("object:{tenant}/{repo}/{name}"),
                Outcome::Success,
            )
            .with_details(serde_json::json!({ "size": size }));
        let tx = st.cat.begin_write().await?;
        st.commit_audited(tx, e).await?;
    }
    if let Err(err) = store.delete(name).await {
        if audited {
            let e = ctx
                .event(
                    AuditAction::ObjectDeleted,
                    Some(&tenant),
                    format!("object:{tenant}/{repo}/{name}"),
                    Outcome::Failure,
                )
                .with_details(serde_json::json!({ "error": err.to_string() }));
            st.audit.append_alone(&st.cat, e).await;
        }
        return Err(err.into());
    }
    add_usage(&st, &tenant, &repo, -i64::try_from(size).unwrap_or(0), -1).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_maintenance_key(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, repo)): Path<(String, String)>,
    ApiJson(req): ApiJson<MaintenanceKey>,
) -> ApiResult<StatusCode> {
    require_repo(&st, &tenant, &repo).await?;
    // The key must open the repository, and only its maintenance layer.
    if let Err(why) =
        crate::maintenance::open_maintenance(&st, &tenant, &repo, req.password.as_bytes()).await
    {
        let e = ctx
            .event(
                AuditAction::RepoKeyChanged,
                Some(&tenant),
                format!("repo:{tenant}/{repo}"),
                Outcome::Failure,
            )
            .with_details(serde_json::json!({ "reason": why }));
        st.audit.append_alone(&st.cat, e).await;
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_maintenance_key",
            why,
        ));
    }
    let sealed = st
        .secret
        .seal(
            &crate::maintenance::key_context(&tenant, &repo),
            req.password.as_bytes(),
        )
        .map_err(|e| ApiError::internal("sealing a key", e))?;
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("UPDATE repos SET maintenance_key = $1 WHERE tenant = $2 AND name = $3")
        .bind(sealed)
        .bind(&tenant)
        .bind(&repo)
        .execute(&mut *tx)
        .await?;
    let e = ctx
        .event(
            AuditAction::RepoKeyChanged,
            Some(&tenant),
            format!("repo:{tenant}/{repo}"),
            Outcome::Success,
        )
        .with_details(serde_json::json!({ "maintenance_key": "registered" }));
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_maintenance_key(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((tenant, repo)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require_repo(&st, &tenant, &repo).await?;
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("UPDATE repos SET maintenance_key = NULL WHERE tenant = $1 AND name = $2")
        .bind(&tenant)
        .bind(&repo)
        .execute(&mut *tx)
        .await?;
    let e = ctx
        .event(
            AuditAction::RepoKeyChanged,
            Some(&tenant),
            format!("repo:{tenant}/{repo}"),
            Outcome::Success,
        )
        .with_details(serde_json::json!({ "maintenance_key": "removed" }));
    st.commit_audited(tx, e).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Some(0..10));
        assert_eq!(parse_range("bytes=5-5"), Some(5..6));
        assert_eq!(parse_range("bytes=9-0"), None);
        assert_eq!(parse_range("bytes=-5"), None);
        assert_eq!(parse_range("items=0-1"), None);
    }
}
