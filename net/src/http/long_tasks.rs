//! Long tasks, their store and their routes. `POST /v1/federation/task` with `Prefer:
//! respond-async` answers 202 at once; the task runs on, and `GET /v1/federation/task/{id}`
//! gives its state or its answer, `DELETE` cancels it.
//!
//! The store is bounded three ways, so a client cannot grow a node's memory with answers it
//! never fetches: at most `limits.ledger_entries_max` tasks, at most
//! `limits.long_tasks_bytes_max` bytes (kept answers, plus the payloads of running tasks), and
//! an answer is dropped `limits.long_task_keep_ms` after its task ended. The oldest ended
//! tasks make room; running tasks are never dropped, so when they hold everything a new long
//! task is refused (503 with `Retry-After`) instead of accepted and lost.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use triforce_core::config::Limits;
use triforce_core::task::TaskRequest;

use triforce_core::auth::signed_payload;

use super::signed::{authenticate, remember};
use super::task_answer::answer_task;
use super::{ApiError, ClientAddr};
use crate::node::Node;

/// What became of a long task.
#[derive(Clone, Debug)]
pub enum LongTask {
    Running,
    /// Its answer, as the synchronous call would have given it.
    Done {
        status: u16,
        body: Bytes,
    },
    Cancelled,
}

enum Entry {
    Running {
        abort: AbortHandle,
        /// Bytes counted for it while it runs: its payload.
        reserved: usize,
    },
    Ended {
        task: LongTask,
        bytes: usize,
        at: Instant,
    },
}

/// Why a long task could not start.
#[derive(Debug, PartialEq, Eq)]
pub enum StartRefusal {
    /// The id is in use by another long task.
    Conflict,
    /// Running tasks hold every kept slot or byte.
    Full,
}

/// The store's bounds, from the running config's limits.
#[derive(Clone, Copy, Debug)]
pub struct LongTaskBounds {
    pub entries_max: usize,
    pub bytes_max: usize,
    pub keep: Duration,
}

impl LongTaskBounds {
    pub fn of(limits: &Limits) -> Self {
        LongTaskBounds {
            entries_max: limits.ledger_entries_max.max(1),
            bytes_max: limits.long_tasks_bytes_max,
            keep: Duration::from_millis(limits.long_task_keep_ms),
        }
    }
}

#[derive(Default)]
struct Store {
    entries: HashMap<String, Entry>,
    /// Ids in the order their tasks started.
    order: VecDeque<String>,
    /// Bytes of every entry: answers kept and payloads reserved.
    bytes: usize,
}

impl Store {
    /// Drops answers older than `keep`.
    fn expire(&mut self, now: Instant, keep: Duration) {
        let entries = &self.entries;
        let expired: Vec<usize> = self
            .order
            .iter()
            .enumerate()
            .filter(|(_, id)| {
                matches!(entries.get(*id), Some(Entry::Ended { at, .. }) if now.saturating_duration_since(*at) >= keep)
            })
            .map(|(at, _)| at)
            .collect();
        for at in expired.into_iter().rev() {
            self.remove_at(at);
        }
    }

    /// Drops the oldest ended task other than `keep_id`; false when there is none.
    fn evict_oldest_ended(&mut self, keep_id: Option<&str>) -> bool {
        let entries = &self.entries;
        let oldest = self.order.iter().position(|id| {
            Some(id.as_str()) != keep_id && matches!(entries.get(id), Some(Entry::Ended { .. }))
        });
        match oldest {
            Some(at) => {
                self.remove_at(at);
                true
            }
            None => false,
        }
    }

    fn remove_at(&mut self, at: usize) {
        let id = self.order.remove(at).expect("a position in range");
        if let Some(entry) = self.entries.remove(&id) {
            self.bytes -= match entry {
                Entry::Running { reserved, .. } => reserved,
                Entry::Ended { bytes, .. } => bytes,
            };
        }
    }
}

pub struct LongTasks {
    state: Mutex<Store>,
}

impl Default for LongTasks {
    fn default() -> Self {
        Self::new()
    }
}

impl LongTasks {
    pub fn new() -> Self {
        LongTasks {
            state: Mutex::new(Store::default()),
        }
    }

    /// Registers `id` as running, holding `reserved` bytes, cancelled through `abort`. The
    /// oldest ended tasks make room.
    pub fn start(
        &self,
        id: &str,
        reserved: usize,
        bounds: LongTaskBounds,
        now: Instant,
        abort: impl FnOnce() -> AbortHandle,
    ) -> Result<(), StartRefusal> {
        let mut store = self.state.lock().expect("long tasks lock");
        if store.entries.contains_key(id) {
            return Err(StartRefusal::Conflict);
        }
        store.expire(now, bounds.keep);
        while store.entries.len() >= bounds.entries_max || store.bytes + reserved > bounds.bytes_max
        {
            if !store.evict_oldest_ended(None) {
                return Err(StartRefusal::Full);
            }
        }
        let abort = abort();
        store
            .entries
            .insert(id.to_string(), Entry::Running { abort, reserved });
        store.order.push_back(id.to_string());
        store.bytes += reserved;
        Ok(())
    }

