//! The `openai` executor: relays a client's OpenAI- or Ollama-shaped request to a local
//! inference server and streams its answer back as written.
//!
//! The task's payload is what the ingress made of the client's request:
//! `{"method": "POST", "path": "/v1/chat/completions", "body": <the client's JSON>}` (`method`
//! defaults to POST; a GET has no body). The body is forwarded as the client wrote it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use triforce_core::affinity::AffinityKey;
use triforce_core::door::conversation_key;
use triforce_core::failover::{ErrorCode, RemoteError};
use triforce_core::json::RawJson;

use super::http_backend::{CallError, HttpBackends};
use super::scheduler::Share;
use super::stream::{Chunk, ChunkSender, StreamHead};

/// Paths a client may reach on a backend: the two APIs, nothing else the server may offer.
const PATH_PREFIXES: [&str; 2] = ["/v1/", "/api/"];

/// An answer with a `Content-Length` up to this is read whole at the relay and passed on in one
/// piece: head and body then cross QUIC in one packet and reach the client in one write with
/// the backend's length, where relaying it chunk by chunk cost a packet and a write per piece and
/// reached the client chunked. Such an answer is not a stream: its client waits for all of it
/// anyway. Longer answers, and any without a length (SSE, NDJSON), pass on as they come.
pub const WHOLE_ANSWER_MAX: u64 = 64 * 1024;

/// The body of a backend's answer as the relay has it.
pub enum AnswerBody {
    /// Read whole: the backend gave a length of at most [`WHOLE_ANSWER_MAX`].
    Whole(Bytes),
    /// To be passed on as it comes, by [`pump`].
    Streaming(Incoming),
}

/// The payload of a task the ingress made.
#[derive(Deserialize)]
struct Relayed<'a> {
    #[serde(default)]
    method: Option<&'a str>,
    path: &'a str,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

/// The part of a relayed payload that routing reads: the model its body names.
#[derive(Deserialize)]
struct RelayedModel<'a> {
    #[serde(borrow)]
    path: &'a str,
    #[serde(default)]
    body: Option<BodyModel>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
}

#[derive(Deserialize)]
struct BodyModel {
    #[serde(default)]
    model: Option<String>,
}

/// The model a relay-shaped payload (`{"path", "body": {"model", ...}}`) asks for, so a task
/// sent through the seed's API routes by model as one through the door does. `None` for any
/// other payload.
pub fn requested_model(payload: &RawJson) -> Option<String> {
    requested(payload)?.model
}

/// What the executing node reads of a relay-shaped payload: the model its body asks for, and
/// whose request it is (the door's `key` and `weight`, for the fair share of the relays).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Requested {
    pub model: Option<String>,
    pub key: Option<String>,
    pub weight: u32,
}

impl Requested {
    /// The request's share of the relays' queue.
    pub fn share(&self) -> Share<'_> {
        match &self.key {
            Some(key) => Share {
                key,
                weight: self.weight.max(1),
            },
            None => Share::NONE,
        }
    }
}

/// Reads a relay-shaped payload (see [`Requested`]); `None` for any other payload.
pub fn requested(payload: &RawJson) -> Option<Requested> {
    // Most payloads are not relayed requests: a byte search spares them a parse that would
    // fail at the end with an allocated error (1% of a node's CPU per task at saturation).
    if !payload.get().contains("\"path\"") {
        return None;
    }
    let relayed: RelayedModel = serde_json::from_str(payload.get()).ok()?;
    if !PATH_PREFIXES.iter().any(|p| relayed.path.starts_with(p)) {
        return None;
    }
    Some(Requested {
        model: relayed.body.and_then(|b| b.model).filter(|m| !m.is_empty()),
        key: relayed.key,
        weight: relayed.weight.unwrap_or(1),
    })
}

