//! The ingress listener, the door that faces the internet. Per connection, in order:
//!
//! 1. one client address holds at most `ingress.connections_per_source_max` connections, so a
//!    single address (or a single key's client behind it) cannot take every slot;
//! 2. at most `ingress.connections_max` connections are served at once (the rest wait in the
//!    kernel's backlog) (these two are the accept loop the federation port's API runs too:
//!    `crate::http::accept_loop`);
//! 3. a TLS handshake must end within `limits.request_read_timeout_ms`, and so must each
//!    request, headers and body, counted from the connection's accept or from the last byte of
//!    the previous answer; hyper's header timer also starts when it waits for the next head,
//!    so an idle keep-alive connection is closed after that time.
//!
//! Requests in progress (streams included) get the drain time on shutdown.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::http::body::{ClockedBody, RequestClock};
use crate::http::{accept_loop, ClientAddr, Gate, Listener, Refused};
use crate::metrics::refusal;
use crate::node::Node;

/// Serves `app` (see [`super::router`]) on `listener` until `node` shuts down; over TLS when
/// `tls` is given (see [`super::tls_acceptor`]).
pub async fn serve<L: Listener>(
    node: Node,
    app: Router,
    listener: L,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let settings = node.config().settings.clone();
    let read_timeout = Duration::from_millis(settings.limits.request_read_timeout_ms);
    let gate = Gate {
        connections_max: settings.ingress.connections_max,
        connections_per_source: settings.ingress.connections_per_source(),
        over_share: Refused {
            reason: refusal::INGRESS_SOURCE_CONNECTIONS,
            line: "closed an ingress connection: this address holds its share of connections (ingress.connections_per_source_max)",
        },
        // The door faces the internet: every address may knock.
        sources: None,
    };
    accept_loop(&node, listener, gate, |stream, from, watcher| {
        let clock = RequestClock::new(read_timeout);
        let service = app
            .clone()
            .map_request({
                let clock = clock.clone();
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    let extensions = request.extensions_mut();
                    extensions.insert(clock.clone());
                    extensions.insert(axum::extract::ConnectInfo(ClientAddr(from)));
                    request
                }
            })
            .map_response(move |response: axum::response::Response| {
                response.map(|body| axum::body::Body::new(ClockedBody::new(body, clock.clone())))
            });
        let service = TowerToHyperService::new(service);
        let connection = Connection {
            from,
            read_timeout,
            watcher,
        };
        let tls = tls.clone();
        // The handshake runs in the connection's own task, within the read timeout, so a
        // client that stalls it holds only its own slot.
        async move {
            match tls {
                None => connection.serve(stream, service).await,
                Some(acceptor) => {
                    match tokio::time::timeout(read_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection.serve(stream, service).await,
                        Ok(Err(error)) => {
                            tracing::debug!(%from, %error, "ingress TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%from, "ingress TLS handshake timed out"),
                    }
                }
            }
        }
    })
    .await;
    Ok(())
}

/// One accepted connection, ready for its HTTP (after TLS, when there is TLS).
struct Connection {
    from: std::net::SocketAddr,
    read_timeout: Duration,
    watcher: Watcher,
}

impl Connection {
    async fn serve<S, Service>(self, stream: S, service: Service)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        Service: hyper::service::HttpService<hyper::body::Incoming> + Send,
        Service::Future: Send + 'static,
        Service::ResBody: Send + 'static,
        <Service::ResBody as hyper::body::Body>::Data: Send,
        <Service::ResBody as hyper::body::Body>::Error:
            Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let http = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        if let Err(error) = self.watcher.watch(http).await {
            tracing::debug!(from = %self.from, %error, "ingress connection ended with an error");
        }
    }
}
