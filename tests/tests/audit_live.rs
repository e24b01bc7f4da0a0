//! The live audit source beyond the plain log tail: the netlink multicast
//! group (beside auditd and without it), tamper reports (rules removed,
//! auditd stopped or killed) and the kernel's lost counter.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dockwatch_tests::auditd::{auditctl, Auditd};
use dockwatch_tests::layout::Layout;
use dockwatch_tests::{alerts_for, machine_lock, read_alerts, wait_for_alerts, Daemon, Monitored};

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

fn rules() -> String {
    dockwatch_tests::docker_config_rule("open_write")
}

/// Starts dockwatch with the eBPF source off and `audit` as the
/// `[sources.audit]` section.
fn start(audit: &str) -> Monitored {
    Monitored::start(
        &rules(),
        &format!("[sources.ebpf]\nenabled = false\n[sources.audit]\n{audit}\n"),
    )
}

fn log_config(auditd: &Auditd) -> String {
    format!("log = {:?}", auditd.log_path())
}

/// Runs `touch daemon.json` and returns its pid.
fn touch() -> u32 {
    let mut child = Command::new("/usr/bin/touch")
        .arg(DAEMON_JSON)
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    pid
}

fn one_alert_for(alerts_file: &Path, pid: u32) {
    wait_for_alerts(alerts_file, Duration::from_secs(5), |a| {
        !alerts_for(a, DAEMON_JSON).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let alerts = read_alerts(alerts_file);
    let ours = alerts_for(&alerts, DAEMON_JSON);
    assert_eq!(ours.len(), 1, "{alerts:#?}");
    assert_eq!(ours[0]["event"]["provider"], serde_json::json!(["audit"]));
    assert_eq!(ours[0]["event"]["action"], "open_write");
    assert_eq!(ours[0]["process"]["pid"], pid);
    assert_eq!(ours[0]["process"]["executable"], "/usr/bin/touch");
}

fn wait_for_log(daemon: &mut Daemon, needle: &str) {
    daemon.wait_for_log(needle, Duration::from_secs(10));
}

#[test]
fn netlink_beside_auditd_gives_one_alert() {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let auditd = Auditd::start("RAW", &["-w /etc/docker -p wa -k docker"]);
    let run = start("mode = \"netlink\"");
    let pid = touch();
    one_alert_for(&run.alerts, pid);
    drop(run);
    drop(auditd);
}

#[test]
fn netlink_without_auditd_gives_one_alert() {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    // Start and stop the harness's auditd so no other auditd is running.
    drop(Auditd::start("RAW", &[]));
    auditctl(&["-e", "1"]);
    auditctl(&["-w", "/etc/docker", "-p", "wa", "-k", "docker"]);
    let run = start("mode = \"netlink\"\nexpect_auditd = false");
    let pid = touch();
    one_alert_for(&run.alerts, pid);
    drop(run);
    auditctl(&["-D"]);
}

#[test]
fn removing_audit_rules_and_stopping_auditd_are_reported_with_who() {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.dir("/etc/docker");
    let auditd = Auditd::start("ENRICHED", &["-w /etc/docker -p wa -k docker"]);
    let mut run = start(&log_config(&auditd));
    auditctl(&["-W", "/etc/docker", "-p", "wa", "-k", "docker"]);
    wait_for_log(
        &mut run.daemon,
        "audit configuration changed (remove_rule) by pid",
    );
    let line = run
        .daemon
        .log()
        .into_iter()
        .find(|l| l.contains("(remove_rule)"))
        .unwrap();
    assert!(line.contains("(/usr/sbin/auditctl)"), "{line}");
    assert!(line.contains("key=\"docker\""), "{line}");
    let removed = tamper_alert(&run.alerts, "remove_rule");
    assert_eq!(removed["process"]["executable"], "/usr/sbin/auditctl");
    drop(auditd);
    wait_for_log(&mut run.daemon, "audit configuration changed (terminate)");
    tamper_alert(&run.alerts, "terminate");
    // The kernel status agrees auditd is gone, but DAEMON_END said so first.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !run.daemon.log().iter().any(|l| l.contains("auditd_gone")),
        "{:#?}",
        run.daemon.log()
    );
}

#[test]
fn auditd_killed_without_a_word_is_reported() {
    let _lock = machine_lock();
    let auditd = Auditd::start("RAW", &[]);
    let mut run = start(&log_config(&auditd));
    // Let the status watchdog see auditd running first.
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on the auditd this test started.
    unsafe { libc::kill(auditd.pid() as i32, libc::SIGKILL) };
    // The kernel notices a dead auditd when it next sends it a record.
    std::thread::sleep(Duration::from_millis(200));
    auditctl(&["-m", "dockwatch test: after auditd was killed"]);
    wait_for_log(&mut run.daemon, "audit configuration changed (auditd_gone)");
    tamper_alert(&run.alerts, "auditd_gone");
    drop(run);
    drop(auditd);
}

/// The one `audit-tampered` alert for audit operation `op`, waited for.
fn tamper_alert(alerts: &Path, op: &str) -> serde_json::Value {
    let is_it =
        |a: &serde_json::Value| a["rule"]["id"] == "audit-tampered" && a["audit"]["op"] == op;
    let all = wait_for_alerts(alerts, Duration::from_secs(3), |all| all.iter().any(is_it));
    let found: Vec<_> = all.iter().filter(|a| is_it(a)).collect();
    assert_eq!(
        found.len(),
        1,
        "one audit-tampered alert for {op}: {all:#?}"
    );
    assert_eq!(found[0]["rule"]["severity"], "critical");
    found[0].clone()
}

/// The kernel's backlog settings, to restore after the loss test.
fn backlog_settings() -> (String, String) {
    let status = auditctl(&["-s"]);
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap()
    };
    (get("backlog_limit "), get("backlog_wait_time "))
}

#[test]
fn records_dropped_by_the_kernel_are_reported() {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.dir("/etc/docker");
    let auditd = Auditd::start("RAW", &["-w /etc/docker -p wa -k docker"]);
    let mut run = start(&log_config(&auditd));
    std::thread::sleep(Duration::from_millis(1500));
    let (limit, wait) = backlog_settings();
    // A frozen auditd and a one-record backlog: the burst overflows it.
    auditctl(&["-b", "1", "--backlog_wait_time", "0"]);
    // SAFETY: kill(2) on the auditd this test started.
    unsafe { libc::kill(auditd.pid() as i32, libc::SIGSTOP) };
    let status = Command::new("/bin/sh")
        .args([
            "-c",
            "for n in $(seq 1 50); do : > /etc/docker/lost-$n; done; rm -f /etc/docker/lost-*",
        ])
        .status()
        .unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(auditd.pid() as i32, libc::SIGCONT) };
    auditctl(&["-b", &limit, "--backlog_wait_time", &wait]);
    assert!(status.success());
    wait_for_log(
        &mut run.daemon,
        "audit records dropped by the kernel (lost counter)",
    );
    let alerts = wait_for_alerts(&run.alerts, Duration::from_secs(5), |a| {
        a.iter()
            .any(|a| a["rule"]["id"] == "dockwatch-records-lost")
    });
    let lost = alerts
        .iter()
        .find(|a| a["rule"]["id"] == "dockwatch-records-lost")
        .expect("a records-lost alert");
    assert!(
        lost["dockwatch"]["lost"]["count"].as_u64().unwrap() >= 1,
        "{lost}"
    );
    drop(run);
    drop(auditd);
}
