//! The shared log every simulated node writes its decisions to, and the trace it hashes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use triforce_core::failover::TaskOutcome;
use triforce_core::membership::MembershipEvent;
use triforce_core::node::NodeId;
use triforce_core::time::Instant;
use triforce_net::node::{Node, Observer};

/// A membership event as seen by `observer`, at simulated time `at`.
#[derive(Clone, Debug)]
pub struct SeenEvent {
    pub at: Duration,
    pub observer: NodeId,
    pub event: MembershipEvent,
}

/// How one task ended.
#[derive(Clone, Debug)]
pub struct Ended {
    pub at: Duration,
    pub status: &'static str,
    pub node: Option<NodeId>,
    pub attempts: usize,
}

/// A conversation turn's time to first token, as its client saw it.
#[derive(Clone, Copy, Debug)]
pub struct FirstToken {
    /// 1 for a conversation's first turn.
    pub turn: u32,
    pub took: Duration,
    /// The prompt tokens the backend had to process (not in its cache).
    pub uncached_tokens: u32,
}

/// Everything the nodes did, for the invariants and the report.
#[derive(Default)]
pub struct Log {
    pub events: Vec<SeenEvent>,
    pub nodes: BTreeMap<NodeId, Node>,
    pub submitted: BTreeMap<String, (Duration, String)>,
    pub ended: BTreeMap<String, Vec<Ended>>,
    pub executions: BTreeMap<(NodeId, String), u32>,
    /// Every attempt sent, per task: when and to which node.
    pub dispatches: BTreeMap<String, Vec<(Duration, NodeId)>>,
    /// When each crash fault hit which node.
    pub crashes: Vec<(Duration, NodeId)>,
    pub adversary_attempts: u64,
    /// What each node's config files say now; its host reloads the node when this changes.
    pub configs: BTreeMap<NodeId, crate::scenario::ConfigState>,
    pub violations: Vec<String>,
    /// Each hub backend's crashes and hangs, and the stall waiting for it.
    pub backend_faults: crate::backend_health::BackendFaults,
    /// Each hub backend's model list over time.
    pub models: crate::models::ModelLists,
    /// The model each model-naming task asks for.
    pub asked_models: BTreeMap<String, String>,
    /// Per backend host: when each relayed request to it came and when its answer was due. A
    /// hub does not probe a busy backend (its relays speak for it), so while these overlap or
    /// follow each other within a probe interval, its model list may be older than a probe.
    pub relayed: BTreeMap<String, Vec<(Duration, Duration)>>,
    /// The nodes that relay model-naming tasks to a backend (the hubs).
    pub relay_nodes: Vec<NodeId>,
    /// When each node last started.
    pub started: BTreeMap<NodeId, Duration>,
    pub model_rules: Option<crate::models::ModelRules>,
    /// Every answered conversation turn (`crate::conversations`).
    pub first_tokens: Vec<FirstToken>,
    /// Streams through the master's AI door, from both ends.
    pub door_streams: crate::door_streams::DoorStreams,
    trace: Sha256,
    /// The trace's lines, kept only when asked for (to diff two runs of one seed).
    pub trace_lines: Option<Vec<String>>,
}

impl Log {
    /// Adds a line to the trace hash.
    pub fn trace(&mut self, line: String) {
        self.trace.update(line.as_bytes());
        self.trace.update(b"\n");
        if let Some(lines) = &mut self.trace_lines {
            lines.push(line);
        }
    }

    pub fn trace_hash(&self) -> String {
        hex::encode(self.trace.clone().finalize())
    }

    pub fn violation(&mut self, message: String) {
        if self.violations.len() < 100 {
            self.violations.push(message);
        }
    }

    pub fn record_outcome(&mut self, task_id: &str, at: Duration, outcome: &TaskOutcome) {
        let node = match outcome {
            TaskOutcome::Completed { node, .. } | TaskOutcome::Failed { node, .. } => {
                Some(node.clone())
            }
            TaskOutcome::AllNodesFailed { .. } => None,
        };
        self.record_end(
            task_id,
            Ended {
                at,
                status: outcome.status(),
                node,
                attempts: outcome.attempts().len(),
            },
        );
    }

