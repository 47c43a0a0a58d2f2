//! A backend's streamed chat answer, one word per chunk with a gap between chunks, as a model
//! server writes them: OpenAI's server-sent events, or Ollama's JSON lines. What it wrote, and
//! whether it ran to its end or saw its reader leave, goes to the log for the door-stream
//! invariants (`crate::door_streams`).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::door_streams::BackendEnd;
use crate::record::{sim_now, SharedLog};

/// What a streamed request asks the backend to write (fields of the request's body, which the
/// door relays as the client wrote it).
#[derive(Clone, Debug)]
pub struct StreamPlan {
    /// The client's name for the stream (`stream_id`).
    pub id: String,
    pub chunks: u32,
    pub gap: Duration,
    /// Stop writing after this many chunks and hold the connection open (a server that hangs
    /// mid-answer).
    pub hang_after: Option<u32>,
}

impl StreamPlan {
    /// The plan in a chat request's body, if it asks to stream and names its stream.
    pub fn from_request(payload: &Value) -> Option<Self> {
        if payload["stream"] != true {
            return None;
        }
        Some(StreamPlan {
            id: payload["stream_id"].as_str()?.to_string(),
            chunks: payload["chunks"].as_u64().unwrap_or(1) as u32,
            gap: Duration::from_millis(payload["gap_ms"].as_u64().unwrap_or(0)),
            hang_after: payload["hang_after"].as_u64().map(|n| n as u32),
        })
    }

    /// How long the backend is busy with it, if it runs to its end.
    pub fn length(&self) -> Duration {
        self.gap * self.chunks
    }
}

/// How a stream is written: the API of the path it was asked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFraming {
    /// OpenAI's `/v1/chat/completions`: `data: {...}` events, a finish reason, `[DONE]`.
    Events,
    /// Ollama's `/api/chat`: one JSON object a line, the last with `"done": true`.
    Lines,
}

impl StreamFraming {
    pub fn for_path(path: &str) -> Self {
        if path.starts_with("/api/") {
            StreamFraming::Lines
        } else {
            StreamFraming::Events
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            StreamFraming::Events => "text/event-stream",
            StreamFraming::Lines => "application/x-ndjson",
        }
    }

    fn words(self, words: &str) -> Bytes {
        match self {
            StreamFraming::Events => event(
                &json!({"choices": [{"index": 0, "delta": {"content": words}, "finish_reason": null}]}),
            ),
            StreamFraming::Lines => {
                line(&json!({"message": {"role": "assistant", "content": words}, "done": false}))
            }
        }
    }

    /// The stream's last pieces: its finish, and OpenAI's `[DONE]`.
    fn finish(self) -> Vec<Bytes> {
        match self {
            StreamFraming::Events => vec![
                event(&json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})),
                Bytes::from_static(b"data: [DONE]\n\n"),
            ],
            StreamFraming::Lines => vec![line(
                &json!({"message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop"}),
            )],
        }
    }
}

/// The text of chunk `i`: what a client must read, in order, exactly once.
pub fn chunk_text(i: u32) -> String {
    format!("w{i} ")
}

/// The whole text of a stream of `chunks` chunks.
pub fn full_text(chunks: u32) -> String {
    (0..chunks).map(chunk_text).collect()
}

/// A response body fed from a channel. hyper drops it when the connection closes, which the
/// writer sees at once (`Sender::closed`).
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

/// Starts writing `plan`'s answer as `host`; the body to answer with.
pub fn start(
    plan: StreamPlan,
    framing: StreamFraming,
    host: String,
    log: SharedLog,
) -> ChannelBody {
    let (sender, receiver) = mpsc::channel(1);
    log.lock()
        .expect("log lock")
        .door_streams
        .backend_began(&plan.id, &host);
    tokio::spawn(write(plan, framing, log, sender));
    ChannelBody(receiver)
}

fn event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn line(data: &Value) -> Bytes {
    Bytes::from(format!("{data}\n"))
}

/// Writes the chunks, each after its gap, then the finish and `[DONE]`; stops as soon as the
/// reader is gone.
async fn write(
    plan: StreamPlan,
    framing: StreamFraming,
    log: SharedLog,
    sender: mpsc::Sender<Bytes>,
) {
    let ended = |how: BackendEnd| {
        let mut log = log.lock().expect("log lock");
        let now = sim_now();
        log.trace(format!(
            "{} backend stream {} {how:?}",
            now.as_millis(),
            plan.id
        ));
        log.door_streams.backend_ended(&plan.id, now, how);
    };
    for i in 0..plan.chunks {
        if plan.hang_after == Some(i) {
            sender.closed().await;
            return ended(BackendEnd::ReaderLeft);
        }
        if i > 0 {
            tokio::select! {
                biased; // tokio's default order is random, and unseeded
                () = sender.closed() => return ended(BackendEnd::ReaderLeft),
                () = tokio::time::sleep(plan.gap) => {}
            }
        }
        if sender.send(framing.words(&chunk_text(i))).await.is_err() {
            return ended(BackendEnd::ReaderLeft);
        }
        log.lock()
            .expect("log lock")
            .door_streams
            .backend_wrote(&plan.id, i + 1);
    }
    for piece in framing.finish() {
        if sender.send(piece).await.is_err() {
            return ended(BackendEnd::ReaderLeft);
        }
    }
    ended(BackendEnd::Complete);
}
