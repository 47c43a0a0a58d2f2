//! The dashboard in a real browser: Debian's chromium, driven through selenium from Python
//! (`tests/clients/dashboard.py`), against three real nodes. Screenshots land in
//! `target/dashboard/` for people to look at.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{task_body, Federation};

/// The Python with selenium: as for the ingress tests (`.ci/python-clients`).
fn python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("TRIFORCE_PYTHON") {
        return python.into();
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-clients/bin/python");
    assert!(
        python.exists(),
        "no Python with selenium at {}: run .ci/python-clients (or set TRIFORCE_PYTHON)",
        python.display()
    );
    python
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// Reads the browser script's lines until `marker` (within 60 s); what it printed on the way.
async fn read_until(lines: Lines, marker: &'static str) -> (Lines, String) {
    let read = tokio::task::spawn_blocking(move || {
        let mut lines = lines;
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line == marker {
                return (lines, seen);
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        panic!("the browser script ended before {marker}: {seen}");
    });
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("no {marker} from the browser script within 60 s"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_federation_live_in_a_browser() {
    assert!(
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists(),
        "chromium and chromium-driver are missing: .ci/run installs them"
    );
    let mut federation = Federation::start("dashboard");
    federation.wait_all_online().await;
    let client = federation.client("hetzner", "hetzner");
    for task_type in ["echo", "gpu_inference", "chat"] {
        let reply = client
            .post(
                "/v1/federation/task",
                &task_body(task_type, json!({"ms": 10})),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    // The state behind the page, as JSON: what the browser will render.
    let url = format!("http://{}/ui", federation.addr("hetzner"));
    let state: serde_json::Value = reqwest::Client::builder()
        .local_address("127.0.0.1".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
        .get(format!("{url}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["node"], "hetzner");
    assert_eq!(state["status"]["nodes"]["zombie-pc"]["gpu"], "RX 6800 XT");
    assert_eq!(state["tasks"].as_array().unwrap().len(), 3, "{state}");
    assert!(state["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "online"));

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/dashboard.py");
    let mut browser = Command::new(python())
        .arg(script)
        .arg(&url)
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let line = lines.next();
        (line, lines)
    });
    let (line, lines) = tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .expect("the page showed three nodes within 60 s")
        .unwrap();
    assert_eq!(line.unwrap().unwrap(), "READY");

    federation.kill("backup");
    writeln!(browser.stdin.as_mut().unwrap()).unwrap();
    let (lines, seen) = read_until(lines, "READY").await;
    assert!(seen.contains("no console errors"), "{seen}");

    // The node serving the page goes away and comes back.
    federation.kill("hetzner");
    writeln!(browser.stdin.as_mut().unwrap()).unwrap();
    let (mut lines, _) = read_until(lines, "AWAY").await;
    federation.restart("hetzner");
    writeln!(browser.stdin.as_mut().unwrap()).unwrap();
    let status = tokio::task::spawn_blocking(move || browser.wait())
        .await
        .unwrap()
        .unwrap();
    for line in lines.by_ref().map_while(Result::ok) {
        println!("{line}");
    }
    assert!(
        status.success(),
        "the browser checks failed (screenshots in {})",
        shots.display()
    );
    assert!(shots.join("backup-offline.png").exists());
}
