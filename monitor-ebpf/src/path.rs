//! Calls that name their object by path (chmod, unlink, rename, mkdir,
//! connect to a unix socket, ...) or by descriptor (fchmod, ftruncate, ...).
//!
//! Syscall tracepoints see a path before the kernel resolves it, so a path
//! is matched as a string: absolute paths against `WATCH_PATHS`, a
//! longest-prefix trie of the watched paths as written and as resolved
//! (`/etc/docker/` matches everything below, `/etc/docker\0` the directory
//! itself). A relative path matches when its base directory (cwd or dirfd)
//! lies in a watched subtree, found by inode like opens are. Strings the
//! trie cannot judge (`.`/`..` segments, `//`, a relative path from a
//! directory above a watch) go to userspace, which resolves them and drops
//! what is not watched. Descriptor calls are matched by inode, exactly.
//!
//! The decision is made at entry; the record is written at exit, with the
//! return value.

use aya_ebpf::helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_user_str};
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user};
use aya_ebpf::macros::{map, tracepoint};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{HashMap, LpmTrie, LruHashMap, PerCpuArray};
use aya_ebpf::programs::TracePointContext;
use monitor_common::{FileRecord, Op, WatchKey, WatchValue, ARG_PATH, PATH_BASE, PATH_RAW};

use crate::args::{arg, ret};
use crate::kernel::*;
use crate::scan::{scan, ByteScan};
use crate::{record, walk};

/// Watched paths as strings, for calls that name a path.
#[map]
pub static WATCH_PATHS: LpmTrie<[u8; ARG_PATH], WatchValue> = LpmTrie::with_max_entries(4096, 0);

/// Directories above a watched path (`/`, `/etc` for `/etc/docker`): a
/// relative path from one of them may lead into the watch.
#[map]
pub static ANCESTORS: HashMap<WatchKey, u32> = HashMap::with_max_entries(4096, 0);

pub const AT_FDCWD: i64 = -100;
const AT_REMOVEDIR: u64 = 0x200;
const AT_EMPTY_PATH: u64 = 0x1000;
const AF_UNIX: u16 = 1;
/// `sizeof(sockaddr_un.sun_path)`.
const SUN_PATH: u32 = 108;

/// `Pending::kind` bits.
const BY_FD: u32 = 1;
const HAS_PATH2: u32 = 2;

/// A call in flight whose object is watched.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    op: u32,
    kind: u32,
    fd: i64,
    dirfd1: i64,
    dirfd2: i64,
    arg_mode: u32,
    arg_uid: u32,
    arg_gid: u32,
    _pad: u32,
    path1: [u8; ARG_PATH],
    path2: [u8; ARG_PATH],
}

#[map]
static PENDING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(8192, 0);

/// Per-CPU scratch: the BPF stack (512 bytes) is too small for these.
#[map]
static SCRATCH: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);
#[map]
static TRIE_KEY: PerCpuArray<Key<[u8; ARG_PATH]>> = PerCpuArray::with_max_entries(1, 0);

/// The directory a relative path starts from.
#[inline(always)]
fn base_of(task: Ptr, dirfd: i64) -> (Ptr, Ptr) {
    // SAFETY: shim reads.
    unsafe {
        if dirfd == AT_FDCWD {
            (dw_task_cwd_dentry(task), dw_task_cwd_vfsmount(task))
        } else {
            let file = dw_task_file(task, dirfd as u32);
            if file.is_null() {
                (core::ptr::null(), core::ptr::null())
            } else {
                (dw_file_dentry(file), dw_file_vfsmount(file))
            }
        }
    }
}

/// [`has_odd_segment`]'s scan.
struct OddSegment {
    /// 0 = at segment start, 1 = one dot, 2 = two dots, 3 = ordinary.
    state: u8,
    odd: bool,
}

impl ByteScan for OddSegment {
    fn take(&mut self, _index: usize, c: u8) -> bool {
        if c == 0 || c == b'/' {
            if self.state != 3 {
                self.odd = true;
                return false;
            }
            self.state = 0;
            return c != 0;
        }
        if c == b'.' && self.state < 2 {
            self.state += 1;
        } else {
            self.state = 3;
        }
        true
    }
}

/// A segment the trie cannot judge: empty (`//`), `.` or `..`.
#[inline(always)]
fn has_odd_segment(buf: &[u8; ARG_PATH]) -> bool {
    scan(
        buf,
        OddSegment {
            state: 3,
            odd: false,
        },
    )
    .odd
}

