//! Loading the kernel object, attaching its programs, and access to its maps.
//!
//! A program the kernel refuses is logged with its name and what to do, and
//! the others keep working: losing chmod coverage must not cost open
//! coverage.

use anyhow::Context;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, FEntry, Lsm, ProgramError, ProgramType, TracePoint};
use aya::sys::{is_helper_supported, BpfHelper};
use aya::Btf;
use aya::{Ebpf, EbpfLoader};
use monitor_common::{CallShape, WatchKey, WatchValue, ARG_PATH};

use super::watches::WatchSet;
use super::{calls, EbpfConfig, Hooks};

/// The kernel programs, built by monitor/build.rs: walks and scans with
/// `bpf_loop` (Linux 5.17), and the same programs with bounded loops for
/// older kernels, which refuse a program that holds a callback.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf"));
static OBJECT_BOUNDED: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf-bounded"));

/// How the programs loop over path levels and string bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loops {
    /// `bpf_loop`: the verifier checks one step.
    Helper,
    /// Bounded loops: every step is verified; for kernels before 5.17.
    Bounded,
}

impl Loops {
    /// The object this kernel can load, probed with a one-call program.
    fn detect() -> (Loops, String) {
        match is_helper_supported(ProgramType::TracePoint, BpfHelper::BPF_FUNC_loop) {
            Ok(true) => (Loops::Helper, "the kernel has bpf_loop".to_string()),
            Ok(false) => (
                Loops::Bounded,
                "the kernel has no bpf_loop (Linux 5.17)".to_string(),
            ),
            Err(e) => (Loops::Bounded, format!("cannot probe for bpf_loop ({e})")),
        }
    }

    fn object(self) -> &'static [u8] {
        match self {
            Loops::Helper => OBJECT,
            Loops::Bounded => OBJECT_BOUNDED,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Loops::Helper => "bpf_loop",
            Loops::Bounded => "bounded loops",
        }
    }
}

/// What the kernel lets the probes hook, found at start by trying: BPF LSM
/// and fentry need a kernel built with them and not locked down; the inode
/// hooks need Linux 6.13's timestamp tracepoints; syscall tracepoints work
/// everywhere BPF does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    pub lsm: bool,
    pub fentry: bool,
    /// The hook set attached: [`Hooks::Inode`] or [`Hooks::Syscalls`].
    pub hooks: Hooks,
    pub loops: Loops,
}

impl Attachment {
    fn detect(ebpf: &mut Ebpf, hooks: Hooks, loops: Loops) -> Attachment {
        let btf = match Btf::from_sys_fs() {
            Ok(btf) => btf,
            Err(e) => {
                tracing::info!("no kernel BTF ({e}); BPF LSM and fentry unavailable");
                return Attachment {
                    lsm: false,
                    fentry: false,
                    hooks,
                    loops,
                };
            }
        };
        let lsm = try_hook(ebpf, "dw_probe_lsm", |p| {
            let p: &mut Lsm = p.try_into()?;
            p.load("path_truncate", &btf)?;
            let link = p.attach()?;
            p.detach(link)?;
            Ok(())
        });
        let fentry = try_hook(ebpf, "dw_probe_fentry", |p| {
            let p: &mut FEntry = p.try_into()?;
            p.load("vfs_truncate", &btf)?;
            let link = p.attach()?;
            p.detach(link)?;
            Ok(())
        });
        Attachment {
            lsm,
            fentry,
            hooks,
            loops,
        }
    }

    /// For the start-up log.
    pub fn describe(self) -> String {
        let yes_no = |b: bool| {
            if b {
                "available"
            } else {
                "refused by the kernel"
            }
        };
        let using = match self.hooks {
            Hooks::Inode => "using inode tracepoints (changes only)",
            _ => "using syscall tracepoints",
        };
        format!(
            "BPF LSM {}, fentry {}; {using}, with {}",
            yes_no(self.lsm),
            yes_no(self.fentry),
            self.loops.describe()
        )
    }
}

fn try_hook(
    ebpf: &mut Ebpf,
    name: &str,
    attach: impl FnOnce(&mut aya::programs::Program) -> anyhow::Result<()>,
) -> bool {
    let Some(program) = ebpf.program_mut(name) else {
        return false;
    };
    match attach(program) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(program = name, "{e:#}");
            false
        }
    }
}

