//! Config changes in the simulator: what a scenario's reloads make of a node's files (the keys
//! of a PSK rotation step, nodes left out), applied by each host to its running node.

use std::time::Duration;

use triforce_core::node::NodeId;
use triforce_net::load::NodeConfig;
use triforce_net::node::Node;

use crate::record::{sim_now, SharedLog};
use crate::scenario::{ConfigState, KeyStep};

/// The federation's key before a rotation.
pub const PSK: &[u8] = b"simulated-federation-psk";
/// The key a PSK rotation moves to.
pub const NEW_PSK: &[u8] = b"simulated-federation-psk-rotated";

/// `base` as a scenario changed it: the keys of one step of a PSK rotation, some nodes left
/// out of the nodes file.
pub fn configured(base: &NodeConfig, state: &ConfigState) -> NodeConfig {
    let (psk, accepted): (&[u8], &[&[u8]]) = match state.keys {
        KeyStep::Old => (PSK, &[]),
        KeyStep::AcceptNew => (PSK, &[NEW_PSK]),
        KeyStep::SignNew => (NEW_PSK, &[PSK]),
        KeyStep::DropOld => (NEW_PSK, &[]),
    };
    let mut federation = base.federation.clone();
    federation
        .nodes
        .retain(|id, _| !state.without.contains(id.as_str()));
    NodeConfig {
        psk: psk.to_vec(),
        accepted_psks: accepted.iter().map(|k| k.to_vec()).collect(),
        federation,
        ..base.clone()
    }
}

/// The host's side of a reload: when the plan changes this node's files, the node reloads
/// them (as SIGHUP would, without the files), from `applied`, the state it started with.
pub async fn apply_config_changes(
    node: Node,
    log: SharedLog,
    base: NodeConfig,
    mut applied: ConfigState,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wanted = log
            .lock()
            .expect("log lock")
            .configs
            .get(&base.me)
            .cloned()
            .unwrap_or_default();
        if wanted == applied {
            continue;
        }
        if let Err(error) = node.reload(configured(&base, &wanted)).await {
            log.lock().expect("log lock").violation(format!(
                "{}: reload to {wanted:?} refused: {error}",
                base.me
            ));
        }
        log.lock().expect("log lock").trace(format!(
            "{} {} reloaded {wanted:?}",
            sim_now().as_millis(),
            base.me
        ));
        applied = wanted;
    }
}

/// The key `node`'s files name for signing now (a rotation may have moved it).
pub fn signing_key(log: &SharedLog, node: &str) -> &'static [u8] {
    let id = NodeId::new(node).expect("valid node id");
    let step = log
        .lock()
        .expect("log lock")
        .configs
        .get(&id)
        .map(|c| c.keys)
        .unwrap_or_default();
    match step {
        KeyStep::Old | KeyStep::AcceptNew => PSK,
        KeyStep::SignNew | KeyStep::DropOld => NEW_PSK,
    }
}
