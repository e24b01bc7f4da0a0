//! A flood (say 100k writes in a second by one process under one rule)
//! becomes a bounded number of alerts carrying counts; nothing is lost from
//! the counts, and quiet keys are forgotten. Event-level, synthetic clock.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Event time of the first event; each test's clock starts with it.
fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_869_685)
}

/// A write `offset` into the test, by event time.
fn write_at(source: Source, pid: u32, offset: Duration) -> Event {
    let mut event = write(source, pid);
    event.time = epoch() + offset;
    event
}

fn write(source: Source, pid: u32) -> Event {
    let mut event = Event::new(source, Action::Write);
    event.time = epoch();
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
        let offset = Duration::from_micros(i as u64 * 9); // 0.9 s
        drive(&mut p, t0 + offset, &mut out);
        p.push(write_at(Source::Ebpf, 4242, offset), t0 + offset, &mut out);
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
        let offset = Duration::from_micros(i * 100);
        drive(&mut p, t0 + offset, &mut out);
        p.push(write_at(Source::Ebpf, 7, offset), t0 + offset, &mut out);
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
    let later = WINDOW * 10;
    p.push(write_at(Source::Ebpf, 7, later), t0 + later, &mut out);
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
        let offset = Duration::from_micros(i * 40);
        drive(&mut p, t0 + offset, &mut out);
        p.push(write_at(Source::Ebpf, 9, offset), t0 + offset, &mut out);
        p.push(write_at(Source::Audit, 9, offset), t0 + offset, &mut out);
    }
    drive(&mut p, t0 + WINDOW * 4, &mut out);
    p.flush(&mut out);
    assert!(out.len() <= BURST as usize + 2, "{} alerts", out.len());
    assert_eq!(total(&out), 20_000, "pairs count once");
    assert!(
        out.iter().all(|a| a.providers == [Source::Ebpf]),
        "audit's twins are folded into eBPF's alerts"
    );
}

/// Replay: a year of archived writes passes in a moment of clock time; only
/// what happened within one window of event time is folded together.
#[test]
fn replayed_events_are_windowed_by_event_time() {
    let mut p = pipeline(false, 1024);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..100u64 {
        // One write every 10 s of event time, all pushed at once.
        p.push(
            write_at(Source::Audit, 5, Duration::from_secs(i * 10)),
            t0,
            &mut out,
        );
    }
    // And a burst of 1000 within one event-time second.
    for i in 0..1000u64 {
        let offset = Duration::from_secs(2000) + Duration::from_micros(i);
        p.push(write_at(Source::Audit, 5, offset), t0, &mut out);
    }
    p.flush(&mut out);
    assert_eq!(out.len(), 100 + BURST as usize + 1);
    assert!(out[..100].iter().all(|a| a.count == 1));
    assert_eq!(out.last().unwrap().count, 1000 - BURST as u64);
}
