//! State shared by a node's loops: the federation machine behind its mutex, the verifier's
//! parts behind none or their own, and the I/O handles.

use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use triforce_core::auth::{Authenticator, ReplayCache, SourcePolicy, Verifier, VerifierConfig};
use triforce_core::failover::FailoverConfig;
use triforce_core::federation::{Capacity, Federation, FederationConfig, Reconfiguration};
use triforce_core::membership::MembershipConfig;
use triforce_core::selection::SelectionPolicy;

use crate::clock::Clock;
use crate::exec::Runner;
use crate::load::NodeConfig;
use crate::log_limit::LogLimiter;
use crate::metrics::Metrics;
use crate::quic::Peers;

/// The longest a quick task's separate acknowledgement is held back; see
/// [`Shared::accept_grace`].
const ACCEPT_GRACE_MAX: Duration = Duration::from_millis(5);

/// Room in a frame for what surrounds a body: ids, type, priority, an error message.
const FRAME_ENVELOPE_BYTES_MAX: usize = 4096;

/// What a node's loops share, grouped by what each part serves: routing (the federation
/// machine), authentication, telemetry and the node's life (config generations, drain,
/// shutdown); the runner, the peers and the QUIC endpoint beside them.
pub struct Shared {
    /// This node's id, which no reload changes.
    pub me: triforce_core::node::NodeId,
    /// The config as of the last reload; a task reads it once and keeps that copy.
    config: ArcSwap<NodeConfig>,
    pub clock: Arc<dyn Clock>,
    /// Held only briefly: no lock is kept across an await, and nothing expensive (a MAC, a
    /// JSON parse) runs under it.
    federation: Mutex<Federation>,
    /// Wakes the heartbeat driver when membership has new work outside its own timers.
    pub membership_changed: Notify,
    pub auth: Auth,
    pub telemetry: Telemetry,
    pub life: Lifecycle,
    /// The door's API keys, once its router is built; a reload replaces them.
    pub door_keys: std::sync::OnceLock<Arc<dyn super::ReloadedPart>>,
    /// The door's usage meter, once its router is built with one: read by the signed usage
    /// route, so `triforce usage --all` can ask every door.
    pub usage: std::sync::OnceLock<Arc<crate::usage::UsageMeter>>,
    pub runner: Arc<Runner>,
    pub peers: Arc<Peers>,
    pub endpoint: quinn::Endpoint,
}

/// Who may talk to the node: the signature check and what it remembers.
pub struct Auth {
    /// Checks signatures without a lock: the MAC over a body runs in the request's own task.
    /// A reload swaps in another (new keys, new node addresses).
    authenticator: ArcSwap<Authenticator>,
    /// Held only for the insert of an authenticated request.
    pub replay: Mutex<ReplayCache>,
    /// Limits the log lines of refused requests and peers, per reason.
    pub refusal_log: LogLimiter,
}

/// What the node tells about itself: metrics, the dashboard's journal, the observer.
pub struct Telemetry {
    pub metrics: Metrics,
    /// Recent task outcomes and membership events, for the dashboard.
    pub journal: super::Journal,
    pub observer: Option<Arc<dyn super::Observer>>,
}

