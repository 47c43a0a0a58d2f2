//! One seed, one run: the same seed twice gives the same trace; another seed another one.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use triforce_sim::door_streams::ClientApi;
use triforce_sim::run::{run, RunConfig};
use triforce_sim::scenario::find;

/// One run at a time: tokio numbers tasks process-wide, and a run replays exactly only when no
/// other thread spawns tasks meanwhile (`triforce_sim::run`'s `align_task_ids`).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn short(scenario: &str, seed: u64) -> RunConfig {
    let mut config = RunConfig::new(find(scenario).expect("known scenario"), seed);
    config.heal_at = Duration::from_secs(90);
    config.settle = Duration::from_secs(40);
    config
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let _serial = serial();
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
fn door_streams_replay_and_end_every_way() {
    let _serial = serial();
    // The whole plan: its faults run to 190 s.
    let config = RunConfig::new(find("door_streams").expect("known scenario"), 2);
    let first = run(config);
    let second = run(config);
    assert!(first.passed(), "{:?}", first.violations);
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.door_stream_ends, second.door_stream_ends);
    // Complete streams, streams that broke with an error event and streams whose client left,
    // in both APIs: the checks had each kind to check.
    for api in [ClientApi::OpenAi, ClientApi::Ollama] {
        for end in ["complete", "error event", "client left"] {
            assert!(
                first.door_stream_ends.contains(&(api, end)),
                "no {api:?} stream ended as {end}: {:?}",
                first.door_stream_ends
            );
        }
    }
}

#[test]
fn a_partition_is_detected_and_heals() {
    let _serial = serial();
    let report = run(short("partition", 3));
    assert!(report.passed(), "{:?}", report.violations);
}
