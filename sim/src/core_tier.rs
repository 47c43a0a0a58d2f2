//! The core tier: the federation machines alone in `triforce-core`'s cluster harness, which
//! jumps from deadline to deadline with no runtime, for sweeping many seeds per minute. Every
//! node submits a task a second; the machines route, fail over and end them while nodes crash,
//! links are cut and heal, and the invariants are the turmoil tier's where they apply: detection
//! within the bound, everyone online again after healing, and every task ending exactly once,
//! within its deadline, completed whenever no fault was under way.

use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use triforce_core::failover::{FailoverConfig, TaskOutcome};
use triforce_core::harness::{Cluster, ClusterConfig, NetworkConfig};
use triforce_core::membership::{MembershipConfig, MembershipEvent, PeerState};
use triforce_core::time::Instant as SimInstant;

/// One seed of the core tier: crash, partition, heal; the same invariants as the turmoil tier.
pub struct CoreReport {
    pub seed: u64,
    pub violations: Vec<String>,
    pub simulated: Duration,
    pub wall: Duration,
    /// Tasks submitted, and how many of those completed.
    pub tasks: u64,
    pub completed: u64,
}

pub fn run_seed(seed: u64, nodes: usize, hours: u64) -> CoreReport {
    let interval = Duration::from_secs(10);
    let config = ClusterConfig {
        nodes,
        membership: MembershipConfig {
            interval,
            misses_max: 3,
        },
        network: NetworkConfig {
            delay_ms_min: 1,
            delay_ms_max: 40,
            loss: 0.0,
        },
        seed,
        task_interval: Some(Duration::from_secs(1)),
    };
    let started = Instant::now();
    let mut cluster = Cluster::new(config);
    let mut violations = Vec::new();
    let at = |s: u64| SimInstant::from_millis(s * 1000);
    let victim = nodes - 1;
    let mut t = 0;
    for _ in 0..hours {
        // Per hour: 20 min steady, a crash for 5 min, a one-way cut for 5 min, healed for 30.
        t += 1200;
        cluster.run_until(at(t));
        cluster.crash(victim);
        let crashed = cluster.now();
        t += 300;
        cluster.run_until(at(t));
        for observer in 0..victim {
            let offline_at = cluster.trace().iter().find(|e| {
                e.observer == observer
                    && e.at >= crashed
                    && e.event
                        == MembershipEvent::NodeOffline {
                            node: Cluster::node_id(victim),
                        }
            });
            match offline_at {
                Some(e) if e.at.saturating_since(crashed) <= interval * 4 => {}
                other => violations.push(format!(
                    "{observer} saw the crash of {victim} at {:?}",
                    other.map(|e| e.at)
                )),
            }
        }
        cluster.restart(victim);
        cluster.cut(0, 1);
        t += 300;
        cluster.run_until(at(t));
        cluster.heal();
        t += 1800;
        cluster.run_until(at(t));
        for a in 0..nodes {
            for b in (0..nodes).filter(|b| *b != a) {
                if cluster.view(a, b).state != PeerState::Online {
                    violations.push(format!(
                        "after healing, {a} sees {b} as {:?}",
                        cluster.view(a, b).state
                    ));
                }
            }
        }
    }
    cluster.run_until(at(t + 300));
    check_tasks(&cluster, &mut violations);
    CoreReport {
        seed,
        violations,
        simulated: Duration::from_secs(t + 300),
        wall: started.elapsed(),
        tasks: cluster.submitted(),
        completed: cluster
            .outcomes()
            .iter()
            .filter(|r| matches!(r.outcome, TaskOutcome::Completed { .. }))
            .count() as u64,
    }
}

/// Every task ended exactly once (or was lost with its origin's crash), within its deadline; a
/// task submitted in a quiet stretch (no fault within a minute of it) completed.
fn check_tasks(cluster: &Cluster, violations: &mut Vec<String>) {
    let outcomes = cluster.outcomes();
    let mut ended = BTreeSet::new();
    for record in outcomes {
        if !ended.insert(record.task) {
            violations.push(format!("task {} ended twice", record.task));
        }
        let took = record.ended_at.saturating_since(record.submitted_at);
        if took > FailoverConfig::default().deadline + Duration::from_secs(1) {
            violations.push(format!(
                "task {} took {took:?}, past its deadline",
                record.task
            ));
        }
        let quiet = quiet_at(record.submitted_at);
        if quiet && !matches!(record.outcome, TaskOutcome::Completed { .. }) {
            violations.push(format!(
                "task {} from n{} in a quiet stretch did not complete: {:?}",
                record.task, record.origin, record.outcome
            ));
        }
    }
    let accounted = outcomes.len() as u64 + cluster.in_flight() + cluster.orphaned();
    if accounted != cluster.submitted() {
        violations.push(format!(
            "{} tasks submitted, {} accounted for (ended, in flight or orphaned): some vanished",
            cluster.submitted(),
            accounted
        ));
    }
}

/// Whether `at` lies in the steady part of an hour (see [`run_seed`]), a minute clear of the
/// faults and of the recovery after them.
fn quiet_at(at: SimInstant) -> bool {
    let second_of_hour = (at.as_millis() / 1000) % 3600;
    (60..1140).contains(&second_of_hour) || (1860..3540).contains(&second_of_hour)
}
