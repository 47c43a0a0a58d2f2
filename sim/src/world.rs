//! The simulated federation: one turmoil host per node running the real node, a task load on
//! the master, and an adversary beside one hub.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use triforce_core::auth::{HmacSha256Key, Keyring};
use triforce_core::config::{Federation, Settings};
use triforce_core::node::NodeId;
use triforce_net::clock::Clock;
use triforce_net::load::NodeConfig;
use triforce_net::node::{Node, NodeIo};
use triforce_net::quic::{client_config, make_proof, write_frame, Frame, Identity, Role};

use crate::backend::{backend_host, serve_backend, SimDial, BACKEND_PORT};
use crate::clock::SimClock;
use crate::http::{self, SimTcpListener};
use crate::record::{sim_now, Log, NodeObserver, SharedLog};
use crate::scenario::{ConfigState, KeyStep};
use crate::socket::SimUdpSocket;

pub const PORT: u16 = 9000;
const PSK: &[u8] = b"simulated-federation-psk";
/// The key a PSK rotation moves to.
const NEW_PSK: &[u8] = b"simulated-federation-psk-rotated";
/// Wall time at the start of every run, so one seed is one run.
pub const EPOCH_UNIX_S: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// The settings every simulated node runs with: the seed's timings, sleep executors.
pub const SETTINGS: &str = r#"
[executors.chat]
kind = "sleep"
[executors.gpu_inference]
kind = "sleep"
"#;

