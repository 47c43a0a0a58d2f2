//! A streamed answer: the backend's bytes as they arrive, from the executor through the QUIC
//! stream to the client, in a bounded channel at every hop so a slow reader slows the backend
//! read instead of filling memory.

use bytes::Bytes;
use tokio::sync::mpsc;
use triforce_core::json::RawJson;
pub use triforce_core::stream_failure::StreamFailure;

/// Chunks buffered between two hops. Small on purpose: each hop's buffer adds to what a slow
/// client leaves waiting, and a token is a few dozen bytes.
pub const CHUNKS_BUFFERED: usize = 8;

pub use triforce_core::relay::StreamHead;

/// A relayed answer as the node that ran it hands it on: the backend's head, then its body as
/// it comes.
#[derive(Debug)]
pub struct RelayAnswer {
    pub head: StreamHead,
    pub body: AnswerStream,
}

/// What a task taken by the runner answers: an executor's JSON result, or a relayed answer.
#[derive(Debug)]
pub enum TaskAnswer {
    Json(RawJson),
    Relayed(RelayAnswer),
}

/// A task's answer, or why there is none.
pub type Answered = Result<TaskAnswer, triforce_core::failover::RemoteError>;

/// One piece of a streamed answer. A stream ends with `End` or `Failed`; a channel that closes
/// without either was cut off (its producer died), which readers report as a failure: a
/// truncated answer is never passed off as a whole one.
#[derive(Debug)]
pub enum Chunk {
    Data(Bytes),
    End,
    Failed(StreamFailure),
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
            std::task::Poll::Ready(chunk) => chunk.unwrap_or(Chunk::Failed(StreamFailure::CutOff)),
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
                Chunk::Failed(failure) => return Err(failure.to_string()),
            }
        }
        Ok(body)
    }
}
