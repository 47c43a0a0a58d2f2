//! Entry points for hostile bytes, shared by the cargo-fuzz targets in `fuzz/` and by the
//! corpus-replay test (`net/tests/fuzz_corpus.rs`), so CI exercises every committed input even
//! without the fuzzer. Each must return normally for any input; a panic is a bug.

use std::collections::BTreeMap;
use std::net::IpAddr;

use triforce_core::auth::{
    sign, HeaderValue, HmacSha256Key, Keyring, SignedRequest, SourcePolicy, Verifier,
    VerifierConfig,
};
use triforce_core::config::{Federation, Settings};
use triforce_core::node::NodeId;
use triforce_core::task::TaskRequest;

const PSK: &[u8] = b"fuzzing-psk-0123456789";
const NODES: [(&str, [u8; 4]); 3] = [
    ("hetzner", [10, 10, 0, 1]),
    ("zombie-pc", [10, 10, 0, 2]),
    ("backup", [10, 10, 0, 3]),
];
const NOW: u64 = 1_704_067_200;

/// The verifier on arbitrary headers, body, source address and clock.
///
/// Layout: byte 0 picks the source address and whether to sign honestly; bytes 1..3 skew the
/// clock; the rest splits on NUL into node, timestamp, signature and body. With honest signing
/// the signature is made with the PSK, and the verdict must match the rules exactly.
pub fn verify(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (skew, rest) = match rest {
        [a, b, rest @ ..] => (i64::from(i16::from_le_bytes([*a, *b])), rest),
        _ => (0, rest),
    };
    let mut parts = rest.splitn(4, |b| *b == 0);
    let node = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let source = IpAddr::from(NODES[usize::from(control % 3)].1);
    let now = NOW.saturating_add_signed(skew);
    let mut verifier = verifier();

    let honest = control & 0x80 != 0;
    if honest {
        let (Ok(node_str), Ok(id)) = (
            std::str::from_utf8(node),
            std::str::from_utf8(node).map(NodeId::new),
        ) else {
            return;
        };
        let Ok(id) = id else { return };
        let headers = sign(&HmacSha256Key::new(PSK), &id, NOW, body);
        let request = SignedRequest {
            node: HeaderValue::One(node),
            timestamp: HeaderValue::One(headers.timestamp.as_bytes()),
            signature: HeaderValue::One(headers.signature.as_bytes()),
            body,
            source,
        };
        let expected_ok = NODES
            .iter()
            .any(|(n, ip)| *n == node_str && IpAddr::from(*ip) == source)
            && skew.unsigned_abs() <= 30;
        let first = verifier.verify(&request, now);
        assert_eq!(
            first.is_ok(),
            expected_ok,
            "verdict for an honest signature: {first:?}"
        );
        if expected_ok {
            assert_eq!(
                verifier.verify(&request, now).map(|_| ()),
                Err(triforce_core::auth::Rejection::Replay)
            );
        }
    } else {
        let request = SignedRequest {
            node: HeaderValue::One(node),
            timestamp: HeaderValue::One(timestamp),
            signature: HeaderValue::One(signature),
            body,
            source,
        };
        // Without the PSK nothing may pass.
        assert!(verifier.verify(&request, now).is_err());
        assert_eq!(verifier.replay_len(), 0);
    }
}

fn verifier() -> Verifier {
    let ips: BTreeMap<NodeId, IpAddr> = NODES
        .iter()
        .map(|(n, ip)| (NodeId::new(*n).expect("valid"), IpAddr::from(*ip)))
        .collect();
    Verifier::new(
        Keyring::from_psks(PSK, &[]),
        SourcePolicy::new(ips, vec![]),
        VerifierConfig::default(),
    )
}

/// The QUIC frame decoder: any bytes decode or fail; what decodes re-encodes to a frame that
/// decodes the same.
pub fn frame(data: &[u8]) {
    if let Ok(frame) = crate::quic::decode(data) {
        let again = postcard::to_stdvec(&frame).expect("decoded frames encode");
        assert_eq!(
            crate::quic::decode(&again).expect("re-encoded frames decode"),
            frame
        );
    }
}

