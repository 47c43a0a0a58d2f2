//! `federation.toml`: everything beyond the seed's node list, each with the seed's default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{ConfigError, SETTINGS_FILE};

/// The whole settings file. Every section and field is optional; unknown ones are refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The PSK inline. Prefer `psk_file` or `TRIFORCE_PSK`: a config is often shared.
    pub psk: Option<String>,
    /// A file holding the PSK (trailing newline ignored), relative to the config directory.
    pub psk_file: Option<PathBuf>,
    /// Files with further PSKs accepted (not used to sign), for key rotation.
    pub accepted_psk_files: Vec<PathBuf>,
    pub timing: Timing,
    pub limits: Limits,
    pub auth: AuthSettings,
    pub selection: SelectionSettings,
    pub network: NetworkSettings,
    /// How each task type runs on this node. `echo` and `sleep` are built in.
    pub executors: BTreeMap<String, ExecutorSpec>,
    /// The client-facing door: OpenAI- and Ollama-compatible APIs behind API keys.
    pub ingress: IngressSettings,
}

/// The `[ingress]` section: a second listener, for AI clients, apart from the federation port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressSettings {
    /// `IP:PORT` to serve the OpenAI and Ollama APIs on; no ingress when unset.
    pub listen: Option<std::net::SocketAddr>,
    /// The API keys file (hashes only, written by `triforce apikey`), relative to the config
    /// directory.
    pub api_keys_file: PathBuf,
    /// Largest request body a client may send; 0 follows `limits.body_bytes_max`, and no more
    /// is allowed: a request crosses to its backend's node in one frame of that size.
    pub body_bytes_max: usize,
    /// Client connections served at once.
    pub connections_max: usize,
    /// Connections one client address may hold (0: a quarter of `connections_max`).
    pub connections_per_source_max: usize,
    /// Longest one request may wait for its answer to start (the whole stream may take longer).
    pub first_byte_timeout_ms: u64,
    /// PEM certificate chain and private key (relative to the config directory): HTTPS when
    /// both are set.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The usage database (what each key used, per model and day), relative to the config
    /// directory; `""` keeps no usage.
    pub usage_db: PathBuf,
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            listen: None,
            api_keys_file: PathBuf::from("api_keys"),
            body_bytes_max: 0,
            connections_max: 1024,
            connections_per_source_max: 0,
            first_byte_timeout_ms: 120_000,
            tls_cert_file: None,
            tls_key_file: None,
            usage_db: PathBuf::from("usage.sqlite3"),
        }
    }
}

impl IngressSettings {
    /// The largest body the door takes, given the federation's frame-sized `limits`.
    pub fn body_bytes_max(&self, limits: &Limits) -> usize {
        match self.body_bytes_max {
            0 => limits.body_bytes_max,
            n => n,
        }
    }

    /// Connections one client address may hold.
    pub fn connections_per_source(&self) -> usize {
        match self.connections_per_source_max {
            0 => (self.connections_max / 4).max(1),
            n => n,
        }
    }

