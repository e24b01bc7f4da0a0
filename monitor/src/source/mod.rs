//! Event sources: each turns what the kernel reports into [`Event`]s and
//! sends them down one channel. Sources know nothing of rules or sinks.
//!
//! [`Event`]: crate::event::Event

pub mod audit;
pub mod docker;
pub mod ebpf;
pub mod mountinfo;
pub mod mounts;

use serde::Deserialize;

/// The `[sources]` section of the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    pub ebpf: ebpf::EbpfConfig,
    pub audit: audit::AuditConfig,
    pub docker: docker::DockerConfig,
    pub mounts: mounts::MountsConfig,
}

/// Where sources send what they saw.
pub type EventSender = tokio::sync::mpsc::Sender<crate::event::Event>;
