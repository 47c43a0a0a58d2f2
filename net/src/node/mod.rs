//! The node: one process's share of the federation.
//!
//! Three loops run on tokio around core's federation machine, which lives behind its mutex in
//! [`Shared`]: the heartbeat driver ([`heartbeats`]), the QUIC server that answers peers
//! ([`serve`]), and per submitted task an attempt driver ([`route`]). They move bytes, run
//! executors and sleep until the machine's next timeout; every decision is the machine's. The
//! HTTP shim (`crate::http`) calls into [`Node`].

mod answer;
mod attempts;
mod capabilities;
mod heartbeats;
mod journal;
mod reload;
mod route;
mod serve;
mod shared;
mod status;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use triforce_core::node::NodeId;

pub use crate::observer::Observer;
pub use answer::outcome_body;
pub use journal::{EventEntry, Journal, TaskEntry};
pub use reload::{ReloadError, ReloadSummary, ReloadedPart};
pub use route::Submitted;
pub use shared::Shared;
pub use status::{health_json, status_json};

use crate::clock::Clock;
use crate::exec::{HttpBackends, Runner};
use crate::load::NodeConfig;
use crate::metrics::Metrics;
use crate::quic::{client_config, server_config, Peers};

/// A running node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    pub(crate) shared: Arc<Shared>,
}

/// What a node runs on: the socket, the async runtime quinn uses, the clock and the seeds.
pub struct NodeIo {
    pub socket: Arc<dyn quinn::AsyncUdpSocket>,
    pub runtime: Arc<dyn quinn::Runtime>,
    pub clock: Arc<dyn Clock>,
    /// Seeds selection's tie-breaking RNG.
    pub rng_seed: u64,
    /// Seeds quinn's connection ids; `None` draws them from the OS (production).
    pub quic_seed: Option<[u8; 32]>,
    /// Sees the node's decisions (simulator, tests); `None` in production.
    pub observer: Option<Arc<dyn Observer>>,
    /// How executors reach their backends; `None` is the OS's TCP (production).
    pub dial: Option<Arc<dyn crate::exec::Dial>>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("QUIC endpoint: {0}")]
    Endpoint(std::io::Error),
}

impl Node {
    /// Starts the node's QUIC side on `udp` and its background loops, on real time. The HTTP
    /// shim is served separately (see `crate::http::serve`), so callers choose how to bind it.
    pub fn start(
        config: NodeConfig,
        udp: UdpSocket,
        clock: Arc<dyn Clock>,
        rng_seed: u64,
    ) -> Result<Self, StartError> {
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let socket = runtime.wrap_udp_socket(udp).map_err(StartError::Endpoint)?;
        let io = NodeIo {
            socket,
            runtime,
            clock,
            rng_seed,
            quic_seed: None,
            observer: None,
            dial: None,
        };
        Self::start_on(config, io)
    }

    /// Starts the node on any UDP socket and runtime (quinn's seam): the simulator passes
    /// turmoil's socket and a fixed `quic_seed`, so one seed gives one run.
    pub fn start_on(config: NodeConfig, io: NodeIo) -> Result<Self, StartError> {
        let NodeIo {
            socket,
            runtime,
            clock,
            rng_seed,
            quic_seed,
            observer,
            dial,
        } = io;
        let timing = config.settings.timing.clone();
        let idle_ms = (timing.heartbeat_interval_ms * 3).clamp(1_000, 60_000);
        let frame_bytes_max = Shared::frame_bytes_max_for(&config);
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config.rng_seed(quic_seed);
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server_config(idle_ms, frame_bytes_max)),
            socket,
            runtime,
        )
        .map_err(StartError::Endpoint)?;
        endpoint.set_default_client_config(client_config(idle_ms, frame_bytes_max));

        let identity = reload::identity(&clock, &config);
        let peers = Peers::new(endpoint.clone(), identity, reload::peer_addrs(&config));
        let spec = config.my_spec().clone();
        let metrics = Metrics::new();
        let runner = Runner::new(
            config.settings.clone(),
            spec.cores,
            spec.ram,
            spec.has_gpu(),
            dial.map_or_else(HttpBackends::default, HttpBackends::with_dial),
            observer.clone(),
            metrics.runner(),
        );
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared::new(
            config,
            clock,
            rng_seed,
            runner,
            peers,
            endpoint,
            metrics,
            shutdown,
            Notify::new(),
            observer,
        ));
        tokio::spawn(heartbeats::run(shared.clone()));
        tokio::spawn(serve::run(shared.clone()));
        tokio::spawn(capabilities::run(shared.clone()));
        Ok(Node { shared })
    }

    pub fn id(&self) -> &NodeId {
        &self.shared.me
    }

    /// The config as of the last reload.
    pub fn config(&self) -> Arc<NodeConfig> {
        self.shared.config()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.telemetry.metrics
    }

    /// Every model an online node's healthy backend serves, with those nodes' ids.
    pub fn models_served(&self) -> Vec<(String, Vec<String>)> {
        named(self.shared.federation().models())
    }

    /// Every model loaded in memory on an online node's healthy backend, with its nodes.
    pub fn models_loaded(&self) -> Vec<(String, Vec<String>)> {
        named(self.shared.federation().loaded_models())
    }

    /// What this node believes about every peer, in node id order.
    pub fn peer_views(&self) -> Vec<(NodeId, triforce_core::membership::PeerView)> {
        let federation = self.shared.federation();
        federation
            .membership()
            .peers()
            .map(|(id, view)| (id.clone(), view))
            .collect()
    }

    /// Stops taking tasks, waits up to `drain` for running ones, then closes QUIC.
    /// Returns whether every task finished in time.
    pub async fn shutdown(&self, drain: Duration) -> bool {
        self.shared.runner.stop_accepting();
        let until = tokio::time::Instant::now() + drain;
        let mut drained = self.shared.runner.drain(drain).await;
        // Peers learn that this node drains from their next heartbeat; until they have, they
        // may still pick it (and fail over when it refuses). Waiting for that, within one
        // heartbeat interval, lets a rolling restart go by without a refused attempt.
        let told_by = (tokio::time::Instant::now()
            + self.config().settings.timing.heartbeat_interval())
        .min(until);
        while !self.shared.every_peer_told_draining() && tokio::time::Instant::now() < told_by {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Results still on their way to the peers that asked for them go out before QUIC closes.
        while self
            .shared
            .life
            .task_streams
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
        {
            if tokio::time::Instant::now() >= until {
                drained = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.shared.life.shutdown.send(true);
        self.shared.endpoint.close(0u32.into(), b"shutting down");
        drained
    }

    /// Resolves when [`Self::shutdown`] has been called.
    pub async fn stopped(&self) {
        let mut rx = self.shared.life.shutdown.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// Models with their nodes' names.
fn named(models: std::collections::BTreeMap<String, Vec<NodeId>>) -> Vec<(String, Vec<String>)> {
    models
        .into_iter()
        .map(|(model, nodes)| (model, nodes.iter().map(ToString::to_string).collect()))
        .collect()
}
