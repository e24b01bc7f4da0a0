//! The audit source: parses audit records (audit.log or netlink), reassembles
//! them into one [`Event`] per serial, and tails audit.log across rotation.
//!
//! The pieces, in the order data flows through them:
//! [`lines`] splits input into bounded lines, [`record`] parses one record in
//! place, [`assemble`] groups records into events (with [`group`] holding
//! them meanwhile) and notices lost serials, [`translate`] turns a group into
//! an [`Event`]. [`tail`] follows audit.log; [`replay`] reads archives.
//!
//! [`Event`]: crate::event::Event

pub mod assemble;
pub mod feed;
pub mod group;
pub mod lines;
pub mod record;
mod replay;
pub mod syscalls;
pub mod tail;
pub mod translate;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::event::Event;
use crate::source::EventSender;

pub use replay::replay;

/// How often the log is checked for new lines when idle.
const POLL: Duration = Duration::from_millis(50);

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
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            mode: AuditMode::Log,
            log: PathBuf::from("/var/log/audit/audit.log"),
        }
    }
}

/// Keeps the audit reader running while alive; stops it on drop.
pub struct AuditSource {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AuditSource {
    pub async fn start(config: &AuditConfig, tx: EventSender) -> anyhow::Result<AuditSource> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match config.mode {
            AuditMode::Off => None,
            AuditMode::Log | AuditMode::Netlink => {
                let config = config.clone();
                let flag = stop.clone();
                Some(
                    std::thread::Builder::new()
                        .name("audit-log".into())
                        .spawn(move || follow_log(&config, tx, &flag))?,
                )
            }
        };
        Ok(AuditSource { stop, thread })
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

/// The log-tailing thread: runs until `stop` or until nobody listens.
fn follow_log(config: &AuditConfig, tx: EventSender, stop: &AtomicBool) {
    let mut tailer = tail::Tailer::at_end(&config.log);
    let mut reassembler = assemble::Reassembler::default();
    let mut closed = false;
    let mut emit = |event: Event| {
        if !closed && tx.blocking_send(event).is_err() {
            closed = true;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let progressed = tailer.poll(now, &mut reassembler, &mut emit);
        reassembler.expire(Instant::now(), &mut emit);
        if !progressed {
            std::thread::sleep(POLL);
        }
    }
    reassembler.expire(Instant::now(), &mut emit);
}
