//! CIS section 5 for each container, read from Docker's own state files:
//! `/var/lib/docker/containers/<id>/hostconfig.json` (what `docker run`
//! asked for) and `config.v2.json` (name, AppArmor profile, mounts,
//! no-new-privileges as the daemon settled them). No Docker API is needed,
//! so this works while the daemon is down and sees what it will load.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use serde_json::{json, Value};

use super::daemon_checks::check;
use super::finding::{Check, Finding, Status};
use super::host::HostPaths;
use super::{DevicePattern, PostureConfig};
use crate::alert::Severity;

check!(
    READABLE,
    "container-config",
    false,
    Warn,
    Warning,
    "Ensure container configuration files can be read and parsed"
);
check!(
    APPARMOR,
    "5.1",
    true,
    Fail,
    Error,
    "Ensure that, if applicable, an AppArmor Profile is enabled"
);
check!(
    PRIVILEGED,
    "5.4",
    true,
    Fail,
    Critical,
    "Ensure that privileged containers are not used"
);
check!(
    HOST_DEV,
    "5.5",
    true,
    Fail,
    Critical,
    "Ensure sensitive host system directories are not mounted on containers (/dev)"
);
check!(
    SENSITIVE_DIRS,
    "5.5",
    true,
    Fail,
    Critical,
    "Ensure sensitive host system directories are not mounted on containers"
);
check!(
    CAPABILITIES,
    "5.3",
    true,
    Fail,
    Error,
    "Ensure that Linux kernel capabilities are restricted within containers"
);
check!(
    HOST_NETWORK,
    "5.9",
    true,
    Fail,
    Error,
    "Ensure that the host's network namespace is not shared"
);
check!(
    HOST_PID,
    "5.15",
    true,
    Fail,
    Error,
    "Ensure that the host's process namespace is not shared"
);
check!(
    HOST_IPC,
    "5.16",
    true,
    Fail,
    Error,
    "Ensure that the host's IPC namespace is not shared"
);
check!(
    HOST_UTS,
    "5.20",
    true,
    Fail,
    Error,
    "Ensure that the host's UTS namespace is not shared"
);
check!(
    SECCOMP,
    "5.21",
    true,
    Fail,
    Error,
    "Ensure the default seccomp profile is not disabled"
);
check!(
    HOST_USERNS,
    "5.30",
    true,
    Fail,
    Error,
    "Ensure that the host's user namespaces are not shared"
);
check!(
    ALL_INTERFACES,
    "5.13",
    true,
    Warn,
    Warning,
    "Ensure that incoming container traffic is bound to a specific host interface"
);
check!(
    DEVICES,
    "5.17",
    true,
    Fail,
    Error,
    "Ensure that host devices are not directly exposed to containers"
);
check!(
    NEW_PRIVILEGES,
    "5.25",
    true,
    Warn,
    Warning,
    "Ensure that the container is restricted from acquiring additional privileges"
);
check!(
    DOCKER_SOCK,
    "5.31",
    true,
    Fail,
    Critical,
    "Ensure that the Docker socket is not mounted inside any containers"
);

/// The two state files' names; the only files in a container directory
/// whose changes matter here (the log files change all the time).
pub const STATE_FILES: &[&str] = &["hostconfig.json", "config.v2.json"];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfig {
    privileged: bool,
    binds: Option<Vec<String>>,
    mounts: Option<Vec<MountSpec>>,
    devices: Option<Vec<Device>>,
    security_opt: Option<Vec<String>>,
    port_bindings: Option<std::collections::BTreeMap<String, Option<Vec<PortBinding>>>>,
    network_mode: String,
    pid_mode: String,
    ipc_mode: String,
    userns_mode: String,
    #[serde(rename = "UTSMode")]
    uts_mode: String,
    cap_add: Option<Vec<String>>,
}

/// Host directories whose bind mount hands a container the host (CIS 5.5);
/// `/dev` has a check of its own.
const SENSITIVE: &[&str] = &["/", "/boot", "/etc", "/lib", "/proc", "/sys", "/usr"];

