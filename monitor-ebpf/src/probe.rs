//! Empty programs userspace loads at start to learn whether the kernel
//! allows BPF LSM and fentry programs (lockdown and kernel configuration
//! can forbid them); they do nothing and are detached at once.

use aya_ebpf::macros::{fentry, lsm};
use aya_ebpf::programs::{FEntryContext, LsmContext};

#[lsm(hook = "path_truncate")]
pub fn dw_probe_lsm(_ctx: LsmContext) -> i32 {
    0
}

#[fentry(function = "vfs_truncate")]
pub fn dw_probe_fentry(_ctx: FEntryContext) -> i32 {
    0
}
