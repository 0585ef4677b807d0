//! API errors: a status and a JSON body `{"message": ..., "field": ...}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use mall_events::StoreError;
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub message: String,
    /// The offending field's path, for validation errors (`signals[3].product_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), field: None }
    }

    /// A 400 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into(), field: Some(field.into()) }
    }

    /// The same error, with a status other than 400.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        r.json(self)
    }
}

/// The catalog's refusals: something unknown named in a body 400 (the edge answers 404 when the
/// path names it), a contradiction 409, not a record at all 422.
impl From<mall_actors::catalog::CatalogError> for ApiError {
    fn from(e: mall_actors::catalog::CatalogError) -> Self {
        use mall_actors::catalog::CatalogError::*;
        let status = match e {
            Unknown { .. } => StatusCode::BAD_REQUEST,
            Conflict { .. } => StatusCode::CONFLICT,
            NotARecord { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self { status, message: e.reason().to_string(), field: Some(e.field().to_string()) }
    }
}

impl From<mall_events::records::RecordError> for ApiError {
    fn from(e: mall_events::records::RecordError) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: e.message, field: e.field }
    }
}

/// Store refusals become 4xx; store failures become 503 (logged, not detailed to the client).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::InvalidInput { field, reason } => ApiError::invalid(field.clone(), reason.clone()),
            StoreError::EmptyBatch => ApiError::invalid("signals", e.to_string()),
            // A catalog write is one event: the body is what is too large.
            StoreError::EventTooLarge { .. } => {
                ApiError { field: Some("body".into()), ..ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()) }
            }
            StoreError::BatchTooLarge { .. } => ApiError {
                field: Some("signals".into()),
                ..ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            },
            StoreError::WrongExpectedVersion { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            StoreError::IdConflict { .. } => {
                ApiError { field: Some("id".into()), ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()) }
            }
            StoreError::Fenced { .. } => ApiError::unavailable(format!("{e}; another node owns it now: retry")),
            _ => {
                tracing::error!(error = %e, "event store failure");
                ApiError::unavailable("the event log is unavailable; nothing of this request was acknowledged")
            }
        }
    }
}

/// The task queue's failures: a store failure as any other; one it could not encode is the server's.
impl From<mall_actors::autonomous::scheduler::CoreError> for ApiError {
    fn from(e: mall_actors::autonomous::scheduler::CoreError) -> Self {
        match e {
            mall_actors::autonomous::scheduler::CoreError::Store(e) => ApiError::from(e),
            other => ApiError::unavailable(other.to_string()),
        }
    }
}
