//! Prometheus metrics, named and labelled the conventional way (`_total` counters, base units).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
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

/// A backend and how one relayed request to it ended (`triforce_backend_requests_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendRequestLabels {
    pub task_type: String,
    pub outcome: String,
}

/// How a relayed request to a backend ended (the `outcome` label of
/// `triforce_backend_requests_total`).
pub mod relay_outcome {
    /// The backend answered (any status below 500); its answer went to the client.
    pub const ANSWERED: &str = "answered";
    /// Refused, unreachable, or a 5xx before any byte: the task may run elsewhere.
    pub const UNAVAILABLE: &str = "unavailable";
    /// No answer in time, or the exchange broke.
    pub const FAILED: &str = "failed";
    /// Everyone waiting went away before the backend answered; the request was dropped.
    pub const CANCELLED: &str = "cancelled";
    /// Not sent: the backend's last probe did not list the model.
    pub const NO_MODEL: &str = "no_model";
    /// A stream the backend ended cleanly but without a finish reason (OpenAI's
    /// `finish_reason`, Ollama's `"done": true`): it cut the answer short, as a server that
    /// interrupts a generation for another request does.
    pub const TRUNCATED: &str = "truncated";
}

/// Counts of relayed requests per backend; the runner holds a handle to the registered family.
pub type BackendRequests = Family<BackendRequestLabels, Counter>;

/// An API key, by the name its door gave it (`-` for relayed tasks that name none).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabel {
    pub key: String,
}

/// How long relayed requests waited for a relay slot, per key.
pub type QueueWaits = Family<KeyLabel, Histogram, fn() -> Histogram>;

fn queue_wait_histogram() -> Histogram {
    // 1 ms to about 2 minutes (the door's first-byte limit), doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 18,
    ))
}

/// The handles the runner writes to.
#[derive(Clone)]
pub struct RunnerMetrics {
    pub backend_requests: BackendRequests,
    /// Relayed requests waiting for a relay slot now, per key.
    pub relay_queue_waiting: Family<KeyLabel, Gauge>,
    pub relay_queue_wait_seconds: QueueWaits,
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
    /// An ingress client address that already holds its share of connections.
    pub const INGRESS_SOURCE_CONNECTIONS: &str = "ingress_source_connections";
}

const CONNECTION_REFUSALS: [&str; 6] = [
    refusal::HTTP_UNKNOWN_ADDRESS,
    refusal::HTTP_SOURCE_CONNECTIONS,
    refusal::QUIC_UNKNOWN_ADDRESS,
    refusal::QUIC_HANDSHAKES_FULL,
    refusal::QUIC_PROOF,
    refusal::INGRESS_SOURCE_CONNECTIONS,
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
    pub backend_requests: BackendRequests,
    pub relay_queue_waiting: Family<KeyLabel, Gauge>,
    pub relay_queue_wait_seconds: QueueWaits,
    /// Reloads by outcome: `applied` or `refused`.
    pub reloads: Family<OutcomeLabel, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("triforce");
        let tasks: Family<TaskLabels, Counter> = registered(
            &mut registry,
            "tasks",
            "Tasks submitted to this node, by type and outcome",
        );
        let attempts: Family<OutcomeLabel, Counter> = registered(
            &mut registry,
            "task_attempts",
            "Attempts made by this node, by outcome",
        );
        let failovers: Counter = registered(
            &mut registry,
            "failovers",
            "Attempts that moved a task to another node",
        );
        let auth_rejections: Family<ReasonLabel, Counter> = registered(
            &mut registry,
            "auth_rejections",
            "Refused signed requests, by reason",
        );
        for reason in triforce_core::auth::Rejection::CODES {
            let _ = auth_rejections.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        let connection_refusals: Family<ReasonLabel, Counter> = registered(
            &mut registry,
            "connection_refusals",
            "Connections closed or dropped before any request was read, by reason",
        );
        for reason in CONNECTION_REFUSALS {
            let _ = connection_refusals.get_or_create(&ReasonLabel {
                reason: reason.into(),
            });
        }
        let peer_online: Family<PeerLabel, Gauge> = registered(
            &mut registry,
            "peer_online",
            "1 when the peer is online, else 0",
        );
        let peer_rtt_seconds: Family<PeerLabel, Gauge<f64, AtomicU64>> = registered(
            &mut registry,
            "peer_rtt_seconds",
            "Smoothed heartbeat round-trip time",
        );
        let tasks_running: Gauge =
            registered(&mut registry, "tasks_running", "Tasks running on this node");
        let queue_depth: Gauge = registered(
            &mut registry,
            "queue_depth",
            "Tasks waiting for a worker on this node",
        );
        let backend_up: Family<BackendLabel, Gauge> = registered(
            &mut registry,
            "backend_up",
            "1 when the relaying executor's backend is up (probes and outcomes), else 0",
        );
        let backend_probe_seconds: Family<BackendLabel, Gauge<f64, AtomicU64>> = registered(
            &mut registry,
            "backend_probe_seconds",
            "How long the backend's last health probe took",
        );
        let backend_requests: BackendRequests = registered(
            &mut registry,
            "backend_requests",
            "Requests relayed to the backends, by task type and outcome",
        );
        let (relay_queue_waiting, relay_queue_wait_seconds) = relay_queue(&mut registry);
        let reloads: Family::<OutcomeLabel, Counter> = registered(&mut registry, "reloads", "Config reloads (SIGHUP, triforce reload) by outcome: applied, or refused with the running config untouched");
        for outcome in ["applied", "refused"] {
            let _ = reloads.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        Metrics {
            reloads,
            relay_queue_waiting,
            relay_queue_wait_seconds,
            backend_up,
            backend_probe_seconds,
            backend_requests,
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

    /// The handles the runner writes to.
    pub fn runner(&self) -> RunnerMetrics {
        RunnerMetrics {
            backend_requests: self.backend_requests.clone(),
            relay_queue_waiting: self.relay_queue_waiting.clone(),
            relay_queue_wait_seconds: self.relay_queue_wait_seconds.clone(),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// The relays' queue per key: how many wait now, and how long each waited.
fn relay_queue(registry: &mut Registry) -> (Family<KeyLabel, Gauge>, QueueWaits) {
    let waiting: Family<KeyLabel, Gauge> = registered(
        registry,
        "relay_queue_waiting",
        "Relayed requests waiting for a relay slot on this node, by API key (fair share)",
    );
    let waits = QueueWaits::new_with_constructor(queue_wait_histogram as fn() -> Histogram);
    registry.register(
        "relay_queue_wait_seconds",
        "How long relayed requests waited for a relay slot on this node, by API key",
        waits.clone(),
    );
    (waiting, waits)
}

/// A new metric, registered under `name` with `help`; the registry keeps a handle to the same
/// values.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