/// The task body of `POST /v1/federation/task`, and its forwarding: a task that parses
/// crosses to another node with its payload byte for byte (a relayed request's body, beside
/// its typed head), in a frame no larger than the body plus a small envelope (re-encoding once grew `1e15` fourfold, past the receiver's limit).
pub fn task_json(data: &[u8]) {
    let Ok(task) = TaskRequest::parse(data) else {
        return;
    };
    assert!(task.check().is_ok());
    let frame = crate::quic::Frame::Task(crate::quic::TaskFrame {
        task_id: task.task_id.clone(),
        task_type: task.task_type.clone(),
        payload_json: task.payload.get().to_string(),
        priority: task.priority,
        relay: task.relay.clone(),
    });
    let encoded = postcard::to_stdvec(&frame).expect("frames encode");
    // A relayed request's model is in its body and in its typed head: the one part carried
    // twice.
    let model_len = task.model().map_or(0, str::len);
    assert!(
        encoded.len() <= data.len() + model_len + 64,
        "a {} byte body became a {} byte frame",
        data.len(),
        encoded.len()
    );
    let Ok(crate::quic::Frame::Task(received)) = crate::quic::decode(&encoded) else {
        panic!("a task frame decodes");
    };
    let payload = triforce_core::json::RawJson::parse_str(&received.payload_json)
        .expect("a forwarded payload parses again");
    assert_eq!(
        payload, task.payload,
        "the payload arrives as it was written"
    );
    assert_eq!(
        received.relay, task.relay,
        "the relay head arrives as it was read"
    );
}

/// The request body bounds: any declared length, chunk sizes and arrival times. Layout: 8-byte
/// declared length, then (2-byte chunk size, 2-byte arrival step in ms) pairs. Nothing over the
/// limit is ever accepted, and nothing after the deadline.
pub fn body_bounds(data: &[u8]) {
    use crate::http::body::{BodyRead, Verdict};
    const BYTES_MAX: usize = 4096;
    const DEADLINE_MS: u64 = 1000;
    let mut read = BodyRead::new(BYTES_MAX, DEADLINE_MS);
    let Some((declared, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let declared = u64::from_le_bytes(*declared);
    let refused = read.handle_declared(declared) == Verdict::TooLarge;
    assert_eq!(refused, declared > BYTES_MAX as u64);
    let mut at_ms = 0u64;
    for pair in rest.chunks_exact(4) {
        let len = usize::from(u16::from_le_bytes([pair[0], pair[1]]));
        at_ms += u64::from(u16::from_le_bytes([pair[2], pair[3]]));
        let before = read.taken();
        match read.handle_chunk(at_ms, len) {
            Verdict::Continue => assert!(at_ms <= DEADLINE_MS && read.taken() == before + len),
            Verdict::TooLarge => {
                assert!(before + len > BYTES_MAX && read.taken() == before);
                return;
            }
            Verdict::TimedOut => {
                assert!(at_ms > DEADLINE_MS);
                return;
            }
        }
        assert!(read.taken() <= BYTES_MAX);
    }
}

/// Both config files, from the same text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(federation) = Federation::parse(text) {
        assert!(!federation.nodes.is_empty());
    }
    if let Ok(settings) = Settings::parse(text) {
        assert!(settings.check().is_ok());
    }
}

/// What a backend may answer, read as the door reads it: the usage reader and the strip
/// filter over arbitrary bytes in arbitrary pieces, and the door's field reader over the same
/// bytes as a request body.
///
/// Layout: byte 0 picks the framing; byte 1 the piece length (1-256); the rest is the answer.
/// The filter may only take bytes out, never add or reorder them: what it passes plus what it
/// took out is the input, and its output is the same however the answer is cut.
pub fn backend_answer(data: &[u8]) {
    use triforce_core::usage::{Framing, UsageEventFilter, UsageReader};
    let [control, piece, answer @ ..] = data else {
        return;
    };
    let framing = match control % 3 {
        0 => Framing::Whole,
        1 => Framing::ServerSentEvents,
        _ => Framing::JsonLines,
    };
    let piece = usize::from(*piece).max(1);
    let mut reader = UsageReader::new(framing);
    let mut filter = UsageEventFilter::default();
    let mut passed = Vec::new();
    for chunk in answer.chunks(piece) {
        reader.feed(chunk);
        if filter.passes_whole(chunk) {
            passed.extend_from_slice(chunk);
        } else {
            passed.extend(filter.pass(chunk));
        }
    }
    passed.extend(filter.finish());
    let whole = reader.finish();
    let mut at_once = UsageReader::new(framing);
    at_once.feed(answer);
    assert_eq!(at_once.finish(), whole, "the pieces read as the whole");
    let mut one_filter = UsageEventFilter::default();
    let mut in_one = one_filter.pass(answer);
    in_one.extend(one_filter.finish());
    assert_eq!(
        passed, in_one,
        "the filter passes the same bytes however cut"
    );
    assert!(passed.len() <= answer.len());
    let _ = triforce_core::door::read_door_fields(answer);
    let _ = triforce_core::door::conversation_key(answer);
}

