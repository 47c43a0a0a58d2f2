//! JSON as the bytes a client or executor wrote: checked once, then carried and stored as text.
//!
//! Payloads and results used to travel as `serde_json::Value` trees and were written out again
//! at every hop. Re-encoding is not neutral: `1e15` comes back as `1000000000000000.0`, so a
//! payload that fit the sender's limit could grow about four times past the receiver's frame
//! limit, and a 1 MiB array took 16 MiB as a tree. [`RawJson`] is validated once where it enters
//! and is never re-encoded afterwards.

use std::fmt;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The deepest nesting accepted, as serde_json's own recursion limit: whoever parses the value
/// later (an executor, a client's JSON library) must not be handed a stack-exhausting document
/// that was only skimmed here.
pub const DEPTH_MAX: usize = 128;

/// Refuses documents nested deeper than [`DEPTH_MAX`]. `text` is valid JSON already, so
/// brackets outside strings are all that needs counting.
fn check_depth(text: &str) -> Result<(), serde_json::Error> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > DEPTH_MAX {
                    return Err(serde_json::Error::custom(format!(
                        "nested deeper than {DEPTH_MAX} levels"
                    )));
                }
            }
            b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    Ok(())
}

/// One JSON value as text, checked to be valid JSON; cheap to clone (shared).
#[derive(Clone)]
pub struct RawJson(Arc<RawValue>);

impl RawJson {
    /// Checks `bytes` as one JSON value (surrounding whitespace allowed, as in a body), nested
    /// at most [`DEPTH_MAX`] deep.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let text = std::str::from_utf8(bytes).map_err(serde_json::Error::custom)?;
        Self::parse_str(text)
    }

    pub fn parse_str(text: &str) -> Result<Self, serde_json::Error> {
        let raw: Box<RawValue> = serde_json::from_str(text)?;
        check_depth(raw.get())?;
        Ok(RawJson(Arc::from(raw)))
    }

    /// A value inside a document already checked (a field of a checked [`RawJson`]): valid and
    /// no deeper than the document, so it is not checked again.
    pub fn from_raw(raw: &RawValue) -> Self {
        RawJson(Arc::from(raw.to_owned()))
    }

    /// JSON `null`, the payload of a task that names none.
    pub fn null() -> Self {
        Self::parse_str("null").expect("null is JSON")
    }

    /// The text, exactly as it arrived (without surrounding whitespace).
    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.get().as_bytes()
    }

    pub fn len(&self) -> usize {
        self.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.get().is_empty()
    }

    /// The value as a tree, for the few places that look inside (tests, the `sleep` executor).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).expect("checked at construction")
    }
}

impl From<serde_json::Value> for RawJson {
    fn from(value: serde_json::Value) -> Self {
        let raw = serde_json::value::to_raw_value(&value).expect("a Value serializes");
        RawJson(Arc::from(raw))
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson {}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN_MAX: usize = 200;
        let text = self.get();
        match text.char_indices().nth(SHOWN_MAX) {
            Some((cut, _)) => write!(f, "{}... ({} bytes)", &text[..cut], text.len()),
            None => f.write_str(text),
        }
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        check_depth(raw.get()).map_err(serde::de::Error::custom)?;
        Ok(RawJson(Arc::from(raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_kept_exactly_and_never_reencoded() {
        let raw = RawJson::parse(b"  [1e15, 1e15 ,\"\\u00e9\"] ").unwrap();
        assert_eq!(raw.get(), "[1e15, 1e15 ,\"\\u00e9\"]");
        #[derive(Serialize)]
        struct Outer {
            result: RawJson,
        }
        let outer = serde_json::to_string(&Outer { result: raw }).unwrap();
        assert_eq!(outer, "{\"result\":[1e15, 1e15 ,\"\\u00e9\"]}");
    }

    #[test]
    fn invalid_and_too_deep_json_is_refused() {
        assert!(RawJson::parse(b"{\"a\":").is_err());
        assert!(RawJson::parse(b"1 2").is_err());
        assert!(RawJson::parse(&[0xff, b'1']).is_err());
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(RawJson::parse(deep.as_bytes()).is_err());
        let limit = format!("{}{}", "[".repeat(DEPTH_MAX), "]".repeat(DEPTH_MAX));
        assert!(RawJson::parse(limit.as_bytes()).is_ok());
        let nested_field = format!("{{\"payload\":{deep}}}");
        #[derive(Deserialize)]
        struct Task {
            #[allow(dead_code)]
            payload: RawJson,
        }
        assert!(
            serde_json::from_str::<Task>(&nested_field).is_err(),
            "as a field too"
        );
        let quoted = format!("[\"{}\\\"\"]", "[".repeat(500));
        assert!(
            RawJson::parse(quoted.as_bytes()).is_ok(),
            "brackets in strings do not count"
        );
    }
}
