//! `cargo xtask bench probes`: what watching costs a syscall-heavy workload
//! that touches nothing watched, four ways in one run: no monitor, auditd
//! with the shipped rules' watches, and dockwatch's eBPF probes (audit off)
//! with each of its hook sets, the inode hooks and the syscall hooks.
//!
//! The workload (`probes_workload.rs`) is compiled on its own with `rustc
//! -O` and run as a fresh process for every measurement, so that it starts
//! after auditd enabled auditing: the kernel audits only processes started
//! after that. Rounds interleave the four modes, and each keeps its
//! fastest run, the one least disturbed by other work on the machine.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const RUNS: usize = 5;
const PHASES: [&str; 4] = [
    "1M writes /dev/null",
    "200k writes file",
    "100k open+close ro",
    "100k open+close wr",
];

pub fn run() -> anyhow::Result<()> {
    let root = repo_root()?;
    let _lock = machine_lock()?;
    // `cargo xtask bench` built the release binary.
    let dockwatch = root.join("target/release/dockwatch");
    let rules = root.join("rules");
    let scratch = tempdir()?;
    let workload = scratch.join("workload");
    let source = root.join("xtask/src/bench/probes_workload.rs");
    let status = Command::new("rustc")
        .args(["-O", "--edition", "2021", "-o"])
        .arg(&workload)
        .arg(&source)
        .status()
        .context("rustc")?;
    if !status.success() {
        bail!("cannot compile {}", source.display());
    }

    // Audit left enabled (by an earlier auditd) audits every new process
    // even without rules: off for the modes that are not auditd's.
    let audit_was_enabled = audit_enabled()?;
    auditctl(&["-e", "0"])?;
    let result = compare(&dockwatch, &rules, &scratch);
    auditctl(&["-e", if audit_was_enabled { "1" } else { "0" }])?;
    result
}

/// dockwatch's two hook sets, by `[sources.ebpf] hooks` value.
const HOOKS: [&str; 2] = ["inode", "syscalls"];

