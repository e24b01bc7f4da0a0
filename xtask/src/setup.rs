//! `cargo xtask setup`: everything a fresh Debian 12 machine needs to build
//! and test dockwatch, installed only where missing so a second run takes
//! seconds. The versions are pinned because they must agree: the nightly's
//! LLVM (22) is the one bpf-linker is built against and the one clang-22
//! uses for the CO-RE shims.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::cmd;

/// Debian packages: the LLVM bpf-linker links against, clang for the C
/// shims, and the real services the integration tests drive.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "clang-22",
    "zlib1g-dev",
    "libzstd-dev",
    "auditd",
    "rsyslog",
    "rsyslog-gnutls",
    // imrelp, the receiver of the RELP output tests and `bench sink`.
    "rsyslog-relp",
    "logrotate",
    "procps",
    "util-linux",
    "gzip",
    // A real engine for the container tests; busybox-static is the rootfs
    // of the image they import (no registry is reachable).
    "docker.io",
    "busybox-static",
    // The kernel matrix (`cargo xtask kernels`) boots Debian's kernels under
    // qemu; busybox-static is also its initramfs's userland.
    "qemu-system-x86",
    // systemd-analyze, for verifying the package's unit; installing it
    // neither boots systemd nor replaces init (that is systemd-sysv).
    "systemd",
    "man-db",
    // setfacl, for the posture test of ACLs on Docker's files.
    "acl",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    require_root()?;
    apt_packages()?;
    rust_src()?;
    bpf_linker()?;
    nextest()?;
    tracefs()?;
    Ok(())
}

fn require_root() -> anyhow::Result<()> {
    if !nix_is_root() {
        bail!("cargo xtask needs root: it installs packages, loads eBPF programs and starts auditd; run it with sudo");
    }
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_packages() -> anyhow::Result<()> {
    if ensure_packages(APT_PACKAGES)? {
        // Debian's maintainer scripts may start the services; the tests
        // start their own instances with their own configuration.
        let _ = Command::new("pkill").args(["-x", "auditd"]).status();
        let _ = Command::new("pkill").args(["-x", "rsyslogd"]).status();
        // The tests start dockerd by hand and expect no docker.sock between.
        let _ = Command::new("pkill").args(["-x", "dockerd"]).status();
        let _ = Command::new("pkill").args(["-x", "containerd"]).status();
    }
    Ok(())
}

/// Installs those of `packages` that are missing; true when any was.
pub fn ensure_packages(packages: &[&str]) -> anyhow::Result<bool> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(false);
    }
    eprintln!("setup: installing {}", missing.join(" "));
    cmd("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(true)
}

fn rust_src() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("cannot run rustup")?;
    if !out.status.success() {
        bail!("no nightly toolchain: the kernel programs need the machine's pinned nightly (LLVM 22); install it with rustup, matching bpf-linker's LLVM");
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        return Ok(());
    }
    cmd(
        "rustup",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
    )
}

fn bpf_linker() -> anyhow::Result<()> {
    let current = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if current.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22");
    let status = Command::new("cargo")
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed: is llvm-22-dev installed?");
    }
    Ok(())
}

fn nextest() -> anyhow::Result<()> {
    let ok = Command::new("cargo")
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    cmd("cargo", &["install", "cargo-nextest", "--locked"])
}

/// Tracepoints are attached through tracefs; mount it where absent.
fn tracefs() -> anyhow::Result<()> {
    if Path::new("/sys/kernel/tracing/events").exists() {
        return Ok(());
    }
    cmd(
        "mount",
        &["-t", "tracefs", "tracefs", "/sys/kernel/tracing"],
    )
}

/// For `cargo xtask run`: an auditd with the shipped rules' watches, started
/// here when none runs (no systemd on this kind of machine).
pub fn ensure_auditd_with_rules(dockwatch: &Path, rules: &Path) -> anyhow::Result<()> {
    let running = Command::new("pgrep")
        .args(["-x", "auditd"])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !running {
        eprintln!("setup: starting auditd");
        cmd("auditd", &[])?;
    }
    let out = Command::new(dockwatch)
        .args(["rules", "auditctl", "--rules"])
        .arg(rules)
        .output()
        .context("cannot run dockwatch rules auditctl")?;
    if !out.status.success() {
        bail!(
            "dockwatch rules auditctl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = std::env::temp_dir().join("dockwatch-audit.rules");
    std::fs::write(&file, &out.stdout)?;
    let loaded = Command::new("auditctl")
        .arg("-R")
        .arg(&file)
        .stdout(Stdio::null())
        .status()?;
    if !loaded.success() {
        eprintln!(
            "setup: auditctl -R {} reported errors (see above); continuing with what loaded",
            file.display()
        );
    }
    Ok(())
}