/// (program, tracepoint in the `syscalls` category). One program may serve
/// several calls with the same arguments; `dw_exit_open` and `dw_exit_path`
/// serve every call of their kind at exit.
const TRACEPOINTS: &[(&str, &str)] = &[
    ("dw_enter_openat", "sys_enter_openat"),
    ("dw_enter_open", "sys_enter_open"),
    ("dw_enter_creat", "sys_enter_creat"),
    ("dw_enter_openat2", "sys_enter_openat2"),
    ("dw_exit_open", "sys_exit_openat"),
    ("dw_exit_open", "sys_exit_open"),
    ("dw_exit_open", "sys_exit_creat"),
    ("dw_exit_open", "sys_exit_openat2"),
    ("dw_enter_chmod", "sys_enter_chmod"),
    ("dw_enter_fchmodat", "sys_enter_fchmodat"),
    ("dw_enter_fchmodat2", "sys_enter_fchmodat2"),
    ("dw_enter_fchmod", "sys_enter_fchmod"),
    ("dw_enter_chown", "sys_enter_chown"),
    ("dw_enter_chown", "sys_enter_lchown"),
    ("dw_enter_fchownat", "sys_enter_fchownat"),
    ("dw_enter_fchown", "sys_enter_fchown"),
    ("dw_enter_setxattr", "sys_enter_setxattr"),
    ("dw_enter_setxattr", "sys_enter_lsetxattr"),
    ("dw_enter_setxattr", "sys_enter_removexattr"),
    ("dw_enter_setxattr", "sys_enter_lremovexattr"),
    ("dw_enter_setxattrat", "sys_enter_setxattrat"),
    ("dw_enter_setxattrat", "sys_enter_removexattrat"),
    ("dw_enter_fsetxattr", "sys_enter_fsetxattr"),
    ("dw_enter_fsetxattr", "sys_enter_fremovexattr"),
    ("dw_enter_truncate", "sys_enter_truncate"),
    ("dw_enter_ftruncate", "sys_enter_ftruncate"),
    ("dw_enter_rename", "sys_enter_rename"),
    ("dw_enter_renameat", "sys_enter_renameat"),
    ("dw_enter_renameat", "sys_enter_renameat2"),
    ("dw_enter_link", "sys_enter_link"),
    ("dw_enter_linkat", "sys_enter_linkat"),
    ("dw_enter_symlink", "sys_enter_symlink"),
    ("dw_enter_symlinkat", "sys_enter_symlinkat"),
    ("dw_enter_unlink", "sys_enter_unlink"),
    ("dw_enter_unlinkat", "sys_enter_unlinkat"),
    ("dw_enter_rmdir", "sys_enter_rmdir"),
    ("dw_enter_mkdir", "sys_enter_mkdir"),
    ("dw_enter_mkdirat", "sys_enter_mkdirat"),
    ("dw_enter_mknod", "sys_enter_mknod"),
    ("dw_enter_mknodat", "sys_enter_mknodat"),
    ("dw_enter_connect", "sys_enter_connect"),
    ("dw_exit_path", "sys_exit_chmod"),
    ("dw_exit_path", "sys_exit_fchmodat"),
    ("dw_exit_path", "sys_exit_fchmodat2"),
    ("dw_exit_path", "sys_exit_fchmod"),
    ("dw_exit_path", "sys_exit_chown"),
    ("dw_exit_path", "sys_exit_lchown"),
    ("dw_exit_path", "sys_exit_fchownat"),
    ("dw_exit_path", "sys_exit_fchown"),
    ("dw_exit_path", "sys_exit_setxattr"),
    ("dw_exit_path", "sys_exit_lsetxattr"),
    ("dw_exit_path", "sys_exit_removexattr"),
    ("dw_exit_path", "sys_exit_lremovexattr"),
    ("dw_exit_path", "sys_exit_setxattrat"),
    ("dw_exit_path", "sys_exit_removexattrat"),
    ("dw_exit_path", "sys_exit_fsetxattr"),
    ("dw_exit_path", "sys_exit_fremovexattr"),
    ("dw_exit_path", "sys_exit_truncate"),
    ("dw_exit_path", "sys_exit_ftruncate"),
    ("dw_exit_path", "sys_exit_rename"),
    ("dw_exit_path", "sys_exit_renameat"),
    ("dw_exit_path", "sys_exit_renameat2"),
    ("dw_exit_path", "sys_exit_link"),
    ("dw_exit_path", "sys_exit_linkat"),
    ("dw_exit_path", "sys_exit_symlink"),
    ("dw_exit_path", "sys_exit_symlinkat"),
    ("dw_exit_path", "sys_exit_unlink"),
    ("dw_exit_path", "sys_exit_unlinkat"),
    ("dw_exit_path", "sys_exit_rmdir"),
    ("dw_exit_path", "sys_exit_mkdir"),
    ("dw_exit_path", "sys_exit_mkdirat"),
    ("dw_exit_path", "sys_exit_mknod"),
    ("dw_exit_path", "sys_exit_mknodat"),
    ("dw_exit_path", "sys_exit_connect"),
];