    /// The task's answer is in. Older ended tasks make room for it; if running tasks hold the
    /// rest, it is kept anyway (the store then exceeds its bound by at most this one answer),
    /// because an accepted task's answer must not vanish.
    pub fn finish(&self, id: &str, status: u16, body: Bytes, bounds: LongTaskBounds, now: Instant) {
        let mut store = self.state.lock().expect("long tasks lock");
        let reserved = match store.entries.get(id) {
            Some(Entry::Running { reserved, .. }) => *reserved,
            _ => return,
        };
        let bytes = body.len();
        store.bytes = store.bytes - reserved + bytes;
        store.entries.insert(
            id.to_string(),
            Entry::Ended {
                task: LongTask::Done { status, body },
                bytes,
                at: now,
            },
        );
        while store.bytes > bounds.bytes_max && store.evict_oldest_ended(Some(id)) {}
    }

    pub fn get(&self, id: &str, bounds: LongTaskBounds, now: Instant) -> Option<LongTask> {
        let mut store = self.state.lock().expect("long tasks lock");
        store.expire(now, bounds.keep);
        store.entries.get(id).map(|entry| match entry {
            Entry::Running { .. } => LongTask::Running,
            Entry::Ended { task, .. } => task.clone(),
        })
    }

    /// Cancels a running task (its future is dropped, which cancels it wherever it runs). The
    /// task's state after the call; `None` for an unknown id.
    pub fn cancel(&self, id: &str, now: Instant) -> Option<LongTask> {
        let mut store = self.state.lock().expect("long tasks lock");
        let entry = store.entries.get_mut(id)?;
        if let Entry::Running { abort, reserved } = entry {
            abort.abort();
            let reserved = *reserved;
            *entry = Entry::Ended {
                task: LongTask::Cancelled,
                bytes: 0,
                at: now,
            };
            store.bytes -= reserved;
        }
        match store.entries.get(id) {
            Some(Entry::Ended { task, .. }) => Some(task.clone()),
            _ => unreachable!("ended above"),
        }
    }

    /// Bytes held now (answers and reservations).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.state.lock().expect("long tasks lock").bytes
    }
}

// The routes.

/// Whether the client asked to be answered at once and to fetch the result later
/// (`Prefer: respond-async`, RFC 7240).
pub(super) fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == "respond-async"))
}

/// 202 with the task's URL; the task runs on in its own tokio task, its answer kept for
/// `GET /v1/federation/task/{id}`.
pub(super) fn start_long_task(
    node: Node,
    long_tasks: Arc<LongTasks>,
    task: TaskRequest,
) -> Result<Response, ApiError> {
    let task_id = task.task_id.clone();
    let location = format!("/v1/federation/task/{task_id}");
    let reserved = task.payload.get().len();
    let runner = {
        let (node, long_tasks, task_id) = (node.clone(), long_tasks.clone(), task_id.clone());
        async move {
            let response = answer_task(&node, task, false).await;
            let status = response.status().as_u16();
            let limits = node.config().settings.limits.clone();
            let body = axum::body::to_bytes(response.into_body(), limits.body_bytes_max + 65_536)
                .await
                .unwrap_or_default();
            let bounds = LongTaskBounds::of(&limits);
            long_tasks.finish(&task_id, status, body, bounds, Instant::now());
        }
    };
    // Registered before it runs, so a quick task cannot finish before it is known.
    let (start, go) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        if go.await.is_ok() {
            runner.await;
        }
    });
    let bounds = LongTaskBounds::of(&node.config().settings.limits);
    let started = long_tasks.start(&task_id, reserved, bounds, Instant::now(), || {
        handle.abort_handle()
    });
    let refusal = match started {
        Ok(()) => {
            let _ = start.send(());
            let body =
                serde_json::json!({"task_id": task_id, "status": "accepted", "location": location});
            let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
            let headers = response.headers_mut();
            headers.insert(
                "preference-applied",
                HeaderValue::from_static("respond-async"),
            );
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(axum::http::header::LOCATION, value);
            }
            return Ok(response);
        }
        Err(refusal) => refusal,
    };
    drop(start);
    Err(match refusal {
        StartRefusal::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "task_id_conflict",
            format!("a long task {task_id:?} is already known here"),
        ),
        StartRefusal::Full => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "long_tasks_full",
                "long tasks still running hold this node's whole store (limits.long_tasks_bytes_max, limits.ledger_entries_max); try again when they end",
            )
            .with_retry_after(5))
        }
    })
}

