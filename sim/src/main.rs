//! `cargo run -p triforce-sim --release -- --scenario NAME|all --seeds A..B`

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use triforce_sim::door_streams::ClientApi;
use triforce_sim::record::FirstToken;
use triforce_sim::run::{run, RunConfig, RunReport};
use triforce_sim::scenario::{find, Scenario, SCENARIOS};
use triforce_sim::stats::percentile;

#[derive(Parser)]
#[command(
    name = "triforce-sim",
    about = "Deterministic simulation of the TriForce federation (turmoil)"
)]
struct Args {
    /// A scenario name, or `all`. `--list` shows them.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Seeds to run: `N` or `A..B` (B excluded).
    #[arg(long, default_value = "0..10")]
    seeds: String,
    /// Replays one seed (same as `--seeds N..N+1`) and prints every violation.
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes in the federation (the seed's three, then extra hubs).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// turmoil's tick in milliseconds.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Simulated seconds before everything heals (faults happen before this).
    #[arg(long, default_value_t = 200)]
    heal_at_s: u64,
    /// With --seed: write the run's trace, one event a line, to this file.
    #[arg(long, value_name = "FILE")]
    trace_out: Option<std::path::PathBuf>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Run the core tier instead (membership machines in core's harness, no runtime) for
    /// this many simulated hours per seed.
    #[arg(long, value_name = "HOURS")]
    core_hours: Option<u64>,
}

fn parse_seeds(text: &str) -> Result<std::ops::Range<u64>> {
    if let Some((a, b)) = text.split_once("..") {
        let (a, b): (u64, u64) = (
            a.parse().context("seed range start")?,
            b.parse().context("seed range end")?,
        );
        if a >= b {
            bail!("empty seed range {text}");
        }
        Ok(a..b)
    } else {
        let n: u64 = text.parse().context("--seeds is N or A..B")?;
        Ok(n..n + 1)
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    })
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn main_inner() -> Result<bool> {
    let args = Args::parse();
    if args.list {
        for s in SCENARIOS {
            println!("{:<18} {}", s.name, s.about);
        }
        return Ok(true);
    }
    if let Some(hours) = args.core_hours {
        return core_tier(&args, hours);
    }
    let scenarios: Vec<Scenario> = if args.scenario == "all" {
        SCENARIOS.to_vec()
    } else {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        vec![find(&args.scenario).with_context(|| {
            format!(
                "no scenario {:?}; there are: {}",
                args.scenario,
                names.join(", ")
            )
        })?]
    };
    let seeds = match args.seed {
        Some(seed) => seed..seed + 1,
        None => parse_seeds(&args.seeds)?,
    };
    let mut all_passed = true;
    let (mut total_runs, mut total_failed) = (0u64, 0u64);
    for scenario in scenarios {
        let reports = run_seeds(&args, scenario, seeds.clone())?;
        let failed = reports.iter().filter(|r| !r.passed()).count();
        let simulated: f64 = reports.iter().map(|r| r.simulated.as_secs_f64()).sum();
        let wall: f64 = reports.iter().map(|r| r.wall.as_secs_f64()).sum();
        let detection: Vec<Duration> = reports.iter().flat_map(|r| r.detection.clone()).collect();
        let failover: Vec<Duration> = reports.iter().flat_map(|r| r.failover.clone()).collect();
        let redispatch: Vec<Duration> = reports.iter().flat_map(|r| r.redispatch.clone()).collect();
        let tasks: usize = reports.iter().map(|r| r.tasks).sum();
        println!(
            "{:<17} seeds {:>4} failed {:>3}  sim/wall {:>6.0}x  tasks {:>6}  detection p50 {:>9} p99 {:>9}  failover p50 {:>9} p99 {:>9}  crash->redispatch p50 {:>9} p99 {:>9} (n={})",
            scenario.name,
            reports.len(),
            failed,
            simulated / wall.max(1e-9),
            tasks,
            ms(percentile(&detection, 50.0)),
            ms(percentile(&detection, 99.0)),
            ms(percentile(&failover, 50.0)),
            ms(percentile(&failover, 99.0)),
            ms(percentile(&redispatch, 50.0)),
            ms(percentile(&redispatch, 99.0)),
            redispatch.len(),
        );
        let first_tokens: Vec<FirstToken> = reports
            .iter()
            .flat_map(|r| r.first_tokens.iter().copied())
            .collect();
        if !first_tokens.is_empty() {
            print_first_tokens(&first_tokens);
        }
        print_door_streams(
            reports
                .iter()
                .flat_map(|r| r.door_stream_ends.iter().copied()),
        );
        if args.seed.is_some() {
            if let Some(r) = reports.first() {
                println!("trace {}", r.trace_hash);
            }
        }
        all_passed &= failed == 0;
        total_runs += reports.len() as u64;
        total_failed += failed as u64;
    }
    println!(
        "{} passed, {} failed",
        total_runs - total_failed,
        total_failed
    );
    Ok(all_passed)
}

/// Runs `scenario` for each seed, printing each failing seed's violations and the command that
/// replays it; writes the trace when asked.
fn run_seeds(
    args: &Args,
    scenario: Scenario,
    seeds: std::ops::Range<u64>,
) -> Result<Vec<RunReport>> {
    let mut reports: Vec<RunReport> = Vec::new();
    for seed in seeds {
        let mut config = RunConfig::new(scenario, seed);
        config.nodes = args.nodes;
        config.tick = Duration::from_millis(args.tick_ms);
        config.heal_at = Duration::from_secs(args.heal_at_s);
        config.keep_trace = args.trace_out.is_some();
        let report = run(config);
        if let (Some(path), Some(lines)) = (&args.trace_out, &report.trace_lines) {
            std::fs::write(path, lines.join("\n") + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if !report.passed() {
            eprintln!("FAIL {} seed {}:", scenario.name, seed);
            for violation in
                report
                    .violations
                    .iter()
                    .take(if args.seed.is_some() { 100 } else { 5 })
            {
                eprintln!("  {violation}");
            }
            eprintln!("  replay: cargo run -p triforce-sim --release -- --scenario {} --seed {seed} --nodes {}", scenario.name, args.nodes);
        }
        reports.push(report);
    }
    Ok(reports)
}

/// How the door's streams ended, counted by API and kind, if there were any.
fn print_door_streams(ends: impl Iterator<Item = (ClientApi, &'static str)>) {
    let mut counts = std::collections::BTreeMap::new();
    for (api, end) in ends {
        *counts.entry((format!("{api:?}"), end)).or_insert(0usize) += 1;
    }
    if counts.is_empty() {
        return;
    }
    let counts: Vec<String> = counts
        .iter()
        .map(|((api, end), n)| format!("{api} {end} {n}"))
        .collect();
    println!("{:<17} door streams: {}", "", counts.join(", "));
}

/// Time to first token of the conversations' turns: first turns (always cold) apart from the
/// later ones, which find their history cached if they come back to the same hub.
fn print_first_tokens(turns: &[FirstToken]) {
    let (first, later): (Vec<FirstToken>, Vec<FirstToken>) =
        turns.iter().partition(|t| t.turn == 1);
    let took = |turns: &[FirstToken]| turns.iter().map(|t| t.took).collect::<Vec<_>>();
    // A later turn that processed more than its newest messages paid for its history again.
    let cold = later.iter().filter(|t| t.uncached_tokens > 300).count();
    let (first, later) = (took(&first), took(&later));
    let mean = later.iter().sum::<Duration>() / later.len().max(1) as u32;
    println!(
        "{:<17} first token: turn 1 p50 {:>9} (n={}); turns 2+ p50 {:>9} p90 {:>9} mean {:>9} (n={}, {:.0}% cold)",
        "",
        ms(percentile(&first, 50.0)),
        first.len(),
        ms(percentile(&later, 50.0)),
        ms(percentile(&later, 90.0)),
        ms(Some(mean)),
        later.len(),
        100.0 * cold as f64 / later.len().max(1) as f64,
    );
}

fn core_tier(args: &Args, hours: u64) -> Result<bool> {
    let seeds = match args.seed {
        Some(seed) => seed..seed + 1,
        None => parse_seeds(&args.seeds)?,
    };
    let (mut simulated, mut wall, mut failed, mut runs) = (0.0, 0.0, 0u64, 0u64);
    let (mut tasks, mut completed) = (0u64, 0u64);
    for seed in seeds {
        let report = triforce_sim::core_tier::run_seed(seed, args.nodes, hours);
        runs += 1;
        simulated += report.simulated.as_secs_f64();
        tasks += report.tasks;
        completed += report.completed;
        wall += report.wall.as_secs_f64();
        if !report.violations.is_empty() {
            failed += 1;
            eprintln!(
                "FAIL core tier seed {seed}: {:?}",
                &report.violations[..report.violations.len().min(5)]
            );
            eprintln!("  replay: cargo run -p triforce-sim --release -- --core-hours {hours} --seed {seed} --nodes {}", args.nodes);
        }
    }
    println!(
        "core tier        seeds {runs:>4} failed {failed:>3}  sim/wall {:>10.0}x  ({:.0} simulated hours in {:.2} s; tasks {tasks}, completed {completed})",
        simulated / wall.max(1e-9),
        simulated / 3600.0,
        wall
    );
    println!("{} passed, {} failed", runs - failed, failed);
    Ok(failed == 0)
}
