//! The routes and their handlers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::header::ACCEPT;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::{Json, Router};
use triforce_core::auth::{
    Authenticated, HeaderValue, Rejection, SignedRequest, HEADER_NODE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
};
use triforce_core::failover::{AttemptError, ErrorCode, ExhaustedReason, RemoteError, TaskOutcome};
use triforce_core::json::RawJson;
use triforce_core::node::NodeId;
use triforce_core::task::TaskRequest;

use super::body::{read_bounded, BodyLimits};
use super::long_tasks::{LongTask, LongTasks, StartRefusal};
use super::{ApiError, ClientAddr};
use crate::exec::{AnswerStream, StreamHead};
use crate::ingress::{Framing, StreamedBody};
use crate::metrics::ReasonLabel;
use crate::node::{health_json, outcome_body, status_json, Node, Submitted};

/// The API's router for `node`.
pub fn router(node: Node) -> Router {
    let body_max = node.config().settings.limits.body_bytes_max;
    let long_tasks = Arc::new(LongTasks::new(
        node.config().settings.limits.ledger_entries_max,
    ));
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
        .route("/metrics", get(metrics))
        .route("/ui", get(crate::dashboard::page))
        .route("/ui/state", get(dashboard_state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn_with_state(limits, read_bounded))
        .layer(Extension(long_tasks))
        .with_state(node)
}

/// Every check but the replay cache, outside any lock (the MAC runs over the whole body).
fn authenticate(
    node: &Node,
    headers: &HeaderMap,
    body: &[u8],
    from: SocketAddr,
) -> Result<Authenticated, ApiError> {
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
    node.shared
        .authenticator
        .authenticate(&request, now)
        .map_err(|rejection| refused(node, from, &rejection))
}

/// Remembers an authenticated request that changes something; a second one with the same
/// signature inside the window is a replay. The only step under a lock, and a short one.
fn remember(node: &Node, request: &Authenticated, from: SocketAddr) -> Result<(), ApiError> {
    let now = node.shared.clock.unix_s();
    let remembered = node
        .shared
        .replay
        .lock()
        .expect("no code panics while holding the replay lock")
        .remember(request, now);
    remembered.map_err(|rejection| refused(node, from, &rejection))
}

/// Counts a refusal, logs it within the per-reason budget, and turns it into its answer.
fn refused(node: &Node, from: SocketAddr, rejection: &Rejection) -> ApiError {
    node.metrics()
        .auth_rejections
        .get_or_create(&ReasonLabel {
            reason: rejection.code().into(),
        })
        .inc();
    node.shared.refusal(
        rejection.code(),
        || tracing::info!(%from, reason = rejection.code(), "refused a request: {rejection}"),
    );
    ApiError::from(rejection)
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
    let body = body_or_error(body)?;
    authenticate(node, headers, &body, from)?;
    Ok(Json(render(node)).into_response())
}

async fn task(
    State(node): State<Node>,
    Extension(long_tasks): Extension<Arc<LongTasks>>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let request = authenticate(&node, &headers, &body, from)?;
    // Parsed and checked before the signature is remembered: a signer sending garbage (validly
    // signed) gets 400 for each and spends none of the replay cache.
    let task = TaskRequest::parse(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_task", e.to_string()))?;
    remember(&node, &request, from)?;
    if prefers_async(&headers) {
        return start_long_task(node, long_tasks, task);
    }
    Ok(answer_task(&node, task, wants_stream(&headers)).await)
}

/// Runs `task` and answers as the seed's API does: the outcome, or a streamed answer for a
/// client that asked for one.
async fn answer_task(node: &Node, task: TaskRequest, stream_wanted: bool) -> Response {
    let task_id = task.task_id.clone();
    let Submitted { outcome, stream } = node.submit_streaming(task, None).await;
    let outcome = match (outcome, stream) {
        (
            TaskOutcome::Completed {
                node: ran_on,
                result,
                attempts,
            },
            Some(stream),
        ) => {
            let head = StreamHead::from_json(&result).unwrap_or(StreamHead {
                status: 200,
                content_type: "application/json".into(),
            });
            if stream_wanted {
                // The backend's answer as it comes, in its own framing.
                return streamed_answer(&head, stream, &ran_on);
            }
            let body_max = node.config().settings.limits.body_bytes_max;
            let result = whole_answer(&head, stream, body_max).await;
            match result {
                Ok(result) => TaskOutcome::Completed {
                    node: ran_on,
                    result,
                    attempts,
                },
                Err(message) => TaskOutcome::Failed {
                    node: ran_on,
                    error: RemoteError::new(ErrorCode::ExecutorFailed, message),
                    attempts,
                },
            }
        }
        (outcome, _) => outcome,
    };
    (
        answer_status(&outcome),
        [(CONTENT_TYPE, "application/json")],
        outcome_body(&task_id, &outcome),
    )
        .into_response()
}

/// Whether the client asked to be answered at once and to fetch the result later
/// (`Prefer: respond-async`, RFC 7240).
fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == "respond-async"))
}