    /// Records the seed API's answer to a submitted task (the outcome's JSON), or a
    /// violation when it is not one.
    pub fn record_answer(&mut self, task_id: &str, at: Duration, http_status: u16, body: &[u8]) {
        let answer: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let status = match answer["status"].as_str() {
            Some("completed") => "completed",
            Some("failed") => "failed",
            Some("all_nodes_failed") => "all_nodes_failed",
            _ => {
                let body = String::from_utf8_lossy(body);
                self.violation(format!(
                    "{}: task {task_id} answered {http_status} without an outcome: {body}",
                    at.as_secs_f64()
                ));
                return;
            }
        };
        // The status says what the outcome says: a client that reads only the status (most do)
        // must never take a failure for an answer, nor an answer for a failure.
        if (status == "completed") != (http_status == 200) {
            self.violation(format!(
                "{}: task {task_id} ended {status} but was answered {http_status}",
                at.as_secs_f64()
            ));
        }
        let node = answer["node"].as_str().and_then(|n| NodeId::new(n).ok());
        let attempts = answer["attempts"].as_array().map_or(0, Vec::len);
        if let (Some(model), "completed", Some(node)) =
            (self.asked_models.get(task_id).cloned(), status, &node)
        {
            self.check_model_answer(task_id, &model, node, &answer["result"], at);
        }
        // A hub runs batch tasks through its backend host: the answer must be that host's.
        let chat = self
            .submitted
            .get(task_id)
            .is_some_and(|(_, t)| t == crate::world::BATCH_TASK_TYPE);
        if let (true, "completed", Some(hub)) = (chat, status, &node) {
            let expected = crate::backend::backend_host(hub.as_str());
            let on_master = hub.as_str() == "hetzner";
            if !on_master && answer["result"]["backend"] != expected.as_str() {
                self.violation(format!(
                    "{}: batch task {task_id} completed on {hub} without its backend: {}",
                    at.as_secs_f64(),
                    answer["result"]
                ));
            }
        }
        self.record_end(
            task_id,
            Ended {
                at,
                status,
                node,
                attempts,
            },
        );
    }

    fn record_end(&mut self, task_id: &str, ended: Ended) {
        self.trace(format!(
            "{} end {task_id} {} {:?} {}",
            ended.at.as_millis(),
            ended.status,
            ended.node,
            ended.attempts
        ));
        self.ended
            .entry(task_id.to_string())
            .or_default()
            .push(ended);
    }
}

impl Log {
    /// For every task whose current attempt was on a node when it crashed (and that had not
    /// ended then): the time from the crash to its next dispatch elsewhere. What a client
    /// whose task was running on a dying node waits for the federation to notice.
    pub fn redispatch_delays(&self) -> Vec<Duration> {
        let mut delays = Vec::new();
        for (crash_at, crashed) in &self.crashes {
            for (task, dispatches) in &self.dispatches {
                let ended_before = self
                    .ended
                    .get(task)
                    .and_then(|ends| ends.first())
                    .is_some_and(|end| end.at <= *crash_at);
                if ended_before {
                    continue;
                }
                let current = dispatches.iter().rev().find(|(at, _)| at <= crash_at);
                if current.is_none_or(|(_, node)| node != crashed) {
                    continue;
                }
                if let Some((next_at, _)) = dispatches.iter().find(|(at, _)| at > crash_at) {
                    delays.push(next_at.saturating_sub(*crash_at));
                }
            }
        }
        delays
    }
}

pub type SharedLog = Arc<Mutex<Log>>;

/// Simulated time since the start, from inside a host.
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// One node's observer: writes to the shared log and checks what can be checked on the spot.
pub struct NodeObserver {
    pub node: NodeId,
    pub log: SharedLog,
    pub gpu_nodes: Vec<NodeId>,
    pub gpu_task_types: Vec<String>,
}

impl Observer for NodeObserver {
    fn dispatched(&self, task_id: &str, node: &NodeId, _attempt: u32) {
        let at = sim_now();
        let mut log = self.log.lock().expect("log lock");
        log.dispatches
            .entry(task_id.to_string())
            .or_default()
            .push((at, node.clone()));
        log.check_model_dispatch(task_id, node, at);
    }

    fn membership(&self, _at: Instant, event: &MembershipEvent) {
        let at = sim_now();
        let mut log = self.log.lock().expect("log lock");
        log.trace(format!("{} {} {:?}", at.as_millis(), self.node, event));
        log.events.push(SeenEvent {
            at,
            observer: self.node.clone(),
            event: event.clone(),
        });
    }

    fn selected(&self, task_id: &str, task_type: &str, gpu_online: bool, order: &[NodeId]) {
        let needs_gpu = self.gpu_task_types.iter().any(|t| t == task_type);
        if needs_gpu && gpu_online {
            if let Some(cpu) = order.iter().find(|id| !self.gpu_nodes.contains(id)) {
                let message = format!(
                    "{task_id}: GPU task offered to non-GPU node {cpu} while a GPU node was online"
                );
                self.log.lock().expect("log lock").violation(message);
            }
        }
    }

    fn backend_health(&self, task_type: &str, healthy: bool) {
        let at = sim_now();
        let mut log = self.log.lock().expect("log lock");
        let state = if healthy { "up" } else { "down" };
        log.trace(format!(
            "{} {} backend {task_type} {state}",
            at.as_millis(),
            self.node
        ));
        if !healthy {
            log.check_backend_marked_down(&self.node, at);
        }
    }

    fn executed(&self, task_id: &str, _task_type: &str) {
        let mut log = self.log.lock().expect("log lock");
        let runs = log
            .executions
            .entry((self.node.clone(), task_id.to_string()))
            .or_default();
        *runs += 1;
        if *runs > 1 {
            let message = format!("{task_id} ran {runs} times on {}", self.node);
            log.violation(message);
        }
    }
}
