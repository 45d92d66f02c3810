//! Errors: [`ServerError`] for starting and running the server, [`ApiError`] for answers. Every
//! mapping of an internal error to an HTTP status lives here, in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use zaibei_store::{StoreError, StoreErrorKind};
use zaibei_types::api::{ErrorBody, ErrorDetail};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The settings are wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The catalogue failed.
    #[error("catalogue: {0}")]
    Database(String),
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
    /// Listening or serving failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The audit log or its anchors failed.
    #[error("audit: {0}")]
    Audit(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ServerError {
    fn from(e: sqlx::Error) -> Self {
        ServerError::Database(e.to_string())
    }
}

/// An error answer: status, stable code and message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

/// Results of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 401: no valid credentials.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
    /// 403: valid credentials without the privilege.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
    /// 409 with `code`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    /// 500: logged, and answered without details.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context} failed; the server log has details"),
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal("the catalogue", e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.kind {
            StoreErrorKind::NotFound => ApiError::not_found(format!("no object {:?}", e.name)),
            StoreErrorKind::AlreadyExists => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "object_exists",
                format!("object {:?} exists", e.name),
            ),
            StoreErrorKind::InvalidInput => ApiError::bad_request("invalid_request", e.to_string()),
            StoreErrorKind::PermissionDenied => {
                ApiError::internal("the repository storage refused access", e)
            }
            StoreErrorKind::Unavailable => {
                tracing::warn!("storage unavailable: {e}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the repository storage is temporarily unavailable",
                )
            }
            StoreErrorKind::Other => ApiError::internal("the repository storage", e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}