/// 202 with the task's URL; the task runs on in its own tokio task, its answer kept for
/// `GET /v1/federation/task/{id}`.
fn start_long_task(
    node: Node,
    long_tasks: Arc<LongTasks>,
    task: TaskRequest,
) -> Result<Response, ApiError> {
    let task_id = task.task_id.clone();
    let location = format!("/v1/federation/task/{task_id}");
    let runner = {
        let (node, long_tasks, task_id) = (node.clone(), long_tasks.clone(), task_id.clone());
        async move {
            let response = answer_task(&node, task, false).await;
            let status = response.status().as_u16();
            let limit = node.config().settings.limits.body_bytes_max + 65_536;
            let body = axum::body::to_bytes(response.into_body(), limit)
                .await
                .unwrap_or_default();
            long_tasks.finish(&task_id, status, body);
        }
    };
    // Registered before it runs, so a quick task cannot finish before it is known.
    let (start, go) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        if go.await.is_ok() {
            runner.await;
        }
    });
    let started = long_tasks.start(&task_id, || handle.abort_handle());
    let refusal = match started {
        Ok(()) => {
            let _ = start.send(());
            let body =
                serde_json::json!({"task_id": task_id, "status": "accepted", "location": location});
            let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
            let headers = response.headers_mut();
            headers.insert(
                "preference-applied",
                axum::http::HeaderValue::from_static("respond-async"),
            );
            if let Ok(value) = axum::http::HeaderValue::from_str(&location) {
                headers.insert(axum::http::header::LOCATION, value);
            }
            return Ok(response);
        }
        Err(refusal) => refusal,
    };
    drop(start);
    Err(match refusal {
        StartRefusal::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "task_id_conflict",
            format!("a long task {task_id:?} is already known here"),
        ),
        StartRefusal::Full => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "long_tasks_full",
            "every kept long task is still running (limits.ledger_entries_max)",
        ),
    })
}

/// `GET /v1/federation/task/{id}`: 202 `running`, the task's answer once it ended, or 200
/// `cancelled`. Signed and read-only, like status.
async fn long_task_state(
    State(node): State<Node>,
    Extension(long_tasks): Extension<Arc<LongTasks>>,
    Path(task_id): Path<String>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    authenticate(&node, &headers, &body, from)?;
    long_task_answer(&task_id, long_tasks.get(&task_id))
}

/// `DELETE /v1/federation/task/{id}` with body `{"task_id": id}` (so that two cancellations
/// are two different signed messages): cancels a running task. Signed and replay-checked.
async fn long_task_cancel(
    State(node): State<Node>,
    Extension(long_tasks): Extension<Arc<LongTasks>>,
    Path(task_id): Path<String>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let request = authenticate(&node, &headers, &body, from)?;
    let named: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["task_id"].as_str().map(str::to_string));
    if named.as_deref() != Some(task_id.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_task",
            "a cancellation's body must be {\"task_id\": \"<the id in the path>\"}",
        ));
    }
    remember(&node, &request, from)?;
    long_task_answer(&task_id, long_tasks.cancel(&task_id))
}

fn long_task_answer(task_id: &str, state: Option<LongTask>) -> Result<Response, ApiError> {
    let state = state.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_task",
            format!("no long task {task_id:?} here (never started, or its answer was dropped)"),
        )
    })?;
    Ok(match state {
        LongTask::Running => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"task_id": task_id, "status": "running"})),
        )
            .into_response(),
        LongTask::Cancelled => {
            Json(serde_json::json!({"task_id": task_id, "status": "cancelled"})).into_response()
        }
        LongTask::Done { status, body } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            [(CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
    })
}

/// Whether the client asked for the answer as a stream (`Accept: text/event-stream`).
fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

fn streamed_answer(head: &StreamHead, stream: AnswerStream, ran_on: &NodeId) -> Response {
    let framing = Framing::of(&head.content_type);
    let mut response = Response::new(Body::new(StreamedBody::new(stream, framing)));
    *response.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    if let Ok(value) = axum::http::HeaderValue::from_str(&head.content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    headers.insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(ran_on.as_str()) {
        headers.insert("x-triforce-node", value);
    }
    response
}

/// A streamed answer collected for a client that did not ask for a stream: `{status,
/// content_type, body}`, the body as JSON when it is JSON, else as text.
async fn whole_answer(
    head: &StreamHead,
    stream: AnswerStream,
    body_max: usize,
) -> Result<RawJson, String> {
    let body = stream.collect(body_max).await?;
    let body = match RawJson::parse(&body) {
        Ok(json) => json,
        Err(_) => RawJson::from(serde_json::Value::String(
            String::from_utf8_lossy(&body).into_owned(),
        )),
    };
    let text = format!(
        "{{\"status\":{},\"content_type\":{},\"body\":{}}}",
        head.status,
        serde_json::to_string(&head.content_type).expect("a string serializes"),
        body.get()
    );
    RawJson::parse_str(&text).map_err(|e| e.to_string())
}

/// The HTTP status of a task's answer. A conflict and a task type that no node runs are the
/// client's to fix (4xx); a failure of the work itself is the backend's (502); no node able
/// to take it now is the federation's (503).
fn answer_status(outcome: &TaskOutcome) -> StatusCode {
    match outcome {
        TaskOutcome::Completed { .. } => StatusCode::OK,
        TaskOutcome::Failed { error, .. } if error.code == ErrorCode::TaskIdConflict => {
            StatusCode::CONFLICT
        }
        TaskOutcome::Failed { error, .. } if error.code == ErrorCode::RequestTooLarge => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        TaskOutcome::Failed { .. } => StatusCode::BAD_GATEWAY,
        TaskOutcome::AllNodesFailed {
            reason: ExhaustedReason::NoNodeRunsType,
            ..
        } => StatusCode::UNPROCESSABLE_ENTITY,
        TaskOutcome::AllNodesFailed {
            reason: ExhaustedReason::NoNodeHasModel,
            ..
        } => StatusCode::NOT_FOUND,
        TaskOutcome::AllNodesFailed { attempts, .. }
            if !attempts.is_empty()
                && attempts.iter().all(|a| {
                    a.error.as_ref().is_some_and(
                        |e| matches!(e, AttemptError::Remote(r) if r.code == ErrorCode::NoExecutor),
                    )
                }) =>
        {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        TaskOutcome::AllNodesFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
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
