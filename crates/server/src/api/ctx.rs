//! What a handler knows about its request: the caller (put there by the authorisation layer)
//! and the client's address, with a helper to build audit events.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use zaibei_audit::{AuditAction, AuditEvent, Outcome};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::peer;
use crate::time::now_ms;

/// An authenticated request.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Who calls.
    pub caller: Caller,
    /// From where.
    pub source: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let caller =
            parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
                ApiError::unauthorized("missing_token", "authentication required")
            })?;
        Ok(Ctx {
            caller,
            source: peer(parts),
        })
    }
}

impl Ctx {
    /// An audit event by this caller.
    pub fn event(
        &self,
        action: AuditAction,
        tenant: Option<&str>,
        target: impl Into<String>,
        outcome: Outcome,
    ) -> AuditEvent {
        event(
            self.caller.actor(),
            self.source.as_deref(),
            action,
            tenant,
            target,
            outcome,
        )
    }
}

/// An audit event.
pub fn event(
    actor: impl Into<String>,
    source: Option<&str>,
    action: AuditAction,
    tenant: Option<&str>,
    target: impl Into<String>,
    outcome: Outcome,
) -> AuditEvent {
    let mut e = AuditEvent::new(now_ms(), actor, action, target, outcome);
    if let Some(t) = tenant {
        e = e.with_tenant(t);
    }
    if let Some(s) = source {
        e = e.with_source(s);
    }
    e
}

/// The client address of an unauthenticated request.
#[derive(Debug, Clone)]
pub struct Source(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Source(peer(parts)))
    }
}
