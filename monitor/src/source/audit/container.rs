//! Which container an audit event's process ran in, and where on the host
//! the file it named lives.
//!
//! The kernel's audit records carry no container id (the audit container
//! id records proposed upstream never merged; none of the peer test logs
//! holds one), and a process in a container names files as its own mount
//! namespace sees them: a write through `-v /etc/docker:/x` is logged as
//! `/x/daemon.json`, under the key of the host rule the kernel matched by
//! inode. So for live events only (a replayed archive's processes are long
//! gone, and today's `/proc` says nothing true about them):
//!
//! - The container id comes from `/proc/PID/cgroup` (docker's cgroup v1
//!   and cgroupfs-driver form `/docker/<64hex>`, the systemd driver's
//!   `docker-<64hex>.scope`). A pid is only trusted when its process
//!   started no later than the event; otherwise (the process exited, its
//!   pid was reused) the parent from the SYSCALL record is tried, since a
//!   child starts in its parent's cgroup. Lookups are cached by pid and
//!   start time, so a busy process costs one read of `/proc` and a reused
//!   pid never inherits an old answer.
//! - The host path comes from the process's own `/proc/PID/mountinfo`: the
//!   mount holding the container path gives the filesystem (device) and
//!   the directory of it that was bound there; the host's mount table then
//!   says where that directory is mounted on the host. The result is only
//!   used when it is verifiably the same object: when the PATH record gave
//!   an inode and device, `stat` of the host path must show the same ones
//!   (a symlink in the container path, resolved in the container's root,
//!   would otherwise lead us to a different host file). Files in the
//!   container's own root file system (overlay) keep the container's path:
//!   they are not host files anyone watches by name. Nothing is invented:
//!   when any step fails, the event keeps the container's view.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::event::{Event, FileRef, Source};
use crate::source::mountinfo::{self, host_path, MountEntry};

/// Processes remembered; the cache is cleared when it reaches this.
const CACHE: usize = 4096;

/// Docker's 64-hex container id in the text of `/proc/PID/cgroup`.
pub fn container_id_from_cgroup(text: &[u8]) -> Option<String> {
    for line in text.split(|&b| b == b'\n') {
        // hierarchy-id:controllers:path
        let mut fields = line.splitn(3, |&b| b == b':');
        let path = match (fields.next(), fields.next(), fields.next()) {
            (Some(_), Some(_), Some(path)) => path,
            _ => continue,
        };
        let mut previous: &[u8] = b"";
        for component in path.split(|&b| b == b'/') {
            let id = if previous == b"docker" && is_id(component) {
                Some(component)
            } else {
                component
                    .strip_prefix(b"docker-")
                    .and_then(|rest| rest.strip_suffix(b".scope"))
                    .filter(|id| is_id(id))
            };
            if let Some(id) = id {
                return Some(String::from_utf8_lossy(id).into_owned());
            }
            previous = component;
        }
    }
    None
}

