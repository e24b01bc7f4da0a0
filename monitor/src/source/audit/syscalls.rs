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

/// The name of syscall `nr` on `arch`, for the calls dockwatch maps.
pub fn name(arch: u64, nr: u64) -> Option<&'static str> {
    let table: &[(u16, &str)] = match arch {
        ARCH_X86_64 => X86_64,
        ARCH_AARCH64 => AARCH64,
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
    Chown { owner_arg: usize },
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
        "chown" | "fchown" | "lchown" => Kind::Chown { owner_arg: 1 },
        "fchownat" => Kind::Chown { owner_arg: 2 },
        "truncate" | "ftruncate" => Kind::Fixed(Action::Truncate),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tabled_name_has_a_kind() {
        for (_, name) in X86_64.iter().chain(AARCH64) {
            assert!(kind(name).is_some(), "{name} has no kind");
        }
    }

    #[test]
    fn tables_are_sorted_by_number_without_repeats() {
        for table in [X86_64, AARCH64] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn numbers_differ_by_arch() {
        assert_eq!(name(ARCH_X86_64, 257), Some("openat"));
        assert_eq!(name(ARCH_AARCH64, 56), Some("openat"));
        assert_eq!(name(0x4000_0003, 5), None);
    }
}
