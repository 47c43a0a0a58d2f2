//! The executing side of a task: ledger, admission, execution, result.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::oneshot;
use triforce_core::admission::{admit, ExecutorKind};
use triforce_core::config::{ExecutorSpec, Settings};
use triforce_core::failover::{ErrorCode, RemoteError};
use triforce_core::federation::Capabilities;
use triforce_core::json::RawJson;
use triforce_core::ledger::{Begin, LedgerLimits, TaskLedger};
use triforce_core::membership::Load;
use triforce_core::relay::{Dialect, RelayHead, RESPONSES_PATH};
use triforce_core::task::TaskRequest;
use triforce_core::translate::{
    anthropic_to_chat, check_openai_for_ollama, ollama_to_openai, responses_to_chat,
    AnswerTranslator, AnthropicAnswer, OllamaAnswer, OllamaShape, Refusal, ResponsesAnswer,
};

use crate::metrics::{relay_outcome, BackendRequestLabels, KeyLabel, RunnerMetrics};

use super::{
    answer_channel, openai, openai::AnswerBody, openai::PumpEnd, openai::RelayError, run_executor,
    Admission, Backends, HttpBackends, Permit, RelayAnswer, Running, Scheduler, Share, SpokenApi,
    StreamHead, TaskResult,
};

/// What a relay sends its backend, and what its answer is translated into when the client's
/// API is not the backend's.
struct BackendRequest {
    path: String,
    body: Bytes,
    answer_as: Option<AnswerAs>,
}

/// The client's API an answer is translated into, with the model name it repeats.
enum AnswerAs {
    Ollama(OllamaShape, String),
    Responses(String),
    Anthropic(String),
}

impl AnswerAs {
    fn translator(self, status: u16, content_type: &str) -> AnswerTranslator {
        match self {
            AnswerAs::Ollama(shape, model) => {
                AnswerTranslator::Ollama(OllamaAnswer::new(shape, &model, status, content_type))
            }
            AnswerAs::Responses(model) => {
                AnswerTranslator::Responses(ResponsesAnswer::new(&model, status, content_type))
            }
            AnswerAs::Anthropic(model) => {
                AnswerTranslator::Anthropic(AnthropicAnswer::new(&model, status, content_type))
            }
        }
    }
}

/// Where a relay hands its answer (or why there is none) to the caller that started it.
type RelayAnswerSender = oneshot::Sender<Result<RelayAnswer, RemoteError>>;

/// How [`Runner::start`] took a task.
#[derive(Debug)]
pub enum Started {
    /// Accepted (running or queued, or joined a run of the same task id): the result follows.
    Accepted(Running),
    /// This task id already ran here: its result.
    AlreadyDone(TaskResult),
    /// Not taken; nothing ran.
    Refused(RemoteError),
}

/// Runs the tasks given to this node.
pub struct Runner {
    /// As of the last reload; a task reads it once at its start and keeps its executor.
    settings: ArcSwap<Settings>,
    scheduler: Arc<Scheduler>,
    /// Slots for relayed (`openai`) tasks: the backend does the work and queues on its own, so
    /// these do not take one of the node's `workers_max` (one per core), which would hold a
    /// 2-core node to two concurrent chat streams.
    relays: Arc<Scheduler>,
    ledger: Mutex<TaskLedger<TaskResult>>,
    waiters: Mutex<BTreeMap<String, Vec<oneshot::Sender<TaskResult>>>>,
    http: HttpBackends,
    /// The relaying executors' backends: health, models.
    backends: Backends,
    /// The process is stopping: for good.
    shutting_down: AtomicBool,
    /// An operator's drain (`triforce drain`): undone by `triforce drain --undo`.
    drained: AtomicBool,
    cores: u32,
    ram_gb: u32,
    gpu: bool,
    observer: Option<Arc<dyn crate::observer::Observer>>,
    /// How relayed requests ended, per backend, and how long they queued, per key (handles to
    /// the node's metrics).
    metrics: RunnerMetrics,
}

impl Runner {
    pub fn new(
        settings: Settings,
        cores: u32,
        ram_gb: u32,
        gpu: bool,
        http: HttpBackends,
        observer: Option<Arc<dyn crate::observer::Observer>>,
        metrics: RunnerMetrics,
    ) -> Arc<Self> {
        let workers = workers(settings.limits.workers_max, cores);
        let scheduler = Scheduler::new(workers, settings.limits.queue_len_max);
        let relays = Scheduler::new(settings.limits.relays_max, settings.limits.queue_len_max);
        let ledger = Mutex::new(TaskLedger::new(LedgerLimits {
            entries_max: settings.limits.ledger_entries_max,
            bytes_max: settings.limits.ledger_bytes_max,
        }));
        let backends = Backends::new(&settings, observer.clone());
        Arc::new(Runner {
            settings: ArcSwap::from_pointee(settings),
            scheduler,
            relays,
            ledger,
            waiters: Mutex::new(BTreeMap::new()),
            http,
            backends,
            shutting_down: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            cores,
            ram_gb,
            gpu,
            observer,
            metrics,
        })
    }

