//! `dockwatch check` against Docker layouts the tests build: every check
//! passes where it should and fails where it should, with the evidence a
//! person needs. Most layouts live under a private root (`[posture] root`),
//! so they need no machine lock; the tests that touch real paths
//! (/etc/group, the kernel's audit rules) take it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use dockwatch_tests::auditd::Auditd;
use dockwatch_tests::{machine_lock, run_cli};
use serde_json::{json, Value};

/// A private host root: files are written below it and the baseline reads
/// only there.
struct Root {
    dir: tempfile::TempDir,
    extra_config: String,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::Builder::new()
                .prefix("dockwatch-posture")
                .tempdir()
                .expect("tempdir"),
            extra_config: String::new(),
        }
    }

    fn path(&self, host_path: &str) -> PathBuf {
        self.dir.path().join(host_path.trim_start_matches('/'))
    }

    fn file(&self, host_path: &str, contents: &str) -> PathBuf {
        let path = self.path(host_path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn chmod(&self, host_path: &str, mode: u32) {
        std::fs::set_permissions(self.path(host_path), std::fs::Permissions::from_mode(mode))
            .unwrap();
    }

    fn chown(&self, host_path: &str, uid: u32, gid: u32) {
        std::os::unix::fs::chown(self.path(host_path), Some(uid), Some(gid)).unwrap();
    }

    /// Copies a container fixture to var/lib/docker/containers/<id>.
    fn container(&self, fixture: &str, id: &str) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/posture/containers")
            .join(fixture);
        for name in ["hostconfig.json", "config.v2.json"] {
            let text = std::fs::read_to_string(src.join(name))
                .unwrap()
                .replace("ID_PLACEHOLDER", id);
            self.file(&format!("/var/lib/docker/containers/{id}/{name}"), &text);
        }
    }

    /// Runs `dockwatch check --json` on this root; (exit code, report).
    fn check(&self) -> (i32, Value) {
        let config = self.dir.path().join("dockwatch.toml");
        std::fs::write(
            &config,
            format!(
                "[posture]\nroot = {:?}\n{}",
                self.dir.path(),
                self.extra_config
            ),
        )
        .unwrap();
        let (code, stdout, stderr) =
            run_cli(["check", "--json", "--config", config.to_str().unwrap()]);
        assert!(code == 0 || code == 1, "check exited {code}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        (code, report)
    }
}

/// The one finding of check `id` whose key contains `key`.
fn finding<'a>(report: &'a Value, id: &str, key: &str) -> &'a Value {
    let found: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == id && c["key"].as_str().unwrap().contains(key))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want one {id} finding with key {key:?} in {report:#}"
    );
    found[0]
}

fn assert_status(report: &Value, id: &str, key: &str, status: &str) -> Value {
    let f = finding(report, id, key);
    assert_eq!(f["status"], status, "{id} {key}: {f:#}");
    f.clone()
}

const HARDENED: &str = r#"{
    "icc": false,
    "log-driver": "syslog",
    "live-restore": true,
    "userland-proxy": false,
    "no-new-privileges": true,
    "userns-remap": "default",
    "hosts": ["unix:///var/run/docker.sock", "tcp://10.0.0.5:2376"],
    "authorization-plugins": ["opa-docker-authz"],
    "tlsverify": true,
    "tlscacert": "/etc/docker/tls/ca.pem",
    "tlscert": "/etc/docker/tls/server.pem",
    "tlskey": "/etc/docker/tls/server-key.pem"
}"#;

#[test]
fn hardened_daemon_json_passes_every_daemon_check() {
    let root = Root::new();
    root.file("/etc/docker/daemon.json", HARDENED);
    let (_, report) = root.check();
    for (id, key) in [
        ("daemon-json", "configuration files"),
        ("2.2", "icc"),
        ("2.5", "insecure-registries"),
        ("2.7", "tls"),
        ("2.9", "userns-remap"),
        ("2.12", "authorization-plugins"),
        ("2.13", "log-driver"),
        ("2.14", "no-new-privileges"),
        ("2.15", "live-restore"),
        ("2.16", "userland-proxy"),
    ] {
        assert_status(&report, id, key, "pass");
    }
    let icc = finding(&report, "2.2", "icc");
    assert_eq!(icc["value"], false);
    assert_eq!(icc["rule"], "posture-cis-2.2");
    assert_eq!(icc["tags"], json!(["cis:2.2"]));
    assert!(
        icc["evidence"].as_str().unwrap().contains("daemon.json"),
        "{icc}"
    );
}

