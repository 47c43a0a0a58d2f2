//! The heartbeat driver: feeds the membership machine its timers and answers, sends its
//! probes over QUIC, and turns its events into logs and metrics.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use triforce_core::federation::Capabilities;
use triforce_core::membership::{Load, MembershipEvent, Probe};
use triforce_core::node::NodeId;

use super::EventEntry;
use super::Shared;
use crate::metrics::PeerLabel;
use crate::quic::{read_frame, write_frame, Frame};

/// A heartbeat answer on its way back to the driver.
struct Answered {
    peer: NodeId,
    seq: u64,
    load: Load,
    /// From the probe's write to its answer, on a connection that was already up.
    rtt: Duration,
    capabilities: Capabilities,
}

pub async fn run(shared: Arc<Shared>) {
    let (answers_tx, mut answers) = mpsc::unbounded_channel::<Answered>();
    let mut stopped = shared.life.shutdown.subscribe();
    loop {
        let deadline = {
            let now = shared.clock.now();
            let mut federation = shared.federation();
            federation.handle_timeout(now);
            while let Some(probe) = federation.poll_probe() {
                tokio::spawn(send_probe(shared.clone(), probe, answers_tx.clone()));
            }
            while let Some(event) = federation.poll_membership_event() {
                if let Some(observer) = &shared.telemetry.observer {
                    observer.membership(now, &event);
                }
                report(&shared, event);
            }
            federation.poll_timeout()
        };
        let sleep = deadline.map_or(Duration::from_secs(3600), |at| {
            at.saturating_since(shared.clock.now())
        });
        tokio::select! {
            // Polled in order: tokio would otherwise pick branches with an unseeded RNG, and one
            // seed must give one run in the simulator.
            biased;
            Some(answer) = answers.recv() => {
                let now = shared.clock.now();
                let mut federation = shared.federation();
                federation.handle_heartbeat_answer(now, &answer.peer, answer.seq, answer.load, answer.rtt, answer.capabilities);
                while let Some(event) = federation.poll_membership_event() {
                    if let Some(observer) = &shared.telemetry.observer {
                        observer.membership(now, &event);
                    }
                    report(&shared, event);
                }
            }
            _ = tokio::time::sleep(sleep) => {}
            _ = shared.membership_changed.notified() => {}
            _ = stopped.changed() => return,
        }
    }
}

async fn send_probe(shared: Arc<Shared>, probe: Probe, answers: mpsc::UnboundedSender<Answered>) {
    let limit = shared.config().settings.timing.heartbeat_interval();
    let attempt = async {
        match exchange(&shared, &probe).await {
            Ok(answer) => Ok(answer),
            // A cached connection may be dead (the peer restarted and reset it): try once more
            // on a fresh one, inside the same interval, so a restarted peer is back within one.
            Err(first) => {
                shared.peers.forget(&probe.peer).await;
                exchange(&shared, &probe)
                    .await
                    .map_err(|second| format!("{first}; then {second}"))
            }
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(answered)) => {
            let _ = answers.send(answered);
        }
        Ok(Err(error)) => {
            tracing::debug!(peer = %probe.peer, %error, "heartbeat failed");
            shared.peers.forget(&probe.peer).await;
        }
        Err(_) => {
            tracing::debug!(peer = %probe.peer, "heartbeat unanswered");
            shared.peers.forget(&probe.peer).await;
        }
    }
}

/// One heartbeat over the peer's connection: the answer's sequence number, load, capabilities
/// and RTT. The RTT is timed from after the connection is up, so a reconnect's handshake is
/// not in it; tokio's clock is the time seam here (turmoil drives it in the simulator).
async fn exchange(shared: &Shared, probe: &Probe) -> Result<Answered, String> {
    let connection = shared
        .peers
        .connection(&probe.peer)
        .await
        .map_err(|e| e.to_string())?;
    let started = tokio::time::Instant::now();
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    write_frame(&mut send, &Frame::Heartbeat { seq: probe.seq })
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    match read_frame(&mut recv, shared.frame_bytes_max())
        .await
        .map_err(|e| e.to_string())?
    {
        Frame::HeartbeatAnswer {
            seq,
            load,
            capabilities,
        } => Ok(Answered {
            peer: probe.peer.clone(),
            seq,
            load,
            rtt: started.elapsed(),
            capabilities,
        }),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

fn report(shared: &Shared, event: MembershipEvent) {
    journal(shared, &event);
    let metrics = &shared.telemetry.metrics;
    match event {
        MembershipEvent::NodeOnline { node } => {
            tracing::info!(peer = %node, "peer online");
            metrics
                .peer_online
                .get_or_create(&PeerLabel {
                    peer: node.to_string(),
                })
                .set(1);
        }
        MembershipEvent::NodeOffline { node } => {
            tracing::warn!(peer = %node, "peer offline");
            metrics
                .peer_online
                .get_or_create(&PeerLabel {
                    peer: node.to_string(),
                })
                .set(0);
        }
        MembershipEvent::ProbeMissed { node, misses } => {
            tracing::info!(peer = %node, misses, "heartbeat missed");
        }
        MembershipEvent::LatencyChanged { node, latency_ms } => {
            metrics
                .peer_rtt_seconds
                .get_or_create(&PeerLabel {
                    peer: node.to_string(),
                })
                .set(latency_ms as f64 / 1000.0);
        }
        MembershipEvent::NodeJoined { node } => {
            tracing::info!(peer = %node, "node added by a reload; probing it");
        }
        MembershipEvent::NodeLeft { node } => {
            tracing::info!(peer = %node, "node removed by a reload; forgotten");
            // Its series would otherwise stay at their last value for good.
            let label = PeerLabel {
                peer: node.to_string(),
            };
            metrics.peer_online.remove(&label);
            metrics.peer_rtt_seconds.remove(&label);
        }
    }
}

/// The dashboard's event feed.
fn journal(shared: &Shared, event: &MembershipEvent) {
    let (node, kind, detail) = match event {
        MembershipEvent::NodeOnline { node } => (node, "online", None),
        MembershipEvent::NodeOffline { node } => (node, "offline", None),
        MembershipEvent::ProbeMissed { node, misses } => (node, "missed", Some(u64::from(*misses))),
        MembershipEvent::LatencyChanged { node, latency_ms } => {
            (node, "latency", Some(*latency_ms))
        }
        MembershipEvent::NodeJoined { node } => (node, "joined", None),
        MembershipEvent::NodeLeft { node } => (node, "left", None),
    };
    shared.telemetry.journal.event(EventEntry {
        seq: 0,
        unix_s: shared.clock.unix_s(),
        node: node.to_string(),
        kind,
        detail,
    });
}
