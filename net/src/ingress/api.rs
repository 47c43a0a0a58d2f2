//! The ingress routes: each OpenAI or Ollama endpoint becomes a federation task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use triforce_core::failover::{AttemptError, ErrorCode, ExhaustedReason, TaskOutcome};
use triforce_core::json::RawJson;
use triforce_core::task::TaskRequest;

use super::body::StreamedBody;
use super::keys::KeyCheck;
use super::shape::{Api, Framing, IngressError};
use crate::exec::StreamHead;
use crate::http::body::{read_bounded, BodyLimits};
use crate::node::{Node, Submitted};

/// Task types the ingress submits.
pub const CHAT_TASK: &str = "chat";
pub const EMBEDDINGS_TASK: &str = "embeddings";

struct Ingress {
    node: Node,
    keys: KeyCheck,
    /// Task ids: this node, when its ingress started, and a counter, so ids stay unique across
    /// the federation and across restarts.
    id_prefix: String,
    next_id: AtomicU64,
}

type Shared = Arc<Ingress>;

/// One relayed endpoint: its API, task type, and the path the backend is called on.
#[derive(Clone, Copy)]
struct Endpoint {
    api: Api,
    task_type: &'static str,
    path: &'static str,
}

const fn endpoint(api: Api, task_type: &'static str, path: &'static str) -> Endpoint {
    Endpoint {
        api,
        task_type,
        path,
    }
}

/// The ingress router for `node`, checking keys against `keys`.
pub fn router(node: Node, keys: KeyCheck) -> Router {
    let settings = &node.config().settings;
    let body_max = settings.ingress.body_bytes_max;
    let id_prefix = format!("{}-{}", node.id(), node.shared.clock.unix_s());
    let ingress = Arc::new(Ingress {
        node,
        keys,
        id_prefix,
        next_id: AtomicU64::new(0),
    });
    let relayed = [
        endpoint(Api::OpenAi, CHAT_TASK, "/v1/chat/completions"),
        endpoint(Api::OpenAi, CHAT_TASK, "/v1/completions"),
        endpoint(Api::OpenAi, EMBEDDINGS_TASK, "/v1/embeddings"),
        endpoint(Api::Ollama, CHAT_TASK, "/api/chat"),
        endpoint(Api::Ollama, CHAT_TASK, "/api/generate"),
        endpoint(Api::Ollama, EMBEDDINGS_TASK, "/api/embed"),
        endpoint(Api::Ollama, EMBEDDINGS_TASK, "/api/embeddings"),
    ];
    let mut router = Router::new();
    for endpoint in relayed {
        router = router.route(
            endpoint.path,
            post(move |state, headers, body| relay_post(state, endpoint, headers, body)),
        );
    }
    router
        .route(
            "/v1/models",
            get(|state, headers| list_models(state, Api::OpenAi, headers)),
        )
        .route(
            "/api/tags",
            get(|state, headers| list_models(state, Api::Ollama, headers)),
        )
        .route("/api/version", get(version))
        .route("/ui", get(crate::dashboard::page))
        .route("/ui/state", get(dashboard_state))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn_with_state(
            BodyLimits {
                bytes_max: body_max,
            },
            read_bounded,
        ))
        .with_state(ingress)
}

/// What the ingress reads of a client's body; the rest passes through untouched.
#[derive(Deserialize)]
struct RequestFields {
    model: Option<serde_json::Value>,
}

