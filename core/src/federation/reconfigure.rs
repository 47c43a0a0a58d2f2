//! A reload applied to a running machine: the node set, timing, selection and retry limits
//! change; tasks already routing keep the failover settings they started with.

use std::collections::BTreeMap;

use super::{Capacity, Federation};
use crate::failover::FailoverConfig;
use crate::membership::MembershipConfig;
use crate::node::NodeId;
use crate::selection::SelectionPolicy;
use crate::time::Instant;

/// What a reload may change. This node's own id is not in it: a node cannot become another.
#[derive(Clone, Debug)]
pub struct Reconfiguration {
    /// Every node of the federation, this one included.
    pub nodes: BTreeMap<NodeId, Capacity>,
    pub membership: MembershipConfig,
    pub failover: FailoverConfig,
    pub selection: SelectionPolicy,
    pub retry_ratio: f64,
    pub retry_reserve_per_s: u32,
}

impl Federation {
    /// Applies a reload. A node no longer listed is forgotten at once: it gets no new
    /// attempts, and what it says from now on is ignored; attempts already running there end
    /// as they would have (answer, or failover when the driver closes its connection). A new
    /// node is probed at once and gets work after its first answer, like any node at start.
    pub fn handle_reconfigure(&mut self, now: Instant, config: Reconfiguration) {
        assert!(
            config.nodes.contains_key(&self.me),
            "a reload that drops this node is refused by the driver"
        );
        let peers = config
            .nodes
            .keys()
            .filter(|id| **id != self.me)
            .cloned()
            .collect::<Vec<_>>();
        self.membership
            .handle_reconfigure(now, config.membership, peers);
        self.capabilities
            .retain(|id, _| config.nodes.contains_key(id));
        self.nodes = config.nodes;
        self.failover = config.failover;
        self.selection = config.selection;
        self.budget
            .set_limits(config.retry_ratio, config.retry_reserve_per_s);
        self.membership_woken = true;
    }
}
