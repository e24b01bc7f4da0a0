//! Live drift with `dockwatch run`: a change to a file the baseline reads
//! becomes exactly one `posture_drift` alert with the value before and
//! after. Each scenario runs twice: with the events from a real auditd (eBPF
//! off) and from the eBPF probes alone (audit off). The files are the real
//! ones, so every test holds the machine lock and restores what it changed.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dockwatch_tests::auditd::Auditd;
use dockwatch_tests::{machine_lock, read_alerts, shipped_rules, wait_for_alerts, Daemon};
use serde_json::{json, Value};

/// A real file or directory entry put back as it was on drop: the original
/// bytes and mode, or nothing when it did not exist.
struct Preserve {
    path: PathBuf,
    original: Option<(Vec<u8>, u32)>,
    created_dirs: Vec<PathBuf>,
}

impl Preserve {
    fn new(path: &str) -> Preserve {
        let path = PathBuf::from(path);
        let original = std::fs::read(&path).ok().map(|bytes| {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            (bytes, mode)
        });
        let mut created_dirs = Vec::new();
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d.exists() {
                break;
            }
            created_dirs.push(d.to_path_buf());
            dir = d.parent();
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        Preserve {
            path,
            original,
            created_dirs,
        }
    }
}

impl Drop for Preserve {
    fn drop(&mut self) {
        match &self.original {
            Some((bytes, mode)) => {
                let _ = std::fs::remove_file(&self.path);
                std::fs::write(&self.path, bytes).expect("restore the original file");
                let _ =
                    std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(*mode));
            }
            None => {
                if self.path.is_dir() {
                    let _ = std::fs::remove_dir_all(&self.path);
                } else {
                    let _ = std::fs::remove_file(&self.path);
                }
            }
        }
        for dir in &self.created_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Where dockwatch's events come from.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// A real auditd with `-w` rules on the watched paths; eBPF off.
    Audit,
    /// The eBPF probes, watching what posture asks for; audit off.
    Ebpf,
}

/// dockwatch running with posture, fed by `via`.
struct Live {
    _tmp: tempfile::TempDir,
    alerts: PathBuf,
    daemon: Option<Daemon>,
    auditd: Option<Auditd>,
}

impl Live {
    /// `watches` are the audit rules' paths (eBPF needs none: posture
    /// gives the probes its files itself).
    fn start(via: Via, watches: &[&str], posture: &str) -> Live {
        let tmp = tempfile::tempdir().unwrap();
        let (auditd, sources) = match via {
            Via::Audit => {
                let rules: Vec<String> = watches
                    .iter()
                    .map(|w| format!("-w {w} -p wa -k dockwatch-posture"))
                    .collect();
                let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
                let auditd = Auditd::start("ENRICHED", &rules);
                let sources = format!(
                    "[sources.ebpf]\nenabled = false\n[sources.audit]\nlog = {:?}\n",
                    auditd.log_path()
                );
                (Some(auditd), sources)
            }
            Via::Ebpf => (None, "[sources.audit]\nmode = \"off\"\n".to_string()),
        };
        let config = tmp.path().join("config.toml");
        std::fs::write(&config, format!("{sources}[posture]\n{posture}\n")).unwrap();
        let alerts = tmp.path().join("alerts.jsonl");
        let daemon = Daemon::start([
            "run".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--rules".as_ref(),
            shipped_rules().as_os_str(),
            "--output".as_ref(),
            format!("file://{}", alerts.display()).as_ref(),
        ]);
        Live {
            _tmp: tmp,
            alerts,
            daemon: Some(daemon),
            auditd,
        }
    }

    /// The `posture_drift` alerts of check `id` once one has arrived, after
    /// a quiet second that would reveal any duplicate.
    fn drift(&self, id: &str) -> Vec<Value> {
        let of_check = |alerts: &[Value]| -> Vec<Value> {
            alerts
                .iter()
                .filter(|a| a["event"]["action"] == "posture_drift" && a["posture"]["check"] == id)
                .cloned()
                .collect()
        };
        let seen = wait_for_alerts(&self.alerts, Duration::from_secs(10), |a| {
            !of_check(a).is_empty()
        });
        if !of_check(&seen).is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
        of_check(&read_alerts(&self.alerts))
    }