/// Does the string `buf` (length `n` with its NUL), relative to `dirfd`,
/// name a watched object for `bit`?
#[inline(always)]
fn path_matches(task: Ptr, buf: &[u8; ARG_PATH], n: i64, dirfd: i64, bit: u32) -> bool {
    if n <= 1 {
        return false;
    }
    if buf[0] == b'/' {
        if has_odd_segment(buf) {
            return true;
        }
        let Some(key) = TRIE_KEY.get_ptr_mut(0) else {
            return false;
        };
        // SAFETY: both are per-CPU map values of at least ARG_PATH bytes.
        unsafe {
            (*key).prefix_len = (n as u32 & 0x1ff) * 8;
            bpf_probe_read_kernel(
                (*key).data.as_mut_ptr() as *mut _,
                ARG_PATH as u32,
                buf.as_ptr() as *const _,
            );
            return match WATCH_PATHS.get(&*key) {
                Some(v) => v.ops & bit != 0,
                None => false,
            };
        }
    }
    let (dentry, mnt) = base_of(task, dirfd);
    if dentry.is_null() || mnt.is_null() {
        return false;
    }
    if walk::watched_ops(dentry, mnt, bit) != 0 {
        return true;
    }
    // SAFETY: shim reads.
    let inode = unsafe { dw_dentry_inode(dentry) };
    if !inode.is_null() && unsafe { ANCESTORS.get(walk::key_of(inode)) }.is_some() {
        return true;
    }
    has_odd_segment(buf)
}

/// Entry of a call naming one or two paths.
#[inline(always)]
fn enter_paths(
    op: Op,
    dirfd1: i64,
    path1: u64,
    dirfd2: i64,
    path2: u64,
    init: impl Fn(&mut Pending),
) {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let task = record::current_task();
    let bit = op.bit();
    // SAFETY: `s` is this CPU's scratch value.
    unsafe {
        let s = &mut *s;
        s.op = op as u32;
        s.kind = 0;
        s.fd = -1;
        s.dirfd1 = dirfd1;
        s.dirfd2 = dirfd2;
        s.arg_mode = 0;
        s.arg_uid = u32::MAX;
        s.arg_gid = u32::MAX;
        s.path2[0] = 0;
        let n1 = bpf_probe_read_user_str(
            s.path1.as_mut_ptr() as *mut _,
            ARG_PATH as u32,
            path1 as *const _,
        );
        if n1 < 0 {
            return;
        }
        let mut hit = path_matches(task, &s.path1, n1, dirfd1, bit);
        if path2 != 0 {
            s.kind |= HAS_PATH2;
            let n2 = bpf_probe_read_user_str(
                s.path2.as_mut_ptr() as *mut _,
                ARG_PATH as u32,
                path2 as *const _,
            );
            if n2 < 0 {
                s.path2[0] = 0;
            } else if !hit && op != Op::Symlink {
                hit = path_matches(task, &s.path2, n2, dirfd2, bit);
            } else if op == Op::Symlink {
                // symlink(target, linkpath): only the link's location is a
                // place in the file system; the target is just its content.
                hit = path_matches(task, &s.path2, n2, dirfd2, bit);
            }
        }
        if hit {
            init(s);
            let _ = PENDING.insert(bpf_get_current_pid_tgid(), &*s, 0);
        }
    }
}

#[inline(always)]
fn enter_path(op: Op, dirfd: i64, path: u64, init: impl Fn(&mut Pending)) {
    enter_paths(op, dirfd, path, AT_FDCWD, 0, init)
}

/// Entry of a call naming its object by descriptor.
#[inline(always)]
fn enter_fd(op: Op, fd: i64, init: impl Fn(&mut Pending)) {
    let task = record::current_task();
    // SAFETY: shim reads; `s` is this CPU's scratch value.
    unsafe {
        let file = dw_task_file(task, fd as u32);
        if file.is_null()
            || walk::watched_ops(dw_file_dentry(file), dw_file_vfsmount(file), op.bit()) == 0
        {
            return;
        }
        let Some(s) = SCRATCH.get_ptr_mut(0) else {
            return;
        };
        let s = &mut *s;
        s.op = op as u32;
        s.kind = BY_FD;
        s.fd = fd;
        s.dirfd1 = AT_FDCWD;
        s.dirfd2 = AT_FDCWD;
        s.arg_mode = 0;
        s.arg_uid = u32::MAX;
        s.arg_gid = u32::MAX;
        s.path1[0] = 0;
        s.path2[0] = 0;
        init(s);
        let _ = PENDING.insert(bpf_get_current_pid_tgid(), &*s, 0);
    }
}

