//! Types shared by the kernel programs (`monitor-ebpf`) and userspace
//! (`monitor`): the raw record layout written to the ring buffer, operation
//! codes and map key types. Everything here is `#[repr(C)]` and `no_std`
//! because both sides must agree on it byte for byte.
#![no_std]

/// Bytes of one path buffer in a record. The kernel writes the path's
/// components leaf first, each followed by a NUL (`daemon.json\0docker\0etc\0`),
/// because a BPF program walks dentries from the leaf up and cannot prepend;
/// userspace reverses them.
pub const PATH_BUF: usize = 768;
/// Offsets into a path buffer are masked with this so the verifier can
/// prove that a name of up to [`NAME_READ`] bytes still fits.
pub const PATH_OFF_MASK: usize = 511;
/// Longest single name read from a dentry (NAME_MAX + NUL).
pub const NAME_READ: usize = 256;
/// Dentry levels walked when filtering and when building a path.
pub const MAX_DEPTH: u32 = 40;
/// Bytes kept of the cgroup's leaf name (`docker-<64 hex>.scope`).
pub const CGROUP_NAME: usize = 128;
/// `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;
/// Bytes of a raw path argument copied from the caller (unix socket paths,
/// paths of objects that do not exist yet).
pub const ARG_PATH: usize = 256;

/// `WatchValue::flags`: the watched object is a directory and everything
/// below it matches too.
pub const WATCH_SUBTREE: u32 = 1;
/// `WatchValue::flags`: objects directly in this directory match (a watched
/// path that does not exist yet will appear here; userspace then narrows).
pub const WATCH_CHILDREN: u32 = 2;

/// Key of the kernel's watch set: an inode on a device, as the kernel names
/// them (`super_block.s_dev`, i.e. `MKDEV(major, minor)`, and `i_ino`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct WatchKey {
    pub dev: u64,
    pub ino: u64,
}

/// What a watched inode asks for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WatchValue {
    /// Operations of interest, as `1 << Op` bits.
    pub ops: u32,
    /// [`WATCH_SUBTREE`] and friends.
    pub flags: u32,
}

/// Kernel operation codes: what a record reports. Userspace maps them to
/// `event.action` names; the kernel uses `1 << op` bits to filter.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    OpenWrite = 0,
    Create = 1,
    Truncate = 2,
    Chmod = 3,
    Chown = 4,
    Setxattr = 5,
    Rename = 6,
    Unlink = 7,
    Link = 8,
    Symlink = 9,
    Mkdir = 10,
    Mknod = 11,
    Connect = 12,
    Rmdir = 13,
    /// Data written through a descriptor (write, pwrite, ...), or any other
    /// change to a watched inode whose call the inode hooks cannot name.
    Write = 14,
}

impl Op {
    pub const ALL: [Op; 15] = [
        Op::OpenWrite,
        Op::Create,
        Op::Truncate,
        Op::Chmod,
        Op::Chown,
        Op::Setxattr,
        Op::Rename,
        Op::Unlink,
        Op::Link,
        Op::Symlink,
        Op::Mkdir,
        Op::Mknod,
        Op::Connect,
        Op::Rmdir,
        Op::Write,
    ];

    pub const fn bit(self) -> u32 {
        1 << (self as u32)
    }

    pub fn from_u32(v: u32) -> Option<Op> {
        Op::ALL.get(v as usize).copied()
    }
}

/// `FileRecord::flags`: the component list stopped at [`MAX_DEPTH`] or
/// the buffer filled; the path is only the tail.
pub const PATH_TRUNCATED: u32 = 1;
/// `FileRecord::flags`: the object was found through the kernel's dentries
/// (dev/ino/mode are valid); otherwise only `raw` holds the caller's string.
pub const PATH_RESOLVED: u32 = 2;

