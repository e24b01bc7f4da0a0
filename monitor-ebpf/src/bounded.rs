//! The kernel programs of `main.rs`, built with bounded loops instead of
//! `bpf_loop` for kernels before 5.17 (Debian 11's 5.10): the loader picks
//! this object when the kernel's BTF has no `bpf_loop`.
#![no_std]
#![no_main]

/// Walks and scans use bounded loops.
pub const BPF_LOOP: bool = false;

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