/// A node's settings: the master runs its chat tasks itself (`sleep`); a hub's `http` executor
/// calls its backend host.
fn settings_for(def: &NodeDef) -> Settings {
    let text = if def.master {
        SETTINGS.to_string()
    } else {
        let backend = format!(
            "[executors.chat]\nkind = \"http\"\nurl = \"http://{}:{BACKEND_PORT}/\"\ntimeout_ms = 30000",
            backend_host(&def.id)
        );
        SETTINGS.replace("[executors.chat]\nkind = \"sleep\"", &backend)
    };
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
pub struct Load {
    /// Mean time between submissions.
    pub every: Duration,
    /// No submissions after this simulated time.
    pub until: Duration,
    /// Tasks submitted at once every `burst_every`.
    pub burst: u32,
    pub burst_every: Duration,
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
        load: Load,
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
                settings: settings_for(def),
                gpu_nodes: gpu_nodes.clone(),
                incarnations: incarnations.clone(),
            };
            sim.host(def.id.clone(), move || run_host(host.clone(), seed, load));
        }
        // Each hub's chat backend on a host of its own, after the nodes (their addresses do not
        // move when backends are added).
        for def in nodes.iter().filter(|def| !def.master) {
            let host = backend_host(&def.id);
            let name = host.clone();
            sim.host(host, move || serve_backend(name.clone()));
        }
        federation
            .set(simulated_federation(&sim, &nodes))
            .expect("set once");
        // Every node has the same timing.
        let timing = settings_for(&nodes[0]).timing;
        World {
            sim,
            log,
            nodes,
            interval: timing.heartbeat_interval(),
            misses_max: timing.misses_max,
        }
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
async fn run_host(host: Host, seed: u64, load: Load) -> turmoil::Result {
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
        let me = SocketAddr::new(ip, PORT);
        let pool = http::Pool::default();
        tokio::spawn(generate_load(
            me,
            pool.clone(),
            log.clone(),
            derive_seed(seed, "load"),
            load,
        ));
        tokio::spawn(read_status(me, pool, log.clone(), load));
    }
    if def.id == "backup" {
        let adversary_seed = derive_seed(seed, &format!("adversary/{stream}"));
        tokio::spawn(adversary(log.clone(), ip, adversary_seed));
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// `base` as a scenario changed it: the keys of one step of a PSK rotation, some nodes left
/// out of the nodes file.
fn configured(base: &NodeConfig, state: &ConfigState) -> NodeConfig {
    let (psk, accepted): (&[u8], &[&[u8]]) = match state.keys {
        KeyStep::Old => (PSK, &[]),
        KeyStep::AcceptNew => (PSK, &[NEW_PSK]),
        KeyStep::SignNew => (NEW_PSK, &[PSK]),
        KeyStep::DropOld => (NEW_PSK, &[]),
    };
    let mut federation = base.federation.clone();
    federation
        .nodes
        .retain(|id, _| !state.without.contains(id.as_str()));
    NodeConfig {
        psk: psk.to_vec(),
        accepted_psks: accepted.iter().map(|k| k.to_vec()).collect(),
        federation,
        ..base.clone()
    }
}

/// The host's side of a reload: when the plan changes this node's files, the node reloads
/// them (as SIGHUP would, without the files), from `applied`, the state it started with.
async fn apply_config_changes(
    node: Node,
    log: SharedLog,
    base: NodeConfig,
    mut applied: ConfigState,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wanted = log
            .lock()
            .expect("log lock")
            .configs
            .get(&base.me)
            .cloned()
            .unwrap_or_default();
        if wanted == applied {
            continue;
        }
        if let Err(error) = node.reload(configured(&base, &wanted)).await {
            log.lock().expect("log lock").violation(format!(
                "{}: reload to {wanted:?} refused: {error}",
                base.me
            ));
        }
        log.lock().expect("log lock").trace(format!(
            "{} {} reloaded {wanted:?}",
            sim_now().as_millis(),
            base.me
        ));
        applied = wanted;
    }
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

/// Submits a task every `load.every` on average (seeded), each with a fresh id, plus a burst
/// of `load.burst` chat tasks every `load.burst_every`, which fills the master's workers so
/// that work spreads to the hubs (and failover has something to do when one dies). Records
/// every outcome.
async fn generate_load(
    master: SocketAddr,
    pool: http::Pool,
    log: SharedLog,
    seed: u64,
    load: Load,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut n = 0u64;
    let mut next_burst = load.burst_every;
    loop {
        let every_ms = load.every.as_millis() as u64;
        let wait = every_ms / 2 + rng.next_u64() % every_ms.max(1);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let now = sim_now();
        if now >= load.until {
            return;
        }
        let count = if now >= next_burst {
            next_burst += load.burst_every;
            load.burst
        } else {
            1
        };
        for _ in 0..count {
            n += 1;
            let gpu = count == 1 && rng.next_u64() % 10 < 3;
            let task_type = if gpu { "gpu_inference" } else { "chat" };
            let ms = 500 + rng.next_u64() % 4_000;
            submit(
                master,
                &pool,
                &log,
                format!("t{n}"),
                task_type,
                ms,
                (rng.next_u64() % 3) as i32,
            );
        }
    }
}

/// Submits one task as a signed request to the master's HTTP shim, as the master itself (the
/// load runs on its host, so the request comes from its address), and records the answer.
fn submit(
    master: SocketAddr,
    pool: &http::Pool,
    log: &SharedLog,
    task_id: String,
    task_type: &str,
    ms: u64,
    priority: i32,
) {
    let body =
        json!({"task_id": task_id, "type": task_type, "payload": {"ms": ms}, "priority": priority})
            .to_string()
            .into_bytes();
    {
        let mut log = log.lock().expect("log lock");
        let at = sim_now();
        log.trace(format!("{} submit {task_id} {task_type}", at.as_millis()));
        log.submitted
            .insert(task_id.clone(), (at, task_type.to_string()));
    }
    let log = log.clone();
    let pool = pool.clone();
    tokio::spawn(async move {
        let headers = http::signed(signing_key(&log, "hetzner"), "hetzner", &body);
        let answer =
            http::exchange_in(&pool, master, "POST", "/v1/federation/task", &headers, body).await;
        let mut log = log.lock().expect("log lock");
        match answer {
            Ok(answer) => log.record_answer(&task_id, sim_now(), answer.status, &answer.body),
            Err(error) => log.violation(format!(
                "{}: task {task_id}: no HTTP answer from the master: {error}",
                sim_now().as_secs_f64()
            )),
        }
    });
}

/// The key `node`'s files name for signing now (a rotation may have moved it).
fn signing_key(log: &SharedLog, node: &str) -> &'static [u8] {
    let id = NodeId::new(node).expect("valid node id");
    let step = log
        .lock()
        .expect("log lock")
        .configs
        .get(&id)
        .map(|c| c.keys)
        .unwrap_or_default();
    match step {
        KeyStep::Old | KeyStep::AcceptNew => PSK,
        KeyStep::SignNew | KeyStep::DropOld => NEW_PSK,
    }
}

