//! The cluster harness: deterministic, detects crashes in time, no false alarms, heals.

use std::time::Duration;

use proptest::prelude::*;
use triforce_core::failover::TaskOutcome;
use triforce_core::harness::{Cluster, ClusterConfig, NetworkConfig};
use triforce_core::membership::{MembershipConfig, MembershipEvent, PeerState};
use triforce_core::time::Instant;

const INTERVAL_MS: u64 = 10_000;

fn config(nodes: usize, seed: u64, loss: f64) -> ClusterConfig {
    ClusterConfig {
        nodes,
        membership: MembershipConfig::default(),
        network: NetworkConfig {
            delay_ms_min: 1,
            delay_ms_max: 40,
            loss,
        },
        seed,
        task_interval: None,
    }
}

fn secs(s: u64) -> Instant {
    Instant::from_millis(s * 1000)
}

/// A fault plan from the seed: crash, partition one way, loss, heal.
fn run_plan(seed: u64) -> Cluster {
    let mut cluster = Cluster::new(config(3, seed, 0.05));
    cluster.run_until(secs(60));
    cluster.crash(2);
    cluster.run_until(secs(120));
    cluster.restart(2);
    cluster.cut(0, 1);
    cluster.run_until(secs(200));
    cluster.heal();
    cluster.run_until(secs(300));
    cluster
}

#[test]
fn one_seed_one_trace() {
    let a = run_plan(42);
    let b = run_plan(42);
    assert!(!a.trace().is_empty());
    assert_eq!(a.trace(), b.trace());
    assert_eq!(a.trace_hash(), b.trace_hash());
    assert_ne!(
        a.trace_hash(),
        run_plan(43).trace_hash(),
        "the seed matters"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn crash_is_detected_within_three_intervals_and_recovery_within_one(
        seed in any::<u64>(),
        nodes in 2usize..8,
        crash_at_ms in 30_000u64..90_000,
        down_for_ms in 40_000u64..100_000,
    ) {
        let mut cluster = Cluster::new(config(nodes, seed, 0.0));
        let victim = nodes - 1;
        cluster.run_until(Instant::from_millis(crash_at_ms));
        cluster.crash(victim);
        let crashed = cluster.now();
        cluster.run_until(crashed + Duration::from_millis(down_for_ms));
        for observer in 0..victim {
            let offline_at = cluster.trace().iter().find(|e| {
                e.observer == observer && e.at >= crashed
                    && e.event == MembershipEvent::NodeOffline { node: Cluster::node_id(victim) }
            });
            let offline_at = offline_at.expect("the crash was noticed").at;
            // The probe in flight at the crash plus three full intervals, at most.
            prop_assert!(offline_at.saturating_since(crashed) <= Duration::from_millis(4 * INTERVAL_MS));
            prop_assert!(offline_at.saturating_since(crashed) >= Duration::from_millis(2 * INTERVAL_MS));
        }
        cluster.restart(victim);
        let back = cluster.now();
        cluster.run_until(back + Duration::from_millis(INTERVAL_MS + 100));
        for observer in 0..victim {
            prop_assert_eq!(cluster.view(observer, victim).state, PeerState::Online);
        }
    }

    #[test]
    fn no_false_offline_while_links_deliver_in_time(seed in any::<u64>(), nodes in 2usize..10) {
        let mut cluster = Cluster::new(config(nodes, seed, 0.0));
        cluster.run_until(secs(3_600));
        let offline = cluster.trace().iter().any(|e| matches!(e.event, MembershipEvent::NodeOffline { .. }));
        prop_assert!(!offline);
        for a in 0..nodes {
            for b in (0..nodes).filter(|b| *b != a) {
                prop_assert_eq!(cluster.view(a, b).state, PeerState::Online);
            }
        }
    }

    #[test]
    fn everyone_sees_everyone_again_after_faults_heal(seed in any::<u64>(), nodes in 2usize..6, cuts in proptest::collection::vec((0usize..6, 0usize..6), 1..6)) {
        let mut cluster = Cluster::new(config(nodes, seed, 0.2));
        cluster.run_until(secs(30));
        for (a, b) in cuts {
            cluster.cut(a % nodes, b % nodes);
        }
        cluster.run_until(secs(120));
        cluster.heal();
        cluster.set_loss(0.0);
        cluster.run_until(secs(120 + 2 * INTERVAL_MS / 1000));
        for a in 0..nodes {
            for b in (0..nodes).filter(|b| *b != a) {
                prop_assert_eq!(cluster.view(a, b).state, PeerState::Online, "{} sees {}", a, b);
            }
        }
    }
}

/// Tasks through the federation machines: every task ends once, none vanish, a crash costs
/// only the tasks its node was routing, and one seed gives one trace, outcomes included.
#[test]
fn tasks_end_exactly_once_through_crashes_and_cuts() {
    let run = |seed: u64| {
        let mut config = config(3, seed, 0.02);
        config.task_interval = Some(Duration::from_millis(200));
        let mut cluster = Cluster::new(config);
        cluster.run_until(secs(60));
        cluster.crash(2);
        cluster.run_until(secs(120));
        cluster.restart(2);
        cluster.cut(0, 1);
        cluster.run_until(secs(200));
        cluster.heal();
        cluster.run_until(secs(400));
        cluster
    };
    for seed in 0..4 {
        let cluster = run(seed);
        let outcomes = cluster.outcomes();
        let mut ids: Vec<u64> = outcomes.iter().map(|r| r.task).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), outcomes.len(), "no task ends twice");
        assert_eq!(
            outcomes.len() as u64 + cluster.in_flight() + cluster.orphaned(),
            cluster.submitted(),
            "every task is accounted for"
        );
        assert!(cluster.submitted() > 5_000);
        // In the last, quiet stretch every task completed.
        let late: Vec<_> = outcomes
            .iter()
            .filter(|r| r.submitted_at >= secs(300))
            .collect();
        assert!(!late.is_empty());
        assert!(late
            .iter()
            .all(|r| matches!(r.outcome, TaskOutcome::Completed { .. })));
        assert_eq!(
            cluster.trace_hash(),
            run(seed).trace_hash(),
            "one seed, one run"
        );
    }
}
