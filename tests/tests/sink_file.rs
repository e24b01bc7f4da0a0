//! The `file://` output under logrotate: every alert lands in exactly one
//! file, in order, whether logrotate signals dockwatch (SIGHUP) or not.
//!
//! Run as root: `cargo build -p dockwatch-tests --bins && cargo test -p
//! dockwatch-tests --test sink_file`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dockwatch_tests::rsyslog::push_bin;
use serde_json::Value;

fn seqs_in(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let alert: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", path.display()));
            let path = alert["file"]["path"].as_str().unwrap().to_string();
            path.strip_prefix("/etc/docker/seq/")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

fn logrotate(dir: &Path, conf: &str) {
    let conf_path = dir.join("logrotate.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let status = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(dir.join("logrotate.state"))
        .arg(&conf_path)
        .status()
        .expect("run logrotate (apt-get install logrotate)");
    assert!(status.success(), "logrotate failed: {status}");
}

#[test]
fn logrotate_mid_stream_puts_each_alert_in_exactly_one_file() {
    // Only private files: no machine lock needed.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alerts.jsonl");
    let mut push = Command::new(push_bin())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--url")
        .arg(format!("file://{}", log.display()))
        .args(["--count", "10000", "--rate", "4000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn dw-push");
    let pid = push.id();
    let wait_lines = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < n {
            assert!(Instant::now() < deadline, "alerts stopped arriving");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // First rotation the common way: rename, create, SIGHUP.
    wait_lines(2000);
    logrotate(
        dir.path(),
        &format!(
            "{} {{\n  rotate 5\n  nocompress\n  create 0640\n  postrotate\n    kill -HUP {pid}\n  endscript\n}}\n",
            log.display()
        ),
    );
    // Second: rename only, no signal; dockwatch notices the move itself.
    wait_lines(2000);
    logrotate(
        dir.path(),
        &format!("{} {{\n  rotate 5\n  nocompress\n}}\n", log.display()),
    );
    let status = push.wait().unwrap();
    assert!(status.success(), "dw-push failed: {status}");

    let oldest = seqs_in(&dir.path().join("alerts.jsonl.2"));
    let middle = seqs_in(&dir.path().join("alerts.jsonl.1"));
    let current = seqs_in(&log);
    assert!(!oldest.is_empty() && !middle.is_empty() && !current.is_empty());
    let all: Vec<u64> = oldest
        .iter()
        .chain(&middle)
        .chain(&current)
        .copied()
        .collect();
    // In order across the three files means: nothing was written into a
    // moved file after the first alert reached its successor.
    assert_eq!(
        all,
        (0..10_000).collect::<Vec<u64>>(),
        "each alert exactly once, in order"
    );
    eprintln!(
        "split {} / {} / {}",
        oldest.len(),
        middle.len(),
        current.len()
    );
}
