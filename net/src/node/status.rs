//! The seed's status and health answers.

use serde_json::{json, Map, Value};

use super::Node;

/// `{nodes: {NAME: {online, latency_ms, ...}}, total_cores, total_ram_gb}`: totals over online
/// nodes, this one included. `online` and `state` are the federation machine's own words.
pub fn status_json(node: &Node) -> Value {
    let shared = &node.shared;
    let config = &shared.config;
    let views = shared.federation().nodes();
    let mut nodes = Map::new();
    let mut total_cores = 0u64;
    let mut total_ram = 0u64;
    for view in views {
        let Some(spec) = config.spec(&view.id) else {
            continue;
        };
        if view.is_online() {
            total_cores += u64::from(spec.cores);
            total_ram += u64::from(spec.ram);
        }
        nodes.insert(
            view.id.to_string(),
            json!({"online": view.is_online(), "latency_ms": view.latency_ms.map(|ms| ms.round() as u64),
                   "state": view.state.as_str(), "misses": view.misses,
                   "in_flight": view.reported_in_flight, "queued": view.reported_queued,
                   "gpu": spec.gpu, "role": spec.role, "name": spec.name}),
        );
    }
    json!({"node": config.me.as_str(), "nodes": nodes, "total_cores": total_cores, "total_ram_gb": total_ram})
}

/// This node's health and load.
pub fn health_json(node: &Node) -> Value {
    let load = node.shared.runner.load();
    json!({"node": node.id().as_str(), "status": "ok", "load": load, "unix_s": node.shared.clock.unix_s()})
}
