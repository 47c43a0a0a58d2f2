//! `triforce demo`: the seed's three nodes on 127.0.0.1-3, in this process, with short timers.
//! It shows routing (GPU tasks to the GPU node), a node dying (failover, then offline after three
//! missed heartbeats) and coming back (online again), and the front door: an OpenAI chat
//! streamed token by token from the LLM backend behind zombie-pc through hetzner's ingress.
//! Then it exits 0.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use triforce_net::client::SignedClient;
use triforce_net::clock::SystemClock;
use triforce_net::load::NodeConfig;
use triforce_net::node::Node;

use super::status::status_table;
use crate::sockets::{bind, rng_seed};

#[derive(clap::Args)]
pub struct Args {
    /// Keep the demo's config directory (printed at start) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// (id, ip, cores, ram, gpu, role, name): the seed's nodes, moved to loopback.
type DemoNode = (
    &'static str,
    &'static str,
    u32,
    u32,
    Option<&'static str>,
    &'static str,
    &'static str,
);

const NODES: [DemoNode; 3] = [
    (
        "hetzner",
        "127.0.0.1",
        20,
        62,
        None,
        "master",
        "Hetzner EX63",
    ),
    (
        "zombie-pc",
        "127.0.0.2",
        16,
        30,
        Some("RX 6800 XT"),
        "hub",
        "Zombie PC",
    ),
    ("backup", "127.0.0.3", 28, 64, None, "hub", "Backup VPS"),
];

const HEARTBEAT_MS: u64 = 500;

/// Each node's own settings; `{INGRESS}` and `{BACKEND}` are filled in per node.
const SETTINGS: &str = r#"# The demo's settings: the seed's rules with timers shortened 20x.
psk_file = "psk"
{INGRESS}
[timing]
heartbeat_interval_ms = 500
misses_max = 3
accept_timeout_ms = 400
progress_interval_ms = 200
progress_misses_max = 3
attempt_timeout_ms = 5000
task_deadline_ms = 15000
drain_timeout_ms = 1000

[executors.gpu_inference]
kind = "sleep"
{BACKEND}"#;

/// zombie-pc and backup relay chat to the demo's LLM backend (backup reaches it across the
/// VPN, as a node reaches a backend on another machine); hetzner runs no chat itself.
const CHAT_RELAY: &str = r#"
[executors.chat]
kind = "openai"
base_url = "http://{BACKEND_ADDR}"
"#;

/// hetzner's door for AI clients.
const INGRESS: &str = r#"
[ingress]
listen = "{INGRESS_ADDR}"
"#;

/// The demo's only API key (a real one comes from `triforce apikey add`).
const DEMO_KEY: &str = "tf-demo-key";

/// The LLM backend's pace: 8 tokens, 40 ms apart.
const TOKENS: u32 = 8;
const TOKEN_GAP_MS: u64 = 40;

struct RunningNode {
    node: Node,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    ingress: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Where the demo's extra listeners are.
struct Ports {
    federation: u16,
    ingress: SocketAddr,
    backend: SocketAddr,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("triforce-demo-{}", std::process::id()));
    let ports = Ports {
        federation: free_port()?,
        ingress: free_tcp("127.0.0.1")?,
        backend: free_tcp("127.0.0.2")?,
    };
    write_config(&dir, &ports)?;
    let port = ports.federation;
    let backend = tokio::net::TcpListener::bind(ports.backend).await?;
    let llm = super::backend::llm::router(
        "zombie-llm".into(),
        super::backend::llm::LlmArgs::paced(TOKENS, TOKEN_GAP_MS),
    );
    tokio::spawn(async move { axum::serve(backend, llm).await });
    println!("TriForce demo: 3 nodes on 127.0.0.1-3, port {port} (HTTP on TCP, QUIC on UDP)");
    println!(
        "LLM backend (triforce backend --llm) at {}, behind zombie-pc; OpenAI/Ollama door on hetzner at {}",
        ports.backend, ports.ingress
    );
    println!(
        "config: {}   heartbeat every {HEARTBEAT_MS} ms, offline after 3 misses\n",
        dir.display()
    );
    let result = script(&dir, &ports).await;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|()| ExitCode::SUCCESS)
}

