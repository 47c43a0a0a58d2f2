//! One peer as this node sees it.

use serde::{Deserialize, Serialize};

use crate::time::Instant;

/// Whether a peer may be given work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerState {
    /// Never answered, not yet given up on. Not selected for tasks.
    Unknown,
    Online,
    Offline,
}

/// What a peer reports about itself in each heartbeat answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// Tasks running on it.
    pub in_flight: u32,
    /// Tasks waiting for a worker on it.
    pub queued: u32,
    pub cores: u32,
    pub ram_gb: u32,
    pub gpu: bool,
}

/// A read-only copy of one peer's state, for selection, status and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerView {
    pub state: PeerState,
    /// Consecutive misses so far.
    pub misses: u32,
    /// Smoothed round-trip time, once there is a sample.
    pub latency_ms: Option<f64>,
    /// The last reported load, once there is one.
    pub load: Option<Load>,
    /// Tasks this node has sent there that have not ended yet.
    pub dispatched: u32,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Outstanding {
    pub seq: u64,
    pub sent_at: Instant,
    pub deadline: Instant,
}

#[derive(Clone, Debug)]
pub(super) struct Peer {
    pub state: PeerState,
    pub misses: u32,
    pub outstanding: Option<Outstanding>,
    pub next_probe_at: Instant,
    pub rtt_ms: Option<f64>,
    pub load: Option<Load>,
    pub dispatched: u32,
    /// When a task failure last counted as a miss, to count at most one per interval.
    pub evidence_at: Option<Instant>,
}

impl Peer {
    pub fn new(first_probe_at: Instant) -> Self {
        Peer {
            state: PeerState::Unknown,
            misses: 0,
            outstanding: None,
            next_probe_at: first_probe_at,
            rtt_ms: None,
            load: None,
            dispatched: 0,
            evidence_at: None,
        }
    }

    pub fn view(&self) -> PeerView {
        PeerView {
            state: self.state,
            misses: self.misses,
            latency_ms: self.rtt_ms,
            load: self.load,
            dispatched: self.dispatched,
        }
    }

    /// The peer's next deadline: its outstanding probe's, or its next probe.
    pub fn deadline(&self) -> Instant {
        match self.outstanding {
            Some(o) => o.deadline.min(self.next_probe_at),
            None => self.next_probe_at,
        }
    }
}
