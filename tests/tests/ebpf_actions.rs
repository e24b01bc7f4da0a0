//! Every action the eBPF probes report, each through a real `dockwatch run`
//! (audit off) on the real kernel: the alert's action, path(s) and pid; and
//! the cases that must stay silent (unwatched files, a reused inode). Each
//! test runs once with each hook set (`syscalls::` and `inode::`): they
//! must report the same actions the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dockwatch_tests::layout::Layout;
use dockwatch_tests::{machine_lock, read_alerts, wait_for_alerts, Daemon};
use serde_json::Value;

const DOCKER: &str = "/etc/docker";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// The hook sets of `[sources.ebpf] hooks`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hooks {
    Syscalls,
    Inode,
}

impl Hooks {
    fn name(self) -> &'static str {
        match self {
            Hooks::Syscalls => "syscalls",
            Hooks::Inode => "inode",
        }
    }

    /// A shell command that opens `file` for write, and the action it
    /// raises: the syscall hooks see the open itself; the inode hooks see
    /// only changes, so the command writes.
    fn open_for_write(self, file: &str) -> (String, &'static str) {
        match self {
            Hooks::Syscalls => (format!("exec 3>> {file}"), "open_write"),
            Hooks::Inode => (format!("echo x >> {file}"), "write"),
        }
    }
}

/// A daemon with one rule, a private configuration and alert file.
struct Watching {
    dir: tempfile::TempDir,
    daemon: Option<Daemon>,
}

impl Watching {
    fn start(hooks: Hooks, paths: &[&str], actions: &[&str]) -> Watching {
        Watching::start_with(hooks, paths, actions, "")
    }

    fn start_with(hooks: Hooks, paths: &[&str], actions: &[&str], ebpf_config: &str) -> Watching {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules/test.yaml"),
            format!(
                "rules:\n  - id: test-watch\n    name: test watch\n    severity: warning\n    \
                 paths: [{}]\n    actions: [{}]\n",
                paths.join(", "),
                actions.join(", ")
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            // Posture and flood control off: these tests count the probes'
            // alerts only.
            format!(
                "[pipeline]\nflood_window_ms = 0\n[posture]\nenabled = false\n\
                 [sources.audit]\nmode = \"off\"\n[sources.ebpf]\nhooks = \"{}\"\n{ebpf_config}\n",
                hooks.name()
            ),
        )
        .unwrap();
        let p = dir.path();
        let daemon = Daemon::start([
            "run".as_ref(),
            "--config".as_ref(),
            p.join("config.toml").as_os_str(),
            "--rules".as_ref(),
            p.join("rules").as_os_str(),
            "--output".as_ref(),
            format!("file://{}", p.join("alerts.jsonl").display()).as_ref(),
        ]);
        Watching {
            dir,
            daemon: Some(daemon),
        }
    }

    fn alerts_file(&self) -> PathBuf {
        self.dir.path().join("alerts.jsonl")
    }

    /// The one alert with `action` from `pid` (or a child it forked), waited for up to 2 s; panics
    /// with everything seen when there is none or more than one.
    fn expect(&self, action: &str, pid: u32) -> Value {
        let matching = |alerts: &[Value]| -> Vec<Value> {
            alerts
                .iter()
                .filter(|a| a["event"]["action"] == action && by(a, pid))
                .cloned()
                .collect()
        };
        let alerts = wait_for_alerts(&self.alerts_file(), Duration::from_secs(2), |a| {
            !matching(a).is_empty()
        });
        let found = matching(&alerts);
        assert_eq!(
            found.len(),
            1,
            "expected one {action} alert from pid {pid}, got: {alerts:#?}"
        );
        assert_eq!(found[0]["event"]["provider"][0], "ebpf");
        found[0].clone()
    }

    /// No alert at all arrives within `wait`.
    fn expect_none(&self, wait: Duration) {
        std::thread::sleep(wait);
        let alerts = ours(read_alerts(&self.alerts_file()));
        assert!(alerts.is_empty(), "unexpected alerts: {alerts:#?}");
    }

    fn log(&self) -> Vec<String> {
        self.daemon.as_ref().unwrap().log()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop();
        }
    }
}

