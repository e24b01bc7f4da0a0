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
    // SAFETY: `ctx` is the caller's `Walk`; all reads go through the shim.
    unsafe {
        let w = &mut *(ctx as *mut Walk);
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
/// `bpf_loop` so the verifier checks one level, not [`MAX_DEPTH`].
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
        bpf_loop(
            MAX_DEPTH,
            walk_step as *mut c_void,
            &mut w as *mut Walk as *mut c_void,
            0,
        );
        w.ops
    }
}

/// Writes the path of (`dentry`, `mnt`) into `out` (components leaf first)
/// with the leaf's identity.
#[inline(always)]
pub fn fill_file(dentry: Ptr, mnt: Ptr, out: *mut FileRecord) {
    // SAFETY: `out` points into a ring-buffer reservation of a whole
    // `Record`; the name offset is masked so every write stays inside
    // `names` (PATH_OFF_MASK + NAME_READ <= PATH_BUF).
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
        let names = (*out).names.as_mut_ptr();
        let mut off = 0usize;
        let mut flags = PATH_RESOLVED | PATH_TRUNCATED;
        let mut d = dentry;
        let mut m = mnt;
        let mut root = dw_vfsmount_root(m);
        for _ in 0..MAX_DEPTH {
            if d == root {
                let parent = dw_vfsmount_parent(m);
                if parent == m || parent.is_null() {
                    flags &= !PATH_TRUNCATED;
                    break;
                }
                d = dw_vfsmount_mountpoint(m);
                m = parent;
                root = dw_vfsmount_root(m);
                continue;
            }
            let p = dw_dentry_parent(d);
            if p == d || p.is_null() {
                flags &= !PATH_TRUNCATED;
                break;
            }
            if off > PATH_OFF_MASK {
                break;
            }
            let n = bpf_probe_read_kernel_str(
                names.add(off & PATH_OFF_MASK) as *mut _,
                NAME_READ as u32,
                dw_dentry_name(d) as *const _,
            );
            // `n == 0` is harmless and keeping 0 in the range lets the
            // verifier see every iteration's offset as the same [0, 767]
            // range and prune, instead of exploring each path separately.
            if n < 0 {
                break;
            }
            off += n as usize;
            d = p;
        }
        (*out).flags = flags;
        (*out).len = off as u32;
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
