//! The same action seen by eBPF and by audit is one alert, and the first
//! sighting is never held: eBPF's alert leaves at once and audit's twin is
//! folded into it; an audit alert eBPF has not seen waits only a short hold
//! for it. Twins match across differing action names (`create` vs
//! `open_write`) and differing rules. Event-level, through the library's
//! pipeline, with a synthetic clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dockwatch::alert::Alert;
use dockwatch::event::{Action, Event, FileRef, Process, Source};
use dockwatch::pipeline::{Pipeline, PipelineConfig};
use dockwatch::rules::RuleSet;
use dockwatch_tests::shipped_rules;

const WINDOW: Duration = Duration::from_millis(500);
const HOLD: Duration = Duration::from_millis(2);

fn pipeline(correlating: bool, config: PipelineConfig) -> Pipeline {
    let rules = Arc::new(RuleSet::load_dir(&shipped_rules()).unwrap());
    Pipeline::new(rules, &config, "test-host".into()).correlating(correlating)
}

fn config() -> PipelineConfig {
    PipelineConfig {
        correlation_window_ms: WINDOW.as_millis() as u64,
        correlation_hold_ms: HOLD.as_millis() as u64,
        flood_window_ms: 0,
        ..PipelineConfig::default()
    }
}

/// `action` on `path` as each source reports it: eBPF knows the container,
/// audit knows the login uid and the audit id.
fn sighting(source: Source, pid: u32, action: Action, path: &str) -> Event {
    let mut event = Event::new(source, action);
    event.file = Some(FileRef::new(path.as_bytes().to_vec()));
    event.process = Process {
        pid,
        uid: Some(0),
        exe: Some("/usr/bin/touch".into()),
        ..Process::default()
    };
    match source {
        Source::Ebpf => event.process.container_id = Some("c0ffee".repeat(10) + "c0ff"),
        Source::Audit => {
            event.process.auid = Some(1000);
            event.audit_key = Some("docker-config-write".into());
        }
        Source::Docker | Source::Mounts | Source::Monitor => {}
    }
    event
}

fn write(source: Source, pid: u32) -> Event {
    sighting(source, pid, Action::OpenWrite, "/etc/docker/daemon.json")
}

fn json(alert: &Alert) -> serde_json::Value {
    serde_json::from_str(&alert.to_json()).unwrap()
}

#[test]
fn ebpf_first_leaves_at_once_and_the_audit_twin_is_folded() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(write(Source::Ebpf, 42), t0, &mut out);
    assert_eq!(out.len(), 1, "not held for its twin");
    assert_eq!(p.held().0, 0);
    let alert = json(&out[0]);
    assert_eq!(alert["event"]["provider"], serde_json::json!(["ebpf"]));
    assert_eq!(alert["rule"]["id"], "docker-config-write");
    assert_eq!(alert["file"]["path"], "/etc/docker/daemon.json");

    p.push(
        write(Source::Audit, 42),
        t0 + Duration::from_millis(120),
        &mut out,
    );
    assert_eq!(out.len(), 1, "the twin is folded, not sent");
    assert_eq!(p.folded(), 1);

    p.tick(t0 + WINDOW * 2, &mut out);
    p.flush(&mut out);
    assert_eq!(out.len(), 1, "nothing left over: {out:?}");
    assert_eq!(p.held(), (0, 0));
    assert_eq!(p.next_deadline(), None, "and the sighting is forgotten");
}

#[test]
fn audit_first_is_held_only_briefly_and_merged_with_its_ebpf_twin() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(write(Source::Audit, 42), t0, &mut out);
    assert!(out.is_empty(), "held for eBPF's sighting");
    assert_eq!(p.next_deadline(), Some(t0 + HOLD));
    p.push(
        write(Source::Ebpf, 42),
        t0 + Duration::from_millis(1),
        &mut out,
    );
    assert_eq!(out.len(), 1, "merged as soon as the twin arrives");
    let alert = json(&out[0]);
    assert_eq!(
        alert["event"]["provider"],
        serde_json::json!(["ebpf", "audit"])
    );
    assert!(alert["container"]["id"].is_string(), "from eBPF: {alert}");
    assert_eq!(alert["user"]["audit"]["id"], "1000", "from audit");
    assert_eq!(p.held().0, 0);
}

#[test]
fn audit_alone_leaves_when_the_hold_ends_and_a_late_ebpf_twin_is_folded() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(write(Source::Audit, 42), t0, &mut out);
    p.tick(t0 + HOLD - Duration::from_micros(1), &mut out);
    assert!(out.is_empty(), "still inside the hold");
    p.tick(t0 + HOLD, &mut out);
    assert_eq!(out.len(), 1, "released alone when the hold ends");
    assert_eq!(out[0].providers, [Source::Audit]);
    p.push(
        write(Source::Ebpf, 42),
        t0 + Duration::from_millis(100),
        &mut out,
    );
    assert_eq!(out.len(), 1, "one action, one alert");
    assert_eq!(p.folded(), 1);
}

