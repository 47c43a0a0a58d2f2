//! The federation machine: selection over its own view, load from dispatched attempts, and
//! the miss rule for failed attempts, all decided in one place.

use std::collections::BTreeMap;
use std::time::Duration;

use triforce_core::failover::ExhaustedReason;
use triforce_core::failover::{FailoverConfig, TaskOutcome};
use triforce_core::federation::{
    BackendState, Capabilities, Capacity, Federation, FederationConfig, NodeState, Reconfiguration,
    TaskAction, TaskEvent, TaskHandle,
};
use triforce_core::json::RawJson;
use triforce_core::membership::{Load, MembershipConfig};
use triforce_core::node::NodeId;
use triforce_core::selection::SelectionPolicy;
use triforce_core::time::Instant;

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// The seed's three nodes, seen from hetzner.
fn federation() -> Federation {
    let capacity = |cores, gpu| Capacity {
        cores,
        ram_gb: 32,
        gpu,
    };
    let nodes = BTreeMap::from([
        (id("hetzner"), capacity(20, false)),
        (id("backup"), capacity(28, false)),
        (id("zombie-pc"), capacity(16, true)),
    ]);
    Federation::new(
        FederationConfig {
            me: id("hetzner"),
            settings: Reconfiguration {
                nodes,
                membership: MembershipConfig::default(),
                failover: FailoverConfig::default(),
                selection: SelectionPolicy::default(),
                retry_ratio: 0.2,
                retry_reserve_per_s: 10,
            },
            rng_seed: 7,
            capabilities: runs(&["chat", "gpu_inference", "echo"]),
        },
        at(0),
    )
}

fn runs(types: &[&str]) -> Capabilities {
    Capabilities {
        task_types: types.iter().map(|t| t.to_string()).collect(),
        backends: Vec::new(),
        draining: false,
    }
}

/// Answers every probe due at `now` after `rtt`, so every peer is online and measured; each
/// peer advertises `capabilities(peer)`.
fn answer_probes_with(
    federation: &mut Federation,
    now: u64,
    rtt: Duration,
    capabilities: impl Fn(&str) -> Capabilities,
) {
    federation.handle_timeout(at(now));
    while let Some(probe) = federation.poll_probe() {
        federation.handle_heartbeat_answer(
            at(now + rtt.as_millis() as u64),
            &probe.peer,
            probe.seq,
            Load::default(),
            rtt,
            capabilities(probe.peer.as_str()),
        );
    }
}

/// Every peer answers and runs what this node runs.
fn answer_probes(federation: &mut Federation, now: u64, rtt: Duration) {
    answer_probes_with(federation, now, rtt, |_| {
        runs(&["chat", "gpu_inference", "echo"])
    });
}

fn drain(federation: &mut Federation, task: TaskHandle) -> Vec<TaskAction> {
    std::iter::from_fn(|| federation.poll_task_action(task)).collect()
}

fn dispatched_to(actions: &[TaskAction]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            TaskAction::Dispatch { node, .. } => Some(node.to_string()),
            _ => None,
        })
        .collect()
}

fn view(federation: &Federation, name: &str) -> triforce_core::federation::NodeView {
    federation
        .nodes()
        .into_iter()
        .find(|v| v.id == id(name))
        .unwrap()
}

#[test]
fn a_gpu_task_goes_to_the_gpu_node_and_counts_as_its_load_until_answered() {
    let mut federation = federation();
    answer_probes(&mut federation, 0, Duration::from_millis(30));
    let task = federation.handle_task(at(100), "gpu_inference", None);
    let actions = drain(&mut federation, task);
    assert!(
        matches!(&actions[0], TaskAction::Selected { order, gpu_online: true } if order == &[id("zombie-pc")])
    );
    assert_eq!(dispatched_to(&actions), ["zombie-pc"]);
    assert_eq!(view(&federation, "zombie-pc").load(), 1);

    let result = RawJson::parse_str("{\"ok\":true}").unwrap();
    federation.handle_task_event(
        at(150),
        task,
        &id("zombie-pc"),
        TaskEvent::Answer(Ok(result)),
    );
    assert!(drain(&mut federation, task).is_empty());
    let outcome = federation.poll_task_outcome(task).unwrap();
    assert!(matches!(outcome, TaskOutcome::Completed { ref node, .. } if node == &id("zombie-pc")));
    assert_eq!(view(&federation, "zombie-pc").load(), 0);
    assert_eq!(federation.tasks_in_flight(), 0);
}

