//! The seed's status and health answers.

use serde_json::{json, Map, Value};
use triforce_core::membership::PeerState;

use super::Node;

/// `{nodes: {NAME: {online, latency_ms, ...}}, total_cores, total_ram_gb}`: totals over online
/// nodes, this one included.
pub fn status_json(node: &Node) -> Value {
    let shared = &node.shared;
    let config = &shared.config;
    let me = &config.me;
    let my_spec = config.my_spec();
    let load = shared.runner.load();
    let mut nodes = Map::new();
    let mut total_cores = u64::from(my_spec.cores);
    let mut total_ram = u64::from(my_spec.ram);
    nodes.insert(
        me.to_string(),
        json!({"online": true, "latency_ms": 0, "state": "self", "in_flight": load.in_flight, "queued": load.queued,
               "gpu": my_spec.gpu, "role": my_spec.role, "name": my_spec.name}),
    );
    let machines = shared.machines();
    for (id, view) in machines.membership.peers() {
        let Some(spec) = config.spec(id) else {
            continue;
        };
        let online = view.state == PeerState::Online;
        if online {
            total_cores += u64::from(spec.cores);
            total_ram += u64::from(spec.ram);
        }
        let state = match view.state {
            PeerState::Online => "online",
            PeerState::Offline => "offline",
            PeerState::Unknown => "unknown",
        };
        nodes.insert(
            id.to_string(),
            json!({"online": online, "latency_ms": view.latency_ms.map(|ms| ms.round() as u64), "state": state,
                   "misses": view.misses, "in_flight": view.load.map(|l| l.in_flight), "queued": view.load.map(|l| l.queued),
                   "gpu": spec.gpu, "role": spec.role, "name": spec.name}),
        );
    }
    json!({"node": me.as_str(), "nodes": nodes, "total_cores": total_cores, "total_ram_gb": total_ram})
}

/// This node's health and load.
pub fn health_json(node: &Node) -> Value {
    let load = node.shared.runner.load();
    json!({"node": node.id().as_str(), "status": "ok", "load": load, "unix_s": node.shared.clock.unix_s()})
}