#[test]
fn a_twin_after_the_window_is_an_alert_of_its_own() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(write(Source::Ebpf, 42), t0, &mut out);
    p.push(write(Source::Audit, 42), t0 + WINDOW, &mut out);
    p.tick(t0 + WINDOW + HOLD, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].providers, [Source::Audit]);
    assert_eq!(p.folded(), 0);
}

#[test]
fn twins_naming_the_action_differently_are_one_alert() {
    // An O_CREAT open: `create` to the eBPF probes, `open_write` to audit.
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    let path = "/etc/docker/new.json";
    p.push(
        sighting(Source::Ebpf, 42, Action::Create, path),
        t0,
        &mut out,
    );
    p.push(
        sighting(Source::Audit, 42, Action::OpenWrite, path),
        t0,
        &mut out,
    );
    // And a chmod that the two call by their own names of the attribute class.
    p.push(
        sighting(Source::Ebpf, 42, Action::Chmod, path),
        t0,
        &mut out,
    );
    p.push(
        sighting(Source::Audit, 42, Action::Chown, path),
        t0,
        &mut out,
    );
    p.flush(&mut out);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[0].event.action, Action::Create);
    assert_eq!(out[1].event.action, Action::Chmod);
    assert_eq!(p.folded(), 2);

    // A rename is no write: different action classes stay two alerts.
    let mut p = pipeline(true, config());
    let mut out = Vec::new();
    p.push(
        sighting(Source::Ebpf, 42, Action::Create, path),
        t0,
        &mut out,
    );
    p.push(
        sighting(Source::Audit, 42, Action::Rename, path),
        t0,
        &mut out,
    );
    p.flush(&mut out);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(p.folded(), 0);
}

/// A connect to docker.sock from a container, as audit reports it when it
/// could not tell the container (the process gone before /proc was read).
fn connect(source: Source, pid: u32) -> Event {
    let mut event = sighting(source, pid, Action::Connect, "/var/run/docker.sock");
    event.process.exe = Some("/bin/busybox".into());
    event
}

#[test]
fn twins_matching_different_rules_are_one_alert_under_the_container_rule() {
    // eBPF first: its container rule leaves at once; audit's is folded.
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(connect(Source::Ebpf, 7), t0, &mut out);
    p.push(
        connect(Source::Audit, 7),
        t0 + Duration::from_millis(30),
        &mut out,
    );
    p.flush(&mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].rule.id, "docker-sock-connect-from-container");
    assert_eq!(p.folded(), 1);

    // Audit first: held, then merged under the rule that used the
    // container context, whichever came first.
    let mut p = pipeline(true, config());
    let mut out = Vec::new();
    p.push(connect(Source::Audit, 7), t0, &mut out);
    p.push(
        connect(Source::Ebpf, 7),
        t0 + Duration::from_millis(1),
        &mut out,
    );
    p.flush(&mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    let alert = json(&out[0]);
    assert_eq!(alert["rule"]["id"], "docker-sock-connect-from-container");
    assert_eq!(
        alert["event"]["provider"],
        serde_json::json!(["ebpf", "audit"])
    );
    assert_eq!(alert["user"]["audit"]["id"], "1000", "from audit");
}

#[test]
fn different_processes_are_not_folded() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    p.push(write(Source::Ebpf, 42), t0, &mut out);
    p.push(write(Source::Audit, 43), t0, &mut out);
    p.push(write(Source::Ebpf, 42), t0, &mut out);
    p.flush(&mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(p.folded(), 0);
}

#[test]
fn repeated_actions_pair_up_one_for_one() {
    let mut p = pipeline(true, config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    for _ in 0..3 {
        p.push(write(Source::Ebpf, 42), t0, &mut out);
    }
    for _ in 0..4 {
        p.push(write(Source::Audit, 42), t0, &mut out);
    }
    p.flush(&mut out);
    assert_eq!(out.len(), 4, "three pairs and one audit sighting alone");
    assert_eq!(p.folded(), 3);
    assert_eq!(out[3].providers, [Source::Audit]);
}

#[test]
fn with_one_source_nothing_is_held_or_remembered() {
    let mut p = pipeline(false, config());
    let mut out = Vec::new();
    p.push(write(Source::Audit, 42), Instant::now(), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(p.next_deadline(), None);
    assert_eq!(p.held().0, 0);
}

#[test]
fn remembered_sightings_are_bounded() {
    let mut p = pipeline(
        true,
        PipelineConfig {
            correlation_max_held: 100,
            ..config()
        },
    );
    let t0 = Instant::now();
    let mut out = Vec::new();
    for pid in 0..1000 {
        p.push(write(Source::Audit, pid), t0, &mut out);
    }
    assert_eq!(p.held().0, 100, "the oldest held leave early");
    assert_eq!(out.len(), 900, "none are lost");
    assert_eq!(out[0].event.process.pid, 0);
    // The sightings of the oldest were forgotten: their twins are alerts
    // of their own (never lost); the remembered ones still merge.
    for pid in (0..1000).rev() {
        p.push(write(Source::Ebpf, pid), t0, &mut out);
    }
    p.flush(&mut out);
    assert_eq!(out.len(), 1900, "100 merged, 900 eBPF alone");
    assert_eq!(out.iter().filter(|a| a.providers.len() == 2).count(), 100);
}