    fn check(&self, limits: &Limits) -> Result<(), ConfigError> {
        if self.body_bytes_max > limits.body_bytes_max {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "ingress.body_bytes_max",
                format!(
                    "must be at most limits.body_bytes_max ({}): a request crosses to the node of its backend in one frame of that size; raise limits.body_bytes_max on every node to take larger bodies",
                    limits.body_bytes_max
                ),
            ));
        }
        refuse_zero("ingress.connections_max", self.connections_max as u64)?;
        refuse_zero("ingress.first_byte_timeout_ms", self.first_byte_timeout_ms)?;
        if self.first_byte_timeout_ms > TIMING_MS_MAX {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "ingress.first_byte_timeout_ms",
                format!("must be at most {TIMING_MS_MAX}"),
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "ingress.tls_cert_file",
                "set tls_cert_file and tls_key_file together (HTTPS needs both), or neither",
            ));
        }
        if self.api_keys_file.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "ingress.api_keys_file",
                "is empty",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// How often each peer is probed (the seed: 10 s). An unanswered probe is a miss.
    pub heartbeat_interval_ms: u64,
    /// Consecutive misses that make a peer Offline (the seed: 3).
    pub misses_max: u32,
    /// Largest accepted clock difference of a signed request (the seed: 30 s).
    pub window_s: u64,
    /// Longest one attempt of a task may run on one node (the seed: 30 s).
    pub attempt_timeout_ms: u64,
    /// Longest a node may take to acknowledge a task; silence means it never started there. A
    /// peer with a measured RTT gets 4 round trips, but at least `accept_timeout_min_ms`.
    pub accept_timeout_ms: u64,
    /// Shortest acknowledgement wait, however close a peer is (room for a busy node).
    pub accept_timeout_min_ms: u64,
    /// How often a running task reports progress to the node that sent it.
    pub progress_interval_ms: u64,
    /// Progress intervals of silence after which a running attempt counts as dead.
    pub progress_misses_max: u32,
    /// Longest a task may take across all attempts.
    pub task_deadline_ms: u64,
    /// On shutdown, longest to wait for running tasks.
    pub drain_timeout_ms: u64,
    /// How often each `openai` executor's backend is probed for health and models.
    pub backend_probe_interval_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_interval_ms: 10_000,
            misses_max: 3,
            window_s: 30,
            attempt_timeout_ms: 30_000,
            accept_timeout_ms: 2_000,
            accept_timeout_min_ms: 250,
            progress_interval_ms: 500,
            progress_misses_max: 3,
            task_deadline_ms: 120_000,
            backend_probe_interval_ms: 5_000,
            drain_timeout_ms: 10_000,
        }
    }
}

impl Timing {
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted, in bytes; larger is refused before it is read.
    pub body_bytes_max: usize,
    /// Tasks waiting for a worker on this node; beyond it the node answers busy (429).
    pub queue_len_max: usize,
    /// Tasks running at once on this node; 0 means one per core.
    pub workers_max: usize,
    /// Signatures remembered for replay detection.
    pub replay_entries_max: usize,
    /// Retries earned per first attempt (retry budget; see `failover::RetryBudget`).
    pub retry_ratio: f64,
    /// Retries per second always allowed (over a 10 s window), however few tasks there were.
    pub retry_reserve: u32,
    /// HTTP connections served at once; more wait in the kernel's backlog.
    pub http_connections_max: usize,
    /// HTTP connections one source address may hold at once; 0 means a quarter of
    /// `http_connections_max` (at least 1), so one address cannot take every slot.
    pub http_connections_per_source_max: usize,
    /// Longest a client may take to send a whole request, headers and body together (one
    /// deadline, not one per read): a client that trickles bytes is dropped instead of holding
    /// a connection slot.
    pub request_read_timeout_ms: u64,
    /// Task results remembered for idempotent retries.
    pub ledger_entries_max: usize,
    /// Bytes of task results remembered for idempotent retries (oldest dropped first).
    pub ledger_bytes_max: usize,
    /// Bytes the long tasks (`Prefer: respond-async`) may hold: the answers kept, plus the
    /// payloads of those still running. Past it, the oldest kept answers are dropped, and a new
    /// long task is refused (503) while running ones hold it all.
    pub long_tasks_bytes_max: usize,
    /// How long a long task's answer is kept after it ended (then `GET` answers 404).
    pub long_task_keep_ms: u64,
    /// Relayed (`openai` executor) tasks running at once. They do not take one of the
    /// `workers_max` slots: the backend does the work and queues on its own.
    pub relays_max: usize,
    /// Threads running the node's networking and routing; 0 means one per core. The node moves
    /// bytes while backends do the work, so one thread serves thousands of tasks a second, and
    /// 1 saves the cross-thread wake-ups a multi-threaded runtime pays per request (a third of
    /// a remote task's CPU in `bench/run.sh`).
    pub runtime_threads: usize,
}

