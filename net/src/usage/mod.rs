//! Usage accounting at the door: what each key used, per model and day, from the token counts
//! the backends report (`triforce_core::usage`), kept in an embedded database on the door's
//! node.
//!
//! - [`store`]: the SQLite database (WAL) and its rows.
//! - [`meter`]: counts in memory, written to the store once a second.
//! - [`body`]: an answer body that reads the counts as it passes to the client.

pub mod body;
pub mod meter;
pub mod store;

pub use body::{Account, Charged, MeteredBody};
pub use meter::{day_of, Metered, Spent, UsageError, UsageMeter};
pub use store::{UsageFilter, UsageRow, UsageStore};

use std::sync::Arc;

use crate::load::NodeConfig;

/// The door's meter as `config` says (`ingress.usage_db`, relative to the config directory),
/// writing to its store once a second from now on; `None` when the door keeps no usage.
pub fn start_meter(config: &NodeConfig) -> Result<Option<Arc<UsageMeter>>, UsageError> {
    let file = &config.settings.ingress.usage_db;
    if file.as_os_str().is_empty() {
        return Ok(None);
    }
    let meter = UsageMeter::open(&config.dir.join(file))?;
    tokio::spawn(UsageMeter::flush_forever(Arc::downgrade(&meter)));
    Ok(Some(meter))
}
