//! The federation inside a real WireGuard subnet, as the seed describes it: three network
//! namespaces joined by veth through a bridge in the master's namespace, userspace WireGuard
//! (wireguard-go) configured from what `triforce init` wrote, one `triforce run` per namespace
//! on its WireGuard address. Every address used lives inside the namespaces this test makes;
//! they are removed at the end, pass or fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TRIFORCE: &str = env!("CARGO_BIN_EXE_triforce");

/// (node id, namespace suffix, underlay address on the test's bridge, WireGuard address)
const HOSTS: [(&str, &str, &str, &str); 3] = [
    ("hetzner", "m", "10.201.0.1", "10.10.0.1"),
    ("zombie-pc", "z", "10.201.0.2", "10.10.0.2"),
    ("backup", "b", "10.201.0.3", "10.10.0.3"),
];

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces and processes of one run; dropping it removes everything.
struct Lab {
    prefix: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The WireGuard interface in namespace `suffix`. Unique across namespaces, because
    /// wireguard-go's control socket (/var/run/wireguard/NAME.sock) is not namespaced.
    fn wg(&self, suffix: &str) -> String {
        format!("{}{suffix}w", self.prefix)
    }

    fn exec(&self, suffix: &str, args: &[&str]) -> Output {
        let ns = self.ns(suffix);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn must_exec(&self, suffix: &str, args: &[&str]) {
        let out = self.exec(suffix, args);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}",
            self.ns(suffix),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn spawn(&mut self, suffix: &str, args: &[&str], log: &str) {
        let log = std::fs::File::create(self.dir.join(log)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(suffix)])
            .args(args)
            .env("WG_PROCESS_FOREGROUND", "1")
            .env("RUST_LOG", "info,quinn=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    fn status(&self) -> serde_json::Value {
        let dir = self.dir.join("conf");
        let out = self.exec(
            "m",
            &[
                TRIFORCE,
                "status",
                "--config",
                dir.to_str().unwrap(),
                "--node",
                "hetzner",
                "--json",
            ],
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn wait_state(&self, node: &str, state: &str, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.status()["nodes"][node]["state"] == state {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{node} never became {state}; last status {}; logs in {}",
            self.status(),
            self.dir.display()
        );
    }

    fn submit(&self, task_type: &str) -> serde_json::Value {
        let dir = self.dir.join("conf");
        let out = self.exec(
            "m",
            &[
                TRIFORCE,
                "submit",
                "--config",
                dir.to_str().unwrap(),
                "--node",
                "hetzner",
                "--type",
                task_type,
                "--payload",
                "{\"n\":1}",
            ],
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "submit printed no JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (_, suffix, ..) in HOSTS {
            let _ = sh(&["ip", "netns", "del", &self.ns(suffix)]);
            // wireguard-go, killed, leaves its control socket behind.
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.wg(suffix)));
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn can_make_namespaces() -> Result<(), String> {
    let probe = format!("tfprobe{}", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .map_err(|e| format!("no `ip` command: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let _ = sh(&["ip", "netns", "del", &probe]);
    Ok(())
}

fn short_timers(settings: &Path) {
    let text = std::fs::read_to_string(settings).unwrap();
    let text = text
        .replace(
            "heartbeat_interval_ms = 10000",
            "heartbeat_interval_ms = 300",
        )
        .replace("accept_timeout_ms = 2000", "accept_timeout_ms = 500")
        .replace("progress_interval_ms = 2000", "progress_interval_ms = 200");
    // Every node runs GPU tasks (as an echo): selection, not a missing executor, must send
    // them to the GPU node.
    let text = format!("{text}\n[executors.gpu_inference]\nkind = \"echo\"\n");
    std::fs::write(settings, text).unwrap();
}

#[test]
fn federation_over_real_wireguard() {
    if let Err(why) = can_make_namespaces() {
        eprintln!(
            "SKIPPED federation_over_real_wireguard: cannot create network namespaces here ({why})"
        );
        return;
    }
    for tool in ["wireguard-go", "wg", "wg-quick"] {
        assert!(
            sh(&["which", tool]).status.success(),
            "{tool} is missing: .ci/run installs wireguard-go and wireguard-tools"
        );
    }
    let mut lab = Lab {
        prefix: format!("tf{}", std::process::id() % 100_000),
        dir: std::env::temp_dir().join(format!("triforce-wg-{}", std::process::id())),
        children: Vec::new(),
    };
    let _ = std::fs::remove_dir_all(&lab.dir);
    std::fs::create_dir_all(&lab.dir).unwrap();
    let conf = lab.dir.join("conf");

    // The federation's config, as an operator would make it.
    let out = sh(&[
        TRIFORCE,
        "init",
        "--out",
        conf.to_str().unwrap(),
        "--endpoint",
        "hetzner=10.201.0.1:51820",
    ]);
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    short_timers(&conf.join("federation.toml"));

    // Underlay: a bridge in the master's namespace, one veth to each hub.
    for (_, suffix, ..) in HOSTS {
        must(&["ip", "netns", "add", &lab.ns(suffix)]);
        lab.must_exec(suffix, &["ip", "link", "set", "lo", "up"]);
    }
    lab.must_exec("m", &["ip", "link", "add", "br0", "type", "bridge"]);
    lab.must_exec("m", &["ip", "addr", "add", "10.201.0.1/24", "dev", "br0"]);
    lab.must_exec("m", &["ip", "link", "set", "br0", "up"]);
    lab.must_exec("m", &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    for (_, suffix, underlay, _) in &HOSTS[1..] {
        let (hub_end, bridge_end) = (
            format!("{}{suffix}h", lab.prefix),
            format!("{}{suffix}p", lab.prefix),
        );
        must(&[
            "ip",
            "link",
            "add",
            &hub_end,
            "type",
            "veth",
            "peer",
            "name",
            &bridge_end,
        ]);
        must(&["ip", "link", "set", &hub_end, "netns", &lab.ns(suffix)]);
        must(&["ip", "link", "set", &bridge_end, "netns", &lab.ns("m")]);
        lab.must_exec(
            "m",
            &["ip", "link", "set", &bridge_end, "master", "br0", "up"],
        );
        lab.must_exec(
            suffix,
            &[
                "ip",
                "addr",
                "add",
                &format!("{underlay}/24"),
                "dev",
                &hub_end,
            ],
        );
        lab.must_exec(suffix, &["ip", "link", "set", &hub_end, "up"]);
    }

    // WireGuard in each namespace, from the config `triforce wireguard` prints.
    for (node, suffix, _, _) in HOSTS {
        let wg_conf = lab.dir.join(format!("{node}.conf"));
        let printed = sh(&[
            TRIFORCE,
            "wireguard",
            "--config",
            conf.to_str().unwrap(),
            "--node",
            node,
        ]);
        assert!(
            printed.status.success(),
            "{}",
            String::from_utf8_lossy(&printed.stderr)
        );
        std::fs::write(&wg_conf, &printed.stdout).unwrap();
        let stripped = sh(&["wg-quick", "strip", wg_conf.to_str().unwrap()]);
        assert!(
            stripped.status.success(),
            "wg-quick strip refused {node}'s config: {}",
            String::from_utf8_lossy(&stripped.stderr)
        );
        let stripped_path = lab.dir.join(format!("{node}.wg"));
        std::fs::write(&stripped_path, &stripped.stdout).unwrap();
        let wg = lab.wg(suffix);
        lab.spawn(
            suffix,
            &["wireguard-go", &wg],
            &format!("wireguard-go-{node}.log"),
        );
        let until = Instant::now() + Duration::from_secs(5);
        while !lab
            .exec(suffix, &["ip", "link", "show", &wg])
            .status
            .success()
        {
            assert!(
                Instant::now() < until,
                "wireguard-go made no {wg} in {suffix}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        lab.must_exec(
            suffix,
            &["wg", "setconf", &wg, stripped_path.to_str().unwrap()],
        );
    }
    for (_, suffix, _, wg_ip) in HOSTS {
        let wg = lab.wg(suffix);
        lab.must_exec(
            suffix,
            &["ip", "addr", "add", &format!("{wg_ip}/24"), "dev", &wg],
        );
        lab.must_exec(suffix, &["ip", "link", "set", &wg, "up"]);
    }

    // One node per namespace, on its WireGuard address.
    for (node, suffix, ..) in HOSTS {
        lab.spawn(
            suffix,
            &[
                TRIFORCE,
                "run",
                "--config",
                conf.to_str().unwrap(),
                "--node",
                node,
            ],
            &format!("{node}.log"),
        );
    }
    lab.wait_state("zombie-pc", "online", Duration::from_secs(30));
    lab.wait_state("backup", "online", Duration::from_secs(30));
    let status = lab.status();
    assert_eq!(status["total_cores"], 64, "{status}");

    for _ in 0..6 {
        assert_eq!(lab.submit("echo")["status"], "completed");
    }
    let gpu = lab.submit("gpu_inference");
    assert_eq!(
        gpu["attempts"][0]["node"], "zombie-pc",
        "GPU tasks go to the GPU node over the tunnel: {gpu}"
    );

    // The hub's tunnel goes down: offline after three missed heartbeats, tasks go elsewhere.
    let backup_wg = lab.wg("b");
    lab.must_exec("b", &["ip", "link", "set", &backup_wg, "down"]);
    lab.wait_state("backup", "offline", Duration::from_secs(10));
    for _ in 0..6 {
        let reply = lab.submit("echo");
        assert_eq!(reply["status"], "completed", "{reply}");
        assert_ne!(reply["node"], "backup");
    }
    // And comes back.
    lab.must_exec("b", &["ip", "link", "set", &backup_wg, "up"]);
    lab.wait_state("backup", "online", Duration::from_secs(15));
}