impl Limits {
    /// Connections one source address may hold: the setting, or its default share.
    pub fn http_connections_per_source(&self) -> usize {
        match self.http_connections_per_source_max {
            0 => (self.http_connections_max / 4).max(1),
            n => n,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes_max: 1 << 20,
            queue_len_max: 256,
            workers_max: 0,
            replay_entries_max: 100_000,
            retry_ratio: 0.5,
            retry_reserve: 20,
            http_connections_max: 512,
            http_connections_per_source_max: 0,
            request_read_timeout_ms: 10_000,
            ledger_entries_max: 10_000,
            ledger_bytes_max: 64 << 20,
            long_tasks_bytes_max: 64 << 20,
            long_task_keep_ms: 3_600_000,
            relays_max: 1024,
            runtime_threads: 0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Networks besides the nodes' own addresses that may send signed requests for any node.
    pub allowed_clients: Vec<IpNet>,
}

/// The VPN the nodes share (the seed: WireGuard on 10.10.0.0/24, port 51820).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSettings {
    /// When set, `triforce run` warns if the node's address lies outside it.
    pub subnet: Option<IpNet>,
    /// WireGuard's UDP port on the master, for `triforce init` and `triforce wireguard`.
    pub wireguard_port: u16,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            subnet: None,
            wireguard_port: 51820,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectionSettings {
    /// Task types that need a GPU node (the seed: `gpu_inference`).
    pub gpu_task_types: Vec<String>,
    /// When no GPU node is online: `false` falls back to any node (the seed), `true` refuses.
    pub gpu_strict: bool,
    /// Requests of one conversation go to the node that has its history cached (see
    /// `triforce_core::affinity`); only the door's AI requests carry a conversation.
    pub affinity: bool,
    /// A node whose load is over this factor × the candidates' mean is passed over for the
    /// conversations it is home to (at least 1).
    pub affinity_load_factor: f64,
}

impl Default for SelectionSettings {
    fn default() -> Self {
        SelectionSettings {
            gpu_task_types: vec!["gpu_inference".into()],
            gpu_strict: false,
            affinity: true,
            affinity_load_factor: 1.5,
        }
    }
}

impl SelectionSettings {
    fn check(&self) -> Result<(), ConfigError> {
        if !(1.0..=100.0).contains(&self.affinity_load_factor) {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "selection.affinity_load_factor",
                "must be within 1.0..=100.0 (1.0: never above the mean)",
            ));
        }
        Ok(())
    }
}

/// The API a relaying executor's backend speaks. An Ollama client's request to a backend that
/// speaks OpenAI's alone is translated; Ollama itself speaks both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendApi {
    /// As the probe finds: a backend that lists its models at Ollama's `/api/tags` is Ollama;
    /// one that lists them only at `/v1/models` speaks OpenAI's API alone.
    #[default]
    Auto,
    /// OpenAI's API alone (llama.cpp's server, vLLM, LM Studio).
    Openai,
    /// Ollama, which serves its own API and OpenAI's.
    Ollama,
}

/// How a node runs one task type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ExecutorSpec {
    /// Result = payload.
    Echo,
    /// Waits `payload.ms`, then result = payload.
    Sleep,
    /// POSTs the payload as JSON to `url` and returns the JSON answer.
    Http {
        url: String,
        #[serde(default = "default_executor_timeout_ms")]
        timeout_ms: u64,
    },
    /// Relays an OpenAI- or Ollama-shaped request (the client's path and body) to
    /// `base_url` + path, streaming the answer back as the backend writes it. Ollama, vLLM,
    /// llama.cpp's server and LM Studio all speak it.
    Openai {
        base_url: String,
        /// Longest a whole answer may take, streamed or not.
        #[serde(default = "default_stream_timeout_ms")]
        timeout_ms: u64,
        /// Which API the backend speaks (`auto`: as its probe finds).
        #[serde(default)]
        api: BackendApi,
    },
    /// Runs `program` with `args` (no shell), payload on stdin, JSON from stdout. The child
    /// gets a cleared environment: `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR` and `USER`
    /// from the node's, plus `env` (never the PSK).
    Command {
        program: PathBuf,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default = "default_executor_timeout_ms")]
        timeout_ms: u64,
    },
}

