//! The QUIC server: proves peers, then answers their heartbeats and runs their tasks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use triforce_core::json::RawJson;
use triforce_core::node::NodeId;
use triforce_core::task::TaskRequest;

use super::Shared;
use crate::exec::{AnswerStream, Chunk, RelayAnswer, Report, Reports, Started, TaskAnswer};
use crate::metrics::refusal;
use crate::quic::{
    accept_peer, read_frame, write_frame, Frame, FrameError, ProofRecord, TaskFrame,
};
use triforce_core::failover::{ErrorCode, RemoteError};

/// Connections that may be between accept and a proved peer at once: enough for every node to
/// reconnect at the same moment, with room to spare; beyond it new ones are dropped unanswered.
const UNPROVED_PER_NODE: usize = 2;
const UNPROVED_SPARE: usize = 4;

pub async fn run(shared: Arc<Shared>) {
    let mut stopped = shared.life.shutdown.subscribe();
    let unproved = Arc::new(Semaphore::new(
        shared.config().federation.nodes.len() * UNPROVED_PER_NODE + UNPROVED_SPARE,
    ));
    loop {
        let incoming = tokio::select! {
            // Polled in order: tokio would otherwise pick branches with an unseeded RNG, and one
            // seed must give one run in the simulator.
            biased;
            incoming = shared.endpoint.accept() => incoming,
            _ = stopped.changed() => return,
        };
        let Some(incoming) = incoming else { return };
        let remote = incoming.remote_address();
        // Only nodes speak QUIC here: anyone else is dropped before the TLS handshake costs a
        // signature, and without an answer that a spoofed source could aim at someone.
        if !shared.authenticator().is_node_address(remote.ip()) {
            shared.refuse_connection(
                refusal::QUIC_UNKNOWN_ADDRESS,
                || tracing::warn!(%remote, "refused QUIC from an address that is no node's"),
            );
            incoming.ignore();
            continue;
        }
        let Ok(permit) = unproved.clone().try_acquire_owned() else {
            shared.refuse_connection(
                refusal::QUIC_HANDSHAKES_FULL,
                || tracing::warn!(%remote, "too many unproved QUIC connections; dropped one"),
            );
            incoming.ignore();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::debug!(%remote, %error, "QUIC handshake failed");
                    return;
                }
            };
            let proved = accept_peer(&shared.peers.identity(), &connection).await;
            drop(permit);
            match proved {
                Ok((peer, proof)) => serve_peer(shared, peer, proof, connection).await,
                Err(error) => {
                    shared.refuse_connection(
                        refusal::QUIC_PROOF,
                        || tracing::warn!(%remote, %error, "refused a QUIC peer"),
                    );
                    connection.close(1u32.into(), b"not proved");
                }
            }
        });
    }
}

async fn serve_peer(
    shared: Arc<Shared>,
    peer: NodeId,
    proof: ProofRecord,
    connection: quinn::Connection,
) {
    let mut reloads = shared.life.generation.subscribe();
    loop {
        let accepted = tokio::select! {
            biased;
            accepted = connection.accept_bi() => accepted,
            Ok(()) = reloads.changed() => {
                if let Some(why) = no_longer_covered(&shared, &peer, &proof) {
                    tracing::info!(%peer, why, "closing the peer's connection after a reload");
                    connection.close(0u32.into(), why.as_bytes());
                    return;
                }
                continue;
            }
        };
        let (send, recv) = match accepted {
            Ok(streams) => streams,
            Err(error) => {
                tracing::debug!(%peer, %error, "peer connection ended");
                return;
            }
        };
        let shared = shared.clone();
        let peer = peer.clone();
        let connection = connection.clone();
        tokio::spawn(async move {
            match serve_stream(&shared, &peer, send, recv).await {
                Ok(()) => {}
                Err(StreamError::Transport(error)) => {
                    tracing::debug!(%peer, %error, "peer stream failed")
                }
                Err(StreamError::Violation(error)) => {
                    // A proved peer that sends what no node sends is broken or compromised.
                    tracing::warn!(%peer, %error, "protocol violation; disconnecting the peer");
                    connection.close(PROTOCOL_VIOLATION.into(), b"protocol violation");
                }
            }
        });
    }
}

/// Why a reload ended what a peer's connection was proved for, if it did: the peer was
/// removed, moved to another address, or proved itself with a key no longer accepted.
fn no_longer_covered(shared: &Shared, peer: &NodeId, proof: &ProofRecord) -> Option<&'static str> {
    let identity = shared.peers.identity();
    match identity.node_ips.get(peer) {
        None => Some("node removed"),
        Some(_) if !proof.holds_under(&identity.keys) => Some("key no longer accepted"),
        Some(_) => None,
    }
}

/// QUIC application close code for a peer that broke the protocol.
const PROTOCOL_VIOLATION: u32 = 2;
/// QUIC application error code with which a stream whose frame is over the limit is stopped.
pub const FRAME_TOO_LARGE: u32 = 3;
/// QUIC application error code with which a streamed answer is stopped when its client left.
pub const STREAM_CANCELLED: u32 = 4;

/// Why serving one stream stopped.
enum StreamError {
    /// The stream or connection failed (reset, closed, lost): the peer's business.
    Transport(String),
    /// The peer sent bytes no node sends: an undecodable, oversized or misplaced frame.
    Violation(String),
}

