//! What the AI door reads of a client's body before it relays the body as written.
//!
//! The door reads one field, `model`, to check it against the key's allowlist and to route by
//! it; the backend then reads the same body with its own JSON decoder. Two decoders must not
//! disagree about which value is "the" model, or a key limited to one model can smuggle another
//! past the check: Go's `encoding/json` (Ollama) matches object keys case-insensitively and the
//! last one wins, so `{"model":"llama3","MODEL":"qwen"}` is `llama3` here and `qwen` there.
//! So a top-level key that is a field the door reads, up to case (Go's folding: ASCII case,
//! plus `K` for `k` and `ſ` for `s`), must be that field spelled exactly and only once.

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::affinity::AffinityKey;

/// The top-level fields the door reads; each must appear at most once and spelled exactly.
pub const DOOR_FIELDS: [&str; 7] = [
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "options",
];

/// The fields the door reads, as the client sent them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DoorFields {
    /// `model`, when it is a string.
    pub model: Option<String>,
    /// `stream`, when it is a boolean (a backend refuses any other value itself).
    pub stream: Option<bool>,
    /// Whether `stream_options` is there: the client chose what its stream reports, and the
    /// door leaves that alone (it asks for usage only where the client said nothing).
    pub stream_options: bool,
    /// The most completion tokens the request asks for: the largest of `max_tokens`,
    /// `max_completion_tokens`, the Responses API's `max_output_tokens` and Ollama's
    /// `options.num_predict`, where a number; a negative
    /// `num_predict` (Ollama's "no limit") reads as `u64::MAX`.
    pub max_tokens: Option<u64>,
    /// Whether Ollama's `options` is there, whatever its value (a cap then goes inside it).
    pub options: bool,
}

/// A token count as a client wrote it: a non-negative integer, or (Ollama) a negative one for
/// "no limit"; anything else is the backend's to refuse.
fn token_count(value: &serde_json::Value) -> Option<u64> {
    match value.as_i64() {
        Some(n) if n < 0 => Some(u64::MAX),
        _ => value.as_u64(),
    }
}

/// Why a body cannot be read as a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body must be a JSON object")]
    NotObject,
    #[error("the field {0:?} appears more than once")]
    Duplicate(&'static str),
    #[error("the field {found:?} is {field:?} in another case; send {field:?} exactly once, in lower case")]
    CaseVariant { field: &'static str, found: String },
    #[error("the field {0:?} must be a string")]
    NotString(&'static str),
}

/// Reads the door's fields of `body`, refusing any ambiguity about them.
pub fn read_door_fields(body: &[u8]) -> Result<DoorFields, FieldError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let fields =
        deserializer
            .deserialize_any(FieldsVisitor)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => FieldError::NotObject,
                _ => FieldError::NotJson(e.to_string()),
            })??;
    deserializer
        .end()
        .map_err(|e| FieldError::NotJson(e.to_string()))?;
    Ok(fields)
}

