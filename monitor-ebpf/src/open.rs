//! open, openat, openat2 and creat: opens with write intent are remembered at
//! syscall entry; at exit the new descriptor's file is checked against the
//! watch set. Read-only opens cost one flag test.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user};
use aya_ebpf::macros::{map, tracepoint};
use aya_ebpf::maps::LruHashMap;
use aya_ebpf::programs::TracePointContext;
use monitor_common::Op;

use crate::args::{arg, ret};
use crate::kernel::*;
use crate::{path, record, walk};

const O_WRONLY: u64 = 0o1;
const O_RDWR: u64 = 0o2;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const WRITE_INTENT: u64 = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC;

const AT_FDCWD: u64 = -100i64 as u64;

/// An open with write intent in flight.
#[derive(Clone, Copy)]
#[repr(C)]
struct OpenArgs {
    flags: u64,
    dirfd: u64,
    filename: u64,
}

/// Opens in flight, by thread.
#[map]
static OPEN_ARGS: LruHashMap<u64, OpenArgs> = LruHashMap::with_max_entries(16 * 1024, 0);

#[inline(always)]
fn enter(flags: u64, dirfd: u64, filename: u64) -> u32 {
    if flags & WRITE_INTENT != 0 {
        let args = OpenArgs {
            flags,
            dirfd,
            filename,
        };
        let _ = OPEN_ARGS.insert(bpf_get_current_pid_tgid(), args, 0);
    }
    0
}

#[tracepoint]
pub fn dw_enter_openat(ctx: TracePointContext) -> u32 {
    enter(arg(&ctx, 2), arg(&ctx, 0), arg(&ctx, 1))
}

#[tracepoint]
pub fn dw_enter_open(ctx: TracePointContext) -> u32 {
    enter(arg(&ctx, 1), AT_FDCWD, arg(&ctx, 0))
}

#[tracepoint]
pub fn dw_enter_creat(ctx: TracePointContext) -> u32 {
    enter(O_CREAT | O_WRONLY | O_TRUNC, AT_FDCWD, arg(&ctx, 0))
}

#[tracepoint]
pub fn dw_enter_openat2(ctx: TracePointContext) -> u32 {
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let how = arg(&ctx, 2) as *const u64;
    // SAFETY: probe read of the caller's memory.
    match unsafe { bpf_probe_read_user(how) } {
        Ok(flags) => enter(flags, arg(&ctx, 0), arg(&ctx, 1)),
        Err(_) => 0,
    }
}

/// Attached to the exit of all four open calls.
#[tracepoint]
pub fn dw_exit_open(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(args) = (unsafe { OPEN_ARGS.get(id) }).copied() else {
        return 0;
    };
    let _ = OPEN_ARGS.remove(id);
    let flags = args.flags;
    let ret = ret(&ctx);
    if ret < 0 {
        path::failed_open(ret, args.dirfd as i32 as i64, args.filename);
        return 0;
    }
    let task = record::current_task();
    // SAFETY: shim reads.
    unsafe {
        let file = dw_task_file(task, ret as u32);
        if file.is_null() {
            return 0;
        }
        let fmode = dw_file_fmode(file);
        let mut wanted = 0;
        if fmode & FMODE_CREATED != 0 {
            wanted |= Op::Create.bit();
        }
        if fmode & FMODE_WRITE != 0 || flags & O_TRUNC != 0 {
            wanted |= Op::OpenWrite.bit();
        }
        if flags & O_TRUNC != 0 {
            wanted |= Op::Truncate.bit();
        }
        let dentry = dw_file_dentry(file);
        let mnt = dw_file_vfsmount(file);
        let ops = walk::watched_ops(dentry, mnt, wanted);
        // One record per call: creation is the most telling, then a plain
        // open for write; truncate only when that is all the rule asks for.
        let op = if ops & Op::Create.bit() != 0 {
            Op::Create
        } else if ops & Op::OpenWrite.bit() != 0 {
            Op::OpenWrite
        } else if ops & Op::Truncate.bit() != 0 {
            Op::Truncate
        } else {
            return 0;
        };
        if let Some(mut entry) = record::begin(op, ret) {
            walk::fill_file(dentry, mnt, &mut (*entry.as_mut_ptr()).file);
            entry.submit(0);
        }
    }
    0
}
