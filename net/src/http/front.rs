//! What a connection's requests meet first. The task route, which every task crosses, goes
//! straight to its handler; every other route goes through axum's router.
//!
//! Why not the router for all: axum wraps each route in every layer (a boxed `Route` per
//! layer), and each request clones and boxes that stack again. On a node running tasks at
//! saturation (`bench/run.sh`, path (c')) the router and its layers made about 30 of the node's
//! 123 allocations per task, and going around them took the node's CPU per task from 152 to
//! 128 us, for a route that one comparison of method and path decides. The direct path reads
//! the body within the same limit and deadline ([`read_whole`]) and runs the same handler
//! ([`run_task`]). The router keeps the route too, so that other methods on it get their 405.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use tower::ServiceExt as _;

use super::body::{read_whole, BodyLimits, RequestClock};
use super::long_tasks::LongTasks;
use super::routes::{router, run_task};
use super::ClientAddr;
use crate::node::Node;

/// The path of the seed's task route.
const TASK_PATH: &str = "/v1/federation/task";

/// The API of one node, shared by its connections.
pub struct Front {
    node: Node,
    router: Router,
    long_tasks: Arc<LongTasks>,
    limits: BodyLimits,
}

impl Front {
    pub fn new(node: Node) -> Self {
        let limits = &node.config().settings.limits;
        let long_tasks = Arc::new(LongTasks::new());
        let limits = BodyLimits {
            bytes_max: limits.body_bytes_max,
        };
        Front {
            router: router(node.clone(), long_tasks.clone()),
            node,
            long_tasks,
            limits,
        }
    }

    /// The answer to `request`, which came from `from` on a connection whose current request
    /// must have arrived whole by `clock`'s deadline.
    pub async fn answer(
        &self,
        mut request: hyper::Request<Incoming>,
        from: SocketAddr,
        clock: &RequestClock,
    ) -> Response {
        if request.method() == Method::POST && request.uri().path() == TASK_PATH {
            let (parts, body) = request.into_parts();
            let body = match read_whole(&parts.headers, body, self.limits, clock.deadline()).await {
                Ok(body) => body,
                Err(refusal) => return refusal,
            };
            return run_task(&self.node, &self.long_tasks, from, &parts.headers, body)
                .await
                .unwrap_or_else(IntoResponse::into_response);
        }
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(ClientAddr(from)));
        extensions.insert(clock.clone());
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}
