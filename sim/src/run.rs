//! One scenario for one seed: build the world, apply the plan, check after every step.

use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use triforce_core::node::NodeId;

use crate::backend::backend_host;
use crate::check::Checker;
use crate::record::FirstToken;
use crate::scenario::{ConfigState, Conversations, Fault, Scenario};
use crate::world::{derive_seed, scaled_topology, LoadPlan, World};

/// What to run.
#[derive(Clone, Copy)]
pub struct RunConfig {
    pub scenario: Scenario,
    pub seed: u64,
    pub nodes: usize,
    /// turmoil's step: coarse for long runs, fine where latency figures matter.
    pub tick: Duration,
    /// Faults happen before this; then everything heals and the run goes on for `settle`.
    pub heal_at: Duration,
    /// Time after healing for tasks in flight to end and every view to recover.
    pub settle: Duration,
    /// Keep the trace's lines in the report (to diff two runs).
    pub keep_trace: bool,
}

impl RunConfig {
    pub fn new(scenario: Scenario, seed: u64) -> Self {
        RunConfig {
            scenario,
            seed,
            nodes: 3,
            tick: Duration::from_millis(10),
            heal_at: Duration::from_secs(200),
            settle: Duration::from_secs(130),
            keep_trace: false,
        }
    }
}

/// How a run went.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub scenario: &'static str,
    pub seed: u64,
    pub violations: Vec<String>,
    pub trace_hash: String,
    pub simulated: Duration,
    pub wall: Duration,
    /// Crash to offline, per observer.
    pub detection: Vec<Duration>,
    /// Submission to outcome, for tasks that needed more than one attempt.
    pub failover: Vec<Duration>,
    /// Crash of the node running a task to the task's next dispatch.
    pub redispatch: Vec<Duration>,
    pub tasks: usize,
    pub adversary_attempts: u64,
    /// Every answered conversation turn, in the conversation scenarios.
    pub first_tokens: Vec<FirstToken>,
    /// How each door stream ended (`crate::door_streams::DoorStreams::ends`).
    pub door_stream_ends: Vec<(crate::door_streams::ClientApi, &'static str)>,
    pub trace_lines: Option<Vec<String>>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The world for one run: the topology, the load, turmoil's loss rates, and what the log keeps.
fn build_world(config: &RunConfig) -> World {
    let scenario = config.scenario;
    let topology = scaled_topology(config.nodes);
    let load = LoadPlan {
        every: Duration::from_secs(4),
        until: config.heal_at,
        burst: 80,
        burst_every: Duration::from_secs(25),
        conversations: scenario.conversations != Conversations::None,
        door_streams: scenario.door_streams,
    };
    let world = World::build(
        topology,
        config.seed,
        config.tick,
        |builder| {
            if scenario.fail_rate > 0.0 {
                builder
                    .fail_rate(scenario.fail_rate)
                    .repair_rate(scenario.repair_rate);
            }
        },
        load,
        scenario.conversations != Conversations::WithoutAffinity,
    );
    if config.keep_trace {
        world.log.lock().expect("log lock").trace_lines = Some(Vec::new());
    }
    if scenario.fail_rate > 0.0 {
        // Random loss hits the hubs' links to their backends too: a hub's probe may take any
        // number of retransmissions to come back, and until it does the hub rightly advertises
        // and relays any model. The staleness bounds of the model checks assume probes that
        // return; every other scenario keeps them.
        let mut log = world.log.lock().expect("log lock");
        log.model_rules = None;
        log.backend_faults.lossy = true;
    }
    world
}

/// Task numbers repeat modulo this from run to run (see [`align_task_ids`]): a multiple of
/// every shard count tokio uses here (4 for turmoil's current-thread runtimes).
const TASK_ID_PERIOD: u64 = 64;

/// tokio numbers tasks from one counter for the whole process, and each runtime keeps its
/// tasks in lists sharded by that number. A host that crashes drops its tasks shard by shard,
/// so the order its connections close in, each close a message whose latency turmoil draws
/// from the seed's RNG, follows the numbers. Starting every run at the same number modulo
/// [`TASK_ID_PERIOD`] makes a seed's run the same whether it is the first in its process or
/// the hundredth (found by the door streams: a hub crashing mid-stream replayed differently
/// the second time). Assumes no other thread spawns tasks meanwhile, as in the CLI.
fn align_task_ids() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime to number tasks on");
    loop {
        let id: u64 = runtime
            .spawn(async {})
            .id()
            .to_string()
            .parse()
            .expect("tokio's task ids are numbers");
        if id % TASK_ID_PERIOD == TASK_ID_PERIOD - 1 {
            return;
        }
    }
}

