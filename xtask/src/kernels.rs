//! `cargo xtask kernels`: the eBPF scenarios on the kernels users run.
//!
//! This machine's kernel is newer than any production Docker host's, and a
//! verifier accepts what it can prove, so a program that loads here may be
//! refused on Debian 11 or 12. Each kernel of the matrix is Debian's own
//! cloud kernel, fetched with `apt-get download` through a private apt
//! configuration under `target/kernels/apt` (the machine's sources are never
//! read or changed) and booted under qemu (TCG: nested KVM is not available
//! everywhere) with an initramfs holding busybox, `dockwatch`, the eBPF test
//! binaries and their libraries. The init script runs the tests and prints a
//! marker line with their exit status on the serial console.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

use crate::root;

/// A kernel of the matrix: its series and the Debian suite that ships it.
pub struct Series {
    pub version: &'static str,
    suite: &'static str,
    /// Why its scenarios are known to fail, while they do: the run goes on,
    /// says so loudly, and does not fail.
    pub expected_failure: Option<&'static str>,
    /// In `cargo xtask test`, only the tests matching these names (and
    /// why), where all of them would not fit CI's time.
    pub ci_subset: Option<(&'static [&'static str], &'static str)>,
}

pub const MATRIX: &[Series] = &[
    Series {
        version: "5.10",
        suite: "bullseye",
        expected_failure: None,
        // Under emulation its verifier takes about 40 s per daemon start
        // for the bounded-loop programs: all 24 tests take some 18 minutes.
        ci_subset: Some((
            &[
                "syscalls::create_in",
                "syscalls::rename_over",
                "syscalls::connect",
                "syscalls::lost_records",
                "open_for_write",
            ],
            "each daemon start takes ~45 s of emulated verification",
        )),
    },
    Series {
        version: "6.1",
        suite: "bookworm",
        expected_failure: None,
        ci_subset: None,
    },
    Series {
        version: "6.12",
        suite: "bookworm-backports",
        expected_failure: None,
        ci_subset: None,
    },
];

/// The integration tests that run inside each kernel.
const TESTS: &[&str] = &["ebpf_actions", "ebpf_open"];

/// The line the init script prints when the tests are done.
const MARKER: &str = "DOCKWATCH-KERNELS-EXIT";

/// The line the init script prints when it starts.
const PROBE_MARKER: &str = "DOCKWATCH-KERNELS-PROBE-CHECK";

/// How long the kernel may take to reach init before the boot counts as
/// broken by the emulation (about 15 s on an idle host; far longer on a
/// loaded one).
const INIT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one boot may take, tests included, before qemu is killed.
// 5.10 with every scenario takes about 20 minutes on an idle host.
const BOOT_TIMEOUT: Duration = Duration::from_secs(45 * 60);

fn kernels_dir() -> PathBuf {
    root().join("target/kernels")
}

/// Runs the matrix (every series when `only` is empty). Fails when a kernel
/// not listed as an expected failure fails.
pub fn run(only: &[String]) -> anyhow::Result<()> {
    run_matrix(only, false)
}

/// The matrix as `cargo xtask test` runs it: every kernel, some with a
/// subset of the tests (said loudly), booted while `during` runs (the
/// host's integration tests, which run one at a time and leave most of
/// the CPU idle; qemu runs at a lower priority, so they keep what they
/// need). Returns what `during` returned and the matrix's verdict.
pub fn run_ci_beside<T>(during: impl FnOnce() -> T) -> anyhow::Result<(T, anyhow::Result<()>)> {
    let prepared = prepare(&[])?;
    Ok(std::thread::scope(|scope| {
        let matrix = scope.spawn(|| boot_matrix(&prepared, true));
        let out = during();
        let verdict = matrix
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the kernel matrix thread panicked")));
        (out, verdict)
    }))
}

fn run_matrix(only: &[String], ci: bool) -> anyhow::Result<()> {
    boot_matrix(&prepare(only)?, ci)
}

