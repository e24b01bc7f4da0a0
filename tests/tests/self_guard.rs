//! Watching the watcher: another process changing dockwatch's own
//! configuration or rules is a `dockwatch-self-modified` alert from a
//! built-in rule, whatever the rule files say. Real daemon and eBPF probes;
//! root and the machine lock.

use std::process::Command;
use std::time::Duration;

use dockwatch_tests::{machine_lock, read_alerts, wait_for_alerts, Monitored};
use serde_json::Value;

const RULES: &str = "rules:
  - id: docker-config-write
    name: Docker daemon configuration modified
    severity: warning
    paths: [/etc/docker/daemon.json]
    actions: [open_write]
";

fn self_alerts(alerts: &[Value]) -> Vec<&Value> {
    alerts
        .iter()
        .filter(|a| a["rule"]["id"] == "dockwatch-self-modified")
        .collect()
}

/// Appends a line as a shell user would, from a process of its own.
fn append(path: &std::path::Path, line: &str) {
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("echo '{line}' >> '{}'", path.display()))
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn edits_to_its_config_and_rules_are_alerts_no_rule_can_switch_off() {
    let _lock = machine_lock();
    let monitored = Monitored::start(
        RULES,
        "[sources.audit]\nmode = \"off\"\n[posture]\nenabled = false\n",
    );
    let config = monitored.dir().join("config.toml");
    let rules = monitored.dir().join("rules/rules.yaml");
    // A file beside them that is not dockwatch's stays quiet (the alerts
    // on the others are the positive control).
    let scratch = monitored.dir().join("scratch.txt");
    std::fs::write(&scratch, "not dockwatch's\n").unwrap();

    append(&config, "# sources.ebpf could be switched off here");
    append(&rules, "# a rule could be disabled here");
    let new_rule = monitored.dir().join("rules/zz-new.yaml");
    std::fs::write(&new_rule, "rules: []\n").unwrap();

    let alerts_file = monitored.alerts.clone();
    wait_for_alerts(&alerts_file, Duration::from_secs(30), |alerts| {
        self_alerts(alerts).len() >= 3
    });
    assert!(monitored.daemon.stop().success());
    let alerts = read_alerts(&alerts_file);
    let guarded = self_alerts(&alerts);
    let paths: Vec<&str> = guarded
        .iter()
        .map(|a| a["file"]["path"].as_str().unwrap())
        .collect();
    for expected in [&config, &rules, &new_rule] {
        assert!(
            paths.contains(&expected.to_str().unwrap()),
            "no alert for {}: {alerts:#?}",
            expected.display()
        );
    }
    let first = guarded[0];
    assert_eq!(first["rule"]["severity"], "critical");
    assert_eq!(first["process"]["name"], "sh");
    assert!(
        !alerts
            .iter()
            .any(|a| a["file"]["path"] == scratch.to_str().unwrap()),
        "{alerts:#?}"
    );
}
