//! A 32-bit process on the 64-bit host: `int 0x80` calls, numbered from
//! i386's table (`open` is 5, not 2), which audit logs with
//! `arch=40000003`. An attacker who knows a monitor reads 64-bit syscall
//! numbers writes daemon.json this way. The writer is built here with
//! clang (`-m32 -nostdlib`: no 32-bit libc needed). Real auditd, real
//! probes; each way is exactly one alert naming the file and the writer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dockwatch_tests::auditd::Auditd;
use dockwatch_tests::layout::Layout;
use dockwatch_tests::{alerts_for, machine_lock, read_alerts, Monitored};
use serde_json::Value;

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

fn rules() -> String {
    dockwatch_tests::docker_config_rule("open_write, write")
}

/// `open(path, O_WRONLY|O_APPEND)`, `write(fd, "x\n", 2)`, `exit`, each
/// through `int 0x80`; exits 0 when both calls succeeded.
const WRITER: &str = r#"
static int sys3(int nr, int a, int b, int c) {
    int ret;
    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}
void _start(void) {
    static const char path[] = TARGET;
    static const char line[] = "x\n";
    int fd = sys3(5, (int)path, 01 | 02000, 0);
    int rc = fd < 0 ? 1 : (sys3(4, fd, (int)line, 2) == 2 ? 0 : 2);
    sys3(1, rc, 0, 0);
}
"#;

/// The 32-bit writer of `target`, built in `dir`.
fn build_writer(dir: &Path, target: &str) -> PathBuf {
    let define = format!("-DTARGET=\"{target}\"");
    dockwatch_tests::build_freestanding_c(dir, "writer32", WRITER, &["-m32", &define])
}

/// Runs the writer; returns its pid.
fn write_32bit(exe: &Path) -> u32 {
    let mut child = Command::new(exe).spawn().unwrap();
    let pid = child.id();
    let status = child.wait().unwrap();
    assert!(status.success(), "the 32-bit writer failed: {status}");
    pid
}

/// Starts dockwatch, writes daemon.json from the 32-bit process, stops
/// dockwatch and returns the alerts about daemon.json and the writer's pid.
fn alerts_of_a_32bit_write(sources: &str) -> (Vec<Value>, u32) {
    let tmp = tempfile::tempdir().unwrap();
    let exe = build_writer(tmp.path(), DAEMON_JSON);
    let monitored = Monitored::start(
        &rules(),
        &format!("[posture]\nenabled = false\n[pipeline]\nflood_window_ms = 0\n{sources}"),
    );
    let pid = write_32bit(&exe);
    // The alert is out before the daemon's clean stop returns.
    dockwatch_tests::wait_for_alerts(&monitored.alerts, Duration::from_secs(5), |a| {
        !alerts_for(a, DAEMON_JSON).is_empty()
    });
    let (daemon, alerts, _dir) = monitored.into_parts();
    assert!(daemon.stop().success());
    let all = read_alerts(&alerts);
    let ours = alerts_for(&all, DAEMON_JSON).into_iter().cloned().collect();
    assert_eq!(
        std::fs::read_to_string(DAEMON_JSON).unwrap(),
        "{}\nx\n",
        "the writer wrote"
    );
    (ours, pid)
}

fn assert_one_alert_by(alerts: &[Value], pid: u32, providers: &[&str]) -> Value {
    assert_eq!(alerts.len(), 1, "one alert: {alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["rule"]["id"], "docker-config-write", "{alert:#}");
    assert_eq!(alert["process"]["pid"], pid, "{alert:#}");
    assert_eq!(
        alert["event"]["provider"],
        serde_json::json!(providers),
        "{alert:#}"
    );
    alert.clone()
}

#[test]
fn audit_alone_reads_the_i386_syscall_numbers() {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let auditd = Auditd::start("RAW", &["-w /etc/docker -p wa -k docker"]);
    let (alerts, pid) = alerts_of_a_32bit_write(&format!(
        "[sources.ebpf]\nenabled = false\n[sources.audit]\nlog = {:?}\n",
        auditd.log_path()
    ));
    let alert = assert_one_alert_by(&alerts, pid, &["audit"]);
    assert_eq!(alert["event"]["action"], "open_write", "{alert:#}");
    assert!(
        alert["process"]["executable"]
            .as_str()
            .is_some_and(|e| e.ends_with("/writer32")),
        "{alert:#}"
    );
    drop(auditd);
}

#[test]
fn the_inode_hooks_see_the_write_whatever_the_syscall_table() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let (alerts, pid) = alerts_of_a_32bit_write(
        "[sources.audit]\nmode = \"off\"\n[sources.ebpf]\nhooks = \"inode\"\n",
    );
    let alert = assert_one_alert_by(&alerts, pid, &["ebpf"]);
    assert_eq!(alert["event"]["action"], "write", "{alert:#}");
}

#[test]
fn both_sources_make_one_alert_of_the_32bit_write() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    let _lock = machine_lock();
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    let auditd = Auditd::start("RAW", &["-w /etc/docker -p wa -k docker"]);
    let (alerts, pid) = alerts_of_a_32bit_write(&format!(
        "[sources.ebpf]\nhooks = \"inode\"\n[sources.audit]\nlog = {:?}\n",
        auditd.log_path()
    ));
    assert_eq!(alerts.len(), 1, "one alert: {alerts:#?}");
    assert_eq!(alerts[0]["process"]["pid"], pid, "{:#}", alerts[0]);
    drop(auditd);
}

/// The syscall hook set cannot see such a write (the kernel does not trace
/// 32-bit calls); with audit off, `run` says so and what to do, and with
/// the inode hooks it has nothing to say.
#[test]
fn run_warns_that_the_syscall_hooks_miss_32bit_calls_when_audit_is_off() {
    let _lock = machine_lock();
    let warning = "do not see 32-bit system calls";
    let blind = Monitored::start(
        &rules(),
        "[posture]\nenabled = false\n[sources.audit]\nmode = \"off\"\n[sources.ebpf]\nhooks = \"syscalls\"\n",
    );
    let log = blind.daemon.log();
    assert!(
        log.iter()
            .any(|l| l.contains(warning) && l.contains("enable [sources.audit]")),
        "{log:#?}"
    );
    drop(blind);
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    let seeing = Monitored::start(
        &rules(),
        "[posture]\nenabled = false\n[sources.audit]\nmode = \"off\"\n[sources.ebpf]\nhooks = \"inode\"\n",
    );
    let log = seeing.daemon.log();
    assert!(
        log.iter().any(|l| l.contains("dockwatch ready")),
        "{log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains(warning)), "{log:#?}");
}
