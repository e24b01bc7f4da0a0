//! Shared harness for the integration tests: they run the real `dockwatch`
//! binary as root against the real kernel, auditd and rsyslogd.
//!
//! Tests that touch machine-wide state (auditd and its rules, rsyslogd,
//! /etc/docker, loaded probes) take [`machine_lock`] first: an exclusive
//! `flock` that serializes them across test binaries and across concurrent
//! `cargo test` runs, so every test passes alone and in any order.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod auditd;
pub mod docker;
pub mod layout;
pub mod rsyslog;

/// CIS Docker Benchmark 1.1.3 to 1.1.18 and the rest of the baseline's
/// audit list.
pub const CIS_AUDIT_PATHS: &[&str] = &[
    "/usr/bin/dockerd",
    "/run/containerd",
    "/var/lib/docker",
    "/etc/docker",
    "/lib/systemd/system/docker.service",
    "/usr/lib/systemd/system/docker.service",
    "/run/containerd/containerd.sock",
    "/lib/systemd/system/docker.socket",
    "/usr/lib/systemd/system/docker.socket",
    "/etc/default/docker",
    "/etc/docker/daemon.json",
    "/etc/containerd",
    "/etc/sysconfig/docker",
    "/usr/bin/containerd",
    "/usr/bin/containerd-shim",
    "/usr/bin/containerd-shim-runc-v1",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/bin/runc",
    "/usr/bin/docker",
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/etc/group",
    "/etc/gshadow",
];

/// Held while a test uses machine-wide state; released on drop.
pub struct MachineLock {
    _file: File,
}

/// Waits for and takes the machine-wide test lock.
pub fn machine_lock() -> MachineLock {
    let path = "/run/lock/dockwatch-tests.lock";
    let _ = std::fs::create_dir_all("/run/lock");
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the test lock file");
    // SAFETY: flock on a file descriptor we own; blocks until granted.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {path}: {}", std::io::Error::last_os_error());
    MachineLock { _file: file }
}

/// Inside `cargo xtask kernels`' VM only: is `hooks` a hook set the booted
/// kernel lacks? Its init script names them in `DOCKWATCH_VM_MISSING_HOOKS`
/// (the inode hooks need Linux 6.13); their tests are skipped there and
/// nowhere else, since on the host every hook set must work.
pub fn missing_in_vm(hooks: &str) -> bool {
    let missing =
        std::env::var("DOCKWATCH_VM_MISSING_HOOKS").is_ok_and(|v| v.split(',').any(|h| h == hooks));
    if missing {
        eprintln!("skipped: this VM's kernel has no {hooks} hooks");
    }
    missing
}

