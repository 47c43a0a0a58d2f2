//! The machine's state and its membership side; the task side is in `tasks.rs`.

use std::collections::BTreeMap;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::tasks::TaskEntry;
use super::{BackendState, Capabilities, NodeState, NodeView, Reconfiguration, TaskHandle};
use crate::failover::{FailoverConfig, RetryBudget};
use crate::membership::{Answer, Load, Membership, MembershipEvent, Probe};
use crate::node::NodeId;
use crate::selection::SelectionPolicy;
use crate::time::Instant;

/// What a node brings to the federation, from its entry in the nodes file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub cores: u32,
    pub ram_gb: u32,
    pub gpu: bool,
}

#[derive(Clone, Debug)]
pub struct FederationConfig {
    pub me: NodeId,
    /// The nodes, timing and policies: what a reload may change later.
    pub settings: Reconfiguration,
    /// Seeds selection's tie-breaking.
    pub rng_seed: u64,
    /// What this node can run, until the driver says otherwise.
    pub capabilities: Capabilities,
}

/// See the [module docs](super).
pub struct Federation {
    pub(super) me: NodeId,
    pub(super) nodes: BTreeMap<NodeId, Capacity>,
    pub(super) membership: Membership,
    pub(super) budget: RetryBudget,
    pub(super) rng: ChaCha8Rng,
    pub(super) selection: SelectionPolicy,
    pub(super) failover: FailoverConfig,
    /// Boxed: an entry is large, and the map moves its values when it inserts and removes.
    pub(super) tasks: BTreeMap<TaskHandle, Box<TaskEntry>>,
    pub(super) next_handle: u64,
    /// What this node's runner last said it holds.
    pub(super) local_load: Load,
    /// Attempts routed to this node that have not ended.
    pub(super) local_dispatched: u32,
    /// Membership changed outside its own timers (a task failure counted as a miss).
    pub(super) membership_woken: bool,
    /// What each node can run: this one's from the driver, peers' from their heartbeats.
    pub(super) capabilities: BTreeMap<NodeId, Capabilities>,
}

impl Federation {
    pub fn new(config: FederationConfig, now: Instant) -> Self {
        let settings = config.settings;
        let peers = settings
            .nodes
            .keys()
            .filter(|id| **id != config.me)
            .cloned()
            .collect::<Vec<_>>();
        let capabilities = BTreeMap::from([(config.me.clone(), config.capabilities.bounded())]);
        Federation {
            capabilities,
            membership: Membership::new(settings.membership, peers, now),
            budget: RetryBudget::new(settings.retry_ratio, settings.retry_reserve_per_s),
            rng: ChaCha8Rng::seed_from_u64(config.rng_seed),
            me: config.me,
            nodes: settings.nodes,
            selection: settings.selection,
            failover: settings.failover,
            tasks: BTreeMap::new(),
            next_handle: 0,
            local_load: Load::default(),
            local_dispatched: 0,
            membership_woken: false,
        }
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// What this node's runner holds now (running and queued), for selection and status.
    pub fn handle_local_load(&mut self, load: Load) {
        self.local_load = load;
    }

    // The heartbeat side: the membership machine's inputs and outputs.

    pub fn handle_timeout(&mut self, now: Instant) {
        self.membership.handle_timeout(now);
    }

    /// What this node can run now (its executors, its backends' models and health).
    pub fn handle_local_capabilities(&mut self, capabilities: Capabilities) {
        self.capabilities
            .insert(self.me.clone(), capabilities.bounded());
    }

    /// A heartbeat answer from `peer` with the RTT the driver measured and what it can run.
    pub fn handle_heartbeat_answer(
        &mut self,
        now: Instant,
        peer: &NodeId,
        seq: u64,
        load: Load,
        rtt: std::time::Duration,
        capabilities: Capabilities,
    ) {
        let answer = self
            .membership
            .handle_timed_answer(now, peer, seq, load, rtt);
        if answer == Answer::Counted {
            self.capabilities
                .insert(peer.clone(), capabilities.bounded());
        }
    }

    /// What `node` can run, as last heard; `None` before its first answer.
    pub fn capabilities(&self, node: &NodeId) -> Option<&Capabilities> {
        self.capabilities.get(node)
    }

    pub fn poll_probe(&mut self) -> Option<Probe> {
        self.membership.poll_probe()
    }

    pub fn poll_membership_event(&mut self) -> Option<MembershipEvent> {
        self.membership.poll_event()
    }

    /// The next membership deadline (task deadlines are per task: [`Self::poll_task_timeout`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.membership.poll_timeout()
    }

    /// Whether membership changed outside its timers since the last call, so the heartbeat
    /// driver should run [`Self::handle_timeout`] and send probes now.
    pub fn poll_membership_woken(&mut self) -> bool {
        std::mem::take(&mut self.membership_woken)
    }

    // Views.

    /// Every node, this one first, then peers in id order.
    pub fn nodes(&self) -> Vec<NodeView> {
        let mut views = Vec::with_capacity(self.nodes.len());
        if let Some(capacity) = self.nodes.get(&self.me) {
            views.push(NodeView {
                id: self.me.clone(),
                capacity: *capacity,
                state: NodeState::Local,
                latency_ms: Some(0.0),
                reported_in_flight: Some(self.local_load.in_flight),
                reported_queued: Some(self.local_load.queued),
                dispatched: self.local_dispatched,
                misses: 0,
            });
        }
        for (id, view) in self.membership.peers() {
            if let Some(capacity) = self.nodes.get(id) {
                views.push(NodeView::peer(id.clone(), *capacity, &view));
            }
        }
        for view in &mut views {
            let draining = self.capabilities.get(&view.id).is_some_and(|c| c.draining);
            if draining && view.is_online() {
                view.state = NodeState::Draining;
            }
        }
        views
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Every model on a healthy backend of a node that may get work, once each, with the nodes
    /// that serve it (in id order).
    pub fn models(&self) -> BTreeMap<String, Vec<NodeId>> {
        self.models_where(|backend| &backend.models)
    }

    /// Every model loaded in memory on an online node's healthy backend, with the nodes that
    /// have it loaded (Ollama's `/api/ps`, merged over the federation).
    pub fn loaded_models(&self) -> BTreeMap<String, Vec<NodeId>> {
        self.models_where(|backend| &backend.loaded)
    }

    fn models_where(
        &self,
        names: impl Fn(&BackendState) -> &Vec<String>,
    ) -> BTreeMap<String, Vec<NodeId>> {
        let mut models: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
        for view in self.nodes().iter().filter(|v| v.may_get_work()) {
            let Some(capabilities) = self.capabilities.get(&view.id) else {
                continue;
            };
            for backend in capabilities.backends.iter().filter(|b| b.healthy) {
                for model in names(backend) {
                    let nodes = models.entry(model.clone()).or_default();
                    if !nodes.contains(&view.id) {
                        nodes.push(view.id.clone());
                    }
                }
            }
        }
        for nodes in models.values_mut() {
            nodes.sort();
        }
        models
    }

    /// Tasks this machine is routing now.
    pub fn tasks_in_flight(&self) -> usize {
        self.tasks.len()
    }
}