/// The alert is the test rule's, and its process is `pid` or its child (sh
/// forks for `a && b`). Other alerts (posture findings at start) are not
/// the probes' business here.
fn by(alert: &Value, pid: u32) -> bool {
    alert["rule"]["id"] == "test-watch"
        && (alert["process"]["pid"] == pid || alert["process"]["parent"]["pid"] == pid)
}

/// Alerts of the test rule.
fn ours(alerts: Vec<Value>) -> Vec<Value> {
    alerts
        .into_iter()
        .filter(|a| a["rule"]["id"] == "test-watch")
        .collect()
}

/// Runs `sh -c script` to completion; returns its pid.
fn sh(script: &str) -> u32 {
    let mut child = Command::new("/bin/sh")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let pid = child.id();
    let status = child.wait().unwrap();
    assert!(status.success(), "sh -c {script:?}: {status}");
    pid
}

fn docker_layout() -> Layout {
    let mut layout = Layout::new();
    layout.file(DAEMON_JSON, "{}\n");
    layout
}

fn create_in_a_watched_directory(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    layout.track("/etc/docker/new.json");
    let w = Watching::start(hooks, &[DOCKER], &["create"]);
    let pid = sh("echo '{}' > /etc/docker/new.json");
    let alert = w.expect("create", pid);
    assert_eq!(alert["file"]["path"], "/etc/docker/new.json");
}

fn truncate_by_path_and_by_descriptor(hooks: Hooks) {
    let _lock = machine_lock();
    let _layout = docker_layout();
    let w = Watching::start(hooks, &[DOCKER], &["truncate"]);
    let pid = sh(&format!(
        "perl -e 'truncate(\"{DAEMON_JSON}\", 0) or die $!'"
    ));
    assert_eq!(w.expect("truncate", pid)["file"]["path"], DAEMON_JSON);
    let pid = sh(&format!("truncate -s 1 {DAEMON_JSON}"));
    assert_eq!(w.expect("truncate", pid)["file"]["path"], DAEMON_JSON);
}

fn chmod_absolute_relative_and_through_dot_dot(hooks: Hooks) {
    let _lock = machine_lock();
    let _layout = docker_layout();
    let w = Watching::start(hooks, &[DOCKER], &["chmod"]);
    let pid = sh(&format!("chmod 600 {DAEMON_JSON}"));
    let alert = w.expect("chmod", pid);
    assert_eq!(alert["file"]["path"], DAEMON_JSON);
    assert_eq!(alert["file"]["mode"], "0600");
    let pid = sh("cd /etc/docker && chmod 640 daemon.json");
    assert_eq!(w.expect("chmod", pid)["file"]["path"], DAEMON_JSON);
    let pid = sh("cd /etc && chmod 644 docker/daemon.json");
    assert_eq!(w.expect("chmod", pid)["file"]["path"], DAEMON_JSON);
    let pid = sh("chmod 644 /etc/../etc/docker/./daemon.json");
    assert_eq!(w.expect("chmod", pid)["file"]["path"], DAEMON_JSON);
}

fn fchmod_on_an_open_descriptor(hooks: Hooks) {
    let _lock = machine_lock();
    let _layout = docker_layout();
    let w = Watching::start(hooks, &[DOCKER], &["chmod"]);
    let pid = sh(&format!(
        "perl -e 'open(my $f, \"<\", \"{DAEMON_JSON}\") or die; chmod(0600, $f) or die $!'"
    ));
    assert_eq!(w.expect("chmod", pid)["file"]["path"], DAEMON_JSON);
}

fn chown_reports_the_new_owner(hooks: Hooks) {
    let _lock = machine_lock();
    let _layout = docker_layout();
    let w = Watching::start(hooks, &[DOCKER], &["chown"]);
    let pid = sh(&format!("chown 1:2 {DAEMON_JSON}"));
    let alert = w.expect("chown", pid);
    assert_eq!(alert["file"]["path"], DAEMON_JSON);
}