#[test]
fn risky_daemon_json_fails_with_evidence_and_exit_code_1() {
    let root = Root::new();
    root.file(
        "/etc/docker/daemon.json",
        r#"{"icc": true, "insecure-registries": ["registry.local:5000"],
            "hosts": ["tcp://0.0.0.0:2375"], "tlsverify": false}"#,
    );
    let (code, report) = root.check();
    assert_eq!(code, 1);
    let icc = assert_status(&report, "2.2", "icc", "warn");
    assert_eq!(icc["value"], true);
    let reg = assert_status(&report, "2.5", "insecure-registries", "fail");
    assert_eq!(reg["value"], json!(["registry.local:5000"]));
    let tls = assert_status(&report, "2.7", "tls", "fail");
    assert_eq!(
        tls["value"],
        json!(["tlsverify", "tlscacert", "tlscert", "tlskey"])
    );
    assert!(
        tls["evidence"]
            .as_str()
            .unwrap()
            .contains("tcp://0.0.0.0:2375"),
        "{tls}"
    );
    let authz = assert_status(&report, "2.12", "authorization-plugins", "fail");
    assert!(authz["evidence"]
        .as_str()
        .unwrap()
        .contains("without an authorization plugin"));
    for (id, key) in [
        ("2.9", "userns-remap"),
        ("2.13", "log-driver"),
        ("2.14", "no-new"),
        ("2.15", "live"),
        ("2.16", "userland"),
    ] {
        assert_status(&report, id, key, "warn");
    }
}

#[test]
fn dockerd_flags_in_the_unit_and_default_file_count() {
    let root = Root::new();
    root.file(
        "/lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -H fd:// --icc=false \\\n  --live-restore --userland-proxy=false\n",
    );
    root.file(
        "/etc/default/docker",
        "# Docker options\nDOCKER_OPTS=\"--insecure-registry 10.1.1.1:5000 --log-driver=journald\"\n",
    );
    let (_, report) = root.check();
    let icc = assert_status(&report, "2.2", "icc", "pass");
    assert!(
        icc["evidence"].as_str().unwrap().contains("docker.service"),
        "{icc}"
    );
    assert_status(&report, "2.15", "live-restore", "pass");
    assert_status(&report, "2.16", "userland-proxy", "pass");
    assert_status(&report, "2.13", "log-driver", "pass");
    let reg = assert_status(&report, "2.5", "insecure-registries", "fail");
    assert!(
        reg["evidence"]
            .as_str()
            .unwrap()
            .contains("/etc/default/docker"),
        "{reg}"
    );
}

#[test]
fn broken_or_unreadable_daemon_json_is_a_finding_not_a_crash() {
    let root = Root::new();
    root.file("/etc/docker/daemon.json", "{\n  \"icc\": false,\n}\n");
    let (code, report) = root.check();
    assert_eq!(code, 1);
    let broken = assert_status(&report, "daemon-json", "daemon.json", "fail");
    assert_eq!(broken["value"], "invalid JSON");
    assert!(
        broken["evidence"]
            .as_str()
            .unwrap()
            .contains("line 3 column 1"),
        "{broken}"
    );
    let icc = assert_status(&report, "2.2", "icc", "info");
    assert!(
        icc["evidence"].as_str().unwrap().starts_with("cannot tell"),
        "{icc}"
    );

    // A directory where the file should be cannot be read, even by root.
    let path = root.path("/etc/docker/daemon.json");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let (code, report) = root.check();
    assert_eq!(code, 1);
    let unreadable = assert_status(&report, "daemon-json", "daemon.json", "fail");
    assert_eq!(unreadable["value"], "unreadable");
    assert!(
        unreadable["evidence"]
            .as_str()
            .unwrap()
            .contains("cannot read"),
        "{unreadable}"
    );
}

