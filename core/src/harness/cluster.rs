//! The cluster: N federation machines, one virtual clock, one RNG. Each node probes its peers
//! and, when the config asks for it, submits tasks that its machine routes, fails over and ends;
//! the harness plays the executors (a task takes a drawn time on its target) and the wire.

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use sha2::{Digest, Sha256};

use super::network::{Message, Network};
use super::NetworkConfig;
use crate::failover::{FailoverConfig, TaskOutcome};
use crate::federation::{
    Capabilities, Capacity, Federation, FederationConfig, Reconfiguration, TaskAction, TaskEvent,
    TaskHandle,
};
use crate::json::RawJson;
use crate::membership::{Load, MembershipConfig, MembershipEvent, PeerView};
use crate::node::NodeId;
use crate::selection::SelectionPolicy;
use crate::time::{earliest, Instant};

/// The task type every harness node runs.
pub const HARNESS_TASK_TYPE: &str = "chat";

/// The cluster's shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClusterConfig {
    pub nodes: usize,
    pub membership: MembershipConfig,
    pub network: NetworkConfig,
    pub seed: u64,
    /// Every live node submits a task this often; `None`: heartbeats only.
    pub task_interval: Option<Duration>,
}

/// Something an observer node's membership machine said, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEntry {
    pub at: Instant,
    pub observer: usize,
    pub event: MembershipEvent,
}

/// How one submitted task ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    pub task: u64,
    pub origin: usize,
    pub submitted_at: Instant,
    pub ended_at: Instant,
    pub outcome: TaskOutcome,
}

/// A task running on a node: when it finishes, and for whom.
#[derive(Clone, Copy, Debug)]
struct RunningTask {
    task: u64,
    origin: usize,
}

struct SimNode {
    id: NodeId,
    federation: Federation,
    alive: bool,
    /// Tasks this node routes: harness number -> the machine's handle, and back.
    routing: BTreeMap<u64, (TaskHandle, Instant)>,
    handles: BTreeMap<TaskHandle, u64>,
    /// Tasks executing here, by (finish time, harness number).
    running: BTreeMap<(Instant, u64), RunningTask>,
    next_submit: Option<Instant>,
}

/// See the [module docs](super).
pub struct Cluster {
    config: ClusterConfig,
    now: Instant,
    nodes: Vec<SimNode>,
    network: Network,
    rng: ChaCha8Rng,
    trace: Vec<TraceEntry>,
    outcomes: Vec<TaskRecord>,
    next_task: u64,
    /// Tasks dropped with their origin's crash (their client went with it).
    orphaned: u64,
}

/// A task's run time on its target: 5 to 300 ms, under every progress timeout.
const TASK_MS_MIN: u64 = 5;
const TASK_MS_MAX: u64 = 300;

impl Cluster {
    pub fn new(config: ClusterConfig) -> Self {
        assert!(config.nodes >= 2, "a cluster needs two nodes");
        let ids: Vec<NodeId> = (0..config.nodes).map(Self::node_id).collect();
        let nodes = (0..config.nodes)
            .map(|index| SimNode {
                id: ids[index].clone(),
                federation: Self::machine(&config, &ids, index, Instant::ZERO),
                alive: true,
                routing: BTreeMap::new(),
                handles: BTreeMap::new(),
                running: BTreeMap::new(),
                next_submit: config.task_interval.map(|every| Instant::ZERO + every),
            })
            .collect();
        Cluster {
            config,
            now: Instant::ZERO,
            nodes,
            network: Network::new(config.network),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            trace: Vec::new(),
            outcomes: Vec::new(),
            next_task: 0,
            orphaned: 0,
        }
    }

    fn machine(config: &ClusterConfig, ids: &[NodeId], index: usize, now: Instant) -> Federation {
        let capacity = Capacity {
            cores: 4,
            ram_gb: 8,
            gpu: false,
        };
        Federation::new(
            FederationConfig {
                me: ids[index].clone(),
                settings: Reconfiguration {
                    nodes: ids.iter().map(|id| (id.clone(), capacity)).collect(),
                    membership: config.membership,
                    failover: FailoverConfig::default(),
                    selection: SelectionPolicy::default(),
                    retry_ratio: 0.5,
                    retry_reserve_per_s: 20,
                },
                rng_seed: config.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                capabilities: Self::capabilities(),
            },
            now,
        )
    }

