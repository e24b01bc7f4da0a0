//! `cargo xtask`: the project's own commands, so a newcomer needs two of them
//! (`cargo xtask run`, `cargo xtask test`) and nothing else.
//!
//! - `setup`: installs, idempotently, everything building and testing need.
//! - `build`: kernel programs and userspace, release.
//! - `run`: setup, build, and the daemon with the shipped rules.
//! - `test`: setup, formatting, clippy, unit and integration tests, the
//!   kernel matrix.
//! - `bench [NAME]`: the benchmarks behind BENCHMARKS.md.
//! - `kernels [VERSION]...`: the eBPF scenarios on Debian's 5.10, 6.1, 6.12 under qemu.
//! - `package`: the .deb (binary, systemd unit, config, rules, man pages).

mod bench;
mod kernels;
mod package;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install apt packages, rust-src, bpf-linker; mount tracefs.
    Setup,
    /// Build kernel programs and userspace (release).
    Build,
    /// Build and run `dockwatch run` with the shipped rules.
    Run {
        /// Extra arguments for `dockwatch run` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Formatting, clippy, unit and integration tests.
    Test {
        /// Only tests whose name contains this (passed to nextest).
        filter: Option<String>,
    },
    /// Benchmarks: replay, probes, matcher, sink (all when none is named).
    Bench { name: Option<String> },
    /// Build the Debian package (target/debian/dockwatch_*.deb).
    Package,
    /// The eBPF scenarios on Debian's kernels under qemu (all when none is named).
    Kernels { versions: Vec<String> },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Task::Setup => setup::run(),
        Task::Build => {
            setup::run()?;
            build_release()
        }
        Task::Run { args } => {
            setup::run()?;
            build_release()?;
            run_daemon(&args)
        }
        Task::Test { filter } => {
            setup::run()?;
            test(filter.as_deref())
        }
        Task::Bench { name } => {
            setup::run()?;
            build_release()?;
            bench::run(name.as_deref())
        }
        Task::Package => {
            setup::run()?;
            package::run(package::Profile::Release).map(|_| ())
        }
        Task::Kernels { versions } => {
            setup::run()?;
            kernels::run(&versions)
        }
    }
}

/// The workspace root (this crate lives in `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, failing with its name on error.
pub fn cmd(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The debug build `cargo xtask test` makes once and everything uses.
pub const WORKSPACE_BUILD: [&str; 3] = ["build", "--workspace", "--all-targets"];

fn build_release() -> anyhow::Result<()> {
    cmd("cargo", &["build", "--release", "-p", "monitor", "--bins"])
}

/// The release binary `build_release` made.
pub fn dockwatch_release() -> PathBuf {
    root().join("target/release/dockwatch")
}

fn run_daemon(extra: &[String]) -> anyhow::Result<()> {
    let rules = root().join("rules");
    let bin = dockwatch_release();
    setup::ensure_auditd_with_rules(&bin, &rules)?;
    let mut args = vec![
        "run".to_string(),
        "--rules".to_string(),
        rules.display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    eprintln!("$ {} {}", bin.display(), args.join(" "));
    let status = Command::new(&bin).args(&args).status()?;
    if !status.success() {
        bail!("dockwatch exited with {status}");
    }
    Ok(())
}

fn test(filter: Option<&str>) -> anyhow::Result<()> {
    cmd("cargo", &["fmt", "--all", "--", "--check"])?;
    cmd(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // One build for everything below: the integration tests run the real
    // binary, the package test installs it, the kernel matrix boots it.
    // Always the whole workspace, as nextest selects it: `-p monitor`
    // would unify other features, and cargo would build the tree (and the
    // kernel programs) again for each selection.
    cmd("cargo", &WORKSPACE_BUILD)?;
    // The package test installs the real .deb; building it inside nextest
    // would outlast its timeout, so it is built here.
    let deb = package::run(package::Profile::Dev)?;
    std::env::set_var("DOCKWATCH_DEB", &deb);
    let mut args = vec![
        "nextest",
        "run",
        "--workspace",
        "--profile",
        "ci",
        "--no-fail-fast",
    ];
    if let Some(f) = filter {
        args.push(f);
    }
    // The eBPF scenarios on the kernels users run (5.10, 6.1, 6.12), booted
    // while the host's tests run.
    let (host, kernels) = kernels::run_ci_beside(|| cmd("cargo", &args))?;
    if let Err(e) = &kernels {
        eprintln!("kernels: {e:#}");
    }
    host?;
    kernels?;
    // nextest does not run doctests.
    cmd("cargo", &["test", "--workspace", "--doc"])
}
