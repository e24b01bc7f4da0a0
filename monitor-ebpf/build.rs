//! Compiles the C shim (kernel structure accessors with BPF CO-RE
//! relocations, see shim/shim.c) to LLVM bitcode for bpf-linker to link in.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-env-changed=DOCKWATCH_CLANG");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("bpf") {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let bitcode = out.join("shim.bc");
    let clang = std::env::var("DOCKWATCH_CLANG").unwrap_or_else(|_| "clang-22".to_string());
    // The probes run on the machine's own kernel: its architecture decides
    // the register layout the shim reads a call's arguments from.
    let arch = match std::env::var("HOST").unwrap_or_default().split('-').next() {
        Some("x86_64") => "-D__TARGET_ARCH_x86",
        Some("aarch64") => "-D__TARGET_ARCH_arm64",
        _ => "-D__TARGET_ARCH_unknown",
    };
    println!("cargo:rerun-if-env-changed=HOST");
    let status = Command::new(&clang)
        .args(["-target", "bpfel", "-O2", "-g", "-emit-llvm", "-c", "-Wall"])
        .arg(arch)
        .args(["-Wno-unused-function", "-fno-stack-protector"])
        .arg("shim/shim.c")
        .arg("-o")
        .arg(&bitcode)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {clang} to compile shim/shim.c ({e}); install clang-22 (cargo xtask setup) or set DOCKWATCH_CLANG")
        });
    assert!(status.success(), "{clang} failed to compile shim/shim.c");
    println!("cargo:rustc-link-arg={}", bitcode.display());
}
