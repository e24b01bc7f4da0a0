//! The inode hooks: the same records as the syscall tracepoints, taken from
//! tracepoints inside the VFS that fire only when an inode actually changes.
//!
//! Why: on a kernel that refuses BPF LSM and fentry, a syscall tracepoint is
//! the only way to see a call by name, and attaching *any* one puts every
//! syscall of every task on the kernel's tracing slow path (8 to 11% on a
//! loop of tiny syscalls, whatever the program does). These hooks cost
//! nothing on calls that change no inode:
//!
//! - `ctime_ns_xchg`, `ctime_xchg_skip`, `inode_set_ctime_to_ts`: one of them
//!   fires whenever the kernel stamps an inode's ctime, which every change
//!   of content, mode, owner, xattrs, link count or (for a directory) its
//!   entries does;
//! - `sk_data_ready` on a listening af_unix socket: a client connected.
//!
//! The call behind the change is read from the registers the task entered
//! the kernel with (`bpf_task_pt_regs`): its number, through the `CALLS`
//! table userspace fills for the running architecture, says what the call
//! does and which arguments name its objects. The object itself is named
//! by the kernel (see `report`), so the record has the syscall hooks'
//! layout with the path as it is, not as the caller spelled it.
//!
//! What they cannot see, by construction: calls that change nothing (an
//! open for write never written, a failed chmod), so every record's outcome
//! is success. Writes are seen when they move the file's timestamps, i.e.
//! the first write in each clock tick. The syscall hooks
//! (`[sources.ebpf] hooks = "syscalls"`) see those, at their price.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_probe_read_kernel_str, bpf_probe_read_user_str};
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns};
use aya_ebpf::macros::{btf_tracepoint, map};
use aya_ebpf::maps::{HashMap, LruHashMap, PerCpuArray};
use aya_ebpf::programs::BtfTracePointContext;
use monitor_common::{
    CallShape, FileRecord, Op, WatchKey, ARG_NONE, ARG_PATH, OP_IGNORE, PATH_BASE, PATH_FS_ROOT,
    PATH_RAW,
};

use crate::kernel::*;
use crate::scan::{scan, ByteScan};
use crate::{path, record, walk};

/// What each system call does and where its arguments are, by number.
#[map]
pub static CALLS: HashMap<u32, CallShape> = HashMap::with_max_entries(1024, 0);

/// The last call each thread reported: one call stamps several inodes (a
/// rename: both directories, the moved file, the one it replaced), and is
/// reported once.
#[derive(Clone, Copy)]
#[repr(C)]
struct LastCall {
    nr: i64,
    args: [u64; 3],
    path: u64,
    /// The inode whose stamp was reported.
    inode: u64,
    boot_ns: u64,
}

#[map]
static LAST_CALL: LruHashMap<u32, LastCall> = LruHashMap::with_max_entries(8192, 0);

/// How long the same call (number, first three arguments and first path)
/// from the same thread counts as the one already reported.
const SAME_CALL_NS: u64 = 20_000_000;

/// The caller's path strings; the BPF stack is too small for them.
#[map]
static CALL_PATHS: PerCpuArray<[[u8; ARG_PATH]; 2]> = PerCpuArray::with_max_entries(1, 0);

#[btf_tracepoint(function = "ctime_ns_xchg")]
pub fn dw_ctime_xchg(ctx: BtfTracePointContext) -> i32 {
    changed(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "ctime_xchg_skip")]
pub fn dw_ctime_skip(ctx: BtfTracePointContext) -> i32 {
    changed(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "inode_set_ctime_to_ts")]
pub fn dw_ctime_set(ctx: BtfTracePointContext) -> i32 {
    changed(ctx.arg(0));
    0
}

