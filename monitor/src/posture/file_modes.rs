//! CIS section 3: ownership and permissions of Docker's files, sockets and
//! certificates.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::accounts::Accounts;
use super::acl;
use super::daemon_checks::check;
use super::daemon_settings::DaemonSettings;
use super::finding::{Check, Finding, Status};
use super::host::HostPaths;
use super::PostureConfig;
use crate::alert::Severity;

check!(
    SERVICE_OWNER,
    "3.1",
    true,
    Fail,
    Error,
    "Ensure that the docker.service file ownership is set to root:root"
);
check!(
    SERVICE_MODE,
    "3.2",
    true,
    Fail,
    Error,
    "Ensure that docker.service file permissions are appropriately set"
);
check!(
    SOCKET_UNIT_OWNER,
    "3.3",
    true,
    Fail,
    Error,
    "Ensure that docker.socket file ownership is set to root:root"
);
check!(
    SOCKET_UNIT_MODE,
    "3.4",
    true,
    Fail,
    Error,
    "Ensure that docker.socket file permissions are set to 644 or more restrictive"
);
check!(
    ETC_DOCKER_OWNER,
    "3.5",
    true,
    Fail,
    Error,
    "Ensure that the /etc/docker directory ownership is set to root:root"
);
check!(
    ETC_DOCKER_MODE,
    "3.6",
    true,
    Fail,
    Error,
    "Ensure that /etc/docker directory permissions are set to 755 or more restrictively"
);
check!(
    REGISTRY_CERT_OWNER,
    "3.7",
    true,
    Fail,
    Error,
    "Ensure that registry certificate file ownership is set to root:root"
);
check!(
    REGISTRY_CERT_MODE,
    "3.8",
    true,
    Fail,
    Error,
    "Ensure that registry certificate file permissions are set to 444 or more restrictively"
);
check!(
    CA_OWNER,
    "3.9",
    true,
    Fail,
    Error,
    "Ensure that TLS CA certificate file ownership is set to root:root"
);
check!(
    CA_MODE,
    "3.10",
    true,
    Fail,
    Error,
    "Ensure that TLS CA certificate file permissions are set to 444 or more restrictively"
);
check!(
    CERT_OWNER,
    "3.11",
    true,
    Fail,
    Error,
    "Ensure that Docker server certificate file ownership is set to root:root"
);
check!(CERT_MODE, "3.12", true, Fail, Error, "Ensure that the Docker server certificate file permissions are set to 444 or more restrictively");
check!(
    KEY_OWNER,
    "3.13",
    true,
    Fail,
    Critical,
    "Ensure that the Docker server certificate key file ownership is set to root:root"
);
check!(
    KEY_MODE,
    "3.14",
    true,
    Fail,
    Critical,
    "Ensure that the Docker server certificate key file permissions are set to 400"
);
check!(
    SOCK_OWNER,
    "3.15",
    true,
    Fail,
    Critical,
    "Ensure that the Docker socket file ownership is set to root:docker"
);
check!(
    SOCK_MODE,
    "3.16",
    true,
    Fail,
    Critical,
    "Ensure that the Docker socket file permissions are set to 660 or more restrictively"
);
check!(
    DAEMON_JSON_OWNER,
    "3.17",
    true,
    Fail,
    Error,
    "Ensure that the daemon.json file ownership is set to root:root"
);
check!(
    DAEMON_JSON_MODE,
    "3.18",
    true,
    Fail,
    Error,
    "Ensure that daemon.json file permissions are set to 644 or more restrictive"
);
check!(
    DEFAULT_OWNER,
    "3.19",
    true,
    Fail,
    Error,
    "Ensure that the /etc/default/docker file ownership is set to root:root"
);
check!(
    SYSCONFIG_OWNER,
    "3.20",
    true,
    Fail,
    Error,
    "Ensure that the /etc/sysconfig/docker file ownership is set to root:root"
);
check!(
    SYSCONFIG_MODE,
    "3.21",
    true,
    Fail,
    Error,
    "Ensure that the /etc/sysconfig/docker file permissions are set to 644 or more restrictively"
);
check!(
    DEFAULT_MODE,
    "3.22",
    true,
    Fail,
    Error,
    "Ensure that the /etc/default/docker file permissions are set to 644 or more restrictively"
);
check!(
    CONTAINERD_OWNER,
    "3.23",
    true,
    Fail,
    Error,
    "Ensure that the containerd socket file ownership is set to root:root"
);
check!(
    CONTAINERD_MODE,
    "3.24",
    true,
    Fail,
    Error,
    "Ensure that the containerd socket file permissions are set to 660 or more restrictively"
);
// Not CIS: the hardening baseline dockwatch watches asks that only root
// run the docker CLI (744), on top of the socket's own mode.
check!(
    CLI_OWNER,
    "docker-cli-owner",
    false,
    Warn,
    Warning,
    "Ensure that the docker CLI binary is owned by root:root"
);
check!(
    CLI_MODE,
    "docker-cli-mode",
    false,
    Warn,
    Warning,
    "Ensure that the docker CLI binary's permissions are set to 744 or more restrictively"
);