async fn relay_post(
    State(ingress): State<Shared>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, IngressError> {
    let api = endpoint.api;
    let key = ingress.keys.authorize(api, &headers)?;
    let body = body.map_err(|rejection| {
        IngressError::new(
            api,
            rejection.status(),
            "invalid_body",
            rejection.body_text(),
        )
    })?;
    let fields: RequestFields = serde_json::from_slice(&body).map_err(|e| {
        IngressError::new(
            api,
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let model = match fields.model {
        Some(serde_json::Value::String(model)) if !model.is_empty() => model,
        _ => {
            return Err(IngressError::new(
                api,
                StatusCode::BAD_REQUEST,
                "missing_model",
                "you must provide a model parameter (a non-empty string)",
            ))
        }
    };
    if !key.allows_model(&model) {
        return Err(IngressError::new(
            api,
            StatusCode::FORBIDDEN,
            "model_not_allowed",
            format!("key {:?} may not use model {model:?}", key.name),
        ));
    }
    let body = std::str::from_utf8(&body).map_err(|_| {
        IngressError::new(
            api,
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not UTF-8",
        )
    })?;
    // The client's body goes inside the payload as written: never decoded and re-encoded.
    let payload = format!("{{\"path\":\"{}\",\"body\":{body}}}", endpoint.path);
    submit(&ingress, endpoint, &payload, Some(&model)).await
}

/// `GET /v1/models` and `/api/tags`: every model on an online node's healthy backend, once
/// each, with the nodes that serve it (`triforce.nodes`), from the nodes' capabilities.
async fn list_models(
    State(ingress): State<Shared>,
    api: Api,
    headers: HeaderMap,
) -> Result<Response, IngressError> {
    let key = ingress.keys.authorize(api, &headers)?;
    let served = ingress
        .node
        .models_served()
        .into_iter()
        .filter(|(model, _)| key.allows_model(model));
    let body = match api {
        Api::OpenAi => {
            let data: Vec<serde_json::Value> = served
                .map(|(model, nodes)| {
                    serde_json::json!({"id": model, "object": "model", "created": 0,
                    "owned_by": "triforce", "triforce": {"nodes": nodes}})
                })
                .collect();
            serde_json::json!({"object": "list", "data": data})
        }
        Api::Ollama => {
            let models: Vec<serde_json::Value> = served
                .map(|(model, nodes)| {
                    serde_json::json!({"name": model, "model": model,
                    "modified_at": "1970-01-01T00:00:00Z", "size": 0, "digest": "",
                    "triforce": {"nodes": nodes}})
                })
                .collect();
            serde_json::json!({"models": models})
        }
    };
    Ok(axum::Json(body).into_response())
}

async fn submit(
    ingress: &Ingress,
    endpoint: Endpoint,
    payload: &str,
    model: Option<&str>,
) -> Result<Response, IngressError> {
    let api = endpoint.api;
    let payload = RawJson::parse_str(payload).map_err(|e| {
        IngressError::new(api, StatusCode::BAD_REQUEST, "invalid_json", e.to_string())
    })?;
    let n = ingress.next_id.fetch_add(1, Ordering::Relaxed);
    let task = TaskRequest {
        task_id: format!("{}-{n}", ingress.id_prefix),
        task_type: endpoint.task_type.to_string(),
        payload,
        priority: 0,
    };
    let limit = Duration::from_millis(ingress.node.config().settings.ingress.first_byte_timeout_ms);
    // Past the limit the task is dropped, which cancels it wherever it runs.
    let submitted = tokio::time::timeout(limit, ingress.node.submit_streaming(task, model))
        .await
        .map_err(|_| {
            IngressError::new(
                api,
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "no answer started within {} ms (ingress.first_byte_timeout_ms)",
                    limit.as_millis()
                ),
            )
        })?;
    answer(api, endpoint.task_type, model, submitted)
}

/// The client's answer: the backend's, streamed, or an error in the API's shape.
fn answer(
    api: Api,
    task_type: &str,
    model: Option<&str>,
    submitted: Submitted,
) -> Result<Response, IngressError> {
    let Submitted { outcome, stream } = submitted;
    match outcome {
        TaskOutcome::Completed { node, result, .. } => {
            let head = StreamHead::from_json(&result);
            let response = match (head, stream) {
                (Some(head), Some(stream)) => {
                    let framing = Framing::of(&head.content_type);
                    let mut response = Response::new(Body::new(StreamedBody::new(stream, framing)));
                    *response.status_mut() =
                        StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
                    let headers = response.headers_mut();
                    if let Ok(value) = HeaderValue::from_str(&head.content_type) {
                        headers.insert(CONTENT_TYPE, value);
                    }
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    // Tells nginx and its kin in front of the ingress not to buffer either.
                    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
                    response
                }
                (Some(_), None) => {
                    return Err(IngressError::new(
                        api,
                        StatusCode::BAD_GATEWAY,
                        "answer_lost",
                        "the backend's answer went to an earlier attempt of this task",
                    ))
                }
                // A node whose executor for the type is not a relay (echo, http, command):
                // its JSON result is the answer.
                (None, _) => (
                    StatusCode::OK,
                    [(CONTENT_TYPE, "application/json")],
                    result.get().to_string(),
                )
                    .into_response(),
            };
            let mut response = response;
            if let Ok(value) = HeaderValue::from_str(node.as_str()) {
                response.headers_mut().insert("x-triforce-node", value);
            }
            Ok(response)
        }
        TaskOutcome::Failed { node, error, .. } => {
            let (status, code) = match error.code {
                ErrorCode::ResultTooLarge | ErrorCode::RequestTooLarge => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
                }
                _ => (StatusCode::BAD_GATEWAY, "backend_error"),
            };
            Err(IngressError::new(
                api,
                status,
                code,
                format!("{node}: {}", error.message),
            ))
        }
        TaskOutcome::AllNodesFailed {
            reason: ExhaustedReason::NoNodeHasModel,
            ..
        } => Err(IngressError::new(
            api,
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "the model {:?} is not available on any online node",
                model.unwrap_or_default()
            ),
        )),
        TaskOutcome::AllNodesFailed {
            reason: ExhaustedReason::BackendsDown,
            ..
        } => Err(IngressError::new(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            "backends_down",
            format!(
                "every backend with the model {:?} is down (their nodes are up); try again shortly",
                model.unwrap_or_default()
            ),
        )),
        TaskOutcome::AllNodesFailed {
            reason: ExhaustedReason::NoNodeRunsType,
            ..
        } => Err(IngressError::new(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            "no_backend_available",
            format!("no online node runs {task_type} tasks (configure an openai executor for {task_type:?})"),
        )),
        TaskOutcome::AllNodesFailed { reason, attempts } => {
            let no_executor = !attempts.is_empty()
                && attempts.iter().all(|a| {
                    matches!(&a.error, Some(AttemptError::Remote(r)) if r.code == ErrorCode::NoExecutor)
                });
            let last = attempts
                .iter()
                .rev()
                .find_map(|a| a.error.as_ref().map(|e| format!("{}: {e:?}", a.node)))
                .unwrap_or_else(|| "no node was online to try".to_string());
            let message = if no_executor {
                format!("no node runs {task_type} tasks (configure an openai executor for {task_type:?})")
            } else {
                format!("no node could serve the request ({reason:?}); last: {last}")
            };
            Err(IngressError::new(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "no_backend_available",
                message,
            ))
        }
    }
}

/// The dashboard's state behind an API key (the page sends the key from its URL fragment).
async fn dashboard_state(
    State(ingress): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, IngressError> {
    ingress.keys.authorize(Api::OpenAi, &headers)?;
    Ok(axum::Json(crate::dashboard::state_json(&ingress.node)).into_response())
}

async fn version() -> Response {
    let body = format!("{{\"version\":\"{}\"}}", env!("CARGO_PKG_VERSION"));
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

async fn not_found(uri: Uri) -> IngressError {
    let api = Api::of_path(uri.path());
    IngressError::new(
        api,
        StatusCode::NOT_FOUND,
        "unknown_endpoint",
        format!(
            "no endpoint {}; this door serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /api/chat, /api/generate, /api/embed, /api/tags, /api/version",
            uri.path()
        ),
    )
}
