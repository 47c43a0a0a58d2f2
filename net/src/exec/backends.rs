//! What this node's relaying (`openai`) executors can do: each backend's health, models and
//! loaded models. This is the driver: it probes (a cheap GET per interval), hears of relays'
//! outcomes from the runner, and feeds both to each backend's [`BackendHealth`] machine in
//! core, which decides up and down and when a probe is due. A down backend gets no work; the
//! node itself stays online either way.
//!
//! An idle backend is probed with the one listing it answered before (`/v1/models` for an
//! OpenAI-only server, `/api/tags` and `/api/ps` for Ollama), not a round of 404s first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::Method;
use serde_json::Value;
use tokio::sync::Notify;
use triforce_core::backend_health::{
    BackendHealth, DownBecause, HealthChange, ProbeResult, RelayFailure,
};
use triforce_core::config::{BackendApi, ExecutorSpec, Settings};
use triforce_core::federation::{BackendState, Capabilities};

use super::HttpBackends;
use crate::clock::{Clock, SystemClock};
use crate::observer::Observer;

/// Longest a probe may take. A busy backend answers its model list slowly; that is not down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest probe answer read.
const PROBE_ANSWER_BYTES_MAX: usize = 1 << 20;

struct Backend {
    task_type: String,
    base_url: String,
    /// The API its config says it speaks.
    api: BackendApi,
    health: BackendHealth,
    /// Models it serves, from its last good probe (kept while it is down). Empty: unknown.
    models: Vec<String>,
    /// Models loaded in memory, from its last good probe.
    loaded: Vec<String>,
    /// How long the last probe took.
    probe_time: Duration,
    /// Which listing it answered last time, so a probe asks that first and only.
    listing: Listing,
}

/// How a backend lists its models, as its last good probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    Unknown,
    /// `/api/tags` and `/api/ps` (Ollama).
    Ollama,
    /// `/v1/models` only (llama.cpp, vLLM, LM Studio).
    OpenAi,
}

/// The API a backend speaks, as its config says or (for `api = "auto"`) its last good probe
/// found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpokenApi {
    /// OpenAI's API only (llama.cpp, vLLM): an Ollama client's request to it is translated.
    OpenAiOnly,
    /// Ollama's, with its OpenAI API beside it: an OpenAI client's request to it is checked
    /// for what Ollama's OpenAI API would drop.
    Ollama,
}

impl Backend {
    /// `None` while `auto` has no good probe yet.
    fn spoken_api(&self) -> Option<SpokenApi> {
        match (self.api, self.listing) {
            (BackendApi::Openai, _) | (BackendApi::Auto, Listing::OpenAi) => {
                Some(SpokenApi::OpenAiOnly)
            }
            (BackendApi::Ollama, _) | (BackendApi::Auto, Listing::Ollama) => {
                Some(SpokenApi::Ollama)
            }
            (BackendApi::Auto, Listing::Unknown) => None,
        }
    }

    fn state(&self) -> BackendState {
        BackendState {
            task_type: self.task_type.clone(),
            healthy: self.health.healthy(),
            models: self.models.clone(),
            loaded: self.loaded.clone(),
        }
    }
}

/// A relay in flight to one backend, counted until dropped.
pub struct RelayInFlight<'a> {
    backends: &'a Backends,
    base_url: String,
}

impl Drop for RelayInFlight<'_> {
    fn drop(&mut self) {
        let now = self.backends.clock.now();
        self.backends.each(&self.base_url, |backend| {
            backend.health.handle_relay_ended(now);
            false
        });
    }
}

/// The backends of this node's relaying executors and what is known about them.
pub struct Backends {
    task_types: Mutex<Vec<String>>,
    backends: Mutex<Vec<Backend>>,
    /// What the backends above can run now, republished on every change: admission reads it
    /// for each task without a lock or a copy.
    published: ArcSwap<Capabilities>,
    /// Wakes whoever publishes this node's capabilities.
    pub changed: Notify,
    /// tokio's clock (which turmoil drives in the simulator), as core's instants.
    clock: SystemClock,
    observer: Option<Arc<dyn Observer>>,
}

/// What one probe found.
enum Probe {
    Up {
        models: Vec<String>,
        loaded: Vec<String>,
        listing: Listing,
    },
    Refused(String),
    Slow,
}

impl Probe {
    fn result(&self) -> ProbeResult {
        match self {
            Probe::Up { .. } => ProbeResult::Answered,
            Probe::Refused(_) => ProbeResult::Refused,
            Probe::Slow => ProbeResult::Slow,
        }
    }
}

