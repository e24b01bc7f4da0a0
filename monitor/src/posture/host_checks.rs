//! Checks on the host itself: /var/lib/docker's filesystem (CIS 1.1.1), who
//! can control Docker through the docker group (CIS 1.1.2), and whether the
//! kernel enforces AppArmor at all.

use std::os::unix::fs::MetadataExt;

use serde_json::{json, Value};

use super::accounts::parse_group;
use super::daemon_checks::check;
use super::finding::{Check, Finding, Status};
use super::host::HostPaths;
use super::PostureConfig;
use crate::alert::Severity;

check!(
    PARTITION,
    "1.1.1",
    true,
    Warn,
    Notice,
    "Ensure a separate partition for containers has been created"
);
check!(
    DOCKER_GROUP,
    "1.1.2",
    true,
    Warn,
    Warning,
    "Ensure only trusted users are allowed to control Docker daemon"
);
check!(
    APPARMOR,
    "apparmor",
    false,
    Warn,
    Warning,
    "Ensure AppArmor is enabled on the host"
);

pub fn partition(host: &HostPaths, out: &mut Vec<Finding>) {
    let dir = host.var_lib_docker();
    let key = "/var/lib/docker filesystem";
    let finding = match (std::fs::metadata(&dir), dir.parent().map(std::fs::metadata)) {
        (Ok(meta), Some(Ok(parent))) => {
            let separate = meta.dev() != parent.dev();
            PARTITION.verdict(
                separate,
                key,
                json!(separate),
                if separate {
                    format!("{} is a filesystem of its own", dir.display())
                } else {
                    format!("{} is on the same filesystem as its parent", dir.display())
                },
            )
        }
        (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => PARTITION.unmet(
            key,
            Value::Null,
            format!("{} does not exist", dir.display()),
        ),
        (Err(e), _) | (_, Some(Err(e))) => PARTITION.unmet(
            key,
            Value::Null,
            format!("cannot stat {}: {e}", dir.display()),
        ),
        (Ok(_), None) => {
            PARTITION.unmet(key, Value::Null, format!("{} has no parent", dir.display()))
        }
    };
    out.push(finding.at(dir));
}

pub fn docker_group(host: &HostPaths, config: &PostureConfig, out: &mut Vec<Finding>) {
    let path = host.etc_group();
    let key = format!("{} group members", config.docker_group);
    let finding = match std::fs::read_to_string(&path) {
        Err(e) => DOCKER_GROUP.unmet(
            key,
            Value::Null,
            format!("cannot read {}: {e}", path.display()),
        ),
        Ok(text) => {
            let groups = parse_group(&text);
            match groups.iter().find(|g| g.name == config.docker_group) {
                None => DOCKER_GROUP.pass(
                    key,
                    json!([]),
                    format!("no {} group in {}", config.docker_group, path.display()),
                ),
                Some(group) => {
                    let extra: Vec<&String> = group
                        .members
                        .iter()
                        .filter(|m| !config.docker_group_members.contains(m))
                        .collect();
                    let evidence = if group.members.is_empty() {
                        format!("the {} group has no members", group.name)
                    } else if extra.is_empty() {
                        format!(
                            "{} group: {} (all allowed)",
                            group.name,
                            group.members.join(", ")
                        )
                    } else {
                        format!(
                            "{} group: {}; not in posture.docker_group_members: {}",
                            group.name,
                            group.members.join(", "),
                            extra
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    DOCKER_GROUP.verdict(extra.is_empty(), key, json!(group.members), evidence)
                }
            }
        }
    };
    out.push(finding.at(path));
}

pub fn apparmor(host: &HostPaths, out: &mut Vec<Finding>) {
    let path = host.apparmor_enabled();
    let key = "apparmor";
    let finding = match std::fs::read_to_string(&path) {
        Ok(text) if text.trim() == "Y" => {
            APPARMOR.pass(key, json!(true), "the kernel enforces AppArmor")
        }
        Ok(text) => APPARMOR.unmet(
            key,
            json!(false),
            format!(
                "AppArmor is disabled ({} is {:?})",
                path.display(),
                text.trim()
            ),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => APPARMOR.unmet(
            key,
            json!(false),
            format!(
                "AppArmor is not available ({} does not exist)",
                path.display()
            ),
        ),
        Err(e) => APPARMOR.finding(
            Status::Warn,
            key,
            Value::Null,
            format!("cannot read {}: {e}", path.display()),
        ),
    };
    out.push(finding);
}