    fn capabilities() -> Capabilities {
        Capabilities {
            task_types: vec![HARNESS_TASK_TYPE.to_string()],
            backends: Vec::new(),
            draining: false,
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
            .federation
            .membership()
            .peer(&self.nodes[peer].id)
            .expect("peer is known")
    }

    pub fn is_alive(&self, node: usize) -> bool {
        self.nodes[node].alive
    }

    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// Every task that ended, in the order they ended.
    pub fn outcomes(&self) -> &[TaskRecord] {
        &self.outcomes
    }

    /// Tasks submitted so far.
    pub fn submitted(&self) -> u64 {
        self.next_task
    }

    /// Tasks still being routed by live nodes.
    pub fn in_flight(&self) -> u64 {
        self.nodes.iter().map(|n| n.routing.len() as u64).sum()
    }

    /// Tasks lost with their origin's crash (never answered: their client went too).
    pub fn orphaned(&self) -> u64 {
        self.orphaned
    }

    /// A digest of the whole trace and every outcome: equal for equal seeds and fault plans.
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
        for record in &self.outcomes {
            hasher.update(format!(
                "{}|{}|{}|{:?}\n",
                record.ended_at.as_millis(),
                record.task,
                record.origin,
                record.outcome
            ));
        }
        hasher.finalize().into()
    }

    /// Stops `node`: it neither probes, answers nor runs tasks until [`Self::restart`]. Tasks
    /// it was routing are gone with it.
    pub fn crash(&mut self, node: usize) {
        let node = &mut self.nodes[node];
        node.alive = false;
        self.orphaned += node.routing.len() as u64;
        node.routing.clear();
        node.handles.clear();
        node.running.clear();
    }

    /// Starts `node` afresh, with no memory of its peers (as a restarted process).
    pub fn restart(&mut self, node: usize) {
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id.clone()).collect();
        self.nodes[node].federation = Self::machine(&self.config, &ids, node, self.now);
        self.nodes[node].alive = true;
        self.nodes[node].next_submit = self.config.task_interval.map(|every| self.now + every);
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

    /// Submits a task to `node` now; its number.
    pub fn submit(&mut self, node: usize) -> u64 {
        let task = self.next_task;
        self.next_task += 1;
        let now = self.now;
        let handle = self.nodes[node]
            .federation
            .handle_task(now, HARNESS_TASK_TYPE, None);
        self.nodes[node].routing.insert(task, (handle, now));
        self.nodes[node].handles.insert(handle, task);
        self.drive_task(node, handle);
        task
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
        let mut next = self.network.next_arrival();
        for node in self.nodes.iter().filter(|n| n.alive) {
            next = earliest(next, node.federation.poll_timeout());
            next = earliest(next, node.running.keys().next().map(|(at, _)| *at));
            next = earliest(next, node.next_submit);
            for (handle, _) in node.routing.values() {
                next = earliest(next, node.federation.poll_task_timeout(*handle));
            }
        }
        next
    }

    fn step_at(&mut self, at: Instant) {
        self.now = self.now.max(at);
        let now = self.now;
        while let Some(message) = self.network.pop_due(now) {
            self.deliver(message);
        }
        for index in 0..self.nodes.len() {
            if !self.nodes[index].alive {
                continue;
            }
            let node = &mut self.nodes[index];
            if node.federation.poll_timeout().is_some_and(|t| t <= now) {
                node.federation.handle_timeout(now);
            }
            self.finish_due(index);
            self.expire_tasks(index);
            if let (Some(due), Some(every)) =
                (self.nodes[index].next_submit, self.config.task_interval)
            {
                if due <= now {
                    self.nodes[index].next_submit = Some(due + every);
                    self.submit(index);
                }
            }
        }
        self.drain_outputs();
    }

    /// Tasks that finished executing on `node` send their result.
    fn finish_due(&mut self, node: usize) {
        let now = self.now;
        while let Some((&(at, task), _)) = self.nodes[node].running.first_key_value() {
            if at > now {
                break;
            }
            let running = self.nodes[node]
                .running
                .remove(&(at, task))
                .expect("present");
            self.send(Message::Result {
                from: node,
                to: running.origin,
                task: running.task,
            });
        }
    }