/// The kernels to boot, downloaded, and the initramfs they boot with.
struct Prepared {
    kernels: Vec<(&'static Series, (String, PathBuf))>,
    initrd: PathBuf,
}

/// Everything that needs cargo or the network, done before anything boots
/// (so nothing else waits on cargo's lock while the kernels run).
fn prepare(only: &[String]) -> anyhow::Result<Prepared> {
    let selected: Vec<&'static Series> = if only.is_empty() {
        MATRIX.iter().collect()
    } else {
        only.iter()
            .map(|v| {
                MATRIX.iter().find(|s| s.version == v).with_context(|| {
                    let known: Vec<&str> = MATRIX.iter().map(|s| s.version).collect();
                    format!("unknown kernel {v}: the matrix has {}", known.join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let apt = Apt::new()?;
    let mut kernels = Vec::new();
    for series in selected {
        kernels.push((series, apt.vmlinuz(series)?));
    }
    let initrd = build_initramfs()?;
    Ok(Prepared { kernels, initrd })
}

fn boot_matrix(prepared: &Prepared, ci: bool) -> anyhow::Result<()> {
    let Prepared { kernels, initrd } = prepared;
    // The kernels boot side by side: TCG runs each VM on one host thread,
    // and the matrix then takes about as long as its slowest kernel.
    let started = Instant::now();
    let outcomes: Vec<anyhow::Result<Outcome>> = std::thread::scope(|scope| {
        let running: Vec<_> = kernels
            .iter()
            .map(|(series, (package, vmlinuz))| {
                scope.spawn(move || {
                    // TCG occasionally double-faults a 6.12 kernel during
                    // boot, before init runs: a boot that never reached
                    // init is retried, up to three boots in all.
                    let subset = match series.ci_subset {
                        Some((tests, why)) if ci => {
                            eprintln!(
                                "!!!!!!!! kernels: {} runs only {} in CI ({why}); \
                                 `cargo xtask kernels {}` runs them all !!!!!!!!",
                                series.version,
                                tests.join(", "),
                                series.version
                            );
                            Some(tests.join(","))
                        }
                        _ => None,
                    };
                    let subset = subset.as_deref();
                    let mut attempt = 1;
                    loop {
                        let outcome = boot(series, package, vmlinuz, initrd, subset)?;
                        if outcome.reached_init || attempt == 3 {
                            return Ok(outcome);
                        }
                        attempt += 1;
                        eprintln!(
                            "kernels: {} broke before init (emulation); boot {attempt} of 3",
                            series.version
                        );
                    }
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| bail!("a boot thread panicked")))
            .collect()
    });
    let mut failed = Vec::new();
    let mut expected = Vec::new();
    let mut untested = Vec::new();
    for ((series, (package, _)), outcome) in kernels.iter().zip(outcomes) {
        let outcome = outcome?;
        // TCG itself sometimes crashes a kernel while it boots (a double
        // fault in the allocator, before any dockwatch code runs). In
        // `cargo xtask test` three such boots in a row leave the kernel
        // untested, said loudly, rather than failing every other test's
        // verdict with it; `cargo xtask kernels` still fails.
        if ci && !outcome.reached_init {
            eprintln!(
                "\n!!!!!!!! kernels: {} NOT TESTED: the emulator crashed it before init in 3 boots \
                 (console log under {}); run `cargo xtask kernels {}` !!!!!!!!\n",
                series.version,
                kernels_dir().display(),
                series.version
            );
            untested.push(series.version);
            continue;
        }
        eprintln!(
            "kernels: {} ({package}): {} in {:.0?}",
            series.version,
            if outcome.passed { "passed" } else { "FAILED" },
            outcome.elapsed
        );
        if !outcome.passed {
            eprintln!("{}", outcome.report);
            match series.expected_failure {
                Some(why) => {
                    eprintln!(
                        "\n!!!!!!!! kernels: {} is an EXPECTED FAILURE: {why} !!!!!!!!\n",
                        series.version
                    );
                    expected.push(series.version);
                }
                None => failed.push(series.version),
            }
        } else if series.expected_failure.is_some() {
            eprintln!(
                "kernels: {} passed although listed as an expected failure: remove the entry",
                series.version
            );
        }
    }
    eprintln!("kernels: the matrix took {:.0?}", started.elapsed());
    if !expected.is_empty() {
        eprintln!(
            "!!!!!!!! kernels: expected failures (not counted): {} !!!!!!!!",
            expected.join(", ")
        );
    }
    if !untested.is_empty() {
        eprintln!(
            "!!!!!!!! kernels: not tested (emulator crashes): {} !!!!!!!!",
            untested.join(", ")
        );
    }
    if !failed.is_empty() {
        bail!(
            "the eBPF scenarios failed on kernel {} (console logs under {})",
            failed.join(", "),
            kernels_dir().display()
        );
    }
    Ok(())
}

/// apt-get and apt-cache on a private configuration: Debian's three suites,
/// with their own lists, cache and state, and the machine's archive keys
/// (read only) to check the signatures.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new() -> anyhow::Result<Apt> {
        let dir = kernels_dir().join("apt");
        for sub in [
            "etc/apt.conf.d",
            "etc/preferences.d",
            "lists/partial",
            "cache/archives/partial",
            "state",
        ] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let mut sources = String::new();
        for series in MATRIX {
            sources.push_str(&format!(
                "deb http://deb.debian.org/debian {} main\n",
                series.suite
            ));
        }
        fs::write(dir.join("etc/sources.list"), sources)?;
        let status = dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        let apt = Apt { dir };
        // The lists are refreshed once a day: a kernel update replaces the
        // package (its ABI number is in the name).
        let release = apt.dir.join("lists");
        let fresh = fs::read_dir(&release)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .any(|t| {
                SystemTime::now()
                    .duration_since(t)
                    .is_ok_and(|age| age < Duration::from_secs(24 * 3600))
            });
        if !fresh {
            apt.run("apt-get", &["update"], None)?;
        }
        Ok(apt)
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        [
            format!("Dir::Etc={d}/etc"),
            format!("Dir::Etc::sourcelist={d}/etc/sources.list"),
            "Dir::Etc::sourceparts=-".to_string(),
            "Dir::Etc::trustedparts=/etc/apt/trusted.gpg.d".to_string(),
            format!("Dir::State={d}/state"),
            format!("Dir::State::Lists={d}/lists"),
            format!("Dir::State::status={d}/state/status"),
            format!("Dir::Cache={d}/cache"),
            "APT::Architecture=amd64".to_string(),
            "Acquire::Languages=none".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn run(&self, program: &str, args: &[&str], cwd: Option<&Path>) -> anyhow::Result<String> {
        let mut cmd = Command::new(program);
        cmd.args(self.options()).args(args);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        eprintln!("$ {program} (private apt configuration) {}", args.join(" "));
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot start {program}"))?;
        if !out.status.success() {
            bail!("`{program} {}` failed ({})", args.join(" "), out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The newest cloud kernel package of `series` in its suite.
    fn package(&self, series: &Series) -> anyhow::Result<String> {
        let pattern = format!(
            "^linux-image-{}[.-].*cloud-amd64-unsigned$",
            series.version.replace('.', "\\.")
        );
        let found = self.run("apt-cache", &["search", "--names-only", &pattern], None)?;
        found
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .max_by(|a, b| natural_cmp(a, b))
            .map(str::to_string)
            .with_context(|| {
                format!(
                    "no package matches {pattern} in Debian {} (deb.debian.org)",
                    series.suite
                )
            })
    }

    /// The kernel image of `series`, downloaded and extracted once.
    fn vmlinuz(&self, series: &Series) -> anyhow::Result<(String, PathBuf)> {
        let package = self.package(series)?;
        let dir = kernels_dir().join(&package);
        let vmlinuz = dir.join("vmlinuz");
        if vmlinuz.exists() {
            return Ok((package, vmlinuz));
        }
        fs::create_dir_all(&dir)?;
        self.run("apt-get", &["download", &package], Some(&dir))?;
        let deb = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .with_context(|| format!("apt-get download {package} left no .deb"))?;
        let tar = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(&deb)
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start dpkg-deb")?;
        let out = Command::new("tar")
            .args(["-xO", "--wildcards", "./boot/vmlinuz-*"])
            .stdin(tar.stdout.context("dpkg-deb's output")?)
            .output()
            .context("cannot start tar")?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!("{} holds no ./boot/vmlinuz-*", deb.display());
        }
        let partial = dir.join("vmlinuz.partial");
        fs::write(&partial, &out.stdout)?;
        fs::rename(&partial, &vmlinuz)?;
        Ok((package, vmlinuz))
    }
}

/// Compares names with embedded numbers by value (`-50` after `-9`).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => x
                .parse::<u64>()
                .unwrap_or(0)
                .cmp(&y.parse::<u64>().unwrap_or(0)),
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// Builds `dockwatch` and the test binaries, then the initramfs holding
/// them; returns its path.
fn build_initramfs() -> anyhow::Result<PathBuf> {
    crate::cmd("cargo", &crate::WORKSPACE_BUILD)?;
    let tests = test_binaries()?;
    let dockwatch = root().join("target/debug/dockwatch");

    let mut cpio = Cpio::default();
    for dir in [
        "dev", "proc", "sys", "tmp", "run", "etc", "var", "root", "dw", "bin", "sbin", "usr/bin",
        "usr/sbin",
    ] {
        cpio.dir(dir);
    }
    // The tests spell a socket through /var/run, as on every Debian host.
    cpio.symlink("var/run", "../run");
    cpio.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        0o644,
    );
    cpio.file("etc/group", b"root:x:0:\n".to_vec(), 0o644);
    cpio.file("bin/busybox", fs::read("/bin/busybox")?, 0o755);
    let applets = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .context("cannot run busybox (apt-get install busybox-static)")?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let applet = applet.trim_start_matches('/');
        if !applet.is_empty() && applet != "bin/busybox" {
            let depth = applet.matches('/').count();
            cpio.symlink(applet, &format!("{}bin/busybox", "../".repeat(depth)));
        }
    }
    cpio.file("dw/dockwatch", fs::read(&dockwatch)?, 0o755);
    // Some scenarios make one call busybox has no applet for (truncate by
    // path, fchmod) with a perl one-liner; perl-base is on every Debian.
    let perl = PathBuf::from("/usr/bin/perl");
    cpio.file("usr/bin/perl", fs::read(&perl)?, 0o755);
    let mut binaries = vec![dockwatch.clone(), perl];
    let mut names = Vec::new();
    for (name, path) in &tests {
        cpio.file(&format!("dw/tests/{name}"), fs::read(path)?, 0o755);
        binaries.push(path.clone());
        names.push(name.as_str());
    }
    // The shipped rules, where the tests' CARGO_MANIFEST_DIR/../rules finds them.
    let rules = root().join("rules");
    for entry in fs::read_dir(&rules)? {
        let path = entry?.path();
        if path.is_file() {
            let dest = path.strip_prefix("/").unwrap_or(&path);
            cpio.file(&dest.to_string_lossy(), fs::read(&path)?, 0o644);
        }
    }
    for lib in shared_libraries(&binaries)? {
        let dest = lib
            .strip_prefix("/")
            .unwrap_or(&lib)
            .to_string_lossy()
            .into_owned();
        cpio.file(&dest, fs::read(&lib)?, 0o755);
    }
    cpio.file("init", init_script(&names).into_bytes(), 0o755);

    let out = kernels_dir().join("initrd.cpio");
    fs::create_dir_all(kernels_dir())?;
    fs::write(&out, cpio.finish())?;
    Ok(out)
}

/// The test executables, as cargo reports them.
fn test_binaries() -> anyhow::Result<Vec<(String, PathBuf)>> {
    // --workspace, as nextest builds them: the same features, so nothing
    // is built again.
    let mut args = vec![
        "test",
        "--workspace",
        "--no-run",
        "--message-format",
        "json",
    ];
    for t in TESTS {
        args.extend(["--test", t]);
    }
    eprintln!("$ cargo {}", args.join(" "));
    let out = Command::new("cargo")
        .args(&args)
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start cargo")?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let name = msg["target"]["name"].as_str().unwrap_or_default();
        if msg["reason"] == "compiler-artifact" && TESTS.contains(&name) {
            if let Some(exe) = msg["executable"].as_str() {
                found.push((name.to_string(), PathBuf::from(exe)));
            }
        }
    }
    if found.len() != TESTS.len() {
        bail!(
            "cargo reported {} of the test binaries {TESTS:?}",
            found.len()
        );
    }
    Ok(found)
}

/// Every shared library (and the dynamic loader) the binaries need.
fn shared_libraries(binaries: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut libs = std::collections::BTreeSet::new();
    for bin in binaries {
        let out = Command::new("ldd")
            .arg(bin)
            .output()
            .context("cannot start ldd")?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                libs.insert(PathBuf::from(p));
            }
        }
    }
    Ok(libs.into_iter().collect())
}

/// PID 1 in the VM: the file systems the daemon and the tests expect; a
/// probe check (the daemon's own account of what it loaded, and why not);
/// the tests one at a time; the marker; power off. `dwlog` and `dwfilter`
/// come from the kernel command line (see [`boot`]).
fn init_script(tests: &[&str]) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# /tmp stays on the root (a tmpfs already): the tests rename from /tmp
# into /etc, which must be one file system as on a host.
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs cgroup /sys/fs/cgroup
mkdir /sys/fs/cgroup/unified
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
export DOCKWATCH_BIN=/dw/dockwatch RUST_BACKTRACE=1 DOCKWATCH_VM_READY_S=240
echo "kernel $(uname -r)"
# The inode hook set needs Linux 6.13's timestamp tracepoints.
if [ ! -e /sys/kernel/tracing/events/timestamp/ctime_ns_xchg ]; then
    export DOCKWATCH_VM_MISSING_HOOKS=inode
    echo "no inode hooks on this kernel: their tests are skipped"
fi
mkdir -p /tmp/probe/rules
printf 'rules:\n  - id: probe\n    name: probe\n    severity: warning\n    paths: [/etc/docker]\n    actions: [write]\n' > /tmp/probe/rules/probe.yaml
printf '[posture]\nenabled = false\n[sources.audit]\nmode = "off"\n[sources.ebpf]\nhooks = "auto"\n' > /tmp/probe/config.toml
echo "DOCKWATCH-KERNELS-PROBE-CHECK"
DOCKWATCH_LOG=${dwlog:-info} /dw/dockwatch run --config /tmp/probe/config.toml \
    --rules /tmp/probe/rules --output file:///tmp/probe/alerts.jsonl 2>&1 \
    | tee /tmp/probe/log | sed 's/^/probe-check: /' &
i=0
while [ $i -lt 300 ] && pidof dockwatch > /dev/null && ! grep -q 'dockwatch ready' /tmp/probe/log; do
    sleep 1; i=$((i+1))
done
[ $i -lt 300 ] || echo "probe-check: no ready line after 300 s"
kill $(pidof dockwatch) 2>/dev/null; wait
rc=0
"#,
    );
    for t in tests {
        s.push_str(&format!(
            "echo 'DOCKWATCH-KERNELS-TEST {t}'\n/dw/tests/{t} --test-threads=1 $(echo \"$dwfilter\" | tr , ' ') || rc=$?\n"
        ));
    }
    s.push_str(&format!("echo \"{MARKER} rc=$rc\"\npoweroff -f\n"));
    s
}

struct Outcome {
    passed: bool,
    /// The kernel ran /init (else it crashed while booting).
    reached_init: bool,
    elapsed: Duration,
    /// The failed tests and the loader's errors, for the console.
    report: String,
}

/// Boots `vmlinuz` with the initramfs, saving the console to
/// `target/kernels/<package>/console.log`.
fn boot(
    series: &Series,
    package: &str,
    vmlinuz: &Path,
    initrd: &Path,
    subset: Option<&str>,
) -> anyhow::Result<Outcome> {
    let log_path = kernels_dir().join(package).join("console.log");
    eprintln!(
        "kernels: booting {} ({package}); console in {}",
        series.version,
        log_path.display()
    );
    // Unknown `name=value` parameters reach init as its environment:
    // DOCKWATCH_KERNELS_LOG (the probe check's DOCKWATCH_LOG) and
    // DOCKWATCH_KERNELS_FILTER (a test name filter) are for debugging one
    // kernel. loglevel=4 keeps the kernel's warnings off the test output.
    let mut append = String::from(
        "console=ttyS0 panic=-1 loglevel=4 lsm=lockdown,capability,landlock,yama,apparmor,bpf",
    );
    if let Ok(v) = std::env::var("DOCKWATCH_KERNELS_LOG") {
        append.push_str(&format!(" dwlog={v}"));
    }
    // Comma-separated test names; the init script passes each to libtest.
    if let Some(filter) = std::env::var("DOCKWATCH_KERNELS_FILTER")
        .ok()
        .or(subset.map(str::to_string))
    {
        append.push_str(&format!(" dwfilter={filter}"));
    }
    let booted = Instant::now();
    // `-cx16`: without it TCG crashes 6.12 most boots (double faults and
    // oopses in the slab allocator, whose lockless path 6.12 runs on
    // cmpxchg16b); without the instruction the kernel takes the locked
    // path and boots every time (8 of 8 here, against 1 of 4).
    // `nice`: in `cargo xtask test` the host's own tests run meanwhile and
    // come first; alone, the VMs still get every idle cycle.
    let mut child = Command::new("nice")
        .args(["-n", "10", "qemu-system-x86_64"])
        .args(["-accel", "tcg", "-cpu", "max,-cx16", "-m", "2G"])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
    let stdout = child.stdout.take().context("qemu's console")?;
    // Written as it comes, so a hanging boot can be watched.
    let mut log = fs::File::create(&log_path)?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            let _ = writeln!(log, "{line}");
            let _ = tx.send(line.contains(PROBE_MARKER));
            lines.push(line);
        }
        lines
    });
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let init_deadline = Instant::now() + INIT_TIMEOUT;
    let mut timed_out = false;
    let mut in_init = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // A kernel the emulation broke while booting hangs before init.
        if left.is_zero() || (!in_init && Instant::now() > init_deadline) {
            timed_out = in_init;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(init) => in_init |= init,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.wait();
                break;
            }
        }
    }
    let lines = reader.join().unwrap_or_default();
    let rc = lines.iter().find_map(|l| {
        l.find(MARKER)
            .and_then(|at| l[at..].strip_prefix(MARKER)?.trim().strip_prefix("rc="))
            .and_then(|rc| rc.trim().parse::<i32>().ok())
    });
    let passed = rc == Some(0) && !timed_out;
    let mut report = String::new();
    if !passed {
        let why = match (timed_out, rc) {
            (true, _) => format!("qemu killed after {BOOT_TIMEOUT:?}"),
            (false, None) => "the VM stopped before the tests finished".to_string(),
            (false, Some(rc)) => format!("the tests exited with {rc}"),
        };
        report.push_str(&format!(
            "kernel {} ({package}): {why}; console: {}\n",
            series.version,
            log_path.display()
        ));
        report.push_str(&failure_summary(&lines));
    }
    let reached_init = lines.iter().any(|l| l.contains(PROBE_MARKER));
    Ok(Outcome {
        passed,
        reached_init,
        elapsed: booted.elapsed(),
        report,
    })
}

