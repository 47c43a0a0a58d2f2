//! What this node's relaying (`openai`) executors can do: each backend's health, models and
//! loaded models, from active probes (a cheap GET per interval) and passive outcomes (a relay
//! that could not reach its backend marks it down at once). A down backend gets no work; the
//! next successful probe brings it back. The node itself stays online either way.

use std::sync::Mutex;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;
use tokio::sync::Notify;
use triforce_core::config::{ExecutorSpec, Settings};
use triforce_core::federation::{BackendState, Capabilities};

use super::HttpBackends;

/// Longest a probe may take. A busy backend answers its model list slowly; that is not down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive timed-out probes that mark a backend down (a refused connection does at once).
const SLOW_PROBES_MAX: u32 = 2;
/// Largest probe answer read.
const PROBE_ANSWER_BYTES_MAX: usize = 1 << 20;

struct Backend {
    task_type: String,
    base_url: String,
    state: BackendState,
    slow_probes: u32,
    /// How long the last probe took.
    probe_time: Duration,
}

/// The backends of this node's relaying executors and what is known about them.
pub struct Backends {
    task_types: Mutex<Vec<String>>,
    backends: Mutex<Vec<Backend>>,
    /// Wakes whoever publishes this node's capabilities.
    pub changed: Notify,
}

/// What one probe found.
enum Probe {
    Up {
        models: Vec<String>,
        loaded: Vec<String>,
    },
    Refused(String),
    Slow,
}

impl Backends {
    pub fn new(settings: &Settings) -> Self {
        Backends {
            task_types: Mutex::new(settings.task_types()),
            backends: Mutex::new(configured(settings)),
            changed: Notify::new(),
        }
    }

    /// A reload's executors: a backend still configured for the same type and URL keeps what
    /// its probes found; a new one starts as at start (up, any model) until its first probe.
    pub fn reconfigure(&self, settings: &Settings) {
        let mut backends = self.backends.lock().expect("backends lock");
        let mut next = configured(settings);
        for backend in &mut next {
            let same = |old: &&Backend| {
                old.task_type == backend.task_type && old.base_url == backend.base_url
            };
            if let Some(old) = backends.iter().find(same) {
                backend.state = old.state.clone();
                backend.slow_probes = old.slow_probes;
                backend.probe_time = old.probe_time;
            }
        }
        *backends = next;
        *self.task_types.lock().expect("backends lock") = settings.task_types();
        self.changed.notify_one();
    }

    /// What this node can run now.
    pub fn capabilities(&self) -> Capabilities {
        let backends = self.backends.lock().expect("backends lock");
        Capabilities {
            task_types: self.task_types.lock().expect("backends lock").clone(),
            backends: backends.iter().map(|b| b.state.clone()).collect(),
            draining: false,
        }
    }

    /// Whether the backend of `task_type` listed models at its last probe and `model` was not
    /// among them. A backend that lists none (not probed yet, or a server without a list)
    /// lacks nothing.
    pub fn lacks_model(&self, task_type: &str, model: &str) -> bool {
        let backends = self.backends.lock().expect("backends lock");
        backends.iter().any(|b| {
            b.task_type == task_type
                && !b.state.models.is_empty()
                && !b.state.models.iter().any(|m| m == model)
        })
    }

    /// A relay could not reach the backend at `base_url` (refused, or a 5xx before any byte).
    pub fn handle_unreachable(&self, base_url: &str, error: &str) {
        let mut changed = false;
        for backend in self.backends.lock().expect("backends lock").iter_mut() {
            if backend.base_url == base_url && backend.state.healthy {
                tracing::warn!(task_type = %backend.task_type, %base_url, %error, "backend down");
                backend.state.healthy = false;
                changed = true;
            }
        }
        if changed {
            self.changed.notify_one();
        }
    }

