//! `dockwatch rules auditctl` output loads into a real auditd with
//! `auditctl -R`, covers every CIS 1.1.x path, and the records auditd then
//! writes become the right alerts through `dockwatch replay`.
//! Root and the machine lock: it replaces the kernel's audit rules and
//! creates Docker's file layout.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dockwatch_tests::auditd::{auditctl, Auditd};
use dockwatch_tests::layout::Layout;
use dockwatch_tests::{machine_lock, run_cli, shipped_rules, CIS_AUDIT_PATHS};
use serde_json::Value;

/// The directories a Docker host has that this machine may not.
const DOCKER_DIRS: &[&str] = &[
    "/etc/docker",
    "/etc/sysconfig",
    "/run/containerd",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/systemd/system",
    "/etc/default",
];

fn rules_auditctl() -> String {
    let (code, stdout, stderr) = run_cli([
        "rules".as_ref(),
        "auditctl".as_ref(),
        "--rules".as_ref(),
        shipped_rules().as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

fn rule_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect()
}

fn load(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dockwatch.rules");
    std::fs::write(&file, text).unwrap();
    auditctl(&["-R", file.to_str().unwrap()]);
}

#[test]
fn auditctl_output_loads_on_a_docker_host_and_covers_every_cis_path() {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    for dir in DOCKER_DIRS {
        layout.dir(dir);
    }
    let text = rules_auditctl();
    assert!(!text.contains("## skipped"), "{text}");
    let _auditd = Auditd::start("RAW", &[]);
    load(&text);

    let listed = auditctl(&["-l"]);
    assert_eq!(
        rule_lines(&listed).len(),
        rule_lines(&text).len(),
        "every rule loaded:\n{listed}"
    );
    for path in CIS_AUDIT_PATHS {
        let watched = listed.lines().any(|l| {
            l.starts_with(&format!("-w {path} -p ")) || l.contains(&format!(" -F path={path} "))
        });
        assert!(watched, "{path} is not watched:\n{listed}");
    }
}

#[test]
fn auditctl_output_loads_on_a_host_without_docker() {
    let _lock = machine_lock();
    let text = rules_auditctl();
    let _auditd = Auditd::start("RAW", &[]);
    load(&text);
    let listed = auditctl(&["-l"]);
    assert_eq!(
        rule_lines(&listed).len(),
        rule_lines(&text).len(),
        "{listed}"
    );
}

/// The rules auditd got from us make records that our rules turn into the
/// right alerts: a write of daemon.json, a chmod of docker.sock, and a
/// connection to docker.sock by a program that is not a Docker client.
#[test]
fn audit_records_from_exported_rules_replay_into_the_right_alerts() {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    for dir in DOCKER_DIRS {
        layout.dir(dir);
    }
    layout.file("/etc/docker/daemon.json", "{}\n");
    let sock = "/run/docker.sock";
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock).expect("bind a stand-in docker.sock");
    layout.track(sock);

    let auditd = Auditd::start("RAW", &[]);
    load(&rules_auditctl());

    // Fresh children: processes older than audit are never audited.
    let sh = |script: &str| {
        Command::new("/bin/sh")
            .args(["-c", script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    sh("echo '{\"icc\": true}' > /etc/docker/daemon.json");
    sh(&format!("chmod 666 {sock}"));
    sh(&format!(
        "curl -s -m 1 --unix-socket {sock} http://localhost/_ping"
    ));
    drop(listener);

    let log = auditd.log_path();
    let deadline = Instant::now() + Duration::from_secs(5);
    let keys = [
        "docker-config-write",
        "docker-sock-perms",
        "docker-sock-connect-unexpected",
    ];
    let mut alerts = Vec::new();
    while Instant::now() < deadline {
        alerts = replay(&log);
        if keys.iter().all(|k| !for_rule(&alerts, k).is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let write = for_rule(&alerts, "docker-config-write");
    assert!(
        write
            .iter()
            .any(|a| a["file"]["path"] == "/etc/docker/daemon.json"
                && a["event"]["action"] == "open_write"),
        "no daemon.json write alert: {alerts:#?}"
    );
    let chmod = for_rule(&alerts, "docker-sock-perms");
    assert!(
        chmod
            .iter()
            .any(|a| a["event"]["action"] == "chmod"
                && a["process"]["executable"] == "/usr/bin/chmod"),
        "no docker.sock chmod alert: {alerts:#?}"
    );
    let connect = for_rule(&alerts, "docker-sock-connect-unexpected");
    assert!(
        connect
            .iter()
            .any(|a| a["file"]["path"] == sock && a["process"]["executable"] == "/usr/bin/curl"),
        "no docker.sock connect alert: {alerts:#?}"
    );
    // Every alert names audit and a shipped rule; nothing fired twice for
    // one audit event.
    let mut seen = std::collections::HashSet::new();
    for alert in &alerts {
        assert_eq!(alert["event"]["provider"], serde_json::json!(["audit"]));
        let id = (alert["event"]["id"].clone(), alert["rule"]["id"].clone());
        assert!(seen.insert(id), "duplicate alert {alert}");
    }
}

fn replay(log: &Path) -> Vec<Value> {
    let (code, stdout, stderr) = run_cli([
        "replay".as_ref(),
        "--rules".as_ref(),
        shipped_rules().as_os_str(),
        log.as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect()
}

fn for_rule<'a>(alerts: &'a [Value], id: &str) -> Vec<&'a Value> {
    alerts.iter().filter(|a| a["rule"]["id"] == id).collect()
}
