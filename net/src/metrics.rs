//! Prometheus metrics, named and labelled the conventional way (`_total` counters, base units).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub r#type: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

/// Every metric of a node.
pub struct Metrics {
    registry: Registry,
    pub tasks: Family<TaskLabels, Counter>,
    pub attempts: Family<OutcomeLabel, Counter>,
    pub failovers: Counter,
    pub auth_rejections: Family<ReasonLabel, Counter>,
    pub peer_online: Family<PeerLabel, Gauge>,
    pub peer_rtt_seconds: Family<PeerLabel, Gauge<f64, AtomicU64>>,
    pub tasks_running: Gauge,
    pub queue_depth: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("triforce");
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register(
            "tasks",
            "Tasks submitted to this node, by type and outcome",
            tasks.clone(),
        );
        let attempts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "task_attempts",
            "Attempts made by this node, by outcome",
            attempts.clone(),
        );
        let failovers = Counter::default();
        registry.register(
            "failovers",
            "Attempts that moved a task to another node",
            failovers.clone(),
        );
        let auth_rejections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "auth_rejections",
            "Refused signed requests, by reason",
            auth_rejections.clone(),
        );
        for reason in triforce_core::auth::Rejection::CODES {
            let _ = auth_rejections.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        let peer_online = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "peer_online",
            "1 when the peer is online, else 0",
            peer_online.clone(),
        );
        let peer_rtt_seconds = Family::<PeerLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "peer_rtt_seconds",
            "Smoothed heartbeat round-trip time",
            peer_rtt_seconds.clone(),
        );
        let tasks_running = Gauge::default();
        registry.register(
            "tasks_running",
            "Tasks running on this node",
            tasks_running.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Tasks waiting for a worker on this node",
            queue_depth.clone(),
        );
        Metrics {
            registry,
            tasks,
            attempts,
            failovers,
            auth_rejections,
            peer_online,
            peer_rtt_seconds,
            tasks_running,
            queue_depth,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
