//! The seed's status and health answers.

use serde_json::{json, Map, Value};
use triforce_core::federation::Capabilities;

use super::Node;

/// `{nodes: {NAME: {online, latency_ms, ..., task_types, backends}}, total_cores, total_ram_gb}`:
/// totals over online nodes, this one included. `online` and `state` are the federation
/// machine's own words; `task_types` and `backends` what the node last advertised (null
/// before its first heartbeat answer).
pub fn status_json(node: &Node) -> Value {
    let shared = &node.shared;
    let config = shared.config();
    let (views, capabilities) = {
        let federation = shared.federation();
        let views = federation.nodes();
        let capabilities: Vec<Option<Capabilities>> = views
            .iter()
            .map(|v| federation.capabilities(&v.id).cloned())
            .collect();
        (views, capabilities)
    };
    let mut nodes = Map::new();
    let mut total_cores = 0u64;
    let mut total_ram = 0u64;
    for (view, capabilities) in views.into_iter().zip(capabilities) {
        let Some(spec) = config.spec(&view.id) else {
            continue;
        };
        if view.is_online() {
            total_cores += u64::from(spec.cores);
            total_ram += u64::from(spec.ram);
        }
        let (task_types, backends) = match &capabilities {
            Some(caps) => (json!(caps.task_types), backends_json(caps)),
            None => (Value::Null, Value::Null),
        };
        nodes.insert(
            view.id.to_string(),
            json!({"online": view.is_online(), "latency_ms": view.latency_ms.map(|ms| ms.round() as u64),
                   "state": view.state.as_str(), "misses": view.misses,
                   "in_flight": view.reported_in_flight, "queued": view.reported_queued,
                   "gpu": spec.gpu, "role": spec.role, "name": spec.name,
                   "cores": spec.cores, "ram_gb": spec.ram, "task_types": task_types, "backends": backends}),
        );
    }
    json!({"node": config.me.as_str(), "nodes": nodes, "total_cores": total_cores, "total_ram_gb": total_ram})
}

/// `{"<task type>": {healthy, models, loaded}}` for a node's relaying executors.
fn backends_json(capabilities: &Capabilities) -> Value {
    let backends: Map<String, Value> = capabilities
        .backends
        .iter()
        .map(|b| {
            let state = json!({"healthy": b.healthy, "models": b.models, "loaded": b.loaded});
            (b.task_type.clone(), state)
        })
        .collect();
    Value::Object(backends)
}

/// This node's health and load.
pub fn health_json(node: &Node) -> Value {
    let load = node.shared.runner.load();
    json!({"node": node.id().as_str(), "status": "ok", "load": load,
        "draining": node.is_draining(), "unix_s": node.shared.clock.unix_s()})
}
