//! Session affinity in the simulated federation: the same conversations, played with the same
//! seed, find their history cached far more often when the nodes route by conversation.

use std::time::Duration;

use triforce_sim::record::FirstToken;
use triforce_sim::run::{run, RunConfig, RunReport};
use triforce_sim::scenario::find;

fn conversations(scenario: &str) -> RunReport {
    let mut config = RunConfig::new(find(scenario).expect("known scenario"), 5);
    config.heal_at = Duration::from_secs(120);
    config.settle = Duration::from_secs(30);
    let report = run(config);
    assert!(report.passed(), "{scenario}: {:?}", report.violations);
    report
}

/// Mean time to first token of turns 2 and later, and the share of them that processed their
/// history again.
fn later_turns(report: &RunReport) -> (Duration, f64) {
    let later: Vec<&FirstToken> = report.first_tokens.iter().filter(|t| t.turn > 1).collect();
    assert!(later.len() >= 50, "{} later turns answered", later.len());
    let mean = later.iter().map(|t| t.took).sum::<Duration>() / later.len() as u32;
    let cold = later.iter().filter(|t| t.uncached_tokens > 300).count();
    (mean, cold as f64 / later.len() as f64)
}

#[test]
fn affinity_keeps_conversations_on_the_hub_that_has_their_history() {
    let (warm_mean, warm_cold) = later_turns(&conversations("conversations"));
    let (blind_mean, blind_cold) = later_turns(&conversations("conversations_off"));
    assert!(
        warm_mean.as_secs_f64() * 1.5 <= blind_mean.as_secs_f64(),
        "with affinity {warm_mean:?}, without {blind_mean:?}"
    );
    assert!(
        warm_cold * 3.0 <= blind_cold,
        "cold later turns: {:.0}% with affinity, {:.0}% without",
        warm_cold * 100.0,
        blind_cold * 100.0
    );
}