fn setxattr_and_removexattr(hooks: Hooks) {
    let _lock = machine_lock();
    let _layout = docker_layout();
    let w = Watching::start(hooks, &[DOCKER], &["setxattr"]);
    let path = std::ffi::CString::new(DAEMON_JSON).unwrap();
    // trusted.*, not user.*: tmpfs (the root of `cargo xtask kernels`' VM)
    // has user xattrs only from Linux 6.6.
    let name = c"trusted.dockwatch";
    // SAFETY: plain syscalls on NUL-terminated strings we own.
    let rc = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
    let alert = w.expect("setxattr", std::process::id());
    assert_eq!(alert["file"]["path"], DAEMON_JSON);
    assert_eq!(alert["event"]["outcome"], "success");
}

fn rename_over_a_watched_file_names_both_paths(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    layout.file("/tmp/dockwatch-new-daemon.json", "{\"icc\":false}\n");
    let w = Watching::start(hooks, &[DAEMON_JSON], &["rename"]);
    let pid = sh(&format!(
        "mv -f /tmp/dockwatch-new-daemon.json {DAEMON_JSON}"
    ));
    let alerts = wait_for_alerts(&w.alerts_file(), Duration::from_secs(2), |a| {
        a.iter()
            .any(|a| a["process"]["pid"] == pid && a["event"]["outcome"] == "success")
    });
    let ok: Vec<_> = alerts
        .iter()
        .filter(|a| by(a, pid) && a["event"]["outcome"] == "success")
        .collect();
    assert_eq!(ok.len(), 1, "{alerts:#?}");
    assert_eq!(ok[0]["event"]["action"], "rename");
    assert_eq!(ok[0]["file"]["path"], "/tmp/dockwatch-new-daemon.json");
    assert_eq!(ok[0]["file"]["target_path"], DAEMON_JSON);

    // sed -i replaces the file the same way; the watch follows the new inode.
    let pid = sh(&format!("sed -i 's/false/true/' {DAEMON_JSON}"));
    let alert = w.expect("rename", pid);
    assert_eq!(alert["file"]["target_path"], DAEMON_JSON);
}

fn rename_exchange_reports_both_sides(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    layout.file("/tmp/dockwatch-exchange.json", "{}\n");
    let w = Watching::start(hooks, &[DAEMON_JSON], &["rename"]);
    let a = std::ffi::CString::new("/tmp/dockwatch-exchange.json").unwrap();
    let b = std::ffi::CString::new(DAEMON_JSON).unwrap();
    // SAFETY: renameat2(2) with NUL-terminated paths we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
    let alert = w.expect("rename", std::process::id());
    assert_eq!(alert["file"]["path"], "/tmp/dockwatch-exchange.json");
    assert_eq!(alert["file"]["target_path"], DAEMON_JSON);
}

fn unlink_and_rmdir(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    layout
        .file("/etc/docker/old.json", "{}\n")
        .dir("/etc/docker/old.d");
    let w = Watching::start(hooks, &[DOCKER], &["unlink"]);
    let pid = sh("rm /etc/docker/old.json");
    assert_eq!(
        w.expect("unlink", pid)["file"]["path"],
        "/etc/docker/old.json"
    );
    let pid = sh("rmdir /etc/docker/old.d");
    assert_eq!(w.expect("unlink", pid)["file"]["path"], "/etc/docker/old.d");
}

fn hard_link_into_a_watched_directory(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    layout.file("/etc/dockwatch-outside.json", "{}\n");
    layout.track("/etc/docker/linked.json");
    let w = Watching::start(hooks, &[DOCKER], &["link"]);
    let pid = sh("ln /etc/dockwatch-outside.json /etc/docker/linked.json");
    let alert = w.expect("link", pid);
    assert_eq!(alert["file"]["path"], "/etc/dockwatch-outside.json");
    assert_eq!(alert["file"]["target_path"], "/etc/docker/linked.json");
}

fn symlink_into_a_watched_directory(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    layout.track("/etc/docker/evil.json");
    let w = Watching::start(hooks, &[DOCKER], &["symlink"]);
    let pid = sh("ln -s /tmp/anything /etc/docker/evil.json");
    let alert = w.expect("symlink", pid);
    assert_eq!(alert["file"]["target_path"], "/etc/docker/evil.json");
}

