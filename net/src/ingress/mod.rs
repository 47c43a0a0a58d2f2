//! The client-facing door: OpenAI- and Ollama-compatible APIs on a listener of their own.
//!
//! Each request is checked (API key, body size, JSON, `model`) and becomes a federation task
//! (`chat` or `embeddings`) whose payload is `{"path", "body"}` with the client's body as it was
//! written. The federation routes it like any task (selection, failover, the retry budget); an
//! `openai` executor relays it to its backend, and the answer streams back chunk by chunk over
//! the task's QUIC stream. Failover ends with the answer's first byte; a stream that breaks
//! after that ends with an error event in the API's own shape, never a silent truncation. A
//! client that leaves cancels the task down to the backend request.

mod answer;
mod api;
mod error_code;
mod keys;
pub mod limits;
mod server;
mod shape;
mod sharing;
mod tls;

pub use api::{router, CHAT_TASK, EMBEDDINGS_TASK};

pub use keys::{load_api_keys, KeyCheck};
pub use limits::{Admitted, KeyLimits};
pub use server::serve;
pub use shape::{Dialect, Framing};
pub use tls::{acceptor as tls_acceptor, TlsError};
