//! The task load: the master submits tasks to its own HTTP shim, as a client would, and reads
//! its status; every answer goes to the log the checker reads.

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::config_changes::signing_key;
use crate::http;
use crate::models::{ASKED, LLM_TASK_TYPE};
use crate::record::{sim_now, SharedLog};
use crate::world::LoadPlan;
use crate::world::BATCH_TASK_TYPE;

/// Submits a task every `load.every` on average (seeded), each with a fresh id (some for a GPU,
/// some naming a model for the hubs' backends, the rest batch), plus a burst of `load.burst`
/// tasks (a quarter naming a model, the rest batch) every `load.burst_every`, which fills the
/// master's workers so that work spreads to the hubs (and failover has something to do when one
/// dies). Records every outcome.
pub async fn generate_load(
    master: SocketAddr,
    pool: http::Pool,
    log: SharedLog,
    seed: u64,
    load: LoadPlan,
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
            // Three in ten single tasks need a GPU, two name a model for the hubs' backends; a
            // quarter of a burst names a model, the rest is batch.
            let kind = match (count, rng.next_u64()) {
                (1, draw) => draw % 10,
                (_, draw) if draw % 4 == 0 => 3,
                _ => 9,
            };
            let ms = 500 + rng.next_u64() % 4_000;
            let task_id = format!("t{n}");
            let (task_type, payload) = match kind {
                0..=2 => ("gpu_inference", json!({ "ms": ms })),
                3..=4 => {
                    let model = ASKED[(rng.next_u64() % ASKED.len() as u64) as usize];
                    log.lock()
                        .expect("log lock")
                        .asked_models
                        .insert(task_id.clone(), model.to_string());
                    let body = json!({ "model": model, "ms": ms, "task_id": task_id });
                    (
                        LLM_TASK_TYPE,
                        json!({ "path": "/v1/chat/completions", "body": body }),
                    )
                }
                _ => (BATCH_TASK_TYPE, json!({ "ms": ms })),
            };
            let priority = (rng.next_u64() % 3) as i32;
            submit(master, &pool, &log, task_id, task_type, payload, priority);
        }
    }
}

/// Submits one task in the background (see [`submit_task`]), recorded as submitted now.
fn submit(
    master: SocketAddr,
    pool: &http::Pool,
    log: &SharedLog,
    task_id: String,
    task_type: &str,
    payload: serde_json::Value,
    priority: i32,
) {
    let submitted = Submitted::record(log, task_id, task_type, payload, priority);
    let (log, pool) = (log.clone(), pool.clone());
    tokio::spawn(async move { submitted.send(master, &pool, &log).await });
}

/// A task the load has recorded as submitted, to be sent.
pub struct Submitted {
    pub task_id: String,
    pub at: Duration,
    body: Vec<u8>,
}

impl Submitted {
    /// Records the task as submitted now (in the trace and for the checker).
    pub fn record(
        log: &SharedLog,
        task_id: String,
        task_type: &str,
        payload: serde_json::Value,
        priority: i32,
    ) -> Self {
        let body = json!({"task_id": task_id, "type": task_type, "payload": payload, "priority": priority})
            .to_string()
            .into_bytes();
        let mut log = log.lock().expect("log lock");
        let at = sim_now();
        log.trace(format!("{} submit {task_id} {task_type}", at.as_millis()));
        log.submitted
            .insert(task_id.clone(), (at, task_type.to_string()));
        Submitted { task_id, at, body }
    }

    /// Sends the task as a signed request to the master's HTTP shim, as the master itself (the
    /// load runs on its host, so the request comes from its address), and records the answer,
    /// which it returns.
    pub async fn send(
        self,
        master: SocketAddr,
        pool: &http::Pool,
        log: &SharedLog,
    ) -> Option<http::HttpAnswer> {
        let Submitted { task_id, body, .. } = self;
        let headers = http::signed(signing_key(log, "hetzner"), "hetzner", &body);
        let answer =
            http::exchange_in(pool, master, "POST", "/v1/federation/task", &headers, body).await;
        let mut log = log.lock().expect("log lock");
        match answer {
            Ok(answer) => {
                log.record_answer(&task_id, sim_now(), answer.status, &answer.body);
                Some(answer)
            }
            Err(error) => {
                log.violation(format!(
                    "{}: task {task_id}: no HTTP answer from the master: {error}",
                    sim_now().as_secs_f64()
                ));
                None
            }
        }
    }
}

/// Reads the master's status over HTTP every 30 s while the load runs: it must answer, in the
/// seed's shape, with the master in it.
pub async fn read_status(master: SocketAddr, pool: http::Pool, log: SharedLog, load: LoadPlan) {
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
