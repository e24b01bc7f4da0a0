//! Loading the kernel object, attaching its programs, and access to its maps.
//!
//! A program the kernel refuses is logged with its name and what to do, and
//! the others keep working: losing chmod coverage must not cost open
//! coverage.

use anyhow::Context;
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{ProgramError, TracePoint};
use aya::{Ebpf, EbpfLoader};
use monitor_common::{WatchKey, WatchValue};

use super::watches::WatchSet;
use super::EbpfConfig;

/// The kernel programs, built by monitor/build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf"));

/// How the probes hook the kernel, best first. BPF LSM and fentry need a
/// kernel that allows them (no lockdown); syscall tracepoints work
/// everywhere BPF does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    Tracepoint,
}

/// (program, tracepoint in the `syscalls` category).
const TRACEPOINTS: &[(&str, &str)] = &[
    ("dw_enter_openat", "sys_enter_openat"),
    ("dw_enter_open", "sys_enter_open"),
    ("dw_enter_creat", "sys_enter_creat"),
    ("dw_enter_openat2", "sys_enter_openat2"),
    ("dw_exit_open", "sys_exit_openat"),
    ("dw_exit_open", "sys_exit_open"),
    ("dw_exit_open", "sys_exit_creat"),
    ("dw_exit_open", "sys_exit_openat2"),
];

/// The loaded object; dropping it detaches every program.
pub struct Probes {
    ebpf: Ebpf,
    watches: HashMap<MapData, WatchKey, WatchValue>,
    attached: Vec<String>,
}

impl Probes {
    pub fn load(config: &EbpfConfig) -> anyhow::Result<Probes> {
        let ring_bytes = ring_bytes(config.ring_buffer_kib)?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", ring_bytes)
            .load(OBJECT)
            .context(
                "cannot load the kernel programs: the kernel needs BPF, BTF \
                 (/sys/kernel/btf/vmlinux) and ring buffers (Linux 5.8 or later)",
            )?;
        let mut attached = Vec::new();
        let mut loaded: Vec<&str> = Vec::new();
        let mut failed: Vec<&str> = Vec::new();
        for &(name, tracepoint) in TRACEPOINTS {
            if failed.contains(&name) {
                continue;
            }
            let program: &mut TracePoint = ebpf
                .program_mut(name)
                .with_context(|| format!("the kernel object has no program {name}"))?
                .try_into()?;
            if !loaded.contains(&name) {
                if let Err(e) = program.load() {
                    tracing::error!(
                        program = name,
                        "the kernel refused program {name}: {}; the actions it covers are not \
                         watched by eBPF (the audit source still covers them if enabled)",
                        describe(&e)
                    );
                    failed.push(name);
                    continue;
                }
                loaded.push(name);
            }
            match program.attach("syscalls", tracepoint) {
                Ok(_) => attached.push(format!("{name}@{tracepoint}")),
                // open(2) and creat(2) do not exist on every architecture.
                Err(e) => tracing::warn!(
                    program = name,
                    "cannot attach to syscalls/{tracepoint}: {e:#} (is tracefs mounted at /sys/kernel/tracing?)"
                ),
            }
        }
        if !attached.iter().any(|a| a.starts_with("dw_exit_open@")) {
            anyhow::bail!(
                "no open probe could be attached (see the errors above); mount tracefs with \
                 `mount -t tracefs tracefs /sys/kernel/tracing` and check that the kernel \
                 allows BPF tracepoints"
            );
        }
        let watches = HashMap::try_from(
            ebpf.take_map("WATCHES")
                .context("the kernel object has no WATCHES map")?,
        )?;
        Ok(Probes {
            ebpf,
            watches,
            attached,
        })
    }

    /// Program@tracepoint pairs attached.
    pub fn attached(&self) -> Vec<String> {
        self.attached.clone()
    }

    /// Makes the kernel's watch set equal to `set`.
    pub fn replace_watches(&mut self, set: &WatchSet) -> anyhow::Result<()> {
        let stale: Vec<WatchKey> = self
            .watches
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !set.keys.contains_key(&(k.dev, k.ino)))
            .collect();
        for key in stale {
            let _ = self.watches.remove(&key);
        }
        for (&key, value) in &set.keys {
            self.watches
                .insert(WatchSet::kernel_key(key), value, 0)
                .context("cannot update the kernel's watch set")?;
        }
        Ok(())
    }

    pub fn take_ring(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .context("the kernel object has no EVENTS map")?;
        Ok(RingBuf::try_from(map)?)
    }

    pub fn take_counters(&mut self) -> anyhow::Result<PerCpuArray<MapData, u64>> {
        let map = self
            .ebpf
            .take_map("STATS")
            .context("the kernel object has no STATS map")?;
        Ok(PerCpuArray::try_from(map)?)
    }
}

fn ring_bytes(kib: u32) -> anyhow::Result<u32> {
    if kib < 4 || !kib.is_power_of_two() || kib > 1 << 20 {
        anyhow::bail!(
            "[sources.ebpf] ring_buffer_kib = {kib}: use a power of two between 4 and 1048576"
        );
    }
    Ok(kib * 1024)
}

/// A load error in a few lines: the syscall's error and the verifier's
/// verdict (its last lines); the whole log goes to the debug log.
fn describe(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            tracing::debug!("verifier log:\n{log}");
            let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
            format!("{io_error} (verifier: {tail}; DOCKWATCH_LOG=debug shows the whole log)")
        }
        other => other.to_string(),
    }
}