/// Where Debian, Ubuntu, RHEL and Docker's own packages install the CLI.
const DOCKER_CLI: &str = "/usr/bin/docker";

/// The group a file must belong to.
#[derive(Clone, Copy)]
enum WantGroup {
    Root,
    Docker,
}

/// One file (or set of files) and what its owner and mode must be.
struct Target<'a> {
    /// Stable name used in finding keys (`docker.sock`, `daemon.json`).
    label: String,
    /// The file; `None` when it could not even be located.
    path: Option<PathBuf>,
    owner: &'static Check,
    mode: &'static Check,
    /// Most permissive acceptable mode.
    max_mode: u32,
    group: WantGroup,
    /// Why there is no path, for the evidence.
    absent: &'a str,
}

/// Paths section 3 looks at (for watches), given the current settings.
pub fn paths(host: &HostPaths, config: &PostureConfig, settings: &DaemonSettings) -> Vec<PathBuf> {
    let mut out = vec![host.etc_docker(), host.etc_group(), host.etc_passwd()];
    for target in targets(host, config, settings) {
        if let Some(path) = target.path {
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

fn targets<'a>(
    host: &HostPaths,
    config: &PostureConfig,
    settings: &DaemonSettings,
) -> Vec<Target<'a>> {
    let unit = |name: &str| {
        host.unit(name)
            .or_else(|| host.unit_candidates(name).into_iter().nth(1))
    };
    let tls = |key: &str| settings.text(key).map(|p| host.path(p));
    let mut targets = vec![
        target(
            "docker.service",
            unit("docker.service"),
            &SERVICE_OWNER,
            &SERVICE_MODE,
            0o644,
        ),
        target(
            "docker.socket",
            unit("docker.socket"),
            &SOCKET_UNIT_OWNER,
            &SOCKET_UNIT_MODE,
            0o644,
        ),
        target(
            "/etc/docker",
            Some(host.etc_docker()),
            &ETC_DOCKER_OWNER,
            &ETC_DOCKER_MODE,
            0o755,
        ),
        Target {
            absent: "not set in the daemon's configuration",
            ..target("tlscacert", tls("tlscacert"), &CA_OWNER, &CA_MODE, 0o444)
        },
        Target {
            absent: "not set in the daemon's configuration",
            ..target("tlscert", tls("tlscert"), &CERT_OWNER, &CERT_MODE, 0o444)
        },
        Target {
            absent: "not set in the daemon's configuration",
            ..target("tlskey", tls("tlskey"), &KEY_OWNER, &KEY_MODE, 0o400)
        },
        Target {
            group: WantGroup::Docker,
            ..target(
                "docker.sock",
                Some(host.path(&config.docker_socket)),
                &SOCK_OWNER,
                &SOCK_MODE,
                0o660,
            )
        },
        target(
            "daemon.json",
            Some(host.daemon_json()),
            &DAEMON_JSON_OWNER,
            &DAEMON_JSON_MODE,
            0o644,
        ),
        target(
            "/etc/default/docker",
            Some(host.default_docker()),
            &DEFAULT_OWNER,
            &DEFAULT_MODE,
            0o644,
        ),
        target(
            "/etc/sysconfig/docker",
            Some(host.sysconfig_docker()),
            &SYSCONFIG_OWNER,
            &SYSCONFIG_MODE,
            0o644,
        ),
        target(
            "containerd.sock",
            Some(host.path(&config.containerd_socket)),
            &CONTAINERD_OWNER,
            &CONTAINERD_MODE,
            0o660,
        ),
        target(
            "docker CLI",
            Some(host.path(DOCKER_CLI)),
            &CLI_OWNER,
            &CLI_MODE,
            0o744,
        ),
    ];
    let certs_d = host.certs_d();
    for file in files_below(&certs_d) {
        let rel = file
            .strip_prefix(&certs_d)
            .unwrap_or(&file)
            .display()
            .to_string();
        targets.push(target(
            &format!("certs.d/{rel}"),
            Some(file),
            &REGISTRY_CERT_OWNER,
            &REGISTRY_CERT_MODE,
            0o444,
        ));
    }
    targets
}

fn target<'a>(
    label: &str,
    path: Option<PathBuf>,
    owner: &'static Check,
    mode: &'static Check,
    max_mode: u32,
) -> Target<'a> {
    Target {
        label: label.to_string(),
        path,
        owner,
        mode,
        max_mode,
        group: WantGroup::Root,
        absent: "not found",
    }
}

