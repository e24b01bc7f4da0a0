//! Raw kernel records (`monitor_common::Record`) → [`Event`]s.
//!
//! The kernel writes paths as components leaf first; this module puts them
//! back in order, converts the kernel's device numbers to `st_dev`'s
//! encoding, and finds Docker's container id in the cgroup name.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use monitor_common::{
    FileRecord, Op, Record, PATH_BASE, PATH_BUF, PATH_FS_ROOT, PATH_RAW, PATH_RESOLVED,
    PATH_TRUNCATED,
};

use super::mounts::MOUNTS;

use super::watches::normalize;

use crate::event::{Action, Event, FileRef, Outcome, Process, Source};

/// The user-facing action of a kernel operation code.
pub fn action_of(op: Op) -> Action {
    match op {
        Op::OpenWrite => Action::OpenWrite,
        Op::Create => Action::Create,
        Op::Truncate => Action::Truncate,
        Op::Chmod => Action::Chmod,
        Op::Chown => Action::Chown,
        Op::Setxattr => Action::Setxattr,
        Op::Rename => Action::Rename,
        Op::Unlink | Op::Rmdir => Action::Unlink,
        Op::Link => Action::Link,
        Op::Symlink => Action::Symlink,
        Op::Mkdir => Action::Mkdir,
        Op::Mknod => Action::Mknod,
        Op::Connect => Action::Connect,
        Op::Write => Action::Write,
    }
}

/// Kernel operations that produce `action`, as `Op::bit` masks.
pub fn ops_of(action: Action) -> u32 {
    match action {
        Action::OpenWrite => Op::OpenWrite.bit(),
        Action::Create => Op::Create.bit(),
        Action::Truncate => Op::Truncate.bit(),
        Action::Chmod => Op::Chmod.bit(),
        Action::Chown => Op::Chown.bit(),
        Action::Setxattr => Op::Setxattr.bit(),
        Action::Rename => Op::Rename.bit(),
        Action::Unlink => Op::Unlink.bit() | Op::Rmdir.bit(),
        Action::Link => Op::Link.bit(),
        Action::Symlink => Op::Symlink.bit(),
        Action::Mkdir => Op::Mkdir.bit(),
        Action::Mknod => Op::Mknod.bit(),
        Action::Connect => Op::Connect.bit(),
        Action::Write => Op::Write.bit(),
        _ => 0,
    }
}

/// Kernel operations for an [`Action::bit`] mask.
pub fn ops_of_actions(actions: u64) -> u32 {
    Action::ALL
        .iter()
        .filter(|a| actions & a.bit() != 0)
        .fold(0, |ops, &a| ops | ops_of(a))
}

/// `MKDEV(major, minor)` as the kernel keeps it in `super_block.s_dev`.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

/// The absolute path of a kernel path buffer, or `None` when the kernel
/// found no path.
pub fn path_of(file: &FileRecord) -> Option<Bytes> {
    let base = resolved_path(file);
    if file.flags & PATH_RAW == 0 {
        return base.map(Bytes::from);
    }
    let end = memchr::memchr(0, &file.raw).unwrap_or(file.raw.len());
    let raw = &file.raw[..end];
    if raw.is_empty() {
        return None;
    }
    let joined = if raw[0] == b'/' {
        PathBuf::from(OsStr::from_bytes(raw))
    } else if file.flags & PATH_BASE != 0 {
        let mut p = PathBuf::from(OsStr::from_bytes(&base?));
        p.push(OsStr::from_bytes(raw));
        p
    } else {
        return None;
    };
    Some(Bytes::from(normalize(&joined).into_os_string().into_vec()))
}

