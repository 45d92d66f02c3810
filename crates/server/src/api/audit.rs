//! The audit administrator's view of the audit log: query, export (JSON Lines), the anchored
//! checkpoints and the key that signs them.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use sqlx::Row;
use zaibei_audit::{AuditAction, AuditRecord, Checkpoint, Outcome};
use zaibei_types::Privilege;

use super::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::routes::{Access, Route};
use crate::state::AppState;

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    use Access::Requires;
    vec![
        Route::new(
            Method::GET,
            "/api/v1/audit",
            Requires(Privilege::AuditRead),
            "Query the audit log (newest first)",
            query,
        ),
        Route::new(
            Method::GET,
            "/api/v1/audit/export",
            Requires(Privilege::AuditExport),
            "Export the whole audit log as JSON Lines, in sequence order",
            export,
        ),
        Route::new(
            Method::GET,
            "/api/v1/audit/checkpoints",
            Requires(Privilege::AuditExport),
            "The signed checkpoints anchored outside the catalogue",
            checkpoints,
        ),
        Route::new(
            Method::GET,
            "/api/v1/audit/key",
            Requires(Privilege::AuditExport),
            "The SM2 public key (PEM) that signs checkpoints",
            key,
        ),
    ]
}

/// Filters of an audit query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    since_ms: Option<i64>,
    #[serde(default)]
    until_ms: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

fn decode(row: &sqlx::any::AnyRow) -> ApiResult<AuditRecord> {
    let text: String = row.try_get("record")?;
    serde_json::from_str(&text).map_err(|e| ApiError::internal("reading an audit record", e))
}

async fn query(
    State(st): State<AppState>,
    ctx: Ctx,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    if let Some(a) = &q.action
        && AuditAction::from_code(a).is_none()
    {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("no audit action {a:?}"),
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = sqlx::query(
        "SELECT record FROM audit_log WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) \
         AND ($3 IS NULL OR tenant = $3) AND ($4 IS NULL OR time_ms >= $4) AND ($5 IS NULL OR time_ms <= $5) \
         ORDER BY seq DESC LIMIT $6",
    )
    .bind(q.actor.clone())
    .bind(q.action.clone())
    .bind(q.tenant.clone())
    .bind(q.since_ms)
    .bind(q.until_ms)
    .bind(limit)
    .fetch_all(&st.cat.pool)
    .await?;
    let records = rows.iter().map(decode).collect::<ApiResult<Vec<_>>>()?;
    let mut e = ctx.event(AuditAction::AuditQueried, None, "audit", Outcome::Success);
    e.details = serde_json::json!({ "actor": q.actor, "action": q.action, "tenant": q.tenant, "answered": records.len() });
    st.audit.append_alone(&st.cat, e).await;
    Ok(Json(records))
}

async fn export(State(st): State<AppState>, ctx: Ctx) -> ApiResult<impl IntoResponse> {
    // Exports are read in pages so a long log never sits in one query's result.
    let mut out = Vec::new();
    let mut after = 0i64;
    loop {
        let rows =
            sqlx::query("SELECT seq, record FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 5000")
                .bind(after)
                .fetch_all(&st.cat.pool)
                .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            after = row.try_get("seq")?;
            let text: String = row.try_get("record")?;
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
    }
    let e = ctx.event(AuditAction::AuditExported, None, "audit", Outcome::Success);
    st.audit.append_alone(&st.cat, e).await;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out))
}

async fn checkpoints(State(st): State<AppState>) -> ApiResult<Json<Vec<Checkpoint>>> {
    let set = st
        .audit
        .anchors()
        .load_all()
        .await
        .map_err(|e| ApiError::internal("reading audit anchors", e))?;
    Ok(Json(set.checkpoints))
}

async fn key(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    let pem = st
        .audit
        .signer()
        .public_key_pem()
        .map_err(|e| ApiError::internal("exporting the audit key", e))?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem))
}