/// Every section-3 file, with the right owner and mode.
fn hardened_files(root: &Root) -> UnixListener {
    root.file("/etc/group", "root:x:0:\ndocker:x:4999:\n");
    root.file(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    );
    root.file("/etc/docker/daemon.json", HARDENED);
    root.file(
        "/lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd\n",
    );
    root.file(
        "/lib/systemd/system/docker.socket",
        "[Socket]\nListenStream=/run/docker.sock\n",
    );
    root.file("/etc/default/docker", "DOCKER_OPTS=\"\"\n");
    root.file("/etc/docker/certs.d/registry.local:5000/ca.crt", "cert\n");
    root.file("/etc/docker/tls/ca.pem", "ca\n");
    root.file("/etc/docker/tls/server.pem", "cert\n");
    root.file("/etc/docker/tls/server-key.pem", "key\n");
    std::fs::create_dir_all(root.path("/var/run")).unwrap();
    std::fs::create_dir_all(root.path("/run/containerd")).unwrap();
    let sock = UnixListener::bind(root.path("/var/run/docker.sock")).unwrap();
    let containerd = UnixListener::bind(root.path("/run/containerd/containerd.sock")).unwrap();
    drop(containerd); // the socket file stays
    root.chown("/var/run/docker.sock", 0, 4999);
    for (path, mode) in [
        ("/etc/docker", 0o755),
        ("/etc/docker/daemon.json", 0o644),
        ("/lib/systemd/system/docker.service", 0o644),
        ("/lib/systemd/system/docker.socket", 0o644),
        ("/etc/default/docker", 0o644),
        ("/etc/docker/certs.d/registry.local:5000/ca.crt", 0o444),
        ("/etc/docker/tls/ca.pem", 0o444),
        ("/etc/docker/tls/server.pem", 0o444),
        ("/etc/docker/tls/server-key.pem", 0o400),
        ("/var/run/docker.sock", 0o660),
        ("/run/containerd/containerd.sock", 0o660),
    ] {
        root.chmod(path, mode);
    }
    sock
}

const MODE_CHECKS: &[(&str, &str, &str)] = &[
    (
        "3.1",
        "docker.service owner",
        "/lib/systemd/system/docker.service",
    ),
    (
        "3.2",
        "docker.service mode",
        "/lib/systemd/system/docker.service",
    ),
    (
        "3.3",
        "docker.socket owner",
        "/lib/systemd/system/docker.socket",
    ),
    (
        "3.4",
        "docker.socket mode",
        "/lib/systemd/system/docker.socket",
    ),
    ("3.5", "/etc/docker owner", "/etc/docker"),
    ("3.6", "/etc/docker mode", "/etc/docker"),
    (
        "3.7",
        "ca.crt owner",
        "/etc/docker/certs.d/registry.local:5000/ca.crt",
    ),
    (
        "3.8",
        "ca.crt mode",
        "/etc/docker/certs.d/registry.local:5000/ca.crt",
    ),
    ("3.9", "tlscacert owner", "/etc/docker/tls/ca.pem"),
    ("3.10", "tlscacert mode", "/etc/docker/tls/ca.pem"),
    ("3.11", "tlscert owner", "/etc/docker/tls/server.pem"),
    ("3.12", "tlscert mode", "/etc/docker/tls/server.pem"),
    ("3.13", "tlskey owner", "/etc/docker/tls/server-key.pem"),
    ("3.14", "tlskey mode", "/etc/docker/tls/server-key.pem"),
    ("3.15", "docker.sock owner", "/var/run/docker.sock"),
    ("3.16", "docker.sock mode", "/var/run/docker.sock"),
    ("3.17", "daemon.json owner", "/etc/docker/daemon.json"),
    ("3.18", "daemon.json mode", "/etc/docker/daemon.json"),
    ("3.19", "/etc/default/docker owner", "/etc/default/docker"),
    ("3.22", "/etc/default/docker mode", "/etc/default/docker"),
    (
        "3.23",
        "containerd.sock owner",
        "/run/containerd/containerd.sock",
    ),
    (
        "3.24",
        "containerd.sock mode",
        "/run/containerd/containerd.sock",
    ),
];

#[test]
fn owners_and_modes_pass_when_set_as_the_benchmark_asks() {
    let root = Root::new();
    let _sock = hardened_files(&root);
    let (_, report) = root.check();
    for (id, key, _) in MODE_CHECKS {
        assert_status(&report, id, key, "pass");
    }
    assert_eq!(
        finding(&report, "3.15", "docker.sock owner")["value"],
        "root:docker"
    );
    assert_eq!(
        finding(&report, "3.16", "docker.sock mode")["value"],
        "0660"
    );
    assert_eq!(finding(&report, "3.14", "tlskey mode")["value"], "0400");
    // Not installed: reported as such, not failed.
    assert_status(&report, "3.20", "/etc/sysconfig/docker owner", "info");
}