/// Capabilities that, added to a container, let it reach the host: mount,
/// trace host processes, load modules, rewire the network, read any file.
const RISKY_CAPS: &[&str] = &[
    "ALL",
    "SYS_ADMIN",
    "SYS_PTRACE",
    "SYS_MODULE",
    "NET_ADMIN",
    "DAC_READ_SEARCH",
    "SYS_RAWIO",
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct MountSpec {
    source: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Device {
    path_on_host: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PortBinding {
    host_ip: String,
    host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerState {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "AppArmorProfile")]
    apparmor_profile: Option<String>,
    #[serde(rename = "NoNewPrivileges")]
    no_new_privileges: Option<bool>,
    #[serde(rename = "MountPoints")]
    mount_points: Option<std::collections::BTreeMap<String, MountSpec>>,
}

/// Device paths containers may be given (`/dev/dri`, `/dev/video*`), with
/// everything below a listed directory allowed too.
pub struct DeviceAllowList {
    globs: GlobSet,
    dirs: Vec<String>,
}

impl DeviceAllowList {
    pub fn new(patterns: &[DevicePattern]) -> Result<DeviceAllowList, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            builder.add(Glob::new(&pattern.0)?);
        }
        Ok(DeviceAllowList {
            globs: builder.build()?,
            dirs: patterns
                .iter()
                .map(|p| p.0.trim_end_matches('/').to_string())
                .collect(),
        })
    }

    pub fn allows(&self, device: &str) -> bool {
        self.globs.is_match(device)
            || self.dirs.iter().any(|d| {
                device
                    .strip_prefix(d.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
    }
}

/// The container directories (sorted, so reports are stable).
fn container_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{}: invalid JSON at line {} column {}: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

pub fn evaluate(
    host: &HostPaths,
    config: &PostureConfig,
    allowed: &DeviceAllowList,
    out: &mut Vec<Finding>,
) {
    let root = host.containers_dir();
    let dirs = match container_dirs(&root) {
        Ok(dirs) => dirs,
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                format!("{} does not exist: no containers to check", root.display())
            } else {
                format!("cannot list {}: {e}", root.display())
            };
            let status = if e.kind() == std::io::ErrorKind::NotFound {
                Status::Info
            } else {
                READABLE.unmet
            };
            out.push(
                READABLE
                    .finding(status, "containers", Value::Null, why)
                    .at(root),
            );
            return;
        }
    };
    for dir in dirs {
        container(&dir, config, allowed, out);
    }
}

fn container(
    dir: &Path,
    config: &PostureConfig,
    allowed: &DeviceAllowList,
    out: &mut Vec<Finding>,
) {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let host_config_path = dir.join("hostconfig.json");
    let state_path = dir.join("config.v2.json");
    let host_config = read_json::<HostConfig>(&host_config_path);
    let state = read_json::<ContainerState>(&state_path);
    let short = &id[..id.len().min(12)];
    let (host_config, state) = match (host_config, state) {
        (Ok(None), Ok(None)) => return, // not a container (yet)
        (Ok(h), Ok(s)) => (h.unwrap_or_default(), s.unwrap_or_default()),
        (Err(why), _) | (_, Err(why)) => {
            out.push(
                READABLE
                    .unmet(format!("{short} config"), json!("unreadable"), why)
                    .at(dir),
            );
            return;
        }
    };
    let start = out.len();
    judge(short, host_config, state, config, allowed, out);
    for finding in &mut out[start..] {
        finding.path = Some(host_config_path.clone());
    }
}

/// Section 5 for a container the engine just described (`docker inspect`'s
/// JSON, as source::docker passes it on): the same checks as for its state
/// files, before the container has run.
pub fn judge_inspect(
    inspect: &Value,
    config: &PostureConfig,
    allowed: &DeviceAllowList,
    out: &mut Vec<Finding>,
) {
    let id = inspect["Id"].as_str().unwrap_or_default();
    let short = &id[..id.len().min(12)];
    let host_config = HostConfig::deserialize(&inspect["HostConfig"]).unwrap_or_default();
    // Inspect lists mounts as an array where config.v2.json keys them by
    // destination; only their sources are judged.
    let mount_points = Vec::<MountSpec>::deserialize(&inspect["Mounts"])
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, m)| (i.to_string(), m))
        .collect();
    let state = ContainerState {
        name: inspect["Name"].as_str().unwrap_or_default().to_string(),
        apparmor_profile: inspect["AppArmorProfile"].as_str().map(str::to_string),
        no_new_privileges: None,
        mount_points: Some(mount_points),
    };
    judge(short, host_config, state, config, allowed, out);
}

