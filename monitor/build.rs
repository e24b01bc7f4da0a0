//! Builds the kernel programs (`monitor-ebpf`, target bpfel-unknown-none,
//! nightly + bpf-linker) with aya-build; the object is embedded in the
//! `dockwatch` binary (see `source::ebpf`).
//!
//! `monitor-ebpf` is its own workspace (the host workspace excludes it), so
//! aya-build's `cargo build --package monitor-ebpf` runs from its directory.
//!
//! Under clippy the kernel programs are not built: clippy runs this script
//! apart from `cargo build` (its wrapper changes the script's fingerprint),
//! aya-build would compile the kernel crate and core again from nothing (a
//! minute and a half of CI's two cores), and clippy only type-checks the
//! userspace that embeds them. Empty objects stand in.

use std::path::PathBuf;

/// The kernel objects `source::ebpf::loader` embeds.
const OBJECTS: &[&str] = &["monitor-ebpf", "monitor-ebpf-bounded"];

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=RUSTC_WORKSPACE_WRAPPER");
    let under_clippy = std::env::var_os("RUSTC_WORKSPACE_WRAPPER")
        .is_some_and(|w| PathBuf::from(w).ends_with("clippy-driver"));
    if under_clippy {
        let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
        for object in OBJECTS {
            std::fs::write(out_dir.join(object), [])?;
        }
        return Ok(());
    }
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ebpf_dir = manifest_dir.join("../monitor-ebpf").canonicalize()?;
    let common_dir = manifest_dir.join("../monitor-common").canonicalize()?;
    println!("cargo:rerun-if-changed={}", common_dir.display());
    std::env::set_current_dir(&ebpf_dir)?;
    let root_dir = ebpf_dir.to_str().expect("utf-8 checkout path");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}