/// Ollama's dialect: a request to any of its four paths as OpenAI's (never a panic; a
/// translation is one JSON object), and an OpenAI answer as Ollama's, the same however cut.
///
/// Layout of every translation target: byte 0 picks the options (here: the Ollama path, the
/// answer's shape, framing and status); byte 1 the piece length (1-256); the rest is the
/// request, then (after the first `0xff`) the answer.
pub fn translation_ollama(data: &[u8]) {
    use triforce_core::translate::{ollama_to_openai, OllamaAnswer, OllamaShape};
    let paths = [
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/api/embeddings",
    ];
    let shapes = [
        OllamaShape::Chat,
        OllamaShape::Generate,
        OllamaShape::Embed,
        OllamaShape::EmbeddingsLegacy,
    ];
    translation_pair(
        data,
        |control, request| {
            ollama_to_openai(paths[usize::from(control % 4)], request).map(|t| t.body)
        },
        |control, status, content_type| {
            let shape = shapes[usize::from(control / 4 % 4)];
            OllamaAnswer::new(shape, "m", status, content_type).into()
        },
    );
}

/// The Responses API: a request as Chat Completions, and a Chat Completions answer as a
/// response or its events, the same however cut (layout: [`translation_ollama`]).
pub fn translation_responses(data: &[u8]) {
    use triforce_core::translate::{responses_to_chat, ResponsesAnswer};
    translation_pair(
        data,
        |_, request| responses_to_chat(request).map(|t| t.body),
        |_, status, content_type| ResponsesAnswer::new("m", status, content_type).into(),
    );
}

/// Anthropic's Messages API: a request as Chat Completions, and a Chat Completions answer as a
/// message or its events, the same however cut (layout: [`translation_ollama`]).
pub fn translation_anthropic(data: &[u8]) {
    use triforce_core::translate::{anthropic_to_chat, AnthropicAnswer};
    translation_pair(
        data,
        |_, request| anthropic_to_chat(request).map(|t| t.body),
        |_, status, content_type| AnthropicAnswer::new("m", status, content_type).into(),
    );
}

/// One dialect's request translator and answer translator on one input.
fn translation_pair(
    data: &[u8],
    request_translator: impl Fn(u8, &[u8]) -> Result<Vec<u8>, triforce_core::translate::Refusal>,
    answer_translator: impl Fn(u8, u16, &str) -> triforce_core::translate::AnswerTranslator,
) {
    let [control, piece, rest @ ..] = data else {
        return;
    };
    let (request, answer) = match rest.iter().position(|b| *b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    if let Ok(body) = request_translator(*control, request) {
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a translation is JSON");
        assert!(body.is_object(), "a translation is one object");
    }
    let content_type = if control & 0x10 == 0 {
        "text/event-stream"
    } else {
        "application/json"
    };
    let status = if control & 0x20 == 0 { 200 } else { 500 };
    let translate = |piece: usize| {
        let mut translation = answer_translator(*control, status, content_type);
        let mut out = Vec::new();
        for chunk in answer.chunks(piece.max(1)) {
            out.extend(translation.feed(chunk));
        }
        out.extend(translation.finish());
        out
    };
    assert_eq!(
        translate(usize::from(*piece)),
        translate(answer.len()),
        "the pieces translate as the whole"
    );
}
