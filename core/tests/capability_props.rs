//! Routing by capability, over random federations: a task's failover order holds only nodes
//! that run its type, have its model on a healthy backend, and are not draining; a node with
//! the model loaded goes first; and a task nobody can run ends at once, with no attempt, for
//! the reason that was missing.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use triforce_core::failover::{ExhaustedReason, FailoverConfig, TaskOutcome};
use triforce_core::federation::{
    BackendState, Capabilities, Capacity, Federation, FederationConfig, Offer, Reconfiguration,
    TaskAction,
};
use triforce_core::membership::{Load, MembershipConfig};
use triforce_core::node::NodeId;
use triforce_core::selection::SelectionPolicy;
use triforce_core::time::Instant;

const MODELS: [&str; 3] = ["llama3", "qwen", "mistral"];
const TYPES: [&str; 2] = ["chat", "echo"];

/// One node's capabilities, from bits: which types it runs, whether its chat backend is up,
/// which models it has and which are loaded, whether it drains.
fn capabilities() -> impl Strategy<Value = Capabilities> {
    (
        any::<[bool; 2]>(),
        any::<bool>(),
        any::<[bool; 3]>(),
        any::<[bool; 3]>(),
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(types, healthy, has, loaded, draining)| {
            let pick = |bits: [bool; 3]| {
                MODELS
                    .iter()
                    .zip(bits)
                    .filter(|(_, on)| *on)
                    .map(|(m, _)| m.to_string())
                    .collect::<Vec<_>>()
            };
            let task_types: Vec<String> = TYPES
                .iter()
                .zip(types)
                .filter(|(_, on)| *on)
                .map(|(t, _)| t.to_string())
                .collect();
            let models = pick(has);
            let loaded = pick(loaded)
                .into_iter()
                .filter(|m| models.contains(m))
                .collect();
            let backends = if task_types.iter().any(|t| t == "chat") {
                vec![BackendState {
                    task_type: "chat".into(),
                    healthy,
                    models,
                    loaded,
                }]
            } else {
                Vec::new()
            };
            Capabilities {
                task_types,
                backends,
                draining,
            }
        })
}

fn id(i: usize) -> NodeId {
    NodeId::new(format!("n{i}")).unwrap()
}

/// A federation of `caps.len()` nodes seen from n0, every peer online after one answer.
fn federation(caps: &[Capabilities], seed: u64) -> Federation {
    let nodes: BTreeMap<NodeId, Capacity> = (0..caps.len())
        .map(|i| {
            let capacity = Capacity {
                cores: 4 + i as u32,
                ram_gb: 16,
                gpu: false,
            };
            (id(i), capacity)
        })
        .collect();
    let mut federation = Federation::new(
        FederationConfig {
            me: id(0),
            settings: Reconfiguration {
                nodes,
                membership: MembershipConfig::default(),
                failover: FailoverConfig::default(),
                selection: SelectionPolicy::default(),
                retry_ratio: 0.5,
                retry_reserve_per_s: 20,
            },
            rng_seed: seed,
            capabilities: caps[0].clone(),
        },
        Instant::from_millis(0),
    );
    federation.handle_timeout(Instant::from_millis(0));
    while let Some(probe) = federation.poll_probe() {
        let index: usize = probe.peer.as_str()[1..].parse().unwrap();
        federation.handle_heartbeat_answer(
            Instant::from_millis(5),
            &probe.peer,
            probe.seq,
            Load::default(),
            Duration::from_millis(5),
            caps[index].clone(),
        );
    }
    federation
}

proptest! {
    #[test]
    fn only_nodes_that_can_run_a_task_get_it_and_warm_ones_first(
        caps in proptest::collection::vec(capabilities(), 1..6),
        task_type in proptest::sample::select(&TYPES[..]),
        model in proptest::option::of(proptest::sample::select(&MODELS[..])),
        seed in any::<u64>(),
    ) {
        let mut federation = federation(&caps, seed);
        let offers: Vec<Offer> = caps.iter().map(|c| c.offer(task_type, model)).collect();
        let task = federation.handle_task(Instant::from_millis(10), task_type, model);
        let actions: Vec<TaskAction> =
            std::iter::from_fn(|| federation.poll_task_action(task)).collect();
        let order = actions.iter().find_map(|a| match a {
            TaskAction::Selected { order, .. } => Some(order.clone()),
            _ => None,
        });
        let best = offers.iter().copied().max().unwrap();
        if best.can_run() {
            let order = order.expect("a task some node can run is routed");
            prop_assert!(!order.is_empty());
            for node in &order {
                let index: usize = node.as_str()[1..].parse().unwrap();
                prop_assert!(offers[index].can_run(), "{node} offers {:?}", offers[index]);
            }
            let runnable = offers.iter().filter(|o| o.can_run()).count();
            prop_assert_eq!(order.len(), runnable, "every node that can run it is in the order");
            if best == Offer::Warm {
                let first: usize = order[0].as_str()[1..].parse().unwrap();
                prop_assert_eq!(offers[first], Offer::Warm, "warm first");
            }
        } else {
            let dispatched = actions.iter().any(|a| matches!(a, TaskAction::Dispatch { .. }));
            prop_assert!(!dispatched, "nobody can run it: no attempt");
            let outcome = federation.poll_task_outcome(task).expect("ends at once");
            let TaskOutcome::AllNodesFailed { reason, .. } = outcome else {
                panic!("ended otherwise: {outcome:?}");
            };
            // The reason names what the best node lacked; draining nodes take no part.
            let best_not_draining = offers
                .iter()
                .copied()
                .filter(|o| *o != Offer::Draining)
                .max();
            let expected = match best_not_draining {
                Some(Offer::NoModel) => Some(ExhaustedReason::NoNodeHasModel),
                Some(Offer::Unhealthy) => Some(ExhaustedReason::BackendsDown),
                Some(Offer::NoType) | None => Some(ExhaustedReason::NoNodeRunsType),
                _ => None,
            };
            prop_assert_eq!(Some(reason), expected);
        }
    }
}
