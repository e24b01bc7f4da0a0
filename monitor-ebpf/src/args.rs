//! Direct reads of a syscall tracepoint's arguments. The layout
//! (`struct syscall_trace_enter`: 8-byte common header, the syscall number,
//! then one 8-byte slot per argument) is the tracepoints' stable ABI.

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
