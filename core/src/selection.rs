//! Where a task should run: the seed's three strategies as one pure function.
//!
//! 1. Specialty: a task type that needs a GPU goes to GPU nodes, nearest first (the seed's
//!    `min(gpu_nodes, key=latency)`). Only when no GPU node is online does it fall back to the
//!    rest, as the seed does; in strict mode it is refused instead.
//! 2. and 3. Latency and capacity: everything else is ordered by
//!    `cost = (latency_ms + 1) * (in_flight + 1) / cores`.
//!    The seed's `load * latency` ties every idle node at 0 and then ignores latency; the `+ 1`s
//!    keep both signals alive (an idle near node beats an idle far one; a busy near node loses to
//!    an idle far one once its queue outweighs the extra round trip), and dividing by cores makes
//!    load relative to capacity. Equal costs are broken by the caller's seeded RNG, so ties spread
//!    work instead of piling on the first node in id order.
//!
//! Among the nodes that can run a task, those with its model already loaded (`warm`) come first,
//! then the order above.
//!
//! The result is the failover order. It never contains a node that is not Online.

use std::collections::BTreeSet;

use rand_core::RngCore;

use crate::affinity::{affinity_order, AffinityKey, Loaded};
use crate::node::NodeId;

/// One node as selection sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: NodeId,
    pub online: bool,
    /// Smoothed round-trip time; 0 for the local node, `None` while unmeasured (costs most).
    pub latency_ms: Option<f64>,
    /// Running plus queued tasks, as best known.
    pub in_flight: u32,
    pub cores: u32,
    pub gpu: bool,
    /// The task's model is loaded there: it answers without a load delay, so it goes first.
    pub warm: bool,
}

impl Candidate {
    /// The general cost; lower is better.
    pub fn cost(&self) -> f64 {
        let latency = self.latency_or_worst();
        (latency + 1.0) * (f64::from(self.in_flight) + 1.0) / f64::from(self.cores.max(1))
    }
}

impl Candidate {
    /// The latency for ordering: unmeasured or nonsense sorts last.
    fn latency_or_worst(&self) -> f64 {
        match self.latency_ms {
            Some(ms) if ms.is_finite() => ms.max(0.0),
            _ => f64::MAX,
        }
    }
}

/// Which task types need a GPU, what to do when none is online, and session affinity.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionPolicy {
    pub gpu_task_types: BTreeSet<String>,
    /// Refuse a GPU task when no GPU node is online, instead of the seed's fallback.
    pub gpu_strict: bool,
    /// Whether a task with an affinity key goes to the key's node (see [`crate::affinity`]).
    pub affinity: bool,
    /// A node over this factor × the candidates' mean load is passed over for its keys.
    pub affinity_load_factor: f64,
}

impl Default for SelectionPolicy {
    fn default() -> Self {
        SelectionPolicy {
            gpu_task_types: BTreeSet::from(["gpu_inference".to_string()]),
            gpu_strict: false,
            affinity: true,
            affinity_load_factor: 1.5,
        }
    }
}

impl SelectionPolicy {
    pub fn needs_gpu(&self, task_type: &str) -> bool {
        self.gpu_task_types.contains(task_type)
    }
}

/// The ordered failover list for a task of `task_type`, with `affinity` when the task belongs
/// to a conversation. Empty when no node can take it.
pub fn select(
    candidates: &[Candidate],
    task_type: &str,
    policy: &SelectionPolicy,
    affinity: Option<AffinityKey>,
    rng: &mut impl RngCore,
) -> Vec<NodeId> {
    // A random key per candidate, drawn in input order, breaks ties reproducibly.
    let mut online: Vec<(&Candidate, u64)> = candidates
        .iter()
        .filter(|c| c.online)
        .map(|c| (c, rng.next_u64()))
        .collect();
    if policy.needs_gpu(task_type) {
        let any_gpu = online.iter().any(|(c, _)| c.gpu);
        if any_gpu {
            online.retain(|(c, _)| c.gpu);
            if let Some(key) = affinity.filter(|_| policy.affinity) {
                return by_affinity(&online, key, policy.affinity_load_factor);
            }
            online.sort_by(|(a, ta), (b, tb)| {
                b.warm
                    .cmp(&a.warm)
                    .then(a.latency_or_worst().total_cmp(&b.latency_or_worst()))
                    .then(a.cost().total_cmp(&b.cost()))
                    .then(ta.cmp(tb))
            });
            return online.into_iter().map(|(c, _)| c.id.clone()).collect();
        }
        if policy.gpu_strict {
            return Vec::new();
        }
    }
    if let Some(key) = affinity.filter(|_| policy.affinity) {
        return by_affinity(&online, key, policy.affinity_load_factor);
    }
    online.sort_by(|(a, ta), (b, tb)| {
        b.warm
            .cmp(&a.warm)
            .then(a.cost().total_cmp(&b.cost()))
            .then(ta.cmp(tb))
    });
    online.into_iter().map(|(c, _)| c.id.clone()).collect()
}

/// Warm nodes first, as always; within each group, the key's order with bounded loads (load:
/// in-flight tasks per core, counting this one).
fn by_affinity(online: &[(&Candidate, u64)], key: AffinityKey, load_factor: f64) -> Vec<NodeId> {
    let mut order = Vec::with_capacity(online.len());
    for warm in [true, false] {
        let group: Vec<Loaded> = online
            .iter()
            .filter(|(c, _)| c.warm == warm)
            .map(|(c, _)| Loaded {
                id: &c.id,
                load: (f64::from(c.in_flight) + 1.0) / f64::from(c.cores.max(1)),
            })
            .collect();
        order.extend(
            affinity_order(key, &group, load_factor)
                .into_iter()
                .cloned(),
        );
    }
    order
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn node(id: &str, latency_ms: f64, in_flight: u32, cores: u32, gpu: bool) -> Candidate {
        Candidate {
            id: NodeId::new(id).unwrap(),
            online: true,
            latency_ms: Some(latency_ms),
            in_flight,
            cores,
            gpu,
            warm: false,
        }
    }

    fn ids(list: Vec<NodeId>) -> Vec<String> {
        list.into_iter().map(String::from).collect()
    }

    #[test]
    fn the_seeds_topology() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let policy = SelectionPolicy::default();
        let nodes = [
            node("hetzner", 0.0, 0, 20, false),
            node("backup", 24.0, 0, 28, false),
            node("zombie-pc", 33.0, 0, 16, true),
        ];
        assert_eq!(
            ids(select(&nodes, "gpu_inference", &policy, None, &mut rng)),
            ["zombie-pc"]
        );
        assert_eq!(
            ids(select(&nodes, "chat", &policy, None, &mut rng)),
            ["hetzner", "backup", "zombie-pc"]
        );
        // Latency still matters between idle nodes, which `load * latency` would tie at 0.
        let busy_master = [node("hetzner", 0.0, 40, 20, false), nodes[1].clone()];
        assert_eq!(
            ids(select(&busy_master, "chat", &policy, None, &mut rng)),
            ["backup", "hetzner"]
        );
    }

    #[test]
    fn gpu_fallback_and_strict_mode() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut zombie = node("zombie-pc", 33.0, 0, 16, true);
        zombie.online = false;
        let nodes = [node("hetzner", 0.0, 0, 20, false), zombie];
        let mut policy = SelectionPolicy::default();
        assert_eq!(
            ids(select(&nodes, "gpu_inference", &policy, None, &mut rng)),
            ["hetzner"]
        );
        policy.gpu_strict = true;
        assert!(select(&nodes, "gpu_inference", &policy, None, &mut rng).is_empty());
    }
}
