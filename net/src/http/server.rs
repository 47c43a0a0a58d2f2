//! The HTTP server loop: hyper directly rather than `axum::serve`, because an operator's node
//! must not be held by slow or hostile clients. In order, per connection:
//!
//! 1. a source that is neither a node nor an `allowed_clients` address is closed at accept,
//!    before it takes a connection slot;
//! 2. one source holds at most `http_connections_per_source_max` connections, so a single
//!    address cannot take every slot;
//! 3. at most `http_connections_max` connections are served at once (the rest wait in the
//!    kernel's backlog);
//! 4. each request must arrive whole, headers and body, within `request_read_timeout_ms` of
//!    when the connection became ready for it: accepted, or done writing the previous answer's
//!    last byte (see [`super::body`]). hyper starts its header timer when it begins reading the
//!    next head, so an idle keep-alive connection is closed after the same time.
//!
//! On shutdown, requests in progress may finish within the drain time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::body::{ClockedBody, RequestClock};
use super::front::Front;
use super::sources::SourceCounts;
use crate::metrics::refusal;
use crate::node::Node;

/// The client's address, as handlers extract it with `ConnectInfo<ClientAddr>`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Where connections come from: the OS's TCP in production, turmoil's in the simulator (which
/// wraps its listener in a type of its own and implements this).
pub trait Listener: Send + 'static {
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;

    fn accept(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Sends small answers at once (no Nagle delay); a transport without the option ignores it.
    fn no_delay(_stream: &Self::Stream) {}
}

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(Self::Stream, SocketAddr)> {
        TcpListener::accept(self).await
    }

    fn no_delay(stream: &Self::Stream) {
        let _ = stream.set_nodelay(true);
    }
}

/// Serves the API on `listener` until `node` shuts down; then waits (up to the drain time) for
/// requests in progress.
pub async fn serve<L: Listener>(node: Node, listener: L) -> std::io::Result<()> {
    let limits = node.config().settings.limits.clone();
    let drain = Duration::from_millis(node.config().settings.timing.drain_timeout_ms);
    let read_timeout = Duration::from_millis(limits.request_read_timeout_ms);
    let slots = Arc::new(Semaphore::new(limits.http_connections_max));
    let per_source = Arc::new(SourceCounts::new(limits.http_connections_per_source()));
    let front = Arc::new(Front::new(node.clone()));
    let graceful = GracefulShutdown::new();
    loop {
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
        if !node.shared.authenticator().source_allowed(from.ip()) {
            node.shared.refuse_connection(refusal::HTTP_UNKNOWN_ADDRESS, || {
                tracing::info!(%from, "closed a connection from an address that is no node's and not in allowed_clients")
            });
            continue;
        }
        let Some(source_slot) = per_source.take(from.ip()) else {
            node.shared.refuse_connection(refusal::HTTP_SOURCE_CONNECTIONS, || {
                tracing::info!(%from, "closed a connection: this address holds its share of connections")
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
        let service = hyper::service::service_fn({
            let front = front.clone();
            move |request| {
                let (front, clock) = (front.clone(), clock.clone());
                async move {
                    let response = front.answer(request, from, &clock).await;
                    // The next request on this connection gets a full read time from the
                    // answer's last byte.
                    Ok::<_, Infallible>(response.map(|body| ClockedBody::new(body, clock)))
                }
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%from, %error, "HTTP connection ended with an error");
            }
            drop(slot);
            drop(source_slot);
        });
    }
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    Ok(())
}
