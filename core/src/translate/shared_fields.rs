//! Property: whatever a client's API and Chat Completions both can say survives translation.
//!
//! One conversation (system prompt, turns, sampling) is written the way each client API writes
//! it (Ollama's chat, the Responses API with its text or its parts, Anthropic's Messages with
//! its text or its blocks) and translated; the Chat Completions request must then say the same
//! conversation: the same messages in order, the same temperature, top_p, token limit, stop
//! sequences, seed and stream flag, wherever the client's API has the field.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::{anthropic_to_chat, ollama_to_openai, responses_to_chat};

#[derive(Clone, Debug)]
struct Conversation {
    system: Option<String>,
    /// (the user's turn?, its text), alternating from the user's.
    turns: Vec<(bool, String)>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    stop: Option<Vec<String>>,
    seed: Option<u32>,
    stream: bool,
    /// Texts written as one-part lists where the API has parts.
    as_parts: bool,
}

fn text() -> impl Strategy<Value = String> {
    // Quotes, backslashes, newlines and non-ASCII, as real prompts have them.
    "[a-zA-Z0-9 .,!?\"\\\\\n\u{e9}\u{4e16}]{0,40}"
}

/// Values JSON carries exactly (quarters), so equality means the field went through.
fn quarter(max: u32) -> impl Strategy<Value = f64> {
    (0..=max * 4).prop_map(|q| f64::from(q) / 4.0)
}

fn conversation() -> impl Strategy<Value = Conversation> {
    (
        proptest::option::of(text()),
        proptest::collection::vec(text(), 1..6),
        proptest::option::of(quarter(2)),
        proptest::option::of(quarter(1)),
        proptest::option::of(1u32..4096),
        proptest::option::of(proptest::collection::vec(text(), 1..3)),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(system, texts, temperature, top_p, max_tokens, stop, seed, stream, as_parts)| {
                Conversation {
                    system,
                    turns: texts
                        .into_iter()
                        .enumerate()
                        .map(|(i, text)| (i % 2 == 0, text))
                        .collect(),
                    temperature,
                    top_p,
                    max_tokens,
                    stop,
                    seed,
                    stream,
                    as_parts,
                }
            },
        )
}

fn role(user: bool) -> &'static str {
    if user {
        "user"
    } else {
        "assistant"
    }
}

/// Inserts `value` under `name` when the conversation has it.
fn put(object: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(name.to_string(), value);
    }
}

impl Conversation {
    fn ollama(&self) -> Value {
        // Plain-text messages look the same in Ollama's chat and in Chat Completions.
        let messages = self.chat_messages();
        let mut options = Map::new();
        put(
            &mut options,
            "temperature",
            self.temperature.map(Value::from),
        );
        put(&mut options, "top_p", self.top_p.map(Value::from));
        put(
            &mut options,
            "num_predict",
            self.max_tokens.map(Value::from),
        );
        put(&mut options, "stop", self.stop.clone().map(Value::from));
        put(&mut options, "seed", self.seed.map(Value::from));
        json!({"model": "m", "messages": messages, "options": options, "stream": self.stream})
    }

    fn responses(&self) -> Value {
        let input: Vec<Value> = self
            .turns
            .iter()
            .map(|(user, text)| {
                let kind = if *user { "input_text" } else { "output_text" };
                let content = if self.as_parts {
                    json!([{"type": kind, "text": text}])
                } else {
                    json!(text)
                };
                json!({"type": "message", "role": role(*user), "content": content})
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), json!("m"));
        body.insert("input".into(), Value::Array(input));
        body.insert("stream".into(), json!(self.stream));
        put(
            &mut body,
            "instructions",
            self.system.clone().map(Value::from),
        );
        put(&mut body, "temperature", self.temperature.map(Value::from));
        put(&mut body, "top_p", self.top_p.map(Value::from));
        put(
            &mut body,
            "max_output_tokens",
            self.max_tokens.map(Value::from),
        );
        put(&mut body, "seed", self.seed.map(Value::from));
        Value::Object(body)
    }