/// The path in `names` (components leaf first), when the kernel resolved one.
fn resolved_path(file: &FileRecord) -> Option<Vec<u8>> {
    let len = (file.len as usize).min(PATH_BUF);
    if file.flags & PATH_RESOLVED == 0 {
        return None;
    }
    let mut components: Vec<&[u8]> = file.names[..len]
        .split(|&b| b == 0)
        .filter(|c| !c.is_empty())
        .collect();
    components.reverse();
    let mut path = Vec::with_capacity(len + 2);
    if file.flags & PATH_TRUNCATED != 0 {
        // A path longer than the kernel keeps: say so rather than invent
        // a shorter one that names another file.
        path.extend_from_slice(b"/...");
    } else if file.flags & PATH_FS_ROOT != 0 {
        // Without its mount point the path would name another file.
        let point = MOUNTS.mount_point(file.dev)?;
        if point != b"/" {
            path.extend_from_slice(&point);
        }
    }
    for c in components {
        path.push(b'/');
        path.extend_from_slice(c);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    Some(path)
}

fn file_ref(file: &FileRecord) -> Option<FileRef> {
    let path = path_of(file)?;
    let mut f = FileRef::new(path);
    if file.ino != 0 && file.flags & PATH_BASE == 0 {
        f.inode = Some(file.ino);
        // MKDEV(major, minor), as the audit source and the alert expect.
        f.dev = Some(file.dev);
        f.mode = Some(file.mode);
    }
    Some(f)
}

/// Docker's 64-hex container id in a cgroup name (`docker-<id>.scope`,
/// `<id>`, `cri-containerd-<id>.scope`).
pub fn container_id(cgroup: &[u8]) -> Option<String> {
    let end = memchr::memchr(0, cgroup).unwrap_or(cgroup.len());
    let name = &cgroup[..end];
    let mut run = 0;
    for (i, b) in name.iter().enumerate() {
        if b.is_ascii_hexdigit() && !b.is_ascii_uppercase() {
            run += 1;
            let next_is_hex = name.get(i + 1).is_some_and(|b| b.is_ascii_hexdigit());
            if run == 64 && !next_is_hex {
                return Some(String::from_utf8_lossy(&name[i + 1 - 64..=i]).into_owned());
            }
        } else {
            run = 0;
        }
    }
    None
}

fn c_bytes(raw: &[u8]) -> Option<Bytes> {
    let end = memchr::memchr(0, raw).unwrap_or(raw.len());
    (end > 0).then(|| Bytes::copy_from_slice(&raw[..end]))
}

/// The wall-clock time of a kernel timestamp (`bpf_ktime_get_boot_ns`), so
/// that an event keeps the time it happened, not the time it was read.
pub fn wall_time(boot_ns: u64) -> SystemTime {
    let now = SystemTime::now();
    let Some(boot_now) = boot_time() else {
        return now;
    };
    match boot_now.checked_sub(Duration::from_nanos(boot_ns)) {
        Some(ago) => now.checked_sub(ago).unwrap_or(now),
        None => now,
    }
}

/// Time since boot, suspend included (`CLOCK_BOOTTIME`, the kernel's
/// `bpf_ktime_get_boot_ns`).
fn boot_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) into a timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The event a record describes; `None` for an unknown operation code.
pub fn event_of(rec: &Record) -> Option<Event> {
    let op = Op::from_u32(rec.op)?;
    let mut event = Event::new(Source::Ebpf, action_of(op));
    event.time = wall_time(rec.boot_ns);
    event.outcome = Outcome::from_return(rec.ret);
    event.file = file_ref(&rec.file);
    event.target = file_ref(&rec.target);
    if let Some(file) = event.file.as_mut() {
        match op {
            Op::Chmod => file.mode = Some(rec.arg_mode),
            Op::Chown => {
                file.uid = (rec.arg_uid != u32::MAX).then_some(rec.arg_uid);
                file.gid = (rec.arg_gid != u32::MAX).then_some(rec.arg_gid);
            }
            _ => {}
        }
    }
    event.process = Process {
        pid: rec.pid,
        ppid: (rec.ppid != 0).then_some(rec.ppid),
        uid: Some(rec.uid),
        euid: Some(rec.euid),
        gid: Some(rec.gid),
        auid: (rec.auid != u32::MAX).then_some(rec.auid),
        comm: c_bytes(&rec.comm),
        exe: path_of(&rec.exe),
        cmdline: None,
        container_id: container_id(&rec.cgroup),
        parent_exe: None,
    };
    Some(event)
}

