//! The core tier: the membership machines alone in `triforce-core`'s cluster harness, which
//! jumps from deadline to deadline with no runtime, for sweeping many seeds per minute.

use std::time::{Duration, Instant};

use triforce_core::harness::{Cluster, ClusterConfig, NetworkConfig};
use triforce_core::membership::{MembershipConfig, MembershipEvent, PeerState};
use triforce_core::time::Instant as SimInstant;

/// One seed of the core tier: crash, partition, heal; the same invariants as the turmoil tier.
pub struct CoreReport {
    pub seed: u64,
    pub violations: Vec<String>,
    pub simulated: Duration,
    pub wall: Duration,
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
    CoreReport {
        seed,
        violations,
        simulated: Duration::from_secs(t),
        wall: started.elapsed(),
    }
}