/// Reads the master's status over HTTP every 30 s while the load runs: it must answer, in the
/// seed's shape, with the master in it.
async fn read_status(master: SocketAddr, pool: http::Pool, log: SharedLog, load: Load) {
    while sim_now() < load.until {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let headers = http::signed(signing_key(&log, "hetzner"), "hetzner", b"");
        let answer = http::exchange_in(
            &pool,
            master,
            "GET",
            "/v1/federation/status",
            &headers,
            Vec::new(),
        )
        .await;
        let status: Option<serde_json::Value> = answer
            .as_ref()
            .ok()
            .filter(|a| a.status == 200)
            .and_then(|a| serde_json::from_slice(&a.body).ok());
        let shaped = status.is_some_and(|s| {
            s["nodes"]["hetzner"].is_object() && s["total_cores"].as_u64().is_some()
        });
        if !shaped {
            let seen = match &answer {
                Ok(a) => format!("{} {}", a.status, String::from_utf8_lossy(&a.body)),
                Err(error) => error.to_string(),
            };
            log.lock().expect("log lock").violation(format!(
                "{}: the master's status over HTTP: {seen}",
                sim_now().as_secs_f64()
            ));
        }
    }
}

/// A clock for the adversary: the host's, moved into the past.
struct Skewed {
    inner: SimClock,
    behind_s: u64,
}

impl Clock for Skewed {
    fn now(&self) -> triforce_core::time::Instant {
        self.inner.now()
    }
    fn unix_s(&self) -> u64 {
        self.inner.unix_s().saturating_sub(self.behind_s)
    }
}

/// Beside `backup` (its address, and even the PSK, as if it had stolen both), tries every 20 s
/// to get a QUIC connection to the master accepted with a wrong key, a stale proof and a
/// proof replayed from another connection. Every success is a violation.
async fn adversary(log: SharedLog, ip: IpAddr, seed: u64) {
    let master = NodeId::new("hetzner").expect("valid");
    let Some(endpoint) = adversary_endpoint(seed).await else {
        return;
    };
    let target = SocketAddr::new(turmoil::lookup("hetzner"), PORT);
    let ips = BTreeMap::from([
        (
            NodeId::new("hetzner").expect("valid"),
            turmoil::lookup("hetzner"),
        ),
        (NodeId::new("backup").expect("valid"), ip),
    ]);
    let identity = |psk: &[u8], behind_s: u64| Identity {
        me: NodeId::new("backup").expect("valid"),
        signing: HmacSha256Key::new(psk),
        keys: Keyring::from_psks(psk, &[]),
        window_s: 30,
        node_ips: ips.clone(),
        clock: Arc::new(Skewed {
            inner: SimClock::new(),
            behind_s,
        }),
        timeout: Duration::from_secs(5),
    };
    loop {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let attempts: [(&str, &[u8], u64); 2] = [
            ("wrong key", b"a-guessed-wrong-psk-000", 0),
            ("stale proof", PSK, 120),
        ];
        for (what, psk, behind_s) in attempts {
            let Ok(connecting) = endpoint.connect(target, "triforce-node") else {
                continue;
            };
            let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(5), connecting).await
            else {
                continue;
            };
            log.lock().expect("log lock").adversary_attempts += 1;
            if identity(psk, behind_s)
                .prove_to(&connection, &master)
                .await
                .is_ok()
            {
                log.lock()
                    .expect("log lock")
                    .violation(format!("adversary's {what} was accepted"));
            }
            connection.close(0u32.into(), b"");
        }
        replay_a_proof(&endpoint, target, &log).await;
        refused_over_http(&log).await;
    }
}

