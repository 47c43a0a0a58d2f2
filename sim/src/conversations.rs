//! Conversations through the master's shim: [`USERS`] people each chat with the hubs' model,
//! one conversation after another, each of [`TURNS`] turns that resend the whole history,
//! opened by a system prompt of about 800 tokens of its own. Each turn's time to first token,
//! as the client sees it, goes to the log: whether the turn found its history cached depends
//! on where the federation sent it (session affinity, `triforce_core::affinity`).

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::http;
use crate::load::Submitted;
use crate::models::LLM_TASK_TYPE;
use crate::record::{sim_now, FirstToken, SharedLog};
use crate::world::LoadPlan;

/// People chatting at once: twice what one backend's prompt cache keeps
/// ([`crate::prompt_cache::PROMPTS_KEPT`]) on two hubs, so each hub can keep its share warm
/// only if each conversation keeps to one hub.
pub const USERS: u64 = 8;
/// Turns per conversation.
pub const TURNS: u32 = 6;
/// A model both hubs' backends serve in every conversation scenario.
const MODEL: &str = "llama3";
/// Bytes of a conversation's system prompt (about 800 tokens).
const SYSTEM_BYTES: usize = 3_200;

const WORDS: [&str; 16] = [
    "federation",
    "node",
    "heartbeat",
    "model",
    "cache",
    "prompt",
    "turn",
    "server",
    "latency",
    "token",
    "answer",
    "backend",
    "history",
    "route",
    "key",
    "load",
];

/// Plays every user's conversations until `load.until`.
pub async fn converse(
    master: SocketAddr,
    pool: http::Pool,
    log: SharedLog,
    seed: u64,
    load: LoadPlan,
) {
    for user in 0..USERS {
        let (pool, log) = (pool.clone(), log.clone());
        let rng = ChaCha8Rng::seed_from_u64(seed ^ user.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        tokio::spawn(user_chats(master, pool, log, user, rng, load));
    }
}

/// One user's conversations, one after another, with a pause (reading, typing) between turns.
async fn user_chats(
    master: SocketAddr,
    pool: http::Pool,
    log: SharedLog,
    user: u64,
    mut rng: ChaCha8Rng,
    load: LoadPlan,
) {
    // Users start at different times within the first 20 s.
    tokio::time::sleep(Duration::from_millis(rng.next_u64() % 20_000)).await;
    for conversation in 0.. {
        let mut messages = vec![json!({"role": "system", "content": text(&mut rng, SYSTEM_BYTES)})];
        for turn in 1..=TURNS {
            if sim_now() >= load.until {
                return;
            }
            messages.push(json!({"role": "user", "content": text(&mut rng, 200)}));
            let ms = 200 + rng.next_u64() % 400;
            let task_id = format!("c{user}-{conversation}-{turn}");
            let body = json!({"model": MODEL, "messages": messages, "ms": ms, "task_id": task_id});
            log.lock()
                .expect("log lock")
                .asked_models
                .insert(task_id.clone(), MODEL.to_string());
            let payload = json!({"path": "/v1/chat/completions", "body": body});
            let submitted = Submitted::record(&log, task_id, LLM_TASK_TYPE, payload, 1);
            let at = submitted.at;
            let answer = submitted.send(master, &pool, &log).await;
            if let Some(answered) = answer.as_ref().and_then(answered_by_backend) {
                // The answer came after the first token plus the generation the turn asked for.
                let took = (sim_now() - at).saturating_sub(Duration::from_millis(ms));
                log.lock().expect("log lock").first_tokens.push(FirstToken {
                    turn,
                    took,
                    uncached_tokens: answered,
                });
            }
            messages.push(json!({"role": "assistant", "content": text(&mut rng, 200)}));
            tokio::time::sleep(Duration::from_millis(2_000 + rng.next_u64() % 4_000)).await;
        }
    }
}

/// The uncached tokens a completed turn's backend processed, if the backend answered it.
fn answered_by_backend(answer: &http::HttpAnswer) -> Option<u32> {
    let outcome: Value = serde_json::from_slice(&answer.body).ok()?;
    let result = &outcome["result"];
    (outcome["status"] == "completed" && result["status"] == 200)
        .then(|| result["body"]["uncached_tokens"].as_u64())
        .flatten()
        .map(|n| n as u32)
}

/// About `bytes` of words, from the seed.
fn text(rng: &mut ChaCha8Rng, bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 16);
    while text.len() < bytes {
        text.push_str(WORDS[(rng.next_u64() % WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    text
}
