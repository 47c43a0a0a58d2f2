//! Backend hosts: what a hub's `http` executor calls, each on a turmoil host of its own
//! (`<node>-llm`), so a backend can crash, hang or come back while its node runs on.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::StatusCode;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use triforce_core::node::NodeId;
use triforce_net::exec::{Dial, Dialing, Stream};

use crate::backend_health::STALL;
use crate::backend_stream::{self, StreamFraming, StreamPlan};
use crate::prompt_cache::{first_token_time, Message, PromptCache};
use crate::record::{sim_now, SharedLog};

/// The port every backend host listens on.
pub const BACKEND_PORT: u16 = 8000;

/// The name of `node`'s backend host.
pub fn backend_host(node: &str) -> String {
    format!("{node}-llm")
}

/// Serves the backend until its host crashes. `POST /` (the `http` executor's call) sleeps the
/// payload's `ms`, then answers `{"slept_ms": ms, "backend": HOST}`. It also speaks enough of
/// Ollama's API for an `openai` executor: `GET /api/tags` and `/api/ps` list its models (the
/// first one loaded), and `POST /v1/chat/completions` for a model it serves sleeps the body's
/// `ms` and answers `{"backend", "model", "slept_ms"}`; for one it does not, 404, as Ollama does.
/// A chat with `messages` first processes its prompt through the host's [`PromptCache`] (lost
/// when the host crashes, as a restarted server's is), and says how long that took
/// (`first_token_ms`, `uncached_tokens`). A chat with `"stream": true` and a `stream_id` is
/// streamed instead ([`backend_stream`]): OpenAI's events on `/v1/chat/completions`, Ollama's
/// lines on `/api/chat`.
pub async fn serve_backend(host: String, node: NodeId, log: SharedLog) -> turmoil::Result {
    let any = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), BACKEND_PORT);
    let listener = turmoil::net::TcpListener::bind(any).await?;
    let prompts = Arc::new(Mutex::new(PromptCache::default()));
    loop {
        let (stream, _) = listener.accept().await?;
        let backend = Backend {
            host: host.clone(),
            node: node.clone(),
            log: log.clone(),
            prompts: prompts.clone(),
        };
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| backend.clone().answer(request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A backend's answer: whole, or streamed chunk by chunk.
type AnswerBody = BoxBody<Bytes, Infallible>;

fn whole(answer: Value) -> AnswerBody {
    Full::new(Bytes::from(answer.to_string())).boxed()
}

#[derive(Clone)]
struct Backend {
    host: String,
    node: NodeId,
    log: SharedLog,
    prompts: Arc<Mutex<PromptCache>>,
}

impl Backend {
    async fn answer(self, request: Request<Incoming>) -> Result<Response<AnswerBody>, Infallible> {
        let path = request.uri().path().to_string();
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
        self.stall_if_asked(&path).await;
        let answer = match path.as_str() {
            "/api/tags" => json!({ "models": self.models_named() }),
            "/api/ps" => json!({ "models": self.models_named().get(..1) }),
            "/v1/chat/completions" | "/api/chat" => return Ok(self.chat(&path, &payload).await),
            _ => {
                let ms = payload["ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                json!({ "slept_ms": ms, "backend": self.host })
            }
        };
        Ok(Response::new(whole(answer)))
    }

    /// A chat: 404 for a model it does not serve; a stream when asked for one (OpenAI's events
    /// on `/v1`, Ollama's lines on `/api/chat`); otherwise the whole answer after the prompt's
    /// processing and the body's `ms`.
    async fn chat(&self, path: &str, payload: &Value) -> Response<AnswerBody> {
        let ms = payload["ms"].as_u64().unwrap_or(0);
        let model = payload["model"].as_str().unwrap_or_default();
        let task_id = payload["task_id"]
            .as_str()
            .or(payload["stream_id"].as_str())
            .unwrap_or_default();
        if !self.serves(model, task_id) {
            self.relayed(Duration::from_millis(ms));
            let error = json!({"error": {"message": format!("model {model:?} not found")}});
            let mut response = Response::new(whole(error));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
        let uncached = self.process_prompt(&payload["messages"]);
        if let Some(plan) = StreamPlan::from_request(payload) {
            self.relayed(plan.length());
            let framing = StreamFraming::for_path(path);
            let body = backend_stream::start(plan, framing, self.host.clone(), self.log.clone());
            let mut response = Response::new(body.boxed());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(framing.content_type()),
            );
            return response;
        }
        let first_token = uncached.map_or(Duration::ZERO, first_token_time);
        let took = first_token + Duration::from_millis(ms);
        self.relayed(took);
        tokio::time::sleep(took).await;
        Response::new(whole(json!({
            "backend": self.host,
            "model": model,
            "slept_ms": ms,
            "first_token_ms": uncached.map(|_| first_token.as_millis() as u64),
            "uncached_tokens": uncached,
        })))
    }

    fn models_named(&self) -> Vec<Value> {
        let mut log = self.log.lock().expect("log lock");
        let models = log.models.now(&self.host);
        models.iter().map(|m| json!({ "name": m })).collect()
    }

    /// A relayed request came that will be answered after `took`: the hub counts it as traffic.
    /// Waits [`STALL`] if this is the probe or relay a `BackendStall` picked (the `http`
    /// executor's `POST /` has no health to test and passes).
    async fn stall_if_asked(&self, path: &str) {
        if path == "/" {
            return;
        }
        let stalled = {
            let mut log = self.log.lock().expect("log lock");
            let stalled = log.backend_faults.take_stall(&self.host);
            if stalled {
                log.trace(format!(
                    "{} {} stalls {path}",
                    sim_now().as_millis(),
                    self.host
                ));
                // A relay stalled here keeps its hub from probing meanwhile (it is busy).
                log.relayed
                    .entry(self.host.clone())
                    .or_default()
                    .push((sim_now(), sim_now() + STALL));
            }
            stalled
        };
        if stalled {
            tokio::time::sleep(STALL).await;
        }
    }

    fn relayed(&self, took: Duration) {
        let now = sim_now();
        let mut log = self.log.lock().expect("log lock");
        log.relayed
            .entry(self.host.clone())
            .or_default()
            .push((now, now + took));
    }

    /// Runs a chat's `messages` through the prompt cache: the tokens it had to process, or
    /// `None` for a request without messages (the load's plain model-naming tasks).
    fn process_prompt(&self, messages: &Value) -> Option<u32> {
        let messages = messages.as_array()?;
        let prompt: Vec<Message> = messages
            .iter()
            .map(|m| {
                let role = m["role"].as_str().unwrap_or_default();
                Message::new(role, m["content"].as_str().unwrap_or_default())
            })
            .collect();
        Some(self.prompts.lock().expect("cache lock").process(&prompt))
    }

    /// Whether it serves `model` now; a request for one it does not goes to the checker.
    fn serves(&self, model: &str, task_id: &str) -> bool {
        let mut log = self.log.lock().expect("log lock");
        if log.models.now(&self.host).iter().any(|m| m == model) {
            return true;
        }
        log.check_backend_asked(&self.node, task_id, model, sim_now());
        false
    }
}

/// The executors' way to their backends in the simulator: turmoil's TCP.
pub struct SimDial;

impl Dial for SimDial {
    fn dial(&self, host: String, port: u16) -> Dialing {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }
}