/// daemon.json swapped for a symlink to a file of the attacker's, which is
/// edited later: the edit is reported under the watched name, with the file
/// the kernel changed as its target.
fn a_config_swapped_for_a_symlink_reports_edits_of_its_target(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    let (evil, link) = ("/tmp/dockwatch-evil.json", "/tmp/dockwatch-evil-link");
    layout.track(evil).track(link);
    std::fs::write(evil, "{}\n").unwrap();
    let w = Watching::start(hooks, &[DAEMON_JSON], &["rename", "open_write", "write"]);
    // One rename(2) (GNU mv tries RENAME_NOREPLACE first, a failed call).
    let pid = sh(&format!(
        "ln -s {evil} {link} && perl -e 'rename(\"{link}\", \"{DAEMON_JSON}\") or die $!'"
    ));
    assert_eq!(w.expect("rename", pid)["file"]["target_path"], DAEMON_JSON);
    let (append, action) = hooks.open_for_write(evil);
    let pid = sh(&append);
    let alert = w.expect(action, pid);
    assert_eq!(alert["file"]["path"], DAEMON_JSON, "{alert:#}");
    assert_eq!(alert["file"]["target_path"], evil, "{alert:#}");
}

fn mkdir_and_mknod_in_a_watched_directory(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    layout
        .track("/etc/docker/certs.d")
        .track("/etc/docker/fifo");
    let w = Watching::start(hooks, &[DOCKER], &["mkdir", "mknod"]);
    let pid = sh("mkdir /etc/docker/certs.d");
    assert_eq!(
        w.expect("mkdir", pid)["file"]["path"],
        "/etc/docker/certs.d"
    );
    let pid = sh("mknod /etc/docker/fifo p");
    assert_eq!(w.expect("mknod", pid)["file"]["path"], "/etc/docker/fifo");
}

fn connect_to_a_watched_unix_socket_through_a_symlinked_path(hooks: Hooks) {
    let _lock = machine_lock();
    // /var/run is a symlink to /run on Debian: the rule names the
    // traditional path, the socket lives at the resolved one.
    let socket = "/run/dockwatch-test-docker.sock";
    let _ = std::fs::remove_file(socket);
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    let mut layout = Layout::new();
    layout.track(socket);
    let spelled = "/var/run/dockwatch-test-docker.sock";
    let w = Watching::start(hooks, &[spelled], &["connect"]);
    let _client = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let alert = w.expect("connect", std::process::id());
    assert_eq!(alert["file"]["path"], spelled, "{alert:#}");
    assert_eq!(alert["event"]["outcome"], "success");
    drop(listener);
}

fn unwatched_files_and_read_only_opens_stay_silent(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    layout.file("/etc/dockwatch-unwatched.json", "{}\n");
    let w = Watching::start(
        hooks,
        &[DOCKER],
        &["open_write", "write", "chmod", "unlink", "rename"],
    );
    sh("chmod 600 /etc/dockwatch-unwatched.json; echo x > /etc/dockwatch-unwatched.json");
    sh("cd /etc && chmod 644 dockwatch-unwatched.json && mv dockwatch-unwatched.json dockwatch-unwatched.json2 && mv dockwatch-unwatched.json2 dockwatch-unwatched.json");
    sh(&format!(
        "cat {DAEMON_JSON} > /dev/null; ls -l {DOCKER} > /dev/null"
    ));
    w.expect_none(Duration::from_millis(700));
}

/// A watch on a file that does not exist yet covers it from when it appears.
fn a_watched_path_that_appears_later_is_watched(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = Layout::new();
    let later = "/etc/dockwatch-containerd-test/config.toml";
    assert!(!Path::new("/etc/dockwatch-containerd-test").exists());
    layout.track("/etc/dockwatch-containerd-test");
    let w = Watching::start(hooks, &[later], &["open_write", "write", "create", "chmod"]);
    sh("mkdir /etc/dockwatch-containerd-test");
    // Give the source a moment to notice the directory.
    std::thread::sleep(Duration::from_millis(1000));
    let pid = sh(&format!("echo x > {later}"));
    assert_eq!(w.expect("create", pid)["file"]["path"], later);
    let pid = sh(&format!("chmod 600 {later}"));
    assert_eq!(w.expect("chmod", pid)["file"]["path"], later);
    let (append, action) = hooks.open_for_write(later);
    let pid = sh(&append);
    assert_eq!(w.expect(action, pid)["file"]["path"], later);
}

