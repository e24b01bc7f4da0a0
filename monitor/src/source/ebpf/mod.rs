//! The eBPF source: loads `monitor-ebpf`, keeps the kernel's watch set in step
//! with the rules, and turns ring-buffer records into [`Event`]s.
//!
//! The kernel programs filter by (device, inode), so only activity on
//! watched objects crosses into userspace; this module's work is
//! proportional to that, not to the system's syscall rate.
//!
//! [`Event`]: crate::event::Event

mod calls;
pub mod decode;
mod loader;
mod mounts;
mod reader;
pub mod watches;

use std::sync::Arc;

use serde::Deserialize;

use crate::rules::Watch;
use crate::source::EventSender;

pub use loader::Attachment;

/// The `[sources.ebpf]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfConfig {
    pub enabled: bool,
    /// Size of the kernel → userspace ring buffer in KiB (a power of two,
    /// at least 4). When it fills, records are lost and counted.
    pub ring_buffer_kib: u32,
    /// Which kernel hooks report changes.
    pub hooks: Hooks,
}

/// The hook sets of `monitor-ebpf`: both give the same records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Hooks {
    /// The inode hooks where the kernel offers them, else the syscall hooks.
    #[default]
    Auto,
    /// VFS tracepoints that fire only when an inode changes: no cost on
    /// other calls; successful changes only, writes once per clock tick.
    Inode,
    /// Syscall tracepoints: every call, failed ones and opens for write
    /// that write nothing too; every syscall on the host pays the kernel's
    /// tracing slow path.
    Syscalls,
}

impl Default for EbpfConfig {
    fn default() -> EbpfConfig {
        EbpfConfig {
            enabled: true,
            ring_buffer_kib: 4096,
            hooks: Hooks::Auto,
        }
    }
}

/// Keeps the probes loaded while alive.
pub struct EbpfSource {
    probes: loader::Probes,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stats: Arc<reader::Stats>,
    /// New watch lists for the reader, which owns the kernel's watch maps.
    rewatch: tokio::sync::mpsc::UnboundedSender<reader::Rewatch>,
    hooks: String,
}

impl EbpfSource {
    /// Loads and attaches the probes for `watches` and starts sending events.
    pub async fn start(
        config: &EbpfConfig,
        watches: &[Watch],
        tx: EventSender,
    ) -> anyhow::Result<EbpfSource> {
        let mut probes = loader::Probes::load(config)?;
        let set = watches::WatchSet::resolve(watches);
        for (path, why) in &set.rejected {
            tracing::error!(path = %path.display(), "watch ignored: {why}");
        }
        for path in &set.pending {
            tracing::info!(
                path = %path.display(),
                "watch path does not exist yet; it is watched from when it appears"
            );
        }
        let watched_inodes = set.keys.len();
        let mut kernel_watches = probes.take_watches()?;
        kernel_watches.replace(set)?;
        tracing::info!(
            programs = probes.attached().len(),
            watched_inodes,
            hooks = probes.attachment().describe().as_str(),
            "eBPF probes attached"
        );
        let stats = Arc::new(reader::Stats::default());
        let ring = probes.take_ring()?;
        let counters = probes.take_counters()?;
        let (rewatch, rewatches) = tokio::sync::mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(reader::read_records(
                ring,
                tx.clone(),
                stats.clone(),
                kernel_watches,
                watches.to_vec(),
                rewatches,
            )),
            tokio::spawn(reader::report_losses(counters, tx, stats.clone())),
        ];
        let hooks = probes.attachment().describe();
        Ok(EbpfSource {
            probes,
            tasks,
            stats,
            rewatch,
            hooks,
        })
    }

    /// The hook set attached, as the start-up log describes it.
    pub fn hooks(&self) -> &str {
        &self.hooks
    }

    /// The syscall tracepoints fire for 64-bit calls only: the kernel's
    /// syscall trace events skip a 32-bit task's (`int 0x80`, a `-m32`
    /// binary), so with that hook set such a process writes watched files
    /// unseen (tests/tests/compat_32bit.rs shows it). The inode hooks see the
    /// change itself, whatever table the call came through.
    pub fn sees_32bit_calls(&self) -> bool {
        self.probes.attachment().hooks == Hooks::Inode
    }

    /// Brings the kernel's watch set in step with `watches` (a reload).
    /// The answer, once the kernel holds the new set, is the number of
    /// watched inodes. Entries are added before stale ones go, so a path
    /// watched before and after is never unwatched in between.
    pub fn rewatch(
        &self,
        watches: Vec<Watch>,
    ) -> tokio::sync::oneshot::Receiver<Result<usize, String>> {
        let (done, answer) = tokio::sync::oneshot::channel();
        // A reader that has stopped drops `done`; the caller sees that.
        let _ = self.rewatch.send(reader::Rewatch {
            watches: Some(watches),
            done,
        });
        answer
    }

    /// Resolves the watched paths again without waiting for the answer: a
    /// mount over a watched path shows another object under its name, and
    /// the kernel must watch that one from now on.
    pub fn follow_mounts(&self) {
        let (done, _) = tokio::sync::oneshot::channel();
        let _ = self.rewatch.send(reader::Rewatch {
            watches: None,
            done,
        });
    }

    /// Records received, lost (ring buffer full) and filtered in userspace.
    pub fn stats(&self) -> (u64, u64, u64) {
        self.stats.snapshot()
    }
}

impl Drop for EbpfSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let (received, lost, filtered) = self.stats.snapshot();
        tracing::info!(received, lost, filtered, "eBPF source stopped");
    }
}
