//! `cargo xtask package`: the Debian package a fleet installs with its
//! configuration tool. cargo-deb does the packaging from
//! `[package.metadata.deb]` in monitor/Cargo.toml; this task only makes what
//! that section points at: the release binary, and the man pages and shell
//! completions generated from the CLI definition (monitor/packaging/assets.rs).
//!
//! `cargo xtask test` packages the debug build it has just made and tests
//! (cargo-deb maps the assets' `target/release/` to the profile's
//! directory): the package test checks the package, not the optimiser, and
//! a second, release build of the whole tree would cost CI five minutes.
//! cargo-deb warns that it means dev profiles for releases only and may
//! refuse them one day; the version is pinned, and a custom profile would
//! bring the second build back.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

use crate::{cmd, root};

const CARGO_DEB_VERSION: &str = "3.8.0";

/// Which build goes into the package.
#[derive(Clone, Copy)]
pub enum Profile {
    /// What `cargo xtask package` ships.
    Release,
    /// The build `cargo xtask test` has made already.
    Dev,
}

impl Profile {
    fn cargo_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "dev",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "debug",
        }
    }
}

/// Builds the .deb and returns its path (under target/debian/). For
/// [`Profile::Dev`] the caller has built the workspace already.
pub fn run(profile: Profile) -> anyhow::Result<PathBuf> {
    cargo_deb()?;
    if let Profile::Release = profile {
        cmd(
            "cargo",
            &[
                "build",
                "--release",
                "-p",
                "monitor",
                "--bins",
                "--example",
                "package-assets",
            ],
        )?;
    }
    let built = root().join("target").join(profile.dir());
    let assets = built.join("package-assets");
    let generator = built.join("examples/package-assets");
    let status = Command::new(&generator)
        .arg(&assets)
        .status()
        .with_context(|| format!("cannot run {}", generator.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", generator.display());
    }
    // --no-build: the binary above is the one tested; cargo-deb's own build
    // would not build the example's assets anyway.
    let out = Command::new("cargo")
        .args(["deb", "-p", "monitor", "--no-build", "--profile"])
        .arg(profile.cargo_name())
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
