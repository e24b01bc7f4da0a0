//! Real captures: a real auditd (RAW and ENRICHED) records the scenario in
//! tests/fixtures/audit/scenario.sh, and `dockwatch replay` of its log must
//! give the right events. `DOCKWATCH_SAVE_CAPTURES=DIR` keeps the logs
//! (that is how the fixtures beside the script were made).

mod audit_common;

use std::path::Path;
use std::process::Command;

use dockwatch_tests::auditd::Auditd;
use dockwatch_tests::layout::Layout;
use dockwatch_tests::machine_lock;

const RULES: &[&str] = &[
    "-w /etc/docker -p wa -k docker",
    "-a always,exit -F arch=b64 -S connect -F dir=/run/dockwatch-capture -k sock",
];

fn capture(format: &str) {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.dir("/etc/docker");
    layout.dir("/run/dockwatch-capture");
    layout.track("/etc/docker/daemon.json");
    let auditd = Auditd::start(format, RULES);
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audit/scenario.sh");
    let status = Command::new("/bin/sh").arg(&scenario).status().unwrap();
    assert!(status.success(), "the scenario failed");
    // auditd flushes incrementally; give it a moment before reading.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = auditd.log_path();
    if let Some(dir) = std::env::var_os("DOCKWATCH_SAVE_CAPTURES") {
        let name = format!("scenario-{}.log", format.to_lowercase());
        std::fs::copy(&log, Path::new(&dir).join(name)).unwrap();
    }
    let (code, alerts, stderr) = audit_common::replay(&[&log]);
    assert_eq!(code, 0, "{stderr}");
    audit_common::check_scenario(&alerts);
    // Loading the watches before the scenario is reported, naming auditctl.
    assert!(
        alerts
            .iter()
            .any(|a| a["rule"]["id"] == "audit-config-changed"
                && a["process"]["executable"] == "/usr/sbin/auditctl"),
        "no audit-config-changed alert for auditctl: {alerts:#?}"
    );
    drop(auditd);
}

#[test]
fn raw_capture_replays_into_the_scenario() {
    capture("RAW");
}

#[test]
fn enriched_capture_replays_into_the_scenario() {
    capture("ENRICHED");
}