fn is_id(s: &[u8]) -> bool {
    s.len() == 64 && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What was learnt about one process.
#[derive(Clone, Default)]
struct Known {
    container: Option<String>,
    /// The process's mount table, when it is in a container.
    mounts: Option<std::sync::Arc<Vec<MountEntry>>>,
}

/// Live-event enrichment with container id and host paths.
pub struct Containers {
    proc_root: std::path::PathBuf,
    cache: HashMap<(u32, u64), Known>,
    /// Boot time and clock ticks, to turn `/proc/PID/stat` start times
    /// into wall-clock time.
    boot: Option<SystemTime>,
    ticks: u64,
    host_mounts: Vec<MountEntry>,
    host_mounts_read: Option<std::time::Instant>,
}

impl Default for Containers {
    fn default() -> Containers {
        Containers::new("/proc")
    }
}

impl Containers {
    pub fn new(proc_root: impl Into<std::path::PathBuf>) -> Containers {
        let proc_root = proc_root.into();
        let boot = std::fs::read_to_string(proc_root.join("stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Containers {
            proc_root,
            cache: HashMap::new(),
            boot,
            ticks: u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100),
            host_mounts: Vec::new(),
            host_mounts_read: None,
        }
    }

    /// Fills in the container id of an audit event's process and, for a
    /// file reached through a bind mount, the host path.
    pub fn annotate(&mut self, event: &mut Event) {
        if event.source != Source::Audit
            || event.process.pid == 0
            || event.process.container_id.is_some()
        {
            return;
        }
        let candidates = [Some(event.process.pid), event.process.ppid];
        let Some(known) = candidates
            .into_iter()
            .flatten()
            .filter(|&pid| pid > 1)
            .find_map(|pid| self.lookup(pid, event.time))
        else {
            return;
        };
        let Some(id) = known.container else {
            return;
        };
        event.process.container_id = Some(id);
        if let Some(mounts) = known.mounts {
            self.refresh_host_mounts();
            for file in event.file.iter_mut().chain(event.target.iter_mut()) {
                self.to_host(file, &mounts);
            }
        }
    }

    fn to_host(&self, file: &mut FileRef, inside: &[MountEntry]) {
        let Some(host) = host_path(&file.path, inside, &self.host_mounts) else {
            return;
        };
        if let (Some(ino), Some(dev)) = (file.inode, file.dev) {
            let same = std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(&host))
                .is_ok_and(|m| m.ino() == ino && kernel_dev(m.dev()) == dev);
            if !same {
                return;
            }
        }
        file.path = Bytes::from(host);
    }

    /// The host's own mount table, re-read at most once a second: mounts
    /// change rarely, events come by the thousand.
    fn refresh_host_mounts(&mut self) {
        let fresh = self
            .host_mounts_read
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        if fresh {
            return;
        }
        if let Ok(text) = std::fs::read(self.proc_root.join("self/mountinfo")) {
            self.host_mounts = mountinfo::entries(&text).collect();
        }
        self.host_mounts_read = Some(std::time::Instant::now());
    }

    /// What `/proc` says about `pid`, if it is a process that already ran
    /// at `time`.
    fn lookup(&mut self, pid: u32, time: SystemTime) -> Option<Known> {
        let dir = self.proc_root.join(pid.to_string());
        let stat = std::fs::read(dir.join("stat")).ok()?;
        let start = start_ticks(&stat)?;
        if let Some(boot) = self.boot {
            let started = boot + Duration::from_millis(start * 1000 / self.ticks);
            // Start times have tick (10 ms) resolution and btime whole
            // seconds: allow one second before calling it a different process.
            if started > time + Duration::from_secs(1) {
                return None;
            }
        }
        if let Some(known) = self.cache.get(&(pid, start)) {
            return Some(known.clone());
        }
        let cgroup = std::fs::read(dir.join("cgroup")).ok()?;
        let container = container_id_from_cgroup(&cgroup);
        let mounts = container
            .as_ref()
            .and_then(|_| std::fs::read(dir.join("mountinfo")).ok())
            .map(|text| std::sync::Arc::new(mountinfo::entries(&text).collect()));
        let known = Known { container, mounts };
        if self.cache.len() >= CACHE {
            self.cache.clear();
        }
        self.cache.insert((pid, start), known.clone());
        Some(known)
    }
}