    fn anthropic(&self) -> Value {
        let messages: Vec<Value> = self
            .turns
            .iter()
            .map(|(user, text)| {
                let content = if self.as_parts {
                    json!([{"type": "text", "text": text}])
                } else {
                    json!(text)
                };
                json!({"role": role(*user), "content": content})
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), json!("m"));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("max_tokens".into(), json!(self.max_tokens.unwrap_or(64)));
        body.insert("stream".into(), json!(self.stream));
        put(&mut body, "system", self.system.clone().map(Value::from));
        put(&mut body, "temperature", self.temperature.map(Value::from));
        put(&mut body, "top_p", self.top_p.map(Value::from));
        put(
            &mut body,
            "stop_sequences",
            self.stop.clone().map(Value::from),
        );
        Value::Object(body)
    }

    /// The messages a Chat Completions request must carry for it, from the system prompt on.
    fn chat_messages(&self) -> Vec<Value> {
        let mut messages: Vec<Value> = self
            .system
            .iter()
            .map(|s| json!({"role": "system", "content": s}))
            .collect();
        messages.extend(
            self.turns
                .iter()
                .map(|(user, text)| json!({"role": role(*user), "content": text})),
        );
        messages
    }
}

/// What the client's API says of a field (`None`: the API has no such field).
fn says(chat: &Value, field: &str, expected: Option<Value>) -> Result<(), TestCaseError> {
    let got = chat.get(field).filter(|v| !v.is_null()).cloned();
    prop_assert_eq!(got, expected, "field {} of {}", field, chat);
    Ok(())
}

fn chat_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("a translation is JSON")
}

proptest! {
    #[test]
    fn ollama_chat_keeps_every_shared_field(c in conversation()) {
        let out = ollama_to_openai("/api/chat", c.ollama().to_string().as_bytes())
            .expect("a plain chat translates");
        let chat = chat_of(&out.body);
        prop_assert_eq!(chat["model"].clone(), json!("m"));
        prop_assert_eq!(chat["messages"].clone(), Value::Array(c.chat_messages()));
        says(&chat, "temperature", c.temperature.map(Value::from))?;
        says(&chat, "top_p", c.top_p.map(Value::from))?;
        says(&chat, "max_tokens", c.max_tokens.map(Value::from))?;
        says(&chat, "stop", c.stop.clone().map(Value::from))?;
        says(&chat, "seed", c.seed.map(Value::from))?;
        prop_assert_eq!(chat["stream"].clone(), json!(c.stream));
        prop_assert_eq!(out.stream, c.stream);
    }

    #[test]
    fn responses_keep_every_shared_field(c in conversation()) {
        let out = responses_to_chat(c.responses().to_string().as_bytes())
            .expect("a plain conversation translates");
        let chat = chat_of(&out.body);
        prop_assert_eq!(chat["messages"].clone(), Value::Array(c.chat_messages()));
        says(&chat, "temperature", c.temperature.map(Value::from))?;
        says(&chat, "top_p", c.top_p.map(Value::from))?;
        says(&chat, "max_tokens", c.max_tokens.map(Value::from))?;
        says(&chat, "seed", c.seed.map(Value::from))?;
        prop_assert_eq!(chat["stream"].clone(), json!(c.stream));
        prop_assert_eq!(out.model, "m");
    }

    #[test]
    fn anthropic_messages_keep_every_shared_field(c in conversation()) {
        let out = anthropic_to_chat(c.anthropic().to_string().as_bytes())
            .expect("a plain conversation translates");
        let chat = chat_of(&out.body);
        prop_assert_eq!(chat["messages"].clone(), Value::Array(c.chat_messages()));
        says(&chat, "temperature", c.temperature.map(Value::from))?;
        says(&chat, "top_p", c.top_p.map(Value::from))?;
        says(&chat, "max_tokens", Some(json!(c.max_tokens.unwrap_or(64))))?;
        says(&chat, "stop", c.stop.clone().map(Value::from))?;
        prop_assert_eq!(chat["stream"].clone(), json!(c.stream));
        prop_assert_eq!(out.model, "m");
    }
}
