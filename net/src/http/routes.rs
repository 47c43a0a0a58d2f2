//! The routes and their handlers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::{Json, Router};
use triforce_core::task::TaskRequest;

use super::body::{read_bounded, BodyLimits};
use super::long_tasks::{
    long_task_cancel, long_task_state, prefers_async, start_long_task, LongTasks,
};
use super::signed::{authenticate, body_or_error, remember, signed};
use super::task_answer::{answer_task, wants_stream};
use super::{ApiError, ClientAddr};
use crate::node::{health_json, status_json, Node};

/// The API's router for `node`, its long tasks kept in `long_tasks`.
pub fn router(node: Node, long_tasks: Arc<LongTasks>) -> Router {
    let body_max = node.config().settings.limits.body_bytes_max;
    let limits = BodyLimits {
        bytes_max: body_max,
    };
    Router::new()
        .route("/v1/federation/health", post(health))
        .route("/v1/federation/task", post(task))
        .route(
            "/v1/federation/task/{task_id}",
            get(long_task_state).delete(long_task_cancel),
        )
        .route("/v1/federation/status", get(status))
        .route("/v1/federation/reload", post(super::control::reload))
        .route("/v1/federation/drain", post(super::control::drain))
        .route("/v1/federation/undrain", post(super::control::undrain))
        .route("/v1/federation/usage", post(super::usage::usage))
        .route(
            "/metrics",
            get(metrics).route_layer(from_fn_with_state(node.clone(), own_host_only)),
        )
        .route(
            "/ui",
            get(crate::dashboard::page)
                .route_layer(from_fn_with_state(node.clone(), own_host_only)),
        )
        .route(
            "/ui/state",
            get(dashboard_state).route_layer(from_fn_with_state(node.clone(), own_host_only)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn_with_state(limits, read_bounded))
        .layer(Extension(long_tasks))
        .with_state(node)
}

/// The unsigned pages (metrics, the dashboard) answer only a `Host` that is this node's own
/// address, `ip:port` as in `federation_nodes.json`: a web page that a browser on an allowed
/// host loads from another name, then rebinds that name to this node's address (DNS
/// rebinding), sends its own name and is refused.
async fn own_host_only(
    State(node): State<Node>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if host_is_own_address(&node, host) {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "wrong_host",
        "this page answers only requests for the node's own address (ip:port) in the Host header",
    )
    .into_response()
}

fn host_is_own_address(node: &Node, host: &str) -> bool {
    let config = node.config();
    config
        .federation
        .get(config.me.as_str())
        .is_some_and(|(_, spec)| host == SocketAddr::new(spec.ip, spec.port).to_string())
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

/// A signed request with no side effects: authenticate, then answer `render(node)`. Health and
/// status change nothing, and a GET's empty body makes two polls in one second byte-identical,
/// so only requests that change something (tasks) go through the replay cache.
fn read_only(
    node: &Node,
    from: SocketAddr,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    render: fn(&Node) -> serde_json::Value,
) -> Result<Response, ApiError> {
    signed(node, headers, body, from)?;
    Ok(Json(render(node)).into_response())
}

/// The router's task route. A node's connections reach [`run_task`] through
/// [`super::front`] without the router; this handler keeps the router whole on its own.
async fn task(
    State(node): State<Node>,
    Extension(long_tasks): Extension<Arc<LongTasks>>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    run_task(&node, &long_tasks, from, &headers, body).await
}

/// `POST /v1/federation/task` with its body read: authenticate, parse, remember, run. Called by
/// the router's handler above and by the direct path ([`super::front`]).
pub(super) async fn run_task(
    node: &Node,
    long_tasks: &Arc<LongTasks>,
    from: SocketAddr,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = authenticate(node, headers, &body, from)?;
    // Parsed and checked before the signature is remembered: a signer sending garbage (validly
    // signed) gets 400 for each and spends none of the replay cache.
    let task = TaskRequest::parse(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_task", e.to_string()))?;
    remember(node, &request, from)?;
    if prefers_async(headers) {
        return start_long_task(node.clone(), long_tasks.clone(), task);
    }
    Ok(answer_task(node, task, wants_stream(headers)).await)
}

async fn metrics(State(node): State<Node>) -> Response {
    let (running, queued) = {
        let load = node.shared.runner.load();
        (load.in_flight, load.queued)
    };
    node.metrics().tasks_running.set(i64::from(running));
    node.metrics().queue_depth.set(i64::from(queued));
    for (task_type, up, probe_time) in node.shared.runner.backends().health() {
        let label = crate::metrics::BackendLabel { task_type };
        node.metrics()
            .backend_up
            .get_or_create(&label)
            .set(i64::from(up));
        node.metrics()
            .backend_probe_seconds
            .get_or_create(&label)
            .set(probe_time.as_secs_f64());
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics().render(),
    )
        .into_response()
}

/// The dashboard's state: unsigned, like `/metrics` (only node addresses and
/// `allowed_clients` get this far).
async fn dashboard_state(State(node): State<Node>) -> Response {
    Json(crate::dashboard::state_json(&node)).into_response()
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
        "health and task take POST, status and task/{id} take GET, task/{id} takes DELETE",
    )
}