/// The conversation a relay-shaped payload's body belongs to (see
/// [`triforce_core::door::conversation_key`]), so a chat sent through the seed's API stays on
/// the node that has its history, as the door's chats do. `None` for any other payload.
pub fn relayed_conversation(payload: &RawJson) -> Option<AffinityKey> {
    let relayed: Relayed = serde_json::from_str(payload.get()).ok()?;
    if !PATH_PREFIXES.iter().any(|p| relayed.path.starts_with(p)) {
        return None;
    }
    conversation_key(relayed.body?.get().as_bytes())
}

/// Why a relayed request got no answer to pass on.
#[derive(Debug)]
pub struct RelayError {
    pub error: RemoteError,
    pub cause: RelayFailure,
}

/// What a failed relay says about its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayFailure {
    /// Not reachable at all: the one relay failure that marks a backend down at once.
    Unreachable,
    /// No answer within the relay's timeout: counts as a probe that timed out.
    TimedOut,
    /// Anything else, a status it answered included, says something about the request (or a
    /// passing overload), not that the server is gone.
    Other,
}

impl From<RemoteError> for RelayError {
    fn from(error: RemoteError) -> Self {
        RelayError {
            error,
            cause: RelayFailure::Other,
        }
    }
}

impl From<RelayError> for RemoteError {
    fn from(relay: RelayError) -> Self {
        relay.error
    }
}

/// Statuses that say "not now, ask elsewhere" (a gateway in front of the backend, or a server
/// still loading its model or over its queue): another node may try, and nothing is marked down.
fn overloaded(status: hyper::StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

/// The method, URL (at `base_url`) and body a relay-shaped payload asks for, if it is one this
/// executor relays.
fn relayed_request(
    base_url: &str,
    payload: &RawJson,
) -> Result<(Method, String, Option<Bytes>), RelayError> {
    let relayed: Relayed = serde_json::from_str(payload.get()).map_err(|e| {
        RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("an openai task's payload must be {{\"path\", \"body\"}}: {e}"),
        )
    })?;
    if !PATH_PREFIXES.iter().any(|p| relayed.path.starts_with(p)) || relayed.path.contains("..") {
        return Err(RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!(
                "path {:?} is not an OpenAI or Ollama API path",
                relayed.path
            ),
        )
        .into());
    }
    let method = match relayed.method.unwrap_or("POST") {
        "POST" => Method::POST,
        "GET" => Method::GET,
        other => {
            return Err(RemoteError::new(
                ErrorCode::ExecutorFailed,
                format!("method {other:?} is not relayed"),
            )
            .into())
        }
    };
    let body = relayed
        .body
        .map(|raw| Bytes::copy_from_slice(raw.get().as_bytes()));
    Ok((method, format!("{base_url}{}", relayed.path), body))
}

/// What a call to `url` that got no answer says: only one that never reached the backend is
/// safe to run elsewhere, and marks it unreachable.
fn call_failure(url: &str, error: CallError) -> RelayError {
    match error {
        CallError::Unreachable(e) => RelayError {
            error: RemoteError::new(
                ErrorCode::ExecutorUnavailable,
                format!("cannot reach {url}: {e}"),
            ),
            cause: RelayFailure::Unreachable,
        },
        CallError::Failed(e) => {
            RemoteError::new(ErrorCode::ExecutorFailed, format!("{url}: {e}")).into()
        }
        CallError::TooLarge => RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("{url}: answer too large"),
        )
        .into(),
    }
}