    /// Probes every backend now, and then every `interval`, until the future is dropped.
    pub async fn probe_forever(&self, http: &HttpBackends, interval: Duration) {
        loop {
            let targets: Vec<(String, String)> = {
                let backends = self.backends.lock().expect("backends lock");
                backends
                    .iter()
                    .map(|b| (b.task_type.clone(), b.base_url.clone()))
                    .collect()
            };
            for (task_type, base_url) in targets {
                let started = tokio::time::Instant::now();
                let probe = probe(http, &base_url).await;
                self.record(&task_type, &base_url, probe, started.elapsed());
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Per backend: its task type, whether it is up, and how long its last probe took.
    pub fn health(&self) -> Vec<(String, bool, Duration)> {
        let backends = self.backends.lock().expect("backends lock");
        backends
            .iter()
            .map(|b| (b.task_type.clone(), b.state.healthy, b.probe_time))
            .collect()
    }

    /// Records a probe of the backend of `task_type` at `base_url`, unless a reload removed it
    /// meanwhile.
    fn record(&self, task_type: &str, base_url: &str, probe: Probe, took: Duration) {
        let mut backends = self.backends.lock().expect("backends lock");
        let Some(backend) = backends
            .iter_mut()
            .find(|b| b.task_type == task_type && b.base_url == base_url)
        else {
            return;
        };
        backend.probe_time = took;
        let before = backend.state.clone();
        match probe {
            Probe::Up { models, loaded } => {
                if !backend.state.healthy {
                    tracing::info!(task_type = %backend.task_type, base_url = %backend.base_url, "backend up");
                }
                backend.slow_probes = 0;
                backend.state.healthy = true;
                backend.state.models = models;
                backend.state.loaded = loaded;
            }
            Probe::Refused(error) => {
                if backend.state.healthy {
                    tracing::warn!(task_type = %backend.task_type, base_url = %backend.base_url, %error, "backend down");
                }
                backend.state.healthy = false;
            }
            Probe::Slow => {
                backend.slow_probes += 1;
                if backend.slow_probes >= SLOW_PROBES_MAX && backend.state.healthy {
                    tracing::warn!(task_type = %backend.task_type, base_url = %backend.base_url, "backend down: probes time out");
                    backend.state.healthy = false;
                }
            }
        }
        if backend.state != before {
            self.changed.notify_one();
        }
    }
}

/// Asks a backend for its models: Ollama's `/api/tags`, else the OpenAI `/v1/models`; and
/// Ollama's `/api/ps` for what is loaded.
async fn probe(http: &HttpBackends, base_url: &str) -> Probe {
    let tags = match get_json(http, &format!("{base_url}/api/tags")).await {
        Ok(tags) => tags,
        Err(ProbeError::Slow) => return Probe::Slow,
        Err(ProbeError::Refused(error)) => return Probe::Refused(error),
        Err(ProbeError::NotThere) => Value::Null,
    };
    let models = match names(&tags["models"], "name") {
        Some(models) => models,
        None => match get_json(http, &format!("{base_url}/v1/models")).await {
            Ok(list) => names(&list["data"], "id").unwrap_or_default(),
            Err(ProbeError::Slow) => return Probe::Slow,
            Err(ProbeError::Refused(error)) => return Probe::Refused(error),
            Err(ProbeError::NotThere) => {
                return Probe::Refused(
                    "neither /api/tags nor /v1/models answered a model list".into(),
                )
            }
        },
    };
    let loaded = match get_json(http, &format!("{base_url}/api/ps")).await {
        Ok(ps) => names(&ps["models"], "name").unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    Probe::Up { models, loaded }
}

enum ProbeError {
    Slow,
    Refused(String),
    /// Answered, but not this (404, not JSON): another kind of server.
    NotThere,
}

async fn get_json(http: &HttpBackends, url: &str) -> Result<Value, ProbeError> {
    let call = async {
        let response = http
            .send(Method::GET, url, None)
            .await
            .map_err(|e| ProbeError::Refused(e.to_string()))?;
        if response.status().is_server_error() {
            return Err(ProbeError::Refused(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        if !response.status().is_success() {
            return Err(ProbeError::NotThere);
        }
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
            response.into_body(),
            PROBE_ANSWER_BYTES_MAX,
        ))
        .await
        .map_err(|_| ProbeError::NotThere)?
        .to_bytes();
        serde_json::from_slice(&body).map_err(|_| ProbeError::NotThere)
    };
    tokio::time::timeout(PROBE_TIMEOUT, call)
        .await
        .unwrap_or(Err(ProbeError::Slow))
}

/// `list[*][field]` as strings, if `list` is an array.
fn names(list: &Value, field: &str) -> Option<Vec<String>> {
    let items = list.as_array()?;
    Some(
        items
            .iter()
            .filter_map(|item| item[field].as_str().map(str::to_string))
            .collect(),
    )
}

/// The backends of a config's relaying executors, as at start: up, any model, until probed
/// (a node just started is not refused work for what nobody has looked at yet).
fn configured(settings: &Settings) -> Vec<Backend> {
    settings
        .executors
        .iter()
        .filter_map(|(task_type, spec)| match spec {
            ExecutorSpec::Openai { base_url, .. } => Some(Backend {
                task_type: task_type.clone(),
                base_url: base_url.clone(),
                state: BackendState {
                    task_type: task_type.clone(),
                    healthy: true,
                    models: Vec::new(),
                    loaded: Vec::new(),
                },
                slow_probes: 0,
                probe_time: Duration::ZERO,
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relaying_chat() -> Settings {
        Settings::parse(
            "[executors.chat]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:11434\"\n",
        )
        .expect("test settings parse")
    }

    #[test]
    fn a_model_is_lacking_only_against_a_probed_list() {
        let backends = Backends::new(&relaying_chat());
        let base_url = "http://127.0.0.1:11434";
        // Not probed yet: it might have anything.
        assert!(!backends.lacks_model("chat", "llama3"));
        let up = |models: &[&str]| Probe::Up {
            models: models.iter().map(|m| m.to_string()).collect(),
            loaded: Vec::new(),
        };
        backends.record("chat", base_url, up(&["llama3", "qwen"]), Duration::ZERO);
        assert!(!backends.lacks_model("chat", "qwen"));
        assert!(backends.lacks_model("chat", "mistral"));
        // Another type's backend says nothing about this one.
        assert!(!backends.lacks_model("embeddings", "mistral"));
        // A server that answers with an empty list is one we know nothing about.
        backends.record("chat", base_url, up(&[]), Duration::ZERO);
        assert!(!backends.lacks_model("chat", "mistral"));
        // Down, it keeps the models it listed last.
        backends.record("chat", base_url, up(&["qwen"]), Duration::ZERO);
        backends.record(
            "chat",
            base_url,
            Probe::Refused("refused".into()),
            Duration::ZERO,
        );
        assert!(backends.lacks_model("chat", "llama3"));
        assert!(!backends.capabilities().backends[0].healthy);
    }
}