    fn count_relay(&self, task_type: &str, outcome: &str) {
        self.metrics
            .backend_requests
            .get_or_create(&BackendRequestLabels {
                task_type: task_type.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Takes `task` for execution here. Never blocks; the result comes through the receiver.
    pub fn start(self: &Arc<Self>, task: TaskRequest) -> Started {
        if self.is_draining() {
            return Started::Refused(RemoteError::new(
                ErrorCode::ShuttingDown,
                "node is draining or shutting down",
            ));
        }
        let digest = task.digest();
        let mut ledger = self.ledger.lock().expect("ledger lock");
        match ledger.begin(&task.task_id, digest) {
            Begin::Done(result) => return Started::AlreadyDone(result),
            Begin::Join => return Started::Accepted(Running::joined(self.wait_for(&task.task_id))),
            Begin::Conflict => {
                return Started::Refused(RemoteError::new(
                    ErrorCode::TaskIdConflict,
                    format!(
                        "task id {:?} is already in use here for another type or payload",
                        task.task_id
                    ),
                ))
            }
            Begin::Full => {
                return Started::Refused(RemoteError::new(
                    ErrorCode::Busy,
                    "too many tasks in progress",
                ))
            }
            Begin::Start => {}
        }
        let settings = self.settings.load_full();
        let spec = settings.executor(&task.task_type);
        let kind = spec.as_ref().map(|spec| match spec {
            ExecutorSpec::Openai { .. } => ExecutorKind::Relay,
            _ => ExecutorKind::Local,
        });
        if let Err(refusal) = admit(&self.backends.published(), kind, &task) {
            ledger.forget(&task.task_id);
            let relay_without_model = kind == Some(ExecutorKind::Relay)
                && refusal.code == ErrorCode::NoExecutor
                && task.model().is_some();
            if relay_without_model {
                self.count_relay(&task.task_type, relay_outcome::NO_MODEL);
            }
            return Started::Refused(refusal);
        }
        let spec = spec.expect("admitted: the type has an executor");
        let slots = match spec {
            ExecutorSpec::Openai { .. } => &self.relays,
            _ => &self.scheduler,
        };
        // A relayed request waits in the relays' queue with its key's fair share.
        let share = task.relay.as_ref().map_or(Share::NONE, Share::of);
        let admission = slots.admit(task.priority, share);
        if matches!(admission, Admission::Busy) {
            ledger.forget(&task.task_id);
            return Started::Refused(RemoteError::new(ErrorCode::Busy, "queue is full"));
        }
        drop(ledger);
        if let (
            ExecutorSpec::Openai {
                base_url,
                timeout_ms,
                ..
            },
            Some(relay),
        ) = (&spec, task.relay.clone())
        {
            let queued = self.queued(&admission, share);
            let timeout = Duration::from_millis(*timeout_ms);
            return self.spawn_relay(task, relay, base_url.clone(), timeout, admission, queued);
        }
        let runner = self.clone();
        let slots = slots.clone();
        Started::Accepted(Running::here(Box::pin(async move {
            let _permit = slot(admission, &slots).await;
            runner.executing(&task);
            let result_bytes_max = settings.limits.body_bytes_max;
            let result = run_executor(&spec, &task.payload, &runner.http, result_bytes_max).await;
            runner.finish(&task.task_id, &result);
            result
        })))
    }

    /// Starts a relayed task in a task of its own: its answer's body streams on after its head
    /// is out, while it holds its relay slot; head and body go to the caller that started it.
    fn spawn_relay(
        self: &Arc<Self>,
        task: TaskRequest,
        relay: RelayHead,
        base_url: String,
        timeout: Duration,
        admission: Admission,
        queued: Option<(KeyLabel, tokio::time::Instant)>,
    ) -> Started {
        let (mut answer_to, answer) = oneshot::channel();
        let runner = self.clone();
        tokio::spawn(async move {
            let permit = slot_unless_left(admission, &runner.relays, answer_to.closed()).await;
            if let Some((key, since)) = queued {
                runner.served_from_queue(&key, since);
            }
            let Some(_permit) = permit else {
                runner.relay_cancelled(&task, answer_to);
                return;
            };
            runner.executing(&task);
            // Boxed, as each executor kind is (see `run_executor`): the relay's future is
            // large, and this spawned one stays small to move.
            Box::pin(runner.relay(&task, &relay, &base_url, timeout, answer_to)).await;
        });
        Started::Accepted(Running::relay(answer))
    }

    /// A relayed request that waits for a slot: counted as waiting for its key, from now.
    fn queued(
        &self,
        admission: &Admission,
        share: Share<'_>,
    ) -> Option<(KeyLabel, tokio::time::Instant)> {
        if !matches!(admission, Admission::Queued(_)) {
            return None;
        }
        let key = KeyLabel {
            key: match share.key {
                "" => "-".to_string(),
                key => key.to_string(),
            },
        };
        self.metrics.relay_queue_waiting.get_or_create(&key).inc();
        Some((key, tokio::time::Instant::now()))
    }

    /// A queued relayed request got its slot.
    fn served_from_queue(&self, key: &KeyLabel, since: tokio::time::Instant) {
        self.metrics.relay_queue_waiting.get_or_create(key).dec();
        self.metrics
            .relay_queue_wait_seconds
            .get_or_create(key)
            .observe(since.elapsed().as_secs_f64());
    }

    fn executing(&self, task: &TaskRequest) {
        if let Some(observer) = &self.observer {
            observer.executed(&task.task_id, &task.task_type);
        }
    }

    /// Runs a relayed task: hands its answer's head and body to the caller that started it
    /// (`answer_to`), then streams the body while this task holds its slot. Dropping the
    /// request (its caller left) closes its connection: the backend stops generating.
    async fn relay(
        &self,
        task: &TaskRequest,
        relay: &RelayHead,
        base_url: &str,
        timeout: Duration,
        mut answer_to: RelayAnswerSender,
    ) {
        // While it runs (stream included), the backend is not probed: see `Backends`.
        let _in_flight = self.backends.relay_started(base_url);
        let task_id = task.task_id.as_str();
        let deadline = tokio::time::Instant::now() + timeout;
        let BackendRequest {
            path,
            body,
            answer_as,
        } = match self.translated(relay, base_url, &task.payload) {
            Ok(request) => request,
            Err(refusal) => {
                self.count_relay(&task.task_type, relay_outcome::FAILED);
                self.finish(
                    task_id,
                    &Err(RemoteError::new(
                        ErrorCode::ExecutorFailed,
                        refusal.to_string(),
                    )),
                );
                let _ = answer_to.send(Ok(refused(relay.dialect, &refusal)));
                return;
            }
        };
        let opened = tokio::select! {
            // Polled in order (tokio's default picks at random, unseeded): a request whose
            // client already left is not sent on.
            biased;
            () = answer_to.closed() => return self.relay_cancelled(task, answer_to),
            opened = openai::open(base_url, &path, body, &self.http, timeout) => opened,
        };
        let (head, body) = match opened {
            Ok(opened) => opened,
            Err(failure) => return self.relay_failed(task, base_url, failure, answer_to),
        };
        self.backends.handle_answered(base_url);
        self.count_relay(&task.task_type, relay_outcome::ANSWERED);
        // The answer goes to its caller alone: a later run of the same id (a retry that
        // reached this node again) learns that it ran, not its body.
        self.finish(
            task_id,
            &Err(RemoteError::new(
                ErrorCode::ExecutorFailed,
                "the backend's answer went to an earlier attempt of this task",
            )),
        );
        self.deliver(task, head, body, answer_as, answer_to, deadline)
            .await;
    }

    /// Hands a relay's answer to its caller, translated when the client's API is not the
    /// backend's, then streams its body until it ends, `deadline` passes, or the reader leaves.
    async fn deliver(
        &self,
        task: &TaskRequest,
        mut head: StreamHead,
        body: AnswerBody,
        answer_as: Option<AnswerAs>,
        answer_to: RelayAnswerSender,
        deadline: tokio::time::Instant,
    ) {
        let (chunks, stream) = answer_channel();
        let mut translation =
            answer_as.map(|answer_as| answer_as.translator(head.status, &head.content_type));
        if let Some(translation) = &translation {
            head.content_type = translation.content_type().to_string();
        }
        // A whole answer is in the channel before its head is out, so the reader finds head,
        // body and end together.
        let streaming = match body {
            AnswerBody::Whole(body) => {
                let body = match translation.take() {
                    Some(mut translation) => {
                        let mut translated = translation.feed(&body);
                        translated.extend(translation.finish());
                        head.length = Some(translated.len() as u64);
                        translated.into()
                    }
                    None => body,
                };
                openai::send_whole(body, &chunks);
                None
            }
            AnswerBody::Streaming(body) => Some(body),
        };
        let answer = RelayAnswer { head, body: stream };
        if answer_to.send(Ok(answer)).is_err() {
            self.count_relay(&task.task_type, relay_outcome::CANCELLED);
            return;
        }
        if let Some(body) = streaming {
            if openai::pump(body, chunks, deadline, translation).await == PumpEnd::Truncated {
                self.count_relay(&task.task_type, relay_outcome::TRUNCATED);
            }
        }
    }

    /// A relay that got no answer to pass on: counted, the backend marked as the failure says,
    /// and the error handed to the caller.
    fn relay_failed(
        &self,
        task: &TaskRequest,
        base_url: &str,
        RelayError { error, cause }: RelayError,
        answer_to: RelayAnswerSender,
    ) {
        if error.code == ErrorCode::ExecutorUnavailable {
            self.count_relay(&task.task_type, relay_outcome::UNAVAILABLE);
        } else {
            self.count_relay(&task.task_type, relay_outcome::FAILED);
        }
        self.backends
            .handle_relay_failure(base_url, cause, &error.message);
        self.finish(&task.task_id, &Err(error.clone()));
        let _ = answer_to.send(Err(error));
    }

    /// The path and body a relayed request is sent to its backend with, and, when the client's
    /// API is not the backend's, what its answer must be translated into (an Ollama client
    /// before a backend that speaks OpenAI's API only). Same API: the body as written.
    fn translated(
        &self,
        relay: &RelayHead,
        base_url: &str,
        body: &RawJson,
    ) -> Result<BackendRequest, Refusal> {
        if relay.dialect == Dialect::Anthropic {
            let request = anthropic_to_chat(body.as_bytes())?;
            return Ok(BackendRequest {
                path: "/v1/chat/completions".to_string(),
                body: request.body.into(),
                answer_as: Some(AnswerAs::Anthropic(request.model)),
            });
        }
        if relay.path == RESPONSES_PATH {
            let request = responses_to_chat(body.as_bytes())?;
            return Ok(BackendRequest {
                path: "/v1/chat/completions".to_string(),
                body: request.body.into(),
                answer_as: Some(AnswerAs::Responses(request.model)),
            });
        }
        let spoken = self.backends.spoken_api(base_url);
        if relay.dialect == Dialect::Ollama && spoken == Some(SpokenApi::OpenAiOnly) {
            let request = ollama_to_openai(&relay.path, body.as_bytes())?;
            return Ok(BackendRequest {
                path: request.path.to_string(),
                body: request.body.into(),
                answer_as: Some(AnswerAs::Ollama(request.shape, request.model)),
            });
        }
        if relay.dialect == Dialect::OpenAi && spoken == Some(SpokenApi::Ollama) {
            check_openai_for_ollama(body.as_bytes())?;
        }
        Ok(BackendRequest {
            path: relay.path.clone(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            answer_as: None,
        })
    }

    /// A relayed task whose caller went away before its answer began (queued, or waiting for
    /// the backend's head): nothing more is done for it.
    fn relay_cancelled(&self, task: &TaskRequest, answer_to: RelayAnswerSender) {
        self.count_relay(&task.task_type, relay_outcome::CANCELLED);
        let error = RemoteError::new(
            ErrorCode::ExecutorFailed,
            "cancelled: no one waits for the answer any more",
        );
        self.finish(&task.task_id, &Err(error.clone()));
        let _ = answer_to.send(Err(error));
    }

    fn wait_for(&self, task_id: &str) -> oneshot::Receiver<TaskResult> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("waiters lock")
            .entry(task_id.to_string())
            .or_default()
            .push(tx);
        rx
    }

    /// Keeps `result` in the ledger and hands it to every waiter.
    fn finish(&self, task_id: &str, result: &TaskResult) {
        // What a kept result costs: its bytes (an error's message), plus the id it is kept under.
        let bytes = task_id.len()
            + match result {
                Ok(value) => value.len(),
                Err(error) => error.message.len(),
            };
        self.ledger
            .lock()
            .expect("ledger lock")
            .finish(task_id, result.clone(), bytes);
        let waiters = self.waiters.lock().expect("waiters lock").remove(task_id);
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(result.clone());
        }
    }

    /// Relayed requests waiting for a relay slot here, per key (`""`: tasks that name none).
    pub fn relay_queue(&self) -> std::collections::BTreeMap<String, usize> {
        self.relays.waiting_by_key()
    }

    /// The relaying executors' backends.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// What this node can run now, and whether it is draining.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            draining: self.is_draining(),
            ..self.backends.capabilities()
        }
    }