#[test]
fn every_owner_and_mode_check_fails_with_the_file_and_what_is_wanted() {
    let root = Root::new();
    let _sock = hardened_files(&root);
    for (_, key, path) in MODE_CHECKS {
        if key.ends_with("mode") {
            let mode = if path.ends_with("/etc/docker") {
                0o777
            } else {
                0o666
            };
            root.chmod(path, mode);
        } else {
            root.chown(path, 1000, 1000);
        }
    }
    let (code, report) = root.check();
    assert_eq!(code, 1);
    for (id, key, path) in MODE_CHECKS {
        let f = assert_status(&report, id, key, "fail");
        let evidence = f["evidence"].as_str().unwrap();
        assert!(
            evidence.contains(path.trim_start_matches('/')),
            "{id}: {evidence}"
        );
        if key.ends_with("owner") {
            assert_eq!(f["value"], "alice:1000", "{id}");
            assert!(evidence.contains("want root:"), "{id}: {evidence}");
        } else {
            assert!(evidence.contains("or stricter"), "{id}: {evidence}");
        }
    }
    assert_eq!(
        finding(&report, "3.16", "docker.sock mode")["value"],
        "0666"
    );
    assert_eq!(finding(&report, "3.6", "/etc/docker mode")["value"], "0777");
}

/// `setfacl` as an administrator (or an attacker) would run it.
fn setfacl(args: &[&str], path: &Path) {
    let out = Command::new("setfacl")
        .args(args)
        .arg(path)
        .output()
        .expect("setfacl (package acl)");
    assert!(out.status.success(), "setfacl {args:?}: {out:?}");
}

#[test]
fn an_acl_that_lets_a_user_at_docker_sock_fails_3_16_though_the_mode_passes() {
    let root = Root::new();
    let _sock = hardened_files(&root);
    let sock = root.path("/var/run/docker.sock");
    // A grant the mask reduces to nothing lets nobody in: still a pass, and
    // the positive control that an ACL alone is not a failure.
    setfacl(&["-m", "u:1000:rw,m::---"], &sock);
    let (_, report) = root.check();
    assert_status(&report, "3.16", "docker.sock mode", "pass");

    setfacl(&["-m", "u:1000:rw,g:4999:rw,m::rw"], &sock);
    setfacl(
        &["-m", "g:1000:r"],
        &root.path("/etc/docker/tls/server-key.pem"),
    );
    let (code, report) = root.check();
    assert_eq!(code, 1);
    let f = assert_status(&report, "3.16", "docker.sock mode", "fail");
    // The mode bits themselves are what the benchmark asks for.
    assert_eq!(f["value"], "0660");
    let evidence = f["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("its ACL also grants user alice rw-"),
        "{evidence}"
    );
    assert!(!evidence.contains("group docker"), "{evidence}");
    let key = assert_status(&report, "3.14", "tlskey mode", "fail");
    assert!(
        key["evidence"].as_str().unwrap().contains("group 1000 r--"),
        "{key:#}"
    );
    assert_status(&report, "3.18", "daemon.json mode", "pass");
}

#[test]
fn docker_group_members_outside_the_allowed_list_are_named() {
    let mut root = Root::new();
    root.extra_config = "docker_group_members = [\"alice\"]\n".to_string();
    root.file("/etc/group", "root:x:0:\ndocker:x:999:alice\n");
    let (_, report) = root.check();
    let f = assert_status(&report, "1.1.2", "docker group members", "pass");
    assert_eq!(f["value"], json!(["alice"]));

    root.file("/etc/group", "root:x:0:\ndocker:x:999:alice,mallory\n");
    let (_, report) = root.check();
    let f = assert_status(&report, "1.1.2", "docker group members", "warn");
    assert_eq!(f["value"], json!(["alice", "mallory"]));
    assert!(
        f["evidence"]
            .as_str()
            .unwrap()
            .ends_with("not in posture.docker_group_members: mallory"),
        "{f}"
    );
}

