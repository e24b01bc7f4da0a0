//! A real Docker engine for one test: Debian's `dockerd` started by hand
//! (no systemd here; it launches its own containerd), a small image
//! imported from busybox-static (no registry is reachable), and on drop
//! every container, image, network and volume it made removed, the engine
//! stopped and waited for, and the state directories it created deleted,
//! so later tests that build a fake Docker layout (`layout.rs`) find no
//! docker.sock, `/etc/docker` or `/var/lib/docker` of its making.
//!
//! Callers hold [`crate::machine_lock`]: the engine is machine-wide state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The engine's socket, where dockwatch's defaults look for it.
pub const SOCKET: &str = "/var/run/docker.sock";

/// The image every test container runs (`/bin/sh`, `sleep`, `true`...).
pub const IMAGE: &str = "dockwatch-test/busybox:1";

/// Paths dockerd creates on its first start; removed on drop when absent
/// before, so the machine looks as if no engine had run.
const STATE_PATHS: &[&str] = &[
    "/etc/docker",
    "/var/lib/docker",
    "/run/docker",
    "/run/docker.pid",
    SOCKET,
];

/// A running dockerd owned by the test.
pub struct Engine {
    child: Option<Child>,
    containerd: Option<u32>,
    created: Vec<PathBuf>,
    before: Snapshot,
    dir: tempfile::TempDir,
}

/// What the engine held before the test, left alone on drop.
#[derive(Default)]
struct Snapshot {
    containers: BTreeSet<String>,
    images: BTreeSet<String>,
    networks: BTreeSet<String>,
    volumes: BTreeSet<String>,
}

impl Engine {
    /// Starts dockerd, waits until it answers, and imports [`IMAGE`].
    pub fn start() -> Engine {
        assert!(
            !Path::new(SOCKET).exists(),
            "{SOCKET} exists: another Docker engine runs; stop it before the tests"
        );
        let created = STATE_PATHS
            .iter()
            .map(PathBuf::from)
            .filter(|p| !p.exists() && !p.is_symlink())
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("dockwatch-dockerd")
            .tempdir()
            .expect("tempdir");
        let mut engine = Engine {
            child: None,
            containerd: None,
            created,
            before: Snapshot::default(),
            dir,
        };
        engine.launch();
        engine.before = engine.snapshot();
        engine.import_image();
        engine
    }

    /// Stops dockerd (SIGTERM, waiting for it and its containerd) and
    /// starts it again on the same state, as an engine upgrade would.
    pub fn restart(&mut self) {
        self.stop_daemon();
        self.launch();
    }

    /// Runs `docker ARGS`; panics with its stderr when it fails.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_output(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `docker ARGS` and returns what it did, success or not.
    pub fn docker_output(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{SOCKET}"))
            .stdin(Stdio::null())
            .output()
            .expect("run docker (apt-get install docker.io, or `cargo xtask setup`)")
    }

    /// The running dockerd's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("dockerd runs").id()
    }

    /// dockerd's own log (its stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("dockerd.log")).expect("dockerd log");
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{SOCKET}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd (apt-get install docker.io, or `cargo xtask setup`)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new("docker")
                .arg("info")
                .env("DOCKER_HOST", format!("unix://{SOCKET}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "dockerd exited ({status}) before answering:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer `docker info` within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.containerd = std::fs::read_to_string("/run/docker/containerd/containerd.pid")
            .ok()
            .and_then(|s| s.trim().parse().ok());
    }

    fn import_image(&self) {
        let root = self.dir.path().join("rootfs");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
        std::fs::create_dir_all(root.join("tmp")).expect("mkdir rootfs/tmp");
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .expect("copy /bin/busybox (apt-get install busybox-static)");
        for applet in ["sh", "true", "sleep", "cat", "ls", "echo", "id", "touch"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
        }
        let tar = self.dir.path().join("rootfs.tar");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("run tar")
            .success();
        assert!(ok, "tar of the busybox rootfs failed");
        self.docker(&["import", tar.to_str().expect("utf-8 path"), IMAGE]);
    }

    fn list(&self, args: &[&str]) -> BTreeSet<String> {
        let out = self.docker_output(args);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            containers: self.list(&["ps", "-aq", "--no-trunc"]),
            images: self.list(&["images", "-aq", "--no-trunc"]),
            networks: self.list(&["network", "ls", "-q", "--no-trunc"]),
            volumes: self.list(&["volume", "ls", "-q"]),
        }
    }

    fn remove_what_we_made(&self) {
        let now = self.snapshot();
        for id in now.containers.difference(&self.before.containers) {
            let _ = self.docker_output(&["rm", "-f", "-v", id]);
        }
        for id in now.volumes.difference(&self.before.volumes) {
            let _ = self.docker_output(&["volume", "rm", "-f", id]);
        }
        for id in now.networks.difference(&self.before.networks) {
            let _ = self.docker_output(&["network", "rm", id]);
        }
        for id in now.images.difference(&self.before.images) {
            let _ = self.docker_output(&["rmi", "-f", id]);
        }
    }

    fn stop_daemon(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // dockerd stops the containerd it launched; wait for it to be gone
        // (a zombie left to init counts as gone).
        if let Some(pid) = self.containerd.take() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && alive(pid) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// `pid` runs and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.remove_what_we_made();
        }
        self.stop_daemon();
        for path in self.created.iter().rev() {
            if path.is_dir() && !path.is_symlink() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