/// Sends the relayed request to `base_url` and waits for the answer's head (and for a short
/// answer with a length, its body: [`WHOLE_ANSWER_MAX`]), within `timeout`.
/// A refused connection and 502/503/504 are `executor_unavailable` (another node may try); any
/// other status, 500 included, is the backend's answer to this request, passed on with its body.
pub async fn open(
    base_url: &str,
    payload: &RawJson,
    http: &HttpBackends,
    timeout: Duration,
) -> Result<(StreamHead, AnswerBody), RelayError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (method, url, body) = relayed_request(base_url, payload)?;
    let call = http.send(method, &url, body);
    let response: Response<Incoming> = tokio::time::timeout_at(deadline, call)
        .await
        .map_err(|_| RelayError {
            error: RemoteError::new(
                ErrorCode::ExecutorFailed,
                format!("{url}: no answer within {} ms", timeout.as_millis()),
            ),
            cause: RelayFailure::TimedOut,
        })?
        .map_err(|error| call_failure(&url, error))?;
    let status = response.status();
    if overloaded(status) {
        // A little of the body for the node's log; the client never sees it.
        let text = read_some(response.into_body(), 500).await;
        return Err(RemoteError::new(
            ErrorCode::ExecutorUnavailable,
            format!("{url} answered {status}: {text}"),
        )
        .into());
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
    };
    let content_type = header(CONTENT_TYPE)
        .unwrap_or("application/json")
        .to_string();
    let length = header(CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|length| *length <= WHOLE_ANSWER_MAX);
    let head = StreamHead {
        status: status.as_u16(),
        content_type,
        length,
    };
    let body = match length {
        Some(length) => {
            AnswerBody::Whole(read_whole(response.into_body(), length, deadline, &url).await?)
        }
        None => AnswerBody::Streaming(response.into_body()),
    };
    Ok((head, body))
}

/// A body of `length` bytes (as its head said), read by `deadline`. hyper ends it with an error
/// if the backend closes before `length` bytes.
async fn read_whole(
    body: Incoming,
    length: u64,
    deadline: tokio::time::Instant,
    url: &str,
) -> Result<Bytes, RemoteError> {
    let limited = http_body_util::Limited::new(body, length as usize);
    match tokio::time::timeout_at(deadline, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) => Err(RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("{url}: the answer broke off: {error}"),
        )),
        Err(_) => Err(RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("{url}: the answer did not end in time"),
        )),
    }
}

/// Hands a whole answer to its reader: the body and its end, at once. The channel is new, so it
/// has room for both.
pub fn send_whole(body: Bytes, chunks: &ChunkSender) {
    if !body.is_empty() {
        let _ = chunks.try_send(Chunk::Data(body));
    }
    let _ = chunks.try_send(Chunk::End);
}

/// How a pumped stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PumpEnd {
    /// The backend ended it after a finish reason.
    Complete,
    /// The backend ended it cleanly, but no finish reason came: the answer was cut short.
    Truncated,
    /// It broke off or timed out (the client got an error event), or the client left.
    Broken,
}

/// Moves the answer's body into `chunks` as it arrives, until it ends, fails, passes
/// `deadline`, or the reader goes away (then the body is dropped, which closes the connection
/// to the backend: Ollama stops generating).
pub async fn pump(
    mut body: Incoming,
    chunks: ChunkSender,
    deadline: tokio::time::Instant,
) -> PumpEnd {
    let mut finished = false;
    let end = loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout_at(deadline, body.frame()) => frame,
            () = chunks.closed() => return PumpEnd::Broken,
        };
        match frame {
            Err(_) => break Chunk::Failed("the backend's answer did not end in time".into()),
            Ok(None) => break Chunk::End,
            Ok(Some(Err(error))) => {
                break Chunk::Failed(format!("the backend's answer broke off: {error}"))
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                finished = finished || says_finished(&data);
                if !data.is_empty() && chunks.send(Chunk::Data(data)).await.is_err() {
                    return PumpEnd::Broken;
                }
            }
        }
    };
    let outcome = match (&end, finished) {
        (Chunk::End, true) => PumpEnd::Complete,
        (Chunk::End, false) => PumpEnd::Truncated,
        _ => PumpEnd::Broken,
    };
    let _ = chunks.send(end).await;
    outcome
}

/// Whether a piece of a streamed answer carries its finish: OpenAI's `"finish_reason"` with a
/// string (not `null`), Ollama's `"done": true`, with or without spaces.
fn says_finished(data: &[u8]) -> bool {
    value_starts(data, b"\"finish_reason\"", b"\"") || value_starts(data, b"\"done\"", b"true")
}

