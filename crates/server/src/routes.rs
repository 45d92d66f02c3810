//! The route table: every route with its method, path, declared access and schemas. The
//! router, the authorisation layer, the OpenAPI document and the tenant-isolation test matrix
//! are all generated from this one table, so no route can exist without a declared privilege.

use std::net::SocketAddr;

use axum::extract::{RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use utoipa::openapi::{RefOr, Schema};
use zaibei_audit::{AuditAction, AuditEvent, Outcome};
use zaibei_types::Privilege;

use crate::auth::{self, Caller, kind};
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::now_ms;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (health, readiness, the OpenAPI document, login, agent
    /// registration with its one-time token).
    Public,
    /// Callers holding the privilege (and, on tenant routes, of that tenant).
    Requires(Privilege),
}

/// A JSON schema of a request or answer body, with the schemas it refers to.
#[derive(Clone)]
pub struct BodySchema {
    /// The schema's name in `components.schemas`.
    pub name: String,
    /// The schema.
    pub schema: RefOr<Schema>,
    /// Schemas it refers to.
    pub refs: Vec<(String, RefOr<Schema>)>,
    /// Whether the body is a JSON array of it.
    pub array: bool,
}

impl std::fmt::Debug for BodySchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BodySchema({}{})",
            self.name,
            if self.array { "[]" } else { "" }
        )
    }
}

/// The schema of `T`.
pub fn schema<T: utoipa::ToSchema>() -> BodySchema {
    let mut refs = Vec::new();
    T::schemas(&mut refs);
    BodySchema {
        name: T::name().into_owned(),
        schema: T::schema(),
        refs,
        array: false,
    }
}

/// The schema of a JSON array of `T`.
pub fn array_of<T: utoipa::ToSchema>() -> BodySchema {
    BodySchema {
        array: true,
        ..schema::<T>()
    }
}

/// One route.
pub struct Route {
    /// Its method.
    pub method: Method,
    /// Its path, with `{param}` segments.
    pub path: &'static str,
    /// Who may use it.
    pub access: Access,
    /// What it does (OpenAPI summary).
    pub summary: &'static str,
    /// The JSON body it takes.
    pub request: Option<BodySchema>,
    /// The JSON body it answers with.
    pub response: Option<BodySchema>,
    /// The body it takes or answers is raw bytes (repository objects).
    pub binary: bool,
    handler: MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.access)
    }
}

impl Route {
    /// A route: `handler` answers `method` on `path` for callers with `access`.
    pub fn new<H, T>(
        method: Method,
        path: &'static str,
        access: Access,
        summary: &'static str,
        handler: H,
    ) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        Route {
            method,
            path,
            access,
            summary,
            request: None,
            response: None,
            binary: false,
            handler: on(filter, handler),
        }
    }

    /// Declares the JSON body the route takes.
    pub fn takes(mut self, body: BodySchema) -> Route {
        self.request = Some(body);
        self
    }

    /// Declares the JSON body the route answers with.
    pub fn returns(mut self, body: BodySchema) -> Route {
        self.response = Some(body);
        self
    }

    /// Declares a raw-bytes body.
    pub fn binary(mut self) -> Route {
        self.binary = true;
        self
    }

    /// The names of the `{param}` segments of the path.
    pub fn params(&self) -> Vec<&'static str> {
        self.path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|s| s.trim_start_matches('*'))
            .collect()
    }
}

/// The router of `routes`, each behind the authorisation layer its access declares.
pub fn router(routes: Vec<Route>, state: AppState) -> axum::Router {
    let mut router = axum::Router::new();
    let object_limit = axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes);
    for route in routes {
        // Repository objects may be large; every other body is small JSON (the server-wide
        // limit, JSON_BODY_LIMIT).
        let handler = if route.binary {
            route.handler.layer(object_limit)
        } else {
            route.handler
        };
        let handler = match route.access {
            Access::Public => handler,
            Access::Requires(privilege) => handler.route_layer(
                axum::middleware::from_fn_with_state((state.clone(), privilege), authorize),
            ),
        };
        router = router.route(route.path, handler);
    }
    router.with_state(state)
}

/// Largest JSON body accepted (every route but repository objects).
pub const JSON_BODY_LIMIT: usize = 64 << 10;