/// A client connected to a listening unix socket: the listener is woken
/// in the client's `connect`, so the current task is the client.
#[btf_tracepoint(function = "sk_data_ready")]
pub fn dw_unix_connect(ctx: BtfTracePointContext) -> i32 {
    let sk: Ptr = ctx.arg(0);
    let mut mnt: Ptr = core::ptr::null();
    // SAFETY: shim reads.
    unsafe {
        let dentry = dw_unix_listener_path(sk, &mut mnt);
        if dentry.is_null() || mnt.is_null() {
            return 0;
        }
        if walk::watched_ops(dentry, mnt, Op::Connect.bit()) == 0 {
            return 0;
        }
        if let Some(mut entry) = record::begin(Op::Connect, 0) {
            walk::fill_file(dentry, mnt, &mut (*entry.as_mut_ptr()).file);
            entry.submit(0);
        }
    }
    0
}

/// Calls that add, remove or rename a directory's entries: when their
/// stamp lands on a directory, the object is an entry of it.
#[inline(always)]
fn names_an_entry(op: Op) -> bool {
    matches!(
        op,
        Op::Create
            | Op::Rename
            | Op::Unlink
            | Op::Rmdir
            | Op::Link
            | Op::Symlink
            | Op::Mkdir
            | Op::Mknod
    )
}

#[inline(always)]
fn changed(inode: Ptr) {
    // SAFETY: shim reads; every kernel pointer is checked for null.
    unsafe {
        // Cheapest test first: inodes being created or read from disk (a
        // pipe, a file looked up for the first time) have no name yet.
        let dentry = dw_inode_alias(inode);
        if dentry.is_null() {
            return;
        }
        let mut args = [0u64; 6];
        let nr = dw_current_syscall(args.as_mut_ptr());
        let known = if nr >= 0 {
            CALLS.get(nr as u32).copied()
        } else {
            None
        };
        // A change no known call made (a write through mmap, io_uring, an
        // ioctl): reported as a write to the inode, by its name.
        let shape = known.unwrap_or(CallShape::new(Op::Write as u32));
        if shape.op == OP_IGNORE {
            return;
        }
        let mut op = shape.op;
        if arg(&args, shape.alt_arg).is_some_and(|v| v & shape.alt_mask != 0) {
            op = shape.alt_op;
        }
        let Some(mut op) = Op::from_u32(op) else {
            return;
        };
        let is_dir = dw_inode_mode(inode) & S_IFMT == S_IFDIR;
        // An open stamps the file it truncates, or the directory it
        // creates the file in.
        if op == Op::OpenWrite && is_dir {
            op = Op::Create;
        }
        let entry_of_dir = is_dir && names_an_entry(op);
        let mut mask = op.bit();
        if op == Op::OpenWrite {
            mask |= Op::Truncate.bit();
        }
        let dev = dw_inode_dev(inode) as u64;
        let ops = walk::watched_ops_in(dentry, dev, mask, entry_of_dir as u32);
        if ops == 0 {
            // A name appearing or going in a directory above a watch may
            // change what the watched path names: userspace re-resolves.
            let key = WatchKey {
                dev,
                ino: dw_inode_ino(inode),
            };
            let entries_changed = entry_of_dir || (is_dir && known.is_none());
            if !(entries_changed && path::ANCESTORS.get(key).is_some()) {
                return;
            }
        }
        if op == Op::OpenWrite && ops & Op::OpenWrite.bit() == 0 && ops != 0 {
            op = Op::Truncate;
        }
        let Some(paths) = CALL_PATHS.get_ptr_mut(0) else {
            return;
        };
        let paths = &mut *paths;
        let lens = [
            read_path(&args, shape.path1, shape.path1_skip, &mut paths[0]),
            read_path(&args, shape.path2, 0, &mut paths[1]),
        ];
        if repeats_last_call(op, nr, &args, &paths[0], inode) {
            return;
        }
        let fired = Fired {
            dentry,
            inode,
            entry_of_dir,
        };
        report(op, &shape, &args, paths, lens, &fired);
    }
}