/// Every section 5 check of one container.
fn judge(
    short: &str,
    host_config: HostConfig,
    state: ContainerState,
    config: &PostureConfig,
    allowed: &DeviceAllowList,
    out: &mut Vec<Finding>,
) {
    let name = state.name.trim_start_matches('/');
    let label = if name.is_empty() {
        short.to_string()
    } else {
        format!("{name} ({short})")
    };
    let key = |what: &str| format!("{label}: {what}");

    out.push(PRIVILEGED.verdict(
        !host_config.privileged,
        key("privileged"),
        json!(host_config.privileged),
        format!(
            "{label} runs {}privileged",
            if host_config.privileged { "" } else { "un" }
        ),
    ));

    let sources = mount_sources(&host_config, &state);
    let dev: Vec<&String> = sources
        .iter()
        .filter(|s| *s == "/dev" || *s == "/")
        .collect();
    out.push(HOST_DEV.verdict(
        dev.is_empty(),
        key("/dev mounted"),
        json!(dev),
        if dev.is_empty() {
            format!("{label} does not mount the host's /dev")
        } else {
            format!("{label} mounts the host's {}", join(&dev))
        },
    ));
    let sensitive: Vec<&String> = sources
        .iter()
        .filter(|s| SENSITIVE.contains(&s.as_str()))
        .collect();
    out.push(SENSITIVE_DIRS.verdict(
        sensitive.is_empty(),
        key("host dirs mounted"),
        json!(sensitive),
        if sensitive.is_empty() {
            format!("{label} mounts no sensitive host directory")
        } else {
            format!("{label} mounts the host's {}", join(&sensitive))
        },
    ));
    for (check, what, mode) in [
        (&HOST_NETWORK, "network", &host_config.network_mode),
        (&HOST_PID, "pid", &host_config.pid_mode),
        (&HOST_IPC, "ipc", &host_config.ipc_mode),
        (&HOST_UTS, "uts", &host_config.uts_mode),
        (&HOST_USERNS, "userns", &host_config.userns_mode),
    ] {
        let shared = mode == "host";
        out.push(check.verdict(
            !shared,
            key(&format!("{what} namespace")),
            json!(mode),
            if shared {
                format!("{label} shares the host's {what} namespace")
            } else {
                format!("{label} has its own {what} namespace")
            },
        ));
    }
    let caps: Vec<String> = host_config
        .cap_add
        .iter()
        .flatten()
        .map(|c| c.to_ascii_uppercase())
        .map(|c| c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c))
        .filter(|c| RISKY_CAPS.contains(&c.as_str()))
        .collect();
    out.push(CAPABILITIES.verdict(
        caps.is_empty(),
        key("added capabilities"),
        json!(caps),
        if caps.is_empty() {
            format!("{label} adds no capability that reaches the host")
        } else {
            format!("{label} adds {}", caps.join(", "))
        },
    ));
    let socket = config.docker_socket.to_string_lossy();
    let sock: Vec<&String> = sources
        .iter()
        .filter(|s| {
            matches!(
                s.as_str(),
                "/" | "/run" | "/var/run" | "/run/docker.sock" | "/var/run/docker.sock"
            ) || **s == socket
        })
        .collect();
    out.push(DOCKER_SOCK.verdict(
        sock.is_empty(),
        key("docker.sock mounted"),
        json!(sock),
        if sock.is_empty() {
            format!("{label} does not mount the Docker socket")
        } else {
            format!("{label} mounts {} (the Docker socket)", join(&sock))
        },
    ));

    let devices: Vec<String> = host_config
        .devices
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.path_on_host)
        .filter(|p| !allowed.allows(p))
        .collect();
    out.push(DEVICES.verdict(
        devices.is_empty(),
        key("devices"),
        json!(devices),
        if devices.is_empty() {
            format!("{label} has no host device beyond the allowed list")
        } else {
            format!("{label} has host devices {}", devices.join(", "))
        },
    ));

    let security_opt = host_config.security_opt.unwrap_or_default();
    let opt = |name: &str| {
        security_opt.iter().find_map(|o| {
            let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), "true"));
            (k == name).then(|| v.to_string())
        })
    };
    let profile = opt("apparmor")
        .or(state.apparmor_profile.clone())
        .filter(|p| !p.is_empty());
    let unconfined = profile.as_deref() == Some("unconfined");
    out.push(APPARMOR.verdict(
        !unconfined,
        key("apparmor profile"),
        json!(profile),
        match &profile {
            Some(p) => format!("{label} runs with AppArmor profile {p}"),
            None => format!("{label} sets no AppArmor profile (Docker's default applies)"),
        },
    ));

    let seccomp = opt("seccomp").filter(|p| !p.is_empty());
    let no_seccomp = seccomp.as_deref() == Some("unconfined");
    out.push(SECCOMP.verdict(
        !no_seccomp,
        key("seccomp profile"),
        json!(seccomp),
        match &seccomp {
            Some(p) => format!("{label} runs with seccomp profile {p}"),
            None => format!("{label} keeps Docker's default seccomp profile"),
        },
    ));

    let nnp = opt("no-new-privileges")
        .map(|v| v == "true")
        .unwrap_or(false)
        || state.no_new_privileges.unwrap_or(false);
    out.push(NEW_PRIVILEGES.verdict(
        nnp,
        key("no-new-privileges"),
        json!(nnp),
        format!(
            "{label} has no-new-privileges {}",
            if nnp { "on" } else { "off" }
        ),
    ));

    let mut open = Vec::new();
    for (port, bindings) in host_config.port_bindings.unwrap_or_default() {
        for b in bindings.unwrap_or_default() {
            if matches!(b.host_ip.as_str(), "" | "0.0.0.0" | "::" | "[::]") {
                let ip = if b.host_ip.is_empty() {
                    "0.0.0.0"
                } else {
                    b.host_ip.as_str()
                };
                open.push(format!("{ip}:{}->{port}", b.host_port));
            }
        }
    }
    out.push(ALL_INTERFACES.verdict(
        open.is_empty(),
        key("ports on all interfaces"),
        json!(open),
        if open.is_empty() {
            format!("{label} publishes no port on all interfaces")
        } else {
            format!("{label} publishes {}", open.join(", "))
        },
    ));
}

