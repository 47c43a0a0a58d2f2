//! The HTTP server loop: hyper directly rather than `axum::serve`, because an operator's node
//! must not be held by slow clients. It bounds connections served at once, gives each client
//! `request_read_timeout_ms` to send its headers (and, through the router, its body), and on
//! shutdown lets open requests finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use super::router;
use crate::node::Node;

/// The client's address, as handlers extract it with `ConnectInfo<ClientAddr>`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Serves the API on `listener` until `node` shuts down; then waits (up to the drain time) for
/// requests in progress.
pub async fn serve(node: Node, listener: TcpListener) -> std::io::Result<()> {
    let limits = node.config().settings.limits.clone();
    let drain = Duration::from_millis(node.config().settings.timing.drain_timeout_ms);
    let read_timeout = Duration::from_millis(limits.request_read_timeout_ms);
    let slots = Arc::new(Semaphore::new(limits.http_connections_max));
    let app = router(node.clone());
    let graceful = GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            // Polled in order: tokio would otherwise pick branches with an unseeded RNG, and one
            // seed must give one run in the simulator.
            biased;
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = node.stopped() => break,
        };
        let (stream, from) = tokio::select! {
            // Polled in order: tokio would otherwise pick branches with an unseeded RNG, and one
            // seed must give one run in the simulator.
            biased;
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and aborted handshakes are transient: back off briefly.
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = node.stopped() => break,
        };
        let _ = stream.set_nodelay(true);
        let service =
            app.clone()
                .map_request(move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request
                        .extensions_mut()
                        .insert(ConnectInfo(ClientAddr(from)));
                    request
                });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%from, %error, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    Ok(())
}
