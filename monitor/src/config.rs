//! The daemon's configuration file (TOML, `/etc/dockwatch/config.toml`).
//!
//! Each stage owns the struct for its own section; this module only ties them
//! together, reads the file, and turns a parse error into `file:line:col` so
//! the operator can go straight to the mistake. Unknown keys are errors: a
//! misspelt setting silently ignored is a hole in a security tool.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/dockwatch/config.toml";
/// Installed rule directory; when it is missing the shipped `rules/` is used.
pub const DEFAULT_RULES_DIR: &str = "/etc/dockwatch/rules.d";
/// Where dockwatch keeps state that must survive a restart.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dockwatch";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name put in `host.name`; the kernel's hostname when absent.
    pub host_name: Option<String>,
    /// Directory for checkpoints and spools.
    pub state_dir: PathBuf,
    pub rules: RulesSection,
    pub sources: crate::source::SourcesConfig,
    pub pipeline: crate::pipeline::PipelineConfig,
    pub posture: crate::posture::PostureConfig,
    /// Output URLs (`stdout`, `file:///…`, `syslog+unix:///dev/log`, …).
    pub outputs: Vec<String>,
    pub outbox: crate::outbox::OutboxConfig,
    pub tls: crate::sink::TlsConfig,
    pub control: crate::control::ControlConfig,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            host_name: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            rules: RulesSection::default(),
            sources: Default::default(),
            pipeline: Default::default(),
            posture: Default::default(),
            outputs: Vec::new(),
            outbox: Default::default(),
            tls: Default::default(),
            control: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSection {
    pub dir: Option<PathBuf>,
}

/// A configuration problem, located in its file when it came from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            col: None,
            message: message.into(),
        }
    }

    pub fn in_file(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: Some(file.to_path_buf()),
            ..ConfigError::new(message)
        }
    }

    pub fn at(file: &Path, line: usize, col: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: Some(file.to_path_buf()),
            line: Some(line),
            col: Some(col),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.col {
                    write!(f, ":{col}")?;
                }
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = memchr::memchr_iter(b'\n', before).count() + 1;
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

impl Config {
    /// Reads `path`. A missing file is an error only when the user named it.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default())
            }
            Err(e) => {
                return Err(ConfigError::in_file(
                    path,
                    format!("cannot read the configuration: {e}"),
                ))
            }
        };
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    ConfigError::at(path, line, col, message)
                }
                None => ConfigError::in_file(path, message),
            }
        })
    }

    /// `host.name`: the configured name, else the kernel's.
    pub fn host_name(&self) -> String {
        self.host_name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_located() {
        let err = Config::parse(Path::new("c.toml"), "host_name = \"a\"\nbogus = 1\n").unwrap_err();
        assert_eq!((err.line, err.col), (Some(2), Some(1)));
        assert!(err.to_string().starts_with("c.toml:2:1: "), "{err}");
    }

    #[test]
    fn shipped_example_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/dockwatch.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        let cfg = Config::parse(path, &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.outputs, ["stdout", "syslog+unix:///dev/log"]);
    }

    #[test]
    fn empty_file_is_defaults() {
        let cfg = Config::parse(Path::new("c.toml"), "").unwrap();
        assert_eq!(cfg.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    }
}