#[test]
fn containers_are_judged_from_hostconfig_and_config_v2() {
    let root = Root::new();
    let hardened = "4f1c0a6b7e2d".repeat(5) + "abcd";
    let exposed = "9b8e7d6c5a4f".repeat(5) + "0123";
    root.container("hardened", &hardened);
    root.container("exposed", &exposed);
    root.file(
        &format!("/var/lib/docker/containers/{hardened}/{hardened}-json.log"),
        "{}\n",
    );
    let (code, report) = root.check();
    assert_eq!(code, 1);
    for (id, what) in [
        ("5.1", "apparmor profile"),
        ("5.4", "privileged"),
        ("5.5", "/dev mounted"),
        ("5.13", "ports on all interfaces"),
        ("5.17", "devices"),
        ("5.25", "no-new-privileges"),
        ("5.31", "docker.sock mounted"),
    ] {
        assert_status(&report, id, &format!("web (4f1c0a6b7e2d): {what}"), "pass");
    }
    let agent = |what: &str| format!("agent (9b8e7d6c5a4f): {what}");
    assert_eq!(
        assert_status(&report, "5.4", &agent("privileged"), "fail")["value"],
        true
    );
    assert_eq!(
        assert_status(&report, "5.5", &agent("/dev mounted"), "fail")["value"],
        json!(["/dev"])
    );
    assert_eq!(
        assert_status(&report, "5.31", &agent("docker.sock mounted"), "fail")["value"],
        json!(["/var/run/docker.sock"])
    );
    // /dev/video0 is on the allowed list, /dev/sda is not.
    assert_eq!(
        assert_status(&report, "5.17", &agent("devices"), "fail")["value"],
        json!(["/dev/sda"])
    );
    assert_eq!(
        assert_status(&report, "5.1", &agent("apparmor"), "fail")["value"],
        "unconfined"
    );
    assert_eq!(
        assert_status(&report, "5.25", &agent("no-new-privileges"), "warn")["value"],
        false
    );
    assert_eq!(
        assert_status(&report, "5.13", &agent("ports"), "warn")["value"],
        json!(["0.0.0.0:2375->2375/tcp", ":::53->53/udp"])
    );
    let privileged = finding(&report, "5.4", &agent("privileged"));
    assert!(privileged["path"]
        .as_str()
        .unwrap()
        .ends_with(&format!("{exposed}/hostconfig.json")));
}