fn compare(dockwatch: &Path, rules: &Path, scratch: &Path) -> anyhow::Result<()> {
    println!("probes benchmark: best of {RUNS} interleaved rounds, times in ms");
    let audit_rules = audit_rules(dockwatch, rules)?;
    let running = Command::new("pgrep")
        .args(["-x", "auditd"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if running {
        bail!("an auditd is running; stop it first (the benchmark starts its own)");
    }
    let mut baseline = vec![f64::INFINITY; 2 * PHASES.len()];
    let mut audited = baseline.clone();
    let mut probed = vec![baseline.clone(); HOOKS.len()];
    for _ in 0..RUNS {
        keep_best(&mut baseline, run_workload(scratch)?);
        {
            let _auditd = Auditd::start(scratch, &audit_rules)?;
            keep_best(&mut audited, run_workload(scratch)?);
        }
        auditctl(&["-e", "0"])?;
        for (hooks, best) in HOOKS.iter().zip(probed.iter_mut()) {
            let _daemon = Dockwatch::start(dockwatch, rules, scratch, hooks)?;
            keep_best(best, run_workload(scratch)?);
        }
    }

    let mut columns = vec![("auditd", audited.as_slice())];
    let names: Vec<String> = HOOKS.iter().map(|h| format!("dw {h}")).collect();
    for (name, times) in names.iter().zip(&probed) {
        columns.push((name.as_str(), times.as_slice()));
    }
    report("wall", &baseline, &columns, 0);
    report("cpu", &baseline, &columns, 1);
    Ok(())
}

/// One table: the baseline's times, then each mode's with its cost over
/// the baseline; `which` picks wall (0) or CPU (1) times.
fn report(name: &str, baseline: &[f64], columns: &[(&str, &[f64])], which: usize) {
    let pick = |v: &[f64]| -> Vec<f64> { v.iter().skip(which).step_by(2).copied().collect() };
    let baseline = pick(baseline);
    let columns: Vec<(&str, Vec<f64>)> = columns.iter().map(|(n, v)| (*n, pick(v))).collect();
    let pct = |x: f64, base: f64| (x / base - 1.0) * 100.0;
    print!("\n{:<22} {:>10}", format!("{name} time (ms)"), "none");
    for (n, _) in &columns {
        print!(" {:>12} {:>8}", n, "+");
    }
    println!();
    let row = |label: &str, base: f64, values: Vec<f64>| {
        print!("{label:<22} {base:>10.1}");
        for v in values {
            print!(" {:>12.1} {:>7.1}%", v, pct(v, base));
        }
        println!();
    };
    for (i, phase) in PHASES.iter().enumerate() {
        row(
            phase,
            baseline[i],
            columns.iter().map(|(_, v)| v[i]).collect(),
        );
    }
    let total = |v: &[f64]| v.iter().sum::<f64>();
    let b = total(&baseline);
    row("total", b, columns.iter().map(|(_, v)| total(v)).collect());
    let a = total(&columns[0].1);
    for (n, v) in &columns[1..] {
        let p = total(v);
        let share = if a > b { (p - b) / (a - b) } else { f64::NAN };
        println!(
            "{name}: {n} adds {:.1}%, auditd {:.1}%; its cost is {:.2} of auditd's",
            pct(p, b),
            pct(a, b),
            share
        );
    }
}

fn keep_best(best: &mut [f64], times: Vec<f64>) {
    for (b, t) in best.iter_mut().zip(times) {
        *b = b.min(t);
    }
}

/// One run of the workload in a new process: its phase times in ms.
fn run_workload(scratch: &Path) -> anyhow::Result<Vec<f64>> {
    let out = Command::new(scratch.join("workload"))
        .arg(scratch)
        .stderr(Stdio::inherit())
        .output()
        .context("run the workload")?;
    if !out.status.success() {
        bail!("the workload failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    let times: Vec<f64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("workload output {text:?}"))?;
    if times.len() != 2 * PHASES.len() {
        bail!("workload output {text:?}");
    }
    Ok(times)
}

/// The shipped rules as auditctl arguments, from dockwatch itself.
fn audit_rules(dockwatch: &Path, rules: &Path) -> anyhow::Result<Vec<Vec<String>>> {
    let out = Command::new(dockwatch)
        .args(["rules", "--rules"])
        .arg(rules)
        .arg("auditctl")
        .output()
        .context("dockwatch rules auditctl")?;
    if !out.status.success() {
        bail!(
            "dockwatch rules auditctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect())
}

fn audit_enabled() -> anyhow::Result<bool> {
    let out = Command::new("auditctl")
        .arg("-s")
        .output()
        .context("run auditctl (apt-get install auditd)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "enabled 1"))
}

fn auditctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("auditctl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run auditctl (apt-get install auditd)")?;
    if !status.success() {
        bail!("auditctl {args:?} failed");
    }
    Ok(())
}

/// A private auditd with the watch rules; stopped, rules deleted, on drop.
struct Auditd {
    child: Child,
}

impl Auditd {
    fn start(scratch: &Path, rules: &[Vec<String>]) -> anyhow::Result<Auditd> {
        let dir = scratch.join("auditd");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("audit.log");
        std::fs::write(
            dir.join("auditd.conf"),
            format!(
                "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_group = root\n\
                 log_format = ENRICHED\nflush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 512\n\
                 num_logs = 30\npriority_boost = 4\nname_format = NONE\n\
                 max_log_file_action = IGNORE\nspace_left = 75\nspace_left_action = IGNORE\n\
                 admin_space_left = 50\nadmin_space_left_action = IGNORE\n\
                 disk_full_action = IGNORE\ndisk_error_action = IGNORE\nuse_libwrap = no\n\
                 tcp_listen_queue = 5\ntcp_max_per_addr = 1\ntcp_client_max_idle = 0\n\
                 transport = TCP\ndistribute_network = no\nq_depth = 2000\n\
                 overflow_action = SYSLOG\nmax_restarts = 10\nplugin_dir = /etc/audit/plugins.d\n\
                 end_of_event_timeout = 2\n",
                log.display()
            ),
        )?;
        let child = Command::new("auditd")
            .args(["-n", "-c"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start auditd (apt-get install auditd)")?;
        let auditd = Auditd { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("DAEMON_START")) {
            if Instant::now() > deadline {
                bail!("auditd did not start logging within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        auditctl(&["-D"])?;
        for rule in rules {
            let args: Vec<&str> = rule.iter().map(String::as_str).collect();
            // auditd cannot watch a path whose directory is missing.
            if let Err(e) = auditctl(&args) {
                eprintln!("skipped: {e:#}");
            }
        }
        auditctl(&["-e", "1"])?;
        Ok(auditd)
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        let _ = auditctl(&["-D"]);
        send_signal(self.child.id(), 15);
        let _ = self.child.wait();
    }
}

/// dockwatch's probes with the shipped rules, audit off, and the hook set
/// `hooks`.
struct Dockwatch {
    child: Child,
}

impl Dockwatch {
    fn start(exe: &Path, rules: &Path, scratch: &Path, hooks: &str) -> anyhow::Result<Dockwatch> {
        let config = scratch.join("config.toml");
        std::fs::write(
            &config,
            format!("[sources.audit]\nmode = \"off\"\n[sources.ebpf]\nhooks = \"{hooks}\"\n"),
        )?;
        let mut child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--rules")
            .arg(rules)
            .arg("--output")
            .arg(format!("file://{}", scratch.join("alerts.jsonl").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start dockwatch")?;
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut daemon = Dockwatch { child };
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("dockwatch ready") => break,
                Some(Ok(_)) => {}
                _ => {
                    let status = daemon.child.wait()?;
                    bail!("dockwatch exited before it was ready: {status}");
                }
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(daemon)
    }
}

impl Drop for Dockwatch {
    fn drop(&mut self) {
        send_signal(self.child.id(), 15);
        let _ = self.child.wait();
    }
}

/// kill(2) through the `kill` utility: xtask has no libc dependency.
fn send_signal(pid: u32, signal: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// The machine-wide test lock (see tests/src/lib.rs): auditd and probes
/// are machine state.
fn machine_lock() -> anyhow::Result<File> {
    std::fs::create_dir_all("/run/lock")?;
    let file = File::options()
        .create(true)
        .append(true)
        .open("/run/lock/dockwatch-tests.lock")?;
    file.lock()?;
    Ok(file)
}

fn tempdir() -> anyhow::Result<TempDir> {
    let path = std::env::temp_dir().join(format!("dockwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir(path))
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo_root() -> anyhow::Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the repository")?
        .to_path_buf())
}
