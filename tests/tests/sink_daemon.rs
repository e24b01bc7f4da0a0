//! The outputs wired into a real `dockwatch run`: one write to daemon.json
//! reaches both a file and a private rsyslogd (RFC 5424, PROCID = the
//! daemon's pid), and after logrotate's rename + SIGHUP the next alert goes
//! to the new file only.

use std::process::Command;
use std::time::Duration;

use dockwatch_tests::layout::Layout;
use dockwatch_tests::rsyslog::{alert_of, Rsyslog};
use dockwatch_tests::{machine_lock, read_alerts, wait_for_alerts, Daemon};
use serde_json::Value;

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

fn write_daemon_json() {
    let status = Command::new("/bin/sh")
        .args(["-c", &format!("echo '{{}}' > {DAEMON_JSON}")])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn daemon_delivers_to_file_and_syslog_and_reopens_on_sighup() {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let rsyslog = Rsyslog::start();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join("rules")).unwrap();
    std::fs::write(
        p.join("rules/test.yaml"),
        "rules:\n  - id: test-watch\n    name: test watch\n    severity: warning\n    \
         paths: [/etc/docker]\n    actions: [open_write]\n",
    )
    .unwrap();
    std::fs::write(
        p.join("config.toml"),
        format!(
            "state_dir = \"{}\"\n[sources.audit]\nmode = \"off\"\n[posture]\nenabled = false\n",
            p.join("state").display()
        ),
    )
    .unwrap();
    let alerts = p.join("alerts.jsonl");
    let daemon = Daemon::start([
        "run".as_ref(),
        "--config".as_ref(),
        p.join("config.toml").as_os_str(),
        "--rules".as_ref(),
        p.join("rules").as_os_str(),
        "--output".as_ref(),
        format!("file://{}", alerts.display()).as_ref(),
        "--output".as_ref(),
        rsyslog.tcp_url().as_ref(),
    ]);

    // Both outputs get the start alert first; the test counts its own.
    let ours = |alerts: Vec<Value>| -> Vec<Value> {
        alerts
            .into_iter()
            .filter(|a| a["rule"]["id"] == "test-watch")
            .collect()
    };
    let our_records = |records: Vec<Value>| -> Vec<Value> {
        records
            .into_iter()
            .filter(|r| r["msgid"] == "test-watch")
            .collect()
    };
    let started = rsyslog.wait_for(Duration::from_secs(5), |r| {
        r.iter().any(|r| r["msgid"] == "dockwatch-started")
    });
    assert!(
        started.iter().any(|r| r["msgid"] == "dockwatch-started"),
        "the start alert reaches syslog: {started:#?}"
    );

    write_daemon_json();
    let got = ours(wait_for_alerts(&alerts, Duration::from_secs(5), |a| {
        !ours(a.to_vec()).is_empty()
    }));
    assert_eq!(got.len(), 1, "{got:#?}");
    let records = our_records(rsyslog.wait_for(Duration::from_secs(5), |r| {
        !our_records(r.to_vec()).is_empty()
    }));
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["procid"], daemon.pid().to_string());
    assert_eq!(alert_of(&records[0])["file"]["path"], DAEMON_JSON);

    // logrotate's way: rename, then SIGHUP.
    let moved = p.join("alerts.jsonl.1");
    std::fs::rename(&alerts, &moved).unwrap();
    daemon.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    write_daemon_json();
    let got = wait_for_alerts(&alerts, Duration::from_secs(5), |a| !a.is_empty());
    assert_eq!(got.len(), 1, "the new file gets the next alert: {got:#?}");
    assert_eq!(got[0]["rule"]["id"], "test-watch", "{got:#?}");
    assert_eq!(
        ours(read_alerts(&moved)).len(),
        1,
        "nothing more in the moved file"
    );
    let records = our_records(rsyslog.wait_for(Duration::from_secs(5), |r| {
        our_records(r.to_vec()).len() >= 2
    }));
    assert_eq!(
        records.len(),
        2,
        "syslog reconnected after SIGHUP: {records:#?}"
    );
    assert!(daemon.stop().success());
}
