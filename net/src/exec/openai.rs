//! The `openai` executor: relays a client's OpenAI- or Ollama-shaped request to a local
//! inference server and streams its answer back as written.
//!
//! The task carries the request's typed head (`triforce_core::relay::RelayHead`: the path, the
//! model, the key) and, as its payload, the client's body, which is forwarded as written.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Response};
use triforce_core::failover::{ErrorCode, RemoteError};
use triforce_core::relay::RelayHead;
use triforce_core::translate::AnswerTranslator;

use super::http_backend::{CallError, HttpBackends};
use super::stream::{Chunk, ChunkSender, StreamFailure, StreamHead};

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

/// Why a relayed request got no answer to pass on.
#[derive(Debug)]
pub struct RelayError {
    pub error: RemoteError,
    pub cause: RelayFailure,
}

pub use triforce_core::backend_health::RelayFailure;

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
    path: &str,
    body: Bytes,
    http: &HttpBackends,
    timeout: Duration,
) -> Result<(StreamHead, AnswerBody), RelayError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Checked where the head was made; checked again here, where a path becomes a URL.
    if !RelayHead::allowed_path(path) {
        return Err(RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("path {path:?} is not an OpenAI or Ollama API path"),
        )
        .into());
    }
    let url = format!("{base_url}{path}");
    let call = http.send(Method::POST, &url, Some(body));
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
    mut translation: Option<AnswerTranslator>,
) -> PumpEnd {
    let mut finished = false;
    let end = loop {
        let frame = tokio::select! {
            // Polled in order (tokio's default picks at random, unseeded, and one seed must
            // give one simulated run): a reader that left stops the pump first.
            biased;
            () = chunks.closed() => return PumpEnd::Broken,
            frame = tokio::time::timeout_at(deadline, body.frame()) => frame,
        };
        match frame {
            Err(_) => break Chunk::Failed(StreamFailure::BackendTimedOut),
            Ok(None) => break Chunk::End,
            Ok(Some(Err(error))) => {
                break Chunk::Failed(StreamFailure::BackendBrokeOff(error.to_string()))
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                finished = finished || says_finished(&data);
                let data = match &mut translation {
                    Some(translation) => Bytes::from(translation.feed(&data)),
                    None => data,
                };
                if !data.is_empty() && chunks.send(Chunk::Data(data)).await.is_err() {
                    return PumpEnd::Broken;
                }
            }
        }
    };
    if let (Chunk::End, Some(translation)) = (&end, &mut translation) {
        let rest = translation.finish();
        if !rest.is_empty() && chunks.send(Chunk::Data(rest.into())).await.is_err() {
            return PumpEnd::Broken;
        }
    }
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
}