/// Whether some `key` in `data` is followed (after a colon and spaces) by `prefix`.
fn value_starts(data: &[u8], key: &[u8], prefix: &[u8]) -> bool {
    data.windows(key.len())
        .enumerate()
        .filter(|(_, window)| *window == key)
        .any(|(at, _)| {
            let rest = data[at + key.len()..].trim_ascii_start();
            let rest = rest.strip_prefix(b":").unwrap_or(rest).trim_ascii_start();
            rest.starts_with(prefix)
        })
}

async fn read_some(body: Incoming, bytes_max: usize) -> String {
    let limited = http_body_util::Limited::new(body, bytes_max);
    match tokio::time::timeout(Duration::from_secs(2), limited.collect()).await {
        Ok(Ok(collected)) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        _ => "(no readable body)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_of(payload: &str) -> Option<String> {
        requested_model(&RawJson::parse_str(payload).expect("test payloads are JSON"))
    }

    #[test]
    fn a_finish_is_seen_in_either_framing() {
        assert!(says_finished(
            br#"data: {"choices":[{"delta":{},"finish_reason":"stop"}]}"#
        ));
        assert!(says_finished(
            br#"data: {"choices": [{"finish_reason": "length"}]}"#
        ));
        assert!(!says_finished(
            br#"data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}"#
        ));
        assert!(!says_finished(b"data: [DONE]"));
        assert!(says_finished(
            br#"{"message":{"content":""},"done":true,"done_reason":"stop"}"#
        ));
        assert!(says_finished(br#"{"done": true}"#));
        assert!(!says_finished(
            br#"{"message":{"content":"a"},"done":false}"#
        ));
    }

    #[test]
    fn the_model_of_a_relayed_request() {
        let chat =
            r#"{"path": "/v1/chat/completions", "body": {"model": "llama3", "messages": []}}"#;
        assert_eq!(model_of(chat).as_deref(), Some("llama3"));
        let generate = r#"{"method": "POST", "path": "/api/generate", "body": {"model": "qwen"}}"#;
        assert_eq!(model_of(generate).as_deref(), Some("qwen"));
        // Not relay-shaped, or no model named: routing by type alone.
        assert_eq!(model_of(r#"{"ms": 5, "model": "llama3"}"#), None);
        assert_eq!(
            model_of(r#"{"path": "/etc/passwd", "body": {"model": "x"}}"#),
            None
        );
        assert_eq!(model_of(r#"{"path": "/v1/models"}"#), None);
        assert_eq!(
            model_of(r#"{"path": "/v1/chat/completions", "body": {"model": ""}}"#),
            None
        );
        assert_eq!(model_of("null"), None);
    }

    #[test]
    fn a_relayed_chat_keeps_its_conversation() {
        let conversation = |payload: &str| {
            relayed_conversation(&RawJson::parse_str(payload).expect("test payloads are JSON"))
        };
        let turn = |history: &str| {
            format!(
                r#"{{"path": "/v1/chat/completions", "body": {{"model": "m", "messages": [{{"role": "system", "content": "be brief"}}, {{"role": "user", "content": "hi"}}{history}]}}}}"#
            )
        };
        let first = conversation(&turn(""));
        assert!(first.is_some());
        let later = turn(
            r#", {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}"#,
        );
        assert_eq!(
            conversation(&later),
            first,
            "the same conversation, a later turn"
        );
        let other = turn("").replace("be brief", "be verbose");
        assert_ne!(conversation(&other), first);
        // A task that is no chat, or names no conversation, has none.
        assert_eq!(conversation(r#"{"ms": 5}"#), None);
        assert_eq!(
            conversation(r#"{"path": "/v1/chat/completions", "body": {"model": "m", "ms": 5}}"#),
            None
        );
        assert_eq!(
            conversation(
                r#"{"path": "/etc/x", "body": {"messages": [{"role": "user", "content": "hi"}]}}"#
            ),
            None
        );
    }
}
