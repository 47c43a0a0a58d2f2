//! The simulated federation: one turmoil host per node running the real node (QUIC on
//! turmoil's UDP, the HTTP shim on its TCP), a backend host per hub, and on the master the task
//! load, beside `backup` the adversary.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use triforce_core::config::{ApiKeys, Federation, Settings};
use triforce_core::node::NodeId;
use triforce_core::relay::CHAT_TASK;
use triforce_net::ingress::KeyCheck;
use triforce_net::load::NodeConfig;
use triforce_net::node::{Node, NodeIo};

use crate::adversary::adversary;
use crate::backend::{backend_host, serve_backend, SimDial, BACKEND_PORT};
use crate::clock::SimClock;
use crate::config_changes::{apply_config_changes, configured, PSK};
use crate::conversations::converse;
use crate::door_client::{api_keys_toml, open_streams, CLIENT_HOST, DOOR_PORT};
use crate::http::{self, SimTcpListener};
use crate::load::{generate_load, read_status};
use crate::models::{ModelRules, Staleness, LLM_TASK_TYPE};
use crate::record::{Log, NodeObserver, SharedLog};
use crate::socket::SimUdpSocket;

pub const PORT: u16 = 9000;
/// Wall time at the start of every run, so one seed is one run.
pub const EPOCH_UNIX_S: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// The seed API's plain task: a sleep on the master, a call to its backend on a hub.
pub const BATCH_TASK_TYPE: &str = "batch";

/// The settings every simulated node runs with: the seed's timings, sleep executors.
pub const SETTINGS: &str = r#"
[executors.batch]
kind = "sleep"
[executors.gpu_inference]
kind = "sleep"
"#;

/// A node's settings: the master runs its batch tasks itself (`sleep`) and has no model
/// server; a hub's `http` executor calls its backend host, and its `openai` executors relay
/// `llm` tasks (the seed API's) to the same host, and, where the AI door is open (`door`),
/// its `chat` tasks too. Session affinity (`selection.affinity`) as `affinity` says.
fn settings_for(def: &NodeDef, affinity: bool, door: bool) -> Settings {
    let text = if def.master {
        SETTINGS.to_string()
    } else {
        let host = backend_host(&def.id);
        let relay = |task_type: &str| {
            format!("[executors.{task_type}]\nkind = \"openai\"\nbase_url = \"http://{host}:{BACKEND_PORT}\"\ntimeout_ms = 30000\n")
        };
        let backend = format!(
            "{}{}[executors.{BATCH_TASK_TYPE}]\nkind = \"http\"\nurl = \"http://{host}:{BACKEND_PORT}/\"\ntimeout_ms = 30000",
            relay(LLM_TASK_TYPE),
            if door { relay(CHAT_TASK) } else { String::new() },
        );
        SETTINGS.replace("[executors.batch]\nkind = \"sleep\"", &backend)
    };
    let text = format!("{text}\n[selection]\naffinity = {affinity}\n");
    Settings::parse(&text).expect("the simulator's settings parse")
}

/// One node of the simulated federation.
#[derive(Clone, Debug)]
pub struct NodeDef {
    pub id: String,
    pub cores: u32,
    pub ram: u32,
    pub gpu: bool,
    pub master: bool,
}

/// The seed's three nodes.
pub fn seed_topology() -> Vec<NodeDef> {
    let node = |id: &str, cores, ram, gpu, master| NodeDef {
        id: id.to_string(),
        cores,
        ram,
        gpu,
        master,
    };
    vec![
        node("hetzner", 20, 62, false, true),
        node("zombie-pc", 16, 30, true, false),
        node("backup", 28, 64, false, false),
    ]
}

/// The seed's nodes, then hubs `hub3`, `hub4`, ... up to `nodes` in all.
pub fn scaled_topology(nodes: usize) -> Vec<NodeDef> {
    let mut all = seed_topology();
    all.extend((3..nodes).map(|i| NodeDef {
        id: format!("hub{i}"),
        cores: 8,
        ram: 16,
        gpu: false,
        master: false,
    }));
    all.truncate(nodes.max(2));
    all
}

/// How the master generates tasks.
#[derive(Clone, Copy, Debug)]
pub struct LoadPlan {
    /// Mean time between submissions.
    pub every: Duration,
    /// No submissions after this simulated time.
    pub until: Duration,
    /// Tasks submitted at once every `burst_every`.
    pub burst: u32,
    pub burst_every: Duration,
    /// Users also hold conversations (`crate::conversations`).
    pub conversations: bool,
    /// A client streams through the master's AI door (`crate::door_client`).
    pub door_streams: bool,
}

pub struct World {
    pub sim: turmoil::Sim<'static>,
    pub log: SharedLog,
    pub nodes: Vec<NodeDef>,
    pub interval: Duration,
    pub misses_max: u32,
}

