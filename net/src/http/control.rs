//! The operator's signed controls: reload this node's config, drain a node, undo a drain.
//!
//! Each call's body names what it does (`{"action", "node", "nonce"}`, see
//! [`ControlRequest`]): the action must be the route's and the node this one, so a signature
//! made for anything else (a status poll, a drain of another node) does nothing here. Each goes
//! through the replay cache (it changes something). A reload may only be asked by the node
//! itself (`triforce reload` on its own machine, signed as it); a drain or its undoing by any
//! node of the federation (`triforce drain --target NAME [--undo]`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use triforce_core::auth::ControlRequest;

use super::signed::{remember, signed};
use super::{ApiError, ClientAddr};
use crate::node::{Node, ReloadError};

/// The signer of a control call asking for `action` on this node, once its signature is
/// checked, its body names that action and this node, and it is remembered (a replay is
/// refused).
fn signed_control(
    node: &Node,
    action: &str,
    from: ClientAddr,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<triforce_core::node::NodeId, ApiError> {
    let (body, request) = signed(node, headers, body, from.0)?;
    ControlRequest::parse(&body, action, node.id().as_str())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_control", e.to_string()))?;
    remember(node, &request, from.0)?;
    Ok(request.node)
}

pub async fn reload(
    State(node): State<Node>,
    ConnectInfo(from): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let signer = signed_control(&node, "reload", from, &headers, body)?;
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
                ReloadError::NeedsRestart(_) => "needs_restart",
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
    let signer = signed_control(&node, "drain", from, &headers, body)?;
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

/// Undoes a drain: the node takes tasks again, and its peers send it work from their next
/// heartbeat on. A node that is shutting down stays so (409).
pub async fn undrain(
    State(node): State<Node>,
    ConnectInfo(from): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let signer = signed_control(&node, "undrain", from, &headers, body)?;
    let was_draining = node.is_draining();
    if !node.undrain() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "shutting_down",
            format!(
                "{} is shutting down; only a restart brings it back",
                node.id()
            ),
        ));
    }
    tracing::warn!(asked_by = %signer, "drain undone: taking tasks again");
    Ok(Json(
        json!({"draining": false, "was_draining": was_draining}),
    ))
}
