//! Tampering with audit.log is an alert from the built-in `audit-tampered`
//! rule: emptied, deleted. A normal auditd rotation (`kill -USR1`) is the
//! positive control: no tamper alert, and events keep flowing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dockwatch_tests::auditd::Auditd;
use dockwatch_tests::layout::Layout;
use dockwatch_tests::{alerts_for, machine_lock, read_alerts, wait_for_alerts, Monitored};

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

fn rules() -> String {
    dockwatch_tests::docker_config_rule("open_write")
}

fn start(auditd: &Auditd) -> Monitored {
    Monitored::start_on_audit_log(&rules(), &auditd.log_path())
}

fn touch() {
    let status = Command::new("/usr/bin/touch")
        .arg(DAEMON_JSON)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for `n` alerts on daemon.json in total.
fn wait_for_writes(alerts: &Path, n: usize) {
    let all = wait_for_alerts(alerts, Duration::from_secs(10), |a| {
        alerts_for(a, DAEMON_JSON).len() >= n
    });
    assert!(alerts_for(&all, DAEMON_JSON).len() >= n, "{all:#?}");
}

fn tamper_alerts(alerts: &Path) -> Vec<serde_json::Value> {
    read_alerts(alerts)
        .into_iter()
        .filter(|a| a["rule"]["id"] == "audit-tampered")
        .collect()
}

/// The one `audit-tampered` alert for `op`, waited for.
fn tamper_alert(alerts: &Path, op: &str) -> serde_json::Value {
    let is_it =
        |a: &serde_json::Value| a["rule"]["id"] == "audit-tampered" && a["audit"]["op"] == op;
    wait_for_alerts(alerts, Duration::from_secs(10), |all| all.iter().any(is_it));
    std::thread::sleep(Duration::from_millis(1500));
    let all = read_alerts(alerts);
    let found: Vec<_> = all.iter().filter(|a| is_it(a)).collect();
    assert_eq!(
        found.len(),
        1,
        "one audit-tampered alert for {op}: {all:#?}"
    );
    assert_eq!(found[0]["rule"]["severity"], "critical");
    found[0].clone()
}

/// auditd rotating its log is no tampering, and the write after it is seen.
fn rotate_is_quiet(auditd: &Auditd, run: &Monitored) {
    touch();
    wait_for_writes(&run.alerts, 1);
    auditd.rotate();
    let rotated = auditd.log_path().with_extension("log.1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !rotated.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(rotated.exists(), "auditd did not rotate");
    touch();
    wait_for_writes(&run.alerts, 2);
    let tampered = tamper_alerts(&run.alerts);
    assert!(tampered.is_empty(), "{tampered:#?}");
}

/// daemon.json under an audit watch, dockwatch reading audit.log, and one
/// quiet rotation behind them: the state both tamper tests start from.
fn watched_and_rotated() -> (Layout, Auditd, Monitored) {
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let auditd = Auditd::start("RAW", &["-w /etc/docker -p wa -k docker"]);
    let run = start(&auditd);
    rotate_is_quiet(&auditd, &run);
    (layout, auditd, run)
}

#[test]
fn audit_log_emptied_is_an_alert_and_a_rotation_is_not() {
    let _lock = machine_lock();
    let (_layout, auditd, run) = watched_and_rotated();
    std::fs::File::options()
        .write(true)
        .truncate(true)
        .open(auditd.log_path())
        .unwrap();
    let alert = tamper_alert(&run.alerts, "audit_log_truncated");
    assert!(
        alert["audit"].to_string().contains("truncated"),
        "{alert:#}"
    );
    // Still reading after the truncation.
    touch();
    wait_for_writes(&run.alerts, 3);
    drop(run);
    drop(auditd);
}

#[test]
fn audit_log_deleted_is_an_alert() {
    let _lock = machine_lock();
    let (_layout, auditd, run) = watched_and_rotated();
    std::fs::remove_file(auditd.log_path()).unwrap();
    tamper_alert(&run.alerts, "audit_log_deleted");
    drop(run);
    drop(auditd);
}