/// The longest any timing setting may be: a day. Longer values are surely typos, and the
/// bound keeps every product of two settings (`heartbeat_interval_ms × misses_max`, ...) far
/// from overflowing.
pub const TIMING_MS_MAX: u64 = 86_400_000;
/// The most misses either miss counter may be set to.
pub const MISSES_MAX: u32 = 1_000;

fn refuse_zero(field: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(
            SETTINGS_FILE,
            field,
            "must be greater than 0",
        ));
    }
    Ok(())
}

impl Timing {
    fn check(&self) -> Result<(), ConfigError> {
        let durations = [
            ("timing.heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("timing.attempt_timeout_ms", self.attempt_timeout_ms),
            ("timing.accept_timeout_ms", self.accept_timeout_ms),
            ("timing.accept_timeout_min_ms", self.accept_timeout_min_ms),
            ("timing.progress_interval_ms", self.progress_interval_ms),
            ("timing.task_deadline_ms", self.task_deadline_ms),
            (
                "timing.backend_probe_interval_ms",
                self.backend_probe_interval_ms,
            ),
        ];
        for (field, value) in durations {
            refuse_zero(field, value)?;
            if value > TIMING_MS_MAX {
                return Err(ConfigError::invalid(
                    SETTINGS_FILE,
                    field,
                    format!("{value} is more than a day ({TIMING_MS_MAX} ms)"),
                ));
            }
        }
        if self.drain_timeout_ms > TIMING_MS_MAX {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "timing.drain_timeout_ms",
                format!("must be at most {TIMING_MS_MAX}"),
            ));
        }
        if self.window_s > TIMING_MS_MAX / 1000 {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "timing.window_s",
                "must be at most a day",
            ));
        }
        for (field, misses) in [
            ("timing.misses_max", self.misses_max),
            ("timing.progress_misses_max", self.progress_misses_max),
        ] {
            refuse_zero(field, u64::from(misses))?;
            if misses > MISSES_MAX {
                return Err(ConfigError::invalid(
                    SETTINGS_FILE,
                    field,
                    format!("must be at most {MISSES_MAX}"),
                ));
            }
        }
        if self.accept_timeout_ms > self.attempt_timeout_ms {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "timing.accept_timeout_ms",
                "must not exceed timing.attempt_timeout_ms",
            ));
        }
        Ok(())
    }
}

impl Limits {
    fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("limits.body_bytes_max", self.body_bytes_max as u64),
            ("limits.replay_entries_max", self.replay_entries_max as u64),
            (
                "limits.http_connections_max",
                self.http_connections_max as u64,
            ),
            (
                "limits.request_read_timeout_ms",
                self.request_read_timeout_ms,
            ),
            ("limits.ledger_entries_max", self.ledger_entries_max as u64),
            ("limits.ledger_bytes_max", self.ledger_bytes_max as u64),
            ("limits.relays_max", self.relays_max as u64),
            (
                "limits.long_tasks_bytes_max",
                self.long_tasks_bytes_max as u64,
            ),
            ("limits.long_task_keep_ms", self.long_task_keep_ms),
        ];
        for (field, value) in positive {
            refuse_zero(field, value)?;
        }
        for (field, value) in [
            (
                "limits.request_read_timeout_ms",
                self.request_read_timeout_ms,
            ),
            ("limits.long_task_keep_ms", self.long_task_keep_ms),
        ] {
            if value > TIMING_MS_MAX {
                return Err(ConfigError::invalid(
                    SETTINGS_FILE,
                    field,
                    format!("must be at most {TIMING_MS_MAX}"),
                ));
            }
        }
        // Frames carry a body plus an envelope behind a 32-bit length.
        if self.body_bytes_max > (1 << 30) {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "limits.body_bytes_max",
                "must be at most 1 GiB",
            ));
        }
        if self.http_connections_per_source_max > self.http_connections_max {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "limits.http_connections_per_source_max",
                "must not exceed limits.http_connections_max",
            ));
        }
        if !(0.0..=10.0).contains(&self.retry_ratio) {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "limits.retry_ratio",
                "must be within 0.0..=10.0",
            ));
        }
        Ok(())
    }
}