/// `FileRecord::flags`: `raw` holds the path as the caller passed it.
pub const PATH_RAW: u32 = 4;
/// `FileRecord::flags`: `raw` is relative and `names` is the directory it
/// starts from (cwd or dirfd).
pub const PATH_BASE: u32 = 8;
/// `FileRecord::flags`: `names` runs from the root of the file system with
/// device `dev`, not of the mount namespace (an inode hook knows the inode,
/// not the mount it was reached through); userspace puts the file
/// system's mount point in front.
pub const PATH_FS_ROOT: u32 = 16;

/// One file system object in a record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileRecord {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub flags: u32,
    /// Bytes of `names` in use.
    pub len: u32,
    pub _pad: u32,
    /// Components leaf first, NUL-separated (see [`PATH_BUF`]).
    pub names: [u8; PATH_BUF],
    /// The caller's string, NUL-terminated ([`PATH_RAW`]).
    pub raw: [u8; ARG_PATH],
}

/// One record in the ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Record {
    /// [`Op`] as u32.
    pub op: u32,
    /// Pid of the thread group (what users call the pid).
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    /// Login uid; `u32::MAX` when unset or the kernel has no audit.
    pub auid: u32,
    /// Syscall return value (`-errno` on failure).
    pub ret: i64,
    /// `bpf_ktime_get_boot_ns` at the event.
    pub boot_ns: u64,
    /// New mode (chmod), new uid/gid (chown, `u32::MAX` = unchanged).
    pub arg_mode: u32,
    pub arg_uid: u32,
    pub arg_gid: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
    pub cgroup: [u8; CGROUP_NAME],
    pub file: FileRecord,
    /// Rename/link target, symlink's new name.
    pub target: FileRecord,
    pub exe: FileRecord,
}

/// `CallShape` argument index meaning "none" (for a dirfd: `AT_FDCWD`).
pub const ARG_NONE: u8 = 0xff;
/// `CallShape::op` of a call whose inode changes are not reported
/// (utimensat: a timestamp, not content or attributes).
pub const OP_IGNORE: u32 = u32::MAX;

/// How the inode hooks read one system call from the caller's registers:
/// what it does and which of its six arguments name its objects. The
/// kernel side is arch-neutral; userspace fills the `CALLS` map, keyed by
/// syscall number, from the running architecture's table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallShape {
    /// [`Op`] as u32, or [`OP_IGNORE`].
    pub op: u32,
    /// The op instead when `args[alt_arg] & alt_mask != 0` (unlinkat's
    /// `AT_REMOVEDIR`).
    pub alt_op: u32,
    pub alt_mask: u64,
    pub alt_arg: u8,
    /// The descriptor the call acts on.
    pub fd: u8,
    /// First path and the directory descriptor it is relative to.
    pub path1: u8,
    pub dirfd1: u8,
    /// Second path (rename and link target, symlink's new name).
    pub path2: u8,
    pub dirfd2: u8,
    /// New mode, owner and group (chmod, chown, mkdir, mknod).
    pub mode: u8,
    pub uid: u8,
    pub gid: u8,
    /// Bytes before the first path in the memory `path1` points to (2 for
    /// bind's `sockaddr_un`: the path follows the family).
    pub path1_skip: u8,
    pub _pad: [u8; 6],
}

impl CallShape {
    /// A call of `op` with no arguments described yet.
    pub const fn new(op: u32) -> CallShape {
        CallShape {
            op,
            alt_op: op,
            alt_mask: 0,
            alt_arg: ARG_NONE,
            fd: ARG_NONE,
            path1: ARG_NONE,
            dirfd1: ARG_NONE,
            path2: ARG_NONE,
            dirfd2: ARG_NONE,
            mode: ARG_NONE,
            uid: ARG_NONE,
            gid: ARG_NONE,
            path1_skip: 0,
            _pad: [0; 6],
        }
    }
}

/// Index of the per-CPU counters in the `STATS` map.
pub const STAT_LOST: u32 = 0;
/// Matched events (records reserved or attempted).
pub const STAT_MATCHED: u32 = 1;
pub const STAT_COUNT: u32 = 2;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain old data, `#[repr(C)]`, no padding holes that matter.
    unsafe impl aya::Pod for super::WatchKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::WatchValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CallShape {}
}