/// Whether `key` is `field` under Go's case folding but not spelled as `field`.
fn is_case_variant(key: &str, field: &str) -> bool {
    if key == field {
        return false;
    }
    let fold = |c: char| match c {
        '\u{212A}' => 'k',
        '\u{017F}' => 's',
        c => c.to_ascii_lowercase(),
    };
    key.chars().map(fold).eq(field.chars().map(fold))
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    /// The outer error is the JSON's; the inner one is a refusal of a well-formed body.
    type Value = Result<DoorFields, FieldError>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = DoorFields::default();
        let mut seen = [false; DOOR_FIELDS.len()];
        let mut refusal = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if let Some(at) = DOOR_FIELDS.iter().position(|f| *f == key) {
                if std::mem::replace(&mut seen[at], true) {
                    refusal.get_or_insert(FieldError::Duplicate(DOOR_FIELDS[at]));
                }
                match DOOR_FIELDS[at] {
                    "model" => match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::String(model) => fields.model = Some(model),
                        _ => {
                            refusal.get_or_insert(FieldError::NotString("model"));
                        }
                    },
                    "stream" => {
                        fields.stream = map.next_value::<serde_json::Value>()?.as_bool();
                    }
                    "stream_options" => {
                        map.next_value::<IgnoredAny>()?;
                        fields.stream_options = true;
                    }
                    "options" => {
                        let value: serde_json::Value = map.next_value()?;
                        fields.options = true;
                        // Go reads `NUM_PREDICT` as `num_predict` (the last one wins), so a
                        // case variant would pass a cap the door checked on another key.
                        let options = value.as_object().into_iter().flatten();
                        for (key, value) in options {
                            if key == "num_predict" {
                                fields.max_tokens = fields.max_tokens.max(token_count(value));
                            } else if is_case_variant(key, "num_predict") {
                                refusal.get_or_insert(FieldError::CaseVariant {
                                    field: "options.num_predict",
                                    found: key.clone(),
                                });
                            }
                        }
                    }
                    _ => {
                        let value: serde_json::Value = map.next_value()?;
                        fields.max_tokens = fields.max_tokens.max(token_count(&value));
                    }
                }
                continue;
            }
            map.next_value::<IgnoredAny>()?;
            if let Some(field) = DOOR_FIELDS.iter().find(|f| is_case_variant(&key, f)) {
                refusal.get_or_insert(FieldError::CaseVariant {
                    field,
                    found: key.into_owned(),
                });
            }
        }
        Ok(match refusal {
            Some(refusal) => Err(refusal),
            None => Ok(fields),
        })
    }
}

/// `body`, a JSON object with at least one member, with `member` (`"name":value`, as JSON
/// text) added first: as text, so the rest of the body stays as the client wrote it. `None` if
/// `body` is no object.
pub fn with_member(body: &[u8], member: &str) -> Option<Vec<u8>> {
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[open] != b'{' {
        return None;
    }
    let closes_at_once = body[open + 1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|b| *b == b'}');
    let mut with = Vec::with_capacity(body.len() + member.len() + 1);
    with.extend_from_slice(&body[..=open]);
    with.extend_from_slice(member.as_bytes());
    if !closes_at_once {
        with.push(b',');
    }
    with.extend_from_slice(&body[open + 1..]);
    Some(with)
}

/// `body` with Ollama's `options.num_predict` set to `cap`, where `options` is there without
/// it (an `options` that is no object, such as `null`, becomes one): the one change the door
/// cannot make as text, so the body is decoded and written again.
pub fn with_num_predict(body: &[u8], cap: u64) -> Option<Vec<u8>> {
    let mut request: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).ok()?;
    let options = request
        .entry("options")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if !options.is_object() {
        *options = serde_json::Value::Object(Default::default());
    }
    options
        .as_object_mut()?
        .insert("num_predict".into(), cap.into());
    serde_json::to_vec(&request).ok()
}

/// What names a conversation in a request body (see [`conversation_key`]).
#[derive(Deserialize)]
struct Conversation<'a> {
    #[serde(default, borrow)]
    prompt_cache_key: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    system: Option<&'a RawValue>,
    #[serde(default, borrow)]
    messages: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    prompt: Option<String>,
}

#[derive(Deserialize)]
struct Role<'a> {
    #[serde(default, borrow)]
    role: Option<std::borrow::Cow<'a, str>>,
}

/// Bytes of a bare prompt that name its conversation: a completion's continuation resends the
/// same opening.
const PROMPT_OPENING_BYTES: usize = 512;