/// How long a daemon may take to start: 30 s, or in `cargo xtask kernels`'
/// VM what its init script sets (`DOCKWATCH_VM_READY_S`): under emulation
/// the 5.10 verifier alone takes about 40 s for the bounded-loop programs.
fn ready_timeout() -> Duration {
    let secs = std::env::var("DOCKWATCH_VM_READY_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// The `dockwatch` binary under test: `$DOCKWATCH_BIN`, else the one built
/// beside this test binary (`target/<profile>/dockwatch`).
pub fn dockwatch_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DOCKWATCH_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/dockwatch
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .join("dockwatch");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test`, or `cargo build -p monitor` first",
        bin.display()
    );
    bin
}

/// Absolute path of the repository's shipped rules directory.
pub fn shipped_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

/// Absolute path of a file under ../shared/fixtures (beside the checkout).
pub fn shared_fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(rel)
}

/// A running `dockwatch` process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `dockwatch ARGS` and waits until it logs `dockwatch ready`.
    pub fn start<I, S>(args: I) -> Daemon
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Daemon::start_with_env(args, &[])
    }

    pub fn start_with_env<I, S>(args: I, env: &[(&str, &str)]) -> Daemon
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(dockwatch_bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn dockwatch");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("stderr piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[dockwatch] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut daemon = Daemon { child, stderr };
        daemon.wait_for_log("dockwatch ready", ready_timeout());
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines dockwatch wrote to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until a stderr line contains `needle`; panics with the log.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().iter().any(|l| l.contains(needle)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "dockwatch exited ({status}) before logging {needle:?}:\n{}",
                    self.log().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "dockwatch did not log {needle:?} within {timeout:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait dockwatch") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait dockwatch");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Builds the freestanding C program `source` (its own `_start`, raw
/// system calls, no libc) as the static executable `dir/name`, with
/// clang-22 and `flags` (`-m32`, `-DNAME=...`): an attacker's tool where
/// no shell command does the job (an `int 0x80` writer, a unix-socket
/// client in a busybox container).
pub fn build_freestanding_c(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let file = dir.join(format!("{name}.c"));
    std::fs::write(&file, source).expect("write the C source");
    let exe = dir.join(name);
    let out = Command::new("clang-22")
        .args(["-nostdlib", "-static", "-O1", "-fno-pic"])
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&file)
        .output()
        .expect("run clang-22 (apt-get install clang-22, or `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "clang-22 {name}.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// The rule most tests watch /etc/docker with (`docker-config-write`),
/// for `actions` (`"open_write"`, `"open_write, write"`).
pub fn docker_config_rule(actions: &str) -> String {
    format!(
        "rules:\n  - id: docker-config-write\n    name: Docker daemon configuration modified\n    \
         severity: warning\n    paths: [/etc/docker]\n    actions: [{actions}]\n"
    )
}

/// `dockwatch run` over a private rules directory and configuration,
/// writing alerts to a private JSONL file; all removed on drop.
pub struct Monitored {
    pub daemon: Daemon,
    /// The alert file (`--output file://…`).
    pub alerts: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Monitored {
    /// Writes `rules_yaml` as the only rule file and `config_toml` as the
    /// configuration, then starts the daemon and waits until it is ready.
    pub fn start(rules_yaml: &str, config_toml: &str) -> Monitored {
        Monitored::launch(&[], "rules.yaml", rules_yaml, config_toml)
    }

    /// The same with the audit source alone, tailing `audit_log` (the eBPF
    /// source off, so every alert is the audit source's).
    pub fn start_on_audit_log(rules_yaml: &str, audit_log: &Path) -> Monitored {
        Monitored::start(
            rules_yaml,
            &format!("[sources.ebpf]\nenabled = false\n[sources.audit]\nlog = {audit_log:?}\n"),
        )
    }

    /// The same over the shipped rules plus `rules_yaml` (as `99-test.yaml`).
    pub fn start_over_shipped(rules_yaml: &str, config_toml: &str) -> Monitored {
        let shipped: Vec<PathBuf> = std::fs::read_dir(shipped_rules())
            .expect("read the shipped rules")
            .map(|entry| entry.expect("read the shipped rules").path())
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .collect();
        Monitored::launch(&shipped, "99-test.yaml", rules_yaml, config_toml)
    }

    fn launch(copies: &[PathBuf], name: &str, rules_yaml: &str, config_toml: &str) -> Monitored {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rules = tmp.path().join("rules");
        std::fs::create_dir(&rules).expect("mkdir rules");
        for file in copies {
            std::fs::copy(file, rules.join(file.file_name().unwrap())).expect("copy a rule file");
        }
        std::fs::write(rules.join(name), rules_yaml).expect("write rules");
        let config = tmp.path().join("config.toml");
        std::fs::write(&config, config_toml).expect("write config");
        let alerts = tmp.path().join("alerts.jsonl");
        let daemon = Daemon::start([
            "run".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--rules".as_ref(),
            rules.as_os_str(),
            "--output".as_ref(),
            format!("file://{}", alerts.display()).as_ref(),
        ]);
        Monitored {
            daemon,
            alerts,
            _tmp: tmp,
        }
    }

    /// The daemon, the alert file and the private directory that holds
    /// it (removed when dropped), for a test's own wrapper.
    pub fn into_parts(self) -> (Daemon, PathBuf, tempfile::TempDir) {
        (self.daemon, self.alerts, self._tmp)
    }

    /// The private directory: `rules/rules.yaml`, `config.toml`, the alert
    /// file, and room for a test's own files (removed with it).
    pub fn dir(&self) -> &Path {
        self._tmp.path()
    }
}

/// Every complete JSON line of `path` (missing file: none). A last line
/// without its newline is one the daemon is still writing: left for the
/// next read, where it must parse like every other.
pub fn read_alerts(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Polls `path` until `done(alerts)` holds or `timeout` passes; returns the
/// alerts seen last either way.
pub fn wait_for_alerts(
    path: &Path,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let alerts = read_alerts(path);
        if done(&alerts) || Instant::now() > deadline {
            return alerts;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Alerts whose `file.path` is `path`.
pub fn alerts_for<'a>(alerts: &'a [Value], path: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["file"]["path"] == path)
        .collect()
}

/// Runs `dockwatch ARGS` to completion; returns (exit code, stdout, stderr).
pub fn run_cli<I, S>(args: I) -> (i32, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(dockwatch_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dockwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