/// Host paths mounted into the container, normalized (no trailing slash).
fn mount_sources(host_config: &HostConfig, state: &ContainerState) -> Vec<String> {
    let mut sources: Vec<String> = Vec::new();
    for bind in host_config.binds.iter().flatten() {
        if let Some(source) = bind.split(':').next() {
            sources.push(source.to_string());
        }
    }
    for mount in host_config.mounts.iter().flatten() {
        sources.push(mount.source.clone());
    }
    for mount in state.mount_points.iter().flat_map(|m| m.values()) {
        sources.push(mount.source.clone());
    }
    let mut normalized: Vec<String> = sources
        .into_iter()
        .filter(|s| s.starts_with('/'))
        .map(|s| {
            let t = s.trim_end_matches('/');
            if t.is_empty() {
                "/".to_string()
            } else {
                t.to_string()
            }
        })
        .collect();
    normalized.sort();
    normalized.dedup();
    normalized
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_allow_list_takes_globs_and_directories() {
        let list = DeviceAllowList::new(&PostureConfig::default().allowed_devices).unwrap();
        assert!(list.allows("/dev/dri"));
        assert!(list.allows("/dev/dri/renderD128"));
        assert!(list.allows("/dev/video0"));
        assert!(!list.allows("/dev/sda"));
        assert!(!list.allows("/dev/drix"));
    }
}
