//! What the membership machine asks of the driver and tells it.

use crate::node::NodeId;

/// A heartbeat to send: the driver delivers it to `peer` and feeds the answer back with the
/// same `seq` through [`super::Membership::handle_answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub peer: NodeId,
    pub seq: u64,
}

/// A change in what this node knows about a peer.
#[derive(Clone, Debug, PartialEq)]
pub enum MembershipEvent {
    /// First answer ever, or first answer after being Offline.
    NodeOnline { node: NodeId },
    /// `misses_max` consecutive misses.
    NodeOffline { node: NodeId },
    /// A probe went unanswered; `misses` counts consecutive ones.
    ProbeMissed { node: NodeId, misses: u32 },
    /// The smoothed round-trip time moved to another whole millisecond.
    LatencyChanged { node: NodeId, latency_ms: u64 },
    /// A reload added the node to this one's config: it is probed from now on.
    NodeJoined { node: NodeId },
    /// A reload removed the node from this one's config: it is forgotten.
    NodeLeft { node: NodeId },
}
