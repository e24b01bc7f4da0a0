//! The system call table the inode hooks read a change's call through:
//! for each call that can change a watched inode, what it does and which
//! of its arguments name its objects. Numbers are per architecture; the
//! kernel side knows none of them.

use monitor_common::{CallShape, Op, ARG_NONE, OP_IGNORE};

/// `AT_REMOVEDIR`: unlinkat removes a directory.
const AT_REMOVEDIR: u64 = 0x200;

/// Builder of one [`CallShape`], argument roles by index.
#[derive(Clone, Copy)]
struct Shape(CallShape);

impl Shape {
    fn op(op: Op) -> Shape {
        Shape(CallShape::new(op as u32))
    }
    fn ignored() -> Shape {
        Shape(CallShape::new(OP_IGNORE))
    }
    fn fd(mut self, n: u8) -> Shape {
        self.0.fd = n;
        self
    }
    /// A path argument relative to the dirfd argument `dirfd` (or the cwd
    /// for [`ARG_NONE`]).
    fn path(mut self, n: u8, dirfd: u8) -> Shape {
        self.0.path1 = n;
        self.0.dirfd1 = dirfd;
        self
    }
    fn path2(mut self, n: u8, dirfd: u8) -> Shape {
        self.0.path2 = n;
        self.0.dirfd2 = dirfd;
        self
    }
    fn mode(mut self, n: u8) -> Shape {
        self.0.mode = n;
        self
    }
    fn owner(mut self, uid: u8, gid: u8) -> Shape {
        self.0.uid = uid;
        self.0.gid = gid;
        self
    }
    /// The first path starts `skip` bytes into what argument `n` points to.
    fn path_at(mut self, n: u8, skip: u8) -> Shape {
        self.0.path1 = n;
        self.0.path1_skip = skip;
        self
    }
    fn or_when(mut self, arg: u8, mask: u64, op: Op) -> Shape {
        self.0.alt_arg = arg;
        self.0.alt_mask = mask;
        self.0.alt_op = op as u32;
        self
    }
}

const CWD: u8 = ARG_NONE;

/// (number, shape) for the running architecture; empty where the inode
/// hooks cannot read a call's registers (the loader then prefers the
/// syscall hooks).
pub fn table() -> Vec<(u32, CallShape)> {
    let named: Vec<(u32, Shape)> = if cfg!(target_arch = "x86_64") {
        x86_64()
    } else {
        Vec::new()
    };
    named.into_iter().map(|(nr, s)| (nr, s.0)).collect()
}

/// Numbers from arch/x86/entry/syscalls/syscall_64.tbl.
fn x86_64() -> Vec<(u32, Shape)> {
    use Op::*;
    let write = Shape::op(Write).fd(0);
    vec![
        (1, write),                                         // write
        (18, write),                                        // pwrite64
        (20, write),                                        // writev
        (296, write),                                       // pwritev
        (328, write),                                       // pwritev2
        (285, write),                                       // fallocate
        (40, Shape::op(Write).fd(0)),                       // sendfile(out_fd, ...)
        (275, Shape::op(Write).fd(2)),                      // splice(.., fd_out, ..)
        (326, Shape::op(Write).fd(2)),                      // copy_file_range
        (2, Shape::op(OpenWrite).path(0, CWD)),             // open
        (85, Shape::op(OpenWrite).path(0, CWD)),            // creat
        (257, Shape::op(OpenWrite).path(1, 0)),             // openat
        (437, Shape::op(OpenWrite).path(1, 0)),             // openat2
        (76, Shape::op(Truncate).path(0, CWD)),             // truncate
        (77, Shape::op(Truncate).fd(0)),                    // ftruncate
        (90, Shape::op(Chmod).path(0, CWD).mode(1)),        // chmod
        (91, Shape::op(Chmod).fd(0).mode(1)),               // fchmod
        (268, Shape::op(Chmod).path(1, 0).mode(2)),         // fchmodat
        (452, Shape::op(Chmod).path(1, 0).mode(2)),         // fchmodat2
        (92, Shape::op(Chown).path(0, CWD).owner(1, 2)),    // chown
        (94, Shape::op(Chown).path(0, CWD).owner(1, 2)),    // lchown
        (93, Shape::op(Chown).fd(0).owner(1, 2)),           // fchown
        (260, Shape::op(Chown).path(1, 0).owner(2, 3)),     // fchownat
        (188, Shape::op(Setxattr).path(0, CWD)),            // setxattr
        (189, Shape::op(Setxattr).path(0, CWD)),            // lsetxattr
        (197, Shape::op(Setxattr).path(0, CWD)),            // removexattr
        (198, Shape::op(Setxattr).path(0, CWD)),            // lremovexattr
        (190, Shape::op(Setxattr).fd(0)),                   // fsetxattr
        (199, Shape::op(Setxattr).fd(0)),                   // fremovexattr
        (463, Shape::op(Setxattr).path(1, 0)),              // setxattrat
        (466, Shape::op(Setxattr).path(1, 0)),              // removexattrat
        (82, Shape::op(Rename).path(0, CWD).path2(1, CWD)), // rename
        (264, Shape::op(Rename).path(1, 0).path2(3, 2)),    // renameat
        (316, Shape::op(Rename).path(1, 0).path2(3, 2)),    // renameat2
        (86, Shape::op(Link).path(0, CWD).path2(1, CWD)),   // link
        (265, Shape::op(Link).path(1, 0).path2(3, 2)),      // linkat
        // symlink(target, linkpath): the target is only the link's
        // content, kept beside the link's own path as the syscall hooks do.
        (88, Shape::op(Symlink).path(0, CWD).path2(1, CWD)), // symlink
        (266, Shape::op(Symlink).path(0, CWD).path2(2, 1)),  // symlinkat
        (87, Shape::op(Unlink).path(0, CWD)),                // unlink
        (
            263,
            Shape::op(Unlink).path(1, 0).or_when(2, AT_REMOVEDIR, Rmdir),
        ), // unlinkat
        (84, Shape::op(Rmdir).path(0, CWD)),                 // rmdir
        (83, Shape::op(Mkdir).path(0, CWD).mode(1)),         // mkdir
        (258, Shape::op(Mkdir).path(1, 0).mode(2)),          // mkdirat
        (133, Shape::op(Mknod).path(0, CWD).mode(1)),        // mknod
        (259, Shape::op(Mknod).path(1, 0).mode(2)),          // mknodat
        // A unix socket bound to a path: a new name in its directory.
        (49, Shape::op(Mknod).path_at(1, 2)), // bind(fd, sockaddr_un, len)
        // Timestamps only: neither content nor attributes a rule watches.
        (132, Shape::ignored()), // utime
        (235, Shape::ignored()), // utimes
        (261, Shape::ignored()), // futimesat
        (280, Shape::ignored()), // utimensat
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_arguments_in_range() {
        let table = table();
        let mut numbers: Vec<u32> = table.iter().map(|(nr, _)| *nr).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), table.len());
        for (nr, s) in &table {
            for n in [
                s.fd, s.path1, s.dirfd1, s.path2, s.dirfd2, s.mode, s.uid, s.gid,
            ] {
                assert!(n < 6 || n == ARG_NONE, "call {nr}: argument {n}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn unlinkat_of_a_directory_is_rmdir() {
        let table = table();
        let (_, unlinkat) = table.iter().find(|(nr, _)| *nr == 263).unwrap();
        assert_eq!(unlinkat.op, Op::Unlink as u32);
        assert_eq!(unlinkat.alt_op, Op::Rmdir as u32);
        assert_eq!(unlinkat.alt_mask, AT_REMOVEDIR);
    }
}
