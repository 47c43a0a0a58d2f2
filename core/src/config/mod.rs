//! The two configuration files, parsed from text and checked as a whole: a config either loads
//! completely or not at all, and every error names the file, the field and the cause.
//!
//! Reading the files (and the PSK) is the driver's job; core sees only their text.

mod api_keys;
mod error;
mod nodes;
mod reload;
mod settings;

pub use api_keys::{
    key_hash, key_name_is_valid, ApiKey, ApiKeys, API_KEYS_MAX, KEY_NAME_LEN_MAX, KEY_NAME_RULE,
};
pub use error::ConfigError;
pub use nodes::Federation;
pub use reload::{nodes_changed, restart_needed, NeedsRestart, NodesChanged};
pub use settings::{
    AuthSettings, BackendApi, ExecutorSpec, IngressSettings, Limits, NetworkSettings,
    SelectionSettings, Settings, Timing,
};

/// The file names inside a config directory.
pub const NODES_FILE: &str = "federation_nodes.json";
pub const SETTINGS_FILE: &str = "federation.toml";
