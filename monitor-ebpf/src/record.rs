//! The ring buffer to userspace, the loss counters, and the process context
//! every record carries.

use aya_ebpf::helpers::generated::{bpf_get_current_task, bpf_probe_read_kernel_str};
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
};
use aya_ebpf::macros::map;
use aya_ebpf::maps::ring_buf::RingBufEntry;
use aya_ebpf::maps::{PerCpuArray, RingBuf};
use monitor_common::{Op, Record, CGROUP_NAME, STAT_COUNT, STAT_LOST, STAT_MATCHED};

use crate::kernel::*;
use crate::walk;

/// Records to userspace. Userspace sizes it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Per-CPU counters: [`STAT_LOST`] reservations that failed because the
/// ring buffer was full, [`STAT_MATCHED`] records attempted.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

#[inline(always)]
fn count(index: u32) {
    if let Some(slot) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// The current task (`struct task_struct *`).
#[inline(always)]
pub fn current_task() -> Ptr {
    // SAFETY: plain helper call.
    unsafe { bpf_get_current_task() as Ptr }
}

/// Reserves a record for `op` and fills the process context; `None` (and
/// the loss counted) when the ring buffer is full.
#[inline(always)]
pub fn begin(op: Op, ret: i64) -> Option<RingBufEntry<Record>> {
    count(STAT_MATCHED);
    let Some(mut entry) = EVENTS.reserve::<Record>(0) else {
        count(STAT_LOST);
        return None;
    };
    let rec = entry.as_mut_ptr();
    let task = current_task();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `rec` is the reservation, large enough for a `Record`; all
    // kernel reads go through probe reads.
    unsafe {
        (*rec).op = op as u32;
        (*rec).pid = (pid_tgid >> 32) as u32;
        (*rec).tid = pid_tgid as u32;
        (*rec).uid = uid_gid as u32;
        (*rec).gid = (uid_gid >> 32) as u32;
        (*rec).ppid = dw_task_ppid(task);
        (*rec).euid = dw_task_euid(task);
        (*rec).auid = dw_task_loginuid(task);
        (*rec).ret = ret;
        (*rec).boot_ns = bpf_ktime_get_boot_ns();
        (*rec).arg_mode = 0;
        (*rec).arg_uid = u32::MAX;
        (*rec).arg_gid = u32::MAX;
        (*rec)._pad = 0;
        (*rec).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        // The unified hierarchy's leaf when the task is placed there, else
        // the first v1 hierarchy's (Docker on hybrid hosts).
        let cgroup = (*rec).cgroup.as_mut_ptr();
        *cgroup = 0;
        let mut n = 0;
        let name = dw_task_dfl_cgroup_name(task);
        if !name.is_null() {
            n = bpf_probe_read_kernel_str(cgroup as *mut _, CGROUP_NAME as u32, name as *const _);
        }
        if n <= 1 {
            let name = dw_task_cgroup_name(task);
            if !name.is_null() {
                bpf_probe_read_kernel_str(cgroup as *mut _, CGROUP_NAME as u32, name as *const _);
            }
        }
        let exe = dw_task_exe_file(task);
        if exe.is_null() {
            walk::clear_file(&mut (*rec).exe);
        } else {
            walk::fill_file(dw_file_dentry(exe), dw_file_vfsmount(exe), &mut (*rec).exe);
        }
        walk::clear_file(&mut (*rec).target);
    }
    Some(entry)
}
