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

/// The top-level fields the door reads; each must appear at most once and spelled exactly.
pub const DOOR_FIELDS: [&str; 1] = ["model"];

/// The fields the door reads, as the client sent them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DoorFields {
    /// `model`, when it is a string.
    pub model: Option<String>,
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
        let mut seen_model = false;
        let mut refusal = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "model" {
                let value: serde_json::Value = map.next_value()?;
                if seen_model {
                    refusal.get_or_insert(FieldError::Duplicate("model"));
                }
                seen_model = true;
                match value {
                    serde_json::Value::String(model) => fields.model = Some(model),
                    _ => {
                        refusal.get_or_insert(FieldError::NotString("model"));
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
    fn go_folds_two_letters_beyond_ascii() {
        assert!(is_case_variant("\u{212A}ey", "key"));
        assert!(is_case_variant("\u{017F}tream", "stream"));
        assert!(!is_case_variant("models", "model"));
        assert!(!is_case_variant("model", "model"));
    }
}