/// Seeds derived from the run's seed, so each consumer has its own stream.
pub fn derive_seed(seed: u64, what: &str) -> u64 {
    let digest = Sha256::digest(format!("{seed}/{what}").as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl World {
    pub fn build(
        nodes: Vec<NodeDef>,
        seed: u64,
        tick: Duration,
        builder: impl FnOnce(&mut turmoil::Builder),
        load: LoadPlan,
        affinity: bool,
    ) -> Self {
        let mut config = turmoil::Builder::new();
        config
            .rng_seed(seed)
            .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_S))
            .tick_duration(tick)
            .simulation_duration(Duration::from_secs(100 * 3600))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(30))
            // A kernel's listen backlog, not turmoil's 64: a burst of 80 tasks opens 80
            // connections to the master's HTTP shim at once.
            .tcp_capacity(4096);
        builder(&mut config);
        let mut sim = config.build();
        let log: SharedLog = Arc::new(Mutex::new(Log::default()));
        let federation: Arc<OnceLock<Federation>> = Arc::new(OnceLock::new());
        let gpu_nodes: Vec<NodeId> = nodes
            .iter()
            .filter(|n| n.gpu)
            .map(|n| NodeId::new(n.id.clone()).expect("valid"))
            .collect();
        let incarnations: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();

        for def in &nodes {
            let host = Host {
                def: def.clone(),
                log: log.clone(),
                federation: federation.clone(),
                settings: settings_for(def, affinity, load.door_streams),
                gpu_nodes: gpu_nodes.clone(),
                incarnations: incarnations.clone(),
            };
            sim.host(def.id.clone(), move || run_host(host.clone(), seed, load));
        }
        add_backends_and_clients(&mut sim, &nodes, &log, seed, load);
        federation
            .set(simulated_federation(&sim, &nodes))
            .expect("set once");
        // Every node has the same timing.
        let timing = settings_for(&nodes[0], affinity, load.door_streams).timing;
        {
            let mut log = log.lock().expect("log lock");
            log.relay_nodes = nodes
                .iter()
                .filter(|def| !def.master)
                .map(|def| NodeId::new(def.id.clone()).expect("valid"))
                .collect();
            log.model_rules = Some(ModelRules {
                staleness: Staleness {
                    probe: Duration::from_millis(timing.backend_probe_interval_ms),
                    heartbeats: timing.heartbeat_interval() * timing.misses_max,
                    slack: Duration::from_millis(1_500),
                },
                interval: timing.heartbeat_interval(),
            });
        }
        World {
            sim,
            log,
            nodes,
            interval: timing.heartbeat_interval(),
            misses_max: timing.misses_max,
        }
    }
}

/// Each hub's backend on a host of its own, and the door client's host, after the nodes (their
/// addresses do not move when hosts are added).
fn add_backends_and_clients(
    sim: &mut turmoil::Sim<'static>,
    nodes: &[NodeDef],
    log: &SharedLog,
    seed: u64,
    load: LoadPlan,
) {
    for def in nodes.iter().filter(|def| !def.master) {
        let host = backend_host(&def.id);
        let name = host.clone();
        let node = NodeId::new(def.id.clone()).expect("valid");
        let log = log.clone();
        sim.host(host, move || {
            serve_backend(name.clone(), node.clone(), log.clone())
        });
    }
    if load.door_streams {
        let log = log.clone();
        let seed = derive_seed(seed, "door client");
        sim.host(CLIENT_HOST, move || {
            run_door_client(log.clone(), seed, load.until)
        });
    }
}

