//! The same action seen by eBPF and by audit becomes one alert naming both
//! providers, within a bounded window; without a twin, each alert leaves
//! alone when the window closes. Event-level, through the library's
//! pipeline, with a synthetic clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dockwatch::alert::Alert;
use dockwatch::event::{Action, Event, FileRef, Process, Source};
use dockwatch::pipeline::{Pipeline, PipelineConfig};
use dockwatch::rules::RuleSet;
use dockwatch_tests::shipped_rules;

const WINDOW: Duration = Duration::from_millis(500);

fn pipeline(correlating: bool, config: PipelineConfig) -> Pipeline {
    let rules = Arc::new(RuleSet::load_dir(&shipped_rules()).unwrap());
    Pipeline::new(rules, &config, "test-host".into()).correlating(correlating)
}

fn config() -> PipelineConfig {
    PipelineConfig {
        correlation_window_ms: WINDOW.as_millis() as u64,
        ..PipelineConfig::default()
    }
}

/// The write of daemon.json as each source reports it: eBPF knows the
/// container, audit knows the login uid and the audit id.
fn write(source: Source, pid: u32) -> Event {
    let mut event = Event::new(source, Action::OpenWrite);
    event.file = Some(FileRef::new(&b"/etc/docker/daemon.json"[..]));
    event.process = Process {
        pid,
        uid: Some(0),
        exe: Some("/usr/bin/touch".into()),
        ..Process::default()
    };
    match source {
        Source::Ebpf => event.process.container_id = Some("c0ffee".into()),
        Source::Audit => {
            event.process.auid = Some(1000);
            event.audit_key = Some("docker-config-write".into());
        }
        Source::Mounts | Source::Monitor => {}
    }
    event
}

fn json(alert: &Alert) -> serde_json::Value {
    serde_json::from_str(&alert.to_json()).unwrap()
}

#[test]
fn both_sources_make_one_alert_naming_both() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(write(Source::Ebpf, 42), t0, &mut out);
    assert!(out.is_empty(), "held for its twin");
    assert_eq!(p.next_deadline(), Some(t0 + WINDOW));

    p.push(
        write(Source::Audit, 42),
        t0 + Duration::from_millis(120),
        &mut out,
    );
    assert_eq!(out.len(), 1, "merged as soon as the twin arrives");
    let alert = json(&out[0]);
    assert_eq!(
        alert["event"]["provider"],
        serde_json::json!(["ebpf", "audit"])
    );
    assert_eq!(alert["rule"]["id"], "docker-config-write");
    assert_eq!(alert["container"]["id"], "c0ffee", "from eBPF");
    assert_eq!(alert["user"]["audit"]["id"], "1000", "from audit");
    assert_eq!(alert["file"]["path"], "/etc/docker/daemon.json");

    out.clear();
    p.tick(t0 + WINDOW * 2, &mut out);
    p.flush(&mut out);
    assert!(out.is_empty(), "nothing left over: {out:?}");
    assert_eq!(p.held(), (0, 0), "and the quiet flood key is forgotten");
}

#[test]
fn audit_first_works_the_same() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(write(Source::Audit, 42), t0, &mut out);
    p.push(
        write(Source::Ebpf, 42),
        t0 + Duration::from_millis(499),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].providers, [Source::Ebpf, Source::Audit]);
}

#[test]
fn a_twin_too_late_makes_two_alerts() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(write(Source::Ebpf, 42), t0, &mut out);
    p.tick(t0 + WINDOW - Duration::from_millis(1), &mut out);
    assert!(out.is_empty(), "still inside the window");
    p.tick(t0 + WINDOW, &mut out);
    assert_eq!(out.len(), 1, "released alone when the window closes");
    assert_eq!(out[0].providers, [Source::Ebpf]);
    p.push(write(Source::Audit, 42), t0 + WINDOW * 2, &mut out);
    p.tick(t0 + WINDOW * 3, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].providers, [Source::Audit]);
}

#[test]
fn different_processes_are_not_merged() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(write(Source::Ebpf, 42), t0, &mut out);
    p.push(write(Source::Audit, 43), t0, &mut out);
    p.push(write(Source::Ebpf, 42), t0, &mut out);
    assert!(out.is_empty());
    p.flush(&mut out);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|a| a.providers.len() == 1));
}

#[test]
fn repeated_actions_pair_up_in_order() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    for _ in 0..3 {
        p.push(write(Source::Ebpf, 42), t0, &mut out);
    }
    for _ in 0..3 {
        p.push(write(Source::Audit, 42), t0, &mut out);
    }
    assert_eq!(out.len(), 3);
    assert!(out
        .iter()
        .all(|a| a.providers == [Source::Ebpf, Source::Audit]));
    assert_eq!(p.held().0, 0);
}

#[test]
fn with_one_source_alerts_are_not_held() {
    let mut p = pipeline(false, config());
    let mut out = Vec::new();
    p.push(write(Source::Audit, 42), Instant::now(), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(p.next_deadline().map(|_| ()), Some(()), "flood window only");
    assert_eq!(p.held().0, 0);
}

#[test]
fn held_alerts_are_bounded() {
    let mut p = pipeline(
        true,
        PipelineConfig {
            correlation_max_held: 100,
            flood_window_ms: 0,
            ..config()
        },
    );
    let t0 = Instant::now();
    let mut out = Vec::new();
    for pid in 0..1000 {
        p.push(write(Source::Ebpf, pid), t0, &mut out);
    }
    assert_eq!(p.held().0, 100);
    assert_eq!(out.len(), 900, "the oldest leave early, none are lost");
    assert_eq!(out[0].event.process.pid, 0);
    p.flush(&mut out);
    assert_eq!(out.len(), 1000);
}