impl ExecutorSpec {
    fn check(&self, field: &str) -> Result<(), ConfigError> {
        match self {
            ExecutorSpec::Openai {
                base_url,
                timeout_ms,
                ..
            } => {
                check_plain_http_url(field, "base_url", base_url)?;
                if base_url.ends_with('/') {
                    return Err(ConfigError::invalid(
                        SETTINGS_FILE,
                        field,
                        format!("base_url {base_url:?} must not end with '/': the client's path (/v1/..., /api/...) is appended to it"),
                    ));
                }
                check_executor_timeout(field, *timeout_ms)
            }
            ExecutorSpec::Http { url, timeout_ms } => {
                check_plain_http_url(field, "url", url)?;
                check_executor_timeout(field, *timeout_ms)
            }
            ExecutorSpec::Command {
                program,
                timeout_ms,
                env,
                ..
            } => {
                if program.as_os_str().is_empty() {
                    return Err(ConfigError::invalid(
                        SETTINGS_FILE,
                        field,
                        "program is empty",
                    ));
                }
                if let Some(name) = env
                    .keys()
                    .find(|name| name.is_empty() || name.contains(['=', '\0']))
                {
                    return Err(ConfigError::invalid(
                        SETTINGS_FILE,
                        field,
                        format!("env name {name:?} must be non-empty, without '=' or NUL"),
                    ));
                }
                check_executor_timeout(field, *timeout_ms)
            }
            ExecutorSpec::Echo | ExecutorSpec::Sleep => Ok(()),
        }
    }
}

/// Backends are local inference servers (on the node or across WireGuard, which already
/// encrypts): executors speak plain HTTP only.
fn check_plain_http_url(field: &str, name: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") {
        return Err(ConfigError::invalid(
            SETTINGS_FILE,
            field,
            format!("{name} {url:?}: https backends are not supported; use http:// (on the node itself or over WireGuard)"),
        ));
    }
    let host = url.strip_prefix("http://");
    if host.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
        return Err(ConfigError::invalid(
            SETTINGS_FILE,
            field,
            format!("{name} {url:?} must look like http://HOST:PORT/PATH"),
        ));
    }
    Ok(())
}

fn check_executor_timeout(field: &str, timeout_ms: u64) -> Result<(), ConfigError> {
    if timeout_ms == 0 || timeout_ms > TIMING_MS_MAX {
        return Err(ConfigError::invalid(
            SETTINGS_FILE,
            field,
            format!("timeout_ms must be within 1..={TIMING_MS_MAX}"),
        ));
    }
    Ok(())
}

/// A TOML error as one line, `line L, column C (the line): message`, for logs and terminals.
fn one_line(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before.len() - line_start + 1;
            let source = text[line_start..].lines().next().unwrap_or("").trim();
            format!("line {line}, column {column} ({source}): {message}")
        }
        None => message,
    }
}

/// The executors every node has under their own type names.
/// The task types every node runs without configuration.
pub const BUILTIN_TASK_TYPES: [&str; 2] = ["echo", "sleep"];

fn builtin_executor(task_type: &str) -> Option<ExecutorSpec> {
    match task_type {
        "echo" => Some(ExecutorSpec::Echo),
        "sleep" => Some(ExecutorSpec::Sleep),
        _ => None,
    }
}

fn default_executor_timeout_ms() -> u64 {
    30_000
}

