//! The whole baseline as groups of checks that read the same files, so a
//! change to one file re-evaluates only the checks that depend on it.

use std::path::PathBuf;

use super::accounts::Accounts;
use super::containers::DeviceAllowList;
use super::daemon_settings::DaemonSettings;
use super::finding::Finding;
use super::host::HostPaths;
use super::{
    audit_checks, containers, daemon_checks, engine_version, file_modes, host_checks, PostureConfig,
};

/// Checks evaluated together because they read the same inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// 1.1.1 and host AppArmor: mounts and sysfs, which file events do not
    /// cover; the periodic re-check keeps them current.
    Host,
    /// 1.1.2: /etc/group.
    DockerGroup,
    /// 4.5: the environment users' sessions get.
    Environment,
    /// 1.2.2: the running engine's version, asked on its socket; the
    /// periodic re-check sees an upgrade.
    Engine,
    /// Audit enabled and 1.1.3-1.1.18: the kernel's audit state.
    Audit,
    /// Section 2: daemon.json, docker.service, /etc/default/docker.
    Daemon,
    /// Section 3: owners and modes.
    FileModes,
    /// Section 5: every container's hostconfig.json and config.v2.json.
    Containers,
}

impl Group {
    pub const ALL: [Group; 8] = [
        Group::Host,
        Group::Engine,
        Group::DockerGroup,
        Group::Environment,
        Group::Audit,
        Group::Daemon,
        Group::FileModes,
        Group::Containers,
    ];
}

/// What the baseline reads, and how.
pub struct Baseline {
    pub config: PostureConfig,
    pub host: HostPaths,
    devices: DeviceAllowList,
}

impl Baseline {
    pub fn new(config: &PostureConfig) -> anyhow::Result<Baseline> {
        let devices = DeviceAllowList::new(&config.allowed_devices).map_err(|e| {
            anyhow::anyhow!(
                "posture.allowed_devices: {e}; give device paths or globs like /dev/video*"
            )
        })?;
        Ok(Baseline {
            config: config.clone(),
            host: HostPaths::new(config),
            devices,
        })
    }

    /// Every finding, in report order.
    pub fn evaluate_all(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for group in Group::ALL {
            self.evaluate(group, &mut out);
        }
        out
    }

    pub fn evaluate(&self, group: Group, out: &mut Vec<Finding>) {
        match group {
            Group::Host => {
                host_checks::partition(&self.host, out);
                host_checks::apparmor(&self.host, out);
            }
            Group::DockerGroup => host_checks::docker_group(&self.host, &self.config, out),
            Group::Environment => host_checks::content_trust(&self.host, out),
            Group::Engine => engine_version::evaluate(&self.host, &self.config, out),
            Group::Audit => audit_checks::evaluate(&self.host, &self.config, out),
            Group::Daemon => daemon_checks::evaluate(&DaemonSettings::read(&self.host), out),
            Group::FileModes => {
                let settings = DaemonSettings::read(&self.host);
                let accounts = Accounts::read(&self.host.etc_passwd(), &self.host.etc_group());
                file_modes::evaluate(&self.host, &self.config, &settings, &accounts, out);
            }
            Group::Containers => containers::evaluate(&self.host, &self.config, &self.devices, out),
        }
    }

    /// Section 5 for a container the engine described (its inspect JSON).
    pub fn judge_container(&self, inspect: &serde_json::Value, out: &mut Vec<Finding>) {
        containers::judge_inspect(inspect, &self.config, &self.devices, out);
    }

    /// Files (or directories, with everything below) whose change can
    /// change the group's verdicts.
    pub fn dependencies(&self, group: Group) -> Vec<PathBuf> {
        let host = &self.host;
        match group {
            Group::Host | Group::Audit | Group::Engine => Vec::new(),
            Group::DockerGroup => vec![host.etc_group()],
            Group::Environment => vec![host.etc_environment(), host.profile_d()],
            Group::Daemon => self.daemon_files(),
            Group::FileModes => {
                let settings = DaemonSettings::read(host);
                let mut paths = file_modes::paths(host, &self.config, &settings);
                paths.push(host.certs_d());
                paths.extend(self.daemon_files());
                paths.sort();
                paths.dedup();
                paths
            }
            Group::Containers => vec![host.containers_dir()],
        }
    }

    fn daemon_files(&self) -> Vec<PathBuf> {
        let host = &self.host;
        let mut paths = vec![
            host.daemon_json(),
            host.default_docker(),
            host.sysconfig_docker(),
        ];
        paths.extend(host.unit_candidates("docker.service"));
        paths.extend(host.unit_dropin_dirs("docker.service"));
        paths
    }
}
