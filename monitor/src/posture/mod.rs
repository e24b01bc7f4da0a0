//! The hardening baseline: daemon.json, ownership and modes, the docker group,
//! container configs and audit state, with the before→after diff when a
//! watched file changes. It reads files when asked; it watches nothing itself.
//!
//! `dockwatch check` evaluates it once ([`check_command`]); `dockwatch run`
//! keeps a [`Posture`] that reports the findings at start and a
//! `posture_drift` alert whenever an event changes a verdict, on its own
//! thread ([`PostureStage`]) so that no check delays an event.

mod accounts;
mod acl;
mod audit_checks;
mod baseline;
mod containers;
mod daemon_checks;
mod daemon_settings;
mod engine_version;
mod file_modes;
mod finding;
mod host;
mod host_checks;
mod live;
mod report;
mod stage;

use std::path::PathBuf;

use serde::Deserialize;

pub use baseline::{Baseline, Group};
pub use finding::{Check, Finding, Status};
pub use live::Posture;
pub use stage::PostureStage;

/// The `[posture]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostureConfig {
    /// Check the baseline in `run` (at start, on changes, periodically).
    pub enabled: bool,
    /// Root under which every host path is read (an image mounted
    /// elsewhere, a test layout); `/` for the running host.
    pub root: PathBuf,
    /// The group whose members control the daemon.
    pub docker_group: String,
    /// Users allowed in the docker group; anyone else is a finding.
    pub docker_group_members: Vec<String>,
    /// Host devices containers may be given (paths or globs).
    pub allowed_devices: Vec<DevicePattern>,
    /// The Docker daemon's socket.
    pub docker_socket: PathBuf,
    /// containerd's socket.
    pub containerd_socket: PathBuf,
    /// The `auditctl` program asked for the kernel's audit state.
    pub auditctl: PathBuf,
    /// The oldest Docker engine version accepted (CIS 1.2.2), compared with
    /// what the running engine reports.
    pub min_engine_version: EngineVersion,
    /// Seconds between full re-checks in `run`, a safety net for lost
    /// events and for state no file event reports (mounts, audit, sysfs).
    pub recheck_secs: u64,
    /// Milliseconds to wait after the last event on a file before reading
    /// it, so a write in progress is not judged half done.
    pub settle_ms: u64,
}

impl Default for PostureConfig {
    fn default() -> PostureConfig {
        PostureConfig {
            enabled: true,
            root: PathBuf::from("/"),
            docker_group: "docker".to_string(),
            docker_group_members: Vec::new(),
            allowed_devices: ["/dev/dri", "/dev/ion", "/dev/video*"]
                .into_iter()
                .map(|p| DevicePattern(p.to_string()))
                .collect(),
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            containerd_socket: PathBuf::from("/run/containerd/containerd.sock"),
            auditctl: PathBuf::from("auditctl"),
            min_engine_version: EngineVersion::DEFAULT_MINIMUM,
            recheck_secs: 60,
            settle_ms: 150,
        }
    }
}

pub use engine_version::EngineVersion;

/// A device path or glob of `allowed_devices`, checked when the
/// configuration is read so a bad one is reported at its line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DevicePattern(pub String);

impl TryFrom<String> for DevicePattern {
    type Error = String;

    fn try_from(pattern: String) -> Result<DevicePattern, String> {
        if !pattern.starts_with('/') {
            return Err(format!(
                "device {pattern:?} is not an absolute path like /dev/video*"
            ));
        }
        globset::Glob::new(&pattern).map_err(|e| format!("device pattern {pattern:?}: {e}"))?;
        Ok(DevicePattern(pattern))
    }
}

/// `dockwatch check`: prints the report and returns whether a check failed
/// (the command line turns that into its exit code).
pub fn check_command(config: &crate::config::Config, json: bool) -> anyhow::Result<bool> {
    let baseline = Baseline::new(&config.posture)?;
    let findings = baseline.evaluate_all();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        let doc = report::to_json(&findings);
        serde_json::to_writer_pretty(&mut out, &doc)?;
        std::io::Write::write_all(&mut out, b"\n")?;
    } else {
        report::write_table(&mut out, &findings)?;
    }
    Ok(findings.iter().any(|f| f.status == Status::Fail))
}
