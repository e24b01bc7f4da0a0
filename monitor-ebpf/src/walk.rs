//! The in-kernel filter and path builder: both walk from a dentry up through
//! its parents, crossing mount points, to the root of the mount namespace.
//!
//! The filter looks every level's (device, inode) up in `WATCHES`, which
//! userspace fills from the rules: a hit on the object itself, or on a
//! directory watched as a subtree, means the record goes to userspace.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel_str};
use aya_ebpf::macros::map;
use aya_ebpf::maps::HashMap;
use monitor_common::{
    FileRecord, WatchKey, WatchValue, MAX_DEPTH, NAME_READ, PATH_OFF_MASK, PATH_RESOLVED,
    PATH_TRUNCATED, WATCH_CHILDREN, WATCH_SUBTREE,
};

use crate::kernel::*;

/// Watched inodes; userspace keeps it in step with the rules and the file
/// system (files created, renamed, unlinked).
#[map]
pub static WATCHES: HashMap<WatchKey, WatchValue> = HashMap::with_max_entries(16 * 1024, 0);

/// Identity of one inode as the watch set names it.
#[inline(always)]
pub fn key_of(inode: Ptr) -> WatchKey {
    // SAFETY: the shim reads through bpf_probe_read_kernel; a bad pointer
    // yields zeros.
    unsafe {
        WatchKey {
            dev: dw_inode_dev(inode) as u64,
            ino: dw_inode_ino(inode),
        }
    }
}

/// State of [`watched_ops`]' walk, shared with its `bpf_loop` callback.
#[repr(C)]
struct Walk {
    dentry: Ptr,
    mnt: Ptr,
    root: Ptr,
    /// `s_dev` of the current mount's file system.
    dev: u64,
    mask: u32,
    level: u32,
    ops: u32,
    _pad: u32,
}

extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's `Walk`.
    unsafe { step(&mut *(ctx as *mut Walk)) }
}

/// One level of the walk: 1 when it is over.
#[inline(always)]
fn step(w: &mut Walk) -> i64 {
    // SAFETY: all reads go through the shim.
    unsafe {
        let d = w.dentry;
        let inode = dw_dentry_inode(d);
        if !inode.is_null() {
            let key = WatchKey {
                dev: w.dev,
                ino: dw_inode_ino(inode),
            };
            if let Some(v) = WATCHES.get(key) {
                let ops = v.ops & w.mask;
                if ops != 0
                    && (w.level == 0
                        || v.flags & WATCH_SUBTREE != 0
                        || (w.level == 1 && v.flags & WATCH_CHILDREN != 0))
                {
                    w.ops = ops;
                    return 1;
                }
            }
        }
        if d == w.root {
            let parent = dw_vfsmount_parent(w.mnt);
            if parent == w.mnt || parent.is_null() {
                return 1;
            }
            w.dentry = dw_vfsmount_mountpoint(w.mnt);
            w.mnt = parent;
            w.root = dw_vfsmount_root(parent);
            w.dev = dw_vfsmount_dev(parent) as u64;
        } else {
            let p = dw_dentry_parent(d);
            if p == d || p.is_null() {
                return 1;
            }
            w.dentry = p;
        }
        w.level += 1;
        0
    }
}

/// Operations of `mask` that a watch on the object at (`dentry`, `mnt`) or
/// on one of its ancestor directories asks for; 0 when none. Walked with
/// `bpf_loop` so the verifier checks one level, not [`MAX_DEPTH`] (a
/// bounded loop in the object for kernels without it).
#[inline(always)]
pub fn watched_ops(dentry: Ptr, mnt: Ptr, mask: u32) -> u32 {
    // SAFETY: shim reads.
    let (root, dev) = unsafe { (dw_vfsmount_root(mnt), dw_vfsmount_dev(mnt) as u64) };
    walk_from(dentry, mnt, root, dev, mask, 0)
}

/// [`watched_ops`] for a dentry whose mount is unknown (an inode hook sees
/// only the inode): the walk stays in the file system of device `dev`.
/// With `level` 1 the dentry is taken as the directory of the object, for
/// a change to one of its entries.
#[inline(always)]
pub fn watched_ops_in(dentry: Ptr, dev: u64, mask: u32, level: u32) -> u32 {
    walk_from(
        dentry,
        core::ptr::null(),
        core::ptr::null(),
        dev,
        mask,
        level,
    )
}

#[inline(always)]
fn walk_from(dentry: Ptr, mnt: Ptr, root: Ptr, dev: u64, mask: u32, level: u32) -> u32 {
    // SAFETY: helper call with a context on our stack; the callback reads
    // through the shim.
    unsafe {
        let mut w = Walk {
            dentry,
            mnt,
            root,
            dev,
            mask,
            level,
            ops: 0,
            _pad: 0,
        };
        if crate::BPF_LOOP {
            bpf_loop(
                MAX_DEPTH,
                walk_step as *mut c_void,
                &mut w as *mut Walk as *mut c_void,
                0,
            );
        } else {
            for _ in 0..BOUNDED_DEPTH {
                if step(&mut w) != 0 {
                    break;
                }
            }
            forget_walk(&mut w);
        }
        w.ops
    }
}

/// Levels a bounded loop walks: every level is verified and the open probe
/// holds three walks, so a verifier before 5.17 gives up (a million
/// instructions) at [`MAX_DEPTH`]. Deeper objects are reported with the
/// tail of their path (`PATH_TRUNCATED`), and a watch more than this many
/// levels above an object does not see it, on those kernels only.
const BOUNDED_DEPTH: u32 = 12;