/// `starttime` (field 22) of `/proc/PID/stat`, in clock ticks since boot.
fn start_ticks(stat: &[u8]) -> Option<u64> {
    // comm (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = &stat[memchr::memrchr(b')', stat)? + 1..];
    let field = after
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .nth(19)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// `st_dev` (glibc's encoding) as the kernel's internal `MKDEV`, which is
/// what audit PATH records and [`FileRef::dev`] hold.
fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2e0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e";

    #[test]
    fn cgroup_v1_and_v2_forms_give_the_id() {
        let v1 = format!(
            "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n0::/system.slice/containerd.service\n"
        );
        assert_eq!(container_id_from_cgroup(v1.as_bytes()).as_deref(), Some(ID));
        let v2_systemd = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(
            container_id_from_cgroup(v2_systemd.as_bytes()).as_deref(),
            Some(ID)
        );
        let v2_cgroupfs = format!("0::/docker/{ID}\n");
        assert_eq!(
            container_id_from_cgroup(v2_cgroupfs.as_bytes()).as_deref(),
            Some(ID)
        );
    }

    #[test]
    fn cgroups_outside_docker_give_none() {
        for text in [
            "0::/user.slice/user-0.slice/session-3.scope\n".to_string(),
            "0::/init.scope\n".to_string(),
            // Not docker's: another runtime, a truncated or uppercase id.
            format!("0::/system.slice/crio-{ID}.scope\n"),
            format!("0::/docker/{}\n", &ID[..63]),
            format!("0::/docker/{}\n", ID.to_uppercase()),
            format!("0::/docker-{ID}.scope.extra\n"),
            // The id under some other directory than docker/.
            format!("0::/machine/{ID}\n"),
            String::new(),
            "garbage without colons".to_string(),
        ] {
            assert_eq!(container_id_from_cgroup(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn start_time_is_read_past_a_comm_with_spaces_and_parens() {
        let stat =
            b"4242 (a b) c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_ticks(stat), Some(987654));
        assert_eq!(start_ticks(b"4242 (x"), None);
    }

    fn mounts(text: &str) -> Vec<MountEntry> {
        mountinfo::entries(text.as_bytes()).collect()
    }

    const HOST: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
24 22 8:1 / /mnt/again rw,relatime - ext4 /dev/sda1 rw
90 22 0:45 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
";

    const INSIDE: &str = "\
500 400 0:45 / / rw,relatime - overlay overlay rw,lowerdir=x
501 500 8:1 /etc/docker /x rw,relatime - ext4 /dev/sda1 rw
502 500 8:1 / /host rw,relatime - ext4 /dev/sda1 rw
503 502 0:21 / /host/run rw,nosuid - tmpfs tmpfs rw
504 500 8:1 /home/with\\040space /data rw - ext4 /dev/sda1 rw
";

    #[test]
    fn bind_mounted_paths_map_to_the_host() {
        let (inside, host) = (mounts(INSIDE), mounts(HOST));
        let host_of = |p: &str| {
            host_path(p.as_bytes(), &inside, &host).map(|h| String::from_utf8(h).unwrap())
        };
        assert_eq!(
            host_of("/x/daemon.json").as_deref(),
            Some("/etc/docker/daemon.json")
        );
        assert_eq!(host_of("/x").as_deref(), Some("/etc/docker"));
        assert_eq!(host_of("/host/etc/group").as_deref(), Some("/etc/group"));
        // The submount of an rbind of `/` is the host's tmpfs /run.
        assert_eq!(
            host_of("/host/run/docker.sock").as_deref(),
            Some("/run/docker.sock")
        );
        assert_eq!(host_of("/data/f").as_deref(), Some("/home/with space/f"));
        // `/xy` is not under `/x`; the container's own files stay its own.
        assert_eq!(host_of("/xy/daemon.json"), None);
        assert_eq!(host_of("/etc/passwd"), None);
    }

    #[test]
    fn a_file_system_the_host_does_not_mount_gives_none() {
        let inside = mounts("501 500 0:99 / /vol rw - ext4 /dev/sdz rw\n");
        assert_eq!(host_path(b"/vol/f", &inside, &mounts(HOST)), None);
    }

    #[test]
    fn mountinfo_lines_without_separator_are_skipped() {
        assert!(mounts("1 2 3\n\n22 1 8:1 / / rw - ext4 /dev/sda1 rw\n").len() == 1);
    }

    #[test]
    fn this_process_is_in_no_container_and_keeps_its_paths() {
        let mut containers = Containers::default();
        let mut event = Event::new(Source::Audit, crate::event::Action::OpenWrite);
        event.process.pid = std::process::id();
        event.file = Some(FileRef::new(&b"/etc/docker/daemon.json"[..]));
        containers.annotate(&mut event);
        // The test runs on the host, not in a Docker container.
        assert_eq!(event.process.container_id, None);
        assert_eq!(event.file.unwrap().path, &b"/etc/docker/daemon.json"[..]);
    }

    #[test]
    fn a_process_started_after_the_event_is_not_asked() {
        let mut containers = Containers::default();
        // This process started long after the epoch: its pid then was
        // someone else's.
        assert!(containers
            .lookup(std::process::id(), UNIX_EPOCH + Duration::from_secs(1))
            .is_none());
        assert!(containers
            .lookup(std::process::id(), SystemTime::now())
            .is_some());
    }
}
