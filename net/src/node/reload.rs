//! Applying a reloaded config to the running node: checked whole first, then swapped in
//! piece by piece in an order that keeps every request answerable, with nothing half-applied
//! when it is refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use triforce_core::config::{nodes_changed, restart_needed, NeedsRestart, NodesChanged};
use triforce_core::node::NodeId;

use super::shared::machine_config;
use super::Node;
use crate::clock::Clock;
use crate::load::{LoadError, NodeConfig};
use crate::metrics::OutcomeLabel;
use crate::quic::Identity;

/// A part of the config that a layer above the node keeps (the door's API keys): read and
/// checked with the rest of the files at a reload, and applied only once the whole reload
/// holds. The node knows no more of it than that.
pub trait ReloadedPart: Send + Sync {
    /// Reads this part of `config`; the returned change applies it.
    fn prepare(&self, config: &NodeConfig) -> Result<Box<dyn FnOnce() + Send>, LoadError>;
}

/// Why a reload was refused. The running config is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    NeedsRestart(#[from] NeedsRestart),
}

/// What a reload changed, for the log line and the `triforce reload` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub joined: Vec<NodeId>,
    pub left: Vec<NodeId>,
    pub moved: Vec<NodeId>,
    /// The signing key or the set of accepted keys changed.
    pub keys_changed: bool,
    /// Anything in federation.toml changed.
    pub settings_changed: bool,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |ids: &[NodeId]| {
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.joined.is_empty() {
            parts.push(format!("joined: {}", names(&self.joined)));
        }
        if !self.left.is_empty() {
            parts.push(format!("left: {}", names(&self.left)));
        }
        if !self.moved.is_empty() {
            parts.push(format!("new address: {}", names(&self.moved)));
        }
        if self.keys_changed {
            parts.push("keys changed".into());
        }
        if self.settings_changed {
            parts.push("settings changed".into());
        }
        if parts.is_empty() {
            f.write_str("nothing changed")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

impl Node {
    /// Reads the config directory again (nodes, settings, PSK files, the ingress's API keys),
    /// checks all of it, and applies it; or refuses it whole, logging one line that names the
    /// file and the cause. What SIGHUP and `triforce reload` run.
    pub async fn reload_from_files(&self) -> Result<ReloadSummary, ReloadError> {
        let result = self.load_and_apply().await;
        match &result {
            Ok(summary) => tracing::info!(%summary, "reloaded"),
            Err(error) => tracing::warn!(%error, "reload refused; the running config is unchanged"),
        }
        result
    }

    async fn load_and_apply(&self) -> Result<ReloadSummary, ReloadError> {
        let loaded = self.config().load_again().and_then(|config| {
            let keys = match (self.shared.door_keys.get(), config.settings.ingress.listen) {
                (Some(keys), Some(_)) => Some(keys.prepare(&config)?),
                _ => None,
            };
            Ok((config, keys))
        });
        let (config, keys) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                self.count_reload("refused");
                return Err(error.into());
            }
        };
        let summary = self.reload(config).await?;
        if let Some(apply) = keys {
            apply();
        }
        Ok(summary)
    }

    fn count_reload(&self, outcome: &str) {
        let label = OutcomeLabel {
            outcome: outcome.into(),
        };
        self.shared
            .telemetry
            .metrics
            .reloads
            .get_or_create(&label)
            .inc();
    }

    /// Applies `config` (loaded and checked by the caller from the same directory) to the
    /// running node, or refuses it with the running config untouched. Tasks already running
    /// finish under the settings they started with.
    pub async fn reload(&self, config: NodeConfig) -> Result<ReloadSummary, ReloadError> {
        let shared = &self.shared;
        let _one_at_a_time = shared.life.reloading.lock().await;
        let running = shared.config();
        let outcome = restart_needed(
            (running.my_spec(), &running.settings),
            (config.my_spec(), &config.settings),
        );
        self.count_reload(if outcome.is_ok() {
            "applied"
        } else {
            "refused"
        });
        outcome?;
        let summary = summarize(&running, &config);

        // Keys and addresses first, for both directions: a peer that already signs with a
        // new key, or a node that just joined, is accepted from here on.
        shared
            .peers
            .reconfigure(identity(&shared.clock, &config), peer_addrs(&config))
            .await;
        shared.runner.reconfigure(config.settings.clone());
        let machine = machine_config(&config);
        shared
            .federation()
            .handle_reconfigure(shared.clock.now(), machine);
        shared.replace_config(config);
        // Probes for new nodes and the new timing go out now, not at the old next deadline.
        shared.membership_changed.notify_one();
        Ok(summary)
    }

    /// Puts the node in the draining state: it takes no new tasks (peers learn it from its
    /// next heartbeat answer and stop sending), and finishes the ones it runs. It stays up.
    pub fn drain(&self) {
        self.shared.runner.set_drained(true);
    }

    /// Undoes [`Self::drain`]: the node takes tasks again (peers learn it from its next
    /// heartbeat answer). False when the process is shutting down, which nothing undoes.
    pub fn undrain(&self) -> bool {
        if self.shared.runner.is_shutting_down() {
            return false;
        }
        self.shared.runner.set_drained(false);
        true
    }

    pub fn is_draining(&self) -> bool {
        self.shared.runner.is_draining()
    }
}

