//! Checks on the host itself: /var/lib/docker's filesystem (CIS 1.1.1), who
//! can control Docker through the docker group (CIS 1.1.2), whether the
//! kernel enforces AppArmor at all, and whether users' sessions turn content
//! trust on (CIS 4.5).

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
    CONTENT_TRUST,
    "4.5",
    true,
    Warn,
    Warning,
    "Ensure Content trust for Docker is Enabled"
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

/// The variable the docker CLI reads: content trust is the client's to
/// enforce (it refuses unsigned images before asking the engine), so what
/// counts is the environment users' sessions get, not dockerd's.
const CONTENT_TRUST_VAR: &str = "DOCKER_CONTENT_TRUST";

/// CIS 4.5: `DOCKER_CONTENT_TRUST=1` in `/etc/environment` (pam_env, every
/// session) or a `/etc/profile.d/*.sh` (every login shell). The last
/// setting read wins, in the order a login shell reads them; a user can
/// still unset it, which is why it is a warning.
pub fn content_trust(host: &HostPaths, out: &mut Vec<Finding>) {
    let key = CONTENT_TRUST_VAR;
    let mut files = vec![host.etc_environment()];
    let mut unreadable = Vec::new();
    match std::fs::read_dir(host.profile_d()) {
        Ok(entries) => {
            let mut scripts: Vec<_> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sh"))
                .collect();
            scripts.sort();
            files.extend(scripts);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => unreadable.push(format!("{}: {e}", host.profile_d().display())),
    }
    let mut setting = None;
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => {
                if let Some(value) = last_assignment(&text, CONTENT_TRUST_VAR) {
                    setting = Some((value, file.clone()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => unreadable.push(format!("{}: {e}", file.display())),
        }
    }
    let finding = match setting {
        Some((value, file)) => CONTENT_TRUST
            .verdict(
                value == "1",
                key,
                json!(value),
                format!("{CONTENT_TRUST_VAR}={value} in {}", file.display()),
            )
            .at(file),
        None if unreadable.is_empty() => CONTENT_TRUST
            .unmet(
                key,
                Value::Null,
                format!(
                    "{CONTENT_TRUST_VAR} is set neither in {} nor in {}/*.sh; \
                     add `export {CONTENT_TRUST_VAR}=1` to one of them",
                    host.etc_environment().display(),
                    host.profile_d().display()
                ),
            )
            .at(host.etc_environment()),
        None => CONTENT_TRUST
            .finding(
                Status::Warn,
                key,
                Value::Null,
                format!("cannot read {}", unreadable.join("; ")),
            )
            .undetermined(),
    };
    out.push(finding);
}

/// The value of the last `NAME=value` (or `export NAME=value`) line of a
/// shell script or pam_env file, quotes removed.
fn last_assignment(text: &str, name: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || !line.contains(name) {
            continue;
        }
        let Some(words) = shlex::split(line) else {
            continue;
        };
        let words = match words.first().map(String::as_str) {
            Some("export") => &words[1..],
            _ => &words[..],
        };
        for word in words {
            if let Some(value) = word
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
            {
                found = Some(value.to_string());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(files: &[(&str, &str)]) -> Finding {
        let root = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = root.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let config = PostureConfig {
            root: root.path().to_path_buf(),
            ..PostureConfig::default()
        };
        let mut out = Vec::new();
        content_trust(&HostPaths::new(&config), &mut out);
        out.pop().unwrap()
    }

    #[test]
    fn content_trust_set_by_a_profile_script_passes() {
        let f = judged(&[
            ("/etc/environment", "PATH=/usr/bin\n"),
            (
                "/etc/profile.d/docker.sh",
                "# trust\nexport DOCKER_CONTENT_TRUST=\"1\"\n",
            ),
        ]);
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(f.evidence.contains("docker.sh"), "{}", f.evidence);
    }

    #[test]
    fn content_trust_unset_or_zero_or_commented_is_a_warning() {
        let f = judged(&[("/etc/environment", "PATH=/usr/bin\n")]);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(
            f.evidence.contains("export DOCKER_CONTENT_TRUST=1"),
            "{}",
            f.evidence
        );
        let f = judged(&[("/etc/environment", "# DOCKER_CONTENT_TRUST=1\n")]);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        // The later profile script undoes pam_env's setting.
        let f = judged(&[
            ("/etc/environment", "DOCKER_CONTENT_TRUST=1\n"),
            (
                "/etc/profile.d/zz-dev.sh",
                "export DOCKER_CONTENT_TRUST=0\n",
            ),
        ]);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert_eq!(f.value, json!("0"));
    }

    #[test]
    fn only_sh_scripts_of_profile_d_count() {
        let f = judged(&[(
            "/etc/profile.d/docker.csh",
            "setenv DOCKER_CONTENT_TRUST=1\n",
        )]);
        assert_eq!(f.status, Status::Warn, "{f:?}");
    }
}