/// The signer of a long task's `GET` or `DELETE`, whose signature covers method and path (see
/// [`triforce_core::auth::signed_payload`]), with the body it signed.
async fn signed_target(
    node: &Node,
    request: axum::extract::Request,
    from: std::net::SocketAddr,
) -> Result<triforce_core::auth::Authenticated, ApiError> {
    let (parts, body) = request.into_parts();
    let body = body_bytes(body).await?;
    let payload = signed_payload(parts.method.as_str(), parts.uri.path(), &body);
    authenticate(node, &parts.headers, &payload, from)
}

/// `GET /v1/federation/task/{id}`: 202 `running`, the task's answer once it ended, or 200
/// `cancelled`. Signed over its method and path, and read-only, like status.
pub(super) async fn long_task_state(
    State(node): State<Node>,
    Extension(long_tasks): Extension<Arc<LongTasks>>,
    Path(task_id): Path<String>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    signed_target(&node, request, from).await?;
    let bounds = LongTaskBounds::of(&node.config().settings.limits);
    long_task_answer(&task_id, long_tasks.get(&task_id, bounds, Instant::now()))
}

/// `DELETE /v1/federation/task/{id}`: cancels a running task. Signed over its method, path and
/// body, and replay-checked (a client that cancels twice puts a nonce in the body).
pub(super) async fn long_task_cancel(
    State(node): State<Node>,
    Extension(long_tasks): Extension<Arc<LongTasks>>,
    Path(task_id): Path<String>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let signer = signed_target(&node, request, from).await?;
    remember(&node, &signer, from)?;
    long_task_answer(&task_id, long_tasks.cancel(&task_id, Instant::now()))
}

/// A body the middleware already read whole within its limit.
async fn body_bytes(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))
}

fn long_task_answer(task_id: &str, state: Option<LongTask>) -> Result<Response, ApiError> {
    let state = state.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_task",
            format!("no long task {task_id:?} here (never started, or its answer was dropped)"),
        )
    })?;
    Ok(match state {
        LongTask::Running => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"task_id": task_id, "status": "running"})),
        )
            .into_response(),
        LongTask::Cancelled => {
            Json(serde_json::json!({"task_id": task_id, "status": "cancelled"})).into_response()
        }
        LongTask::Done { status, body } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            [(CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(entries_max: usize, bytes_max: usize) -> LongTaskBounds {
        LongTaskBounds {
            entries_max,
            bytes_max,
            keep: Duration::from_secs(60),
        }
    }

    fn sleeper() -> AbortHandle {
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    #[tokio::test]
    async fn kept_bounded_running_never_evicted() {
        let tasks = LongTasks::new();
        let (b, now) = (bounds(2, 1000), Instant::now());
        assert_eq!(tasks.start("a", 10, b, now, sleeper), Ok(()));
        assert_eq!(
            tasks.start("a", 10, b, now, sleeper),
            Err(StartRefusal::Conflict)
        );
        assert_eq!(tasks.start("b", 10, b, now, sleeper), Ok(()));
        assert_eq!(
            tasks.start("c", 10, b, now, sleeper),
            Err(StartRefusal::Full)
        );
        tasks.finish("a", 200, Bytes::from_static(b"{}"), b, now);
        assert!(matches!(
            tasks.get("a", b, now),
            Some(LongTask::Done { status: 200, .. })
        ));
        // The ended one makes room.
        assert_eq!(tasks.start("c", 10, b, now, sleeper), Ok(()));
        assert!(tasks.get("a", b, now).is_none());
        assert!(matches!(tasks.cancel("b", now), Some(LongTask::Cancelled)));
        assert!(matches!(tasks.get("b", b, now), Some(LongTask::Cancelled)));
        assert!(tasks.cancel("zz", now).is_none());
    }

    #[tokio::test]
    async fn bytes_are_bounded_and_answers_expire() {
        let tasks = LongTasks::new();
        let (b, now) = (bounds(100, 1000), Instant::now());
        let answer = || Bytes::from(vec![b'x'; 400]);
        for id in ["a", "b"] {
            tasks.start(id, 100, b, now, sleeper).unwrap();
            tasks.finish(id, 200, answer(), b, now);
        }
        assert_eq!(tasks.bytes(), 800);
        // A third answer pushes out the oldest.
        tasks.start("c", 100, b, now, sleeper).unwrap();
        tasks.finish("c", 200, answer(), b, now);
        assert!(tasks.get("a", b, now).is_none());
        assert!(tasks.get("b", b, now).is_some() && tasks.bytes() <= 1000);
        // Running tasks that reserve the whole store refuse the next one.
        let running = LongTasks::new();
        running.start("r1", 600, b, now, sleeper).unwrap();
        assert_eq!(
            running.start("r2", 600, b, now, sleeper),
            Err(StartRefusal::Full)
        );
        // An answer is kept for `keep`, then dropped.
        let later = now + Duration::from_secs(61);
        assert!(tasks.get("c", b, later).is_none());
        assert_eq!(tasks.bytes(), 0);
    }
}
