//! CIS 1.1.3 to 1.1.18: the kernel audit subsystem is enabled and watches
//! every Docker file and directory the benchmark names. The state comes
//! from `auditctl -s` and `auditctl -l`, i.e. what the kernel has loaded,
//! not what a rules file says.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::daemon_checks::check;
use super::finding::{Check, Finding, Status};
use super::host::HostPaths;
use super::PostureConfig;
use crate::alert::Severity;

check!(
    ENABLED,
    "audit-enabled",
    false,
    Warn,
    Warning,
    "Ensure the kernel audit subsystem is enabled"
);
check!(
    IMMUTABLE,
    "audit-immutable",
    false,
    Warn,
    Notice,
    "Ensure the audit rules are locked (-e 2) so they cannot be deleted while the host runs"
);
check!(
    DOCKERD,
    "1.1.3",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for the Docker daemon"
);
check!(
    RUN_CONTAINERD,
    "1.1.4",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /run/containerd"
);
check!(
    VAR_LIB_DOCKER,
    "1.1.5",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /var/lib/docker"
);
check!(
    ETC_DOCKER,
    "1.1.6",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /etc/docker"
);
check!(
    SERVICE,
    "1.1.7",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - docker.service"
);
check!(
    CONTAINERD_SOCK,
    "1.1.8",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - containerd.sock"
);
check!(
    SOCKET_UNIT,
    "1.1.9",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - docker.socket"
);
check!(
    DEFAULT_DOCKER,
    "1.1.10",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /etc/default/docker"
);
check!(
    DAEMON_JSON,
    "1.1.11",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /etc/docker/daemon.json"
);
check!(
    CONTAINERD_TOML,
    "1.1.12",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /etc/containerd/config.toml"
);
check!(
    SYSCONFIG,
    "1.1.13",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /etc/sysconfig/docker"
);
check!(
    CONTAINERD,
    "1.1.14",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /usr/bin/containerd"
);
check!(
    SHIM,
    "1.1.15",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /usr/bin/containerd-shim"
);
check!(SHIM_V1, "1.1.16", true, Warn, Notice, "Ensure auditing is configured for Docker files and directories - /usr/bin/containerd-shim-runc-v1");
check!(SHIM_V2, "1.1.17", true, Warn, Notice, "Ensure auditing is configured for Docker files and directories - /usr/bin/containerd-shim-runc-v2");
check!(
    RUNC,
    "1.1.18",
    true,
    Warn,
    Notice,
    "Ensure auditing is configured for Docker files and directories - /usr/bin/runc"
);

/// What the kernel's audit subsystem has loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditState {
    /// `auditctl -s`'s `enabled` (0 off, 1 on, 2 locked on).
    pub enabled: Option<u8>,
    /// Paths under a file-system watch (`-w`, `-F path=`, `-F dir=`).
    pub watched: Vec<PathBuf>,
}

impl AuditState {
    /// Asks the kernel through `auditctl`.
    pub fn query(auditctl: &Path) -> Result<AuditState, String> {
        let status = run(auditctl, "-s")?;
        let rules = run(auditctl, "-l")?;
        Ok(AuditState::parse(&status, &rules))
    }

    pub fn parse(status: &str, rules: &str) -> AuditState {
        let enabled = status
            .lines()
            .find_map(|l| l.strip_prefix("enabled "))
            .and_then(|v| v.trim().parse().ok());
        let mut watched = Vec::new();
        for line in rules.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            for (i, word) in words.iter().enumerate() {
                let path = if *word == "-w" {
                    words.get(i + 1).copied()
                } else if *word == "-F" {
                    words
                        .get(i + 1)
                        .and_then(|f| f.strip_prefix("path=").or_else(|| f.strip_prefix("dir=")))
                } else {
                    None
                };
                if let Some(path) = path {
                    let trimmed = path.trim_end_matches('/');
                    watched.push(PathBuf::from(if trimmed.is_empty() {
                        "/"
                    } else {
                        trimmed
                    }));
                }
            }
        }
        AuditState { enabled, watched }
    }

    /// `path` is watched itself or lies below a watched directory.
    fn covers(&self, path: &Path) -> bool {
        self.watched.iter().any(|w| path.starts_with(w))
    }
}