impl From<String> for StreamError {
    fn from(error: String) -> Self {
        StreamError::Transport(error)
    }
}

async fn serve_stream(
    shared: &Shared,
    peer: &NodeId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), StreamError> {
    let frame = match read_frame(&mut recv, shared.frame_bytes_max()).await {
        Ok(frame) => frame,
        Err(FrameError::Read(error)) => return Err(StreamError::Transport(error.to_string())),
        Err(FrameError::TooLarge { len, max }) => {
            // Fails this stream alone: the connection carries the peer's other tasks and its
            // heartbeats, which an oversized request must not take down with it.
            let _ = recv.stop(FRAME_TOO_LARGE.into());
            let refusal = Frame::Outcome {
                result: Err(RemoteError::new(
                    ErrorCode::RequestTooLarge,
                    format!("a task frame of {len} bytes is over this node's limit of {max}"),
                )),
            };
            write_frame(&mut send, &refusal)
                .await
                .map_err(|e| e.to_string())?;
            let _ = send.finish();
            let _ = send.stopped().await;
            return Ok(());
        }
        Err(error) => return Err(StreamError::Violation(error.to_string())),
    };
    // Held until the peer has read the answer, below.
    let mut serving = None;
    match frame {
        Frame::Heartbeat { seq } => {
            let load = shared.runner.load();
            let capabilities = shared.runner.capabilities();
            let draining = capabilities.draining;
            let answer = Frame::HeartbeatAnswer {
                seq,
                load,
                capabilities,
            };
            write_frame(&mut send, &answer)
                .await
                .map_err(|e| e.to_string())?;
            if draining {
                shared.told_draining(peer);
            }
        }
        Frame::Task(task) => {
            serving = Some(StreamGuard::new(&shared.life.task_streams));
            let mut reports = Reports::new(
                start_task(shared, task),
                shared.progress_interval(),
                shared.accept_grace(),
            );
            while let Some(report) = reports.next().await {
                let frame = match report {
                    Report::Accepted => Frame::Accepted,
                    Report::Progress => Frame::Progress,
                    Report::Done(Ok(TaskAnswer::Relayed(RelayAnswer { head, body }))) => {
                        write_frame(&mut send, &Frame::Streamed { head })
                            .await
                            .map_err(|e| e.to_string())?;
                        relay_stream(body, &mut send).await?;
                        break;
                    }
                    Report::Done(Ok(TaskAnswer::Json(result))) => Frame::Outcome {
                        result: Ok(result.get().to_string()),
                    },
                    Report::Done(Err(error)) => Frame::Outcome { result: Err(error) },
                };
                // A write error means the sender gave up (abandoned); the task runs on and its
                // result stays in the ledger for a retry with the same id.
                write_frame(&mut send, &frame)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        other => {
            return Err(StreamError::Violation(format!(
                "unexpected frame {other:?}"
            )))
        }
    }
    let _ = send.finish();
    // Wait for the peer to read everything before the stream goes away.
    let _ = send.stopped().await;
    drop(serving);
    Ok(())
}

/// Writes a streamed answer's body to the peer that asked for it, chunk by chunk as it comes.
/// Stops as soon as the peer stops reading (its client went away): the stream is dropped, and
/// with it the backend request.
async fn relay_stream(
    mut stream: AnswerStream,
    send: &mut quinn::SendStream,
) -> Result<(), StreamError> {
    loop {
        let chunk = tokio::select! {
            biased;
            _ = send.stopped() => return Err(StreamError::Transport("the peer cancelled the stream".into())),
            chunk = stream.next() => chunk,
        };
        let frame = match chunk {
            Some(Chunk::Data(bytes)) => Frame::Chunk(bytes.to_vec()),
            // `None` comes only after the end: a stream whose writer went away without one
            // reads as `Failed` first (`AnswerStream::poll_next`).
            Some(Chunk::End) | None => Frame::StreamEnd { error: None },
            Some(Chunk::Failed(error)) => Frame::StreamEnd { error: Some(error) },
        };
        let last = matches!(frame, Frame::StreamEnd { .. });
        write_frame(send, &frame).await.map_err(|e| e.to_string())?;
        if last {
            return Ok(());
        }
    }
}

fn start_task(shared: &Shared, frame: TaskFrame) -> Started {
    let payload = match RawJson::parse_str(&frame.payload_json) {
        Ok(payload) => payload,
        Err(error) => {
            return Started::Refused(RemoteError::new(
                ErrorCode::ExecutorFailed,
                format!("payload is not JSON: {error}"),
            ));
        }
    };
    let task = TaskRequest {
        task_id: frame.task_id,
        task_type: frame.task_type,
        payload,
        priority: frame.priority,
        relay: frame.relay,
    };
    if let Err(error) = task.check() {
        return Started::Refused(RemoteError::new(
            ErrorCode::ExecutorFailed,
            error.to_string(),
        ));
    }
    shared.runner.start(task)
}

/// Counts a task stream as open until it has been answered.
struct StreamGuard<'a>(&'a AtomicUsize);

impl<'a> StreamGuard<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        StreamGuard(count)
    }
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
