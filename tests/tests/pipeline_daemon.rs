//! The pipeline inside the real daemon: one write seen by both the eBPF
//! probes and a real auditd (loaded from `dockwatch rules auditctl`) is one
//! alert, sent on eBPF's sighting with audit's folded into it; a flood of writes from one process is a
//! bounded number of alerts whose counts add up. Root and the machine lock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dockwatch_tests::auditd::{auditctl, Auditd};
use dockwatch_tests::layout::Layout;
use dockwatch_tests::{
    alerts_for, machine_lock, read_alerts, run_cli, shipped_rules, wait_for_alerts, Daemon,
};

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

fn start(tmp: &Path, config: &str) -> (Daemon, PathBuf) {
    let config_file = tmp.join("config.toml");
    std::fs::write(&config_file, config).unwrap();
    let alerts = tmp.join("alerts.jsonl");
    let daemon = Daemon::start([
        "run".as_ref(),
        "--config".as_ref(),
        config_file.as_os_str(),
        "--rules".as_ref(),
        shipped_rules().as_os_str(),
        "--output".as_ref(),
        format!("file://{}", alerts.display()).as_ref(),
    ]);
    (daemon, alerts)
}

#[test]
fn a_write_seen_by_both_sources_is_one_alert_with_the_inode_hooks() {
    a_write_seen_by_both_sources_is_one_alert("inode");
}

#[test]
fn a_write_seen_by_both_sources_is_one_alert_with_the_syscall_hooks() {
    a_write_seen_by_both_sources_is_one_alert("syscalls");
}

/// `cp` over daemon.json: audit and the eBPF `hooks` both see one open for
/// write (the inode hooks see the truncation, and fold the write after it
/// into it).
fn a_write_seen_by_both_sources_is_one_alert(hooks: &str) {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let auditd = Auditd::start("ENRICHED", &[]);
    let (code, rules, stderr) = run_cli([
        "rules".as_ref(),
        "auditctl".as_ref(),
        "--rules".as_ref(),
        shipped_rules().as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let tmp = tempfile::tempdir().unwrap();
    let rules_file = tmp.path().join("audit.rules");
    std::fs::write(&rules_file, rules).unwrap();
    auditctl(&["-R", rules_file.to_str().unwrap()]);

    let (daemon, alerts_file) = start(
        tmp.path(),
        &format!(
            "[pipeline]\ncorrelation_window_ms = 1000\n[posture]\nenabled = false\n\
             [sources.audit]\nlog = {:?}\n[sources.ebpf]\nhooks = \"{hooks}\"\n",
            auditd.log_path()
        ),
    );
    daemon
        .log()
        .iter()
        .find(|l| l.contains("sources=\"ebpf,audit"))
        .unwrap_or_else(|| panic!("both sources must run: {:#?}", daemon.log()));

    let new_config = tmp.path().join("daemon.json.new");
    std::fs::write(&new_config, "{\"icc\": false}\n").unwrap();
    let started = Instant::now();
    let child = Command::new("/usr/bin/cp")
        .arg(&new_config)
        .arg(DAEMON_JSON)
        .spawn()
        .expect("run cp");
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());

    let alerts = wait_for_alerts(&alerts_file, Duration::from_secs(5), |a| {
        !alerts_for(a, DAEMON_JSON).is_empty()
    });
    let latency = started.elapsed();
    // A twin that missed the window would show up as a second alert.
    std::thread::sleep(Duration::from_millis(1500));
    let alerts = if alerts.is_empty() {
        alerts
    } else {
        read_alerts(&alerts_file)
    };
    drop(daemon);
    let ours = alerts_for(&alerts, DAEMON_JSON);
    assert_eq!(ours.len(), 1, "one alert for one write: {alerts:#?}");
    let alert = ours[0];
    // eBPF's sighting comes first and leaves at once; audit's is folded.
    assert_eq!(
        alert["event"]["provider"],
        serde_json::json!(["ebpf"]),
        "{alert:#}"
    );
    assert_eq!(alert["event"]["action"], "open_write");
    assert_eq!(alert["rule"]["id"], "docker-config-write");
    assert_eq!(alert["process"]["pid"], pid);
    assert_eq!(alert["process"]["executable"], "/usr/bin/cp");
    assert!(latency < Duration::from_secs(2), "alert took {latency:?}");
}

#[test]
fn a_flood_of_writes_is_a_few_alerts_with_counts() {
    const WRITES: u64 = 20_000;
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let tmp = tempfile::tempdir().unwrap();
    let (daemon, alerts_file) = start(
        tmp.path(),
        // Every open counts, write-free ones too: the syscall hooks.
        "[posture]\nenabled = false\n[sources.audit]\nmode = \"off\"\n\
         [sources.ebpf]\nring_buffer_kib = 16384\nhooks = \"syscalls\"\n",
    );

    // One process opening daemon.json for write 20,000 times.
    let child = Command::new("/bin/sh")
        .args([
            "-c",
            &format!("i=0; while [ $i -lt {WRITES} ]; do : >> {DAEMON_JSON}; i=$((i+1)); done"),
        ])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());

    let counted = |alerts: &[serde_json::Value]| -> u64 {
        alerts_for(alerts, DAEMON_JSON)
            .iter()
            .filter(|a| a["process"]["pid"] == pid)
            .map(|a| a["event"]["count"].as_u64().unwrap_or(1))
            .sum()
    };
    // Records the kernel could not queue are counted and reported by the
    // eBPF source; the alerts must account for every other write.
    let lost = |log: &[String]| -> u64 {
        log.iter()
            .filter(|l| l.contains("ring buffer full"))
            .filter_map(|l| l.rsplit("count=").next()?.trim().parse::<u64>().ok())
            .sum()
    };
    let alerts = wait_for_alerts(&alerts_file, Duration::from_secs(10), |a| {
        counted(a) + lost(&daemon.log()) >= WRITES
    });
    // Nothing more may come.
    std::thread::sleep(Duration::from_millis(1500));
    let alerts = if alerts.is_empty() {
        alerts
    } else {
        read_alerts(&alerts_file)
    };
    let log = daemon.log();
    drop(daemon);
    let ours: Vec<_> = alerts_for(&alerts, DAEMON_JSON)
        .into_iter()
        .filter(|a| a["process"]["pid"] == pid)
        .collect();
    assert_eq!(
        counted(&alerts) + lost(&log),
        WRITES,
        "every write counted or reported lost:\n{}",
        log.join("\n")
    );
    assert!(
        ours.len() <= 30,
        "{} alerts for {WRITES} writes: the flood was not aggregated",
        ours.len()
    );
    assert!(ours
        .iter()
        .all(|a| a["rule"]["id"] == "docker-config-write"));
    assert!(ours.iter().any(|a| a["event"]["count"].as_u64() > Some(1)));
}