/// What one simulated host needs to (re)start its node; cloned for every incarnation.
#[derive(Clone)]
struct Host {
    def: NodeDef,
    log: SharedLog,
    federation: Arc<OnceLock<Federation>>,
    settings: Settings,
    gpu_nodes: Vec<NodeId>,
    incarnations: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// One incarnation of a host: its node on turmoil's UDP, seeded by the host's name and how
/// many times it has started, and on the master the load, on `backup` the adversary.
async fn run_host(host: Host, seed: u64, load: LoadPlan) -> turmoil::Result {
    let Host {
        def,
        log,
        federation,
        settings,
        gpu_nodes,
        incarnations,
    } = host;
    let incarnation = {
        let mut map = incarnations.lock().expect("lock");
        let n = map.entry(def.id.clone()).or_default();
        *n += 1;
        *n
    };
    let me = NodeId::new(def.id.clone()).expect("valid");
    let federation = federation.get().expect("set before the run").clone();
    let base = NodeConfig {
        dir: ".".into(),
        federation,
        settings: settings.clone(),
        me: me.clone(),
        psk: PSK.to_vec(),
        accepted_psks: vec![],
        psk_from_env: false,
    };
    // A node that restarts mid-change reads the files as they are by then.
    let state = log
        .lock()
        .expect("log lock")
        .configs
        .get(&me)
        .cloned()
        .unwrap_or_default();
    let config = configured(&base, &state);
    log.lock()
        .expect("log lock")
        .started
        .insert(me.clone(), crate::record::sim_now());
    let ip = turmoil::lookup(def.id.as_str());
    let socket = SimUdpSocket::bind(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), PORT)).await?;
    let stream = format!("{}#{incarnation}", def.id);
    let mut quic_seed = [0u8; 32];
    ChaCha8Rng::seed_from_u64(derive_seed(seed, &format!("quic/{stream}")))
        .fill_bytes(&mut quic_seed);
    let observer = NodeObserver {
        node: me.clone(),
        log: log.clone(),
        gpu_nodes,
        gpu_task_types: settings.selection.gpu_task_types.clone(),
    };
    let node = Node::start_on(
        config,
        NodeIo {
            socket,
            runtime: Arc::new(quinn::TokioRuntime),
            clock: Arc::new(SimClock::new()),
            rng_seed: derive_seed(seed, &format!("select/{stream}")),
            quic_seed: Some(quic_seed),
            observer: Some(Arc::new(observer)),
            dial: Some(Arc::new(SimDial)),
        },
    )?;
    log.lock()
        .expect("log lock")
        .nodes
        .insert(me.clone(), node.clone());
    // The seed's HTTP API on turmoil's TCP, the same port as QUIC (as in production).
    let listener =
        turmoil::net::TcpListener::bind(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), PORT)).await?;
    tokio::spawn(triforce_net::http::serve(
        node.clone(),
        SimTcpListener(listener),
    ));
    tokio::spawn(apply_config_changes(node.clone(), log.clone(), base, state));
    if def.master {
        serve_master_clients(&node, SocketAddr::new(ip, PORT), &log, seed, load).await?;
    }
    if def.id == "backup" {
        let adversary_seed = derive_seed(seed, &format!("adversary/{stream}"));
        tokio::spawn(adversary(log.clone(), ip, adversary_seed));
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// The master's load, its status reader and its conversations through the seed's API at `me`,
/// and its AI door when the scenario streams through it.
async fn serve_master_clients(
    node: &Node,
    me: SocketAddr,
    log: &SharedLog,
    seed: u64,
    load: LoadPlan,
) -> turmoil::Result {
    if load.door_streams {
        serve_door(node).await?;
    }
    let pool = http::Pool::default();
    tokio::spawn(generate_load(
        me,
        pool.clone(),
        log.clone(),
        derive_seed(seed, "load"),
        load,
    ));
    tokio::spawn(read_status(me, pool.clone(), log.clone(), load));
    if load.conversations {
        let seed = derive_seed(seed, "conversations");
        tokio::spawn(converse(me, pool, log.clone(), seed, load));
    }
    Ok(())
}

/// The master's AI door (`triforce_net::ingress`, without TLS) on turmoil's TCP, with the
/// door client's key.
async fn serve_door(node: &Node) -> turmoil::Result {
    let keys = ApiKeys::parse("sim api keys", &api_keys_toml()).expect("the client's key parses");
    let app = triforce_net::ingress::router(node.clone(), KeyCheck::new(keys), None);
    let any = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), DOOR_PORT);
    let listener = turmoil::net::TcpListener::bind(any).await?;
    tokio::spawn(triforce_net::ingress::serve(
        node.clone(),
        app,
        SimTcpListener(listener),
        None,
    ));
    Ok(())
}

/// The door client's host: its streams to the master's door until `until`.
async fn run_door_client(log: SharedLog, seed: u64, until: Duration) -> turmoil::Result {
    let door = SocketAddr::new(turmoil::lookup("hetzner"), DOOR_PORT);
    open_streams(door, log, seed, until).await;
    std::future::pending::<()>().await;
    Ok(())
}

/// The simulated federation's `federation_nodes.json`, with the addresses turmoil gave.
fn simulated_federation(sim: &turmoil::Sim<'_>, nodes: &[NodeDef]) -> Federation {
    let mut entries = serde_json::Map::new();
    for def in nodes {
        let ip: IpAddr = sim.lookup(def.id.as_str());
        let role = if def.master { "master" } else { "hub" };
        let gpu = def.gpu.then_some("simulated GPU");
        entries.insert(
            def.id.to_string(),
            json!({"ip": ip, "port": PORT, "cores": def.cores, "ram": def.ram, "gpu": gpu, "role": role, "name": def.id}),
        );
    }
    Federation::parse(&serde_json::Value::Object(entries).to_string())
        .expect("the simulated federation parses")
}
