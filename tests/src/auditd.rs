//! A real auditd for one test: its own config directory and log file, the
//! kernel's audit rules replaced by the test's, and everything undone on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running auditd started with `-n` (no fork) so the test owns it.
pub struct Auditd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Auditd {
    /// Stops any auditd already running, starts one logging to a private
    /// file in RAW or ENRICHED `format`, and loads `rules` (auditctl syntax,
    /// one rule per entry, e.g. `-w /etc/docker -p wa -k docker`).
    pub fn start(format: &str, rules: &[&str]) -> Auditd {
        stop_running_auditd();
        let dir = tempfile::Builder::new()
            .prefix("dockwatch-auditd")
            .tempdir()
            .expect("tempdir");
        let log = dir.path().join("audit.log");
        let conf = format!(
            "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_group = root\nlog_format = {format}\n\
             flush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 512\nnum_logs = 30\npriority_boost = 4\n\
             name_format = NONE\nmax_log_file_action = IGNORE\nspace_left = 75\nspace_left_action = IGNORE\n\
             admin_space_left = 50\nadmin_space_left_action = IGNORE\ndisk_full_action = IGNORE\n\
             disk_error_action = IGNORE\nuse_libwrap = no\ntcp_listen_queue = 5\ntcp_max_per_addr = 1\n\
             tcp_client_max_idle = 0\ntransport = TCP\ndistribute_network = no\nq_depth = 2000\n\
             overflow_action = SYSLOG\nmax_restarts = 10\nplugin_dir = /etc/audit/plugins.d\nend_of_event_timeout = 2\n",
            log.display()
        );
        std::fs::write(dir.path().join("auditd.conf"), conf).expect("write auditd.conf");
        let child = Command::new("auditd")
            .arg("-n")
            .arg("-c")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start auditd (apt-get install auditd, or run `cargo xtask setup`)");
        let auditd = Auditd { child, dir };
        auditd.wait_until_logging();
        auditctl(&["-D"]);
        for rule in rules {
            let args: Vec<&str> = rule.split_whitespace().collect();
            auditctl(&args);
        }
        auditd
    }

    /// auditd's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// The private config directory (auditd.conf lives here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks auditd to rotate its log (`kill -USR1`).
    pub fn rotate(&self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR1) };
    }

    fn wait_until_logging(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        // auditd writes DAEMON_START once it has registered with the kernel.
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(self.log_path()) {
                if text.contains("DAEMON_START") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("auditd did not start logging within 10 s");
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        auditctl(&["-D"]);
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
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

/// Runs `auditctl ARGS`, panicking with its stderr on failure.
pub fn auditctl(args: &[&str]) -> String {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .expect("run auditctl");
    assert!(
        out.status.success(),
        "auditctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ends any auditd not started by this harness; only one may hold the
/// kernel's audit pid at a time.
fn stop_running_auditd() {
    let _ = Command::new("pkill")
        .args(["-TERM", "-x", "auditd"])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let running = Command::new("pgrep")
            .args(["-x", "auditd"])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !running {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("an auditd is running and did not stop on SIGTERM");
}
