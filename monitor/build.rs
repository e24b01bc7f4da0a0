//! Builds the kernel programs (`monitor-ebpf`, target bpfel-unknown-none,
//! nightly + bpf-linker) with aya-build; the object is embedded in the
//! `dockwatch` binary (see `source::ebpf`).
//!
//! `monitor-ebpf` is its own workspace (the host workspace excludes it), so
//! aya-build's `cargo build --package monitor-ebpf` runs from its directory.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
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