/// The kernel matches inodes: once a watched file is deleted, its inode
/// number must stop matching, or an unrelated file that later gets the
/// number raises false alerts. ext4 does not hand a freed number out again
/// at once, so the test keeps the inode alive under a second, unwatched
/// name: while the watched name exists a write through the other name is a
/// write to the watched file; after it is deleted the inode is just some
/// unwatched file, exactly like a reused number.
fn a_deleted_watch_stops_matching_its_inode_number(hooks: Hooks) {
    let _lock = machine_lock();
    let mut layout = docker_layout();
    let other = "/etc/dockwatch-other-name.json";
    layout.track(other);
    std::fs::hard_link(DAEMON_JSON, other).unwrap();
    let w = Watching::start(hooks, &[DAEMON_JSON], &["open_write", "write"]);

    let (append, action) = hooks.open_for_write(other);
    let pid = sh(&append);
    assert_eq!(w.expect(action, pid)["file"]["path"], DAEMON_JSON);

    sh(&format!("rm {DAEMON_JSON}"));
    std::thread::sleep(Duration::from_millis(1000));
    let pid = sh(&format!("echo y >> {other}"));
    std::thread::sleep(Duration::from_millis(700));
    let alerts = read_alerts(&w.alerts_file());
    assert!(
        alerts.iter().all(|a| !by(a, pid)),
        "write to {other} after {DAEMON_JSON} was deleted alerted: {alerts:#?}"
    );
}

