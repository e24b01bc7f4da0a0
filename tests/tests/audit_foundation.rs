//! One write becoming one alert through the audit source: a real auditd
//! logging ENRICHED records, dockwatch tailing its log with the eBPF source
//! off, and a process started after auditd opening daemon.json for write.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dockwatch_tests::auditd::Auditd;
use dockwatch_tests::layout::Layout;
use dockwatch_tests::{alerts_for, machine_lock, read_alerts, wait_for_alerts, Monitored};

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

fn rules() -> String {
    dockwatch_tests::docker_config_rule("open_write")
}

#[test]
fn write_to_daemon_json_is_one_audit_alert() {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let auditd = Auditd::start("ENRICHED", &["-w /etc/docker -p wa -k docker"]);

    let run = Monitored::start_on_audit_log(&rules(), &auditd.log_path());
    let alerts_file = run.alerts.clone();

    // Started after auditd, so the kernel audits it.
    let started = Instant::now();
    let child = Command::new("/usr/bin/touch")
        .arg(DAEMON_JSON)
        .spawn()
        .expect("run touch");
    let pid = child.id();
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success());

    let alerts = wait_for_alerts(&alerts_file, Duration::from_secs(5), |a| {
        !alerts_for(a, DAEMON_JSON).is_empty()
    });
    let latency = started.elapsed();
    // Anything else the write caused would arrive within the quiet window.
    std::thread::sleep(Duration::from_millis(600));
    let alerts = if alerts.is_empty() {
        alerts
    } else {
        read_alerts(&alerts_file)
    };
    let ours = alerts_for(&alerts, DAEMON_JSON);
    assert_eq!(ours.len(), 1, "expected exactly one alert: {alerts:#?}");
    assert!(latency < Duration::from_secs(2), "alert took {latency:?}");
    let alert = ours[0];
    assert_eq!(alert["event"]["provider"], serde_json::json!(["audit"]));
    assert_eq!(alert["event"]["action"], "open_write");
    assert_eq!(alert["event"]["outcome"], "success");
    assert_eq!(alert["rule"]["id"], "docker-config-write");
    assert_eq!(alert["process"]["pid"], pid);
    let touch = std::fs::canonicalize(Path::new("/usr/bin/touch")).unwrap();
    assert_eq!(alert["process"]["executable"], touch.to_str().unwrap());
    assert_eq!(alert["user"]["id"], "0");
    assert_eq!(alert["tags"], serde_json::json!(["docker"]));
    drop(auditd);
}