/// The client's address, put into every request by the listener.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The client address of a request, for the audit log.
pub fn peer(req: &axum::http::request::Parts) -> Option<String> {
    req.extensions
        .get::<PeerAddr>()
        .map(|p| p.0.ip().to_string())
}

/// How often a token's use is written to the audit log (and its last use to the catalogue).
const TOKEN_USE_AUDIT_MS: i64 = 3600 * 1000;

async fn authorize(
    State((state, privilege)): State<(AppState, Privilege)>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let source = req
        .extensions()
        .get::<PeerAddr>()
        .map(|p| p.0.ip().to_string());
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let tenant = param("tenant");
    let repo = param("repo");
    let target = format!("{} {}", req.method(), req.uri().path());
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(bearer) = header.and_then(auth::bearer) else {
        return ApiError::unauthorized(
            "missing_token",
            "an Authorization: Bearer token is required",
        )
        .into_response();
    };
    let caller = match auth::resolve(&state.cat, bearer).await {
        Ok(c) => c,
        Err(e) => {
            let mut event = AuditEvent::new(
                now_ms(),
                "anonymous",
                AuditAction::AccessDenied,
                &target,
                Outcome::Denied,
            )
            .with_details(serde_json::json!({ "reason": e.code }));
            if let Some(s) = &source {
                event = event.with_source(s.clone());
            }
            if let Some(t) = &tenant {
                event = event.with_tenant(t.clone());
            }
            state.audit.append_alone(&state.cat, event).await;
            return e.into_response();
        }
    };
    if let Err(e) = permitted(&caller, privilege, tenant.as_deref(), repo.as_deref()) {
        let mut event = AuditEvent::new(
            now_ms(),
            caller.actor(),
            AuditAction::AccessDenied,
            &target,
            Outcome::Denied,
        )
        .with_details(serde_json::json!({ "reason": e.code, "privilege": privilege.code() }));
        if let Some(s) = &source {
            event = event.with_source(s.clone());
        }
        if let Some(t) = tenant.as_ref().or(caller.tenant.as_ref()) {
            event = event.with_tenant(t.clone());
        }
        state.audit.append_alone(&state.cat, event).await;
        return e.into_response();
    }
    let now = now_ms();
    if caller.kind != kind::SESSION
        && caller
            .last_used_ms
            .is_none_or(|t| now - t >= TOKEN_USE_AUDIT_MS)
    {
        if let Err(e) = sqlx::query("UPDATE tokens SET last_used_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(&caller.token_id)
            .execute(&state.cat.pool)
            .await
        {
            tracing::warn!("recording the use of token {}: {e}", caller.token_id);
        }
        let mut event = AuditEvent::new(
            now,
            caller.actor(),
            AuditAction::TokenUsed,
            format!("token:{}", caller.token_id),
            Outcome::Success,
        )
        .with_details(serde_json::json!({ "kind": caller.kind, "request": target }));
        if let Some(s) = &source {
            event = event.with_source(s.clone());
        }
        if let Some(t) = &caller.tenant {
            event = event.with_tenant(t.clone());
        }
        state.audit.append_alone(&state.cat, event).await;
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Whether `caller` may use a route requiring `privilege` with these path parameters: 403
/// `forbidden`, `wrong_tenant` or `wrong_repo` when not.
pub fn permitted(
    caller: &Caller,
    privilege: Privilege,
    tenant: Option<&str>,
    repo: Option<&str>,
) -> Result<(), ApiError> {
    if !caller.holds(privilege) {
        return Err(ApiError::forbidden(
            "forbidden",
            format!("this needs the privilege {}", privilege.code()),
        ));
    }
    if let Some(tenant) = tenant
        && caller.role.is_tenant_role()
        && caller.tenant.as_deref() != Some(tenant)
    {
        return Err(ApiError::forbidden(
            "wrong_tenant",
            "the token belongs to another tenant",
        ));
    }
    if let Some(only) = &caller.repo {
        match repo {
            Some(r) if r == only => {}
            None if privilege == Privilege::SelfService => {}
            _ => {
                return Err(ApiError::forbidden(
                    "wrong_repo",
                    "the token is limited to another repository",
                ));
            }
        }
    }
    Ok(())
}