/// eBPF sees processes that audit never audits: one started before
/// dockwatch (and before audit was ever enabled) is caught.
fn a_process_started_before_dockwatch_is_caught(hooks: Hooks) {
    let _lock = machine_lock();
    let _layout = docker_layout();
    let (append, action) = hooks.open_for_write(DAEMON_JSON);
    let mut early = Command::new("/bin/sh")
        .args(["-c", &format!("read go; {append}")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let w = Watching::start(hooks, &[DOCKER], &["open_write", "write"]);
    early.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(early.wait().unwrap().success());
    let alert = w.expect(action, early.id());
    assert_eq!(alert["file"]["path"], DAEMON_JSON);
}

/// A ring buffer too small for a burst loses records; the loss is counted
/// and reported, and later records still arrive. The modes alternate so
/// that every chmod is a call of its own: the inode hooks report a thread's
/// identical calls within 20 ms once.
fn lost_records_are_counted_and_reported(hooks: Hooks) {
    let _lock = machine_lock();
    let _layout = docker_layout();
    let w = Watching::start_with(hooks, &[DOCKER], &["chmod"], "ring_buffer_kib = 4");
    sh(&format!(
        "perl -e 'for (1..300) {{ chmod($_ % 2 ? 0600 : 0644, \"{DAEMON_JSON}\") }}'"
    ));
    let daemon_log = || w.log().join("\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !daemon_log().contains("records lost") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon_log().contains("records lost"), "{}", daemon_log());
    let lost = wait_for_alerts(&w.alerts_file(), Duration::from_secs(2), |a| {
        a.iter().any(|a| a["event"]["action"] == "records_lost")
    });
    let lost: Vec<&Value> = lost
        .iter()
        .filter(|a| a["event"]["action"] == "records_lost")
        .collect();
    assert!(!lost.is_empty(), "no records_lost alert");
    assert_eq!(lost[0]["rule"]["id"], "dockwatch-records-lost");
    assert!(lost[0]["dockwatch"]["lost"]["count"].as_u64().unwrap() > 0);
    let pid = sh(&format!("chmod 600 {DAEMON_JSON}"));
    w.expect("chmod", pid);
}

/// Every record carries the process context: login uid (auid), uids, and
/// the container id taken from a Docker-style cgroup name.
fn process_context_carries_auid_and_container_id(hooks: Hooks) {
    let _lock = machine_lock();
    let _layout = docker_layout();
    let id = "0123456789abcdef".repeat(4);
    let cgroup = PathBuf::from(format!("/sys/fs/cgroup/unified/docker-{id}.scope"));
    assert!(
        Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists(),
        "this test needs the unified cgroup hierarchy at /sys/fs/cgroup/unified"
    );
    std::fs::create_dir(&cgroup).unwrap();
    let w = Watching::start(hooks, &[DOCKER], &["open_write", "write"]);
    let (append, action) = hooks.open_for_write(DAEMON_JSON);
    let mut child = Command::new("/bin/sh")
        .args([
            "-c",
            &format!("read go; echo 1000 > /proc/self/loginuid; {append}"),
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string()).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    let alert = w.expect(action, child.id());
    let _ = std::fs::remove_dir(&cgroup);
    assert!(status.success());
    assert_eq!(alert["user"]["audit"]["id"], "1000", "{alert:#}");
    assert_eq!(alert["user"]["id"], "0", "{alert:#}");
    assert_eq!(alert["container"]["id"], id.as_str(), "{alert:#}");
    assert_eq!(
        alert["process"]["parent"]["pid"],
        std::process::id(),
        "{alert:#}"
    );
}

/// The inode hooks see a change whatever made it: a write through a
/// shared mapping is no system call at all (the page fault stamps the
/// file), and still alerts, as a `write` by the faulting process.
#[test]
fn inode_hooks_see_a_write_through_a_shared_mapping() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    use std::os::fd::AsRawFd;
    let _lock = machine_lock();
    let _layout = docker_layout();
    let w = Watching::start(Hooks::Inode, &[DOCKER], &["write"]);
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(DAEMON_JSON)
        .unwrap();
    // SAFETY: a shared mapping of one page of a file we hold open; the
    // byte written is inside the file (it holds "{}\n"), and the mapping
    // is unmapped before the file is closed.
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            page,
            libc::MAP_FAILED,
            "{}",
            std::io::Error::last_os_error()
        );
        *(page as *mut u8).add(1) = b' ';
        assert_eq!(libc::msync(page, 4096, libc::MS_SYNC), 0);
        libc::munmap(page, 4096);
    }
    let alert = w.expect("write", std::process::id());
    assert_eq!(alert["file"]["path"], DAEMON_JSON);
    assert_eq!(std::fs::read_to_string(DAEMON_JSON).unwrap(), "{ \n");
}

/// The inode hooks name the object the kernel changed, whatever path the
/// caller took to it: through a symlinked directory, or relative to a
/// directory descriptor.
#[test]
fn inode_hooks_resolve_paths_through_symlinks() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    let _lock = machine_lock();
    let mut layout = docker_layout();
    let link = "/tmp/dockwatch-link-to-docker";
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(DOCKER, link).unwrap();
    layout.track(link).track("/etc/docker/through-link.json");
    let w = Watching::start(Hooks::Inode, &[DOCKER], &["chmod", "create", "unlink"]);
    let pid = sh(&format!("chmod 600 {link}/daemon.json"));
    assert_eq!(w.expect("chmod", pid)["file"]["path"], DAEMON_JSON);
    let pid = sh(&format!("cd {link} && echo x > through-link.json"));
    assert_eq!(
        w.expect("create", pid)["file"]["path"],
        "/etc/docker/through-link.json"
    );
    let pid = sh(&format!("rm {link}/through-link.json"));
    assert_eq!(
        w.expect("unlink", pid)["file"]["path"],
        "/etc/docker/through-link.json"
    );
}

/// A watch on another file system than the root's: the inode hooks see
/// its inodes from that file system's root, and the alert still gives the
/// full path (the mount point in front).
#[test]
fn inode_hooks_name_files_on_another_file_system() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    let _lock = machine_lock();
    let dir = "/run/dockwatch-test-tmpfs";
    let mut layout = Layout::new();
    layout.dir(dir);
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "dockwatch-test", dir])
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs on {dir}");
    let unmount = || {
        let _ = Command::new("umount").arg(dir).status();
    };
    let result = std::panic::catch_unwind(|| {
        std::fs::write(format!("{dir}/config.toml"), "").unwrap();
        let w = Watching::start(Hooks::Inode, &[dir], &["create", "chmod"]);
        let pid = sh(&format!("echo x > {dir}/new.sock"));
        assert_eq!(
            w.expect("create", pid)["file"]["path"],
            format!("{dir}/new.sock")
        );
        let pid = sh(&format!("cd {dir} && chmod 600 config.toml"));
        assert_eq!(
            w.expect("chmod", pid)["file"]["path"],
            format!("{dir}/config.toml")
        );
    });
    unmount();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

