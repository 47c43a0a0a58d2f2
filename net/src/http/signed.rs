//! The seed API's signed requests: the body within its limit, the signature checked outside
//! any lock, and the replay cache for the requests that change something.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use triforce_core::auth::{
    Authenticated, HeaderValue, Rejection, SignedRequest, HEADER_NODE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
};

use super::ApiError;
use crate::metrics::ReasonLabel;
use crate::node::Node;

/// A signed request's body, read within its limit, and its signer: every check but the replay
/// cache, outside any lock (the MAC runs over the whole body).
pub(super) fn signed(
    node: &Node,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    from: SocketAddr,
) -> Result<(Bytes, Authenticated), ApiError> {
    let body = body_or_error(body)?;
    let request = authenticate(node, headers, &body, from)?;
    Ok((body, request))
}

pub(super) fn authenticate(
    node: &Node,
    headers: &HeaderMap,
    body: &[u8],
    from: SocketAddr,
) -> Result<Authenticated, ApiError> {
    let value =
        |name: &str| HeaderValue::from_values(headers.get_all(name).iter().map(|v| v.as_bytes()));
    let request = SignedRequest {
        node: value(HEADER_NODE),
        timestamp: value(HEADER_TIMESTAMP),
        signature: value(HEADER_SIGNATURE),
        body,
        source: from.ip(),
    };
    let now = node.shared.clock.unix_s();
    node.shared
        .authenticator()
        .authenticate(&request, now)
        .map_err(|rejection| refused(node, from, &rejection))
}

/// Remembers an authenticated request that changes something; a second one with the same
/// signature inside the window is a replay. The only step under a lock, and a short one.
pub(super) fn remember(
    node: &Node,
    request: &Authenticated,
    from: SocketAddr,
) -> Result<(), ApiError> {
    let now = node.shared.clock.unix_s();
    let remembered = node
        .shared
        .auth
        .replay
        .lock()
        .expect("no code panics while holding the replay lock")
        .remember(request, now);
    remembered.map_err(|rejection| refused(node, from, &rejection))
}

/// Counts a refusal, logs it within the per-reason budget, and turns it into its answer.
pub(super) fn refused(node: &Node, from: SocketAddr, rejection: &Rejection) -> ApiError {
    node.metrics()
        .auth_rejections
        .get_or_create(&ReasonLabel {
            reason: rejection.code().into(),
        })
        .inc();
    node.shared.refusal(
        rejection.code(),
        || tracing::info!(%from, reason = rejection.code(), "refused a request: {rejection}"),
    );
    ApiError::from(rejection)
}

pub(super) fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(status, code, rejection.body_text())
    })
}