fn run(auditctl: &Path, arg: &str) -> Result<String, String> {
    let out = Command::new(auditctl)
        .arg(arg)
        .output()
        .map_err(|e| format!("cannot run {} {arg}: {e}", auditctl.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {arg} failed: {}",
            auditctl.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The CIS 1.1.x paths, each with the places it may be installed.
fn watched_paths(host: &HostPaths, config: &PostureConfig) -> Vec<(&'static Check, Vec<PathBuf>)> {
    let one = |p: &str| vec![host.path(p)];
    let bins = |name: &str| {
        vec![
            host.path(format!("/usr/bin/{name}")),
            host.path(format!("/usr/sbin/{name}")),
            host.path(format!("/usr/local/bin/{name}")),
        ]
    };
    // The engine that runs is the one to watch: Debian installs it in
    // /usr/sbin, others in /usr/bin, a hand install anywhere, and a stale
    // copy elsewhere that happens to be watched proves nothing.
    let dockerd = match host.is_live().then(running_dockerd).flatten() {
        Some(exe) => vec![exe],
        None => bins("dockerd"),
    };
    vec![
        (&DOCKERD, dockerd),
        (&RUN_CONTAINERD, one("/run/containerd")),
        (&VAR_LIB_DOCKER, one("/var/lib/docker")),
        (&ETC_DOCKER, one("/etc/docker")),
        (&SERVICE, host.unit_candidates("docker.service")),
        (&CONTAINERD_SOCK, vec![host.path(&config.containerd_socket)]),
        (&SOCKET_UNIT, host.unit_candidates("docker.socket")),
        (&DEFAULT_DOCKER, one("/etc/default/docker")),
        (&DAEMON_JSON, one("/etc/docker/daemon.json")),
        (&CONTAINERD_TOML, one("/etc/containerd/config.toml")),
        (&SYSCONFIG, one("/etc/sysconfig/docker")),
        (&CONTAINERD, bins("containerd")),
        (&SHIM, bins("containerd-shim")),
        (&SHIM_V1, bins("containerd-shim-runc-v1")),
        (&SHIM_V2, bins("containerd-shim-runc-v2")),
        (
            &RUNC,
            vec![
                host.path("/usr/bin/runc"),
                host.path("/usr/sbin/runc"),
                host.path("/usr/local/bin/runc"),
            ],
        ),
    ]
}

/// The executable of a running `dockerd`, from `/proc/PID/exe` (an engine
/// upgraded under it shows as ` (deleted)`, which is cut off: the new
/// binary at that path is what the next start runs).
fn running_dockerd() -> Option<PathBuf> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().as_bytes().iter().all(u8::is_ascii_digit))
        .find(|e| std::fs::read(e.path().join("comm")).is_ok_and(|c| c == b"dockerd\n"))
        .and_then(|e| std::fs::read_link(e.path().join("exe")).ok())
        .map(|exe| {
            let text = exe.as_os_str().as_bytes();
            match text.strip_suffix(b" (deleted)") {
                Some(kept) => PathBuf::from(std::ffi::OsStr::from_bytes(kept)),
                None => exe,
            }
        })
}

pub fn evaluate(host: &HostPaths, config: &PostureConfig, out: &mut Vec<Finding>) {
    let state = AuditState::query(&config.auditctl);
    evaluate_state(host, config, state, out);
}

pub fn evaluate_state(
    host: &HostPaths,
    config: &PostureConfig,
    state: Result<AuditState, String>,
    out: &mut Vec<Finding>,
) {
    let state = match state {
        Ok(state) => state,
        Err(why) => {
            out.push(ENABLED.finding(Status::Warn, "audit", Value::Null, why.clone()));
            for (check, _) in watched_paths(host, config) {
                let why = format!("unknown: {why}");
                out.push(check.info("audit watch", Value::Null, why).undetermined());
            }
            return;
        }
    };
    out.push(match state.enabled {
        Some(n) if n > 0 => ENABLED.pass("audit", json!(n), format!("audit is enabled ({n})")),
        Some(n) => ENABLED.unmet(
            "audit",
            json!(n),
            "audit is disabled (auditctl -s: enabled 0)",
        ),
        None => ENABLED.unmet("audit", Value::Null, "auditctl -s did not report `enabled`"),
    });
    // Unlocked rules are one `auditctl -D` away from gone; an attacker with
    // root deletes the watches before touching what they guard.
    match state.enabled {
        Some(2) => out.push(IMMUTABLE.pass(
            "audit rules locked",
            json!(2),
            "audit rules are locked until reboot (enabled 2)",
        )),
        Some(n) => out.push(IMMUTABLE.unmet(
            "audit rules locked",
            json!(n),
            format!(
                "audit rules can be changed at run time (enabled {n}); \
                 end the audit rules file with -e 2 to lock them until reboot"
            ),
        )),
        None => {}
    }
    for (check, candidates) in watched_paths(host, config) {
        let present: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
        let finding = if present.is_empty() {
            check.info(
                "audit watch",
                Value::Null,
                format!("{} does not exist", candidates[0].display()),
            )
        } else if let Some(path) = present.iter().find(|p| state.covers(p)) {
            check.pass(
                "audit watch",
                json!(true),
                format!("{} is watched", path.display()),
            )
        } else {
            check.unmet(
                "audit watch",
                json!(false),
                format!(
                    "no audit rule watches {} (add -w {} -p wa)",
                    present[0].display(),
                    present[0].display()
                ),
            )
        };
        out.push(finding.at(present.first().map_or(&candidates[0], |p| *p)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_come_from_every_rule_form() {
        let state = AuditState::parse(
            "enabled 1\nfailure 1\npid 42\n",
            "-w /etc/docker/ -p wa -k docker\n\
             -a always,exit -F arch=b64 -S all -F path=/usr/bin/dockerd -F perm=wa -k docker\n\
             -a always,exit -F dir=/var/lib/docker -F perm=wa\n",
        );
        assert_eq!(state.enabled, Some(1));
        assert!(state.covers(Path::new("/etc/docker/daemon.json")));
        assert!(state.covers(Path::new("/usr/bin/dockerd")));
        assert!(state.covers(Path::new("/var/lib/docker")));
        assert!(!state.covers(Path::new("/etc/dockerx")));
        assert!(!state.covers(Path::new("/usr/bin/runc")));
        let none = AuditState::parse("enabled 0\n", "No rules\n");
        assert_eq!((none.enabled, none.watched.len()), (Some(0), 0));
    }

    fn locked_finding(status: &str) -> Finding {
        let config = PostureConfig::default();
        let mut out = Vec::new();
        let state = AuditState::parse(status, "");
        evaluate_state(&HostPaths::new(&config), &config, Ok(state), &mut out);
        out.into_iter()
            .find(|f| f.check.id == "audit-immutable")
            .expect("an audit-immutable finding")
    }

    #[test]
    fn unlocked_rules_are_a_warning_that_names_minus_e_2() {
        let unlocked = locked_finding("enabled 1\n");
        assert_eq!(unlocked.status, Status::Warn);
        assert!(unlocked.evidence.contains("-e 2"), "{}", unlocked.evidence);
        assert_eq!(locked_finding("enabled 2\n").status, Status::Pass);
    }

    /// Debian's docker.io installs the engine in /usr/sbin: a watch there
    /// passes 1.1.3, and none fails it (it is not "not installed").
    #[test]
    fn dockerd_in_usr_sbin_is_the_one_judged() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/sbin")).unwrap();
        std::fs::write(root.path().join("usr/sbin/dockerd"), "").unwrap();
        let config = PostureConfig {
            root: root.path().to_path_buf(),
            ..PostureConfig::default()
        };
        let host = HostPaths::new(&config);
        let sbin = root.path().join("usr/sbin/dockerd");
        let judged = |rules: &str| {
            let mut out = Vec::new();
            let state = AuditState::parse("enabled 1\n", rules);
            evaluate_state(&host, &config, Ok(state), &mut out);
            out.into_iter()
                .find(|f| f.check.id == "1.1.3")
                .expect("a 1.1.3 finding")
        };
        let unwatched = judged("No rules\n");
        assert_eq!(unwatched.status, Status::Warn, "{unwatched:?}");
        assert!(
            unwatched.evidence.contains("usr/sbin/dockerd"),
            "{}",
            unwatched.evidence
        );
        let watched = judged(&format!("-w {} -p wa -k docker\n", sbin.display()));
        assert_eq!(watched.status, Status::Pass, "{watched:?}");
    }
}