/// What a reload from `running` to `wanted` changes.
fn summarize(running: &NodeConfig, wanted: &NodeConfig) -> ReloadSummary {
    let NodesChanged {
        joined,
        left,
        moved,
    } = nodes_changed(&running.federation, &wanted.federation);
    ReloadSummary {
        joined,
        left,
        moved,
        keys_changed: (&running.psk, &running.accepted_psks)
            != (&wanted.psk, &wanted.accepted_psks),
        settings_changed: running.settings != wanted.settings,
    }
}

/// The identity a config gives this node: its signing key, the keys it accepts, the nodes'
/// addresses.
pub(super) fn identity(clock: &Arc<dyn Clock>, config: &NodeConfig) -> Identity {
    let timing = &config.settings.timing;
    Identity {
        me: config.me.clone(),
        signing: triforce_core::auth::HmacSha256Key::new(&config.psk),
        keys: config.keyring(),
        window_s: timing.window_s,
        node_ips: config.federation.node_ips(),
        clock: clock.clone(),
        timeout: handshake_timeout(config),
    }
}

/// How long a peer may take to prove itself: a heartbeat interval, within 0.5 to 10 s.
fn handshake_timeout(config: &NodeConfig) -> std::time::Duration {
    let interval_ms = config.settings.timing.heartbeat_interval_ms;
    std::time::Duration::from_millis(interval_ms.clamp(500, 10_000))
}

/// Where each peer listens.
pub(super) fn peer_addrs(config: &NodeConfig) -> BTreeMap<NodeId, SocketAddr> {
    config
        .federation
        .nodes
        .iter()
        .filter(|(id, _)| **id != config.me)
        .map(|(id, spec)| (id.clone(), SocketAddr::new(spec.ip, spec.port)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use triforce_core::config::{Federation, Settings};

    fn config(hetzner_port: u16, settings: &str, accepted: &[&str]) -> NodeConfig {
        let nodes = format!(
            r#"{{"hetzner": {{"ip":"10.10.0.1","port":{hetzner_port},"cores":20,"ram":62,"gpu":null,"role":"master","name":"h"}},
                "backup": {{"ip":"10.10.0.3","port":9000,"cores":28,"ram":64,"gpu":null,"role":"hub","name":"b"}}}}"#
        );
        NodeConfig {
            dir: ".".into(),
            federation: Federation::parse(&nodes).unwrap(),
            settings: Settings::parse(settings).unwrap(),
            me: NodeId::new("hetzner").unwrap(),
            psk: b"0123456789abcdef".to_vec(),
            accepted_psks: accepted.iter().map(|k| k.as_bytes().to_vec()).collect(),
            psk_from_env: false,
        }
    }

    #[test]
    fn a_reload_of_keys_and_settings_says_so() {
        let running = config(9000, "", &[]);
        let live = config(
            9000,
            "[timing]\nheartbeat_interval_ms = 500\n",
            &["fedcba9876543210"],
        );
        let summary = summarize(&running, &live);
        assert!(summary.keys_changed && summary.settings_changed);
        assert_eq!(summary.to_string(), "keys changed; settings changed");
        assert_eq!(summarize(&running, &running).to_string(), "nothing changed");
    }
}
