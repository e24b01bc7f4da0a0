//! A flood (say 100k writes in a second by one process under one rule)
//! becomes a bounded number of alerts carrying counts; nothing is lost from
//! the counts, and quiet keys are forgotten. Event-level, synthetic clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dockwatch::alert::Alert;
use dockwatch::event::{Action, Event, FileRef, Process, Source};
use dockwatch::pipeline::{Pipeline, PipelineConfig};
use dockwatch::rules::RuleSet;
use dockwatch_tests::shipped_rules;

const BURST: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);

fn pipeline(correlating: bool, max_keys: usize) -> Pipeline {
    let rules = Arc::new(RuleSet::load_dir(&shipped_rules()).unwrap());
    let config = PipelineConfig {
        flood_burst: BURST,
        flood_window_ms: WINDOW.as_millis() as u64,
        flood_max_keys: max_keys,
        ..PipelineConfig::default()
    };
    Pipeline::new(rules, &config, "test-host".into()).correlating(correlating)
}

fn write(source: Source, pid: u32) -> Event {
    let mut event = Event::new(source, Action::Write);
    event.file = Some(FileRef::new(&b"/etc/docker/daemon.json"[..]));
    event.process = Process {
        pid,
        exe: Some("/usr/bin/dd".into()),
        ..Process::default()
    };
    event
}

/// Drives the pipeline as the daemon does: tick at each deadline passed.
fn drive(p: &mut Pipeline, now: Instant, out: &mut Vec<Alert>) {
    while let Some(at) = p.next_deadline() {
        if at > now {
            break;
        }
        p.tick(at, out);
    }
}

fn total(alerts: &[Alert]) -> u64 {
    alerts.iter().map(|a| a.count).sum()
}

#[test]
fn hundred_thousand_writes_in_a_second_become_a_few_counted_alerts() {
    let mut p = pipeline(false, 1024);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..100_000u32 {
        let now = t0 + Duration::from_micros(i as u64 * 9); // 0.9 s
        drive(&mut p, now, &mut out);
        p.push(write(Source::Ebpf, 4242), now, &mut out);
    }
    assert_eq!(out.len(), BURST as usize, "the burst passes at once");
    drive(&mut p, t0 + WINDOW, &mut out);
    assert_eq!(out.len(), BURST as usize + 1, "then one summary");
    let summary = out.last().unwrap();
    assert_eq!(summary.count, 100_000 - BURST as u64);
    assert_eq!(total(&out), 100_000, "every write is counted");
    let json: serde_json::Value = serde_json::from_str(&summary.to_json()).unwrap();
    assert_eq!(json["event"]["count"], 100_000 - BURST as u64);
    assert_eq!(json["rule"]["id"], "docker-config-write");
    assert_eq!(json["process"]["pid"], 4242);
}

#[test]
fn a_lasting_flood_yields_one_summary_per_window_then_is_forgotten() {
    let mut p = pipeline(false, 1024);
    let t0 = Instant::now();
    let mut out = Vec::new();
    // 10k writes a second for five seconds.
    for i in 0..50_000u64 {
        let now = t0 + Duration::from_micros(i * 100);
        drive(&mut p, now, &mut out);
        p.push(write(Source::Ebpf, 7), now, &mut out);
    }
    drive(&mut p, t0 + WINDOW * 7, &mut out);
    assert!(
        out.len() <= BURST as usize + 6,
        "{} alerts for a 5 s flood",
        out.len()
    );
    assert_eq!(total(&out), 50_000);
    assert_eq!(p.held(), (0, 0), "quiet key forgotten");

    // Once quiet, the next write is an alert of its own again.
    let later = t0 + WINDOW * 10;
    p.push(write(Source::Ebpf, 7), later, &mut out);
    assert_eq!(out.last().unwrap().count, 1);
}

#[test]
fn processes_are_counted_apart() {
    let mut p = pipeline(false, 1024);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for pid in [1, 2, 3] {
        for _ in 0..100 {
            p.push(write(Source::Ebpf, pid), t0, &mut out);
        }
    }
    p.flush(&mut out);
    assert_eq!(out.len(), 3 * (BURST as usize + 1));
    for pid in [1, 2, 3] {
        let mine: Vec<&Alert> = out.iter().filter(|a| a.event.process.pid == pid).collect();
        assert_eq!(mine.iter().map(|a| a.count).sum::<u64>(), 100);
    }
}

#[test]
fn tracked_keys_are_bounded() {
    let mut p = pipeline(false, 64);
    let t0 = Instant::now();
    let mut out = Vec::new();
    // A fork storm: every write from a new pid.
    for pid in 0..100_000u32 {
        p.push(write(Source::Ebpf, pid), t0, &mut out);
    }
    assert!(p.held().1 <= 65, "{} keys tracked", p.held().1);
    p.flush(&mut out);
    assert!(out.len() < 64 + BURST as usize + 2, "{} alerts", out.len());
    assert_eq!(total(&out), 100_000);
}

#[test]
fn a_flood_seen_by_both_sources_is_counted_once() {
    let mut p = pipeline(true, 1024);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..20_000u64 {
        let now = t0 + Duration::from_micros(i * 40);
        drive(&mut p, now, &mut out);
        p.push(write(Source::Ebpf, 9), now, &mut out);
        p.push(write(Source::Audit, 9), now, &mut out);
    }
    drive(&mut p, t0 + WINDOW * 4, &mut out);
    p.flush(&mut out);
    assert!(out.len() <= BURST as usize + 2, "{} alerts", out.len());
    assert_eq!(total(&out), 20_000, "pairs count once");
    assert!(out
        .iter()
        .all(|a| a.providers == [Source::Ebpf, Source::Audit]));
}
