//! `triforce backend --llm`: the OpenAI and Ollama API shapes, answering with made-up tokens at
//! a set pace, for tests and the bench (no model can be downloaded here).
//!
//! What a test can ask for in the last message (or prompt):
//! - `[hold]`: the stream stops after its first token until `POST /control/release`, which
//!   proves nothing between the backend and the client buffers the answer;
//! - `[break]`: the connection is cut after the first token (a backend dying mid-stream); for
//!   an unstreamed OpenAI chat, halfway through a body whose full length the head announced;
//! - `[fail]`: answered 500 in the API's error shape, as a server answers a request it chokes
//!   on (the server itself is fine: its next request is served);
//! - `[tool]` (OpenAI chat): the answer is a call of the request's first tool with the
//!   arguments `{"city": "Oslo"}`, whole or streamed in pieces, finish reason `tool_calls`.
//!
//! `GET /control/stats` counts requests, streams that ran to their end, and streams whose
//! reader went away before the end (cancellations that reached the backend).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::watch;

#[derive(clap::Args, Clone)]
pub struct LlmArgs {
    /// Tokens in every answer.
    #[arg(long, default_value_t = 8)]
    tokens: u32,
    /// Pause between two streamed tokens.
    #[arg(long, default_value_t = 10)]
    gap_ms: u64,
    /// Models served (comma-separated).
    #[arg(long, default_value = "tiny-llm,tiny-embed", value_delimiter = ',')]
    models: Vec<String>,
    /// Length of every embedding vector.
    #[arg(long, default_value_t = 8)]
    embedding_dim: usize,
    /// Models reported as loaded in memory by `/api/ps` (comma-separated).
    #[arg(long, default_value = "tiny-llm", value_delimiter = ',')]
    loaded: Vec<String>,
    /// Report no model as loaded (a cold backend).
    #[arg(long, conflicts_with = "loaded")]
    nothing_loaded: bool,
    /// Answer every generation or embedding request with this status (a broken backend whose
    /// model list still answers).
    #[arg(long, value_name = "STATUS")]
    fail_status: Option<u16>,
    /// Write into each streamed token the wall-clock time it was sent (`tok3@<µs since the
    /// epoch>`), so a client on this machine can tell how long each chunk took to reach it
    /// (`triforce bench --mode stream` reports it).
    #[arg(long)]
    stamp: bool,
    /// Which APIs it serves: `both`, or only `openai` (as llama.cpp's server and vLLM do) or
    /// only `ollama`; the other's paths answer 404.
    #[arg(long, value_enum, default_value_t = ServedApi::Both)]
    api: ServedApi,
}

/// The APIs the stand-in serves.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServedApi {
    Both,
    Openai,
    Ollama,
}

impl LlmArgs {
    /// `tokens` tokens `gap_ms` apart, the default models.
    pub fn paced(tokens: u32, gap_ms: u64) -> Self {
        LlmArgs {
            tokens,
            gap_ms,
            models: vec!["tiny-llm".into(), "tiny-embed".into()],
            embedding_dim: 8,
            loaded: vec!["tiny-llm".into()],
            nothing_loaded: false,
            fail_status: None,
            stamp: false,
            api: ServedApi::Both,
        }
    }
}

struct Backend {
    name: String,
    args: LlmArgs,
    /// Bumped by `/control/release`; held streams wait for a change.
    release: watch::Sender<u64>,
    requests: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
}

type StandIn = Arc<Backend>;

pub fn router(name: String, args: LlmArgs) -> Router {
    let backend = Arc::new(Backend {
        name,
        args,
        release: watch::channel(0).0,
        requests: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
    });
    let api = backend.args.api;
    let mut router = Router::new();
    if api != ServedApi::Ollama {
        router = router
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/completions", post(openai_completion))
            .route("/v1/embeddings", post(openai_embeddings))
            .route("/v1/models", get(openai_models));
    }
    if api != ServedApi::Openai {
        router = router
            .route("/api/chat", post(ollama_chat))
            .route("/api/generate", post(ollama_generate))
            .route("/api/embed", post(ollama_embed))
            .route("/api/embeddings", post(ollama_embeddings_legacy))
            .route("/api/tags", get(ollama_tags))
            .route("/api/ps", get(ollama_ps))
            .route(
                "/api/version",
                get(|| async { Json(json!({"version": "0.0.0-triforce"})) }),
            );
    }
    router
        .route("/control/release", post(release))
        .route("/control/stats", get(stats))
        .with_state(backend)
}

