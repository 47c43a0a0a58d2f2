//! `POST /v1/federation/usage`: what each key used at this node's door, for `triforce usage
//! --all`. Signed like every federation request; a read, so not replay-checked. The body picks
//! the rows: `{"key": NAME, "since": "YYYY-MM-DD"}`, both optional.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::signed::signed;
use super::{ApiError, ClientAddr};
use crate::node::Node;
use crate::usage::UsageFilter;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

pub(super) async fn usage(
    State(node): State<Node>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (body, _) = signed(&node, &headers, body, from)?;
    let query: UsageQuery = if body.is_empty() {
        UsageQuery::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.to_string()))?
    };
    if let Some(since) = &query.since {
        if !is_day(since) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_since",
                format!("since {since:?} is not a day as YYYY-MM-DD"),
            ));
        }
    }
    let Some(meter) = node.shared.usage.get() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_usage",
            "this node keeps no usage (it runs no door, or [ingress] usage_db is empty)",
        ));
    };
    let filter = UsageFilter {
        key: query.key,
        since: query.since,
    };
    let meter = meter.clone();
    let rows = tokio::task::spawn_blocking(move || meter.rows(&filter))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "usage_failed",
                e.to_string(),
            )
        })?
        .map_err(|e| {
            tracing::warn!(error = %e, "usage rows could not be read");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "usage_failed",
                "the usage database could not be read (the node's log says why)",
            )
        })?;
    let answer = serde_json::json!({"node": node.id().as_str(), "rows": rows});
    Ok(axum::Json(answer).into_response())
}

/// Whether `text` is a day as `YYYY-MM-DD` (digits where digits go; the store compares days
/// as text, which orders them only in this form).
pub fn is_day(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_checked_by_shape() {
        assert!(super::is_day("2026-12-07"));
        assert!(!super::is_day("2026-1-7"));
        assert!(!super::is_day("2026/12/07"));
        assert!(!super::is_day("' OR 1=1 --"));
    }
}