async fn script(dir: &Path, ports: &Ports) -> Result<()> {
    let mut nodes = Vec::new();
    for (id, ..) in NODES {
        nodes.push(start(dir, id).await?);
    }
    let client = demo_client(dir, ports.federation)?;
    wait_for(&client, "everyone online", |s| {
        count_state(s, "online") == 2
    })
    .await?;
    println!("== The federation, as hetzner sees it");
    print!(
        "{}",
        status_table(&client.get("/v1/federation/status").await?.body)
    );

    println!("\n== Six tasks submitted to hetzner at once, and where they ran");
    let mix = vec![
        ("chat", chat("hello")),
        ("chat", chat("how are you?")),
        ("gpu_inference", json!({"ms": 300, "model": "llama3"})),
        ("echo", json!({"text": "ping"})),
        ("gpu_inference", json!({"ms": 300, "model": "sdxl"})),
        ("chat", chat("bye")),
    ];
    submit_all(&client, mix).await?;

    println!("\n== backup stops (as if its process died)");
    let backup = nodes.pop().expect("three nodes");
    stop(backup).await;
    let started = Instant::now();
    println!("-- six chats right after: those routed to backup fail over");
    let burst = (0..6)
        .map(|i| ("chat", chat(&format!("during outage {i}"))))
        .collect();
    submit_all(&client, burst).await?;
    wait_for(&client, "backup offline", |s| {
        s["nodes"]["backup"]["state"] == "offline"
    })
    .await?;
    println!(
        "-- hetzner marks backup offline {:.1} s after the stop",
        started.elapsed().as_secs_f64()
    );
    print!(
        "{}",
        status_table(&client.get("/v1/federation/status").await?.body)
    );
    show(
        &submit(&client, "chat", chat("with backup offline")).await?,
        "chat",
    );

    println!("\n== backup comes back");
    let restarted = Instant::now();
    nodes.push(start_retrying(dir, "backup").await?);
    wait_for(&client, "backup online", |s| {
        s["nodes"]["backup"]["state"] == "online"
    })
    .await?;
    println!(
        "-- online again {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    print!(
        "{}",
        status_table(&client.get("/v1/federation/status").await?.body)
    );

    front_door(ports.ingress).await?;

    for running in nodes {
        stop(running).await;
    }
    println!("\nDemo finished: routing, failover, offline detection, recovery and a streamed chat all shown.");
    Ok(())
}

/// A chat task as the seed's API takes it for a relaying node: the OpenAI request inside.
fn chat(prompt: &str) -> Value {
    json!({"path": "/v1/chat/completions",
           "body": {"model": "tiny-llm", "messages": [{"role": "user", "content": prompt}]}})
}

/// An OpenAI chat with `"stream": true` through hetzner's ingress: each token printed as it
/// arrives, with its time since the request, across hetzner -> zombie-pc or backup -> backend.
async fn front_door(ingress: SocketAddr) -> Result<()> {
    println!("\n== The front door: an OpenAI streamed chat sent to hetzner's ingress");
    println!("-- tokens as they arrive (the backend writes one every {TOKEN_GAP_MS} ms):");
    let started = Instant::now();
    let mut response = reqwest::Client::new()
        .post(format!("http://{ingress}/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .json(&json!({"model": "tiny-llm", "stream": true,
                      "messages": [{"role": "user", "content": "Say something, token by token."}]}))
        .send()
        .await?;
    let node = response
        .headers()
        .get("x-triforce-node")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string();
    if !response.status().is_success() {
        bail!(
            "the ingress answered {}: {}",
            response.status(),
            response.text().await?
        );
    }
    let mut pending = String::new();
    let mut tokens = 0;
    while let Some(bytes) = response.chunk().await? {
        pending.push_str(&String::from_utf8_lossy(&bytes));
        while let Some((event, rest)) = pending.split_once("\n\n") {
            let data = event.trim_start_matches("data: ").to_string();
            pending = rest.to_string();
            let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
                continue; // [DONE]
            };
            if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
                tokens += 1;
                println!("  +{:>4} ms  {text}", started.elapsed().as_millis());
            }
        }
    }
    println!("-- {tokens} tokens, relayed by {node}, streamed through QUIC to hetzner and out");
    println!("-- the same from Python (pip install openai):");
    println!("   OpenAI(base_url=\"http://{ingress}/v1\", api_key=\"{DEMO_KEY}\").chat.completions.create(model=\"tiny-llm\", messages=[{{\"role\": \"user\", \"content\": \"hi\"}}], stream=True)");
    Ok(())
}

fn show(reply: &Value, task_type: &str) {
    let attempts: Vec<String> = reply["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| match a["error"]["code"].as_str() {
            Some(code) => format!("{} ({code})", a["node"].as_str().unwrap_or("?")),
            None => a["node"].as_str().unwrap_or("?").to_string(),
        })
        .collect();
    let status = reply["status"].as_str().unwrap_or("?");
    let node = reply["node"].as_str().unwrap_or("-");
    println!(
        "  {task_type:<14} {status:<10} ran on {node:<10} attempts: {}",
        attempts.join(" -> ")
    );
}

/// Submits all tasks at once and shows each outcome in submission order.
async fn submit_all(client: &SignedClient, tasks: Vec<(&'static str, Value)>) -> Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for (index, (task_type, payload)) in tasks.into_iter().enumerate() {
        let client = client.clone();
        set.spawn(async move { (index, task_type, submit(&client, task_type, payload).await) });
    }
    let mut replies = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (index, task_type, reply) = joined?;
        replies.push((index, task_type, reply?));
    }
    replies.sort_by_key(|(index, ..)| *index);
    for (_, task_type, reply) in replies {
        show(&reply, task_type);
    }
    Ok(())
}

async fn submit(client: &SignedClient, task_type: &str, payload: Value) -> Result<Value> {
    let body = json!({"task_id": uuid::Uuid::new_v4().to_string(), "type": task_type, "payload": payload, "priority": 1});
    Ok(client
        .post("/v1/federation/task", body.to_string().as_bytes())
        .await?
        .body)
}

