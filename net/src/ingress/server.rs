//! The ingress listener: at most `ingress.connections_max` connections, each request read
//! within `limits.request_read_timeout_ms`, and requests in progress (streams included) given
//! the drain time on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::http::body::RequestClock;
use crate::node::Node;

/// Serves `app` (see [`super::router`]) on `listener` until `node` shuts down; over TLS when
/// `tls` is given (see [`super::tls_acceptor`]).
pub async fn serve(
    node: Node,
    app: Router,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let settings = node.config().settings.clone();
    let drain = Duration::from_millis(settings.timing.drain_timeout_ms);
    let read_timeout = Duration::from_millis(settings.limits.request_read_timeout_ms);
    let slots = Arc::new(Semaphore::new(settings.ingress.connections_max));
    let graceful = GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            biased;
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = node.stopped() => break,
        };
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
        let _ = stream.set_nodelay(true);
        let clock = RequestClock::new(read_timeout);
        let service = app
            .clone()
            .map_request({
                let clock = clock.clone();
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request.extensions_mut().insert(clock.clone());
                    request
                }
            })
            .map_response(move |response| {
                clock.restart();
                response
            });
        let http = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .clone();
        let service = TowerToHyperService::new(service);
        match tls.clone() {
            None => {
                let connection =
                    graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%from, %error, "ingress connection ended with an error");
                    }
                    drop(slot);
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's own task, within the read timeout, so
                // a client that stalls it holds only its own slot.
                let watcher = graceful.watcher();
                tokio::spawn(async move {
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
                    let connection =
                        watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                    if let Err(error) = connection.await {
                        tracing::debug!(%from, %error, "ingress connection ended with an error");
                    }
                    drop(slot);
                });
            }
        }
    }
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    Ok(())
}