    fn all(&self) -> Vec<Value> {
        read_alerts(&self.alerts)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // dockwatch first, so it sees auditd stop as nothing special.
        drop(self.daemon.take());
        drop(self.auditd.take());
    }
}

/// Runs `sh -c script` as a new process, which the kernel audits.
fn sh(script: &str) -> u32 {
    let child = Command::new("/bin/sh")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sh -c {script:?} failed");
    pid
}

fn assert_one_change(
    alerts: &[Value],
    key: &str,
    before: Value,
    after: Value,
    status: &str,
) -> Value {
    assert_eq!(alerts.len(), 1, "want exactly one drift alert: {alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["posture"]["key"], key, "{alert:#}");
    assert_eq!(alert["posture"]["before"], before, "{alert:#}");
    assert_eq!(alert["posture"]["after"], after, "{alert:#}");
    assert_eq!(alert["posture"]["status"], status, "{alert:#}");
    assert_eq!(
        alert["event"]["provider"],
        json!(["dockwatch"]),
        "{alert:#}"
    );
    alert.clone()
}

fn icc_flipped_by_sed_i_and_by_a_rewrite_is_one_alert_each(via: Via) {
    let _lock = machine_lock();
    let _json = Preserve::new("/etc/docker/daemon.json");
    std::fs::write("/etc/docker/daemon.json", "{\n  \"icc\": false\n}\n").unwrap();
    let live = Live::start(via, &["/etc/docker"], "");
    let initial = live.all();
    assert!(
        !initial.iter().any(|a| a["rule"]["id"] == "posture-cis-2.2"),
        "icc=false is no finding: {initial:#?}"
    );

    // sed -i writes a temporary file and renames it over daemon.json.
    sh(r#"sed -i 's/"icc": false/"icc": true/' /etc/docker/daemon.json"#);
    let drift = live.drift("2.2");
    let alert = assert_one_change(&drift, "icc", json!(false), json!(true), "warn");
    assert_eq!(alert["rule"]["id"], "posture-cis-2.2");
    assert_eq!(alert["rule"]["tags"], json!(["cis:2.2"]));
    assert_eq!(alert["rule"]["severity"], "warning");
    assert_eq!(
        alert["posture"]["title"],
        "Ensure network traffic is restricted between containers on the default bridge"
    );
    assert_eq!(alert["process"]["name"], "sed", "{alert:#}");
    // Drift alerts are not file-activity alerts on daemon.json.
    assert!(alert.get("file").is_none(), "{alert:#}");

    // Truncate and rewrite in place.
    let before = live.all().len();
    sh(r#"printf '{"icc": false}\n' > /etc/docker/daemon.json"#);
    let drift = live.drift("2.2");
    assert_eq!(drift.len(), 2, "{drift:#?}");
    let back = &drift[1];
    assert_eq!(
        (&back["posture"]["before"], &back["posture"]["after"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(back["posture"]["status"], "pass");
    assert_eq!(back["rule"]["severity"], "info");
    assert!(live.all().len() > before);
}

fn a_user_added_to_the_docker_group_is_one_alert(via: Via) {
    let _lock = machine_lock();
    let _group = Preserve::new("/etc/group");
    let original = std::fs::read_to_string("/etc/group").unwrap();
    let mut edited: String = original
        .lines()
        .filter(|l| !l.starts_with("docker:"))
        .map(|l| format!("{l}\n"))
        .collect();
    edited.push_str("docker:x:4998:alice\n");
    std::fs::write("/etc/group", edited).unwrap();
    let live = Live::start(via, &["/etc/group"], "docker_group_members = [\"alice\"]");

    sh("sed -i 's/^docker:x:4998:alice$/docker:x:4998:alice,mallory/' /etc/group");
    let drift = live.drift("1.1.2");
    let alert = assert_one_change(
        &drift,
        "docker group members",
        json!(["alice"]),
        json!(["alice", "mallory"]),
        "warn",
    );
    assert_eq!(alert["posture"]["path"], "/etc/group");
    assert_eq!(alert["rule"]["id"], "posture-cis-1.1.2");
}

fn docker_sock_chmod_666_is_one_alert(via: Via) {
    let _lock = machine_lock();
    let _sock = Preserve::new("/run/docker.sock");
    let _ = std::fs::remove_file("/run/docker.sock");
    let listener = UnixListener::bind("/run/docker.sock").unwrap();
    std::fs::set_permissions("/run/docker.sock", std::fs::Permissions::from_mode(0o660)).unwrap();
    let live = Live::start(via, &["/run/docker.sock"], "");

    let pid = sh("chmod 666 /var/run/docker.sock");
    let drift = live.drift("3.16");
    let alert = assert_one_change(
        &drift,
        "docker.sock mode",
        json!("0660"),
        json!("0666"),
        "fail",
    );
    assert_eq!(alert["rule"]["severity"], "critical");
    assert_eq!(alert["rule"]["tags"], json!(["cis:3.16"]));
    // The process that did it: the shell's chmod child or the shell itself.
    assert!(
        alert["process"]["pid"].as_u64().unwrap() >= pid as u64,
        "{alert:#}"
    );
    drop(listener);
}

fn a_container_made_privileged_is_one_alert(via: Via) {
    let _lock = machine_lock();
    let id = "5d0c3a1b2e4f".repeat(5) + "6789";
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/posture/containers/hardened");
    let containers = "/var/lib/docker/containers";
    let _var_lib_docker = Preserve::new(&format!("{containers}/{id}"));
    let dir = PathBuf::from(format!("{containers}/{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let read = |name: &str| {
        std::fs::read_to_string(fixtures.join(name))
            .unwrap()
            .replace("ID_PLACEHOLDER", &id)
    };
    std::fs::write(dir.join("config.v2.json"), read("config.v2.json")).unwrap();
    std::fs::write(dir.join("hostconfig.json"), read("hostconfig.json")).unwrap();
    let privileged = read("hostconfig.json").replace("\"Privileged\":false", "\"Privileged\":true");
    assert_ne!(privileged, read("hostconfig.json"));
    let staged = std::env::temp_dir().join(format!("dockwatch-privileged-{id}.json"));
    std::fs::write(&staged, privileged).unwrap();
    let live = Live::start(via, &[containers], "");
    let initial = live.all();
    assert!(
        !initial.iter().any(|a| a["posture"]["check"] == "5.4"),
        "an unprivileged container is no finding: {initial:#?}"
    );

    // Docker's atomic write: a temporary file in the directory, renamed.
    sh(&format!(
        "cp {} {dir}/.tmp-hostconfig.json123 && mv {dir}/.tmp-hostconfig.json123 {dir}/hostconfig.json",
        staged.display(),
        dir = dir.display()
    ));
    let _ = std::fs::remove_file(&staged);
    let drift = live.drift("5.4");
    let alert = assert_one_change(
        &drift,
        "web (5d0c3a1b2e4f): privileged",
        json!(false),
        json!(true),
        "fail",
    );
    assert_eq!(alert["rule"]["id"], "posture-cis-5.4");
    assert_eq!(alert["rule"]["severity"], "critical");
    assert_eq!(
        alert["posture"]["path"],
        format!("{containers}/{id}/hostconfig.json")
    );
    // Nothing else about the container changed.
    let others: Vec<Value> = live
        .all()
        .into_iter()
        .filter(|a| {
            a["event"]["action"] == "posture_drift"
                && a["posture"]["key"].as_str().unwrap().starts_with("web ")
        })
        .collect();
    assert_eq!(others.len(), 1, "{others:#?}");
}

#[test]
fn failing_checks_are_reported_once_at_start() {
    let _lock = machine_lock();
    let _json = Preserve::new("/etc/docker/daemon.json");
    std::fs::write(
        "/etc/docker/daemon.json",
        r#"{"icc": true, "insecure-registries": ["r.local:5000"]}"#,
    )
    .unwrap();
    let live = Live::start(Via::Ebpf, &["/etc/docker"], "");
    let findings = wait_for_alerts(&live.alerts, Duration::from_secs(5), |a| {
        a.iter().any(|a| a["posture"]["check"] == "2.5")
    });
    let registry: Vec<&Value> = findings
        .iter()
        .filter(|a| a["posture"]["check"] == "2.5")
        .collect();
    assert_eq!(registry.len(), 1, "{findings:#?}");
    assert_eq!(registry[0]["event"]["action"], "posture_finding");
    assert_eq!(registry[0]["posture"]["before"], Value::Null);
    assert_eq!(registry[0]["posture"]["after"], json!(["r.local:5000"]));
    assert_eq!(registry[0]["posture"]["status"], "fail");
    // At start: the start alert, then findings, and no passing check.
    let (started, findings): (Vec<&Value>, Vec<&Value>) = findings
        .iter()
        .partition(|a| a["event"]["action"] == "monitor_start");
    assert_eq!(started.len(), 1, "{started:#?}");
    assert!(
        findings
            .iter()
            .all(|a| a["event"]["action"] == "posture_finding"),
        "{findings:#?}"
    );
    assert!(
        findings.iter().all(|a| a["posture"]["status"] != "pass"),
        "{findings:#?}"
    );
}

#[test]
fn a_change_no_source_reported_is_caught_by_the_periodic_recheck() {
    let _lock = machine_lock();
    let _group = Preserve::new("/etc/group");
    let original = std::fs::read_to_string("/etc/group").unwrap();
    let without: String = original
        .lines()
        .filter(|l| !l.starts_with("docker:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write("/etc/group", format!("{without}docker:x:4998:\n")).unwrap();
    // auditd watches nothing: only the re-check can notice.
    let live = Live::start(Via::Audit, &[], "recheck_secs = 1");
    std::fs::write("/etc/group", format!("{without}docker:x:4998:mallory\n")).unwrap();
    let drift = live.drift("1.1.2");
    let alert = assert_one_change(
        &drift,
        "docker group members",
        json!([]),
        json!(["mallory"]),
        "warn",
    );
    // No event, so no process to name.
    assert!(alert.get("process").is_none(), "{alert:#}");
}

#[test]
fn icc_flipped_by_sed_i_and_by_a_rewrite_is_one_alert_each_via_audit() {
    icc_flipped_by_sed_i_and_by_a_rewrite_is_one_alert_each(Via::Audit);
}

#[test]
fn icc_flipped_by_sed_i_and_by_a_rewrite_is_one_alert_each_via_ebpf() {
    icc_flipped_by_sed_i_and_by_a_rewrite_is_one_alert_each(Via::Ebpf);
}

#[test]
fn a_user_added_to_the_docker_group_is_one_alert_via_audit() {
    a_user_added_to_the_docker_group_is_one_alert(Via::Audit);
}

#[test]
fn a_user_added_to_the_docker_group_is_one_alert_via_ebpf() {
    a_user_added_to_the_docker_group_is_one_alert(Via::Ebpf);
}

#[test]
fn docker_sock_chmod_666_is_one_alert_via_audit() {
    docker_sock_chmod_666_is_one_alert(Via::Audit);
}

#[test]
fn docker_sock_chmod_666_is_one_alert_via_ebpf() {
    docker_sock_chmod_666_is_one_alert(Via::Ebpf);
}

#[test]
fn a_container_made_privileged_is_one_alert_via_audit() {
    a_container_made_privileged_is_one_alert(Via::Audit);
}

#[test]
fn a_container_made_privileged_is_one_alert_via_ebpf() {
    a_container_made_privileged_is_one_alert(Via::Ebpf);
}
