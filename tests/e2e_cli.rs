//! The CLI's operator paths: bad configs fail with one clear line; sign and status work.

mod support;

use std::process::Command;

use support::{Federation, SETTINGS};

fn triforce(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_triforce"))
        .args(args)
        .env_remove("TRIFORCE_PSK")
        .output()
        .unwrap()
}

#[test]
fn bad_configs_fail_with_a_clear_line() {
    let dir = std::env::temp_dir().join(format!("triforce-badconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/federation_nodes.json"
        ),
        dir.join("federation_nodes.json"),
    )
    .unwrap();
    let d = dir.to_str().unwrap();

    let out = triforce(&["run", "--config", d, "--node", "hetzner"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no PSK") && err.contains("TRIFORCE_PSK"),
        "{err}"
    );

    let missing = dir.join("missing");
    let out = triforce(&[
        "run",
        "--config",
        missing.to_str().unwrap(),
        "--node",
        "hetzner",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot read") && err.contains("federation_nodes.json"),
        "{err}"
    );
    assert_eq!(
        err.matches("No such file").count(),
        1,
        "the cause once: {err}"
    );

    let out = triforce(&["run", "--config", d, "--node", "nobody"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nobody\"") && err.contains("backup, hetzner, zombie-pc"),
        "{err}"
    );

    // A PSK file others may read is refused, naming the file and its mode, as ssh does.
    std::fs::write(dir.join("psk"), "a-long-enough-pre-shared-key").unwrap();
    std::fs::set_permissions(
        dir.join("psk"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(dir.join("federation.toml"), "psk_file = \"psk\"\n").unwrap();
    let out = triforce(&["run", "--config", d, "--node", "hetzner"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("psk has mode 0644") && err.contains("chmod 600"),
        "{err}"
    );

    support::write_key(&dir.join("psk"), "short");
    let out = triforce(&["run", "--config", d, "--node", "hetzner"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 16"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The seed's addresses (10.10.0.x) are not on this machine: the start-up check says so.
    support::write_key(&dir.join("psk"), "a-long-enough-pre-shared-key");
    let out = triforce(&["run", "--config", d, "--node", "hetzner"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("10.10.0.1, which is on no local interface") && err.contains("WireGuard"),
        "{err}"
    );

    std::fs::write(
        dir.join("federation.toml"),
        format!("{SETTINGS}\n[timing]\n"),
    )
    .unwrap();
    let out = triforce(&["run", "--config", d, "--node", "hetzner"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("federation.toml"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let out = triforce(&["sign", "--config", d, "--node", "hetzner", "--body", "{}"]);
    assert!(!out.status.success(), "the broken toml fails sign too");
    std::fs::write(dir.join("federation.toml"), "psk_file = \"psk\"\n").unwrap();
    let out = triforce(&["sign", "--config", d, "--node", "hetzner", "--body", "{}"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("X-Federation-Node: hetzner") && text.lines().count() == 3,
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn status_and_submit_commands() {
    let federation = Federation::start("cli");
    federation.wait_all_online().await;
    let d = federation.dir.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let status = Command::new(env!("CARGO_BIN_EXE_triforce"))
            .args(["status", "--config", &d, "--node", "hetzner"])
            .output()
            .unwrap();
        let submit = Command::new(env!("CARGO_BIN_EXE_triforce"))
            .args([
                "submit",
                "--config",
                &d,
                "--node",
                "hetzner",
                "--type",
                "gpu_inference",
                "--payload",
                "{\"ms\": 1}",
            ])
            .output()
            .unwrap();
        (status, submit)
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.0.stdout);
    assert!(
        out.0.status.success() && table.contains("zombie-pc") && table.contains("64 cores"),
        "{table}"
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.1.stdout).unwrap();
    assert_eq!(answer["node"], "zombie-pc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_tasks_and_exits_zero() {
    let mut federation = Federation::start("sigterm");
    federation.wait_all_online().await;
    // zombie-pc is the only GPU node, so this task runs there.
    let client = federation.client("hetzner", "hetzner");
    let task = tokio::spawn(async move {
        client
            .post(
                "/v1/federation/task",
                &support::task_body("gpu_inference", serde_json::json!({"ms": 800})),
            )
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = tokio::task::block_in_place(|| {
        federation.terminate("zombie-pc", std::time::Duration::from_secs(10))
    });
    assert!(status.success(), "exit status {status:?}");
    let reply = task.await.unwrap().unwrap();
    assert_eq!(
        reply.body["status"], "completed",
        "the running task finished during the drain: {}",
        reply.body
    );
    assert_eq!(reply.body["node"], "zombie-pc");
}

/// `triforce backend` answers; `triforce bench` leaves its warm-up out of the figures (open loop:
/// exactly the requests scheduled in the measured seconds) and signs tasks a node accepts.
#[tokio::test]
async fn bench_measures_after_its_warm_up() {
    let federation = Federation::start_with("bench", "[executors.echo]\nkind = \"echo\"\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut backend = Command::new(env!("CARGO_BIN_EXE_triforce"))
        .args(["backend", "--listen", &listen])
        .spawn()
        .unwrap();
    while tokio::net::TcpStream::connect(&listen).await.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    federation.wait_all_online().await;
    let d = federation.dir.to_str().unwrap().to_string();
    let url = format!("http://{listen}/");
    let (plain, task) = tokio::task::spawn_blocking(move || {
        let summary = |args: &[&str]| -> serde_json::Value {
            let out = triforce(args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let plain = summary(&[
            "bench",
            "--mode",
            "plain",
            "--url",
            &url,
            "--rate",
            "200",
            "--seconds",
            "0.5",
            "--warmup-seconds",
            "0.3",
        ]);
        let task = summary(&[
            "bench",
            "--config",
            &d,
            "--node",
            "hetzner",
            "--type",
            "echo",
            "--connections",
            "4",
            "--seconds",
            "0.5",
            "--warmup-seconds",
            "0.2",
        ]);
        (plain, task)
    })
    .await
    .unwrap();
    backend.kill().unwrap();
    backend.wait().unwrap();
    // 200/s for 0.5 s after 0.3 s of warm-up: about requests 60..160 are measured (one either
    // side, by the rounding of a 5 ms period), not the 160 sent.
    let measured = plain["requests"].as_u64().unwrap();
    assert!((99..=101).contains(&measured), "{plain}");
    assert_eq!(plain["errors"], 0, "{plain}");
    assert_eq!(task["errors"], 0, "{task}");
    assert!(task["requests"].as_u64().unwrap() > 0, "{task}");
    assert!(task["p99_ms"].as_f64().unwrap() > 0.0, "{task}");
}

/// The README's main command runs to its end: routing, failover, recovery and a chat streamed
/// through the ingress, token by token.
#[test]
fn the_demo_runs_to_its_end() {
    let out = triforce(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("backup offline") || stdout.contains("marks backup offline"),
        "{stdout}"
    );
    assert!(stdout.contains("online again"), "{stdout}");
    assert!(stdout.contains("-- 8 tokens, relayed by"), "{stdout}");
    assert!(stdout.contains("Demo finished"), "{stdout}");
}

/// `apikey add` prints the key once and stores its hash; `list` shows names, never keys;
/// `remove` takes a key out; mistakes name their cause.
#[test]
fn apikey_add_list_remove() {
    let dir = std::env::temp_dir().join(format!("triforce-apikey-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let out = triforce(&[
        "apikey",
        "add",
        "--config",
        d,
        "--name",
        "webui",
        "--model",
        "llama3",
        "--requests-per-minute",
        "60",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let file = dir.join("api_keys");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&key) && text.contains("webui"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = triforce(&["apikey", "add", "--config", d, "--name", "webui"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));

    let out = triforce(&["apikey", "list", "--config", d]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("webui\tllama3\t60 requests/min") && !listed.contains(&key),
        "{listed}"
    );

    let out = triforce(&["apikey", "remove", "--config", d, "--name", "webui"]);
    assert!(out.status.success());
    let out = triforce(&["apikey", "remove", "--config", d, "--name", "webui"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key named"));
    std::fs::remove_dir_all(&dir).unwrap();
}