/// Copies the caller's path argument `n` (from `skip` bytes in) into
/// `out`; its length with the NUL, or 0 when there is none.
#[inline(always)]
fn read_path(args: &[u64; 6], n: u8, skip: u8, out: &mut [u8; ARG_PATH]) -> i64 {
    let Some(p) = arg(args, n) else {
        out[0] = 0;
        return 0;
    };
    // SAFETY: probe read of the caller's memory into our scratch.
    let n = unsafe {
        bpf_probe_read_user_str(
            out.as_mut_ptr() as *mut c_void,
            ARG_PATH as u32,
            (p + skip as u64) as *const c_void,
        )
    };
    if n < 0 {
        out[0] = 0;
        return 0;
    }
    n
}

/// FNV-1a of a NUL-terminated path.
struct PathHash(u64);

impl ByteScan for PathHash {
    fn take(&mut self, _index: usize, c: u8) -> bool {
        if c == 0 {
            return false;
        }
        self.0 = (self.0 ^ c as u64).wrapping_mul(0x100_0000_01b3);
        true
    }
}

/// Tools that reuse one buffer for every path (`rm a b` through fts) pass
/// the same pointer for different files: the call is told by its string.
#[inline(always)]
fn path_hash(buf: &[u8; ARG_PATH]) -> u64 {
    scan(buf, PathHash(0xcbf2_9ce4_8422_2325)).0
}