#[test]
fn an_unacknowledged_attempt_fails_over_and_makes_the_peer_suspect() {
    let mut federation = federation();
    answer_probes(&mut federation, 0, Duration::from_millis(30));
    let task = federation.handle_task(at(100), "gpu_inference", None);
    drain(&mut federation, task);
    // Four RTTs of 30 ms are under the 250 ms floor: the accept timer fires at 350 ms.
    let timeout = federation.poll_task_timeout(task).unwrap();
    assert_eq!(timeout, at(350));
    federation.handle_task_timeout(timeout, task);
    let actions = drain(&mut federation, task);
    assert!(actions.contains(&TaskAction::Abandon {
        node: id("zombie-pc")
    }));
    // The GPU node is out; the seed's fallback sends the task to the rest.
    assert_eq!(dispatched_to(&actions).len(), 1);
    assert_eq!(view(&federation, "zombie-pc").state, NodeState::Suspect);
    assert!(view(&federation, "zombie-pc").is_online());
    assert!(!view(&federation, "zombie-pc").may_get_work());
    assert!(federation.poll_membership_woken());
    assert_eq!(view(&federation, "zombie-pc").load(), 0);
}

#[test]
fn a_late_answer_superseding_another_attempt_blames_no_one() {
    let mut federation = federation();
    answer_probes(&mut federation, 0, Duration::from_millis(30));
    let task = federation.handle_task(at(100), "gpu_inference", None);
    drain(&mut federation, task);
    // Acknowledged, then silent past the progress timeout: the task may still finish there.
    federation.handle_task_event(at(120), task, &id("zombie-pc"), TaskEvent::Accepted);
    let silent = federation.poll_task_timeout(task).unwrap();
    assert_eq!(silent, at(1_620));
    federation.handle_task_timeout(silent, task);
    let second = dispatched_to(&drain(&mut federation, task))[0].clone();
    assert!(
        federation.poll_membership_woken(),
        "silence mid-task is a miss"
    );
    // The first node's result arrives late: the task takes it and abandons the second attempt.
    let result = RawJson::parse_str("1").unwrap();
    federation.handle_task_event(
        at(1_700),
        task,
        &id("zombie-pc"),
        TaskEvent::Answer(Ok(result)),
    );
    let actions = drain(&mut federation, task);
    assert!(actions.contains(&TaskAction::Abandon { node: id(&second) }));
    assert!(
        !federation.poll_membership_woken(),
        "a superseded attempt is no miss"
    );
    if second != "hetzner" {
        assert_eq!(view(&federation, &second).state, NodeState::Online);
    }
    assert!(federation.poll_task_outcome(task).is_some());
    assert!(federation.nodes().iter().all(|v| v.dispatched == 0));
}

#[test]
fn an_unmeasured_peer_gets_no_work_and_a_dropped_task_releases_its_load() {
    let mut federation = federation();
    // No heartbeat answered yet: only this node may get work.
    assert_eq!(view(&federation, "backup").latency_ms, None);
    let task = federation.handle_task(at(0), "chat", None);
    assert_eq!(dispatched_to(&drain(&mut federation, task)), ["hetzner"]);
    assert_eq!(view(&federation, "hetzner").dispatched, 1);
    federation.handle_task_dropped(task);
    assert_eq!(view(&federation, "hetzner").dispatched, 0);
    assert!(federation.poll_task_action(task).is_none());
    assert!(federation.poll_task_outcome(task).is_none());
}