/// A bounded loop leaves one state per exit level on the stack, and a
/// verifier before 5.17 carries each into the rest of the program (the
/// open probe walks, then builds two paths: 40 x 40 x 40). Overwriting
/// the loop's state, in stores the compiler must keep, makes the exits
/// equal again so the verifier prunes them.
#[inline(always)]
fn forget_walk(w: &mut Walk) {
    // SAFETY: plain stores to a local.
    unsafe {
        core::ptr::write_volatile(&mut w.dentry, core::ptr::null());
        core::ptr::write_volatile(&mut w.mnt, core::ptr::null());
        core::ptr::write_volatile(&mut w.root, core::ptr::null());
        core::ptr::write_volatile(&mut w.dev, 0);
        core::ptr::write_volatile(&mut w.mask, 0);
        core::ptr::write_volatile(&mut w.level, 0);
    }
}

/// [`forget_walk`] for [`fill_file`].
#[inline(always)]
fn forget_fill(f: &mut Fill) {
    // SAFETY: plain stores to a local.
    unsafe {
        core::ptr::write_volatile(&mut f.dentry, core::ptr::null());
        core::ptr::write_volatile(&mut f.mnt, core::ptr::null());
        core::ptr::write_volatile(&mut f.root, core::ptr::null());
        core::ptr::write_volatile(&mut f.names, core::ptr::null_mut());
        core::ptr::write_volatile(&mut f.off, 0);
        core::ptr::write_volatile(&mut f.flags, 0);
    }
}

/// State of [`fill_file`]'s walk, shared with its `bpf_loop` callback.
#[repr(C)]
struct Fill {
    dentry: Ptr,
    mnt: Ptr,
    root: Ptr,
    /// `FileRecord::names` of the reservation being filled.
    names: *mut u8,
    off: u64,
    flags: u32,
    _pad: u32,
}

extern "C" fn fill_callback(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's `Fill`.
    unsafe { fill_step(&mut *(ctx as *mut Fill)) }
}

/// One level of the path: the leaf's name is written, or a mount point
/// crossed; 1 when the walk is over.
#[inline(always)]
fn fill_step(f: &mut Fill) -> i64 {
    // SAFETY: shim reads; `names` is a reservation's `names`, and the
    // offset is masked so every write stays inside it
    // (PATH_OFF_MASK + NAME_READ <= PATH_BUF).
    unsafe {
        let d = f.dentry;
        if d == f.root {
            let parent = dw_vfsmount_parent(f.mnt);
            if parent == f.mnt || parent.is_null() {
                f.flags &= !PATH_TRUNCATED;
                return 1;
            }
            f.dentry = dw_vfsmount_mountpoint(f.mnt);
            f.mnt = parent;
            f.root = dw_vfsmount_root(parent);
            return 0;
        }
        let p = dw_dentry_parent(d);
        if p == d || p.is_null() {
            f.flags &= !PATH_TRUNCATED;
            return 1;
        }
        if f.off > PATH_OFF_MASK as u64 {
            return 1;
        }
        // The mask again, on a value the compiler cannot know: it would
        // drop a mask the check above makes redundant, and a verifier
        // before 6.2 (Debian 12's 6.1) does not carry that check's bound
        // to the copy of `off` reloaded from the stack.
        let at = core::ptr::read_volatile(&f.off) as usize & PATH_OFF_MASK;
        let n = bpf_probe_read_kernel_str(
            f.names.add(at) as *mut _,
            NAME_READ as u32,
            dw_dentry_name(d) as *const _,
        );
        // `n == 0` is harmless and keeping 0 in the range lets the
        // verifier see every level's offset as the same [0, 767] range.
        if n < 0 {
            return 1;
        }
        f.off += n as u64;
        f.dentry = p;
        0
    }
}

/// Writes the path of (`dentry`, `mnt`) into `out` (components leaf first)
/// with the leaf's identity. Walked with `bpf_loop` where the kernel has
/// it: unrolled, Linux 6.1's verifier gives up on the 40 levels in the
/// open probe.
#[inline(always)]
pub fn fill_file(dentry: Ptr, mnt: Ptr, out: *mut FileRecord) {
    // SAFETY: `out` points into a ring-buffer reservation of a whole
    // `Record`; the walk writes only inside its `names`.
    unsafe {
        let inode = dw_dentry_inode(dentry);
        if inode.is_null() {
            (*out).dev = 0;
            (*out).ino = 0;
            (*out).mode = 0;
        } else {
            let key = key_of(inode);
            (*out).dev = key.dev;
            (*out).ino = key.ino;
            (*out).mode = dw_inode_mode(inode);
        }
        let mut f = Fill {
            dentry,
            mnt,
            root: dw_vfsmount_root(mnt),
            names: (*out).names.as_mut_ptr(),
            off: 0,
            flags: PATH_RESOLVED | PATH_TRUNCATED,
            _pad: 0,
        };
        if crate::BPF_LOOP {
            bpf_loop(
                MAX_DEPTH,
                fill_callback as *mut c_void,
                &mut f as *mut Fill as *mut c_void,
                0,
            );
        } else {
            for _ in 0..BOUNDED_DEPTH {
                if fill_step(&mut f) != 0 {
                    break;
                }
            }
        }
        let (flags, len) = (f.flags, f.off as u32);
        if !crate::BPF_LOOP {
            forget_fill(&mut f);
        }
        (*out).flags = flags;
        (*out).len = len;
        (*out).raw[0] = 0;
    }
}

/// An empty file slot.
#[inline(always)]
pub fn clear_file(out: *mut FileRecord) {
    // SAFETY: `out` points into a ring-buffer reservation.
    unsafe {
        (*out).raw[0] = 0;
        (*out).dev = 0;
        (*out).ino = 0;
        (*out).mode = 0;
        (*out).flags = 0;
        (*out).len = 0;
    }
}
