//! The live web dashboard: one page, embedded in the binary (no build step, no CDN), that
//! polls `/ui/state` at the heartbeat pace and shows the federation as this node sees it.
//!
//! On the federation port it is served like `/metrics`: unsigned, to node addresses and
//! `allowed_clients` only (everyone else is closed at accept). On the ingress the page is
//! public but its state needs an API key, which the page takes from the URL fragment
//! (`/ui#key=tf-...`): a fragment never reaches a server log or a proxy.

mod journal;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use journal::{EventEntry, Journal, TaskEntry};

use crate::node::{status_json, Node};

const PAGE: &str = include_str!("page.html");

/// The page itself.
pub async fn page() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// Everything the page shows, in one answer: the seed's status, the feeds, and how often to
/// ask again.
pub fn state_json(node: &Node) -> serde_json::Value {
    let (tasks, events) = node.shared.journal.snapshot();
    let heartbeat_ms = node.config().settings.timing.heartbeat_interval_ms;
    json!({
        "node": node.id().as_str(),
        "poll_ms": heartbeat_ms.clamp(500, 2_000),
        "heartbeat_interval_ms": heartbeat_ms,
        "unix_s": node.shared.clock.unix_s(),
        "status": status_json(node),
        "tasks": tasks,
        "events": events,
    })
}
