//! Selection never offers an Offline node, and never a non-GPU node for a GPU task while a GPU
//! node is online. With an affinity key: a key's node stays while the candidates stay, a node
//! that leaves moves only its own keys, and no node over the load bound comes first while
//! another is within it.

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use triforce_core::affinity::AffinityKey;
use triforce_core::node::NodeId;
use triforce_core::selection::{select, Candidate, SelectionPolicy};

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::vec(
        (
            any::<bool>(),
            proptest::option::weighted(0.9, 0.0f64..500.0),
            0u32..50,
            1u32..64,
            any::<bool>(),
            any::<bool>(),
        ),
        0..20,
    )
    .prop_map(|nodes| {
        nodes
            .into_iter()
            .enumerate()
            .map(
                |(i, (online, latency_ms, in_flight, cores, gpu, warm))| Candidate {
                    id: NodeId::new(format!("n{i}")).unwrap(),
                    online,
                    latency_ms,
                    in_flight,
                    cores,
                    gpu,
                    warm,
                },
            )
            .collect()
    })
}

proptest! {
    #[test]
    fn never_offline_and_gpu_first(nodes in candidates(), seed in any::<u64>(), gpu_task in any::<bool>(), strict in any::<bool>()) {
        let policy = SelectionPolicy { gpu_strict: strict, ..SelectionPolicy::default() };
        let task_type = if gpu_task { "gpu_inference" } else { "chat" };
        let list = select(&nodes, task_type, &policy, None, &mut ChaCha8Rng::seed_from_u64(seed));
        let find = |id: &NodeId| nodes.iter().find(|c| &c.id == id).unwrap();
        prop_assert!(list.iter().all(|id| find(id).online));
        let mut unique = list.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), list.len(), "no node twice");
        let gpu_online = nodes.iter().any(|c| c.online && c.gpu);
        if gpu_task && gpu_online {
            prop_assert!(list.iter().all(|id| find(id).gpu));
            prop_assert_eq!(list.len(), nodes.iter().filter(|c| c.online && c.gpu).count());
            let keys: Vec<(bool, f64)> = list.iter().map(|id| (!find(id).warm, find(id).latency_ms.unwrap_or(f64::MAX))).collect();
            prop_assert!(keys.windows(2).all(|w| w[0] <= w[1]), "warm first, then the nearest GPU node");
        } else if gpu_task && strict {
            prop_assert!(list.is_empty());
        } else {
            prop_assert_eq!(list.len(), nodes.iter().filter(|c| c.online).count());
            let keys: Vec<(bool, f64)> = list.iter().map(|id| (!find(id).warm, find(id).cost())).collect();
            prop_assert!(keys.windows(2).all(|w| w[0] <= w[1]), "warm first, then cheapest first");
        }
        // Same seed, same answer.
        let again = select(&nodes, task_type, &policy, None, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert_eq!(list, again);
    }
}

/// Online, non-GPU, cold candidates with loads (in flight per core, this task counted).
fn load(c: &Candidate) -> f64 {
    (f64::from(c.in_flight) + 1.0) / f64::from(c.cores.max(1))
}

proptest! {
    #[test]
    fn affinity_keeps_keys_put_and_loads_bounded(
        nodes in candidates(),
        key in any::<u64>(),
        seed in any::<u64>(),
        leaving in any::<proptest::sample::Index>(),
    ) {
        let mut nodes = nodes;
        for node in &mut nodes {
            node.gpu = false;
            node.warm = false;
        }
        let policy = SelectionPolicy::default();
        let key = Some(AffinityKey(key));
        let pick = |nodes: &[Candidate], seed: u64| {
            select(nodes, "chat", &policy, key, &mut ChaCha8Rng::seed_from_u64(seed))
        };
        let list = pick(&nodes, seed);
        // The key's order does not depend on the draw: the same on every node, every time.
        prop_assert_eq!(&list, &pick(&nodes, seed.wrapping_add(1)));
        let online: Vec<&Candidate> = nodes.iter().filter(|c| c.online).collect();
        prop_assert_eq!(list.len(), online.len());
        if let Some(first) = list.first() {
            let mean = online.iter().map(|c| load(c)).sum::<f64>() / online.len() as f64;
            let bound = mean * policy.affinity_load_factor;
            let first = online.iter().find(|c| &c.id == first).unwrap();
            let any_within = online.iter().any(|c| load(c) <= bound);
            prop_assert!(!any_within || load(first) <= bound, "over the bound while another is within");
        }
        // With equal loads, a node other than the key's home leaving keeps the home.
        let mut even = nodes.clone();
        for node in &mut even {
            node.in_flight = 0;
            node.cores = 4;
            node.online = true;
        }
        let home = pick(&even, seed);
        if even.len() > 1 {
            let gone = leaving.index(even.len());
            if even[gone].id != home[0] {
                let mut rest = even.clone();
                rest[gone].online = false;
                prop_assert_eq!(&pick(&rest, seed)[0], &home[0]);
            }
        }
    }
}