pub fn run(config: RunConfig) -> RunReport {
    align_task_ids();
    let scenario = config.scenario;
    let mut plan_rng = ChaCha8Rng::seed_from_u64(derive_seed(config.seed, "plan"));
    let mut plan = (scenario.plan)(&mut plan_rng);
    plan.sort_by_key(|step| step.at);
    let mut world = build_world(&config);
    let ids: Vec<NodeId> = world
        .nodes
        .iter()
        .map(|n| NodeId::new(n.id.clone()).expect("valid"))
        .collect();
    let lossy = scenario.fail_rate > 0.0;
    let mut checker = Checker::new(
        &ids,
        world.interval,
        world.misses_max,
        scenario.links_deliver,
        lossy,
    );
    let end = config.heal_at + config.settle;
    let started = Instant::now();
    let mut next = 0;
    let mut healed = false;
    let mut crashed: Vec<String> = Vec::new();
    loop {
        let now = world.sim.elapsed();
        while next < plan.len() && plan[next].at <= now {
            let fault = plan[next].fault.clone();
            apply(&mut world, &fault, &mut crashed);
            checker.apply(now, &fault);
            let mut log = world.log.lock().expect("log lock");
            log.trace(format!("{} fault {fault:?}", now.as_millis()));
            log.door_streams.fault_at(now);
            drop(log);
            next += 1;
        }
        if !healed && now >= config.heal_at {
            heal(&mut world, &ids, &mut crashed, &mut checker, now);
            healed = true;
        }
        if now >= end {
            break;
        }
        if let Err(error) = world.sim.step() {
            world
                .log
                .lock()
                .expect("log lock")
                .violation(format!("{}: a host failed: {error}", now.as_secs_f64()));
            break;
        }
        let now = world.sim.elapsed();
        checker.step(now, &mut world.log.lock().expect("log lock"));
    }
    let wall = started.elapsed();
    let mut log = world.log.lock().expect("log lock");
    checker.finish(&mut log);
    for violation in log.door_streams.check() {
        log.violation(violation);
    }
    let failover = failover_delays(&log);
    RunReport {
        scenario: scenario.name,
        seed: config.seed,
        violations: log.violations.clone(),
        trace_hash: log.trace_hash(),
        simulated: world.sim.elapsed(),
        wall,
        detection: checker.detection_samples.clone(),
        failover,
        redispatch: log.redispatch_delays(),
        tasks: log.submitted.len(),
        adversary_attempts: log.adversary_attempts,
        first_tokens: log.first_tokens.clone(),
        door_stream_ends: log.door_streams.ends(),
        trace_lines: log.trace_lines.take(),
    }
}

/// Submission to outcome of every task that needed more than one attempt.
fn failover_delays(log: &crate::record::Log) -> Vec<Duration> {
    log.ended
        .iter()
        .filter_map(|(task, ends)| {
            let end = ends.first()?;
            let (submitted, _) = log.submitted.get(task)?;
            (end.attempts > 1).then(|| end.at.saturating_sub(*submitted))
        })
        .collect()
}

/// Drops the log's handle to `node` before turmoil stops it, so that the node's last reference
/// (and its socket) goes inside the crash, where turmoil knows which host unbinds the port.
fn release_handle(log: &crate::record::SharedLog, node: &str) {
    let id = NodeId::new(node).expect("scenario node ids are valid");
    log.lock().expect("log lock").nodes.remove(&id);
}

/// A fault of a hub's backend host (the hub itself runs on), and its record for the
/// backend-health invariant.
fn apply_backend_fault(world: &mut World, fault: &Fault, crashed: &mut Vec<String>) {
    let sim = &mut world.sim;
    let now = sim.elapsed();
    let mut log = world.log.lock().expect("log lock");
    let faults = &mut log.backend_faults;
    match fault {
        Fault::BackendDown(node) => {
            let backend = backend_host(node);
            sim.crash(backend.as_str());
            crashed.push(backend);
            faults.began(node, now);
        }
        Fault::BackendUp(node) => {
            let backend = backend_host(node);
            sim.bounce(backend.as_str());
            crashed.retain(|n| *n != backend);
            faults.ended(node, now);
        }
        Fault::BackendHang(node) => {
            sim.hold(node.as_str(), backend_host(node).as_str());
            faults.began(node, now);
        }
        Fault::BackendRelease(node) => {
            sim.release(node.as_str(), backend_host(node).as_str());
            faults.ended(node, now);
        }
        Fault::BackendStall(node) => faults.stall_next(node),
        _ => unreachable!("not a backend fault: {fault:?}"),
    }
}

