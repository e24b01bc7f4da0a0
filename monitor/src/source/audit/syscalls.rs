//! System call numbers to names, per architecture, and names to what the
//! call does to a file.
//!
//! RAW logs and netlink give only `arch=` and `syscall=` numbers; ENRICHED
//! logs add the name, which we use for architectures the tables below do not
//! cover. Only calls that change files, sockets or programs are listed: the
//! rest never become an [`Action`].
//!
//! [`Action`]: crate::event::Action

use crate::event::Action;

/// `AUDIT_ARCH_X86_64`.
pub const ARCH_X86_64: u64 = 0xc000_003e;
/// `AUDIT_ARCH_AARCH64`.
pub const ARCH_AARCH64: u64 = 0xc000_00b7;
/// `AUDIT_ARCH_I386`: 32-bit tasks on x86_64 too (`int 0x80`, `-m32`).
pub const ARCH_I386: u64 = 0x4000_0003;
/// `AUDIT_ARCH_PPC64LE`.
pub const ARCH_PPC64LE: u64 = 0xc000_0015;
/// `AUDIT_ARCH_PPC64` (big-endian; same numbers as ppc64le).
pub const ARCH_PPC64: u64 = 0x8000_0015;
/// `AUDIT_ARCH_S390X`.
pub const ARCH_S390X: u64 = 0x8000_0016;

/// The name of syscall `nr` on `arch`, for the calls dockwatch maps.
pub fn name(arch: u64, nr: u64) -> Option<&'static str> {
    let table: &[(u16, &str)] = match arch {
        ARCH_X86_64 => X86_64,
        ARCH_AARCH64 => AARCH64,
        ARCH_I386 => I386,
        ARCH_PPC64LE | ARCH_PPC64 => PPC64,
        ARCH_S390X => S390X,
        _ => return None,
    };
    // The tables are sorted by number (a test checks): a binary search, not
    // a walk past forty entries for every event's openat.
    table
        .binary_search_by_key(&nr, |&(n, _)| u64::from(n))
        .ok()
        .map(|i| table[i].1)
}

/// What a syscall does, before its arguments are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// open family: a write only when the flags say so. `flags_arg` is the
    /// argument index of the flags (`None`: always writes, like creat, or
    /// flags live in an OPENAT2 record).
    Open { flags_arg: Option<usize> },
    /// chmod family; `mode_arg` holds the new mode.
    Chmod { mode_arg: usize },
    /// chown family; the new uid and gid are at `owner_arg` and the next.
    /// `id16`: the legacy 16-bit calls of i386, where 0xffff, not
    /// 0xffffffff, means "unchanged".
    Chown { owner_arg: usize, id16: bool },
    /// i386's socketcall multiplexer: a connect when `a0` is `SYS_CONNECT`.
    SocketCall,
    /// Everything else maps to one action whatever the arguments.
    Fixed(Action),
}

/// What syscall `name` does, for the calls dockwatch maps.
pub fn kind(name: &str) -> Option<Kind> {
    Some(match name {
        "open" => Kind::Open { flags_arg: Some(1) },
        "openat" => Kind::Open { flags_arg: Some(2) },
        "openat2" | "creat" | "open_by_handle_at" => Kind::Open { flags_arg: None },
        "chmod" | "fchmod" => Kind::Chmod { mode_arg: 1 },
        "fchmodat" | "fchmodat2" => Kind::Chmod { mode_arg: 2 },
        "chown" | "fchown" | "lchown" | "chown32" | "fchown32" | "lchown32" => Kind::Chown {
            owner_arg: 1,
            id16: false,
        },
        "chown16" | "fchown16" | "lchown16" => Kind::Chown {
            owner_arg: 1,
            id16: true,
        },
        "fchownat" => Kind::Chown {
            owner_arg: 2,
            id16: false,
        },
        "socketcall" => Kind::SocketCall,
        "truncate" | "ftruncate" | "truncate64" | "ftruncate64" => Kind::Fixed(Action::Truncate),
        "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" => Kind::Fixed(Action::Write),
        "setxattr" | "lsetxattr" | "fsetxattr" | "setxattrat" | "removexattr" | "lremovexattr"
        | "fremovexattr" | "removexattrat" => Kind::Fixed(Action::Setxattr),
        "rename" | "renameat" | "renameat2" => Kind::Fixed(Action::Rename),
        "unlink" | "unlinkat" | "rmdir" => Kind::Fixed(Action::Unlink),
        "mkdir" | "mkdirat" => Kind::Fixed(Action::Mkdir),
        "link" | "linkat" => Kind::Fixed(Action::Link),
        "symlink" | "symlinkat" => Kind::Fixed(Action::Symlink),
        "mknod" | "mknodat" => Kind::Fixed(Action::Mknod),
        "connect" => Kind::Fixed(Action::Connect),
        "execve" | "execveat" => Kind::Fixed(Action::Exec),
        _ => return None,
    })
}

