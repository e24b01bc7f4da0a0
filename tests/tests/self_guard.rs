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

fn start_alerts(alerts: &[Value]) -> Vec<&Value> {
    alerts
        .iter()
        .filter(|a| a["event"]["action"] == "monitor_start")
        .collect()
}

/// The one start alert in `alerts`, once the daemon has written it.
fn start_alert(alerts: &std::path::Path) -> Value {
    let seen = wait_for_alerts(alerts, Duration::from_secs(10), |a| {
        !start_alerts(a).is_empty()
    });
    let found = start_alerts(&seen);
    assert_eq!(found.len(), 1, "one start alert: {seen:#?}");
    found[0].clone()
}

/// A SIEM tells "nothing happened" from "the monitor was gone" by the
/// start alert: it says whether the previous run stopped cleanly or was
/// killed, which pid it was, and how long the host went unwatched.
#[test]
fn the_start_alert_tells_a_clean_stop_from_a_kill() {
    let _lock = machine_lock();
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "state_dir = {:?}\n[posture]\nenabled = false\n[sources.audit]\nmode = \"off\"\n",
        state.path()
    );

    let first = Monitored::start(RULES, &config);
    let first_pid = first.daemon.pid();
    let alert = start_alert(&first.alerts);
    assert_eq!(alert["rule"]["id"], "dockwatch-started", "{alert:#}");
    assert_eq!(
        alert["dockwatch"]["start"]["previous_run"], "none",
        "{alert:#}"
    );
    assert!(alert["dockwatch"]["start"].get("previous_pid").is_none());
    let (daemon, _, _dir) = first.into_parts();
    assert!(daemon.stop().success());

    let second = Monitored::start(RULES, &config);
    let second_pid = second.daemon.pid();
    let alert = start_alert(&second.alerts);
    assert_eq!(alert["rule"]["id"], "dockwatch-started", "{alert:#}");
    let start = &alert["dockwatch"]["start"];
    assert_eq!(start["previous_run"], "clean", "{alert:#}");
    assert_eq!(start["previous_pid"], first_pid, "{alert:#}");
    assert!(start["gap_seconds"].as_u64().is_some(), "{alert:#}");
    let (daemon, _, _dir) = second.into_parts();
    daemon.kill();

    let third = Monitored::start(RULES, &config);
    let alert = start_alert(&third.alerts);
    assert_eq!(
        alert["rule"]["id"], "dockwatch-restarted-unclean",
        "{alert:#}"
    );
    let start = &alert["dockwatch"]["start"];
    assert_eq!(start["previous_run"], "unclean", "{alert:#}");
    assert_eq!(start["previous_pid"], second_pid, "{alert:#}");
    assert!(start["gap_seconds"].as_u64().is_some(), "{alert:#}");
    let (daemon, _, _dir) = third.into_parts();
    assert!(daemon.stop().success());
}