/// Whether this stamp belongs to what this thread reported last: the same
/// call (number, arguments and first path, moments ago), or a write to the
/// file it just opened, truncated or created (`cp` onto daemon.json is one
/// open for write, as the syscall hooks and audit say). Remembers it
/// otherwise.
#[inline(always)]
fn repeats_last_call(op: Op, nr: i64, args: &[u64; 6], path1: &[u8; ARG_PATH], inode: Ptr) -> bool {
    let tid = bpf_get_current_pid_tgid() as u32;
    let call = LastCall {
        nr,
        args: [args[0], args[1], args[2]],
        path: path_hash(path1),
        inode: inode as u64,
        // SAFETY: plain helper call.
        boot_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    // SAFETY: the value is copied out of the map at once.
    if let Some(last) = unsafe { LAST_CALL.get(tid) } {
        let recent = call.boot_ns.wrapping_sub(last.boot_ns) < SAME_CALL_NS;
        let same_call = last.nr == call.nr && last.args == call.args && last.path == call.path;
        let same_file_written = op == Op::Write && last.inode == call.inode;
        if recent && (same_call || same_file_written) {
            return true;
        }
    }
    let _ = LAST_CALL.insert(tid, call, 0);
    false
}

/// Argument `n` of the call, or `None` for [`ARG_NONE`].
#[inline(always)]
fn arg(args: &[u64; 6], n: u8) -> Option<u64> {
    (n < 6).then(|| args[n as usize % 6])
}

/// A dirfd argument (`AT_FDCWD` when the call has none); only the low 32
/// bits are the caller's `int`.
#[inline(always)]
fn dirfd(args: &[u64; 6], n: u8) -> i64 {
    arg(args, n).map_or(path::AT_FDCWD, |v| v as i32 as i64)
}

/// The inode whose stamp is reported, and how it relates to the call.
struct Fired {
    dentry: Ptr,
    inode: Ptr,
    /// The stamp is on the directory of the call's object.
    entry_of_dir: bool,
}

/// Calls whose two paths are both the record's business.
#[inline(always)]
fn names_two(op: Op) -> bool {
    matches!(op, Op::Rename | Op::Link | Op::Symlink)
}

/// Fills the record. The object's path comes from the kernel wherever it
/// knows it (the descriptor's file, the stamped inode, or the stamped
/// directory and the leaf of the caller's path), so that relative paths,
/// dirfds and symlinks on the way all name the object as it is; rename,
/// link and symlink keep the caller's two paths, as the syscall hooks do.
#[inline(always)]
fn report(
    op: Op,
    shape: &CallShape,
    args: &[u64; 6],
    paths: &[[u8; ARG_PATH]; 2],
    lens: [i64; 2],
    fired: &Fired,
) {
    let task = record::current_task();
    let Some(mut entry) = record::begin(op, 0) else {
        return;
    };
    // SAFETY: `rec` is the reservation; shim reads.
    unsafe {
        let rec = &mut *entry.as_mut_ptr();
        if let Some(mode) = arg(args, shape.mode) {
            rec.arg_mode = mode as u32;
        }
        if let Some(uid) = arg(args, shape.uid) {
            rec.arg_uid = uid as u32;
        }
        if let Some(gid) = arg(args, shape.gid) {
            rec.arg_gid = gid as u32;
        }
        let mut fd = arg(args, shape.fd).map(|v| v as i32 as i64);
        if lens[0] == 1 && shape.dirfd1 != ARG_NONE {
            // `AT_EMPTY_PATH`: the call acts on the dirfd itself.
            fd = Some(dirfd(args, shape.dirfd1));
        }
        let file = match fd {
            Some(fd) if fd >= 0 => dw_task_file(task, fd as u32),
            _ => core::ptr::null(),
        };
        if !file.is_null() {
            walk::fill_file(dw_file_dentry(file), dw_file_vfsmount(file), &mut rec.file);
        } else if lens[0] > 1 && names_two(op) {
            path::fill_raw(task, &paths[0], dirfd(args, shape.dirfd1), &mut rec.file);
        } else if lens[0] > 1 && fired.entry_of_dir {
            fill_entry(task, fired, &paths[0], &mut rec.file);
        } else {
            fill_inode(task, fired.dentry, fired.inode, &mut rec.file);
        }
        if lens[1] > 1 {
            path::fill_raw(task, &paths[1], dirfd(args, shape.dirfd2), &mut rec.target);
        }
    }
    entry.submit(0);
}

/// Where the last component of a path starts: after its last slash that
/// something follows (a trailing slash names no leaf after it).
struct Leaf {
    start: usize,
    after_slash: Option<usize>,
}

impl ByteScan for Leaf {
    fn take(&mut self, index: usize, c: u8) -> bool {
        match c {
            0 => return false,
            b'/' => self.after_slash = Some(index + 1),
            _ => {
                if let Some(start) = self.after_slash.take() {
                    self.start = start;
                }
            }
        }
        true
    }
}

#[inline(always)]
fn leaf_offset(buf: &[u8; ARG_PATH]) -> usize {
    let leaf = scan(
        buf,
        Leaf {
            start: 0,
            after_slash: None,
        },
    );
    leaf.start & (ARG_PATH - 1)
}

/// An entry of the stamped directory: the directory by its own name and
/// the leaf of the caller's path (`mkdir ../d/new` is `<dir>/new`).
#[inline(always)]
fn fill_entry(task: Ptr, fired: &Fired, path: &[u8; ARG_PATH], out: *mut FileRecord) {
    fill_inode(task, fired.dentry, fired.inode, out);
    let leaf = leaf_offset(path);
    // SAFETY: `out` is in a ring-buffer reservation; the source is in a
    // per-CPU value of two ARG_PATH buffers, so `leaf` (< ARG_PATH) plus
    // ARG_PATH bytes stays inside it.
    unsafe {
        (*out).flags |= PATH_RAW | PATH_BASE;
        bpf_probe_read_kernel_str(
            (*out).raw.as_mut_ptr() as *mut c_void,
            ARG_PATH as u32,
            path.as_ptr().add(leaf) as *const c_void,
        );
    }
}

/// The stamped inode by its own name. The task's root mount gives the walk
/// its mount points when the inode lives there; elsewhere the path runs
/// from its file system's root ([`PATH_FS_ROOT`]) and userspace finds the
/// mount point.
#[inline(always)]
fn fill_inode(task: Ptr, dentry: Ptr, inode: Ptr, out: *mut FileRecord) {
    // SAFETY: shim reads; `out` is in a ring-buffer reservation.
    unsafe {
        let root = dw_task_root_vfsmount(task);
        if !root.is_null() && dw_vfsmount_sb(root) == dw_inode_sb(inode) {
            walk::fill_file(dentry, root, out);
        } else {
            walk::fill_file(dentry, core::ptr::null(), out);
            (*out).flags |= PATH_FS_ROOT;
        }
    }
}
