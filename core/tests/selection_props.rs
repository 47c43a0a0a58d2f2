//! Selection never offers an Offline node, and never a non-GPU node for a GPU task while a GPU
//! node is online.

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
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
        let list = select(&nodes, task_type, &policy, &mut ChaCha8Rng::seed_from_u64(seed));
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
        let again = select(&nodes, task_type, &policy, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert_eq!(list, again);
    }
}