fn count_state(status: &Value, state: &str) -> usize {
    status["nodes"].as_object().map_or(0, |nodes| {
        nodes.values().filter(|n| n["state"] == state).count()
    })
}

async fn wait_for(client: &SignedClient, what: &str, done: impl Fn(&Value) -> bool) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if done(&client.get("/v1/federation/status").await?.body) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out waiting for {what}")
}

fn demo_client(dir: &Path, port: u16) -> Result<SignedClient> {
    let psk = std::fs::read(dir.join("hetzner").join("psk"))?;
    let me = triforce_core::node::NodeId::new("hetzner")?;
    let target = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    Ok(SignedClient::new(
        me,
        &psk,
        target.ip(),
        target,
        Duration::from_secs(30),
    )?)
}

async fn start(dir: &Path, id: &str) -> Result<RunningNode> {
    let config = NodeConfig::load(&dir.join(id), id, None)?;
    let addr = SocketAddr::new(config.my_ip(), config.my_spec().port);
    let (udp, tcp) = bind(addr).await?;
    let ingress = match config.settings.ingress.listen {
        Some(listen) => {
            let (_, keys) = triforce_net::ingress::load_api_keys(&config)?;
            let usage = triforce_net::usage::start_meter(&config)?;
            Some((tokio::net::TcpListener::bind(listen).await?, keys, usage))
        }
        None => None,
    };
    let node = Node::start(config, udp, Arc::new(SystemClock::new()), rng_seed())?;
    let http = tokio::spawn(triforce_net::http::serve(node.clone(), tcp));
    let ingress = ingress.map(|(listener, keys, usage)| {
        let keys = triforce_net::ingress::KeyCheck::new(keys);
        let app = triforce_net::ingress::router(node.clone(), keys, usage);
        tokio::spawn(triforce_net::ingress::serve(
            node.clone(),
            app,
            listener,
            None,
        ))
    });
    Ok(RunningNode {
        node,
        http,
        ingress,
    })
}

/// A restarted node may find its port held for a moment by the old sockets' last packets.
async fn start_retrying(dir: &Path, id: &str) -> Result<RunningNode> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match start(dir, id).await {
            Ok(running) => return Ok(running),
            Err(error) if Instant::now() < until => {
                tracing::debug!(%error, "retrying bind");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn stop(running: RunningNode) {
    running.node.shutdown(Duration::ZERO).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), running.http).await;
    if let Some(ingress) = running.ingress {
        let _ = tokio::time::timeout(Duration::from_secs(2), ingress).await;
    }
}

/// One config directory per node, as on real machines: the same node list and PSK, and each
/// node's own executors (and hetzner's ingress with the demo's key).
fn write_config(dir: &Path, ports: &Ports) -> Result<()> {
    let port = ports.federation;
    let nodes: serde_json::Map<String, Value> = NODES
        .iter()
        .map(|(id, ip, cores, ram, gpu, role, name)| {
            let spec = json!({"ip": ip, "port": port, "cores": cores, "ram": ram, "gpu": gpu, "role": role, "name": name});
            (id.to_string(), spec)
        })
        .collect();
    let psk = format!(
        "demo-{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    for (id, ..) in NODES {
        let node_dir = dir.join(id);
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("cannot create {}", node_dir.display()))?;
        std::fs::write(
            node_dir.join("federation_nodes.json"),
            serde_json::to_string_pretty(&nodes)?,
        )?;
        let (ingress, backend) = match id {
            "hetzner" => (
                INGRESS.replace("{INGRESS_ADDR}", &ports.ingress.to_string()),
                String::new(),
            ),
            _ => (
                String::new(),
                CHAT_RELAY.replace("{BACKEND_ADDR}", &ports.backend.to_string()),
            ),
        };
        let settings = SETTINGS
            .replace("{INGRESS}", &ingress)
            .replace("{BACKEND}", &backend);
        std::fs::write(node_dir.join("federation.toml"), settings)?;
        // Readable by this user only: `run` refuses a key file others may read.
        write_secret(&node_dir.join("psk"), &psk)?;
        let keys = triforce_core::config::ApiKeys {
            keys: vec![triforce_core::config::ApiKey {
                dashboard: true,
                ..triforce_core::config::ApiKey::new(
                    "demo",
                    triforce_core::config::key_hash(DEMO_KEY),
                )
            }],
        };
        write_secret(&node_dir.join("api_keys"), &keys.to_toml())?;
    }
    Ok(())
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())?;
    Ok(())
}

/// A free TCP port on `ip`.
fn free_tcp(ip: &str) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(format!("{ip}:0"))?;
    Ok(listener.local_addr()?)
}

/// A port free on TCP and UDP on all three demo addresses.
fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let free = NODES.iter().all(|(_, ip, ..)| {
            let addr: SocketAddr = format!("{ip}:{port}").parse().expect("valid address");
            std::net::TcpListener::bind(addr).is_ok() && std::net::UdpSocket::bind(addr).is_ok()
        });
        if free {
            return Ok(port);
        }
    }
    bail!("found no port free on 127.0.0.1-3")
}
