//! Long tasks, their store and their routes. `POST /v1/federation/task` with `Prefer:
//! respond-async` answers 202 at once; the task runs on, and `GET /v1/federation/task/{id}`
//! gives its state or its answer, `DELETE` cancels it. Answers are kept for the last
//! `limits.ledger_entries_max` long tasks, oldest ended first out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tokio::task::AbortHandle;
use triforce_core::task::TaskRequest;

use super::routes::{answer_task, remember, signed};
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
    Running(AbortHandle),
    Ended(LongTask),
}

/// Why a long task could not start.
#[derive(Debug, PartialEq, Eq)]
pub enum StartRefusal {
    /// The id is in use by another long task.
    Conflict,
    /// Every kept slot is taken by tasks still running.
    Full,
}

pub struct LongTasks {
    max: usize,
    state: Mutex<(HashMap<String, Entry>, VecDeque<String>)>,
}

impl LongTasks {
    pub fn new(max: usize) -> Self {
        LongTasks {
            max: max.max(1),
            state: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Registers `id` as running, cancelled through `abort`. The oldest ended tasks make room.
    pub fn start(&self, id: &str, abort: impl FnOnce() -> AbortHandle) -> Result<(), StartRefusal> {
        let mut state = self.state.lock().expect("long tasks lock");
        let (entries, order) = &mut *state;
        if entries.contains_key(id) {
            return Err(StartRefusal::Conflict);
        }
        while entries.len() >= self.max {
            let ended = order
                .iter()
                .position(|old| matches!(entries.get(old), Some(Entry::Ended(_))));
            let Some(at) = ended else {
                return Err(StartRefusal::Full);
            };
            let old = order.remove(at).expect("a position in range");
            entries.remove(&old);
        }
        entries.insert(id.to_string(), Entry::Running(abort()));
        order.push_back(id.to_string());
        Ok(())
    }

    /// The task's answer is in.
    pub fn finish(&self, id: &str, status: u16, body: Bytes) {
        let mut state = self.state.lock().expect("long tasks lock");
        if let Some(entry) = state.0.get_mut(id) {
            if matches!(entry, Entry::Running(_)) {
                *entry = Entry::Ended(LongTask::Done { status, body });
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<LongTask> {
        let state = self.state.lock().expect("long tasks lock");
        state.0.get(id).map(|entry| match entry {
            Entry::Running(_) => LongTask::Running,
            Entry::Ended(ended) => ended.clone(),
        })
    }

    /// Cancels a running task (its future is dropped, which cancels it wherever it runs). The
    /// task's state after the call; `None` for an unknown id.
    pub fn cancel(&self, id: &str) -> Option<LongTask> {
        let mut state = self.state.lock().expect("long tasks lock");
        let entry = state.0.get_mut(id)?;
        if let Entry::Running(abort) = entry {
            abort.abort();
            *entry = Entry::Ended(LongTask::Cancelled);
        }
        match entry {
            Entry::Ended(ended) => Some(ended.clone()),
            Entry::Running(_) => unreachable!("replaced above"),
        }
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
    let runner = {
        let (node, long_tasks, task_id) = (node.clone(), long_tasks.clone(), task_id.clone());
        async move {
            let response = answer_task(&node, task, false).await;
            let status = response.status().as_u16();
            let limit = node.config().settings.limits.body_bytes_max + 65_536;
            let body = axum::body::to_bytes(response.into_body(), limit)
                .await
                .unwrap_or_default();
            long_tasks.finish(&task_id, status, body);
        }
    };
    // Registered before it runs, so a quick task cannot finish before it is known.
    let (start, go) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        if go.await.is_ok() {
            runner.await;
        }
    });
    let started = long_tasks.start(&task_id, || handle.abort_handle());
    let refusal = match started {
        Ok(()) => {
            let _ = start.send(());
            let body =
                serde_json::json!({"task_id": task_id, "status": "accepted", "location": location});
            let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
            let headers = response.headers_mut();
            headers.insert(
                "preference-applied",
                axum::http::HeaderValue::from_static("respond-async"),
            );
            if let Ok(value) = axum::http::HeaderValue::from_str(&location) {
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
        StartRefusal::Full => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "long_tasks_full",
            "every kept long task is still running (limits.ledger_entries_max)",
        ),
    })
}

/// `GET /v1/federation/task/{id}`: 202 `running`, the task's answer once it ended, or 200
/// `cancelled`. Signed and read-only, like status.
pub(super) async fn long_task_state(
    State(node): State<Node>,
    Extension(long_tasks): Extension<Arc<LongTasks>>,
    Path(task_id): Path<String>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    signed(&node, &headers, body, from)?;
    long_task_answer(&task_id, long_tasks.get(&task_id))
}

/// `DELETE /v1/federation/task/{id}` with body `{"task_id": id}` (so that two cancellations
/// are two different signed messages): cancels a running task. Signed and replay-checked.
pub(super) async fn long_task_cancel(
    State(node): State<Node>,
    Extension(long_tasks): Extension<Arc<LongTasks>>,
    Path(task_id): Path<String>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (body, request) = signed(&node, &headers, body, from)?;
    let named: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["task_id"].as_str().map(str::to_string));
    if named.as_deref() != Some(task_id.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_task",
            "a cancellation's body must be {\"task_id\": \"<the id in the path>\"}",
        ));
    }
    remember(&node, &request, from)?;
    long_task_answer(&task_id, long_tasks.cancel(&task_id))
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

    #[tokio::test]
    async fn kept_bounded_running_never_evicted() {
        let tasks = LongTasks::new(2);
        let sleeper = || tokio::spawn(std::future::pending::<()>()).abort_handle();
        assert_eq!(tasks.start("a", sleeper), Ok(()));
        assert_eq!(tasks.start("a", sleeper), Err(StartRefusal::Conflict));
        assert_eq!(tasks.start("b", sleeper), Ok(()));
        assert_eq!(tasks.start("c", sleeper), Err(StartRefusal::Full));
        tasks.finish("a", 200, Bytes::from_static(b"{}"));
        assert!(matches!(
            tasks.get("a"),
            Some(LongTask::Done { status: 200, .. })
        ));
        // The ended one makes room.
        assert_eq!(tasks.start("c", sleeper), Ok(()));
        assert!(tasks.get("a").is_none());
        assert!(matches!(tasks.cancel("b"), Some(LongTask::Cancelled)));
        assert!(matches!(tasks.get("b"), Some(LongTask::Cancelled)));
        assert!(tasks.cancel("zz").is_none());
    }
}
