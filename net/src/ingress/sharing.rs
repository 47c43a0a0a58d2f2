//! What sharing the door adds to a relayed request: the key's cap on completion tokens, its
//! limits (in flight, tokens per minute, budgets), and the count of what it used.

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::Response;
use triforce_core::config::ApiKey;
use triforce_core::door::{with_member, with_num_predict, DoorFields};
use triforce_core::relay::RESPONSES_PATH;
use triforce_core::usage::Framing;

use super::limits::{Admitted, KeyLimits};
use super::shape::{Dialect, DoorCode, IngressError};
use crate::usage::{Account, MeteredBody, Spent, UsageMeter};

/// `body` under `key`'s cap on completion tokens (`max_tokens`): a request asking for more is
/// refused, naming the cap; one asking for none is given the cap (OpenAI's `max_tokens`,
/// Ollama's `options.num_predict`), so the cap bounds every answer. Embeddings have no
/// completion to cap.
pub(super) fn capped<'a>(
    api: Dialect,
    path: &str,
    chat: bool,
    key: &ApiKey,
    fields: &DoorFields,
    body: &'a [u8],
) -> Result<Cow<'a, [u8]>, IngressError> {
    let cap = u64::from(key.max_tokens);
    if cap == 0 || !chat {
        return Ok(Cow::Borrowed(body));
    }
    if let Some(asked) = fields.max_tokens {
        if asked <= cap {
            return Ok(Cow::Borrowed(body));
        }
        let asked = match asked {
            u64::MAX => "no limit".to_string(),
            n => n.to_string(),
        };
        return Err(IngressError::new(
            api,
            StatusCode::BAD_REQUEST,
            DoorCode::MaxTokensOverCap,
            format!(
                "key {:?} may ask for at most {cap} completion tokens per request; this one asks for {asked}",
                key.name
            ),
        ));
    }
    let capped = match api {
        Dialect::OpenAi if path == RESPONSES_PATH => {
            with_member(body, &format!("\"max_output_tokens\":{cap}"))
        }
        Dialect::OpenAi | Dialect::Anthropic => with_member(body, &format!("\"max_tokens\":{cap}")),
        Dialect::Ollama if fields.options => with_num_predict(body, cap),
        Dialect::Ollama => with_member(body, &format!("\"options\":{{\"num_predict\":{cap}}}")),
    };
    Ok(capped.map_or(Cow::Borrowed(body), Cow::Owned))
}

/// Admits a request of `key` under its limits; its spending so far comes from `usage` when it
/// has a budget.
pub(super) fn admit(
    limits: &Arc<KeyLimits>,
    usage: Option<&Arc<UsageMeter>>,
    api: Dialect,
    key: &ApiKey,
    unix_s: u64,
) -> Result<Admitted, IngressError> {
    let spent = match usage {
        Some(meter) if key.has_budget() => meter.spent(&key.name, unix_s).map_err(|error| {
            tracing::warn!(%error, key = %key.name, "cannot read what the key spent");
            IngressError::new(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                DoorCode::UsageUnavailable,
                "the door cannot read this key's budget now; try again shortly",
            )
            .with_retry_after(5)
        })?,
        _ => Spent::default(),
    };
    limits.admit(api, key, spent, unix_s)
}

/// `answered`, counted to `account` (an error at once, an answer when its body has passed)
/// and held in flight by `admitted` until its body has passed, which also charges the tokens
/// to the key's minute. `asked_for_usage`: the door added `stream_options`, so the event it
/// asked for is taken out of the stream.
pub(super) fn metered(
    answered: Result<Response, IngressError>,
    account: Option<Account>,
    admitted: Admitted,
    asked_for_usage: bool,
) -> Result<Response, IngressError> {
    let response = answered.inspect_err(|_| {
        if let Some(account) = &account {
            account.failed();
        }
    })?;
    if account.is_none() && !admitted.watches_the_answer() && !asked_for_usage {
        return Ok(response);
    }
    let framing = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or(Framing::Whole, Framing::of);
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = MeteredBody::new(body, framing, status, account, asked_for_usage)
        .holding(Box::new(admitted));
    Ok(Response::from_parts(parts, axum::body::Body::new(body)))
}
