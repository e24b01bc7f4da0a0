//! dockwatch's kernel programs: syscall tracepoints that see every way a
//! watched file or socket is changed, decide in the kernel whether the object
//! is watched (by device and inode, walking up parent directories for
//! subtree watches), and send one record per matching syscall to userspace
//! through a ring buffer.
//!
//! Two hook sets give the same records; userspace attaches one. The
//! syscall tracepoints (`open`, `path`) see every call, failed ones too,
//! but put every syscall on the kernel's tracing slow path; the inode hooks
//! (`inode`) fire only where an inode changes and cost nothing elsewhere.
//!
//! Nothing here attaches to write(2) or read(2): with the syscall hooks a
//! file is written through a descriptor that was opened for write, and
//! that open is what is reported.
//!
//! Built twice: this object uses `bpf_loop` (Linux 5.17) so the verifier
//! checks one step of a walk or scan; `bounded.rs` builds the same programs
//! with bounded loops for older kernels, whose loader refuses the whole
//! program when it holds a callback reference it does not know.
#![no_std]
#![no_main]

/// Walks and scans call `bpf_loop` (false in the bounded object).
pub const BPF_LOOP: bool = true;

pub mod args;
mod inode;
mod kernel;
mod open;
mod path;
mod probe;
mod record;
mod scan;
mod walk;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects programs that could reach a panic.
    unsafe { core::hint::unreachable_unchecked() }
}
