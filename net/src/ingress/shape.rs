//! Each API's own error shape: OpenAI's `{"error": {"message", "type", "code"}}`, Ollama's
//! `{"error": "message"}`, for answers and for the event that ends a broken stream.

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use triforce_core::relay::Dialect;

pub use super::error_code::DoorCode;

/// An error answered to a client, in its API's shape.
#[derive(Debug)]
pub struct IngressError {
    pub api: Dialect,
    pub status: StatusCode,
    /// OpenAI's `code`: stable, for programs.
    pub code: DoorCode,
    pub message: String,
    /// Seconds after which the same request may succeed (`Retry-After`), for a limit.
    pub retry_after: Option<u64>,
}

impl IngressError {
    pub fn new(
        api: Dialect,
        status: StatusCode,
        code: DoorCode,
        message: impl Into<String>,
    ) -> Self {
        IngressError {
            api,
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, saying when to try again.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

/// OpenAI's `type` for a status.
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// Anthropic's `error.type` for a status.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

impl IntoResponse for IngressError {
    fn into_response(self) -> Response {
        let body = match self.api {
            Dialect::OpenAi => {
                json!({"error": {"message": self.message, "type": openai_type(self.status),
                                            "param": null, "code": self.code.as_str()}})
            }
            Dialect::Ollama => json!({"error": self.message}),
            Dialect::Anthropic => json!({"type": "error",
                "error": {"type": anthropic_type(self.status), "message": self.message}}),
        };
        let mut response = (
            self.status,
            [(CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&body).expect("an error serializes"),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// How a streamed answer is framed (what the usage reader reads by, too).
pub use triforce_core::usage::Framing;