#[test]
fn broken_container_config_and_missing_var_lib_docker_are_findings() {
    let root = Root::new();
    let (_, report) = root.check();
    let missing = assert_status(&report, "container-config", "containers", "info");
    assert!(
        missing["evidence"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{missing}"
    );
    let partition = assert_status(&report, "1.1.1", "/var/lib/docker", "warn");
    assert!(partition["evidence"]
        .as_str()
        .unwrap()
        .ends_with("var/lib/docker does not exist"));

    let id = "0123456789ab".repeat(5) + "cdef";
    root.file(
        &format!("/var/lib/docker/containers/{id}/hostconfig.json"),
        "{\"Privileged\": tru",
    );
    let (_, report) = root.check();
    let broken = assert_status(&report, "container-config", "0123456789ab config", "warn");
    assert!(
        broken["evidence"]
            .as_str()
            .unwrap()
            .contains("invalid JSON at line 1"),
        "{broken}"
    );
}

#[test]
fn var_lib_docker_on_its_own_filesystem_passes() {
    let root = Root::new();
    let dir = root.path("/var/lib/docker");
    std::fs::create_dir_all(&dir).unwrap();
    let (_, report) = root.check();
    let same = assert_status(&report, "1.1.1", "/var/lib/docker", "warn");
    assert!(
        same["evidence"]
            .as_str()
            .unwrap()
            .contains("same filesystem"),
        "{same}"
    );

    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "dockwatch-test", dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs (needs root)");
    let (_, report) = root.check();
    let _ = Command::new("umount").arg(&dir).status();
    let own = assert_status(&report, "1.1.1", "/var/lib/docker", "pass");
    assert_eq!(own["value"], true);
}

#[test]
fn host_apparmor_is_read_from_sysfs() {
    let root = Root::new();
    root.file("/sys/module/apparmor/parameters/enabled", "Y\n");
    let (_, report) = root.check();
    assert_status(&report, "apparmor", "apparmor", "pass");
    root.file("/sys/module/apparmor/parameters/enabled", "N\n");
    let (_, report) = root.check();
    let off = assert_status(&report, "apparmor", "apparmor", "warn");
    assert!(
        off["evidence"].as_str().unwrap().contains("disabled"),
        "{off}"
    );
}

/// CIS 4.5: content trust on for every user's session, from pam_env's
/// /etc/environment or a login shell's /etc/profile.d script.
#[test]
fn content_trust_must_be_on_in_users_sessions() {
    let root = Root::new();
    root.file("/etc/environment", "PATH=\"/usr/local/bin:/usr/bin\"\n");
    let (_, report) = root.check();
    let unset = assert_status(&report, "4.5", "DOCKER_CONTENT_TRUST", "warn");
    assert!(
        unset["evidence"]
            .as_str()
            .unwrap()
            .contains("export DOCKER_CONTENT_TRUST=1"),
        "{unset}"
    );
    root.file(
        "/etc/profile.d/docker.sh",
        "export DOCKER_CONTENT_TRUST=1\n",
    );
    let (_, report) = root.check();
    let on = assert_status(&report, "4.5", "DOCKER_CONTENT_TRUST", "pass");
    assert!(
        on["evidence"].as_str().unwrap().contains("docker.sh"),
        "{on}"
    );
}

/// The baseline's own demand beyond CIS: the docker CLI runs for root only.
#[test]
fn the_docker_cli_must_be_root_owned_and_744() {
    let root = Root::new();
    root.file("/usr/bin/docker", "#!/bin/sh\n");
    root.chmod("/usr/bin/docker", 0o755);
    let (_, report) = root.check();
    let loose = assert_status(&report, "docker-cli-mode", "docker CLI mode", "warn");
    assert_eq!(loose["value"], "0755", "{loose}");
    assert!(
        loose["evidence"]
            .as_str()
            .unwrap()
            .contains("usr/bin/docker"),
        "{loose}"
    );
    assert_status(&report, "docker-cli-owner", "docker CLI owner", "pass");
    root.chmod("/usr/bin/docker", 0o744);
    root.chown("/usr/bin/docker", 1000, 0);
    let (_, report) = root.check();
    assert_status(&report, "docker-cli-mode", "docker CLI mode", "pass");
    assert_status(&report, "docker-cli-owner", "docker CLI owner", "warn");
}

#[test]
fn audit_must_be_enabled_and_watch_each_docker_path() {
    let _lock = machine_lock();
    let root = Root::new();
    root.file("/etc/docker/daemon.json", "{}");
    root.file("/etc/default/docker", "");
    root.file("/usr/bin/runc", "");
    let etc_docker = root.path("/etc/docker");
    let runc = root.path("/usr/bin/runc");
    let rules = [
        format!("-w {} -p wa -k docker", etc_docker.display()),
        format!(
            "-a always,exit -F arch=b64 -S all -F path={} -F perm=wa -k docker",
            runc.display()
        ),
    ];
    let auditd = Auditd::start("RAW", &rules.iter().map(String::as_str).collect::<Vec<_>>());
    let (_, report) = root.check();
    drop(auditd);
    assert_status(&report, "audit-enabled", "audit", "pass");
    // The test cannot lock the rules (that lasts until reboot); unlocked
    // is what it can see, and check says how to lock them.
    let unlocked = assert_status(&report, "audit-immutable", "audit rules locked", "warn");
    assert!(
        unlocked["evidence"].as_str().unwrap().contains("-e 2"),
        "{unlocked}"
    );
    assert_status(&report, "1.1.6", "audit watch", "pass");
    // daemon.json lies inside the watched /etc/docker.
    assert_status(&report, "1.1.11", "audit watch", "pass");
    assert_status(&report, "1.1.18", "audit watch", "pass");
    let unwatched = assert_status(&report, "1.1.10", "audit watch", "warn");
    assert!(
        unwatched["evidence"].as_str().unwrap().contains("-w "),
        "{unwatched}"
    );
    // Not installed here: not applicable.
    assert_status(&report, "1.1.3", "audit watch", "info");
}

#[test]
fn table_output_reads_like_docker_bench() {
    let root = Root::new();
    root.file(
        "/etc/docker/daemon.json",
        r#"{"icc": false, "insecure-registries": ["r:5000"]}"#,
    );
    let config = root.dir.path().join("dockwatch.toml");
    std::fs::write(
        &config,
        format!("[posture]\nroot = {:?}\n", root.dir.path()),
    )
    .unwrap();
    let (code, stdout, stderr) = run_cli(["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let icc = lines
        .iter()
        .position(|l| l.starts_with("[PASS] 2.2 "))
        .expect(&stdout);
    assert!(lines[icc].contains("Ensure network traffic is restricted between containers"));
    assert!(
        lines[icc + 1]
            .trim_start()
            .starts_with("* icc: icc is false"),
        "{}",
        lines[icc + 1]
    );
    assert!(
        lines.iter().any(|l| l.starts_with("[FAIL] 2.5 ")),
        "{stdout}"
    );
    assert!(lines.last().unwrap().contains(" fail, "), "{stdout}");
}

/// Restores a real file's exact contents on drop.
struct Restore {
    path: PathBuf,
    original: Vec<u8>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        std::fs::write(&self.path, &self.original).expect("restore the original file");
    }
}

#[test]
fn real_etc_group_edit_shows_in_check() {
    let _lock = machine_lock();
    let original = std::fs::read("/etc/group").unwrap();
    let _restore = Restore {
        path: PathBuf::from("/etc/group"),
        original: original.clone(),
    };
    let edited: String = String::from_utf8(original)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("docker:"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + "docker:x:4998:mallory\n";
    std::fs::write("/etc/group", edited).unwrap();
    let (_, stdout, stderr) = run_cli(["check", "--json", "--config", "/dev/null"]);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let f = assert_status(&report, "1.1.2", "docker group members", "warn");
    assert_eq!(f["value"], json!(["mallory"]));
    assert_eq!(f["path"], "/etc/group");
}

#[test]
fn a_bad_device_pattern_is_a_configuration_error_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dockwatch.toml");
    std::fs::write(&config, "[posture]\nallowed_devices = [\"/dev/[video\"]\n").unwrap();
    let (code, stdout, stderr) = run_cli(["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let location = format!("{}:2:", config.display());
    assert!(stderr.contains(&location), "{stderr}");
    assert!(stderr.contains("/dev/[video"), "{stderr}");
}

#[test]
fn a_bad_minimum_engine_version_is_a_configuration_error_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dockwatch.toml");
    std::fs::write(&config, "[posture]\nmin_engine_version = \"latest\"\n").unwrap();
    let (code, stdout, stderr) = run_cli(["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let location = format!("{}:2:", config.display());
    assert!(stderr.contains(&location), "{stderr}");
    assert!(
        stderr.contains("\"latest\" is not an engine version"),
        "{stderr}"
    );
}

#[test]
fn an_unreadable_etc_group_is_a_finding_with_the_reason() {
    let root = Root::new();
    std::fs::create_dir_all(root.path("/etc/group")).unwrap();
    let (_, report) = root.check();
    let f = assert_status(&report, "1.1.2", "docker group members", "warn");
    assert_eq!(f["value"], Value::Null);
    let evidence = f["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with("cannot read") && evidence.contains("etc/group"),
        "{f}"
    );
}

/// The README's table of checks names every check `dockwatch check`
/// reports, one by one or in a range (`3.1`–`3.24`), so it cannot fall
/// behind the code.
#[test]
fn the_readme_names_every_check() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let table = readme
        .split("## Baseline checks")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a \"## Baseline checks\" section");
    let ranges: Vec<(&str, &str)> = table
        .split('`')
        .collect::<Vec<_>>()
        .windows(3)
        .filter(|w| w[1] == "–")
        .map(|w| (w[0], w[2]))
        .collect();
    let in_range = |id: &str| {
        ranges.iter().any(|(from, to)| {
            let (Some((prefix, low)), Some((same, high))) = (from.rsplit_once('.'), to.rsplit_once('.')) else {
                return false;
            };
            let Some((own, n)) = id.rsplit_once('.') else {
                return false;
            };
            let number = |s: &str| s.parse::<u32>().ok();
            own == prefix
                && own == same
                && matches!((number(low), number(n), number(high)), (Some(l), Some(n), Some(h)) if l <= n && n <= h)
        })
    };

    let root = Root::new();
    let _sock = hardened_files(&root);
    root.container("hardened", &("4f1c0a6b7e2d".repeat(5) + "abcd"));
    root.container("exposed", &("9b8e7d6c5a4f".repeat(5) + "0123"));
    let (_, report) = root.check();
    let ids: std::collections::BTreeSet<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    // The positive control: the report is the whole baseline.
    for id in ["1.1.1", "3.16", "4.5", "5.4", "docker-cli-mode"] {
        assert!(ids.contains(id), "{id} not in the report: {ids:?}");
    }
    let missing: Vec<&&str> = ids
        .iter()
        .filter(|id| !table.contains(&format!("`{id}`")) && !in_range(id))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's check table lacks {missing:?}"
    );
}
