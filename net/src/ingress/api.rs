//! The ingress routes: each OpenAI or Ollama endpoint becomes a federation task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use triforce_core::affinity::AffinityKey;
use triforce_core::config::ApiKey;
use triforce_core::door::{conversation_key, read_door_fields, FieldError};
use triforce_core::federation::same_model;
use triforce_core::json::RawJson;
use triforce_core::relay::{RelayHead, ANTHROPIC_MESSAGES_PATH, RESPONSES_PATH};
use triforce_core::task::TaskRequest;
use triforce_core::translate::StreamBreak;
use triforce_core::usage::asking_for_usage;

use super::keys::KeyCheck;
use super::limits::KeyLimits;
use super::shape::{Dialect, DoorCode, IngressError};
use super::sharing;
use crate::http::body::{read_bounded, BodyLimits};
use crate::node::Node;
use crate::usage::{Account, UsageMeter};

pub use triforce_core::relay::{CHAT_TASK, EMBEDDINGS_TASK};

struct Ingress {
    node: Node,
    keys: Arc<KeyCheck>,
    /// Counts what each key used; `None` when `ingress.usage_db` is empty.
    usage: Option<Arc<UsageMeter>>,
    /// Each key's requests in flight and tokens this minute.
    limits: Arc<KeyLimits>,
    /// Request (and task) ids: this node, when its ingress started, and a counter, so ids stay
    /// unique across the federation and across restarts.
    id_prefix: String,
    next_id: AtomicU64,
}

type Door = Arc<Ingress>;

/// The id of one request at the door: its task's id, the `X-Request-Id` of its answer, and what
/// the node's log names when it keeps details from the client.
#[derive(Clone, Debug)]
pub(super) struct RequestId(pub String);

/// One relayed endpoint: its API, task type, and the path the backend is called on.
#[derive(Clone, Copy)]
struct Endpoint {
    api: Dialect,
    task_type: &'static str,
    path: &'static str,
}

const fn endpoint(api: Dialect, task_type: &'static str, path: &'static str) -> Endpoint {
    Endpoint {
        api,
        task_type,
        path,
    }
}

/// Paths anyone may read without a key: the version probe and the dashboard's page (its state
/// needs a key with the dashboard permission).
const PUBLIC_PATHS: [&str; 2] = ["/api/version", "/ui"];

/// The ingress router for `node`, checking keys against `keys`, counting each key's use in
/// `usage`. Layers, outermost first: the request id; the key, checked on the headers before a
/// byte of the body is read; the body, read within the limit and the request's deadline.
pub fn router(node: Node, keys: KeyCheck, usage: Option<Arc<UsageMeter>>) -> Router {
    let keys = Arc::new(keys);
    // A reload replaces the keys from the same file.
    let _ = node.shared.door_keys.set(Arc::new(keys.clone()));
    if let Some(usage) = &usage {
        let _ = node.shared.usage.set(usage.clone());
    }
    let settings = node.config().settings.clone();
    let body_max = settings.ingress.body_bytes_max(&settings.limits);
    let id_prefix = format!("{}-{}", node.id(), node.shared.clock.unix_s());
    let ingress = Arc::new(Ingress {
        node,
        keys,
        usage,
        limits: Arc::default(),
        id_prefix,
        next_id: AtomicU64::new(0),
    });
    let relayed = [
        endpoint(Dialect::OpenAi, CHAT_TASK, "/v1/chat/completions"),
        endpoint(Dialect::OpenAi, CHAT_TASK, "/v1/completions"),
        endpoint(Dialect::OpenAi, CHAT_TASK, RESPONSES_PATH),
        endpoint(Dialect::Anthropic, CHAT_TASK, ANTHROPIC_MESSAGES_PATH),
        endpoint(Dialect::OpenAi, EMBEDDINGS_TASK, "/v1/embeddings"),
        endpoint(Dialect::Ollama, CHAT_TASK, "/api/chat"),
        endpoint(Dialect::Ollama, CHAT_TASK, "/api/generate"),
        endpoint(Dialect::Ollama, EMBEDDINGS_TASK, "/api/embed"),
        endpoint(Dialect::Ollama, EMBEDDINGS_TASK, "/api/embeddings"),
    ];
    let mut router = Router::new();
    for endpoint in relayed {
        router = router.route(
            endpoint.path,
            post(move |state, key, id, headers, body| {
                relay_post(state, endpoint, key, id, headers, body)
            }),
        );
    }
    router
        .route(
            "/v1/models",
            get(|state, key| list_models(state, Dialect::OpenAi, key)),
        )
        .route(
            "/api/tags",
            get(|state, key| list_models(state, Dialect::Ollama, key)),
        )
        .route("/api/ps", get(loaded_models))
        .route("/api/show", post(show_model))
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
        .layer(axum::middleware::from_fn_with_state(
            ingress.clone(),
            require_key,
        ))
        .layer(axum::middleware::from_fn_with_state(
            ingress.clone(),
            tag_request,
        ))
        .with_state(ingress)
}