fn apply(world: &mut World, fault: &Fault, crashed: &mut Vec<String>) {
    let sim = &mut world.sim;
    match fault {
        Fault::Crash(node) => {
            let crashed_at = sim.elapsed();
            let id = NodeId::new(node).expect("scenario node ids are valid");
            world
                .log
                .lock()
                .expect("log lock")
                .crashes
                .push((crashed_at, id));
            release_handle(&world.log, node);
            sim.crash(node.as_str());
            crashed.push(node.clone());
        }
        Fault::Restart(node) => {
            sim.bounce(node.as_str());
            crashed.retain(|n| n != node);
        }
        Fault::Bounce(node) => {
            release_handle(&world.log, node);
            sim.bounce(node.as_str());
        }
        Fault::Partition(a, b) => sim.partition(a.as_str(), b.as_str()),
        Fault::PartitionOneway(from, to) => sim.partition_oneway(from.as_str(), to.as_str()),
        Fault::Repair(a, b) => sim.repair(a.as_str(), b.as_str()),
        Fault::Hold(a, b) => sim.hold(a.as_str(), b.as_str()),
        Fault::Release(a, b) => sim.release(a.as_str(), b.as_str()),
        Fault::Latency(a, b, latency) => sim.set_link_latency(a.as_str(), b.as_str(), *latency),
        Fault::BackendDown(_)
        | Fault::BackendUp(_)
        | Fault::BackendHang(_)
        | Fault::BackendRelease(_)
        | Fault::BackendStall(_) => apply_backend_fault(world, fault, crashed),
        Fault::Models(node, models) => {
            let mut log = world.log.lock().expect("log lock");
            log.trace(format!(
                "{} models {node} {models:?}",
                sim.elapsed().as_millis()
            ));
            log.models
                .set(&backend_host(node), sim.elapsed(), models.clone());
        }
        // The node's host applies these (see `world::apply_config_changes`).
        Fault::Rotate(node, step) => change_config(world, node, |c| c.keys = *step),
        Fault::Forget(node, gone) => change_config(world, node, |c| {
            c.without.insert(gone.clone());
        }),
        Fault::Readd(node, back) => change_config(world, node, |c| {
            c.without.remove(back);
        }),
    }
}

fn change_config(world: &World, node: &str, change: impl FnOnce(&mut ConfigState)) {
    let id = NodeId::new(node).expect("scenario node ids are valid");
    change(
        world
            .log
            .lock()
            .expect("log lock")
            .configs
            .entry(id)
            .or_default(),
    );
}

/// Ends every fault: crashed nodes restart, links repair and release, loss stops.
fn heal(
    world: &mut World,
    ids: &[NodeId],
    crashed: &mut Vec<String>,
    checker: &mut Checker,
    now: Duration,
) {
    for node in crashed.drain(..) {
        world.sim.bounce(node.as_str());
        checker.apply(now, &Fault::Restart(node));
    }
    let hubs: Vec<String> = world
        .nodes
        .iter()
        .filter(|def| !def.master)
        .map(|def| def.id.clone())
        .collect();
    for hub in hubs {
        world.sim.release(hub.as_str(), backend_host(&hub).as_str());
    }
    for a in ids {
        for b in ids.iter().filter(|b| a < *b) {
            world.sim.repair(a.as_str(), b.as_str());
            world.sim.release(a.as_str(), b.as_str());
            world
                .sim
                .set_link_latency(a.as_str(), b.as_str(), Duration::from_millis(5));
        }
    }
    world.sim.set_fail_rate(0.0);
    world
        .log
        .lock()
        .expect("log lock")
        .backend_faults
        .all_ended(now);
    checker.heal_all(now);
    world
        .log
        .lock()
        .expect("log lock")
        .trace(format!("{} heal", now.as_millis()));
}