#[test]
fn a_connection_error_counts_against_the_peer() {
    let mut federation = federation();
    answer_probes(&mut federation, 0, Duration::from_millis(30));
    let task = federation.handle_task(at(100), "gpu_inference", None);
    drain(&mut federation, task);
    federation.handle_task_event(
        at(110),
        task,
        &id("zombie-pc"),
        TaskEvent::ConnectionError("connection reset".into()),
    );
    assert_eq!(view(&federation, "zombie-pc").misses, 1);
    assert_eq!(dispatched_to(&drain(&mut federation, task)).len(), 1);
}

/// A relaying node's capabilities: `chat` through one backend.
fn relay(healthy: bool, models: &[&str], loaded: &[&str]) -> Capabilities {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    Capabilities {
        task_types: vec!["chat".into()],
        backends: vec![BackendState {
            task_type: "chat".into(),
            healthy,
            models: names(models),
            loaded: names(loaded),
        }],
        draining: false,
    }
}

fn refused_with(
    federation: &mut Federation,
    task_type: &str,
    model: Option<&str>,
) -> ExhaustedReason {
    let task = federation.handle_task(at(100), task_type, model);
    assert!(
        dispatched_to(&drain(federation, task)).is_empty(),
        "no attempt for a task no node can run"
    );
    match federation.poll_task_outcome(task).unwrap() {
        TaskOutcome::AllNodesFailed { reason, attempts } => {
            assert!(attempts.is_empty());
            reason
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tasks_go_only_where_their_type_and_model_can_run_warm_first() {
    let mut federation = federation();
    federation.handle_local_capabilities(runs(&["echo"]));
    answer_probes_with(
        &mut federation,
        0,
        Duration::from_millis(30),
        |peer| match peer {
            // backup is the cheaper node (more cores), but zombie-pc has the model loaded.
            "zombie-pc" => relay(true, &["llama3", "qwen"], &["qwen"]),
            _ => relay(true, &["qwen"], &[]),
        },
    );
    let task = federation.handle_task(at(100), "chat", Some("qwen"));
    let actions = drain(&mut federation, task);
    assert!(
        matches!(&actions[0], TaskAction::Selected { order, .. } if order == &[id("zombie-pc"), id("backup")])
    );
    federation.handle_task_dropped(task);

    let task = federation.handle_task(at(100), "chat", Some("llama3"));
    assert!(
        matches!(&drain(&mut federation, task)[0], TaskAction::Selected { order, .. } if order == &[id("zombie-pc")])
    );
    federation.handle_task_dropped(task);

    assert_eq!(
        refused_with(&mut federation, "teleport", None),
        ExhaustedReason::NoNodeRunsType
    );
    assert_eq!(
        refused_with(&mut federation, "chat", Some("mistral")),
        ExhaustedReason::NoNodeHasModel
    );
    assert_eq!(federation.tasks_in_flight(), 0);
}

#[test]
fn a_down_backend_gets_no_work_while_its_node_stays_online() {
    let mut federation = federation();
    federation.handle_local_capabilities(runs(&["echo"]));
    answer_probes_with(
        &mut federation,
        0,
        Duration::from_millis(30),
        |peer| match peer {
            "zombie-pc" => relay(false, &["llama3"], &[]),
            _ => relay(true, &["qwen"], &[]),
        },
    );
    assert_eq!(view(&federation, "zombie-pc").state, NodeState::Online);
    assert_eq!(
        refused_with(&mut federation, "chat", Some("llama3")),
        ExhaustedReason::BackendsDown
    );
    // Without a model, only the healthy backend's node is a candidate.
    let task = federation.handle_task(at(100), "chat", None);
    assert_eq!(dispatched_to(&drain(&mut federation, task)), ["backup"]);
    // Its backend is back at the next heartbeat: it gets work again.
    answer_probes_with(&mut federation, 10_000, Duration::from_millis(30), |_| {
        relay(true, &["llama3"], &[])
    });
    let task = federation.handle_task(at(10_100), "chat", Some("llama3"));
    assert_eq!(dispatched_to(&drain(&mut federation, task)).len(), 1);
}

fn reconfiguration(nodes: &[(&str, u32)]) -> Reconfiguration {
    Reconfiguration {
        nodes: nodes
            .iter()
            .map(|(name, cores)| {
                let capacity = Capacity {
                    cores: *cores,
                    ram_gb: 16,
                    gpu: false,
                };
                (id(name), capacity)
            })
            .collect(),
        membership: MembershipConfig::default(),
        failover: FailoverConfig::default(),
        selection: SelectionPolicy::default(),
        retry_ratio: 0.2,
        retry_reserve_per_s: 10,
    }
}

#[test]
fn a_node_added_by_a_reload_gets_work_after_its_first_answer_and_a_removed_one_never_again() {
    let mut federation = federation();
    answer_probes(&mut federation, 0, Duration::from_millis(30));
    // backup leaves, hub joins with the most cores.
    let reload = reconfiguration(&[("hetzner", 20), ("zombie-pc", 16), ("hub", 64)]);
    federation.handle_reconfigure(at(1_000), reload);
    let ids: Vec<String> = federation
        .nodes()
        .iter()
        .map(|v| v.id.to_string())
        .collect();
    assert_eq!(ids, ["hetzner", "hub", "zombie-pc"]);
    assert_eq!(view(&federation, "hub").state, NodeState::Unknown);
    assert!(federation.poll_membership_woken());
    // Before the hub answers, no task goes there; the removed node is no candidate either.
    for n in 0..20 {
        let task = federation.handle_task(at(1_100 + n), "chat", None);
        let sent = dispatched_to(&drain(&mut federation, task));
        assert!(!sent.contains(&"hub".to_string()), "{sent:?}");
        assert!(!sent.contains(&"backup".to_string()), "{sent:?}");
    }
    // Its first answer is due at once, not an interval later.
    answer_probes(&mut federation, 1_200, Duration::from_millis(1));
    assert_eq!(view(&federation, "hub").state, NodeState::Online);
    // A late answer from the removed node is ignored.
    federation.handle_heartbeat_answer(
        at(1_300),
        &id("backup"),
        1,
        Load::default(),
        Duration::from_millis(1),
        runs(&["chat"]),
    );
    assert!(federation.nodes().iter().all(|v| v.id != id("backup")));
    let task = federation.handle_task(at(1_400), "chat", None);
    assert_eq!(dispatched_to(&drain(&mut federation, task)), ["hub"]);
}

#[test]
fn a_draining_node_stays_online_and_gets_no_new_work() {
    let mut federation = federation();
    answer_probes_with(&mut federation, 0, Duration::from_millis(30), |peer| {
        let mut caps = runs(&["chat", "gpu_inference", "echo"]);
        caps.draining = peer == "backup";
        caps
    });
    assert_eq!(view(&federation, "backup").state, NodeState::Draining);
    assert!(view(&federation, "backup").is_online());
    for n in 0..20 {
        let task = federation.handle_task(at(100 + n), "chat", None);
        let sent = dispatched_to(&drain(&mut federation, task));
        assert!(!sent.contains(&"backup".to_string()), "{sent:?}");
    }
    // This node draining itself: its peers take the work.
    let mut own = runs(&["chat", "gpu_inference", "echo"]);
    own.draining = true;
    federation.handle_local_capabilities(own);
    assert_eq!(view(&federation, "hetzner").state, NodeState::Draining);
    let task = federation.handle_task(at(200), "chat", None);
    assert_eq!(dispatched_to(&drain(&mut federation, task)), ["zombie-pc"]);
}
