//! OpenAI clients before an Ollama backend pass through to Ollama's own OpenAI API (`/v1`),
//! byte for byte. That API takes most of Chat Completions, but answers one choice only and
//! ignores `n` without a word; a client asking for several would get one and never know. So
//! `n` above 1 is refused by name, as every field a translation cannot carry is.

use serde::Deserialize;

use super::Refusal;

/// The fields of an OpenAI request that Ollama's OpenAI API would drop.
#[derive(Deserialize)]
struct Unhonoured {
    n: Option<serde_json::Value>,
}

/// Whether Ollama's OpenAI API can honour an OpenAI client's `body`; a body that does not
/// parse is the backend's to answer.
pub fn check_openai_for_ollama(body: &[u8]) -> Result<(), Refusal> {
    let Ok(fields) = serde_json::from_slice::<Unhonoured>(body) else {
        return Ok(());
    };
    match fields.n {
        Some(n) if n.as_u64() != Some(1) && !n.is_null() => Err(Refusal::new(
            "n",
            "an Ollama backend answers one choice per request",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_choice_passes() {
        let check = |body: &str| check_openai_for_ollama(body.as_bytes());
        assert!(check(r#"{"model": "m", "messages": []}"#).is_ok());
        assert!(check(r#"{"model": "m", "n": 1}"#).is_ok());
        assert!(check(r#"{"model": "m", "n": null}"#).is_ok());
        assert_eq!(check(r#"{"model": "m", "n": 3}"#).unwrap_err().field, "n");
        assert_eq!(check(r#"{"model": "m", "n": "3"}"#).unwrap_err().field, "n");
        // Not JSON: the backend says what is wrong with it, as it would without a door.
        assert!(check("{not json").is_ok());
    }
}