/// Why a request is refused, answered in its API's shape.
struct Refusal {
    openai: bool,
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = if self.openai {
            json!({"error": {"message": self.message, "type": "invalid_request_error", "param": null, "code": null}})
        } else {
            json!({"error": self.message})
        };
        (self.status, Json(body)).into_response()
    }
}

/// A request's JSON body and its model, if this backend serves it.
fn request(backend: &Backend, body: &Bytes, openai: bool) -> Result<(Value, String), Refusal> {
    backend.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = backend.args.fail_status {
        return Err(Refusal {
            openai,
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: "the backend is broken (--fail-status)".into(),
        });
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| Refusal {
        openai,
        status: StatusCode::BAD_REQUEST,
        message: format!("invalid JSON: {e}"),
    })?;
    if prompt(&request).contains("[fail]") {
        return Err(Refusal {
            openai,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "the request made the backend fail ([fail])".into(),
        });
    }
    let model = request["model"].as_str().unwrap_or_default().to_string();
    // As Ollama does: a name without a tag is `name:latest`.
    let bare = model.strip_suffix(":latest").unwrap_or(&model);
    if !backend.args.models.iter().any(|m| m == bare) {
        let message = if openai {
            format!("The model `{model}` does not exist")
        } else {
            format!("model '{model}' not found")
        };
        return Err(Refusal {
            openai,
            status: StatusCode::NOT_FOUND,
            message,
        });
    }
    Ok((request, model))
}

/// The text a test put in the request, where its `[hold]` and `[break]` would be.
fn prompt(request: &Value) -> String {
    if let Some(messages) = request["messages"].as_array() {
        return messages
            .last()
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
    }
    request["prompt"].as_str().unwrap_or_default().to_string()
}

/// The prompt's length in tokens, as this stand-in counts them: the words of every message (or
/// of the prompt, or of the inputs to embed). What it reports in `usage` and Ollama's counts,
/// so a test can check what the door counted against what it sent.
fn prompt_tokens(request: &Value) -> u64 {
    let words = |text: &str| text.split_whitespace().count() as u64;
    if let Some(messages) = request["messages"].as_array() {
        return messages
            .iter()
            .map(|m| words(m["content"].as_str().unwrap_or_default()))
            .sum();
    }
    if let Some(prompt) = request["prompt"].as_str() {
        return words(prompt);
    }
    inputs(&request["input"]).iter().map(|t| words(t)).sum()
}

/// Tokens in the answer to `request`: the backend's `--tokens`, or fewer where the request
/// asks for fewer (`max_tokens`, `max_completion_tokens`, Ollama's `options.num_predict`).
fn answer_tokens(backend: &StandIn, request: &Value) -> u32 {
    [
        &request["max_tokens"],
        &request["max_completion_tokens"],
        &request["options"]["num_predict"],
    ]
    .into_iter()
    .filter_map(Value::as_u64)
    .fold(backend.args.tokens, |tokens, asked| {
        tokens.min(u32::try_from(asked).unwrap_or(u32::MAX))
    })
}

/// Whether an OpenAI streaming request asked for a last event with its token counts.
fn wants_stream_usage(request: &Value) -> bool {
    request["stream_options"]["include_usage"].as_bool() == Some(true)
}

/// OpenAI's `usage` for a request of `request`'s prompt and `completion` tokens.
fn openai_usage(request: &Value, completion: u32) -> Value {
    let prompt = prompt_tokens(request);
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + u64::from(completion)})
}

/// The event an OpenAI stream ends with when its client asked for usage (no choices).
fn usage_event(request: &Value, id: &str, object: &str, model: &str, completion: u32) -> String {
    if !wants_stream_usage(request) {
        return String::new();
    }
    let event = json!({"id": id, "object": object, "created": unix_s(), "model": model,
        "choices": [], "usage": openai_usage(request, completion)});
    format!("data: {event}\n\n")
}

fn token(i: u32) -> String {
    format!("tok{i} ")
}

/// Token `i` with the time it is sent, in microseconds since the epoch.
fn stamped_token(i: u32) -> String {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("tok{i}@{now_us} ")
}

fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How a streamed answer looks on the wire.
struct Shape {
    content_type: &'static str,
    /// The wire bytes of one token, given its text.
    token: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// The bytes after the last token.
    end: String,
}

/// How long a `[break]` stream waits after its first token before the cut.
const FIRST_TOKEN_BEFORE_CUT: Duration = Duration::from_millis(100);

/// Streams the tokens in `shape` (as many as `request` may have), honouring `[hold]` and
/// `[break]`, counting how it ended.
fn stream(backend: &StandIn, request: &Value, shape: Shape) -> Response {
    let prompt = prompt(request);
    let hold = prompt.contains("[hold]");
    let cut = prompt.contains("[break]");
    let mut released = backend.release.subscribe();
    released.mark_unchanged();
    let gap = Duration::from_millis(backend.args.gap_ms);
    let tokens = answer_tokens(backend, request);
    let stamp = backend.args.stamp;
    let content_type = shape.content_type;
    let ending = Ending {
        backend: backend.clone(),
        finished: false,
    };
    let state = (0u32, ending, released, shape);
    let body = futures_util::stream::unfold(
        state,
        move |(i, mut ending, mut released, shape)| async move {
            if i > tokens {
                return None;
            }
            if i == 1 && cut {
                // The reader sees the connection cut mid-answer. The first token goes out
                // first: a cut right behind it resets the connection, and a reset discards
                // what the reader had not read yet, so it would see no answer at all.
                tokio::time::sleep(FIRST_TOKEN_BEFORE_CUT).await;
                let error = std::io::Error::other("the backend cut the stream");
                return Some((Err(error), (tokens + 1, ending, released, shape)));
            }
            if i == 1 && hold {
                let _ = released.changed().await;
            } else if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            let bytes = if i == tokens {
                ending.finished = true;
                shape.end.clone()
            } else if stamp {
                (shape.token)(&stamped_token(i))
            } else {
                (shape.token)(&token(i))
            };
            Some((Ok(Bytes::from(bytes)), (i + 1, ending, released, shape)))
        },
    );
    Response::builder()
        .header(CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .expect("a valid response")
}

/// The whole answer's text, after the same pace a stream would take (or, for `[hold]`, after
/// `/control/release`). A caller that leaves first counts as cancelled.
async fn whole_text(backend: &StandIn, request: &Value) -> String {
    let mut ending = Ending {
        backend: backend.clone(),
        finished: false,
    };
    if prompt(request).contains("[hold]") {
        let mut released = backend.release.subscribe();
        released.mark_unchanged();
        let _ = released.changed().await;
    }
    let tokens = answer_tokens(backend, request);
    let pace = Duration::from_millis(backend.args.gap_ms) * tokens.saturating_sub(1);
    if !pace.is_zero() {
        tokio::time::sleep(pace).await;
    }
    ending.finished = true;
    (0..tokens).map(token).collect()
}

fn embedding(backend: &Backend, text: &str) -> Vec<f64> {
    // Made up but stable: the same text always gets the same vector.
    let seed = text
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (0..backend.args.embedding_dim)
        .map(|i| ((seed.wrapping_add(i as u64 * 7919)) % 1000) as f64 / 1000.0)
        .collect()
}

fn inputs(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

async fn openai_chat(State(backend): State<StandIn>, body: Bytes) -> Response {
    let (request, model) = match request(&backend, &body, true) {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal.into_response(),
    };
    let id = format!(
        "chatcmpl-{}-{}",
        backend.name,
        backend.requests.load(Ordering::SeqCst)
    );
    let created = unix_s();
    if prompt(&request).contains("[tool]") {
        return tool_call(&request, &id, &model, created);
    }
    if request["stream"].as_bool() == Some(true) {
        let chunk = {
            let (id, model) = (id.clone(), model.clone());
            move |text: &str| {
                let delta = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}]});
                format!("data: {delta}\n\n")
            }
        };
        let last = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        let usage = usage_event(
            &request,
            &id,
            "chat.completion.chunk",
            &model,
            answer_tokens(&backend, &request),
        );
        let shape = Shape {
            content_type: "text/event-stream",
            token: Box::new(chunk),
            end: format!("data: {last}\n\n{usage}data: [DONE]\n\n"),
        };
        return stream(&backend, &request, shape);
    }
    let text = whole_text(&backend, &request).await;
    let tokens = answer_tokens(&backend, &request);
    let answer = Json(json!({"id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": openai_usage(&request, tokens)}))
    .into_response();
    if prompt(&request).contains("[break]") {
        return cut_whole(answer).await;
    }
    answer
}

