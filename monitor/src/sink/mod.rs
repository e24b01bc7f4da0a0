//! Alert delivery: formatting (JSON lines, RFC 5424, RFC 3164) and the
//! transports behind `--output` URLs.

use std::io::Write;
use std::path::PathBuf;

use serde::Deserialize;

use crate::alert::Alert;
use crate::config::ConfigError;

/// The `[tls]` section: certificates for `syslog+tls://` outputs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// One destination.
pub enum Sink {
    Stdout,
    File(std::fs::File),
}

impl Sink {
    pub fn open(url: &str) -> Result<Sink, ConfigError> {
        if url == "stdout" {
            return Ok(Sink::Stdout);
        }
        if let Some(path) = url.strip_prefix("file://") {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| ConfigError::new(format!("output {url}: cannot open: {e}")))?;
            return Ok(Sink::File(file));
        }
        Err(ConfigError::new(format!(
            "output {url:?}: unknown output; use stdout, file:///PATH, syslog+unix:///dev/log, syslog+udp://HOST:PORT, syslog+tcp://HOST:PORT or syslog+tls://HOST:PORT"
        )))
    }

    pub fn deliver(&mut self, alert: &Alert) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(512);
        alert.write_json(&mut line);
        line.push(b'\n');
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&line)?;
                out.flush()
            }
            Sink::File(f) => f.write_all(&line),
        }
    }
}

/// Outputs when neither `--output` nor the configuration names any.
pub fn default_outputs() -> Vec<String> {
    vec!["stdout".to_string()]
}
