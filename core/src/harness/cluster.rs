//! The cluster: N membership machines, one virtual clock, one RNG.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::network::{Message, Network};
use super::NetworkConfig;
use crate::membership::{Load, Membership, MembershipConfig, MembershipEvent, PeerView};
use crate::node::NodeId;
use crate::time::{earliest, Instant};

/// The cluster's shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClusterConfig {
    pub nodes: usize,
    pub membership: MembershipConfig,
    pub network: NetworkConfig,
    pub seed: u64,
}

/// Something an observer node's membership machine said, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEntry {
    pub at: Instant,
    pub observer: usize,
    pub event: MembershipEvent,
}

struct SimNode {
    id: NodeId,
    membership: Membership,
    alive: bool,
}

/// See the [module docs](super).
pub struct Cluster {
    config: ClusterConfig,
    now: Instant,
    nodes: Vec<SimNode>,
    network: Network,
    rng: ChaCha8Rng,
    trace: Vec<TraceEntry>,
}

impl Cluster {
    pub fn new(config: ClusterConfig) -> Self {
        assert!(config.nodes >= 2, "a cluster needs two nodes");
        let ids: Vec<NodeId> = (0..config.nodes).map(Self::node_id).collect();
        let nodes = ids
            .iter()
            .map(|id| SimNode {
                id: id.clone(),
                membership: Membership::new(
                    config.membership,
                    ids.iter().filter(|p| *p != id).cloned(),
                    Instant::ZERO,
                ),
                alive: true,
            })
            .collect();
        Cluster {
            config,
            now: Instant::ZERO,
            nodes,
            network: Network::new(config.network),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            trace: Vec::new(),
        }
    }

    /// The id of node `index`: `n0`, `n1`, ...
    pub fn node_id(index: usize) -> NodeId {
        NodeId::new(format!("n{index}")).expect("valid id")
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// What `observer` believes about `peer`.
    pub fn view(&self, observer: usize, peer: usize) -> PeerView {
        self.nodes[observer]
            .membership
            .peer(&self.nodes[peer].id)
            .expect("peer is known")
    }

    pub fn is_alive(&self, node: usize) -> bool {
        self.nodes[node].alive
    }

    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// A digest of the whole trace: equal for equal seeds and fault plans.
    pub fn trace_hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for entry in &self.trace {
            hasher.update(format!(
                "{}|{}|{:?}\n",
                entry.at.as_millis(),
                entry.observer,
                entry.event
            ));
        }
        hasher.finalize().into()
    }

    /// Stops `node`: it neither probes nor answers until [`Self::restart`].
    pub fn crash(&mut self, node: usize) {
        self.nodes[node].alive = false;
    }

    /// Starts `node` afresh, with no memory of its peers (as a restarted process).
    pub fn restart(&mut self, node: usize) {
        let id = self.nodes[node].id.clone();
        let peers = self
            .nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| n.id.clone());
        self.nodes[node].membership =
            Membership::new(self.config.membership, peers.collect::<Vec<_>>(), self.now);
        self.nodes[node].alive = true;
    }

    /// Drops every message from `from` to `to` (one way) until healed.
    pub fn cut(&mut self, from: usize, to: usize) {
        self.network.cut.insert((from, to));
    }

    pub fn heal(&mut self) {
        self.network.cut.clear();
    }

    pub fn set_loss(&mut self, loss: f64) {
        self.network.config.loss = loss;
    }

    /// Runs every step whose time is at or before `until`, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(next) = self.next_deadline().filter(|t| *t <= until) {
            self.step_at(next);
        }
        self.now = self.now.max(until);
    }

    /// Advances to the earliest deadline and handles everything due then. False if none.
    pub fn step(&mut self) -> bool {
        match self.next_deadline() {
            Some(next) => {
                self.step_at(next);
                true
            }
            None => false,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timers = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.membership.poll_timeout())
            .min();
        earliest(timers, self.network.next_arrival())
    }

    fn step_at(&mut self, at: Instant) {
        self.now = self.now.max(at);
        let now = self.now;
        while let Some(message) = self.network.pop_due(now) {
            self.deliver(message);
        }
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            if node.alive && node.membership.poll_timeout().is_some_and(|t| t <= now) {
                node.membership.handle_timeout(now);
            }
        }
        self.drain_outputs();
    }

    fn deliver(&mut self, message: Message) {
        let now = self.now;
        match message {
            Message::Probe { from, to, seq } => {
                if self.nodes[to].alive {
                    let answer = Message::Answer {
                        from: to,
                        to: from,
                        seq,
                    };
                    self.network.send(now, answer, &mut self.rng);
                }
            }
            Message::Answer { from, to, seq } => {
                if self.nodes[to].alive {
                    let peer = self.nodes[from].id.clone();
                    self.nodes[to]
                        .membership
                        .handle_answer(now, &peer, seq, Load::default());
                }
            }
        }
    }

    fn drain_outputs(&mut self) {
        let now = self.now;
        for index in 0..self.nodes.len() {
            while let Some(probe) = self.nodes[index].membership.poll_probe() {
                let to = self.index_of(&probe.peer);
                self.network.send(
                    now,
                    Message::Probe {
                        from: index,
                        to,
                        seq: probe.seq,
                    },
                    &mut self.rng,
                );
            }
            while let Some(event) = self.nodes[index].membership.poll_event() {
                self.trace.push(TraceEntry {
                    at: now,
                    observer: index,
                    event,
                });
            }
        }
    }

    fn index_of(&self, id: &NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| &n.id == id)
            .expect("known node")
    }
}
