//! One node as the federation machine sees it: the single definition of state, load and
//! latency that selection, status and metrics share.

use crate::membership::{PeerState, PeerView};
use crate::node::NodeId;

use super::Capacity;

/// A node's state in words, as status and the dashboard show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// The node answering (this process).
    Local,
    /// Answered its last heartbeat.
    Online,
    /// Online by the heartbeat rule, but missed its last probe or failed a task call since:
    /// it gets no new work until it answers again.
    Suspect,
    Offline,
    /// Never answered yet.
    Unknown,
    /// Online, finishing its running tasks, taking no new ones (from its heartbeat).
    Draining,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Local => "self",
            NodeState::Online => "online",
            NodeState::Suspect => "suspect",
            NodeState::Offline => "offline",
            NodeState::Unknown => "unknown",
            NodeState::Draining => "draining",
        }
    }
}

/// A read-only copy of one node's state.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub id: NodeId,
    pub capacity: Capacity,
    pub state: NodeState,
    /// Smoothed round-trip time; `Some(0.0)` for this node, `None` while unmeasured.
    pub latency_ms: Option<f64>,
    /// What the node last reported running and queued (this node: what its runner holds).
    pub reported_in_flight: Option<u32>,
    pub reported_queued: Option<u32>,
    /// Attempts this node sent there that have not ended.
    pub dispatched: u32,
    pub misses: u32,
}

impl NodeView {
    pub(super) fn peer(id: NodeId, capacity: Capacity, view: &PeerView) -> Self {
        let state = match view.state {
            PeerState::Online if view.misses == 0 => NodeState::Online,
            PeerState::Online => NodeState::Suspect,
            PeerState::Offline => NodeState::Offline,
            PeerState::Unknown => NodeState::Unknown,
        };
        NodeView {
            id,
            capacity,
            state,
            latency_ms: view.latency_ms,
            reported_in_flight: view.load.map(|l| l.in_flight),
            reported_queued: view.load.map(|l| l.queued),
            dispatched: view.dispatched,
            misses: view.misses,
        }
    }

    /// Online by the heartbeat rule (3 misses = offline, one answer = online): what the seed's
    /// status and totals count.
    pub fn is_online(&self) -> bool {
        matches!(
            self.state,
            NodeState::Local | NodeState::Online | NodeState::Suspect | NodeState::Draining
        )
    }

    /// Whether selection may send it a new task.
    pub fn may_get_work(&self) -> bool {
        matches!(self.state, NodeState::Local | NodeState::Online)
    }

    /// Running plus queued tasks as best known: reports are up to one interval old, so what
    /// this node sent since counts too.
    pub fn load(&self) -> u32 {
        let reported = self.reported_in_flight.unwrap_or(0) + self.reported_queued.unwrap_or(0);
        reported.max(self.dispatched)
    }
}