impl Backends {
    pub fn new(settings: &Settings, observer: Option<Arc<dyn Observer>>) -> Self {
        let backends = configured(settings);
        Backends {
            published: ArcSwap::from_pointee(capabilities_of(settings.task_types(), &backends)),
            task_types: Mutex::new(settings.task_types()),
            backends: Mutex::new(backends),
            changed: Notify::new(),
            clock: SystemClock::new(),
            observer,
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
                backend.health = old.health.clone();
                backend.models = old.models.clone();
                backend.loaded = old.loaded.clone();
                backend.probe_time = old.probe_time;
                if backend.api == BackendApi::Auto {
                    backend.listing = old.listing;
                }
            }
        }
        *backends = next;
        *self.task_types.lock().expect("backends lock") = settings.task_types();
        self.publish(&backends);
    }

    /// What this node can run now.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::clone(&self.published.load())
    }

    /// What this node can run now, as last published (no copy).
    pub fn published(&self) -> arc_swap::Guard<Arc<Capabilities>> {
        self.published.load()
    }

    /// Publishes `backends` (the locked list) as what this node can run now, and wakes whoever
    /// sends the capabilities to the peers.
    fn publish(&self, backends: &[Backend]) {
        let task_types = self.task_types.lock().expect("backends lock").clone();
        self.published
            .store(Arc::new(capabilities_of(task_types, backends)));
        self.changed.notify_one();
    }

    /// The API the backend at `base_url` speaks (see [`SpokenApi`]); `None` for an `auto`
    /// backend before a probe answered (it listed its models at `/v1/models` or at Ollama's
    /// `/api/tags`), or for an unknown one.
    pub fn spoken_api(&self, base_url: &str) -> Option<SpokenApi> {
        let backends = self.backends.lock().expect("backends lock");
        backends
            .iter()
            .filter(|b| b.base_url == base_url)
            .find_map(Backend::spoken_api)
    }

    /// A relay to `base_url` failed before its answer began.
    pub fn handle_relay_failure(&self, base_url: &str, failure: RelayFailure, error: &str) {
        self.each(base_url, |backend| {
            let change = backend.health.handle_relay_failure(failure);
            self.changed_health(backend, change, error)
        });
    }

    /// A relay to `base_url` starts: until the returned guard drops, and for one probe
    /// interval after, no probe goes to that backend.
    pub fn relay_started(&self, base_url: &str) -> RelayInFlight<'_> {
        self.each(base_url, |backend| {
            backend.health.handle_relay_started();
            false
        });
        RelayInFlight {
            backends: self,
            base_url: base_url.to_string(),
        }
    }

    /// A relay got its answer's head: the backend is up, whatever the last probe said.
    pub fn handle_answered(&self, base_url: &str) {
        let now = self.clock.now();
        self.each(base_url, |backend| {
            let change = backend.health.handle_relay_answered(now);
            self.changed_health(backend, change, "it answered a relay")
        });
    }

    /// Logs a change of `backend`'s health and tells the observer; whether there was one.
    fn changed_health(&self, backend: &Backend, change: Option<HealthChange>, why: &str) -> bool {
        let Some(change) = change else {
            return false;
        };
        let (task_type, base_url) = (&backend.task_type, &backend.base_url);
        match change {
            HealthChange::Up => tracing::info!(%task_type, %base_url, why, "backend up"),
            HealthChange::Down(DownBecause::Refused) => {
                tracing::warn!(%task_type, %base_url, error = why, "backend down")
            }
            HealthChange::Down(DownBecause::Slow) => {
                tracing::warn!(%task_type, %base_url, why, "backend down: it answers too slowly")
            }
        }
        if let Some(observer) = &self.observer {
            observer.backend_health(task_type, change == HealthChange::Up);
        }
        true
    }

    /// Runs `change` on each backend at `base_url`, and publishes if one says it changed
    /// what the node can run.
    fn each(&self, base_url: &str, mut change: impl FnMut(&mut Backend) -> bool) {
        let mut backends = self.backends.lock().expect("backends lock");
        let mut changed = false;
        for backend in backends.iter_mut().filter(|b| b.base_url == base_url) {
            changed |= change(backend);
        }
        if changed {
            self.publish(&backends);
        }
    }

    /// Probes every backend that is due now, and then every `interval`, until the future is
    /// dropped.
    pub async fn probe_forever(&self, http: &HttpBackends, interval: Duration) {
        loop {
            let now = self.clock.now();
            let targets: Vec<(String, String, Listing)> = {
                let backends = self.backends.lock().expect("backends lock");
                backends
                    .iter()
                    .filter(|b| b.health.probe_due(now, interval))
                    .map(|b| (b.task_type.clone(), b.base_url.clone(), b.listing))
                    .collect()
            };
            for (task_type, base_url, listing) in targets {
                let started = tokio::time::Instant::now();
                let probe = probe(http, &base_url, listing).await;
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
            .map(|b| (b.task_type.clone(), b.health.healthy(), b.probe_time))
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
        let change = backend.health.handle_probe(probe.result());
        let mut listed = false;
        let why = match probe {
            Probe::Up {
                models,
                loaded,
                listing,
            } => {
                backend.listing = listing;
                listed = backend.models != models || backend.loaded != loaded;
                backend.models = models;
                backend.loaded = loaded;
                "it answered a probe".to_string()
            }
            Probe::Refused(error) => error,
            Probe::Slow => "probes time out".to_string(),
        };
        if self.changed_health(backend, change, &why) || listed {
            self.publish(&backends);
        }
    }
}

/// Asks a backend for its models: Ollama's `/api/tags` (and `/api/ps` for what is loaded),
/// else the OpenAI `/v1/models`; a backend whose listing is known is asked that alone.
async fn probe(http: &HttpBackends, base_url: &str, listing: Listing) -> Probe {
    if listing == Listing::OpenAi {
        return openai_listing(http, base_url).await;
    }
    let tags = match get_json(http, &format!("{base_url}/api/tags")).await {
        Ok(tags) => tags,
        Err(ProbeError::Slow) => return Probe::Slow,
        Err(ProbeError::Refused(error)) => return Probe::Refused(error),
        Err(ProbeError::NotThere) => Value::Null,
    };
    let Some(models) = names(&tags["models"], "name") else {
        return openai_listing(http, base_url).await;
    };
    let loaded = match get_json(http, &format!("{base_url}/api/ps")).await {
        Ok(ps) => names(&ps["models"], "name").unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    Probe::Up {
        models,
        loaded,
        listing: Listing::Ollama,
    }
}

async fn openai_listing(http: &HttpBackends, base_url: &str) -> Probe {
    match get_json(http, &format!("{base_url}/v1/models")).await {
        Ok(list) => {
            let models = names(&list["data"], "id").unwrap_or_default();
            // An OpenAI-API server (llama.cpp's, vLLM) serves the models it loaded at its
            // start: what it lists is in memory.
            Probe::Up {
                loaded: models.clone(),
                models,
                listing: Listing::OpenAi,
            }
        }
        Err(ProbeError::Slow) => Probe::Slow,
        Err(ProbeError::Refused(error)) => Probe::Refused(error),
        Err(ProbeError::NotThere) => {
            Probe::Refused("neither /api/tags nor /v1/models answered a model list".into())
        }
    }
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

/// What a node with `task_types` and `backends` can run (draining is the runner's to say).
fn capabilities_of(task_types: Vec<String>, backends: &[Backend]) -> Capabilities {
    Capabilities {
        task_types,
        backends: backends.iter().map(Backend::state).collect(),
        draining: false,
    }
}

/// How a backend whose config names its API lists its models (probes ask that alone).
fn declared_listing(api: BackendApi) -> Listing {
    match api {
        BackendApi::Auto => Listing::Unknown,
        BackendApi::Openai => Listing::OpenAi,
        BackendApi::Ollama => Listing::Ollama,
    }
}

/// The backends of a config's relaying executors, as at start: up, any model, until probed
/// (a node just started is not refused work for what nobody has looked at yet).
fn configured(settings: &Settings) -> Vec<Backend> {
    settings
        .executors
        .iter()
        .filter_map(|(task_type, spec)| match spec {
            ExecutorSpec::Openai { base_url, api, .. } => Some(Backend {
                task_type: task_type.clone(),
                base_url: base_url.clone(),
                api: *api,
                health: BackendHealth::new(),
                models: Vec::new(),
                loaded: Vec::new(),
                probe_time: Duration::ZERO,
                listing: declared_listing(*api),
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
    fn what_a_probe_lists_is_published_at_once() {
        let backends = Backends::new(&relaying_chat(), None);
        let base_url = "http://127.0.0.1:11434";
        let lacks_model = |task_type: &str, model: &str| {
            backends.published().offer(task_type, Some(model))
                == triforce_core::federation::Offer::NoModel
        };
        // Not probed yet: it might have anything.
        assert!(!lacks_model("chat", "llama3"));
        let up = |models: &[&str]| Probe::Up {
            models: models.iter().map(|m| m.to_string()).collect(),
            loaded: Vec::new(),
            listing: Listing::OpenAi,
        };
        backends.record("chat", base_url, up(&["llama3", "qwen"]), Duration::ZERO);
        assert!(!lacks_model("chat", "qwen"));
        assert!(lacks_model("chat", "mistral"));
        // A server that answers with an empty list is one we know nothing about.
        backends.record("chat", base_url, up(&[]), Duration::ZERO);
        assert!(!lacks_model("chat", "mistral"));
        // Down, it keeps the models it listed last.
        backends.record("chat", base_url, up(&["qwen"]), Duration::ZERO);
        backends.record(
            "chat",
            base_url,
            Probe::Refused("refused".into()),
            Duration::ZERO,
        );
        assert!(lacks_model("chat", "llama3"));
        assert!(!backends.capabilities().backends[0].healthy);
    }

    #[tokio::test]
    async fn relays_speak_for_the_backend() {
        let backends = Backends::new(&relaying_chat(), None);
        let base_url = "http://127.0.0.1:11434";
        let healthy = || backends.capabilities().backends[0].healthy;
        let _relay = backends.relay_started(base_url);
        backends.handle_relay_failure(base_url, RelayFailure::Unreachable, "refused");
        assert!(!healthy());
        // An answer is evidence enough that it is up again.
        backends.handle_answered(base_url);
        assert!(healthy());
        // Relays that time out twice in a row mark it down, as slow probes do.
        backends.handle_relay_failure(base_url, RelayFailure::TimedOut, "timed out");
        assert!(healthy());
        backends.handle_relay_failure(base_url, RelayFailure::TimedOut, "timed out");
        assert!(!healthy());
    }
}
