//! `cargo xtask bench posture`: what keeping the baseline live costs on the
//! event path. The same stream of audit records (writes to
//! /etc/docker/daemon.json, which both a rule and the posture checks depend
//! on) is fed to `dockwatch run` through a log file, once with `[posture]`
//! enabled and once without; the figure is the ratio of the times until
//! every record has become an alert.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const EVENTS: usize = 50_000;
const ROUNDS: usize = 3;
const RULE: &str = "rules:
  - id: bench-write
    name: bench write
    severity: info
    paths: [/etc/docker]
    actions: [open_write]
";

pub fn run() -> anyhow::Result<()> {
    let bin = crate::dockwatch_release();
    let mut off = Vec::new();
    let mut on = Vec::new();
    // Alternate, so a slow moment of the shared machine hits both.
    for _ in 0..ROUNDS {
        off.push(round(&bin, false)?);
        on.push(round(&bin, true)?);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut off), median(&mut on));
    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    println!("bench posture: {EVENTS} audit events on daemon.json, median of {ROUNDS}");
    println!("  posture off: {:>8.0} events/s ({off:?})", rate(off));
    println!("  posture on:  {:>8.0} events/s ({on:?})", rate(on));
    println!(
        "  ratio on/off time: {:.3}",
        on.as_secs_f64() / off.as_secs_f64()
    );
    Ok(())
}

/// One run of `dockwatch run`; the time from the first record written to
/// the last alert out.
fn round(bin: &Path, posture: bool) -> anyhow::Result<Duration> {
    let dir = std::env::temp_dir().join(format!("dockwatch-bench-posture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules"))?;
    std::fs::write(dir.join("rules/bench.yaml"), RULE)?;
    let log = dir.join("audit.log");
    std::fs::write(&log, "")?;
    let alerts = dir.join("alerts.jsonl");
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[sources.ebpf]\nenabled = false\n[sources.audit]\nlog = {log:?}\n[posture]\nenabled = {posture}\n"
        ),
    )?;
    let mut child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("--rules")
        .arg(dir.join("rules"))
        .arg("--output")
        .arg(format!("file://{}", alerts.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    wait_ready(&mut child)?;

    let records = records(EVENTS + 1);
    let started = Instant::now();
    let mut file = OpenOptions::new().append(true).open(&log)?;
    for chunk in records.chunks(64 * 1024) {
        file.write_all(chunk)?;
    }
    drop(file);
    let deadline = started + Duration::from_secs(300);
    let elapsed = loop {
        if count_alerts(&alerts) >= EVENTS {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "only {} of {EVENTS} alerts within 300 s",
                count_alerts(&alerts)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    terminate(&child);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(elapsed)
}

/// SIGTERM through kill(1): xtask has no libc dependency.
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

fn wait_ready(child: &mut Child) -> anyhow::Result<()> {
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("dockwatch ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .context("dockwatch did not log `dockwatch ready` within 30 s")
}

fn count_alerts(path: &Path) -> usize {
    let Ok(text) = std::fs::read(path) else {
        return 0;
    };
    let needle = b"\"id\":\"bench-write\"";
    text.windows(needle.len()).filter(|w| w == needle).count()
}

/// `n` RAW audit events: an openat for write of daemon.json each.
fn records(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 600);
    for serial in 1..=n {
        let stamp = format!("msg=audit(1795869685.{:03}:{serial})", serial % 1000);
        writeln!(
            out,
            "type=SYSCALL {stamp}: arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c \
             a1=7ffc55d41a02 a2=241 a3=1b6 items=1 ppid=1000 pid=1001 auid=1000 uid=0 gid=0 \
             euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm=\"tee\" \
             exe=\"/usr/bin/tee\" key=\"docker\""
        )
        .unwrap();
        writeln!(out, "type=CWD {stamp}: cwd=\"/root\"").unwrap();
        writeln!(
            out,
            "type=PATH {stamp}: item=0 name=\"/etc/docker/daemon.json\" inode=876904 dev=fe:00 \
             mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 \
             cap_fver=0 cap_frootid=0"
        )
        .unwrap();
    }
    out
}
