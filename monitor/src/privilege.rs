//! Up-front privilege checks, so that a daemon started by the wrong user says
//! which capability it lacks instead of failing later with a bare EPERM from
//! the BPF syscall.

use std::fmt;

/// Capabilities dockwatch may need, by number (linux/capability.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    DacReadSearch = 2,
    SysAdmin = 21,
    AuditControl = 30,
    AuditRead = 37,
    Perfmon = 38,
    Bpf = 39,
}

impl Capability {
    pub const fn name(self) -> &'static str {
        match self {
            Capability::DacReadSearch => "CAP_DAC_READ_SEARCH",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::AuditControl => "CAP_AUDIT_CONTROL",
            Capability::AuditRead => "CAP_AUDIT_READ",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
        }
    }
}

/// What a missing capability would stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub capability: Capability,
    pub needed_for: &'static str,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (needed for {})",
            self.capability.name(),
            self.needed_for
        )
    }
}

/// The effective capability set of this process (from /proc/self/status).
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Which of `wanted` this process lacks.
pub fn missing(wanted: &[(Capability, &'static str)]) -> Vec<Missing> {
    let have = effective();
    wanted
        .iter()
        .filter(|(cap, _)| have & (1u64 << (*cap as u32)) == 0)
        .map(|&(capability, needed_for)| Missing {
            capability,
            needed_for,
        })
        .collect()
}

/// A user-facing error listing every missing capability and the fix.
pub fn require(wanted: &[(Capability, &'static str)]) -> Result<(), crate::config::ConfigError> {
    let missing = missing(wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = missing.iter().map(Missing::to_string).collect();
    Err(crate::config::ConfigError::new(format!(
        "missing privilege: {}; run dockwatch as root (sudo dockwatch ...) or grant these capabilities",
        list.join(", ")
    )))
}