/// The node's life: reloads, drain and shutdown.
pub struct Lifecycle {
    /// Counts reloads applied; connections served from peers watch it to check that their
    /// peer is still configured and its proof still holds.
    pub generation: watch::Sender<u64>,
    /// Serializes reloads (each reads the running config, then replaces it).
    pub reloading: tokio::sync::Mutex<()>,
    /// Peers that got a heartbeat answer saying this node drains, so a stopping node knows
    /// when every peer has stopped sending it work.
    pub told_draining: Mutex<std::collections::BTreeSet<triforce_core::node::NodeId>>,
    pub shutdown: watch::Sender<bool>,
    /// Task streams from peers still being answered; shutdown waits for them to deliver.
    pub task_streams: std::sync::atomic::AtomicUsize,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: NodeConfig,
        clock: Arc<dyn Clock>,
        rng_seed: u64,
        runner: Arc<Runner>,
        peers: Arc<Peers>,
        endpoint: quinn::Endpoint,
        metrics: Metrics,
        shutdown: watch::Sender<bool>,
        membership_changed: Notify,
        observer: Option<Arc<dyn super::Observer>>,
    ) -> Self {
        let (authenticator, replay) = verifier(&config).into_parts();
        let federation = Federation::new(
            FederationConfig {
                me: config.me.clone(),
                settings: machine_config(&config),
                rng_seed,
                capabilities: runner.capabilities(),
            },
            clock.now(),
        );
        Shared {
            me: config.me.clone(),
            federation: Mutex::new(federation),
            membership_changed,
            auth: Auth {
                authenticator: ArcSwap::from_pointee(authenticator),
                replay: Mutex::new(replay),
                refusal_log: LogLimiter::default(),
            },
            telemetry: Telemetry {
                metrics,
                journal: super::Journal::default(),
                observer,
            },
            life: Lifecycle {
                generation: watch::Sender::new(0),
                reloading: tokio::sync::Mutex::new(()),
                told_draining: Mutex::new(std::collections::BTreeSet::new()),
                shutdown,
                task_streams: std::sync::atomic::AtomicUsize::new(0),
            },
            door_keys: std::sync::OnceLock::new(),
            usage: std::sync::OnceLock::new(),
            config: ArcSwap::from_pointee(config),
            clock,
            runner,
            peers,
            endpoint,
        }
    }

    /// The config as of the last reload.
    pub fn config(&self) -> Arc<NodeConfig> {
        self.config.load_full()
    }

    /// The signature checker as of the last reload.
    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.auth.authenticator.load_full()
    }

    /// Replaces the config and the signature checker together with a reload's; the replay
    /// cache keeps every remembered signature (see [`ReplayCache::reshare`]).
    pub(super) fn replace_config(&self, config: NodeConfig) {
        let (authenticator, _) = verifier(&config).into_parts();
        let signers = authenticator.signer_count();
        self.auth.authenticator.store(Arc::new(authenticator));
        self.auth
            .replay
            .lock()
            .expect("no code panics holding the replay lock")
            .reshare(signers);
        self.config.store(Arc::new(config));
        self.life
            .generation
            .send_modify(|generation| *generation += 1);
    }

    pub(super) fn told_draining(&self, peer: &triforce_core::node::NodeId) {
        self.life
            .told_draining
            .lock()
            .expect("no code panics holding the draining lock")
            .insert(peer.clone());
    }

    /// Whether every peer this node sees online has been told that it drains.
    pub(super) fn every_peer_told_draining(&self) -> bool {
        let told = self
            .life
            .told_draining
            .lock()
            .expect("no code panics holding the draining lock")
            .clone();
        self.federation()
            .nodes()
            .iter()
            .filter(|view| view.id != self.me && view.is_online())
            .all(|view| told.contains(&view.id))
    }

    /// The federation machine, with this node's runner load brought up to date (selection and
    /// status read it).
    pub fn federation(&self) -> MutexGuard<'_, Federation> {
        // Read before the lock: the runner has its own.
        let load = self.runner.load();
        let mut federation = self
            .federation
            .lock()
            .expect("no code panics while holding the federation lock");
        federation.handle_local_load(load);
        federation
    }

    pub fn progress_interval(&self) -> Duration {
        Duration::from_millis(self.config().settings.timing.progress_interval_ms)
    }

    /// How long a task taken from a peer may take to finish before it is acknowledged
    /// separately (a quicker one is acknowledged by its answer): 5 ms, or a tenth of the
    /// shortest accept timeout if that is less, so a sender configured alike never gives up
    /// first.
    pub fn accept_grace(&self) -> Duration {
        let accept_min = Duration::from_millis(self.config().settings.timing.accept_timeout_min_ms);
        (accept_min / 10).min(ACCEPT_GRACE_MAX)
    }

    /// Largest frame accepted from a peer: a task body plus room for the envelope.
    pub fn frame_bytes_max(&self) -> usize {
        Self::frame_bytes_max_for(&self.config())
    }

    pub fn frame_bytes_max_for(config: &NodeConfig) -> usize {
        config.settings.limits.body_bytes_max + FRAME_ENVELOPE_BYTES_MAX
    }

    /// Runs `log` for a refusal of kind `reason` unless that reason has logged its share of
    /// lines lately; a line that follows held-back ones says how many.
    pub fn refusal(&self, reason: &'static str, log: impl FnOnce()) {
        if let Some(suppressed) = self.auth.refusal_log.admit(reason, self.clock.now()) {
            if suppressed > 0 {
                tracing::warn!(reason, suppressed, "refusals not logged (see the metrics)");
            }
            log();
        }
    }

    /// Counts a connection turned away for `reason` (see [`crate::metrics::refusal`]) and logs
    /// it within the per-reason budget.
    pub fn refuse_connection(&self, reason: &'static str, log: impl FnOnce()) {
        self.telemetry
            .metrics
            .connection_refusals
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: reason.into(),
            })
            .inc();
        self.refusal(reason, log);
    }

    /// The `type` label of a task type in metrics: configured and built-in types by name,
    /// every other one as `other`, so clients cannot make up label values without bound.
    pub fn type_label(&self, task_type: &str) -> String {
        let config = self.config();
        let settings = &config.settings;
        let known = settings.runs(task_type)
            || triforce_core::relay::DOOR_TASK_TYPES.contains(&task_type)
            || settings
                .selection
                .gpu_task_types
                .iter()
                .any(|t| t == task_type);
        if known {
            task_type.to_string()
        } else {
            "other".to_string()
        }
    }
}

