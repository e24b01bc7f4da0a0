//! The audit source: parses audit records (audit.log or netlink), reassembles
//! them into one [`Event`] per serial, and tails audit.log across rotation.
//!
//! The pieces, in the order data flows through them:
//! [`lines`] splits input into bounded lines and [`feed`] warns about what
//! is not a record; [`record`] parses one record in place; [`assemble`]
//! groups records into events (with [`group`] holding them meanwhile) and
//! notices lost serials; [`translate`] turns a group into an [`Event`].
//! Around them: [`tail`] follows audit.log across rotation, [`checkpoint`]
//! saves where it is, [`netlink`] reads the kernel's multicast group and
//! status, `live` runs either as the daemon's source (with [`container`]
//! naming the container and host path of events from containers),
//! `replay` reads archives. Its own findings (audit tampered with, records lost) are
//! events like the rest; the pipeline makes them alerts.
//!
//! [`Event`]: crate::event::Event

pub mod assemble;
pub mod checkpoint;
pub mod container;
pub mod feed;
pub mod group;
pub mod lines;
mod live;
pub mod netlink;
pub mod record;
mod replay;
pub mod syscalls;
pub mod tail;
pub mod translate;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Deserialize;

use crate::source::EventSender;

pub use checkpoint::Acks;
pub use replay::replay;

/// How audit events are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// Tail auditd's log file.
    Log,
    /// Read the kernel's audit netlink multicast group.
    Netlink,
    Off,
}

/// The `[sources.audit]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub mode: AuditMode,
    /// auditd's log file (`log_file` in auditd.conf).
    pub log: PathBuf,
    /// Where the reader saves its position so a restart resumes with no gap
    /// and no duplicate (e.g. `/var/lib/dockwatch/audit.checkpoint`). Off by
    /// default: without it, reading starts at the end of the log.
    pub checkpoint: Option<PathBuf>,
    /// Netlink mode: whether an auditd is expected to run beside dockwatch
    /// (its disappearance is then reported). Log mode always expects one.
    pub expect_auditd: bool,
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            mode: AuditMode::Log,
            log: PathBuf::from("/var/log/audit/audit.log"),
            checkpoint: None,
            expect_auditd: true,
        }
    }
}

/// Keeps the audit reader running while alive; stops it on drop.
pub struct AuditSource {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    acks: Acks,
}

impl AuditSource {
    pub async fn start(config: &AuditConfig, tx: EventSender) -> anyhow::Result<AuditSource> {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Acks::default();
        let thread = match config.mode {
            AuditMode::Off => None,
            AuditMode::Log => {
                let config = config.clone();
                let flag = stop.clone();
                let acks = acks.clone();
                Some(
                    std::thread::Builder::new()
                        .name("audit-log".into())
                        .spawn(move || live::follow_log(&config, tx, acks, &flag))?,
                )
            }
            AuditMode::Netlink => {
                // Open here, so a missing privilege fails the start.
                let multicast = netlink::Multicast::open(std::time::Duration::from_millis(50))
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot join the audit netlink multicast group: {e} (needs CAP_AUDIT_READ and a kernel with audit)"
                        )
                    })?;
                let flag = stop.clone();
                let beside_auditd = config.expect_auditd;
                Some(
                    std::thread::Builder::new()
                        .name("audit-netlink".into())
                        .spawn(move || live::follow_netlink(multicast, tx, &flag, beside_auditd))?,
                )
            }
        };
        Ok(AuditSource { stop, thread, acks })
    }

    /// The daemon calls [`Acks::done`] on this once per audit event it has
    /// handed to the outputs; checkpoints never run ahead of it.
    pub fn acks(&self) -> Acks {
        self.acks.clone()
    }
}

impl Drop for AuditSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
