//! kube-proxy's configuration file, `--config FILE`: a
//! `KubeProxyConfiguration` (`kubeproxy.config.k8s.io/v1alpha1`), such as the
//! `config.conf` of the `kube-proxy` ConfigMap kubeadm writes.
//!
//! - [`model`]: the file's fields, decoded strictly: an unknown field or a
//!   value of the wrong type is an error naming the field.
//! - [`merge`]: the file and the command line combined with kube-proxy's
//!   precedence, into the flags' structs that [`crate::config`] reads; zero
//!   values take kube-proxy's defaults, and what cannot apply to kube-ipvs
//!   is collected for one warning; [`defaults`] holds kube-proxy's
//!   defaults, and `checks` its validation and what cannot apply.

mod checks;
mod covered;
pub mod defaults;
pub mod merge;
pub mod model;

use std::path::{Path, PathBuf};

pub use merge::{resolve_plan, resolve_run, Notes};
pub use model::KubeProxyConfiguration;

/// Why the configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The file is not YAML (or JSON).
    #[error("{0}: not a YAML or JSON document: {1}")]
    Syntax(PathBuf, String),
    /// A field is unknown, or its value has the wrong type.
    #[error("{file}: {field}: {message}")]
    Field {
        /// The file.
        file: PathBuf,
        /// The field, as a path from the top (`ipvs.scheduler`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A field's value is of the right type but not valid.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The file (or `command line` for a flag).
        file: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The field the error names, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Field { field, .. } | ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Reads and decodes `path`.
pub fn load(path: &Path) -> Result<KubeProxyConfiguration, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?;
    parse(path, &text)
}

/// Decodes the text of a configuration file (`path` names it in errors).
/// YAML or JSON; the document must be a `KubeProxyConfiguration` of
/// `kubeproxy.config.k8s.io/v1alpha1`.
pub fn parse(path: &Path, text: &str) -> Result<KubeProxyConfiguration, ConfigError> {
    let value: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| ConfigError::Syntax(path.to_owned(), e.to_string()))?;
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        file: path.to_owned(),
        field: field.to_owned(),
        message,
    };
    if !value.is_object() {
        return Err(invalid(
            "(document)",
            "not a mapping of fields; expected a KubeProxyConfiguration".into(),
        ));
    }
    let config: KubeProxyConfiguration =
        serde_path_to_error::deserialize(value).map_err(|e| field_error(path, &e))?;
    match config.api_version.as_deref() {
        Some(model::API_VERSION) => {}
        other => {
            return Err(invalid(
                "apiVersion",
                format!("{other:?}; kube-ipvs reads {}", model::API_VERSION),
            ))
        }
    }
    match config.kind.as_deref() {
        Some(model::KIND) => Ok(config),
        other => Err(invalid(
            "kind",
            format!("{other:?}; kube-ipvs reads {}", model::KIND),
        )),
    }
}

/// The decoding error, with the path of the field it is about: for an
/// unknown field, the path of the field itself (`ipvs.bogus`).
fn field_error(path: &Path, e: &serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let at = e.path().to_string();
    let at = if at == "." { String::new() } else { at };
    let message = e.inner().to_string();
    // serde_json appends " at line N column M", which is meaningless here
    // (the YAML went through a JSON value).
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    // The path may or may not end with the unknown field's own name.
    let join = |name: &str| {
        if at.is_empty() || at == name || at.ends_with(&format!(".{name}")) {
            if at.is_empty() {
                name.to_owned()
            } else {
                at.clone()
            }
        } else {
            format!("{at}.{name}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once('`') {
            return ConfigError::Field {
                file: path.to_owned(),
                field: join(name),
                message: format!(
                    "unknown field (kube-proxy's v1alpha1 has no such field){}",
                    expected
                        .trim_start_matches(',')
                        .trim()
                        .strip_prefix("expected")
                        .map(|known| format!("; known here:{known}"))
                        .unwrap_or_default()
                ),
            };
        }
    }
    ConfigError::Field {
        file: path.to_owned(),
        field: if at.is_empty() {
            "(top level)".into()
        } else {
            at
        },
        message,
    }
}

#[cfg(test)]
mod tests;
