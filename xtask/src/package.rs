//! `cargo xtask package`: the Debian package a fleet installs with its
//! configuration tool. cargo-deb does the packaging from
//! `[package.metadata.deb]` in monitor/Cargo.toml; this task only makes what
//! that section points at: the release binary, and the man pages and shell
//! completions generated from the CLI definition (monitor/packaging/assets.rs).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

use crate::{cmd, root};

const CARGO_DEB_VERSION: &str = "3.8.0";

/// Builds the .deb and returns its path (under target/debian/).
pub fn run() -> anyhow::Result<PathBuf> {
    cargo_deb()?;
    cmd("cargo", &["build", "--release", "-p", "monitor", "--bins"])?;
    let assets = root().join("target/release/package-assets");
    let assets_arg = assets.display().to_string();
    cmd(
        "cargo",
        &[
            "run",
            "--release",
            "-p",
            "monitor",
            "--example",
            "package-assets",
            "--",
            &assets_arg,
        ],
    )?;
    // --no-build: the binary above is the one tested; cargo-deb's own build
    // would not build the example's assets anyway.
    let out = Command::new("cargo")
        .args(["deb", "-p", "monitor", "--no-build"])
        .current_dir(root())
        .output()
        .context("cannot start cargo deb")?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("cargo deb failed ({})", out.status);
    }
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !deb.is_file() {
        bail!("cargo deb did not name its .deb (said {:?})", deb);
    }
    println!("{}", deb.display());
    Ok(deb)
}

/// cargo-deb, installed on first use only: nothing else needs it.
fn cargo_deb() -> anyhow::Result<()> {
    let have = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)
        })
        .unwrap_or(false);
    if have {
        return Ok(());
    }
    cmd(
        "cargo",
        &[
            "install",
            "cargo-deb",
            "--locked",
            "--version",
            CARGO_DEB_VERSION,
        ],
    )
}