/// Adds the command line from /proc while the process still runs. The
/// kernel record cannot carry it cheaply; a process that has exited (or a
/// pid already reused, told apart by its comm) keeps `None` rather than a
/// wrong value.
pub fn add_command_line(process: &mut Process) {
    let dir = PathBuf::from(format!("/proc/{}", process.pid));
    let Ok(comm) = std::fs::read(dir.join("comm")) else {
        return;
    };
    let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
    if process.comm.as_deref() != Some(comm) {
        return;
    }
    let Ok(raw) = std::fs::read(dir.join("cmdline")) else {
        return;
    };
    let args: Vec<&[u8]> = raw.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
    if !args.is_empty() {
        process.cmdline = Some(Bytes::from(args.join(&b' ')));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(names: &[u8], flags: u32) -> FileRecord {
        let mut f = FileRecord {
            dev: 0,
            ino: 7,
            mode: 0,
            flags,
            len: names.len() as u32,
            _pad: 0,
            names: [0; PATH_BUF],
            raw: [0; monitor_common::ARG_PATH],
        };
        f.names[..names.len()].copy_from_slice(names);
        f
    }

    fn raw(mut f: FileRecord, raw: &[u8]) -> FileRecord {
        f.raw[..raw.len()].copy_from_slice(raw);
        f.flags |= PATH_RAW;
        f
    }

    #[test]
    fn caller_strings_are_joined_to_their_base_and_normalized() {
        let abs = raw(file(b"", 0), b"/etc//docker/./daemon.json\0");
        assert_eq!(path_of(&abs).unwrap(), &b"/etc/docker/daemon.json"[..]);
        let rel = raw(
            file(b"docker\0etc\0", PATH_RESOLVED | PATH_BASE),
            b"../docker/daemon.json\0",
        );
        assert_eq!(path_of(&rel).unwrap(), &b"/etc/docker/daemon.json"[..]);
        let lost_base = raw(file(b"", 0), b"daemon.json\0");
        assert_eq!(path_of(&lost_base), None);
    }

    #[test]
    fn components_are_put_back_in_order() {
        let f = file(b"daemon.json\0docker\0etc\0", PATH_RESOLVED);
        assert_eq!(path_of(&f).unwrap(), &b"/etc/docker/daemon.json"[..]);
    }

    #[test]
    fn paths_from_a_file_system_root_get_its_mount_point() {
        use std::os::unix::fs::MetadataExt;
        let mut f = file(b"daemon.json\0docker\0etc\0", PATH_RESOLVED | PATH_FS_ROOT);
        f.dev = kernel_dev(std::fs::metadata("/").unwrap().dev());
        assert_eq!(path_of(&f).unwrap(), &b"/etc/docker/daemon.json"[..]);
        f.dev = (4095 << 20) | 1;
        assert_eq!(path_of(&f), None, "no mount of that device: no path");
    }

    #[test]
    fn truncated_paths_say_so() {
        let f = file(b"x\0y\0", PATH_RESOLVED | PATH_TRUNCATED);
        assert_eq!(path_of(&f).unwrap(), &b"/.../y/x"[..]);
    }

    #[test]
    fn root_and_unresolved() {
        assert_eq!(path_of(&file(b"", PATH_RESOLVED)).unwrap(), &b"/"[..]);
        assert_eq!(path_of(&file(b"a\0", 0)), None);
    }

    #[test]
    fn device_numbers_in_the_kernels_encoding() {
        let st_dev = libc::makedev(254, 1);
        assert_eq!(kernel_dev(st_dev), (254 << 20) | 1);
        let big = libc::makedev(259, 70000);
        assert_eq!(kernel_dev(big), (259 << 20) | 70000);
    }

    #[test]
    fn command_line_of_a_live_process_and_none_for_a_stranger() {
        let mut me = Process {
            pid: std::process::id(),
            comm: Some(Bytes::from(
                std::fs::read_to_string("/proc/self/comm")
                    .unwrap()
                    .trim_end()
                    .to_string(),
            )),
            ..Process::default()
        };
        add_command_line(&mut me);
        assert!(me.cmdline.is_some());
        let mut stranger = Process {
            pid: std::process::id(),
            comm: Some(Bytes::from_static(b"not-this-one")),
            ..Process::default()
        };
        add_command_line(&mut stranger);
        assert_eq!(stranger.cmdline, None);
    }

    #[test]
    fn kernel_timestamps_become_wall_times() {
        let boot_ns = boot_time().unwrap().as_nanos() as u64;
        let two_s_ago = wall_time(boot_ns - 2_000_000_000);
        let age = SystemTime::now().duration_since(two_s_ago).unwrap();
        assert!(
            age >= Duration::from_secs(2) && age < Duration::from_secs(3),
            "{age:?}"
        );
    }

    #[test]
    fn container_ids_from_cgroup_names() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(
            container_id(format!("docker-{id}.scope\0junk").as_bytes()),
            Some(id.clone())
        );
        assert_eq!(container_id(id.as_bytes()), Some(id.clone()));
        assert_eq!(container_id(b"session-3.scope"), None);
        assert_eq!(container_id(format!("{id}0").as_bytes()), None);
    }
}