/// `[tool]`: a call of the request's first tool, whole, or streamed as a tool model streams
/// one (the id and name first, then the arguments in two pieces).
fn tool_call(request: &Value, id: &str, model: &str, created: u64) -> Response {
    let name = request["tools"][0]["function"]["name"]
        .as_str()
        .unwrap_or("lookup");
    let call_id = format!("call_{id}");
    let usage = openai_usage(request, 5);
    if request["stream"].as_bool() != Some(true) {
        let call = json!({"id": call_id, "type": "function",
            "function": {"name": name, "arguments": "{\"city\": \"Oslo\"}"}});
        return Json(json!({"id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]},
                "finish_reason": "tool_calls"}], "usage": usage}))
        .into_response();
    }
    let event = |delta: Value, finish: Value| {
        let chunk = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let mut body = event(
        json!({"role": "assistant", "tool_calls": [{"index": 0, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": ""}}]}),
        Value::Null,
    );
    for piece in ["{\"city\": ", "\"Oslo\"}"] {
        body.push_str(&event(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
        ));
    }
    body.push_str(&event(json!({}), json!("tool_calls")));
    body.push_str(&usage_event(request, id, "chat.completion.chunk", model, 5));
    body.push_str("data: [DONE]\n\n");
    ([(CONTENT_TYPE, "text/event-stream")], body).into_response()
}

/// `[break]` for a whole answer: the head promises the answer's full length, and the connection
/// is cut halfway through its body (a backend dying mid-answer).
async fn cut_whole(answer: Response) -> Response {
    let (parts, body) = answer.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("a JSON answer is in memory");
    let half = bytes.slice(..bytes.len() / 2);
    // The cut waits a moment, so the head and the first half are on the wire before it.
    let cut = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::other("the backend cut the answer"))
    });
    let pieces =
        futures_util::StreamExt::chain(futures_util::stream::once(async { Ok(half) }), cut);
    let mut response = Response::from_parts(parts, Body::from_stream(pieces));
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, bytes.len().into());
    response
}

async fn openai_completion(State(backend): State<StandIn>, body: Bytes) -> Response {
    let (request, model) = match request(&backend, &body, true) {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal.into_response(),
    };
    let id = format!(
        "cmpl-{}-{}",
        backend.name,
        backend.requests.load(Ordering::SeqCst)
    );
    let created = unix_s();
    if prompt(&request).contains("[tool]") {
        return tool_call(&request, &id, &model, created);
    }
    if request["stream"].as_bool() == Some(true) {
        let chunk = {
            let (id, model) = (id.clone(), model.clone());
            move |text: &str| {
                let piece = json!({"id": id, "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": null}]});
                format!("data: {piece}\n\n")
            }
        };
        let usage = usage_event(
            &request,
            &id,
            "text_completion",
            &model,
            answer_tokens(&backend, &request),
        );
        let shape = Shape {
            content_type: "text/event-stream",
            token: Box::new(chunk),
            end: format!("{usage}data: [DONE]\n\n"),
        };
        return stream(&backend, &request, shape);
    }
    let text = whole_text(&backend, &request).await;
    Json(
        json!({"id": id, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
        "usage": openai_usage(&request, answer_tokens(&backend, &request))}),
    )
    .into_response()
}

async fn openai_embeddings(State(backend): State<StandIn>, body: Bytes) -> Response {
    let (request, model) = match request(&backend, &body, true) {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal.into_response(),
    };
    let data: Vec<Value> = inputs(&request["input"])
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": embedding(&backend, text)}))
        .collect();
    backend.completed.fetch_add(1, Ordering::SeqCst);
    Json(
        json!({"object": "list", "data": data, "model": model, "usage": openai_usage(&request, 0)}),
    )
    .into_response()
}