/// The conversation a chat request belongs to, from its body: OpenAI's `prompt_cache_key`, else
/// its `user`, else the conversation's opening: the system prompt and the messages up to and
/// including the first user message, which every later turn resends unchanged (or a bare
/// prompt's first 512 bytes). `None` when the body names nothing (no key, no messages).
pub fn conversation_key(body: &[u8]) -> Option<AffinityKey> {
    let request: Conversation = serde_json::from_slice(body).ok()?;
    if let Some(key) = request.prompt_cache_key.filter(|k| !k.is_empty()) {
        return Some(AffinityKey::of(
            &[b"prompt_cache_key:", key.as_bytes()].concat(),
        ));
    }
    if let Some(user) = request.user.filter(|u| !u.is_empty()) {
        return Some(AffinityKey::of(&[b"user:", user.as_bytes()].concat()));
    }
    let mut opening = Vec::new();
    if let Some(system) = request.system {
        opening.extend_from_slice(system.get().as_bytes());
    }
    for message in request.messages.iter().flatten() {
        opening.extend_from_slice(message.get().as_bytes());
        let role: Option<Role> = serde_json::from_str(message.get()).ok();
        if role.and_then(|r| r.role).as_deref() == Some("user") {
            break;
        }
    }
    if let Some(prompt) = &request.prompt {
        let end = (0..=PROMPT_OPENING_BYTES.min(prompt.len()))
            .rev()
            .find(|at| prompt.is_char_boundary(*at))
            .unwrap_or(0);
        opening.extend_from_slice(&prompt.as_bytes()[..end]);
    }
    (!opening.is_empty()).then(|| AffinityKey::of(&opening))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Result<DoorFields, FieldError> {
        read_door_fields(body.as_bytes())
    }

    #[test]
    fn the_model_is_read_once_and_exactly() {
        assert_eq!(
            read(r#"{"model":"llama3","messages":[{"model":"x"}]}"#)
                .unwrap()
                .model
                .as_deref(),
            Some("llama3")
        );
        assert_eq!(read("{}").unwrap().model, None);
        assert_eq!(
            read(r#"{"model":"llama3","model":"qwen"}"#),
            Err(FieldError::Duplicate("model"))
        );
        // An escaped key is the same key once decoded, as every decoder sees it.
        assert_eq!(
            read(r#"{"model":"llama3","mod\u0065l":"qwen"}"#),
            Err(FieldError::Duplicate("model"))
        );
        for variant in ["MODEL", "Model", "moDel"] {
            let body = format!(r#"{{"model":"llama3","{variant}":"qwen"}}"#);
            assert_eq!(
                read(&body),
                Err(FieldError::CaseVariant {
                    field: "model",
                    found: variant.into()
                }),
                "{body}"
            );
        }
        assert_eq!(read(r#"{"model":7}"#), Err(FieldError::NotString("model")));
        assert_eq!(read("[1]"), Err(FieldError::NotObject));
        assert!(matches!(read("{"), Err(FieldError::NotJson(_))));
        assert!(matches!(read("{} {}"), Err(FieldError::NotJson(_))));
    }

    #[test]
    fn the_tokens_asked_for_are_the_largest_named() {
        let asked = |body: &str| read(body).unwrap().max_tokens;
        assert_eq!(asked(r#"{"max_tokens":50}"#), Some(50));
        assert_eq!(
            asked(r#"{"max_tokens":50,"max_completion_tokens":80}"#),
            Some(80)
        );
        assert_eq!(asked(r#"{"options":{"num_predict":30}}"#), Some(30));
        assert_eq!(asked(r#"{"options":{"num_predict":-1}}"#), Some(u64::MAX));
        assert_eq!(asked(r#"{"options":{"temperature":0}}"#), None);
        assert!(read(r#"{"options":{}}"#).unwrap().options);
        assert!(read(r#"{"options":null}"#).unwrap().options);
        assert_eq!(
            read(r#"{"options":{"num_predict":5,"NUM_PREDICT":100000}}"#),
            Err(FieldError::CaseVariant {
                field: "options.num_predict",
                found: "NUM_PREDICT".into()
            })
        );
        // A key twice: every decoder keeps the last, as the door does.
        assert_eq!(
            asked(r#"{"options":{"num_predict":5,"num_predict":900}}"#),
            Some(900)
        );
        assert_eq!(asked(r#"{"max_tokens":"many"}"#), None);
        assert_eq!(
            read(r#"{"max_tokens":5,"MAX_TOKENS":500}"#),
            Err(FieldError::CaseVariant {
                field: "max_tokens",
                found: "MAX_TOKENS".into()
            })
        );
    }

    #[test]
    fn a_member_goes_in_first_and_the_rest_stays() {
        let with = |body: &str| {
            String::from_utf8(with_member(body.as_bytes(), r#""n":1"#).unwrap()).unwrap()
        };
        assert_eq!(with(r#" {"a":2}"#), r#" {"n":1,"a":2}"#);
        assert_eq!(with("{ }"), r#"{"n":1 }"#);
        assert_eq!(with_member(b"[]", r#""n":1"#), None);
        let capped = with_num_predict(br#"{"options":{"temperature":0},"model":"m"}"#, 64).unwrap();
        let capped: serde_json::Value = serde_json::from_slice(&capped).unwrap();
        assert_eq!(capped["options"]["num_predict"], 64);
        assert_eq!(capped["options"]["temperature"], 0);
        let from_null = with_num_predict(br#"{"options":null,"model":"m"}"#, 64).unwrap();
        let from_null: serde_json::Value = serde_json::from_slice(&from_null).unwrap();
        assert_eq!(from_null["options"]["num_predict"], 64);
    }

    #[test]
    fn the_stream_flag_and_options_are_read_once_and_exactly() {
        let fields = read(r#"{"model":"m","stream":true}"#).unwrap();
        assert_eq!((fields.stream, fields.stream_options), (Some(true), false));
        let fields = read(r#"{"stream":false,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!((fields.stream, fields.stream_options), (Some(false), true));
        assert_eq!(read(r#"{"stream":"yes"}"#).unwrap().stream, None);
        assert_eq!(
            read(r#"{"stream":true,"stream":false}"#),
            Err(FieldError::Duplicate("stream"))
        );
        assert_eq!(
            read(r#"{"stream":true,"Stream_Options":{}}"#),
            Err(FieldError::CaseVariant {
                field: "stream_options",
                found: "Stream_Options".into()
            })
        );
    }

    #[test]
    fn a_conversation_keeps_its_key_across_turns() {
        let turn = |history: &str| {
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"hi"}}{history}]}}"#
            );
            conversation_key(body.as_bytes())
        };
        let first = turn("");
        assert!(first.is_some());
        assert_eq!(
            turn(r#",{"role":"assistant","content":"hello"},{"role":"user","content":"more"}"#),
            first
        );
        let other = br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"bye"}]}"#;
        assert_ne!(conversation_key(other), first);
        // An explicit key wins over the messages.
        let keyed = br#"{"prompt_cache_key":"c-1","messages":[{"role":"user","content":"hi"}]}"#;
        let keyed_too =
            br#"{"prompt_cache_key":"c-1","messages":[{"role":"user","content":"other"}]}"#;
        assert_eq!(conversation_key(keyed), conversation_key(keyed_too));
        assert_eq!(
            conversation_key(br#"{"user":"ann","prompt":"x"}"#),
            conversation_key(br#"{"user":"ann","prompt":"y"}"#)
        );
        let long = "é".repeat(400);
        let prompt = format!(r#"{{"prompt":"{long}"}}"#);
        assert!(conversation_key(prompt.as_bytes()).is_some());
        assert_eq!(conversation_key(br#"{"model":"m","input":"x"}"#), None);
        assert_eq!(conversation_key(b"not json"), None);
    }

    #[test]
    fn go_folds_two_letters_beyond_ascii() {
        assert!(is_case_variant("\u{212A}ey", "key"));
        assert!(is_case_variant("\u{017F}tream", "stream"));
        assert!(!is_case_variant("models", "model"));
        assert!(!is_case_variant("model", "model"));
    }
}