/// `*at` calls with `AT_EMPTY_PATH` and an empty path act on `dirfd` itself.
#[inline(always)]
fn enter_at(op: Op, dirfd: i64, path: u64, flags: u64, init: impl Fn(&mut Pending)) {
    if flags & AT_EMPTY_PATH != 0 {
        // SAFETY: probe read of the caller's memory.
        let first: u8 = unsafe { bpf_probe_read_user(path as *const u8) }.unwrap_or(1);
        if first == 0 {
            return enter_fd(op, dirfd, init);
        }
    }
    enter_path(op, dirfd, path, init)
}

fn none(_: &mut Pending) {}

/// An `int` argument (fd, dirfd): the slot holds the raw register, whose
/// upper half the caller need not have sign-extended.
fn i(ctx: &TracePointContext, n: usize) -> i64 {
    arg(ctx, n) as i32 as i64
}

// ---- chmod -----------------------------------------------------------------

#[tracepoint]
pub fn dw_enter_chmod(ctx: TracePointContext) -> u32 {
    let mode = arg(&ctx, 1) as u32;
    enter_path(Op::Chmod, AT_FDCWD, arg(&ctx, 0), |p| p.arg_mode = mode);
    0
}

#[tracepoint]
pub fn dw_enter_fchmodat(ctx: TracePointContext) -> u32 {
    let mode = arg(&ctx, 2) as u32;
    enter_path(Op::Chmod, i(&ctx, 0), arg(&ctx, 1), |p| p.arg_mode = mode);
    0
}

#[tracepoint]
pub fn dw_enter_fchmodat2(ctx: TracePointContext) -> u32 {
    let mode = arg(&ctx, 2) as u32;
    enter_at(Op::Chmod, i(&ctx, 0), arg(&ctx, 1), arg(&ctx, 3), |p| {
        p.arg_mode = mode
    });
    0
}

#[tracepoint]
pub fn dw_enter_fchmod(ctx: TracePointContext) -> u32 {
    let mode = arg(&ctx, 1) as u32;
    enter_fd(Op::Chmod, i(&ctx, 0), |p| p.arg_mode = mode);
    0
}

// ---- chown -----------------------------------------------------------------

/// chown and lchown.
#[tracepoint]
pub fn dw_enter_chown(ctx: TracePointContext) -> u32 {
    let (uid, gid) = (arg(&ctx, 1) as u32, arg(&ctx, 2) as u32);
    enter_path(Op::Chown, AT_FDCWD, arg(&ctx, 0), |p| {
        p.arg_uid = uid;
        p.arg_gid = gid;
    });
    0
}

#[tracepoint]
pub fn dw_enter_fchownat(ctx: TracePointContext) -> u32 {
    let (uid, gid) = (arg(&ctx, 2) as u32, arg(&ctx, 3) as u32);
    enter_at(Op::Chown, i(&ctx, 0), arg(&ctx, 1), arg(&ctx, 4), |p| {
        p.arg_uid = uid;
        p.arg_gid = gid;
    });
    0
}

#[tracepoint]
pub fn dw_enter_fchown(ctx: TracePointContext) -> u32 {
    let (uid, gid) = (arg(&ctx, 1) as u32, arg(&ctx, 2) as u32);
    enter_fd(Op::Chown, i(&ctx, 0), |p| {
        p.arg_uid = uid;
        p.arg_gid = gid;
    });
    0
}

// ---- extended attributes ---------------------------------------------------

/// setxattr, lsetxattr, removexattr, lremovexattr.
#[tracepoint]
pub fn dw_enter_setxattr(ctx: TracePointContext) -> u32 {
    enter_path(Op::Setxattr, AT_FDCWD, arg(&ctx, 0), none);
    0
}

/// setxattrat, removexattrat (dfd, path, at_flags, ...).
#[tracepoint]
pub fn dw_enter_setxattrat(ctx: TracePointContext) -> u32 {
    enter_at(Op::Setxattr, i(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2), none);
    0
}

/// fsetxattr, fremovexattr.
#[tracepoint]
pub fn dw_enter_fsetxattr(ctx: TracePointContext) -> u32 {
    enter_fd(Op::Setxattr, i(&ctx, 0), none);
    0
}

// ---- truncate --------------------------------------------------------------

#[tracepoint]
pub fn dw_enter_truncate(ctx: TracePointContext) -> u32 {
    enter_path(Op::Truncate, AT_FDCWD, arg(&ctx, 0), none);
    0
}