/// Middleware: gives the request its id and its answer the `X-Request-Id` header.
async fn tag_request(State(ingress): State<Door>, mut request: Request, next: Next) -> Response {
    let n = ingress.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("{}-{n}", ingress.id_prefix);
    let header = HeaderValue::from_str(&id).ok();
    request.extensions_mut().insert(RequestId(id));
    let mut response = next.run(request).await;
    if let Some(header) = header {
        response.headers_mut().insert("x-request-id", header);
    }
    response
}

/// Middleware: the API key, from the headers alone, before any byte of the body is read; the
/// key goes on to the handler. A refused request with a body gets `Connection: close`, so the
/// body it announced is never read.
async fn require_key(State(ingress): State<Door>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if PUBLIC_PATHS.contains(&path) {
        return next.run(request).await;
    }
    let api = Dialect::of_path(path);
    match ingress.keys.authorize(api, request.headers()) {
        Ok(key) => {
            request.extensions_mut().insert(key);
            next.run(request).await
        }
        Err(refusal) => {
            let has_body = request.headers().contains_key(CONTENT_LENGTH)
                || request.headers().contains_key(TRANSFER_ENCODING);
            let mut response = refusal.into_response();
            if has_body {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

async fn relay_post(
    State(ingress): State<Door>,
    endpoint: Endpoint,
    Extension(key): Extension<ApiKey>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, IngressError> {
    let api = endpoint.api;
    let body = body.map_err(|rejection| {
        IngressError::new(
            api,
            rejection.status(),
            DoorCode::InvalidBody,
            rejection.body_text(),
        )
    })?;
    let fields = read_door_fields(&body).map_err(|e| {
        let code = match e {
            FieldError::NotJson(_) | FieldError::NotObject => DoorCode::InvalidJson,
            _ => DoorCode::AmbiguousField,
        };
        IngressError::new(api, StatusCode::BAD_REQUEST, code, e.to_string())
    })?;
    let model = allowed_model(api, &key, fields.model.clone())?;
    let chat = endpoint.task_type == CHAT_TASK;
    let body = sharing::capped(api, endpoint.path, chat, &key, &fields, &body)?;
    // An OpenAI stream whose client said nothing about what it reports is asked for the
    // backend's token counts, so the key's use is counted; the client does not see them. (A
    // Responses stream is translated on the relaying node, which asks for them itself.)
    let ask_for_usage = ingress.usage.is_some()
        && api == Dialect::OpenAi
        && chat
        && endpoint.path != RESPONSES_PATH
        && fields.stream == Some(true)
        && !fields.stream_options;
    let asked = ask_for_usage.then(|| asking_for_usage(&body)).flatten();
    let body = asked.as_deref().unwrap_or(&body);
    // Checked once (valid JSON, not too deep), then carried as written: never re-encoded.
    let body = RawJson::parse(body).map_err(|e| {
        IngressError::new(
            api,
            StatusCode::BAD_REQUEST,
            DoorCode::InvalidJson,
            e.to_string(),
        )
    })?;
    let unix_s = ingress.node.shared.clock.unix_s();
    let admitted = sharing::admit(&ingress.limits, ingress.usage.as_ref(), api, &key, unix_s)?;
    let affinity = if chat {
        conversation(&headers, body.as_bytes())
    } else {
        None
    };
    // The key's name and weight give the request its fair share of a busy backend's queue on
    // the node that relays it.
    let relay = RelayHead {
        // Ollama streams unless told not to; OpenAI only when told to.
        stream: match api {
            Dialect::Ollama => chat && fields.stream != Some(false),
            Dialect::OpenAi | Dialect::Anthropic => fields.stream == Some(true),
        },
        key: Some(key.name.clone()),
        weight: key.weight.max(1),
        ..RelayHead::new(endpoint.path, Some(model.clone()))
    };
    let account = ingress.usage.as_ref().map(|meter| Account {
        meter: meter.clone(),
        clock: ingress.node.shared.clock.clone(),
        key: key.name.clone(),
        model: model.clone(),
    });
    let answered = submit(&ingress, endpoint, relay, body, affinity, id).await;
    sharing::metered(answered, account, admitted, asked.is_some())
}

/// The model a request names, if it names one and `key` may use it.
fn allowed_model(
    api: Dialect,
    key: &ApiKey,
    model: Option<String>,
) -> Result<String, IngressError> {
    let Some(model) = model.filter(|m| !m.is_empty()) else {
        return Err(IngressError::new(
            api,
            StatusCode::BAD_REQUEST,
            DoorCode::MissingModel,
            "you must provide a model parameter (a non-empty string)",
        ));
    };
    if !key.allows_model(&model) {
        return Err(IngressError::new(
            api,
            StatusCode::FORBIDDEN,
            DoorCode::ModelNotAllowed,
            format!("key {:?} may not use model {model:?}", key.name),
        ));
    }
    Ok(model)
}

/// Headers that name a conversation: Open WebUI's chat id, or a client's own session id.
const SESSION_HEADERS: [&str; 2] = ["x-openwebui-chat-id", "x-session-id"];

/// The conversation a chat request belongs to: a session header, else what its body names
/// (see [`triforce_core::door::conversation_key`]).
fn conversation(headers: &HeaderMap, body: &[u8]) -> Option<AffinityKey> {
    SESSION_HEADERS
        .iter()
        .find_map(|name| headers.get(*name).filter(|v| !v.is_empty()))
        .map(|session| AffinityKey::of(&[b"session:", session.as_bytes()].concat()))
        .or_else(|| conversation_key(body))
}

/// `GET /v1/models` and `/api/tags`: every model on an online node's healthy backend, once
/// each, with the nodes that serve it (`triforce.nodes`), from the nodes' capabilities.
async fn list_models(
    State(ingress): State<Door>,
    api: Dialect,
    Extension(key): Extension<ApiKey>,
) -> Result<Response, IngressError> {
    let served = ingress
        .node
        .models_served()
        .into_iter()
        .filter(|(model, _)| key.allows_model(model));
    let body = match api {
        Dialect::OpenAi | Dialect::Anthropic => {
            let data: Vec<serde_json::Value> = served
                .map(|(model, nodes)| {
                    serde_json::json!({"id": model, "object": "model", "created": 0,
                    "owned_by": "triforce", "triforce": {"nodes": nodes}})
                })
                .collect();
            serde_json::json!({"object": "list", "data": data})
        }
        Dialect::Ollama => {
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

/// `GET /api/ps`: the models loaded on online nodes' healthy backends, merged over the
/// federation, with the nodes that have each loaded. The federation does not know when a
/// backend will unload a model, so `expires_at` is far in the future.
async fn loaded_models(State(ingress): State<Door>, Extension(key): Extension<ApiKey>) -> Response {
    let models: Vec<serde_json::Value> = ingress
        .node
        .models_loaded()
        .into_iter()
        .filter(|(model, _)| key.allows_model(model))
        .map(|(model, nodes)| {
            serde_json::json!({"name": model, "model": model, "size": 0, "digest": "",
                "details": {}, "expires_at": "2999-01-01T00:00:00Z", "size_vram": 0,
                "triforce": {"nodes": nodes}})
        })
        .collect();
    axum::Json(serde_json::json!({"models": models})).into_response()
}

/// What `/api/show` reads: Ollama's `model`, or its older `name`.
#[derive(serde::Deserialize)]
struct ShowRequest {
    model: Option<String>,
    name: Option<String>,
}

/// `POST /api/show`: what the federation knows of a model it serves (`name` and
/// `name:latest` alike). Backends that speak only OpenAI have no such endpoint, so the door
/// answers it itself, from the nodes' capabilities: the nodes that serve the model, and the
/// fields Ollama's clients read, empty where nothing is known.
async fn show_model(
    State(ingress): State<Door>,
    Extension(key): Extension<ApiKey>,
    body: Bytes,
) -> Result<Response, IngressError> {
    let api = Dialect::Ollama;
    let request: ShowRequest = serde_json::from_slice(&body).map_err(|e| {
        IngressError::new(
            api,
            StatusCode::BAD_REQUEST,
            DoorCode::InvalidJson,
            e.to_string(),
        )
    })?;
    let model = allowed_model(api, &key, request.model.or(request.name))?;
    let served = ingress
        .node
        .models_served()
        .into_iter()
        .find(|(served, _)| same_model(served, &model));
    let Some((_, nodes)) = served else {
        return Err(IngressError::new(
            api,
            StatusCode::NOT_FOUND,
            DoorCode::ModelNotFound,
            format!("model '{model}' not found"),
        ));
    };
    let body = serde_json::json!({"modelfile": "", "parameters": "", "template": "",
        "details": {"parent_model": "", "format": "", "family": "", "families": null,
            "parameter_size": "", "quantization_level": ""},
        "model_info": {}, "capabilities": ["completion"],
        "modified_at": "1970-01-01T00:00:00Z", "triforce": {"nodes": nodes}});
    Ok(axum::Json(body).into_response())
}

async fn submit(
    ingress: &Ingress,
    endpoint: Endpoint,
    relay: RelayHead,
    body: RawJson,
    affinity: Option<AffinityKey>,
    id: RequestId,
) -> Result<Response, IngressError> {
    let api = endpoint.api;
    let RequestId(task_id) = id;
    let model = relay.model.clone();
    let task = TaskRequest {
        task_id: task_id.clone(),
        task_type: endpoint.task_type.to_string(),
        payload: body,
        priority: 0,
        relay: Some(relay),
    };
    let limit = Duration::from_millis(ingress.node.config().settings.ingress.first_byte_timeout_ms);
    // Past the limit the task is dropped, which cancels it wherever it runs. A whole answer
    // (one with a length) is read within the limit too: its first byte goes out with its last.
    let answered = async {
        let submitted = ingress.node.submit_streaming(task, affinity).await;
        super::answer::answer(
            api,
            StreamBreak::for_client(api, endpoint.path),
            endpoint.task_type,
            model.as_deref(),
            submitted,
            &task_id,
        )
        .await
    };
    tokio::time::timeout(limit, answered).await.map_err(|_| {
        IngressError::new(
            api,
            StatusCode::GATEWAY_TIMEOUT,
            DoorCode::Timeout,
            format!(
                "no answer started within {} ms (ingress.first_byte_timeout_ms)",
                limit.as_millis()
            ),
        )
    })?
}

/// The dashboard's state, for a key with the dashboard permission only: it shows every node,
/// model and task of the federation, which a key limited to some models must not see.
async fn dashboard_state(
    State(ingress): State<Door>,
    Extension(key): Extension<ApiKey>,
) -> Result<Response, IngressError> {
    if !key.dashboard {
        return Err(IngressError::new(
            Dialect::OpenAi,
            StatusCode::FORBIDDEN,
            DoorCode::DashboardNotAllowed,
            format!(
                "key {:?} may not read the dashboard (make one with `triforce apikey add --dashboard`)",
                key.name
            ),
        ));
    }
    Ok(axum::Json(crate::dashboard::state_json(&ingress.node)).into_response())
}

async fn version() -> Response {
    let body = format!("{{\"version\":\"{}\"}}", env!("CARGO_PKG_VERSION"));
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

async fn not_found(uri: Uri) -> IngressError {
    let api = Dialect::of_path(uri.path());
    IngressError::new(
        api,
        StatusCode::NOT_FOUND,
        DoorCode::UnknownEndpoint,
        format!(
            "no endpoint {}; this door serves /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages, /v1/embeddings, /v1/models, /api/chat, /api/generate, /api/embed, /api/tags, /api/ps, /api/show, /api/version",
            uri.path()
        ),
    )
}
