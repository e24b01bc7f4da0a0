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
#![no_std]
#![no_main]

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

/// Direct reads of a syscall tracepoint's arguments. The layout
/// (`struct syscall_trace_enter`: 8-byte common header, the syscall number,
/// then one 8-byte slot per argument) is the tracepoints' stable ABI.
pub mod args {
    use aya_ebpf::programs::TracePointContext;
    use aya_ebpf::EbpfContext;

    /// Argument `n` (0-based) of a `sys_enter_*` tracepoint.
    #[inline(always)]
    pub fn arg(ctx: &TracePointContext, n: usize) -> u64 {
        // SAFETY: tracepoint contexts are readable up to their format size,
        // which holds every declared argument.
        unsafe { *(ctx.as_ptr() as *const u64).add(2 + n) }
    }

    /// The return value of a `sys_exit_*` tracepoint.
    #[inline(always)]
    pub fn ret(ctx: &TracePointContext) -> i64 {
        // SAFETY: as above; `ret` is at offset 16.
        unsafe { *(ctx.as_ptr() as *const i64).add(2) }
    }
}
