//! A streamed answer: the backend's bytes as they arrive, from the executor through the QUIC
//! stream to the client, in a bounded channel at every hop so a slow reader slows the backend
//! read instead of filling memory.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use triforce_core::json::RawJson;

/// Chunks buffered between two hops. Small on purpose: each hop's buffer adds to what a slow
/// client leaves waiting, and a token is a few dozen bytes.
pub const CHUNKS_BUFFERED: usize = 8;

/// The start of a streamed answer: what the backend answered before its body. It is the task's
/// result (ledger, outcome); the body follows in the [`AnswerStream`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    pub status: u16,
    pub content_type: String,
    /// The body's length when the backend gave one and the relay read the body whole (see
    /// `openai::WHOLE_ANSWER_MAX`): the door answers with the same length, head and body in one
    /// write, where a streamed body would go out chunked. Absent for streams (and from peers
    /// that predate it, which the door then streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

impl StreamHead {
    pub fn to_json(&self) -> RawJson {
        let text = serde_json::to_string(self).expect("a head serializes");
        RawJson::parse_str(&text).expect("serde_json writes JSON")
    }

    pub fn from_json(json: &RawJson) -> Option<Self> {
        serde_json::from_str(json.get()).ok()
    }
}

/// One piece of a streamed answer. A stream ends with `End` or `Failed`; a channel that closes
/// without either was cut off (its producer died), which readers report as a failure: a
/// truncated answer is never passed off as a whole one.
#[derive(Debug)]
pub enum Chunk {
    Data(Bytes),
    End,
    Failed(String),
}

/// The receiving end of a streamed answer. Dropping it cancels the answer upstream.
#[derive(Debug)]
pub struct AnswerStream {
    chunks: mpsc::Receiver<Chunk>,
    ended: bool,
}

/// The sending end: the producer of a stream.
pub type ChunkSender = mpsc::Sender<Chunk>;

pub fn answer_channel() -> (ChunkSender, AnswerStream) {
    let (tx, rx) = mpsc::channel(CHUNKS_BUFFERED);
    (
        tx,
        AnswerStream {
            chunks: rx,
            ended: false,
        },
    )
}

impl AnswerStream {
    /// The next chunk: `Data` until the end, then one `End` or `Failed`, then `None`.
    pub async fn next(&mut self) -> Option<Chunk> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`Self::next`] for hand-written futures and bodies.
    pub fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Chunk>> {
        if self.ended {
            return std::task::Poll::Ready(None);
        }
        let chunk = match self.chunks.poll_recv(cx) {
            std::task::Poll::Pending => return std::task::Poll::Pending,
            std::task::Poll::Ready(chunk) => chunk.unwrap_or_else(|| {
                Chunk::Failed("the answer was cut off before its end".to_string())
            }),
        };
        self.ended = !matches!(chunk, Chunk::Data(_));
        std::task::Poll::Ready(Some(chunk))
    }

    /// The whole answer, if it ends within `bytes_max` bytes (for callers that cannot stream).
    pub async fn collect(mut self, bytes_max: usize) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next().await {
            match chunk {
                Chunk::Data(bytes) => {
                    if body.len() + bytes.len() > bytes_max {
                        return Err(format!("the answer is over the limit of {bytes_max} bytes"));
                    }
                    body.extend_from_slice(&bytes);
                }
                Chunk::End => return Ok(body),
                Chunk::Failed(error) => return Err(error),
            }
        }
        Ok(body)
    }
}
