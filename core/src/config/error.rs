//! Config errors that say where and why.

/// A config that did not load. Nothing of it was kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid JSON/TOML or does not have the expected shape.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// A field parsed but its value is not acceptable.
    #[error("{file}: {field}: {reason}")]
    Invalid {
        file: String,
        field: String,
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(file: &str, field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: file.to_string(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
