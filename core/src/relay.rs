//! An AI request the federation relays to a model server, typed once where it enters.
//!
//! A relayed request enters at the door (`/v1/chat/completions`, `/api/chat` ...) or through the
//! seed's task API as the payload `{"path", "body"}`. Either way it is read once there into a
//! [`RelayHead`] (what routing, the executing node's admission and its fair share need) beside
//! the body, which stays the client's JSON as written. The head travels typed between nodes;
//! nobody downstream parses the body again to learn the model or the key. The body is the
//! task's payload.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::json::RawJson;

/// The API a client spoke, which is also the shape of the answer it expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dialect {
    /// OpenAI's `/v1/...`: Chat Completions, Completions, Embeddings.
    OpenAi,
    /// Ollama's `/api/...`.
    Ollama,
    /// Anthropic's Messages API, `/v1/messages` (Claude Code, the `anthropic` SDK).
    Anthropic,
}

impl Dialect {
    /// The dialect a path belongs to.
    pub fn of_path(path: &str) -> Dialect {
        if path.starts_with("/api/") {
            Dialect::Ollama
        } else if path == ANTHROPIC_MESSAGES_PATH {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

/// Anthropic's Messages API: translated to Chat Completions on the relaying node, whatever the
/// backend.
pub const ANTHROPIC_MESSAGES_PATH: &str = "/v1/messages";

/// The task type the door's chats, completions and generations run as.
pub const CHAT_TASK: &str = "chat";
/// The task type the door's embeddings run as.
pub const EMBEDDINGS_TASK: &str = "embeddings";
/// Every task type the door submits.
pub const DOOR_TASK_TYPES: [&str; 2] = [CHAT_TASK, EMBEDDINGS_TASK];

/// OpenAI's Responses API: translated to Chat Completions on the relaying node, whatever the
/// backend.
pub const RESPONSES_PATH: &str = "/v1/responses";

/// Paths a client may reach on a backend: the two APIs, nothing else the server may offer.
pub const PATH_PREFIXES: [&str; 2] = ["/v1/", "/api/"];

/// What every node reads of a relayed request, typed once where the request enters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayHead {
    /// The API the client spoke.
    pub dialect: Dialect,
    /// The backend path the body is posted to (`/v1/chat/completions`).
    pub path: String,
    /// The model the body names (routing goes to nodes whose backend has it).
    pub model: Option<String>,
    /// Whether the body asks for a streamed answer.
    pub stream: bool,
    /// The door key the request came with, for the relays' fair share; `None` through the
    /// seed's API.
    pub key: Option<String>,
    /// That key's weight in the fair share (1 when it names none).
    pub weight: u32,
}

impl RelayHead {
    /// The head of a request to `path` whose body names `model` (door requests fill in the
    /// key and stream flag themselves).
    pub fn new(path: &str, model: Option<String>) -> Self {
        RelayHead {
            dialect: Dialect::of_path(path),
            path: path.to_string(),
            model,
            stream: false,
            key: None,
            weight: 1,
        }
    }

    /// Whether `path` is one a backend may be asked on: one of the two APIs, no way out of it.
    pub fn allowed_path(path: &str) -> bool {
        PATH_PREFIXES.iter().any(|p| path.starts_with(p)) && !path.contains("..")
    }
}

/// The start of a relayed answer: what the backend answered before its body. It crosses from
/// the node that ran the request to the door typed, the body following chunk by chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    pub status: u16,
    pub content_type: String,
    /// The body's length when the backend gave one and the relay read the body whole: the door
    /// answers with the same length, head and body in one write, where a streamed body would go
    /// out chunked. `None` for streams.
    pub length: Option<u64>,
}

/// A task payload in the seed API's relay shape, `{"path", "body", "method"?, "key"?,
/// "weight"?}`, as one parse reads it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    method: Option<&'a str>,
    #[serde(borrow)]
    path: &'a str,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
}

/// The fields of a relayed body that its head carries.
#[derive(Deserialize)]
struct BodyFields {
    #[serde(default)]
    model: Option<serde_json::Value>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
}