// Ways around a file watch that an attacker who knows how watches work
// takes: none of them calls `open` or `write` on the watched path, and the
// inode hooks, which see the change itself, catch each. Tests for the
// record, so they stay caught.

/// Opens and writes `daemon.json` through io_uring: no `openat` or
/// `write` system call at all.
#[test]
fn inode_hooks_see_a_write_through_io_uring() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    use io_uring::{opcode, types, IoUring};
    let _lock = machine_lock();
    let _layout = docker_layout();
    let w = Watching::start(Hooks::Inode, &[DOCKER], &["write"]);
    let mut ring = IoUring::new(4).expect("io_uring_setup");
    let path = std::ffi::CString::new(DAEMON_JSON).unwrap();
    let mut complete = |entry: io_uring::squeue::Entry| -> i32 {
        // SAFETY: the path and buffer the entry points at outlive the
        // wait for its completion just below.
        unsafe { ring.submission().push(&entry).expect("a free entry") };
        ring.submit_and_wait(1).expect("io_uring_enter");
        ring.completion().next().expect("a completion").result()
    };
    let fd = complete(
        opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
            .flags(libc::O_WRONLY | libc::O_APPEND)
            .build(),
    );
    assert!(fd >= 0, "IORING_OP_OPENAT: errno {}", -fd);
    let line = b"x\n";
    let written = complete(opcode::Write::new(types::Fd(fd), line.as_ptr(), 2).build());
    assert_eq!(written, 2, "IORING_OP_WRITE");
    complete(opcode::Close::new(types::Fd(fd)).build());
    assert_eq!(
        w.expect("write", std::process::id())["file"]["path"],
        DAEMON_JSON
    );
    assert_eq!(std::fs::read_to_string(DAEMON_JSON).unwrap(), "{}\nx\n");
}

/// A descriptor opened before dockwatch started, written after: the open
/// happened when nothing watched.
#[test]
fn inode_hooks_see_a_write_through_a_descriptor_opened_before_the_daemon() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    let _lock = machine_lock();
    let _layout = docker_layout();
    let mut held = std::fs::File::options()
        .append(true)
        .open(DAEMON_JSON)
        .unwrap();
    let w = Watching::start(Hooks::Inode, &[DOCKER], &["write"]);
    held.write_all(b"x\n").unwrap();
    drop(held);
    assert_eq!(
        w.expect("write", std::process::id())["file"]["path"],
        DAEMON_JSON
    );
}

/// Content moved in by the kernel: `copy_file_range` and `sendfile` into
/// the watched file, and `fallocate` growing it, none of them `write`.
#[test]
fn inode_hooks_see_copy_file_range_sendfile_and_fallocate() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    use std::os::fd::AsRawFd;
    let _lock = machine_lock();
    let _layout = docker_layout();
    let source = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(source.path(), "{\"icc\": true}\n").unwrap();
    let w = Watching::start(Hooks::Inode, &[DOCKER], &["write", "truncate"]);
    let me = std::process::id();
    let from = std::fs::File::open(source.path()).unwrap();
    let to = std::fs::File::options()
        .write(true)
        .open(DAEMON_JSON)
        .unwrap();
    let copied = |n: isize, call: &str| {
        assert!(n > 0, "{call}: {}", std::io::Error::last_os_error());
    };

    // SAFETY: both descriptors are open for the calls; null offsets use
    // and advance the files' own positions.
    let n = unsafe {
        libc::copy_file_range(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            64,
            0,
        )
    };
    copied(n, "copy_file_range");
    assert_eq!(w.expect("write", me)["file"]["path"], DAEMON_JSON);

    let mut offset: libc::off_t = 0;
    // SAFETY: as above; `offset` lives across the call.
    let n = unsafe { libc::sendfile(to.as_raw_fd(), from.as_raw_fd(), &mut offset, 64) };
    copied(n, "sendfile");
    let writes = |alerts: &[Value]| {
        ours(alerts.to_vec())
            .iter()
            .filter(|a| a["event"]["action"] == "write" && by(a, me))
            .count()
    };
    let alerts = wait_for_alerts(&w.alerts_file(), Duration::from_secs(2), |a| writes(a) >= 2);
    assert_eq!(
        writes(&alerts),
        2,
        "a write alert for sendfile: {alerts:#?}"
    );

    // SAFETY: as above.
    let rc = unsafe { libc::fallocate(to.as_raw_fd(), 0, 0, 64 * 1024) };
    assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
    let grown = |alerts: &[Value]| ours(alerts.to_vec()).iter().filter(|a| by(a, me)).count() >= 3;
    let alerts = wait_for_alerts(&w.alerts_file(), Duration::from_secs(2), grown);
    assert!(grown(&alerts), "an alert for fallocate: {alerts:#?}");
}

