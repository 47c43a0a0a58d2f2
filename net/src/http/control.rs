//! The operator's signed controls: reload this node's config, drain a node.
//!
//! Both go through the replay cache (they change something). A reload may only be asked by
//! the node itself (`triforce reload` on its own machine, signed as it); a drain by any node
//! of the federation (`triforce drain --target NAME`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::routes::{remember, signed};
use super::{ApiError, ClientAddr};
use crate::node::{Node, ReloadError};

/// A control request's signer, once its signature is checked and remembered (a control
/// changes something, so a replay is refused).
fn signed_once(
    node: &Node,
    from: ClientAddr,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<triforce_core::node::NodeId, ApiError> {
    let (_, request) = signed(node, headers, body, from.0)?;
    remember(node, &request, from.0)?;
    Ok(request.node)
}

pub async fn reload(
    State(node): State<Node>,
    ConnectInfo(from): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let signer = signed_once(&node, from, &headers, body)?;
    if signer != *node.id() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_this_node",
            format!(
                "only {} itself may reload its config (signed as {}); run `triforce reload` on its machine",
                node.id(),
                signer
            ),
        ));
    }
    match node.reload_from_files().await {
        Ok(summary) => Ok(Json(json!({
            "reloaded": true,
            "changes": summary.to_string(),
            "joined": summary.joined.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "left": summary.left.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))),
        Err(error) => {
            let code = match error {
                ReloadError::Load(_) => "config_invalid",
                ReloadError::NeedsRestart { .. } => "needs_restart",
            };
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                format!("reload refused, the running config is unchanged: {error}"),
            ))
        }
    }
}

pub async fn drain(
    State(node): State<Node>,
    ConnectInfo(from): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let signer = signed_once(&node, from, &headers, body)?;
    let already = node.is_draining();
    node.drain();
    tracing::warn!(asked_by = %signer, "draining: no new tasks; running ones finish");
    let load = node.shared.runner.load();
    Ok(Json(json!({
        "draining": true,
        "already_draining": already,
        "running": load.in_flight,
        "queued": load.queued,
    })))
}
