//! The task load: the master submits tasks to its own HTTP shim, as a client would, and reads
//! its status; every answer goes to the log the checker reads.

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::config_changes::signing_key;
use crate::http;
use crate::record::{sim_now, SharedLog};
use crate::world::Load;

/// Submits a task every `load.every` on average (seeded), each with a fresh id, plus a burst
/// of `load.burst` chat tasks every `load.burst_every`, which fills the master's workers so
/// that work spreads to the hubs (and failover has something to do when one dies). Records
/// every outcome.
pub async fn generate_load(
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

/// Reads the master's status over HTTP every 30 s while the load runs: it must answer, in the
/// seed's shape, with the master in it.
pub async fn read_status(master: SocketAddr, pool: http::Pool, log: SharedLog, load: Load) {
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