/// Regular files below `dir`, sorted (symlinks are not followed).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => out.push(entry.path()),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

pub fn evaluate(
    host: &HostPaths,
    config: &PostureConfig,
    settings: &DaemonSettings,
    accounts: &Accounts,
    out: &mut Vec<Finding>,
) {
    let start = out.len();
    owners_and_modes(host, config, settings, accounts, out);
    super::finding::sort_by_id(&mut out[start..]);
}

fn owners_and_modes(
    host: &HostPaths,
    config: &PostureConfig,
    settings: &DaemonSettings,
    accounts: &Accounts,
    out: &mut Vec<Finding>,
) {
    let docker_gid = accounts.group(&config.docker_group).map(|g| g.gid);
    for t in targets(host, config, settings) {
        let owner_key = format!("{} owner", t.label);
        let mode_key = format!("{} mode", t.label);
        let Some(path) = &t.path else {
            out.push(
                t.owner
                    .info(owner_key, Value::Null, format!("{}: {}", t.label, t.absent)),
            );
            out.push(
                t.mode
                    .info(mode_key, Value::Null, format!("{}: {}", t.label, t.absent)),
            );
            continue;
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let why = format!("{} does not exist", path.display());
                out.push(t.owner.info(owner_key, Value::Null, why.clone()).at(path));
                out.push(t.mode.info(mode_key, Value::Null, why).at(path));
                continue;
            }
            Err(e) => {
                let why = format!("cannot stat {}: {e}", path.display());
                out.push(t.owner.unmet(owner_key, Value::Null, why.clone()).at(path));
                out.push(t.mode.unmet(mode_key, Value::Null, why).at(path));
                continue;
            }
        };

        let owner = accounts.owner(meta.uid(), meta.gid());
        let (group_ok, want) = match t.group {
            WantGroup::Root => (meta.gid() == 0, "root:root".to_string()),
            WantGroup::Docker => match docker_gid {
                Some(gid) => (meta.gid() == gid, format!("root:{}", config.docker_group)),
                None => (
                    false,
                    format!("root:{} (no such group in /etc/group)", config.docker_group),
                ),
            },
        };
        let owner_ok = meta.uid() == 0 && group_ok;
        let evidence = if owner_ok {
            format!("{} is owned by {owner}", path.display())
        } else {
            format!("{} is owned by {owner}, want {want}", path.display())
        };
        out.push(
            t.owner
                .verdict(owner_ok, owner_key, json!(owner), evidence)
                .at(path),
        );

        let mode = meta.mode() & 0o7777;
        let bits_ok = mode & !t.max_mode == 0;
        let shown = format!("{mode:04o}");
        // An ACL can let others in while the mode bits pass (its mask
        // becomes the group bits); an unreadable one cannot be passed.
        // Entries naming the file's own owner or group add no one.
        let grants = acl::named_grants(path)
            .map(|grants| {
                grants
                    .into_iter()
                    .filter(|g| match g.grantee {
                        acl::Grantee::User(uid) => uid != meta.uid(),
                        acl::Grantee::Group(gid) => gid != meta.gid(),
                    })
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string());
        let mode_ok = bits_ok && matches!(&grants, Ok(g) if g.is_empty());
        let mut evidence = if bits_ok {
            format!("{} has mode {shown}", path.display())
        } else {
            format!(
                "{} has mode {shown}, want {:04o} or stricter",
                path.display(),
                t.max_mode
            )
        };
        match &grants {
            Ok(grants) if !grants.is_empty() => {
                let named: Vec<String> = grants
                    .iter()
                    .map(|g| match g.grantee {
                        acl::Grantee::User(uid) => {
                            format!("user {} {}", accounts.user_name(uid), g.perms_text())
                        }
                        acl::Grantee::Group(gid) => {
                            format!("group {} {}", accounts.group_name(gid), g.perms_text())
                        }
                    })
                    .collect();
                evidence.push_str(&format!(
                    "; its ACL also grants {} (remove with setfacl -b)",
                    named.join(", ")
                ));
            }
            Ok(_) => {}
            Err(e) => evidence.push_str(&format!("; cannot read its ACL: {e}")),
        }
        let finding = if mode_ok {
            t.mode
                .finding(Status::Pass, mode_key, json!(shown), evidence)
        } else {
            t.mode.unmet(mode_key, json!(shown), evidence)
        };
        out.push(finding.at(path));
    }
}
