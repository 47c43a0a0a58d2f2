//! Running tasks on this node: executors per task type, a bounded priority queue in front of a
//! fixed number of workers, and the ledger that makes a repeated task id return the first run's
//! result instead of running again. What a node answers instead of a result is
//! `triforce_core::failover::ErrorCode`: one list, each code with its retryability.

mod backends;
mod dial;
mod executors;
mod http_backend;
mod openai;
mod report;
mod runner;
mod running;
mod scheduler;
mod stream;

pub use backends::{Backends, SpokenApi};
pub use dial::{Dial, Dialing, Stream};
pub use executors::{run_executor, TaskResult};
#[cfg(feature = "client")]
pub(crate) use http_backend::error_chain;
pub use http_backend::{CallError, HttpBackends};
pub use openai::WHOLE_ANSWER_MAX;
pub use report::{Report, Reports};
pub use runner::{Runner, Started};
pub use running::Running;
pub use scheduler::{Admission, Permit, Scheduler, Share};
pub use stream::{
    answer_channel, AnswerStream, Answered, Chunk, ChunkSender, RelayAnswer, StreamFailure,
    StreamHead, TaskAnswer,
};
