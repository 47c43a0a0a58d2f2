//! The frames nodes exchange, postcard-encoded behind a 4-byte big-endian length.

use serde::{Deserialize, Serialize};
use triforce_core::failover::RemoteError;
use triforce_core::federation::Capabilities;
use triforce_core::membership::Load;
use triforce_core::relay::{RelayHead, StreamHead};
use triforce_core::stream_failure::StreamFailure;

/// A task as it travels between nodes. The payload is JSON text: postcard cannot carry
/// self-describing values such as `serde_json::Value`. A relayed request's head travels typed
/// beside its body (the payload), so the executing node reads the model and key without
/// parsing the body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskFrame {
    pub task_id: String,
    pub task_type: String,
    pub payload_json: String,
    pub priority: i32,
    pub relay: Option<RelayHead>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame of a connection, client to server: who I am, proved.
    Hello {
        node: String,
        unix_s: u64,
        proof: [u8; 32],
    },
    /// The server's answer to a valid Hello: who I am, proved.
    Welcome {
        node: String,
        unix_s: u64,
        proof: [u8; 32],
    },
    Heartbeat {
        seq: u64,
    },
    HeartbeatAnswer {
        seq: u64,
        load: Load,
        /// What the answering node can run now (bounded by the receiver).
        capabilities: Capabilities,
    },
    Task(TaskFrame),
    /// The task was taken (running or queued); progress and the outcome follow.
    Accepted,
    /// Still running.
    Progress,
    /// The task's end: its JSON result as text, or the error.
    Outcome {
        result: Result<String, RemoteError>,
    },
    /// The task's end, a relayed answer: the backend's head, then `Chunk`s as the backend
    /// writes them, then `StreamEnd`. Failover ends here: part of an answer may be on its way
    /// to the client.
    Streamed {
        head: StreamHead,
    },
    Chunk(Vec<u8>),
    /// The streamed answer is complete (`None`) or broke off (why).
    StreamEnd {
        error: Option<StreamFailure>,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream ended or failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("write failed: {0}")]
    Write(#[from] quinn::WriteError),
}

/// Reads one frame, refusing lengths over `max` before reading the body.
pub async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> Result<Frame, FrameError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(decode(&body)?)
}

/// Decodes a frame body (without its length prefix). Never panics on any input.
pub fn decode(body: &[u8]) -> Result<Frame, postcard::Error> {
    postcard::from_bytes(body)
}

pub async fn write_frame(send: &mut quinn::SendStream, frame: &Frame) -> Result<(), FrameError> {
    let body = postcard::to_stdvec(frame).expect("frames always encode");
    let mut bytes = Vec::with_capacity(body.len() + 4);
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    send.write_all(&bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let frame = Frame::Task(TaskFrame {
            task_id: "t".into(),
            task_type: "chat".into(),
            payload_json: "{\"a\":1}".into(),
            priority: -3,
            relay: Some(RelayHead::new("/api/chat", Some("qwen".into()))),
        });
        let bytes = postcard::to_stdvec(&frame).unwrap();
        assert_eq!(decode(&bytes).unwrap(), frame);
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