/// A long answer streamed token by token takes minutes, not the seed's 30 s.
fn default_stream_timeout_ms() -> u64 {
    600_000
}

impl Settings {
    /// Parses and checks the text of `federation.toml`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let settings: Settings = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: SETTINGS_FILE.into(),
            message: one_line(text, &e),
        })?;
        settings.check()?;
        Ok(settings)
    }

    /// Checks values that parse but cannot work, one section at a time.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.timing.check()?;
        self.limits.check()?;
        self.ingress.check(&self.limits)?;
        self.selection.check()?;
        if self.psk.is_some() && self.psk_file.is_some() {
            return Err(ConfigError::invalid(
                SETTINGS_FILE,
                "psk",
                "set psk or psk_file, not both",
            ));
        }
        for (task_type, spec) in &self.executors {
            spec.check(&format!("executors.{task_type}"))?;
        }
        Ok(())
    }

    /// The executor for `task_type`: configured, else the built-ins `echo` and `sleep`.
    pub fn executor(&self, task_type: &str) -> Option<ExecutorSpec> {
        self.executors
            .get(task_type)
            .cloned()
            .or_else(|| builtin_executor(task_type))
    }

    /// Every task type this node runs: its configured executors and the built-ins.
    pub fn task_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.executors.keys().cloned().collect();
        for builtin in BUILTIN_TASK_TYPES {
            if !self.executors.contains_key(builtin) {
                types.push(builtin.to_string());
            }
        }
        types
    }

    /// Whether this node has an executor for `task_type`, without copying its spec (asked on
    /// every task for its metric label).
    pub fn runs(&self, task_type: &str) -> bool {
        self.executors.contains_key(task_type) || builtin_executor(task_type).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_seeds_defaults() {
        let s = Settings::parse("").unwrap();
        assert_eq!(s.timing.heartbeat_interval_ms, 10_000);
        assert_eq!(s.timing.misses_max, 3);
        assert_eq!(s.timing.window_s, 30);
        assert_eq!(s.timing.attempt_timeout_ms, 30_000);
        assert_eq!(s.selection.gpu_task_types, ["gpu_inference"]);
        assert_eq!(s.executor("echo"), Some(ExecutorSpec::Echo));
        assert_eq!(s.executor("chat"), None);
    }

    #[test]
    fn full_file_parses() {
        let s = Settings::parse(
            r#"
            psk_file = "psk"
            [timing]
            heartbeat_interval_ms = 500
            [auth]
            allowed_clients = ["127.0.0.0/8", "::1/128"]
            [selection]
            gpu_strict = true
            [executors.chat]
            kind = "http"
            url = "http://127.0.0.1:11434/api/generate"
            [executors.shell]
            kind = "command"
            program = "/bin/cat"
            "#,
        )
        .unwrap();
        assert_eq!(s.timing.heartbeat_interval_ms, 500);
        assert_eq!(s.auth.allowed_clients.len(), 2);
        assert!(matches!(
            s.executor("chat"),
            Some(ExecutorSpec::Http {
                timeout_ms: 30_000,
                ..
            })
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let e = |text: &str| Settings::parse(text).unwrap_err().to_string();
        assert!(e("[timing]\nheartbeat_interval_ms = 0").contains("timing.heartbeat_interval_ms"));
        assert!(e("[timing]\nheartbeat_intervall_ms = 5")
            .contains("unknown field `heartbeat_intervall_ms`"));
        assert!(e("[auth]\nallowed_clients = [\"10.0.0.0/33\"]").contains("allowed_clients"));
        assert!(e("[executors.x]\nkind = \"http\"\nurl = \"ftp://a\"").contains("executors.x"));
        assert!(e("[executors.x]\nkind = \"http\"\nurl = \"https://a/\"")
            .contains("https backends are not supported"));
        assert!(e("[executors.x]\nkind = \"http\"\nurl = \"http:///x\"")
            .contains("http://HOST:PORT/PATH"));
        assert!(e("[executors.x]\nkind = \"teleport\"").contains("teleport"));
        assert!(e("psk = \"a\"\npsk_file = \"b\"").contains("not both"));
        assert!(e("[timing]\naccept_timeout_ms = 40000").contains("accept_timeout_ms"));
        assert!(e("[limits]\nrequest_read_timeout_ms = 0").contains("request_read_timeout_ms"));
        assert!(
            e("[timing]\nheartbeat_interval_ms = 9223372036854775807\nmisses_max = 3")
                .contains("timing.heartbeat_interval_ms"),
            "a value whose product with misses_max overflows is refused"
        );
        assert!(e("[timing]\nprogress_misses_max = 4294967295").contains("progress_misses_max"));
        assert!(e("[limits]\nledger_bytes_max = 0").contains("ledger_bytes_max"));
        assert!(
            e("[limits]\nhttp_connections_max = 8\nhttp_connections_per_source_max = 9")
                .contains("http_connections_per_source_max")
        );
        assert!(e(
            "[executors.x]\nkind = \"command\"\nprogram = \"/bin/cat\"\nenv = {\"A=B\" = \"1\"}"
        )
        .contains("env name"));
    }

    #[test]
    fn the_ingress_and_openai_executors() {
        let s = Settings::parse(
            "[ingress]\nlisten = \"127.0.0.1:11434\"\n[executors.chat]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8080\"",
        )
        .unwrap();
        assert_eq!(s.ingress.listen, Some("127.0.0.1:11434".parse().unwrap()));
        assert_eq!(s.ingress.api_keys_file, PathBuf::from("api_keys"));
        assert_eq!(
            s.executor("chat"),
            Some(ExecutorSpec::Openai {
                base_url: "http://127.0.0.1:8080".into(),
                timeout_ms: 600_000,
                api: BackendApi::Auto,
            })
        );
        assert!(Settings::parse("").unwrap().ingress.listen.is_none());
        let declared = Settings::parse(
            "[executors.chat]\nkind = \"openai\"\nbase_url = \"http://a:1\"\napi = \"openai\"",
        )
        .unwrap();
        assert!(matches!(
            declared.executor("chat"),
            Some(ExecutorSpec::Openai {
                api: BackendApi::Openai,
                ..
            })
        ));
        let e = |text: &str| Settings::parse(text).unwrap_err().to_string();
        let unknown_api =
            e("[executors.chat]\nkind = \"openai\"\nbase_url = \"http://a:1\"\napi = \"grpc\"");
        assert!(unknown_api.contains("grpc"), "{unknown_api}");
        assert!(
            e("[executors.chat]\nkind = \"openai\"\nbase_url = \"http://a:1/\"")
                .contains("must not end with '/'")
        );
        assert!(
            e("[executors.chat]\nkind = \"openai\"\nbase_url = \"https://a:1\"")
                .contains("base_url")
        );
        assert!(e("[ingress]\nlisten = \"nowhere\"").contains("listen"));
        assert!(e("[ingress]\nbody_bytes_max = 2000000").contains("at most limits.body_bytes_max"));
        let follows = Settings::parse("[limits]\nbody_bytes_max = 3000000").unwrap();
        assert_eq!(follows.ingress.body_bytes_max(&follows.limits), 3_000_000);
        assert!(e("[ingress]\nfirst_byte_timeout_ms = 0").contains("ingress.first_byte_timeout_ms"));
        assert!(e("[ingress]\ntls_cert_file = \"c.pem\"").contains("tls_key_file together"));
    }
}

#[cfg(test)]
mod example_file {
    #[test]
    fn the_shipped_example_parses_to_the_defaults() {
        let text = include_str!("../../../config/federation.toml");
        let parsed = super::Settings::parse(text).unwrap();
        let defaults = super::Settings {
            psk_file: Some("psk".into()),
            ..super::Settings::default()
        };
        assert_eq!(parsed, defaults);
    }
}
