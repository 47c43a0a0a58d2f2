//! One seed, one run: the same seed twice gives the same trace; another seed another one.

use std::time::Duration;

use triforce_sim::run::{run, RunConfig};
use triforce_sim::scenario::find;

fn short(scenario: &str, seed: u64) -> RunConfig {
    let mut config = RunConfig::new(find(scenario).expect("known scenario"), seed);
    config.heal_at = Duration::from_secs(90);
    config.settle = Duration::from_secs(40);
    config
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let first = run(short("crash_restart", 7));
    let second = run(short("crash_restart", 7));
    assert!(first.passed(), "{:?}", first.violations);
    assert!(
        first.tasks > 0 && first.adversary_attempts > 0,
        "the run did something"
    );
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.detection, second.detection);
    let other = run(short("crash_restart", 8));
    assert_ne!(first.trace_hash, other.trace_hash, "the seed matters");
}

#[test]
fn a_partition_is_detected_and_heals() {
    let report = run(short("partition", 3));
    assert!(report.passed(), "{:?}", report.violations);
}
