//! The ingress listener, the door that faces the internet. Per connection, in order:
//!
//! 1. one client address holds at most `ingress.connections_per_source_max` connections, so a
//!    single address (or a single key's client behind it) cannot take every slot;
//! 2. at most `ingress.connections_max` connections are served at once (the rest wait in the
//!    kernel's backlog);
//! 3. a TLS handshake must end within `limits.request_read_timeout_ms`, and so must each
//!    request, headers and body, counted from the connection's accept or from the last byte of
//!    the previous answer; hyper's header timer also starts when it waits for the next head,
//!    so an idle keep-alive connection is closed after that time.
//!
//! Requests in progress (streams included) get the drain time on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::http::body::{ClockedBody, RequestClock};
use crate::http::sources::SourceCounts;
use crate::http::{ClientAddr, Listener};
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
    let drain = Duration::from_millis(settings.timing.drain_timeout_ms);
    let read_timeout = Duration::from_millis(settings.limits.request_read_timeout_ms);
    let slots = Arc::new(Semaphore::new(settings.ingress.connections_max));
    let per_source = Arc::new(SourceCounts::new(settings.ingress.connections_per_source()));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, from): (_, SocketAddr) = tokio::select! {
            biased;
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "ingress accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = node.stopped() => break,
        };
        let Some(source_slot) = per_source.take(from.ip()) else {
            node.shared
                .refuse_connection(refusal::INGRESS_SOURCE_CONNECTIONS, || {
                    tracing::info!(%from, "closed an ingress connection: this address holds its share of connections (ingress.connections_per_source_max)")
                });
            continue;
        };
        let slot = tokio::select! {
            biased;
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = node.stopped() => break,
        };
        L::no_delay(&stream);
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
        let http = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .clone();
        let service = TowerToHyperService::new(service);
        // The handshake runs in the connection's own task, within the read timeout, so a
        // client that stalls it holds only its own slot.
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let held = (slot, source_slot);
            let served = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(read_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%from, %error, "ingress TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%from, "ingress TLS handshake timed out");
                                return;
                            }
                        };
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%from, %error, "ingress connection ended with an error");
            }
            drop(held);
        });
    }
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    Ok(())
}
