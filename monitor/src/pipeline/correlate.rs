//! Correlation: the same action seen by both eBPF and audit becomes one
//! alert naming both providers.
//!
//! When both sources run, an alert from one is held for a bounded window,
//! waiting for its twin from the other: same rule, action, process and path.
//! A twin that arrives in time is merged in (each source knows things the
//! other does not: audit the login uid, eBPF the container) and the alert
//! leaves at once; one that does not arrive lets the alert leave alone when
//! the window closes. Memory is bounded: past `cap` held alerts, the oldest
//! leaves early.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::alert::Alert;
use crate::event::{Action, Event, FileRef, Source};

/// What makes two alerts the same action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// The rule, by address: rules live as long as the pipeline.
    rule: usize,
    action: Action,
    pid: u32,
    path: Bytes,
}

impl Key {
    fn of(alert: &Alert) -> Key {
        Key {
            rule: std::sync::Arc::as_ptr(&alert.rule) as usize,
            action: alert.event.action,
            pid: alert.event.process.pid,
            path: alert
                .event
                .file
                .as_ref()
                .map(|f| f.path.clone())
                .unwrap_or_default(),
        }
    }
}

struct Held {
    key: Key,
    alert: Alert,
}

pub(super) struct Correlator {
    enabled: bool,
    window: Duration,
    cap: usize,
    next_seq: u64,
    held: HashMap<u64, Held>,
    /// Held alerts by key, oldest first.
    by_key: HashMap<Key, VecDeque<u64>>,
    /// (deadline, seq) in arrival order; entries of alerts already gone
    /// are skipped when reached.
    expiry: VecDeque<(Instant, u64)>,
}

impl Correlator {
    pub fn new(window: Duration, cap: usize) -> Correlator {
        Correlator {
            enabled: false,
            window,
            cap: cap.max(1),
            next_seq: 0,
            held: HashMap::new(),
            by_key: HashMap::new(),
            expiry: VecDeque::new(),
        }
    }

    /// Correlation makes sense only while both sources run; otherwise
    /// holding alerts would only delay them.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Whether `alert` leaves [`Correlator::push`] at once, as it came: when
    /// correlation is off, or for sources that have no twin.
    pub fn passes(&self, alert: &Alert) -> bool {
        !self.enabled || !matches!(alert.event.source, Source::Ebpf | Source::Audit)
    }

    pub fn push(&mut self, alert: Alert, now: Instant, out: &mut Vec<Alert>) {
        if self.passes(&alert) {
            out.push(alert);
            return;
        }
        let source = alert.event.source;
        let key = Key::of(&alert);
        if let Some(queue) = self.by_key.get_mut(&key) {
            let twin = queue
                .iter()
                .position(|seq| !self.held[seq].alert.providers.contains(source));
            if let Some(i) = twin {
                let seq = queue.remove(i).expect("index from position");
                if queue.is_empty() {
                    self.by_key.remove(&key);
                }
                let first = self.held.remove(&seq).expect("queued alerts are held");
                out.push(merge(first.alert, alert));
                return;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_key.entry(key.clone()).or_default().push_back(seq);
        self.held.insert(seq, Held { key, alert });
        self.expiry.push_back((now + self.window, seq));
        while self.held.len() > self.cap {
            self.release_oldest(out);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.expiry.front().map(|(at, _)| *at)
    }

    /// Releases alerts whose window has closed.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Alert>) {
        while let Some(&(at, _)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.release_oldest(out);
        }
    }

    /// Releases everything held.
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        while !self.expiry.is_empty() {
            self.release_oldest(out);
        }
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn release_oldest(&mut self, out: &mut Vec<Alert>) {
        while let Some((_, seq)) = self.expiry.pop_front() {
            let Some(held) = self.held.remove(&seq) else {
                continue; // already merged with its twin
            };
            if let Some(queue) = self.by_key.get_mut(&held.key) {
                queue.retain(|s| *s != seq);
                if queue.is_empty() {
                    self.by_key.remove(&held.key);
                }
            }
            out.push(held.alert);
            return;
        }
    }
}

/// One alert from two sightings: the first's event, with what only the
/// second knew filled in, and both providers.
fn merge(mut first: Alert, second: Alert) -> Alert {
    first.providers.add(second.providers);
    fill_event(&mut first.event, second.event);
    first
}

fn fill<T>(slot: &mut Option<T>, other: Option<T>) {
    if slot.is_none() {
        *slot = other;
    }
}

fn fill_event(ev: &mut Event, other: Event) {
    if ev.outcome == crate::event::Outcome::Unknown {
        ev.outcome = other.outcome;
    }
    fill_file(&mut ev.file, other.file);
    fill_file(&mut ev.target, other.target);
    let (p, o) = (&mut ev.process, other.process);
    fill(&mut p.ppid, o.ppid);
    fill(&mut p.uid, o.uid);
    fill(&mut p.euid, o.euid);
    fill(&mut p.gid, o.gid);
    fill(&mut p.auid, o.auid);
    fill(&mut p.comm, o.comm);
    fill(&mut p.exe, o.exe);
    fill(&mut p.cmdline, o.cmdline);
    fill(&mut p.container_id, o.container_id);
    fill(&mut p.parent_exe, o.parent_exe);
    fill(&mut ev.audit_id, other.audit_id);
    fill(&mut ev.audit_key, other.audit_key);
}

fn fill_file(slot: &mut Option<FileRef>, other: Option<FileRef>) {
    match (slot.as_mut(), other) {
        (Some(f), Some(o)) => {
            fill(&mut f.inode, o.inode);
            fill(&mut f.dev, o.dev);
            fill(&mut f.mode, o.mode);
            fill(&mut f.uid, o.uid);
            fill(&mut f.gid, o.gid);
        }
        (None, other) => *slot = other,
        (Some(_), None) => {}
    }
}
