//! `cargo xtask bench replay`: `dockwatch replay` throughput on one core.
//!
//! The corpus is made of real captures (the shared ENRICHED capture and the
//! RAW and ENRICHED captures of tests/fixtures/audit/scenario.sh), repeated
//! with fresh serials and timestamps until it holds at least a million
//! records, so every copy is a distinct event to reassemble. The replay runs
//! pinned to one CPU with a rule that matches every path, so every event is
//! parsed, reassembled, matched and rendered as JSON. The baseline, in the
//! same run, is the cheapest possible pass over the same bytes: reading
//! them and counting lines with memchr.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Records the corpus holds at least.
const MIN_RECORDS: u64 = 1_000_000;

/// laurel's throughput on a corpus of this kind on this machine (records/s).
const LAUREL: f64 = 267_000.0;

const RULES: &str = "rules:
  - id: everything
    name: Any file activity
    severity: info
    paths: [/]
    actions: [open_write, write, truncate, chmod, chown, setxattr, rename, unlink, create, link, symlink, mkdir, mknod, connect, exec]
";

pub fn run() -> anyhow::Result<()> {
    let root = crate::root();
    let work = root.join("target/bench-replay");
    std::fs::create_dir_all(work.join("rules"))?;
    std::fs::write(work.join("rules/all.yaml"), RULES)?;
    let corpus = work.join("corpus.log");
    let sources = [
        root.join("../shared/fixtures/audit/enriched-docker-watches.log"),
        root.join("tests/fixtures/audit/scenario-raw.log"),
        root.join("tests/fixtures/audit/scenario-enriched.log"),
    ];
    let (records, bytes) = build_corpus(&sources, &corpus)?;
    eprintln!(
        "corpus: {} records, {:.1} MB in {}",
        records,
        bytes as f64 / 1e6,
        corpus.display()
    );

    // Warm the page cache so both passes read from memory.
    let (baseline, lines) = best_of(5, || count_lines(&corpus))?;
    if lines != records {
        bail!("corpus has {lines} lines, expected {records}");
    }
    let bin = crate::dockwatch_release();
    // Timed runs deliver to /dev/null, so the figure is dockwatch's work
    // and not the disk's; one untimed run to a file counts the alerts.
    let alerts = work.join("alerts.jsonl");
    replay_once(&bin, &work, &corpus, &alerts)?;
    let produced = count_lines(&alerts)?;
    let (replay, ()) = best_of(5, || {
        replay_once(&bin, &work, &corpus, Path::new("/dev/null"))
    })?;

    let mbs = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    let rps = |d: Duration| records as f64 / d.as_secs_f64();
    println!(
        "bench replay ({records} records, {:.1} MB, one CPU)",
        bytes as f64 / 1e6
    );
    println!(
        "  baseline  read + memchr line count   {:>8.3} s  {:>12.0} records/s  {:>8.1} MB/s",
        baseline.as_secs_f64(),
        rps(baseline),
        mbs(baseline)
    );
    println!(
        "  dockwatch replay (parse, reassemble, match, JSON) {:>8.3} s  {:>12.0} records/s  {:>8.1} MB/s  ({produced} alerts)",
        replay.as_secs_f64(),
        rps(replay),
        mbs(replay)
    );
    println!(
        "  ratios: replay / baseline time {:.1}x; replay vs laurel (~{:.0}k records/s) {:.1}x",
        replay.as_secs_f64() / baseline.as_secs_f64(),
        LAUREL / 1e3,
        rps(replay) / LAUREL
    );
    Ok(())
}

fn best_of<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Duration, T)> {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f()?;
        let took = start.elapsed();
        if best.as_ref().is_none_or(|(b, _)| took < *b) {
            best = Some((took, out));
        }
    }
    Ok(best.expect("at least one run"))
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

fn replay_once(bin: &Path, work: &Path, corpus: &Path, alerts: &Path) -> anyhow::Result<()> {
    if alerts != Path::new("/dev/null") {
        let _ = std::fs::remove_file(alerts);
    }
    let status = Command::new("taskset")
        .args(["-c", "0"])
        .arg(bin)
        .arg("replay")
        .arg("--rules")
        .arg(work.join("rules"))
        .arg("--output")
        .arg(format!("file://{}", alerts.display()))
        .arg(corpus)
        .env("DOCKWATCH_LOG", "error")
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {} (build it first)", bin.display()))?;
    if !status.success() {
        bail!("dockwatch replay failed: {status}");
    }
    Ok(())
}

/// Writes the corpus unless an identical one is there; returns its record
/// and byte counts.
fn build_corpus(sources: &[PathBuf], out: &Path) -> anyhow::Result<(u64, u64)> {
    let mut captures = Vec::new();
    for source in sources {
        let text = std::fs::read(source)
            .with_context(|| format!("cannot read the capture {}", source.display()))?;
        captures.push(text);
    }
    let per_round: u64 = captures
        .iter()
        .map(|c| memchr::memchr_iter(b'\n', c).count() as u64)
        .sum();
    let rounds = MIN_RECORDS.div_ceil(per_round);
    let records = rounds * per_round;
    if let Ok(existing) = std::fs::metadata(out) {
        if count_lines(out)? == records {
            return Ok((records, existing.len()));
        }
    }
    let mut w = BufWriter::with_capacity(1 << 20, File::create(out)?);
    // Every copy gets its own serials and a later time, as a long-running
    // host's log would.
    let mut serial_base = 1_000_000u64;
    let mut secs_base = 1_800_000_000u64;
    let mut line = Vec::with_capacity(16 * 1024);
    for _ in 0..rounds {
        for capture in &captures {
            let mut max_serial = 0;
            for raw in capture.split_inclusive(|&b| b == b'\n') {
                line.clear();
                max_serial = max_serial.max(renumber(raw, serial_base, secs_base, &mut line));
                w.write_all(&line)?;
            }
            serial_base += max_serial + 1;
            secs_base += 1;
        }
    }
    w.flush()?;
    Ok((records, std::fs::metadata(out)?.len()))
}

/// Copies `line` with `audit(S.M:N)` → `audit(secs.M:base+N)`; returns N.
fn renumber(line: &[u8], serial_base: u64, secs: u64, out: &mut Vec<u8>) -> u64 {
    let Some(start) = memchr::memmem::find(line, b"audit(") else {
        out.extend_from_slice(line);
        return 0;
    };
    let open = start + "audit(".len();
    let (Some(dot), Some(colon), Some(close)) = (
        memchr::memchr(b'.', &line[open..]).map(|i| open + i),
        memchr::memchr(b':', &line[open..]).map(|i| open + i),
        memchr::memchr(b')', &line[open..]).map(|i| open + i),
    ) else {
        out.extend_from_slice(line);
        return 0;
    };
    let serial: u64 = std::str::from_utf8(&line[colon + 1..close])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    out.extend_from_slice(&line[..open]);
    out.extend_from_slice(secs.to_string().as_bytes());
    out.extend_from_slice(&line[dot..colon + 1]);
    out.extend_from_slice((serial_base + serial).to_string().as_bytes());
    out.extend_from_slice(&line[close..]);
    serial
}
