//! The `http` executor's client: hyper's pooled HTTP/1 client, used directly.
//!
//! reqwest (used here before) re-parsed the URL, ran a redirect policy that formats the URI and
//! cloned a boxed middleware stack on every call: about a fifth of a node's CPU per task at
//! benchmark rates. A backend is a local inference server called with one POST, so none of that
//! is needed; what stays is pooling, a timeout over the whole exchange and a cap on the answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::dial::{Connector, Dial, CONNECT_TIMEOUT};

/// How long an unused pooled connection to a backend is kept.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call to a backend produced no answer.
#[derive(Debug)]
pub enum CallError {
    /// The backend could not be reached: nothing ran, so the task may run elsewhere.
    Unreachable(String),
    /// The answer was larger than the caller's limit.
    TooLarge,
    /// The request went out and then failed (timeout, reset, unreadable answer).
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::TooLarge => f.write_str("the answer is too large"),
            CallError::Failed(e) => f.write_str(e),
        }
    }
}

/// A pooled HTTP/1 client for executor backends; cheap to clone.
#[derive(Clone)]
pub struct HttpBackends {
    client: Transport,
}

/// The OS's TCP through hyper's own connector (production), or a [`Dial`] (the simulator).
#[derive(Clone)]
enum Transport {
    Os(Client<HttpConnector, Full<Bytes>>),
    Dialed(Client<Connector, Full<Bytes>>),
}

impl Transport {
    fn request(&self, request: Request<Full<Bytes>>) -> ResponseFuture {
        match self {
            Transport::Os(client) => client.request(request),
            Transport::Dialed(client) => client.request(request),
        }
    }
}

fn pooled() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT);
    builder
}

impl Default for HttpBackends {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        // Requests are small and answered at once: Nagle would only add delay.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        HttpBackends {
            client: Transport::Os(pooled().build(connector)),
        }
    }
}

impl HttpBackends {
    /// A client whose connections `dial` opens.
    pub fn with_dial(dial: Arc<dyn Dial>) -> Self {
        HttpBackends {
            client: Transport::Dialed(pooled().build(Connector(dial))),
        }
    }
}

impl HttpBackends {
    /// POSTs `json` to `url`; the status and at most `answer_bytes_max` bytes of the answer,
    /// all within `timeout`.
    pub async fn post_json(
        &self,
        url: &str,
        json: Vec<u8>,
        timeout: Duration,
        answer_bytes_max: usize,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| CallError::Unreachable(format!("not a valid URL: {e}")))?;
        let mut request = Request::new(Full::new(Bytes::from(json)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    CallError::Unreachable(error_chain(&e))
                } else {
                    CallError::Failed(error_chain(&e))
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), answer_bytes_max)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        CallError::TooLarge
                    } else {
                        CallError::Failed(format!("reading the answer: {e}"))
                    }
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| {
            CallError::Failed(format!("no answer within {} ms", timeout.as_millis()))
        })?
    }
}

impl HttpBackends {
    /// Sends one request and returns the answer as soon as its head is in; the body streams.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, CallError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| CallError::Unreachable(format!("not a valid URL: {e}")))?;
        let has_body = body.is_some();
        let mut request = Request::new(Full::new(body.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        if has_body {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                CallError::Unreachable(error_chain(&e))
            } else {
                CallError::Failed(error_chain(&e))
            }
        })
    }
}

/// An error and its causes on one line: hyper's top-level messages alone ("client error
/// (Connect)") do not say what happened.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
