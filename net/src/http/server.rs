//! The federation port's HTTP server: hyper directly rather than `axum::serve`, because an
//! operator's node must not be held by slow or hostile clients. Per connection, in order:
//!
//! 1. a source that is neither a node nor an `allowed_clients` address is closed at accept,
//!    before it takes a connection slot;
//! 2. one source holds at most `http_connections_per_source_max` connections, so a single
//!    address cannot take every slot;
//! 3. at most `http_connections_max` connections are served at once (the rest wait in the
//!    kernel's backlog) (these three are the accept loop's, shared with the AI door:
//!    [`super::accept`]);
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
use tokio::net::TcpListener;

use super::accept::{accept_loop, Gate, Refused, SourceRule};
use super::body::{ClockedBody, RequestClock};
use super::front::Front;
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
    let read_timeout = Duration::from_millis(limits.request_read_timeout_ms);
    let front = Arc::new(Front::new(node.clone()));
    let gate = Gate {
        connections_max: limits.http_connections_max,
        connections_per_source: limits.http_connections_per_source(),
        over_share: Refused {
            reason: refusal::HTTP_SOURCE_CONNECTIONS,
            line: "closed a connection: this address holds its share of connections",
        },
        sources: Some(SourceRule {
            admits: |node, ip| node.shared.authenticator().source_allowed(ip),
            refused: Refused {
                reason: refusal::HTTP_UNKNOWN_ADDRESS,
                line: "closed a connection from an address that is no node's and not in allowed_clients",
            },
        }),
    };
    accept_loop(&node, listener, gate, |stream, from, watcher| {
        let clock = RequestClock::new(read_timeout);
        let front = front.clone();
        let service = hyper::service::service_fn(move |request| {
            let (front, clock) = (front.clone(), clock.clone());
            async move {
                let response = front.answer(request, from, &clock).await;
                // The next request on this connection gets a full read time from the
                // answer's last byte.
                Ok::<_, Infallible>(response.map(|body| ClockedBody::new(body, clock)))
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = watcher.watch(connection);
        async move {
            if let Err(error) = connection.await {
                tracing::debug!(%from, %error, "HTTP connection ended with an error");
            }
        }
    })
    .await;
    Ok(())
}
