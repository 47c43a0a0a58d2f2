//! The live web dashboard: one page, embedded in the binary (no build step, no CDN), that
//! polls `/ui/state` at the heartbeat pace and shows the federation as this node sees it.
//!
//! On the federation port it is served like `/metrics`: unsigned, to node addresses and
//! `allowed_clients` only (everyone else is closed at accept). On the ingress the page is
//! public but its state needs an API key, which the page takes from the URL fragment
//! (`/ui#key=tf-...`): a fragment never reaches a server log or a proxy.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
    let (tasks, events) = node.shared.telemetry.journal.snapshot();
    let heartbeat_ms = node.config().settings.timing.heartbeat_interval_ms;
    let unix_s = node.shared.clock.unix_s();
    json!({
        "node": node.id().as_str(),
        "poll_ms": heartbeat_ms.clamp(500, 2_000),
        "heartbeat_interval_ms": heartbeat_ms,
        "unix_s": unix_s,
        "status": status_json(node),
        "tasks": tasks,
        "events": events,
        "usage": usage_today(node, unix_s),
        // Relayed requests waiting here for a relay slot, per key (the fair share's queue).
        "relay_queue": node.shared.runner.relay_queue(),
    })
}

/// Today's use per key at this node's door (all models together), or `null` where the node
/// keeps no usage. A read of a few rows from the local database (after writing the counts in
/// memory), once per poll.
fn usage_today(node: &Node, unix_s: u64) -> serde_json::Value {
    let Some(meter) = node.shared.usage.get() else {
        return serde_json::Value::Null;
    };
    let day = crate::usage::day_of(unix_s);
    let filter = crate::usage::UsageFilter {
        key: None,
        since: Some(day.clone()),
    };
    let rows = match meter.rows(&filter) {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "the dashboard could not read today's usage");
            return serde_json::Value::Null;
        }
    };
    let mut keys: std::collections::BTreeMap<String, crate::usage::UsageRow> = Default::default();
    for row in rows {
        let total = keys.entry(row.key.clone()).or_default();
        total.add_counts(&row);
        total.key = row.key;
    }
    json!({"day": day, "keys": keys.into_values().collect::<Vec<_>>()})
}