/// `O_WRONLY | O_RDWR | O_CREAT | O_TRUNC`: the flags that make an open a
/// write (same values on x86_64 and the generic table).
pub const OPEN_WRITE_FLAGS: u64 = 0o1 | 0o2 | 0o100 | 0o1000;

const X86_64: &[(u16, &str)] = &[
    (1, "write"),
    (2, "open"),
    (18, "pwrite64"),
    (20, "writev"),
    (42, "connect"),
    (59, "execve"),
    (76, "truncate"),
    (77, "ftruncate"),
    (82, "rename"),
    (83, "mkdir"),
    (84, "rmdir"),
    (85, "creat"),
    (86, "link"),
    (87, "unlink"),
    (88, "symlink"),
    (90, "chmod"),
    (91, "fchmod"),
    (92, "chown"),
    (93, "fchown"),
    (94, "lchown"),
    (133, "mknod"),
    (188, "setxattr"),
    (189, "lsetxattr"),
    (190, "fsetxattr"),
    (197, "removexattr"),
    (198, "lremovexattr"),
    (199, "fremovexattr"),
    (257, "openat"),
    (258, "mkdirat"),
    (259, "mknodat"),
    (260, "fchownat"),
    (263, "unlinkat"),
    (264, "renameat"),
    (265, "linkat"),
    (266, "symlinkat"),
    (268, "fchmodat"),
    (296, "pwritev"),
    (304, "open_by_handle_at"),
    (316, "renameat2"),
    (322, "execveat"),
    (328, "pwritev2"),
    (437, "openat2"),
    (452, "fchmodat2"),
    (463, "setxattrat"),
    (466, "removexattrat"),
];

const AARCH64: &[(u16, &str)] = &[
    (5, "setxattr"),
    (6, "lsetxattr"),
    (7, "fsetxattr"),
    (14, "removexattr"),
    (15, "lremovexattr"),
    (16, "fremovexattr"),
    (33, "mknodat"),
    (34, "mkdirat"),
    (35, "unlinkat"),
    (36, "symlinkat"),
    (37, "linkat"),
    (38, "renameat"),
    (45, "truncate"),
    (46, "ftruncate"),
    (52, "fchmod"),
    (53, "fchmodat"),
    (54, "fchownat"),
    (55, "fchown"),
    (56, "openat"),
    (64, "write"),
    (66, "writev"),
    (68, "pwrite64"),
    (70, "pwritev"),
    (203, "connect"),
    (221, "execve"),
    (265, "open_by_handle_at"),
    (276, "renameat2"),
    (281, "execveat"),
    (287, "pwritev2"),
    (437, "openat2"),
    (452, "fchmodat2"),
    (463, "setxattrat"),
    (466, "removexattrat"),
];

/// From linux arch/x86/entry/syscalls/syscall_32.tbl. The 16-bit id calls
/// (`sys_chown16` …) are named `*16` here so their "unchanged" id is read
/// right; auditd names them `chown`, `lchown`, `fchown`.
const I386: &[(u16, &str)] = &[
    (4, "write"),
    (5, "open"),
    (8, "creat"),
    (9, "link"),
    (10, "unlink"),
    (11, "execve"),
    (14, "mknod"),
    (15, "chmod"),
    (16, "lchown16"),
    (38, "rename"),
    (39, "mkdir"),
    (40, "rmdir"),
    (83, "symlink"),
    (92, "truncate"),
    (93, "ftruncate"),
    (94, "fchmod"),
    (95, "fchown16"),
    (102, "socketcall"),
    (146, "writev"),
    (181, "pwrite64"),
    (182, "chown16"),
    (193, "truncate64"),
    (194, "ftruncate64"),
    (198, "lchown32"),
    (207, "fchown32"),
    (212, "chown32"),
    (226, "setxattr"),
    (227, "lsetxattr"),
    (228, "fsetxattr"),
    (235, "removexattr"),
    (236, "lremovexattr"),
    (237, "fremovexattr"),
    (295, "openat"),
    (296, "mkdirat"),
    (297, "mknodat"),
    (298, "fchownat"),
    (301, "unlinkat"),
    (302, "renameat"),
    (303, "linkat"),
    (304, "symlinkat"),
    (306, "fchmodat"),
    (334, "pwritev"),
    (342, "open_by_handle_at"),
    (353, "renameat2"),
    (358, "execveat"),
    (362, "connect"),
    (379, "pwritev2"),
];

