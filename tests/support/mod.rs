//! A real federation for end-to-end tests: three `triforce run` processes on 127.0.0.1-3, each
//! with its own config dir copy, short timers, and signed clients bound to node addresses.

#![allow(dead_code)]

pub mod ingress;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use triforce_core::node::NodeId;
use triforce_net::client::SignedClient;

pub const PSK: &str = "e2e-test-psk-0123456789abcdef";
pub const NODES: [(&str, &str); 3] = [
    ("hetzner", "127.0.0.1"),
    ("zombie-pc", "127.0.0.2"),
    ("backup", "127.0.0.3"),
];

pub const SETTINGS: &str = r#"
psk_file = "psk"
[timing]
heartbeat_interval_ms = 300
misses_max = 3
accept_timeout_ms = 300
accept_timeout_min_ms = 50
progress_interval_ms = 100
progress_misses_max = 3
attempt_timeout_ms = 10000
task_deadline_ms = 20000
drain_timeout_ms = 2000
backend_probe_interval_ms = 200
[executors.chat]
kind = "sleep"
[executors.gpu_inference]
kind = "sleep"
"#;

pub struct Federation {
    pub dir: PathBuf,
    pub port: u16,
    /// Each node reads its own copy of the config (`dir/<node>/`), as on real machines, so
    /// nodes can differ (executors, ingress); otherwise all read `dir`.
    per_node: bool,
    children: Vec<(String, Option<Child>)>,
    /// Nodes beyond [`NODES`] started with [`Self::start_extra`], with their addresses.
    extras: Vec<(String, IpAddr)>,
}