/// The failed tests (by binary) and the loader's errors seen in the
/// console, each error once, or the console's last lines when there are
/// neither.
fn failure_summary(lines: &[String]) -> String {
    let mut binary = "";
    let mut failed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refused: Vec<String> = Vec::new();
    for l in lines {
        if let Some(t) = l.strip_prefix("DOCKWATCH-KERNELS-TEST ") {
            binary = t;
        }
        if let Some(test) = l
            .strip_prefix("test ")
            .and_then(|t| t.strip_suffix(" ... FAILED"))
        {
            failed
                .entry(binary.to_string())
                .or_default()
                .push(test.to_string());
        }
        if l.contains("the kernel refused")
            || l.contains("cannot load the kernel programs")
            || l.contains("no open probe")
        {
            let l = strip_ansi(l);
            // The message without its timestamp, so each shows once.
            let key = l.split_once(" ERROR ").map_or(l.as_str(), |(_, m)| m);
            if !refused.iter().any(|r| r.contains(key)) {
                refused.push(l.trim().to_string());
            }
        }
    }
    let mut s = String::new();
    for (binary, tests) in &failed {
        for t in tests {
            s.push_str(&format!("  FAILED {binary}: {t}\n"));
        }
    }
    for r in &refused {
        s.push_str(&format!("  loader: {r}\n"));
    }
    if failed.is_empty() && refused.is_empty() {
        for l in &lines[lines.len().saturating_sub(20)..] {
            s.push_str(&format!("  | {l}\n"));
        }
    }
    s
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A newc ("070701") cpio archive, the format the kernel unpacks as its
/// initial root file system.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: std::collections::BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory and its parents, each once.
    fn dir(&mut self, name: &str) {
        let mut path = String::new();
        for part in name.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            if self.dirs.insert(path.clone()) {
                let p = path.clone();
                self.entry(&p, 0o040755, &[]);
            }
        }
    }

    fn parent(&mut self, name: &str) {
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent);
        }
    }

    fn file(&mut self, name: &str, data: Vec<u8>, perm: u32) {
        self.parent(name);
        self.entry(name, 0o100000 | perm, &data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.parent(name);
        self.entry(name, 0o120777, target.as_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}
