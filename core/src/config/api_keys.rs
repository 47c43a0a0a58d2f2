//! The ingress's API keys file: names, SHA-256 hashes of the keys (never the keys), and what
//! each key may do. Written by `triforce apikey`, read by the node.
//!
//! ```toml
//! [[keys]]
//! name = "open-webui"
//! sha256 = "9f86d0..."             # of the whole key, hex
//! models = ["llama3.2"]            # optional: only these models; empty = any
//! requests_per_minute = 600        # optional: 0 = no limit
//! tokens_per_minute = 20000        # optional: prompt + completion tokens; 0 = no limit
//! concurrent_max = 4               # optional: requests in flight at once; 0 = no limit
//! max_tokens = 2048                # optional: cap on a request's max_tokens / num_predict
//! tokens_per_day = 1000000         # optional: budget per UTC day; 0 = none
//! tokens_per_month = 20000000      # optional: budget per UTC calendar month; 0 = none
//! weight = 2                       # optional: share of a busy backend's queue (1-100; default 1)
//! dashboard = true                 # optional: may read the whole federation's dashboard
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ConfigError;

/// Most keys one file may hold: a lookup is a scan, and a federation's clients are few.
pub const API_KEYS_MAX: usize = 10_000;
/// A key's name: what logs and metrics show instead of the key.
pub const KEY_NAME_LEN_MAX: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeys {
    pub keys: Vec<ApiKey>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub name: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requests_per_minute: u32,
    /// Prompt plus completion tokens per minute, as the backends count them.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub tokens_per_minute: u64,
    /// Requests of this key in flight at once (until each answer's last byte).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub concurrent_max: u32,
    /// The most completion tokens one request may ask for (`max_tokens`,
    /// `max_completion_tokens`, Ollama's `options.num_predict`); a request that names none is
    /// given this.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_tokens: u32,
    /// Tokens per UTC day and per UTC calendar month.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub tokens_per_day: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub tokens_per_month: u64,
    /// This key's share of a saturated backend's queue against other keys' (1-100; 0 reads
    /// as 1): with weights 2 and 1, two of its waiting requests go for one of the other's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: u32,
    /// May read the dashboard (`/ui/state`), which shows every node, model and task of the
    /// federation, whatever `models` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dashboard: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// The hex SHA-256 a key is stored and looked up as.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `name` may name a key: 1-64 of `A-Z a-z 0-9 - _ .` (it appears in logs, metric labels
/// and the file, unquoted by anything that reads them).
pub fn key_name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= KEY_NAME_LEN_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// What a valid key name is, for error messages.
pub const KEY_NAME_RULE: &str = "1-64 of A-Z a-z 0-9 - _ .";

impl ApiKey {
    /// A key named `name` with hash `sha256` and no limits.
    pub fn new(name: impl Into<String>, sha256: impl Into<String>) -> Self {
        ApiKey {
            name: name.into(),
            sha256: sha256.into(),
            models: Vec::new(),
            requests_per_minute: 0,
            tokens_per_minute: 0,
            concurrent_max: 0,
            max_tokens: 0,
            tokens_per_day: 0,
            tokens_per_month: 0,
            weight: 0,
            dashboard: false,
        }
    }

    /// Whether a token budget (per day or month) limits this key: those are counted from the
    /// usage database.
    pub fn has_budget(&self) -> bool {
        self.tokens_per_day > 0 || self.tokens_per_month > 0
    }

    /// Whether this key may ask for `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty()
            || self
                .models
                .iter()
                .any(|m| crate::federation::same_model(m, model))
    }
}

impl ApiKeys {
    /// Parses and checks the text of an API keys file named `file`.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let keys: ApiKeys = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            message: e.message().trim().replace('\n', " "),
        })?;
        keys.check(file)?;
        Ok(keys)
    }

    fn check(&self, file: &str) -> Result<(), ConfigError> {
        if self.keys.len() > API_KEYS_MAX {
            return Err(ConfigError::invalid(
                file,
                "keys",
                format!("more than {API_KEYS_MAX} keys"),
            ));
        }
        for (i, key) in self.keys.iter().enumerate() {
            let field = format!("keys[{i}]");
            if !key_name_is_valid(&key.name) {
                return Err(ConfigError::invalid(
                    file,
                    field,
                    format!("name {:?} must be {KEY_NAME_RULE}", key.name),
                ));
            }
            let hash_ok = key.sha256.len() == 64
                && key
                    .sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
            if !hash_ok {
                return Err(ConfigError::invalid(
                    file,
                    field,
                    "sha256 must be 64 lowercase hex digits",
                ));
            }
            if key.weight > 100 {
                return Err(ConfigError::invalid(
                    file,
                    field,
                    format!("weight {} must be 1-100 (0 reads as 1)", key.weight),
                ));
            }
            if self.keys[..i].iter().any(|k| k.name == key.name) {
                return Err(ConfigError::invalid(
                    file,
                    field,
                    format!("name {:?} is used twice", key.name),
                ));
            }
        }
        Ok(())
    }

    /// The key whose hash is `hash`, if any. The hash is of a secret of 256 random bits, so
    /// comparing hashes leaks nothing a timing attack could use.
    pub fn find(&self, hash: &str) -> Option<&ApiKey> {
        self.keys.iter().find(|k| k.sha256 == hash)
    }

    pub fn to_toml(&self) -> String {
        let mut text = String::from(
            "# TriForce API keys: written by `triforce apikey`. Holds SHA-256 hashes, never keys.\n\n",
        );
        text.push_str(&toml::to_string(self).expect("keys serialize"));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let hash = key_hash("tf_secret");
        let keys = ApiKeys {
            keys: vec![ApiKey {
                models: vec!["llama3".into()],
                requests_per_minute: 60,
                tokens_per_minute: 20_000,
                concurrent_max: 4,
                max_tokens: 512,
                tokens_per_day: 1_000_000,
                tokens_per_month: 9_000_000,
                weight: 3,
                dashboard: true,
                ..ApiKey::new("webui", hash.clone())
            }],
        };
        let parsed = ApiKeys::parse("api_keys", &keys.to_toml()).unwrap();
        assert_eq!(parsed, keys);
        let key = parsed.find(&hash).unwrap();
        assert!(key.allows_model("llama3") && !key.allows_model("qwen"));
        assert!(parsed.find(&key_hash("tf_other")).is_none());
    }

    #[test]
    fn bad_files_name_the_cause() {
        let error = ApiKeys::parse("api_keys", "[[keys]]\nname = \"a b\"\nsha256 = \"00\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("api_keys: keys[0]: name"), "{error}");
        let short = format!("[[keys]]\nname = \"a\"\nsha256 = \"{}\"\n", "A".repeat(64));
        let error = ApiKeys::parse("api_keys", &short).unwrap_err().to_string();
        assert!(error.contains("64 lowercase hex"), "{error}");
        let error = ApiKeys::parse("api_keys", "keys = 3")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("api_keys: "), "{error}");
        let twice = format!(
            "[[keys]]\nname = \"a\"\nsha256 = \"{h}\"\n[[keys]]\nname = \"a\"\nsha256 = \"{h}\"\n",
            h = key_hash("x")
        );
        assert!(ApiKeys::parse("api_keys", &twice)
            .unwrap_err()
            .to_string()
            .contains("used twice"));
    }
}