    /// Task timers due on `node`'s machine.
    fn expire_tasks(&mut self, node: usize) {
        let now = self.now;
        let due: Vec<TaskHandle> = self.nodes[node]
            .routing
            .values()
            .map(|(handle, _)| *handle)
            .filter(|h| {
                self.nodes[node]
                    .federation
                    .poll_task_timeout(*h)
                    .is_some_and(|t| t <= now)
            })
            .collect();
        for handle in due {
            self.nodes[node].federation.handle_task_timeout(now, handle);
            self.drive_task(node, handle);
        }
    }

    /// Sends a message; one to the node itself arrives at once (a local attempt).
    fn send(&mut self, message: Message) {
        match message {
            Message::Task { from, to, .. }
            | Message::Accepted { from, to, .. }
            | Message::Result { from, to, .. }
                if from == to =>
            {
                self.deliver(message)
            }
            _ => self.network.send(self.now, message, &mut self.rng),
        }
    }

    fn deliver(&mut self, message: Message) {
        let now = self.now;
        match message {
            Message::Probe { from, to, seq } => {
                if self.nodes[to].alive {
                    self.send(Message::Answer {
                        from: to,
                        to: from,
                        seq,
                    });
                }
            }
            Message::Answer { from, to, seq } => {
                if self.nodes[to].alive {
                    let peer = self.nodes[from].id.clone();
                    self.nodes[to].federation.handle_heartbeat_answer(
                        now,
                        &peer,
                        seq,
                        Load::default(),
                        // The machine's own measure: from the probe's send to now.
                        Duration::MAX,
                        Self::capabilities(),
                    );
                }
            }
            Message::Task { from, to, task } => {
                if self.nodes[to].alive {
                    let span = TASK_MS_MAX - TASK_MS_MIN + 1;
                    let run = Duration::from_millis(TASK_MS_MIN + self.rng.next_u64() % span);
                    self.nodes[to]
                        .running
                        .insert((now + run, task), RunningTask { task, origin: from });
                    self.send(Message::Accepted {
                        from: to,
                        to: from,
                        task,
                    });
                }
            }
            Message::Accepted { from, to, task } => self.task_event(to, from, task, None),
            Message::Result { from, to, task } => {
                let result = RawJson::parse_str("{\"ok\":true}").expect("valid JSON");
                self.task_event(to, from, task, Some(result));
            }
        }
    }

    /// The origin `origin` hears from `target` about `task`.
    fn task_event(&mut self, origin: usize, target: usize, task: u64, result: Option<RawJson>) {
        let now = self.now;
        if !self.nodes[origin].alive {
            return;
        }
        let Some(&(handle, _)) = self.nodes[origin].routing.get(&task) else {
            return; // ended already (a late answer)
        };
        let event = match result {
            None => TaskEvent::Accepted,
            Some(result) => TaskEvent::Answer(Ok(result)),
        };
        let target_id = self.nodes[target].id.clone();
        self.nodes[origin]
            .federation
            .handle_task_event(now, handle, &target_id, event);
        self.drive_task(origin, handle);
    }

    /// Carries out the machine's actions for one task and records its outcome.
    fn drive_task(&mut self, node: usize, handle: TaskHandle) {
        let Some(&task) = self.nodes[node].handles.get(&handle) else {
            return;
        };
        while let Some(action) = self.nodes[node].federation.poll_task_action(handle) {
            if let TaskAction::Dispatch { node: target, .. } = action {
                let to = self.index_of(&target);
                self.send(Message::Task {
                    from: node,
                    to,
                    task,
                });
            }
            // Abandoned attempts run on where they are; their late answers are ignored or
            // taken by the machine. Selections are for observers.
        }
        if let Some(outcome) = self.nodes[node].federation.poll_task_outcome(handle) {
            let (_, submitted_at) = self.nodes[node].routing.remove(&task).expect("routed");
            self.nodes[node].handles.remove(&handle);
            self.outcomes.push(TaskRecord {
                task,
                origin: node,
                submitted_at,
                ended_at: self.now,
                outcome,
            });
        }
    }

    fn drain_outputs(&mut self) {
        let now = self.now;
        for index in 0..self.nodes.len() {
            if !self.nodes[index].alive {
                continue;
            }
            while let Some(probe) = self.nodes[index].federation.poll_probe() {
                let to = self.index_of(&probe.peer);
                self.send(Message::Probe {
                    from: index,
                    to,
                    seq: probe.seq,
                });
            }
            while let Some(event) = self.nodes[index].federation.poll_membership_event() {
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