/// Attaches the syscall hook set; the programs the kernel refuses are
/// logged and skipped.
fn attach_syscalls(ebpf: &mut Ebpf, loops: Loops) -> anyhow::Result<Vec<String>> {
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
            let started = std::time::Instant::now();
            let result = program.load();
            tracing::debug!(
                program = name,
                loops = loops.describe(),
                elapsed = ?started.elapsed(),
                "verified"
            );
            if let Err(e) = result {
                tracing::error!(
                    program = name,
                    "the kernel refused program {name}: {}; the calls it covers are not \
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
            // Not every call exists on every architecture and kernel
            // (open, creat, setxattrat, fchmodat2).
            Err(e) => tracing::debug!(
                program = name,
                "cannot attach to syscalls/{tracepoint}: {e:#}"
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
    Ok(attached)
}

/// (program, BTF tracepoint, required) of the inode hook set. Without
/// `sk_data_ready` (Linux 6.3) only connections go unseen.
const INODE_HOOKS: &[(&str, &str, bool)] = &[
    ("dw_ctime_xchg", "ctime_ns_xchg", true),
    ("dw_ctime_skip", "ctime_xchg_skip", true),
    ("dw_ctime_set", "inode_set_ctime_to_ts", true),
    ("dw_unix_connect", "sk_data_ready", false),
];

/// Attaches the inode hook set, all of it or (on error) none of it: half a
/// set would miss changes while looking attached.
fn attach_inode(ebpf: &mut Ebpf) -> anyhow::Result<Vec<String>> {
    let table = calls::table();
    if table.is_empty() {
        anyhow::bail!(
            "no system call table for this architecture ({})",
            std::env::consts::ARCH
        );
    }
    let btf = Btf::from_sys_fs().context("no kernel BTF")?;
    {
        let map = ebpf
            .map_mut("CALLS")
            .context("the kernel object has no CALLS map")?;
        let mut shapes: HashMap<&mut MapData, u32, CallShape> = HashMap::try_from(map)?;
        for (nr, shape) in table {
            shapes
                .insert(nr, shape, 0)
                .context("cannot fill the kernel's call table")?;
        }
    }
    let mut links = Vec::new();
    let mut attached = Vec::new();
    let mut failure = None;
    for &(name, tracepoint, required) in INODE_HOOKS {
        let result = (|| -> anyhow::Result<()> {
            let program: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .with_context(|| format!("the kernel object has no program {name}"))?
                .try_into()?;
            program
                .load(tracepoint, &btf)
                .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            links.push((name, program.attach()?));
            Ok(())
        })();
        match result {
            Ok(()) => attached.push(format!("{name}@{tracepoint}")),
            Err(e) if required => {
                failure = Some(e.context(format!("tracepoint {tracepoint}")));
                break;
            }
            Err(e) => tracing::warn!(
                program = name,
                "cannot attach to {tracepoint} ({e:#}): connections to watched unix sockets \
                 are not seen by eBPF (the audit source still covers them if enabled)"
            ),
        }
    }
    if let Some(e) = failure {
        for (name, link) in links {
            if let Some(program) = ebpf.program_mut(name) {
                let program: Result<&mut BtfTracePoint, _> = program.try_into();
                if let Ok(program) = program {
                    let _ = program.detach(link);
                }
            }
        }
        return Err(e);
    }
    Ok(attached)
}

/// The loaded object; dropping it detaches every program.
pub struct Probes {
    ebpf: Ebpf,
    attached: Vec<String>,
    attachment: Attachment,
}

impl Probes {
    pub fn load(config: &EbpfConfig) -> anyhow::Result<Probes> {
        let ring_bytes = ring_bytes(config.ring_buffer_kib)?;
        let (loops, why) = Loops::detect();
        tracing::info!("kernel programs with {}: {why}", loops.describe());
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", ring_bytes)
            .load(loops.object())
            .context(
                "cannot load the kernel programs: the kernel needs BPF, BTF \
                 (/sys/kernel/btf/vmlinux) and ring buffers (Linux 5.8 or later)",
            )?;
        let (hooks, attached) = match config.hooks {
            Hooks::Syscalls => (Hooks::Syscalls, attach_syscalls(&mut ebpf, loops)?),
            Hooks::Inode => (
                Hooks::Inode,
                attach_inode(&mut ebpf).context(
                    "[sources.ebpf] hooks = \"inode\": the kernel refused the inode hooks; \
                     they need Linux 6.13 or later on x86_64; use hooks = \"syscalls\" or \"auto\"",
                )?,
            ),
            Hooks::Auto => match attach_inode(&mut ebpf) {
                Ok(attached) => (Hooks::Inode, attached),
                Err(e) => {
                    tracing::info!("inode hooks unavailable ({e:#}); using syscall tracepoints");
                    (Hooks::Syscalls, attach_syscalls(&mut ebpf, loops)?)
                }
            },
        };
        let attachment = Attachment::detect(&mut ebpf, hooks, loops);
        Ok(Probes {
            ebpf,
            attached,
            attachment,
        })
    }

    /// Program@tracepoint pairs attached.
    pub fn attached(&self) -> &[String] {
        &self.attached
    }

    pub fn attachment(&self) -> Attachment {
        self.attachment
    }

    pub fn take_watches(&mut self) -> anyhow::Result<KernelWatches> {
        let mut take = |name: &str| {
            self.ebpf
                .take_map(name)
                .with_context(|| format!("the kernel object has no {name} map"))
        };
        Ok(KernelWatches {
            keys: HashMap::try_from(take("WATCHES")?)?,
            paths: LpmTrie::try_from(take("WATCH_PATHS")?)?,
            ancestors: HashMap::try_from(take("ANCESTORS")?)?,
            current: WatchSet::default(),
        })
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

/// The kernel's three views of the watch set (see `watches`).
pub struct KernelWatches {
    keys: HashMap<MapData, WatchKey, WatchValue>,
    paths: LpmTrie<MapData, [u8; ARG_PATH], WatchValue>,
    ancestors: HashMap<MapData, WatchKey, u32>,
    current: WatchSet,
}

impl KernelWatches {
    /// The set the kernel holds now.
    pub fn current(&self) -> &WatchSet {
        &self.current
    }

    /// Makes the kernel's maps hold `set`: new entries first, then stale
    /// ones removed, so nothing watched in both is ever missing.
    pub fn replace(&mut self, set: WatchSet) -> anyhow::Result<()> {
        for (&(dev, ino), value) in &set.keys {
            self.keys
                .insert(WatchKey { dev, ino }, value, 0)
                .context("cannot update the kernel's watch set")?;
        }
        for (path, value) in &set.paths {
            let Some(key) = trie_key(path) else {
                tracing::warn!(
                    path = %String::from_utf8_lossy(path),
                    "watch path longer than {} bytes: only calls on open files see it",
                    ARG_PATH - 1
                );
                continue;
            };
            self.paths
                .insert(&key, value, 0)
                .context("cannot update the kernel's watched paths")?;
        }
        for &(dev, ino) in &set.ancestors {
            self.ancestors
                .insert(WatchKey { dev, ino }, 1, 0)
                .context("cannot update the kernel's watch ancestors")?;
        }
        for &(dev, ino) in self.current.keys.keys() {
            if !set.keys.contains_key(&(dev, ino)) {
                let _ = self.keys.remove(&WatchKey { dev, ino });
            }
        }
        for path in self.current.paths.keys() {
            if !set.paths.contains_key(path) {
                if let Some(key) = trie_key(path) {
                    let _ = self.paths.remove(&key);
                }
            }
        }
        for &(dev, ino) in &self.current.ancestors {
            if !set.ancestors.contains(&(dev, ino)) {
                let _ = self.ancestors.remove(&WatchKey { dev, ino });
            }
        }
        self.current = set;
        Ok(())
    }
}

fn trie_key(path: &[u8]) -> Option<Key<[u8; ARG_PATH]>> {
    if path.len() > ARG_PATH {
        return None;
    }
    let mut data = [0u8; ARG_PATH];
    data[..path.len()].copy_from_slice(path);
    Some(Key::new(path.len() as u32 * 8, data))
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
            // The verdict comes before the statistics the log ends with.
            let statistics = [
                "verification time",
                "stack depth",
                "processed ",
                "max_states",
            ];
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter(|l| !statistics.iter().any(|s| l.starts_with(s)))
                .collect();
            let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
            format!("{io_error} (verifier: {tail}; DOCKWATCH_LOG=debug shows the whole log)")
        }
        other => other.to_string(),
    }
}