fn free_port() -> u16 {
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let free = NODES.iter().all(|(_, ip)| {
            let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
            std::net::TcpListener::bind(addr).is_ok() && std::net::UdpSocket::bind(addr).is_ok()
        });
        if free {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1-3");
}

impl Federation {
    /// Writes a config and starts all three nodes.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, "")
    }

    /// Like [`Self::start`], with `extra` appended to federation.toml.
    pub fn start_with(name: &str, extra: &str) -> Self {
        Self::start_configured(name, |_| extra.to_string(), |_, _| {}, false)
    }

    /// Every node with its own config dir: `extra_for(node)` appended to its federation.toml
    /// (which then has no executors but those), and `prepare(node, dir)` run before it starts.
    pub fn start_each_prepared(
        name: &str,
        extra_for: impl Fn(&str) -> String,
        prepare: impl Fn(&str, &std::path::Path),
    ) -> Self {
        Self::start_configured(name, extra_for, prepare, true)
    }

    fn start_configured(
        name: &str,
        extra_for: impl Fn(&str) -> String,
        prepare: impl Fn(&str, &std::path::Path),
        per_node: bool,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("triforce-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let nodes: serde_json::Map<String, Value> = NODES
            .iter()
            .map(|(id, ip)| {
                let (cores, ram, gpu) = match *id {
                    "hetzner" => (20, 62, Value::Null),
                    "zombie-pc" => (16, 30, json!("RX 6800 XT")),
                    _ => (28, 64, Value::Null),
                };
                let role = if *id == "hetzner" { "master" } else { "hub" };
                (id.to_string(), json!({"ip": ip, "port": port, "cores": cores, "ram": ram, "gpu": gpu, "role": role, "name": id}))
            })
            .collect();
        let config_dirs: Vec<(&str, PathBuf)> = if per_node {
            NODES.iter().map(|(id, _)| (*id, dir.join(id))).collect()
        } else {
            vec![("hetzner", dir.clone())]
        };
        for (id, config_dir) in &config_dirs {
            std::fs::create_dir_all(config_dir).unwrap();
            std::fs::write(
                config_dir.join("federation_nodes.json"),
                Value::Object(nodes.clone()).to_string(),
            )
            .unwrap();
            let settings = if per_node {
                // Per-node federations carry streams: 50 at once through a debug build on two
                // cores can hold an acknowledgement past 50 ms, which is no dead node.
                SETTINGS
                    .split("[executors.chat]")
                    .next()
                    .unwrap()
                    .replace("accept_timeout_ms = 300", "accept_timeout_ms = 1000")
                    .replace("accept_timeout_min_ms = 50", "accept_timeout_min_ms = 500")
            } else {
                SETTINGS.to_string()
            };
            let settings = format!("{settings}\n{}", extra_for(id));
            std::fs::write(config_dir.join("federation.toml"), settings).unwrap();
            write_key(&config_dir.join("psk"), PSK);
            prepare(id, config_dir);
        }
        let mut federation = Federation {
            dir,
            port,
            per_node,
            children: Vec::new(),
            extras: Vec::new(),
        };
        for (id, _) in NODES {
            let child = federation.spawn(id);
            federation.children.push((id.to_string(), Some(child)));
        }
        federation
    }

    /// The config dir node `id` reads.
    pub fn config_dir(&self, id: &str) -> PathBuf {
        if self.per_node {
            self.dir.join(id)
        } else {
            self.dir.clone()
        }
    }

    fn spawn(&self, id: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{id}.log"))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_triforce"))
            .args(["run", "--config"])
            .arg(self.config_dir(id))
            .args(["--node", id])
            .env_remove("TRIFORCE_PSK")
            .env("RUST_LOG", "info,quinn=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the triforce binary starts")
    }

    /// The process slot of node `id` (empty while the node is down).
    fn slot(&mut self, id: &str) -> &mut Option<Child> {
        let (_, child) = self
            .children
            .iter_mut()
            .find(|(name, _)| name == id)
            .expect("a node of this federation");
        child
    }

    /// `kill -9` of a node's process.
    pub fn kill(&mut self, id: &str) {
        let mut child = self.slot(id).take().expect("node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM` ...) to a running node.
    pub fn signal(&mut self, id: &str, signal: &str) {
        let pid = self.slot(id).as_ref().expect("node is running").id();
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {id}");
    }

    /// SIGTERM to a node; returns its exit status once it has exited (within `limit`).
    pub fn terminate(&mut self, id: &str, limit: Duration) -> std::process::ExitStatus {
        self.signal(id, "TERM");
        let mut child = self.slot(id).take().expect("node is running");
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "{id} did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a node that is not one of [`NODES`] (it must be in the nodes file by then, at
    /// `ip` and this federation's port).
    pub fn start_extra(&mut self, id: &str, ip: &str) {
        self.extras.push((id.to_string(), ip.parse().unwrap()));
        let child = self.spawn(id);
        self.children.push((id.to_string(), Some(child)));
    }

    /// Runs `triforce ARGS --config <node's dir> --node NODE` to the end: (success, stdout,
    /// stderr).
    pub fn cli(&self, node: &str, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_triforce"))
            .args(args)
            .arg("--config")
            .arg(self.config_dir(node))
            .args(["--node", node])
            .env_remove("TRIFORCE_PSK")
            .output()
            .expect("the triforce binary runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub fn restart(&mut self, id: &str) {
        let child = self.spawn(id);
        *self.slot(id) = Some(child);
    }

    /// A free TCP port on 127.0.0.1 (for a backend or an ingress).
    pub fn free_tcp_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub fn addr(&self, id: &str) -> SocketAddr {
        SocketAddr::new(self.ip(id), self.port)
    }

    fn ip(&self, id: &str) -> IpAddr {
        match NODES.iter().find(|(name, _)| *name == id) {
            Some((_, ip)) => ip.parse().unwrap(),
            None => {
                let (_, ip) = self.extras.iter().find(|(name, _)| name == id).unwrap();
                *ip
            }
        }
    }

    /// A client signing as `as_node` from `from_ip` to node `target`.
    pub fn client_from(&self, as_node: &str, from_ip: &str, target: &str) -> SignedClient {
        let from: IpAddr = from_ip.parse().unwrap();
        SignedClient::new(
            NodeId::new(as_node).unwrap(),
            PSK.as_bytes(),
            from,
            self.addr(target),
            Duration::from_secs(30),
        )
        .unwrap()
    }

    /// A client signing as `as_node` from its own address to `target`.
    pub fn client(&self, as_node: &str, target: &str) -> SignedClient {
        let ip = self.ip(as_node).to_string();
        self.client_from(as_node, &ip, target)
    }

    /// Node `id`'s Prometheus text (`GET /metrics`, unsigned).
    pub async fn metrics(&self, id: &str) -> String {
        reqwest::get(format!("http://{}/metrics", self.addr(id)))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls `target`'s status until `done` holds; panics with the last status after `limit`.
    pub async fn wait_status(
        &self,
        target: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let client = self.client("hetzner", target);
        let until = Instant::now() + limit;
        let mut last = Value::Null;
        while Instant::now() < until {
            if let Ok(reply) = client.get("/v1/federation/status").await {
                if reply.status == 200 && done(&reply.body) {
                    return reply.body;
                }
                last = reply.body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "status never satisfied the condition; last: {last}\nlogs in {}",
            self.dir.display()
        );
    }

    pub async fn wait_all_online(&self) {
        self.wait_status("hetzner", Duration::from_secs(20), |s| {
            ["zombie-pc", "backup"]
                .iter()
                .all(|id| s["nodes"][id]["state"] == "online")
        })
        .await;
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Some(child) = child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn task_body(task_type: &str, payload: Value) -> Vec<u8> {
    json!({"task_id": uuid::Uuid::new_v4().to_string(), "type": task_type, "payload": payload, "priority": 1})
        .to_string()
        .into_bytes()
}

/// Writes a key file as an operator must: readable by its owner only (`run` refuses others).
pub fn write_key(path: &std::path::Path, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, key).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
