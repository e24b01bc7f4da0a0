//! The hardening baseline: daemon.json, ownership and modes, the docker group,
//! container configs and audit state, with the before→after diff when a
//! watched file changes. It reads files when asked; it watches nothing itself.

use serde::Deserialize;

/// The `[posture]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostureConfig {}

/// `dockwatch check`: prints the report and returns the exit code.
pub fn check_command(_config: &crate::config::Config, _json: bool) -> anyhow::Result<u8> {
    anyhow::bail!("dockwatch check is not built yet")
}