    /// Probes the backends every `interval` until dropped (a reload may add some to a node
    /// that had none).
    pub async fn probe_backends(&self, interval: std::time::Duration) {
        self.backends.probe_forever(&self.http, interval).await;
    }

    /// A reload's settings: executors and limits for tasks that start from now on; running
    /// ones keep theirs.
    pub fn reconfigure(&self, settings: Settings) {
        let limits = &settings.limits;
        self.scheduler.resize(
            workers(limits.workers_max, self.cores),
            limits.queue_len_max,
        );
        self.relays.resize(limits.relays_max, limits.queue_len_max);
        self.backends.reconfigure(&settings);
        self.settings.store(Arc::new(settings));
    }

    /// This node's load, as reported in heartbeat answers.
    pub fn load(&self) -> Load {
        let (running, queued) = self.scheduler.load();
        let (relaying, relays_queued) = self.relays.load();
        let (running, queued) = (running + relaying, queued + relays_queued);
        Load {
            in_flight: running as u32,
            queued: queued as u32,
            cores: self.cores,
            ram_gb: self.ram_gb,
            gpu: self.gpu,
        }
    }

    /// Refuses new tasks from now on, for good (the process stops); running and queued ones go
    /// on. Peers learn it from the next heartbeat answer (the capabilities say draining) and
    /// send no more.
    pub fn stop_accepting(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.backends.changed.notify_one();
    }