/// The verifier a config describes: its keys, its nodes' addresses, its window.
fn verifier(config: &NodeConfig) -> Verifier {
    let settings = &config.settings;
    Verifier::new(
        config.keyring(),
        SourcePolicy::new(
            config.federation.node_ips(),
            settings.auth.allowed_clients.clone(),
        ),
        VerifierConfig {
            window_s: settings.timing.window_s,
            replay_entries_max: settings.limits.replay_entries_max,
        },
    )
}

/// What the federation machine takes from a config, at start and at each reload.
pub(super) fn machine_config(config: &NodeConfig) -> Reconfiguration {
    let settings = &config.settings;
    let timing = &settings.timing;
    let nodes = config
        .federation
        .nodes
        .iter()
        .map(|(id, spec)| {
            let capacity = Capacity {
                cores: spec.cores,
                ram_gb: spec.ram,
                gpu: spec.has_gpu(),
            };
            (id.clone(), capacity)
        })
        .collect();
    Reconfiguration {
        nodes,
        membership: MembershipConfig {
            interval: timing.heartbeat_interval(),
            misses_max: timing.misses_max,
        },
        failover: FailoverConfig {
            accept_timeout: Duration::from_millis(timing.accept_timeout_ms),
            accept_timeout_min: Duration::from_millis(timing.accept_timeout_min_ms),
            progress_timeout: Duration::from_millis(
                timing.progress_interval_ms * u64::from(timing.progress_misses_max),
            ),
            attempt_timeout: Duration::from_millis(timing.attempt_timeout_ms),
            deadline: Duration::from_millis(timing.task_deadline_ms),
        },
        selection: SelectionPolicy {
            gpu_task_types: settings.selection.gpu_task_types.iter().cloned().collect(),
            gpu_strict: settings.selection.gpu_strict,
            affinity: settings.selection.affinity,
            affinity_load_factor: settings.selection.affinity_load_factor,
        },
        retry_ratio: settings.limits.retry_ratio,
        retry_reserve_per_s: settings.limits.retry_reserve,
    }
}