/// One request the adversary sends, and the refusal it must get.
struct Hostile {
    what: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

/// The adversary at the master's HTTP shim, over turmoil's TCP from `backup`'s address: a
/// signature under a guessed key, a request signed as the master (with the stolen PSK) from
/// the wrong address, a captured request sent twice, and a body over the limit. Each must be
/// refused with its own code; anything else is a violation.
async fn refused_over_http(log: &SharedLog) {
    let master = SocketAddr::new(turmoil::lookup("hetzner"), PORT);
    let task = |id: &str| {
        // A type no node runs: the first, valid copy is answered 422 and runs nowhere.
        json!({"task_id": id, "type": "adversary_probe", "payload": {}, "priority": 1})
            .to_string()
            .into_bytes()
    };
    let n = log.lock().expect("log lock").adversary_attempts;
    let stolen = signing_key(log, "backup");
    let guessed = task(&format!("guessed-{n}"));
    let captured = task(&format!("captured-{n}"));
    let captured_headers = http::signed(stolen, "backup", &captured);
    let wrong_source = task(&format!("wrong-source-{n}"));
    let oversized = vec![b' '; (1 << 20) + 1];
    let attempts = [
        Hostile {
            what: "a guessed key",
            headers: http::signed(b"a-guessed-wrong-psk-000", "backup", &guessed),
            body: guessed,
            status: 401,
            code: "bad_signature",
        },
        Hostile {
            what: "the master's name from backup's address",
            headers: http::signed(stolen, "hetzner", &wrong_source),
            body: wrong_source,
            status: 403,
            code: "ip_not_allowed",
        },
        Hostile {
            what: "a captured request (first copy)",
            headers: captured_headers.clone(),
            body: captured.clone(),
            status: 422,
            code: "all_nodes_failed",
        },
        Hostile {
            what: "a captured request sent again",
            headers: captured_headers,
            body: captured,
            status: 401,
            code: "replay",
        },
        Hostile {
            what: "a body over the limit",
            headers: http::signed(stolen, "backup", b""),
            body: oversized,
            status: 413,
            code: "body_too_large",
        },
    ];
    for Hostile {
        what,
        headers,
        body,
        status,
        code,
    } in attempts
    {
        let Ok(answer) =
            http::exchange(master, "POST", "/v1/federation/task", &headers, body).await
        else {
            // Lost on the way (bursty loss): whether the node saw it is unknown, so the replay
            // that follows may be its first copy. The next round tries again.
            break;
        };
        let answered: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let mut log = log.lock().expect("log lock");
        log.adversary_attempts += 1;
        // A held link may deliver the request after its window: refused as expired, which
        // is as good a refusal as the one it was sent to provoke.
        let late = answer.status == 401 && answered["error"]["code"] == "expired";
        if !late && (answer.status != status || answered["error"]["code"] != code) {
            log.violation(format!(
                "{}: the adversary's HTTP request with {what} got {} {}, not {status} {code}",
                sim_now().as_secs_f64(),
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
    }
}

/// The adversary's QUIC endpoint beside `backup`, seeded so one seed gives one run.
async fn adversary_endpoint(seed: u64) -> Option<quinn::Endpoint> {
    let socket = SimUdpSocket::bind(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0))
        .await
        .ok()?;
    let mut quic_seed = [0u8; 32];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut quic_seed);
    let mut endpoint_config = quinn::EndpointConfig::default();
    endpoint_config.rng_seed(Some(quic_seed));
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config,
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .ok()?;
    endpoint.set_default_client_config(client_config(30_000, 1 << 20));
    Some(endpoint)
}

/// A proof made for one connection, sent on another: the node must refuse it.
async fn replay_a_proof(endpoint: &quinn::Endpoint, target: SocketAddr, log: &SharedLog) {
    let (Ok(first), Ok(second)) = (
        endpoint.connect(target, "triforce-node"),
        endpoint.connect(target, "triforce-node"),
    ) else {
        return;
    };
    let (Ok(Ok(first)), Ok(Ok(second))) = (
        tokio::time::timeout(Duration::from_secs(5), first).await,
        tokio::time::timeout(Duration::from_secs(5), second).await,
    ) else {
        return;
    };
    let mut exporter = [0u8; 32];
    if first
        .export_keying_material(&mut exporter, b"EXPERIMENTAL triforce node proof", b"")
        .is_err()
    {
        return;
    }
    let unix_s = SimClock::new().unix_s();
    let proof = make_proof(
        &HmacSha256Key::new(PSK),
        Role::Client,
        &exporter,
        "backup",
        unix_s,
    );
    log.lock().expect("log lock").adversary_attempts += 1;
    if let Ok((mut send, mut recv)) = second.open_bi().await {
        let _ = write_frame(
            &mut send,
            &Frame::Hello {
                node: "backup".into(),
                unix_s,
                proof,
            },
        )
        .await;
        let _ = send.finish();
        if let Ok(Ok(Frame::Welcome { .. })) = tokio::time::timeout(
            Duration::from_secs(5),
            triforce_net::quic::read_frame(&mut recv, 256),
        )
        .await
        {
            log.lock()
                .expect("log lock")
                .violation("adversary's replayed proof was accepted".into());
        }
    }
    first.close(0u32.into(), b"");
    second.close(0u32.into(), b"");
}