/// Why a payload in the relay shape cannot be relayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("path {0:?} is not an OpenAI or Ollama API path")]
    Path(String),
    #[error("method {0:?} is not relayed (only POST)")]
    Method(String),
    #[error("a relayed request needs a JSON object as its body")]
    Body,
}

/// Splits a seed-API payload in the relay shape into its head and the body to relay. `None`
/// when the payload is not in that shape (any other task's payload), which is then run as it
/// is by the task type's executor.
pub fn split_envelope(payload: &RawJson) -> Option<Result<(RelayHead, RawJson), EnvelopeError>> {
    // Most payloads are not relayed requests: a byte search spares them a parse that would
    // fail at the end with an allocated error.
    if !payload.get().contains("\"path\"") {
        return None;
    }
    let envelope: Envelope = serde_json::from_str(payload.get()).ok()?;
    if !PATH_PREFIXES.iter().any(|p| envelope.path.starts_with(p)) {
        return None;
    }
    Some(read_envelope(envelope))
}

fn read_envelope(envelope: Envelope<'_>) -> Result<(RelayHead, RawJson), EnvelopeError> {
    if !RelayHead::allowed_path(envelope.path) {
        return Err(EnvelopeError::Path(envelope.path.to_string()));
    }
    if let Some(method) = envelope.method.filter(|m| *m != "POST") {
        return Err(EnvelopeError::Method(method.to_string()));
    }
    let body = envelope.body.ok_or(EnvelopeError::Body)?;
    let fields: BodyFields = serde_json::from_str(body.get()).map_err(|_| EnvelopeError::Body)?;
    let model = fields
        .model
        .and_then(|m| m.as_str().map(str::to_string))
        .filter(|m| !m.is_empty());
    let head = RelayHead {
        stream: fields.stream.and_then(|s| s.as_bool()) == Some(true),
        key: envelope.key,
        weight: envelope.weight.unwrap_or(1).max(1),
        ..RelayHead::new(envelope.path, model)
    };
    Ok((head, RawJson::from_raw(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(payload: &str) -> Option<Result<(RelayHead, RawJson), EnvelopeError>> {
        split_envelope(&RawJson::parse_str(payload).unwrap())
    }

    #[test]
    fn a_relay_shaped_payload_splits_into_head_and_body_as_written() {
        let (head, body) = split(
            r#"{"path":"/api/chat","key":"alice","weight":3,"body":{"model":"qwen","stream":true, "x":1e15}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.dialect, Dialect::Ollama);
        assert_eq!(head.path, "/api/chat");
        assert_eq!(head.model.as_deref(), Some("qwen"));
        assert!(head.stream);
        assert_eq!(head.key.as_deref(), Some("alice"));
        assert_eq!(head.weight, 3);
        assert_eq!(body.get(), r#"{"model":"qwen","stream":true, "x":1e15}"#);
    }

    #[test]
    fn other_payloads_are_left_alone_and_bad_envelopes_say_why() {
        assert!(split(r#"{"ms": 5}"#).is_none());
        assert!(split(r#"{"path": "/etc/passwd", "body": {}}"#).is_none());
        assert!(split(r#"[{"path": "/v1/x"}]"#).is_none());
        assert_eq!(
            split(r#"{"path": "/v1/../admin", "body": {}}"#).unwrap(),
            Err(EnvelopeError::Path("/v1/../admin".into()))
        );
        assert_eq!(
            split(r#"{"method": "DELETE", "path": "/v1/models", "body": {}}"#).unwrap(),
            Err(EnvelopeError::Method("DELETE".into()))
        );
        assert_eq!(
            split(r#"{"path": "/v1/chat/completions"}"#).unwrap(),
            Err(EnvelopeError::Body)
        );
        let (head, _) = split(r#"{"path": "/v1/embeddings", "body": {"model": ""}}"#)
            .unwrap()
            .unwrap();
        assert_eq!((head.model, head.weight, head.stream), (None, 1, false));
    }
}