/// From linux arch/powerpc/kernel/syscalls/syscall.tbl, the `common` and
/// `64` rows (ppc64 and ppc64le share them).
const PPC64: &[(u16, &str)] = &[
    (4, "write"),
    (5, "open"),
    (8, "creat"),
    (9, "link"),
    (10, "unlink"),
    (11, "execve"),
    (14, "mknod"),
    (15, "chmod"),
    (16, "lchown"),
    (38, "rename"),
    (39, "mkdir"),
    (40, "rmdir"),
    (83, "symlink"),
    (92, "truncate"),
    (93, "ftruncate"),
    (94, "fchmod"),
    (95, "fchown"),
    (146, "writev"),
    (180, "pwrite64"),
    (181, "chown"),
    (209, "setxattr"),
    (210, "lsetxattr"),
    (211, "fsetxattr"),
    (218, "removexattr"),
    (219, "lremovexattr"),
    (220, "fremovexattr"),
    (286, "openat"),
    (287, "mkdirat"),
    (288, "mknodat"),
    (289, "fchownat"),
    (292, "unlinkat"),
    (293, "renameat"),
    (294, "linkat"),
    (295, "symlinkat"),
    (297, "fchmodat"),
    (321, "pwritev"),
    (328, "connect"),
    (346, "open_by_handle_at"),
    (357, "renameat2"),
    (362, "execveat"),
    (381, "pwritev2"),
    (437, "openat2"),
];

/// From linux arch/s390/kernel/syscalls/syscall.tbl, the `common` and `64`
/// rows.
const S390X: &[(u16, &str)] = &[
    (4, "write"),
    (5, "open"),
    (8, "creat"),
    (9, "link"),
    (10, "unlink"),
    (11, "execve"),
    (14, "mknod"),
    (15, "chmod"),
    (38, "rename"),
    (39, "mkdir"),
    (40, "rmdir"),
    (83, "symlink"),
    (92, "truncate"),
    (93, "ftruncate"),
    (94, "fchmod"),
    (146, "writev"),
    (181, "pwrite64"),
    (198, "lchown"),
    (207, "fchown"),
    (212, "chown"),
    (224, "setxattr"),
    (225, "lsetxattr"),
    (226, "fsetxattr"),
    (233, "removexattr"),
    (234, "lremovexattr"),
    (235, "fremovexattr"),
    (288, "openat"),
    (289, "mkdirat"),
    (290, "mknodat"),
    (291, "fchownat"),
    (294, "unlinkat"),
    (295, "renameat"),
    (296, "linkat"),
    (297, "symlinkat"),
    (299, "fchmodat"),
    (329, "pwritev"),
    (336, "open_by_handle_at"),
    (347, "renameat2"),
    (354, "execveat"),
    (362, "connect"),
    (377, "pwritev2"),
    (437, "openat2"),
    (452, "fchmodat2"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tabled_name_has_a_kind() {
        for (_, name) in [X86_64, AARCH64, I386, PPC64, S390X].into_iter().flatten() {
            assert!(kind(name).is_some(), "{name} has no kind");
        }
    }

    #[test]
    fn tables_are_sorted_by_number_without_repeats() {
        for table in [X86_64, AARCH64, I386, PPC64, S390X] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn numbers_differ_by_arch() {
        assert_eq!(name(ARCH_X86_64, 257), Some("openat"));
        assert_eq!(name(ARCH_AARCH64, 56), Some("openat"));
        assert_eq!(name(ARCH_I386, 5), Some("open"));
        assert_eq!(name(ARCH_PPC64LE, 286), Some("openat"));
        assert_eq!(name(ARCH_PPC64, 286), Some("openat"));
        assert_eq!(name(ARCH_S390X, 288), Some("openat"));
        assert_eq!(name(0x4000_0028, 5), None, "arm is not tabled yet");
    }
}