#[tracepoint]
pub fn dw_enter_ftruncate(ctx: TracePointContext) -> u32 {
    enter_fd(Op::Truncate, i(&ctx, 0), none);
    0
}

// ---- rename, link, symlink -------------------------------------------------

#[tracepoint]
pub fn dw_enter_rename(ctx: TracePointContext) -> u32 {
    enter_paths(
        Op::Rename,
        AT_FDCWD,
        arg(&ctx, 0),
        AT_FDCWD,
        arg(&ctx, 1),
        none,
    );
    0
}

/// renameat and renameat2 (RENAME_EXCHANGE included: both names change).
#[tracepoint]
pub fn dw_enter_renameat(ctx: TracePointContext) -> u32 {
    enter_paths(
        Op::Rename,
        i(&ctx, 0),
        arg(&ctx, 1),
        i(&ctx, 2),
        arg(&ctx, 3),
        none,
    );
    0
}

#[tracepoint]
pub fn dw_enter_link(ctx: TracePointContext) -> u32 {
    enter_paths(
        Op::Link,
        AT_FDCWD,
        arg(&ctx, 0),
        AT_FDCWD,
        arg(&ctx, 1),
        none,
    );
    0
}

#[tracepoint]
pub fn dw_enter_linkat(ctx: TracePointContext) -> u32 {
    enter_paths(
        Op::Link,
        i(&ctx, 0),
        arg(&ctx, 1),
        i(&ctx, 2),
        arg(&ctx, 3),
        none,
    );
    0
}

#[tracepoint]
pub fn dw_enter_symlink(ctx: TracePointContext) -> u32 {
    enter_paths(
        Op::Symlink,
        AT_FDCWD,
        arg(&ctx, 0),
        AT_FDCWD,
        arg(&ctx, 1),
        none,
    );
    0
}

#[tracepoint]
pub fn dw_enter_symlinkat(ctx: TracePointContext) -> u32 {
    enter_paths(
        Op::Symlink,
        AT_FDCWD,
        arg(&ctx, 0),
        i(&ctx, 1),
        arg(&ctx, 2),
        none,
    );
    0
}

// ---- unlink, rmdir, mkdir, mknod -------------------------------------------

#[tracepoint]
pub fn dw_enter_unlink(ctx: TracePointContext) -> u32 {
    enter_path(Op::Unlink, AT_FDCWD, arg(&ctx, 0), none);
    0
}

#[tracepoint]
pub fn dw_enter_unlinkat(ctx: TracePointContext) -> u32 {
    let op = if arg(&ctx, 2) & AT_REMOVEDIR != 0 {
        Op::Rmdir
    } else {
        Op::Unlink
    };
    enter_path(op, i(&ctx, 0), arg(&ctx, 1), none);
    0
}

#[tracepoint]
pub fn dw_enter_rmdir(ctx: TracePointContext) -> u32 {
    enter_path(Op::Rmdir, AT_FDCWD, arg(&ctx, 0), none);
    0
}

#[tracepoint]
pub fn dw_enter_mkdir(ctx: TracePointContext) -> u32 {
    let mode = arg(&ctx, 1) as u32;
    enter_path(Op::Mkdir, AT_FDCWD, arg(&ctx, 0), |p| p.arg_mode = mode);
    0
}

#[tracepoint]
pub fn dw_enter_mkdirat(ctx: TracePointContext) -> u32 {
    let mode = arg(&ctx, 2) as u32;
    enter_path(Op::Mkdir, i(&ctx, 0), arg(&ctx, 1), |p| p.arg_mode = mode);
    0
}

#[tracepoint]
pub fn dw_enter_mknod(ctx: TracePointContext) -> u32 {
    let mode = arg(&ctx, 1) as u32;
    enter_path(Op::Mknod, AT_FDCWD, arg(&ctx, 0), |p| p.arg_mode = mode);
    0
}

#[tracepoint]
pub fn dw_enter_mknodat(ctx: TracePointContext) -> u32 {
    let mode = arg(&ctx, 2) as u32;
    enter_path(Op::Mknod, i(&ctx, 0), arg(&ctx, 1), |p| p.arg_mode = mode);
    0
}

// ---- connect to a unix socket ----------------------------------------------