/// A write from another mount namespace (`unshare -m`): the path the
/// process sees is its own namespace's, the inode is the host's.
#[test]
fn inode_hooks_see_a_write_from_another_mount_namespace() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    let _lock = machine_lock();
    let _layout = docker_layout();
    let w = Watching::start(Hooks::Inode, &[DOCKER], &["write"]);
    let pid = sh(&format!("unshare -m sh -c 'echo x >> {DAEMON_JSON}'"));
    let alerts = wait_for_alerts(&w.alerts_file(), Duration::from_secs(2), |a| {
        !ours(a.to_vec()).is_empty()
    });
    let ours = ours(alerts);
    // unshare execs the inner shell in its own process: the writer is the
    // test's grandchild, or its child when unshare forks nothing.
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(ours[0]["event"]["action"], "write");
    assert_eq!(ours[0]["file"]["path"], DAEMON_JSON);
    let pids = [
        &ours[0]["process"]["pid"],
        &ours[0]["process"]["parent"]["pid"],
    ];
    assert!(pids.contains(&&Value::from(pid)), "{:#}", ours[0]);
}

/// File capabilities set on a watched binary (`setcap`), a way to a
/// privileged binary without touching its content: a `setxattr` of
/// `security.capability`.
#[test]
fn inode_hooks_see_setcap_on_a_watched_binary() {
    if dockwatch_tests::missing_in_vm("inode") {
        return;
    }
    let _lock = machine_lock();
    let binary = "/usr/local/bin/dockwatch-test-runc";
    let mut layout = Layout::new();
    layout.file(binary, "#!/bin/sh\n");
    let w = Watching::start(Hooks::Inode, &[binary], &["setxattr"]);
    let pid = sh(&format!("setcap cap_sys_admin+ep {binary}"));
    let alert = w.expect("setxattr", pid);
    assert_eq!(alert["file"]["path"], binary, "{alert:#}");
}

/// Every test above, once per hook set.
macro_rules! with_each_hook_set {
    ($($name:ident),* $(,)?) => {
        mod syscalls {
            $(#[test] fn $name() { super::$name(super::Hooks::Syscalls) })*
        }
        mod inode {
            $(#[test] fn $name() {
                if dockwatch_tests::missing_in_vm("inode") {
                    return;
                }
                super::$name(super::Hooks::Inode)
            })*
        }
    };
}

with_each_hook_set!(
    create_in_a_watched_directory,
    truncate_by_path_and_by_descriptor,
    chmod_absolute_relative_and_through_dot_dot,
    fchmod_on_an_open_descriptor,
    chown_reports_the_new_owner,
    setxattr_and_removexattr,
    rename_over_a_watched_file_names_both_paths,
    rename_exchange_reports_both_sides,
    unlink_and_rmdir,
    hard_link_into_a_watched_directory,
    symlink_into_a_watched_directory,
    a_config_swapped_for_a_symlink_reports_edits_of_its_target,
    mkdir_and_mknod_in_a_watched_directory,
    connect_to_a_watched_unix_socket_through_a_symlinked_path,
    unwatched_files_and_read_only_opens_stay_silent,
    a_watched_path_that_appears_later_is_watched,
    a_deleted_watch_stops_matching_its_inode_number,
    a_process_started_before_dockwatch_is_caught,
    lost_records_are_counted_and_reported,
    process_context_carries_auid_and_container_id,
);
