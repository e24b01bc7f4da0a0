//! The eBPF source end to end: a real `dockwatch run` with audit off loads
//! the probes; a process opening daemon.json for write yields exactly one
//! `open_write` alert naming that process (the syscall hooks), a process
//! writing to it exactly one `write` alert (the inode hooks), and nothing
//! else does.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dockwatch_tests::layout::Layout;
use dockwatch_tests::{machine_lock, read_alerts, wait_for_alerts, Daemon};

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// A private rules directory, configuration and alert file.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(rule_paths: &[&str], actions: &[&str], hooks: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules/test.yaml"),
            format!(
                "rules:\n  - id: test-watch\n    name: test watch\n    severity: warning\n    \
                 paths: [{}]\n    actions: [{}]\n",
                rule_paths.join(", "),
                actions.join(", ")
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "[sources.audit]\nmode = \"off\"\n[posture]\nenabled = false\n\
                 [pipeline]\nflood_window_ms = 0\n[sources.ebpf]\nhooks = \"{hooks}\"\n"
            ),
        )
        .unwrap();
        Setup { dir }
    }

    fn alerts(&self) -> std::path::PathBuf {
        self.dir.path().join("alerts.jsonl")
    }

    fn start(&self) -> Daemon {
        let p = self.dir.path();
        Daemon::start([
            "run".as_ref(),
            "--config".as_ref(),
            p.join("config.toml").as_os_str(),
            "--rules".as_ref(),
            p.join("rules").as_os_str(),
            "--output".as_ref(),
            format!("file://{}", self.alerts().display()).as_ref(),
        ])
    }
}

/// Runs `sh -c script` and returns its pid once it has exited.
fn sh(script: &str) -> u32 {
    let mut child = Command::new("/bin/sh")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "sh -c {script:?} failed");
    pid
}

#[test]
fn open_for_write_of_a_watched_file_alerts_once_with_the_process() {
    alerts_once_with_the_process("syscalls", &format!("exec 3>> {DAEMON_JSON}"), "open_write");
}

#[test]
fn a_write_to_a_watched_file_alerts_once_with_the_process() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    alerts_once_with_the_process("inode", &format!("echo x >> {DAEMON_JSON}"), "write");
}

/// With the default hooks the daemon says which set it attached: on this
/// kernel (6.18, tracepoints only), the inode hooks.
#[test]
fn the_default_hooks_are_the_inode_hooks_where_the_kernel_has_them() {
    let _lock = machine_lock();
    let setup = Setup::new(&["/etc/docker"], &["write"], "auto");
    let daemon = setup.start();
    let log = daemon.log().join("\n");
    drop(daemon);
    // In `cargo xtask kernels`' VM a kernel without them uses the syscall
    // tracepoints.
    let expected = if dockwatch_tests::missing_in_vm("inode") {
        "using syscall tracepoints"
    } else {
        "using inode tracepoints (changes only)"
    };
    assert!(log.contains(expected), "{log}");
}

/// `script` changes daemon.json once; exactly one `action` alert follows,
/// naming the process, and nothing for an unwatched write or a read.
fn alerts_once_with_the_process(hooks: &str, script: &str, action: &str) {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let setup = Setup::new(&["/etc/docker"], &[action], hooks);
    let unwatched = setup.dir.path().join("unwatched.txt");
    let daemon = setup.start();

    // Neither a write elsewhere nor a read-only open of the watched file.
    sh(&format!("echo x > {}", unwatched.display()));
    sh(&format!("exec 3< {DAEMON_JSON}; cat <&3 >/dev/null"));

    let started = Instant::now();
    let pid = sh(script);
    let ours = |alerts: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        alerts
            .into_iter()
            .filter(|a| a["rule"]["id"] == "test-watch")
            .collect()
    };
    let alerts = wait_for_alerts(&setup.alerts(), Duration::from_secs(2), |a| {
        a.iter().any(|a| a["rule"]["id"] == "test-watch")
    });
    let alerts = ours(alerts);
    let latency = started.elapsed();
    assert!(
        !alerts.is_empty(),
        "no alert within 2 s of opening {DAEMON_JSON} for write"
    );
    // Anything late or duplicated would show up here.
    std::thread::sleep(Duration::from_millis(500));
    let alerts = ours(read_alerts(&setup.alerts()));
    drop(daemon);

    assert_eq!(alerts.len(), 1, "exactly one alert expected: {alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["event"]["action"], action, "{alert:#}");
    assert_eq!(alert["event"]["outcome"], "success", "{alert:#}");
    assert_eq!(alert["event"]["provider"][0], "ebpf", "{alert:#}");
    assert_eq!(alert["file"]["path"], DAEMON_JSON, "{alert:#}");
    assert_eq!(alert["process"]["pid"], pid, "{alert:#}");
    let sh_exe = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(
        alert["process"]["executable"],
        sh_exe.to_str().unwrap(),
        "{alert:#}"
    );
    assert_eq!(alert["rule"]["id"], "test-watch", "{alert:#}");
    let meta = std::fs::metadata(DAEMON_JSON).unwrap();
    let device = format!("{}:{}", libc::major(meta.dev()), libc::minor(meta.dev()));
    assert_eq!(alert["file"]["device"], device.as_str(), "{alert:#}");
    assert_eq!(alert["file"]["inode"], meta.ino().to_string(), "{alert:#}");
    assert!(latency < Duration::from_secs(2), "took {latency:?}");
    assert!(Path::new(DAEMON_JSON).exists());
}
