//! The seed's HTTP API (axum) on the node's `ip:port`, plus `/metrics`.
//!
//! Every `/v1/federation/*` request must carry the three signed headers; the body is limited
//! before it is read; errors are JSON `{"error": {"code", "message"}}` with a fitting status.

mod accept;
pub mod body;
mod control;
mod error;
mod front;
mod long_tasks;
mod routes;
mod server;
mod signed;
pub mod sources;
mod streamed;
mod task_answer;
mod usage;

pub use usage::is_day;

pub use accept::{accept_loop, Gate, Refused, SourceRule};
pub use error::ApiError;
pub use server::{serve, ClientAddr, Listener};
pub use streamed::{streamed_response, StreamedBody};
