//! Byte scans over a path string copied from the caller, run with
//! `bpf_loop` so the verifier checks one step instead of 256; in the
//! object for kernels without `bpf_loop` (before 5.17), a bounded loop.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_loop;
use monitor_common::ARG_PATH;

/// One scan's state; `take` sees each byte of the string in turn, its NUL
/// last, and returns `false` to stop.
pub trait ByteScan {
    fn take(&mut self, index: usize, byte: u8) -> bool;
}

#[repr(C)]
struct Scanning<S> {
    buf: *const u8,
    state: S,
}

extern "C" fn step<S: ByteScan>(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is `scan`'s `Scanning`; the index is masked into the
    // ARG_PATH-byte buffer.
    unsafe {
        let s = &mut *(ctx as *mut Scanning<S>);
        let i = (index as usize) & (ARG_PATH - 1);
        if s.state.take(i, *s.buf.add(i)) {
            0
        } else {
            1
        }
    }
}

/// Runs `state` over `buf` (at most [`ARG_PATH`] bytes) and returns it.
#[inline(always)]
pub fn scan<S: ByteScan>(buf: &[u8; ARG_PATH], state: S) -> S {
    if !crate::BPF_LOOP {
        let mut state = state;
        for (i, &c) in buf.iter().enumerate() {
            if !state.take(i, c) {
                break;
            }
        }
        return state;
    }
    let mut s = Scanning {
        buf: buf.as_ptr(),
        state,
    };
    // SAFETY: helper call with a callback and a context on our stack.
    unsafe {
        bpf_loop(
            ARG_PATH as u32,
            step::<S> as *mut c_void,
            &mut s as *mut Scanning<S> as *mut c_void,
            0,
        );
    }
    s.state
}