#[tracepoint]
pub fn dw_enter_connect(ctx: TracePointContext) -> u32 {
    let addr = arg(&ctx, 1);
    let len = arg(&ctx, 2);
    if len <= 2 {
        return 0;
    }
    // SAFETY: probe reads of the caller's memory.
    let family: u16 = unsafe { bpf_probe_read_user(addr as *const u16) }.unwrap_or(0);
    if family != AF_UNIX {
        return 0;
    }
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let task = record::current_task();
    // SAFETY: `s` is this CPU's scratch value.
    unsafe {
        let s = &mut *s;
        // Abstract sockets (sun_path[0] == 0) have no file.
        let n = bpf_probe_read_user_str(
            s.path1.as_mut_ptr() as *mut _,
            SUN_PATH,
            (addr + 2) as *const _,
        );
        if n <= 1 || !path_matches(task, &s.path1, n, AT_FDCWD, Op::Connect.bit()) {
            return 0;
        }
        s.op = Op::Connect as u32;
        s.kind = 0;
        s.fd = i(&ctx, 0);
        s.dirfd1 = AT_FDCWD;
        s.dirfd2 = AT_FDCWD;
        s.arg_mode = 0;
        s.arg_uid = u32::MAX;
        s.arg_gid = u32::MAX;
        s.path2[0] = 0;
        let _ = PENDING.insert(bpf_get_current_pid_tgid(), &*s, 0);
    }
    0
}

// ---- the common exit -------------------------------------------------------

/// Copies the caller's string into `out.raw`, with the base directory of a
/// relative path resolved into `out.names`.
#[inline(always)]
pub fn fill_raw(task: Ptr, raw: &[u8; ARG_PATH], dirfd: i64, out: *mut FileRecord) {
    // SAFETY: `out` points into a ring-buffer reservation of a `Record`.
    unsafe {
        let mut flags = PATH_RAW;
        let (dentry, mnt) = if raw[0] != b'/' {
            base_of(task, dirfd)
        } else {
            (core::ptr::null(), core::ptr::null())
        };
        if !dentry.is_null() && !mnt.is_null() {
            walk::fill_file(dentry, mnt, out);
            flags |= (*out).flags | PATH_BASE;
        } else {
            walk::clear_file(out);
        }
        (*out).flags = flags;
        bpf_probe_read_kernel(
            (*out).raw.as_mut_ptr() as *mut _,
            ARG_PATH as u32,
            raw.as_ptr() as *const _,
        );
    }
}

/// An open for write that failed (no file to look at): matched and reported
/// by its path.
#[inline(always)]
pub fn failed_open(ret: i64, dirfd: i64, filename: u64) {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let task = record::current_task();
    // SAFETY: `s` is this CPU's scratch value; `rec` a reservation.
    unsafe {
        let s = &mut *s;
        let n = bpf_probe_read_user_str(
            s.path1.as_mut_ptr() as *mut _,
            ARG_PATH as u32,
            filename as *const _,
        );
        if n <= 1 || !path_matches(task, &s.path1, n, dirfd, Op::OpenWrite.bit()) {
            return;
        }
        if let Some(mut entry) = record::begin(Op::OpenWrite, ret) {
            let rec = &mut *entry.as_mut_ptr();
            fill_raw(task, &s.path1, dirfd, &mut rec.file);
            entry.submit(0);
        }
    }
}

/// Attached to the exit of every call above.
#[tracepoint]
pub fn dw_exit_path(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let Some(p) = PENDING.get_ptr(id) else {
        return 0;
    };
    let ret = ret(&ctx);
    let task = record::current_task();
    // SAFETY: `p` is a map value, valid until removed below; shim reads.
    unsafe {
        let p = &*p;
        let Some(op) = Op::from_u32(p.op) else {
            let _ = PENDING.remove(id);
            return 0;
        };
        if let Some(mut entry) = record::begin(op, ret) {
            let rec = &mut *entry.as_mut_ptr();
            rec.arg_mode = p.arg_mode;
            rec.arg_uid = p.arg_uid;
            rec.arg_gid = p.arg_gid;
            if p.kind & BY_FD != 0 {
                let file = dw_task_file(task, p.fd as u32);
                if file.is_null() {
                    walk::clear_file(&mut rec.file);
                } else {
                    walk::fill_file(dw_file_dentry(file), dw_file_vfsmount(file), &mut rec.file);
                }
            } else {
                fill_raw(task, &p.path1, p.dirfd1, &mut rec.file);
                if p.kind & HAS_PATH2 != 0 {
                    fill_raw(task, &p.path2, p.dirfd2, &mut rec.target);
                }
            }
            entry.submit(0);
        }
        let _ = PENDING.remove(id);
    }
    0
}
