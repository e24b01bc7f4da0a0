//! Types shared by the kernel programs (`monitor-ebpf`) and userspace
//! (`monitor`): the raw record layout written to the ring buffer, operation
//! codes and map key types. Everything here is `#[repr(C)]` and `no_std`
//! because both sides must agree on it byte for byte.
#![no_std]

/// Longest path, in bytes, that a kernel record carries.
pub const PATH_MAX: usize = 256;
