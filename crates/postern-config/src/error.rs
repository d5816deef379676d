//! Errors from loading, validating or rendering a configuration.

use std::fmt;
use std::path::PathBuf;

/// Errors from loading or validating a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// Every problem validation found, in the order of the file's sections.
    #[error("invalid configuration:{}", list(.0))]
    Invalid(Vec<FieldError>),
    #[error("cannot render the configuration as TOML: {0}")]
    Render(#[source] toml::ser::Error),
}

/// One problem with one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where the setting is, as written in docs/configuration.md:
    /// `listeners[1].address`, `delivery.retry.factor`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// One problem per line, each indented under the heading.
fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}
