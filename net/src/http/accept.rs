//! The accept loop both of a node's HTTP listeners run (the federation port's API and the AI
//! door), on the [`Listener`] seam, so the simulator drives both the same way. Per connection,
//! in order:
//!
//! 1. a source the listener does not admit is closed at accept, before it takes a slot;
//! 2. one source holds at most its share of connections, so a single address cannot take
//!    every slot;
//! 3. at most the listener's number of connections are served at once (the rest wait in the
//!    kernel's backlog).
//!
//! Each admitted connection is then served in a task of its own, which holds its two slots to
//! its end. On shutdown the loop stops accepting and waits up to the drain time for the
//! connections in progress.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::sync::Semaphore;

use super::sources::SourceCounts;
use super::Listener;
use crate::node::Node;

/// A listener's limits, and how it names its refusals.
pub struct Gate {
    pub connections_max: usize,
    pub connections_per_source: usize,
    /// A source over its share.
    pub over_share: Refused,
    /// Which sources may connect at all; `None` admits every source.
    pub sources: Option<SourceRule>,
}

/// A connection closed at accept: its metrics label (`refusal::*`) and the line logged for it.
#[derive(Clone, Copy)]
pub struct Refused {
    pub reason: &'static str,
    pub line: &'static str,
}

/// Whether a source may connect, and what its refusal is called.
#[derive(Clone, Copy)]
pub struct SourceRule {
    pub admits: fn(&Node, IpAddr) -> bool,
    pub refused: Refused,
}

impl Refused {
    fn count(self, node: &Node, from: SocketAddr) {
        let Refused { reason, line } = self;
        node.shared
            .refuse_connection(reason, || tracing::info!(%from, "{line}"));
    }
}

/// Accepts connections on `listener` until `node` stops, each served by `serve(stream, from,
/// watcher)`, which must run the connection under the watcher so that shutdown drains it.
pub async fn accept_loop<L, F, Served>(node: &Node, listener: L, gate: Gate, serve: F)
where
    L: Listener,
    F: Fn(L::Stream, SocketAddr, Watcher) -> Served,
    Served: Future<Output = ()> + Send + 'static,
{
    let drain = Duration::from_millis(node.config().settings.timing.drain_timeout_ms);
    let slots = Arc::new(Semaphore::new(gate.connections_max));
    let per_source = Arc::new(SourceCounts::new(gate.connections_per_source));
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
        if let Some(rule) = gate.sources {
            if !(rule.admits)(node, from.ip()) {
                rule.refused.count(node, from);
                continue;
            }
        }
        let Some(source_slot) = per_source.take(from.ip()) else {
            gate.over_share.count(node, from);
            continue;
        };
        let slot = tokio::select! {
            biased;
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = node.stopped() => break,
        };
        L::no_delay(&stream);
        let served = serve(stream, from, graceful.watcher());
        tokio::spawn(async move {
            served.await;
            drop((slot, source_slot));
        });
    }
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
}
