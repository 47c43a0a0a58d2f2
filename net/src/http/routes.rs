//! The routes and their handlers.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::timeout::RequestBodyTimeoutLayer;
use triforce_core::auth::{
    HeaderValue, SignedRequest, Verified, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use triforce_core::failover::TaskOutcome;
use triforce_core::task::TaskRequest;

use super::{ApiError, ClientAddr};
use crate::metrics::ReasonLabel;
use crate::node::{health_json, outcome_body, status_json, Node};

/// The API's router for `node`.
pub fn router(node: Node) -> Router {
    let body_max = node.config().settings.limits.body_bytes_max;
    let read_timeout =
        std::time::Duration::from_millis(node.config().settings.limits.request_read_timeout_ms);
    Router::new()
        .route("/v1/federation/health", post(health))
        .route("/v1/federation/task", post(task))
        .route("/v1/federation/status", get(status))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(RequestBodyTimeoutLayer::new(read_timeout))
        .with_state(node)
}

/// Whether a request may be repeated inside the window. Health and status have no side
/// effects, and a GET's empty body makes two polls in one second byte-identical, so only
/// requests that change something (tasks) go through the replay cache.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    ReadOnly,
    Changes,
}

fn authenticate(
    node: &Node,
    headers: &HeaderMap,
    body: &[u8],
    from: SocketAddr,
    effect: Effect,
) -> Result<Verified, ApiError> {
    let value =
        |name: &str| HeaderValue::from_values(headers.get_all(name).iter().map(|v| v.as_bytes()));
    let request = SignedRequest {
        node: value(HEADER_NODE),
        timestamp: value(HEADER_TIMESTAMP),
        signature: value(HEADER_SIGNATURE),
        body,
        source: from.ip(),
    };
    let now = node.shared.clock.unix_s();
    let result = match effect {
        Effect::Changes => node.shared.machines().verifier.verify(&request, now),
        Effect::ReadOnly => node
            .shared
            .machines()
            .verifier
            .authenticate(&request, now)
            .map(|(node, timestamp, _)| Verified { node, timestamp }),
    };
    result.map_err(|rejection| {
        node.metrics()
            .auth_rejections
            .get_or_create(&ReasonLabel {
                reason: rejection.code().into(),
            })
            .inc();
        tracing::info!(%from, reason = rejection.code(), "refused a request: {rejection}");
        ApiError::from(&rejection)
    })
}

fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(status, code, rejection.body_text())
    })
}

async fn health(
    State(node): State<Node>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    read_only(&node, from, &headers, body, health_json)
}

async fn status(
    State(node): State<Node>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    read_only(&node, from, &headers, body, status_json)
}

/// A signed request with no side effects: authenticate, then answer `render(node)`.
fn read_only(
    node: &Node,
    from: SocketAddr,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    render: fn(&Node) -> serde_json::Value,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    authenticate(node, headers, &body, from, Effect::ReadOnly)?;
    Ok(Json(render(node)).into_response())
}

async fn task(
    State(node): State<Node>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    authenticate(&node, &headers, &body, from, Effect::Changes)?;
    let task = TaskRequest::parse(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_task", e.to_string()))?;
    let task_id = task.task_id.clone();
    let outcome = node.submit(task).await;
    let status = match &outcome {
        TaskOutcome::Completed { .. } => StatusCode::OK,
        TaskOutcome::Failed { .. } => StatusCode::BAD_GATEWAY,
        TaskOutcome::AllNodesFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    Ok((
        status,
        [(CONTENT_TYPE, "application/json")],
        outcome_body(&task_id, &outcome),
    )
        .into_response())
}

async fn metrics(State(node): State<Node>) -> Response {
    let (running, queued) = {
        let load = node.shared.runner.load();
        (load.in_flight, load.queued)
    };
    node.metrics().tasks_running.set(i64::from(running));
    node.metrics().queue_depth.set(i64::from(queued));
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics().render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /v1/federation/{health,task,status}",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "health and task take POST, status takes GET",
    )
}