async fn openai_models(State(backend): State<StandIn>) -> Json<Value> {
    let data: Vec<Value> = backend
        .args
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": backend.name}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

const CREATED_AT: &str = "2026-01-01T00:00:00Z";

async fn ollama_chat(State(backend): State<StandIn>, body: Bytes) -> Response {
    ollama_text(backend, body, "message").await
}

async fn ollama_generate(State(backend): State<StandIn>, body: Bytes) -> Response {
    ollama_text(backend, body, "response").await
}

/// `/api/chat` (`field` = `message`) and `/api/generate` (`response`): NDJSON unless
/// `"stream": false`.
async fn ollama_text(backend: StandIn, body: Bytes, field: &'static str) -> Response {
    let (request, model) = match request(&backend, &body, false) {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal.into_response(),
    };
    let piece = move |text: &str| match field {
        "message" => json!({"role": "assistant", "content": text}),
        _ => json!(text),
    };
    let tokens = answer_tokens(&backend, &request);
    let prompt_eval_count = prompt_tokens(&request);
    let last = |text: &str| {
        let mut done = json!({"model": model, "created_at": CREATED_AT, "done": true, "done_reason": "stop",
            "total_duration": 1, "load_duration": 0, "prompt_eval_count": prompt_eval_count, "eval_count": tokens, "eval_duration": 1});
        done[field] = piece(text);
        done
    };
    if request["stream"].as_bool() != Some(false) {
        let chunk = {
            let model = model.clone();
            move |text: &str| {
                let mut line = json!({"model": model, "created_at": CREATED_AT, "done": false});
                line[field] = piece(text);
                format!("{line}\n")
            }
        };
        let shape = Shape {
            content_type: "application/x-ndjson",
            token: Box::new(chunk),
            end: format!("{}\n", last("")),
        };
        return stream(&backend, &request, shape);
    }
    let text = whole_text(&backend, &request).await;
    Json(last(&text)).into_response()
}

async fn ollama_embed(State(backend): State<StandIn>, body: Bytes) -> Response {
    let (request, model) = match request(&backend, &body, false) {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal.into_response(),
    };
    let embeddings: Vec<Vec<f64>> = inputs(&request["input"])
        .iter()
        .map(|t| embedding(&backend, t))
        .collect();
    backend.completed.fetch_add(1, Ordering::SeqCst);
    let prompt_eval_count = prompt_tokens(&request);
    Json(json!({"model": model, "embeddings": embeddings, "total_duration": 1, "prompt_eval_count": prompt_eval_count})).into_response()
}

async fn ollama_embeddings_legacy(State(backend): State<StandIn>, body: Bytes) -> Response {
    let (request, _) = match request(&backend, &body, false) {
        Ok(parsed) => parsed,
        Err(refusal) => return refusal.into_response(),
    };
    let text = request["prompt"].as_str().unwrap_or_default();
    backend.completed.fetch_add(1, Ordering::SeqCst);
    Json(json!({"embedding": embedding(&backend, text)})).into_response()
}

fn ollama_model(name: &str) -> Value {
    json!({"name": name, "model": name, "modified_at": CREATED_AT, "size": 1, "digest": "0".repeat(64),
        "details": {"parent_model": "", "format": "gguf", "family": "tiny", "families": ["tiny"],
                    "parameter_size": "1M", "quantization_level": "Q8_0"}})
}

async fn ollama_tags(State(backend): State<StandIn>) -> Json<Value> {
    let models: Vec<Value> = backend
        .args
        .models
        .iter()
        .map(|m| ollama_model(m))
        .collect();
    Json(json!({"models": models}))
}

async fn ollama_ps(State(backend): State<StandIn>) -> Json<Value> {
    let models: Vec<Value> = backend
        .args
        .loaded
        .iter()
        .filter(|m| !backend.args.nothing_loaded && backend.args.models.contains(m))
        .map(|m| ollama_model(m))
        .collect();
    Json(json!({"models": models}))
}

async fn release(State(backend): State<StandIn>) -> StatusCode {
    backend.release.send_modify(|n| *n += 1);
    StatusCode::NO_CONTENT
}

async fn stats(State(backend): State<StandIn>) -> Json<Value> {
    Json(json!({
        "requests": backend.requests.load(Ordering::SeqCst),
        "completed": backend.completed.load(Ordering::SeqCst),
        "cancelled": backend.cancelled.load(Ordering::SeqCst),
    }))
}

/// Counts a stream as completed or cancelled when it is dropped.
struct Ending {
    backend: StandIn,
    finished: bool,
}

impl Drop for Ending {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.backend.completed
        } else {
            &self.backend.cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}