    /// An operator's drain (`on`) or its undoing: like [`Self::stop_accepting`], but the node
    /// stays up and may take tasks again. A process that is stopping stays stopping.
    pub fn set_drained(&self, on: bool) {
        self.drained.store(on, Ordering::SeqCst);
        self.backends.changed.notify_one();
    }

    pub fn is_draining(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst) || self.drained.load(Ordering::SeqCst)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Waits until no task is running or queued, or `limit` passes. True when idle.
    pub async fn drain(&self, limit: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            if self.scheduler.load() == (0, 0) && self.relays.load() == (0, 0) {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The answer to a request its backend's API cannot carry (see [`Refusal`]): 400 in the
/// client's API's shape, naming the field, as the backend's own answer would.
fn refused(dialect: Dialect, refusal: &Refusal) -> RelayAnswer {
    let body = match dialect {
        Dialect::Ollama => serde_json::json!({ "error": refusal.to_string() }),
        Dialect::OpenAi => serde_json::json!({ "error": {"message": refusal.to_string(),
            "type": "invalid_request_error", "param": refusal.field, "code": "unsupported_field"} }),
        Dialect::Anthropic => serde_json::json!({ "type": "error",
            "error": {"type": "invalid_request_error", "message": refusal.to_string()} }),
    }
    .to_string();
    let (chunks, stream) = answer_channel();
    let head = StreamHead {
        status: 400,
        content_type: "application/json".to_string(),
        length: Some(body.len() as u64),
    };
    openai::send_whole(body.into(), &chunks);
    RelayAnswer { head, body: stream }
}

/// Waits for the relay slot `admission` promised, unless `left` (the caller went away) comes
/// first: then `None`, and a slot handed over meanwhile goes on to the next in the queue.
async fn slot_unless_left(
    admission: Admission,
    slots: &Arc<Scheduler>,
    left: impl std::future::Future<Output = ()>,
) -> Option<Permit> {
    let mut woken = match admission {
        Admission::Now(permit) => return Some(permit),
        Admission::Queued(woken) => woken,
        Admission::Busy => unreachable!("a refused task does not run"),
    };
    tokio::select! {
        biased;
        _ = &mut woken => Some(slots.permit_for_woken()),
        () = left => {
            // No slot can be handed over from now on; one handed over already is passed on.
            woken.close();
            if woken.try_recv().is_ok() {
                drop(slots.permit_for_woken());
            }
            None
        }
    }
}

/// Waits for the worker slot `admission` promised.
async fn slot(admission: Admission, slots: &Arc<Scheduler>) -> Permit {
    match admission {
        Admission::Now(permit) => permit,
        Admission::Queued(woken) => {
            // The sender lives in the scheduler until a slot is handed over.
            let _ = woken.await;
            slots.permit_for_woken()
        }
        Admission::Busy => unreachable!("a refused task does not run"),
    }
}

/// Worker slots for `workers_max` (0: one per core).
fn workers(workers_max: usize, cores: u32) -> usize {
    match workers_max {
        0 => cores.max(1) as usize,
        n => n,
    }
}
