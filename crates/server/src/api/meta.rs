//! Health, readiness, the OpenAPI document and the metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;
use zaibei_types::Privilege;

use crate::error::{ApiError, ApiResult};
use crate::routes::{Access, Route};
use crate::state::AppState;

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    use Access::*;
    vec![
        Route::new(
            Method::GET,
            "/api/v1/health",
            Public,
            "Liveness: the process answers",
            health,
        ),
        Route::new(
            Method::GET,
            "/api/v1/ready",
            Public,
            "Readiness: the catalogue and the storage answer",
            ready,
        ),
        Route::new(
            Method::GET,
            "/api/v1/openapi.json",
            Public,
            "This API's OpenAPI document",
            openapi,
        ),
        Route::new(
            Method::GET,
            "/metrics",
            Requires(Privilege::ConfigRead),
            "Prometheus metrics",
            metrics,
        ),
    ]
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(State(st): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let catalogue = st.cat.ping().await;
    let anchors = st.audit.anchors().list().await.is_ok();
    let status = if catalogue && anchors {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            serde_json::json!({ "catalogue": catalogue, "audit_anchor": anchors, "replica": st.replica }),
        ),
    )
}

async fn openapi() -> ApiResult<impl IntoResponse> {
    let doc = crate::openapi::document(&crate::api::routes());
    let text = doc
        .to_json()
        .map_err(|e| ApiError::internal("rendering the OpenAPI document", e))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text))
}

async fn metrics(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    let text = st.metrics.render(&st.cat).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
