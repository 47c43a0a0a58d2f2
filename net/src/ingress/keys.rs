//! API keys at the door: `Authorization: Bearer KEY`, looked up by hash, with a per-key
//! request rate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use arc_swap::ArcSwap;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use triforce_core::config::{key_hash, ApiKey, ApiKeys};

use super::shape::{Dialect, DoorCode, IngressError};
use crate::load::{read_key_file, LoadError, NodeConfig};

/// The API keys file of `config`'s ingress: it must exist and be readable by its owner only.
/// A key with a token budget needs the usage database its spending is counted in.
pub fn load_api_keys(config: &NodeConfig) -> Result<(PathBuf, ApiKeys), LoadError> {
    let path = config.dir.join(&config.settings.ingress.api_keys_file);
    let text = read_key_file(&path)?;
    let file = path.display().to_string();
    let keys = ApiKeys::parse(&file, &text)?;
    let keeps_usage = !config.settings.ingress.usage_db.as_os_str().is_empty();
    if let Some(key) = keys.keys.iter().find(|k| k.has_budget() && !keeps_usage) {
        return Err(triforce_core::config::ConfigError::Invalid {
            file,
            field: format!("key {:?}", key.name),
            reason: "a token budget per day or month is counted in the usage database, and [ingress] usage_db is empty".into(),
        }
        .into());
    }
    Ok((path, keys))
}

/// A reload reads the key file with the rest of the config and swaps the keys in once all of
/// it holds.
impl crate::node::ReloadedPart for std::sync::Arc<KeyCheck> {
    fn prepare(&self, config: &NodeConfig) -> Result<Box<dyn FnOnce() + Send>, LoadError> {
        let (_, keys) = load_api_keys(config)?;
        let check = self.clone();
        Ok(Box::new(move || check.replace(keys)))
    }
}

/// The header Anthropic's clients send their key in.
const X_API_KEY: &str = "x-api-key";

/// Checks a request's key and its rate.
pub struct KeyCheck {
    /// As of the last reload.
    keys: ArcSwap<ApiKeys>,
    /// Per key name: a token bucket (tokens, last refill).
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl KeyCheck {
    pub fn new(keys: ApiKeys) -> Self {
        KeyCheck {
            keys: ArcSwap::from_pointee(keys),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The key the request carries, if it is known and within its rate.
    pub fn authorize(&self, api: Dialect, headers: &HeaderMap) -> Result<ApiKey, IngressError> {
        // Anthropic's clients send the key as `x-api-key`; every other client as a bearer token.
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let x_api_key = headers.get(X_API_KEY).and_then(|v| v.to_str().ok());
        let presented = bearer
            .or(x_api_key)
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                IngressError::new(
                    api,
                    StatusCode::UNAUTHORIZED,
                    DoorCode::MissingApiKey,
                    "no API key: send the header Authorization: Bearer KEY, or x-api-key: KEY (keys come from `triforce apikey add`)",
                )
            })?;
        let keys = self.keys.load();
        let key = keys.find(&key_hash(presented)).ok_or_else(|| {
            IngressError::new(
                api,
                StatusCode::UNAUTHORIZED,
                DoorCode::InvalidApiKey,
                "the API key is not known to this node",
            )
        })?;
        if key.requests_per_minute > 0 && !self.take_token(key) {
            return Err(IngressError::new(
                api,
                StatusCode::TOO_MANY_REQUESTS,
                DoorCode::RateLimitExceeded,
                format!(
                    "key {:?} is limited to {} requests per minute",
                    key.name, key.requests_per_minute
                ),
            ));
        }
        Ok(key.clone())
    }

    /// A reload's keys: a removed key is refused from the next request on; a kept key keeps
    /// its rate bucket.
    pub fn replace(&self, keys: ApiKeys) {
        self.keys.store(std::sync::Arc::new(keys));
    }

    /// A token bucket holding a minute's worth of requests, refilled continuously.
    fn take_token(&self, key: &ApiKey) -> bool {
        let rate = f64::from(key.requests_per_minute);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("buckets lock");
        let (tokens, at) = buckets.entry(key.name.clone()).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate / 60.0).min(rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
