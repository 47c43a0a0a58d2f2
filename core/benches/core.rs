//! Costs of the hot paths: verifying a request (beside plain SHA-256 of the same bytes, so the
//! ratio shows), selection over 3, 100 and 1000 nodes, and one heartbeat answer.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use triforce_core::auth::{
    sign, HeaderValue, HmacSha256Key, Keyring, SignedRequest, SourcePolicy, Verifier,
    VerifierConfig,
};
use triforce_core::membership::{Load, Membership, MembershipConfig};
use triforce_core::node::NodeId;
use triforce_core::selection::{select, Candidate, SelectionPolicy};
use triforce_core::time::Instant;

const PSK: &[u8] = b"triforce-bench-psk-0123456789";
const NOW: u64 = 1_704_067_200;

fn verify(c: &mut Criterion) {
    let node = NodeId::new("hetzner").unwrap();
    let ip: IpAddr = "10.10.0.1".parse().unwrap();
    let body = vec![b'x'; 1024];
    let mut group = c.benchmark_group("verify_1KiB");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sha256_only", |b| {
        b.iter(|| Sha256::digest(black_box(&body)))
    });
    let verifier = Verifier::new(
        Keyring::from_psks(PSK, &[]),
        SourcePolicy::new(BTreeMap::from([(node.clone(), ip)]), vec![]),
        VerifierConfig::default(),
    );
    let headers = sign(&HmacSha256Key::new(PSK), &node, NOW, &body);
    let request = SignedRequest {
        node: HeaderValue::One(headers.node.as_bytes()),
        timestamp: HeaderValue::One(headers.timestamp.as_bytes()),
        signature: HeaderValue::One(headers.signature.as_bytes()),
        body: &body,
        source: ip,
    };
    group.bench_function("authenticate", |b| {
        b.iter(|| verifier.authenticate(black_box(&request), NOW).unwrap())
    });
    // The full path including the replay cache: a fresh verifier per batch, one request each.
    group.bench_function("verify_with_replay_cache", |b| {
        b.iter_batched_ref(
            || verifier.clone(),
            |v| v.verify(black_box(&request), NOW).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn selection(c: &mut Criterion) {
    let mut group = c.benchmark_group("select");
    for n in [3usize, 100, 1000] {
        let nodes: Vec<Candidate> = (0..n)
            .map(|i| Candidate {
                id: NodeId::new(format!("n{i}")).unwrap(),
                online: i % 7 != 0,
                latency_ms: Some((i * 13 % 97) as f64),
                in_flight: (i % 5) as u32,
                cores: 8 + (i % 3) as u32 * 8,
                gpu: i % 10 == 0,
                warm: false,
            })
            .collect();
        let policy = SelectionPolicy::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        group.bench_function(format!("chat_{n}_nodes"), |b| {
            b.iter(|| select(black_box(&nodes), "chat", &policy, None, &mut rng))
        });
        group.bench_function(format!("gpu_{n}_nodes"), |b| {
            b.iter(|| select(black_box(&nodes), "gpu_inference", &policy, None, &mut rng))
        });
        let key = Some(triforce_core::affinity::AffinityKey::of(b"a conversation"));
        group.bench_function(format!("chat_affinity_{n}_nodes"), |b| {
            b.iter(|| select(black_box(&nodes), "chat", &policy, key, &mut rng))
        });
    }
    group.finish();
}

fn heartbeat(c: &mut Criterion) {
    let peers: Vec<NodeId> = (0..10)
        .map(|i| NodeId::new(format!("n{i}")).unwrap())
        .collect();
    let target = peers[3].clone();
    c.bench_function("heartbeat_round_10_peers", |b| {
        let mut m = Membership::new(MembershipConfig::default(), peers.clone(), Instant::ZERO);
        let mut t = 0u64;
        b.iter(|| {
            t += 10_000;
            m.handle_timeout(Instant::from_millis(t));
            while let Some(probe) = m.poll_probe() {
                if probe.peer == target {
                    m.handle_answer(
                        Instant::from_millis(t + 5),
                        &probe.peer,
                        probe.seq,
                        Load::default(),
                    );
                }
            }
            while m.poll_event().is_some() {}
        })
    });
}

/// What translating an Ollama client's chat for an OpenAI-only backend costs over
/// pass-through: the request once (a chat with a system prompt and four turns), and each
/// streamed event of the answer (one token's SSE event in, one NDJSON line out).
fn translation(c: &mut Criterion) {
    use triforce_core::translate::{ollama_to_openai, OllamaAnswer, OllamaShape};
    let mut group = c.benchmark_group("translation");
    let request = serde_json::json!({"model": "llama3", "stream": true,
        "options": {"temperature": 0.7, "num_predict": 256},
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. ".repeat(20)},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
            {"role": "user", "content": "And of Germany?"}]})
    .to_string();
    group.bench_function("ollama_chat_request", |b| {
        b.iter(|| ollama_to_openai("/api/chat", request.as_bytes()).unwrap())
    });
    let event = b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1796619600,\"model\":\"llama3\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" Berlin\"},\"finish_reason\":null}]}\n\n";
    let mut answer = OllamaAnswer::new(OllamaShape::Chat, "llama3", 200, "text/event-stream");
    group.throughput(Throughput::Elements(1));
    group.bench_function("openai_event_to_ollama_line", |b| {
        b.iter(|| answer.feed(event))
    });
    let responses_request = serde_json::json!({"model": "llama3", "stream": true,
        "instructions": "You are a helpful assistant. ".repeat(20), "max_output_tokens": 256,
        "input": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
            {"role": "user", "content": "And of Germany?"}]})
    .to_string();
    group.bench_function("responses_request", |b| {
        b.iter(|| {
            triforce_core::translate::responses_to_chat(responses_request.as_bytes()).unwrap()
        })
    });
    let mut responses =
        triforce_core::translate::ResponsesAnswer::new("llama3", 200, "text/event-stream");
    responses.feed(event);
    group.bench_function("openai_event_to_responses_event", |b| {
        b.iter(|| responses.feed(event))
    });
    let messages_request = serde_json::json!({"model": "llama3", "stream": true, "max_tokens": 256,
        "system": "You are a helpful assistant. ".repeat(20),
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": [{"type": "text", "text": "The capital of France is Paris."}]},
            {"role": "user", "content": "And of Germany?"}]})
    .to_string();
    group.bench_function("anthropic_request", |b| {
        b.iter(|| triforce_core::translate::anthropic_to_chat(messages_request.as_bytes()).unwrap())
    });
    let mut anthropic =
        triforce_core::translate::AnthropicAnswer::new("llama3", 200, "text/event-stream");
    anthropic.feed(event);
    group.bench_function("openai_event_to_anthropic_event", |b| {
        b.iter(|| anthropic.feed(event))
    });
    group.finish();
}

criterion_group!(benches, verify, selection, heartbeat, translation);
criterion_main!(benches);
