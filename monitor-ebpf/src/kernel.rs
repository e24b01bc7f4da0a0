//! The C shim's accessors (shim/shim.c): every read of a kernel structure
//! goes through them so that it carries a CO-RE relocation instead of an
//! offset baked for one kernel build.

use core::ffi::c_void;

pub type Ptr = *const c_void;

extern "C" {
    pub fn dw_task_file(task: Ptr, fd: u32) -> Ptr;
    pub fn dw_file_dentry(file: Ptr) -> Ptr;
    pub fn dw_file_vfsmount(file: Ptr) -> Ptr;
    pub fn dw_file_fmode(file: Ptr) -> u32;
    pub fn dw_dentry_parent(dentry: Ptr) -> Ptr;
    pub fn dw_dentry_name(dentry: Ptr) -> *const u8;
    pub fn dw_dentry_inode(dentry: Ptr) -> Ptr;
    pub fn dw_inode_ino(inode: Ptr) -> u64;
    pub fn dw_inode_mode(inode: Ptr) -> u32;
    pub fn dw_inode_dev(inode: Ptr) -> u32;
    pub fn dw_vfsmount_root(mnt: Ptr) -> Ptr;
    pub fn dw_vfsmount_dev(mnt: Ptr) -> u32;
    pub fn dw_vfsmount_parent(mnt: Ptr) -> Ptr;
    pub fn dw_vfsmount_mountpoint(mnt: Ptr) -> Ptr;
    pub fn dw_task_ppid(task: Ptr) -> u32;
    pub fn dw_task_euid(task: Ptr) -> u32;
    pub fn dw_task_loginuid(task: Ptr) -> u32;
    pub fn dw_task_exe_file(task: Ptr) -> Ptr;
    pub fn dw_task_cwd_dentry(task: Ptr) -> Ptr;
    pub fn dw_task_cwd_vfsmount(task: Ptr) -> Ptr;
    pub fn dw_task_cgroup_name(task: Ptr) -> *const u8;
    pub fn dw_task_dfl_cgroup_name(task: Ptr) -> *const u8;
    pub fn dw_inode_alias(inode: Ptr) -> Ptr;
    pub fn dw_inode_sb(inode: Ptr) -> Ptr;
    pub fn dw_unix_listener_path(sk: Ptr, mnt: *mut Ptr) -> Ptr;
    pub fn dw_current_syscall(args: *mut u64) -> i64;
    pub fn dw_task_root_vfsmount(task: Ptr) -> Ptr;
    pub fn dw_vfsmount_sb(mnt: Ptr) -> Ptr;
}

/// `S_IFMT` and `S_IFDIR`.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;

/// `FMODE_WRITE`.
pub const FMODE_WRITE: u32 = 0x2;
/// `FMODE_CREATED`: this open created the file.
pub const FMODE_CREATED: u32 = 0x10_0000;
