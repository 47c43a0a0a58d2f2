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

/// A relaying executor's backend, by the task type it serves.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub task_type: String,
}

/// Why a connection was turned away before a request was read (the `reason` label of
/// `triforce_connection_refusals_total`).
pub mod refusal {
    /// HTTP from an address that is neither a node's nor in `allowed_clients`.
    pub const HTTP_UNKNOWN_ADDRESS: &str = "http_unknown_address";
    /// HTTP from an address that already holds its share of connections.
    pub const HTTP_SOURCE_CONNECTIONS: &str = "http_source_connections";
    /// QUIC from an address that is no node's.
    pub const QUIC_UNKNOWN_ADDRESS: &str = "quic_unknown_address";
    /// QUIC while the unproved-handshake slots are all taken.
    pub const QUIC_HANDSHAKES_FULL: &str = "quic_handshakes_full";
    /// A QUIC peer that did not prove the PSK from its own address.
    pub const QUIC_PROOF: &str = "quic_proof";
}

const CONNECTION_REFUSALS: [&str; 5] = [
    refusal::HTTP_UNKNOWN_ADDRESS,
    refusal::HTTP_SOURCE_CONNECTIONS,
    refusal::QUIC_UNKNOWN_ADDRESS,
    refusal::QUIC_HANDSHAKES_FULL,
    refusal::QUIC_PROOF,
];

/// Every metric of a node.
pub struct Metrics {
    registry: Registry,
    pub tasks: Family<TaskLabels, Counter>,
    pub attempts: Family<OutcomeLabel, Counter>,
    pub failovers: Counter,
    pub auth_rejections: Family<ReasonLabel, Counter>,
    pub connection_refusals: Family<ReasonLabel, Counter>,
    pub peer_online: Family<PeerLabel, Gauge>,
    pub peer_rtt_seconds: Family<PeerLabel, Gauge<f64, AtomicU64>>,
    pub tasks_running: Gauge,
    pub queue_depth: Gauge,
    pub backend_up: Family<BackendLabel, Gauge>,
    pub backend_probe_seconds: Family<BackendLabel, Gauge<f64, AtomicU64>>,
    /// Reloads by outcome: `applied` or `refused`.
    pub reloads: Family<OutcomeLabel, Counter>,
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
        let connection_refusals = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connection_refusals",
            "Connections closed or dropped before any request was read, by reason",
            connection_refusals.clone(),
        );
        for reason in CONNECTION_REFUSALS {
            let _ = connection_refusals.get_or_create(&ReasonLabel {
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
        let backend_up = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "backend_up",
            "1 when the relaying executor's backend is up (probes and outcomes), else 0",
            backend_up.clone(),
        );
        let backend_probe_seconds = Family::<BackendLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "backend_probe_seconds",
            "How long the backend's last health probe took",
            backend_probe_seconds.clone(),
        );
        let reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "reloads",
            "Config reloads (SIGHUP, triforce reload) by outcome: applied, or refused with the running config untouched",
            reloads.clone(),
        );
        for outcome in ["applied", "refused"] {
            let _ = reloads.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        Metrics {
            reloads,
            backend_up,
            backend_probe_seconds,
            registry,
            tasks,
            attempts,
            failovers,
            auth_rejections,
            connection_refusals,
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
