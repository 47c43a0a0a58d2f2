//! JSON errors with fitting status codes.

use axum::http::header::RETRY_AFTER;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use triforce_core::auth::Rejection;

/// An error answer: status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Seconds after which the client may try again (`Retry-After`).
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }
}

impl From<&Rejection> for ApiError {
    fn from(rejection: &Rejection) -> Self {
        let status = match rejection {
            Rejection::MissingHeader(_)
            | Rejection::DuplicateHeader(_)
            | Rejection::MalformedTimestamp
            | Rejection::MalformedSignature
            | Rejection::MalformedNode => StatusCode::BAD_REQUEST,
            Rejection::IpNotAllowed { .. } => StatusCode::FORBIDDEN,
            Rejection::ReplayCacheFull => StatusCode::TOO_MANY_REQUESTS,
            Rejection::UnknownNode(_)
            | Rejection::Expired { .. }
            | Rejection::FromFuture { .. }
            | Rejection::BadSignature
            | Rejection::Replay => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, rejection.code(), rejection.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(RETRY_AFTER, seconds.into());
        }
        response
    }
}
