//! Correlation: the same action seen by both eBPF and audit becomes one
//! alert, without holding the first sighting back.
//!
//! The two sources do not arrive together. The eBPF reader is woken by the
//! ring buffer and hands an event over microseconds after the syscall;
//! audit's record goes through auditd, its log file and the tailer, and
//! arrives milliseconds (up to the tailer's poll) later. Holding every
//! alert for its twin, as this stage once did for 500 ms, made the first
//! alert of an attack that late. So:
//!
//! - An eBPF alert leaves at once, and a *sighting* of it (action class,
//!   pid, path and inode) is remembered for `window`. The audit twin that
//!   arrives in that time is *folded*: suppressed and counted, not sent.
//!   The alert names eBPF alone; what only audit knew (the login uid, the
//!   audit id) is not in it — the price of not waiting.
//! - An audit alert with no eBPF sighting is unusual (eBPF lost the event,
//!   or its reader is behind): it waits `hold`, a few milliseconds (the
//!   eBPF reader wakes microseconds after the syscall; the end-to-end
//!   latency is not benchmarked yet), for an eBPF twin; one that comes in time is merged in and the merged
//!   alert leaves at once; otherwise the audit alert leaves alone and stays
//!   remembered, so a later eBPF twin is folded. `hold = 0` sends it at once.
//!
//! Twins need not agree on the action's name: an `O_CREAT` open is `create`
//! to eBPF and `open_write` to audit, so actions are compared by class
//! ([`ActionClass`]). Nor on the rule: audit may not know the container
//! (the process and its ancestors gone before `/proc` was read) and match
//! `docker-sock-connect-unexpected` where eBPF matched
//! `docker-sock-connect-from-container`. A twin under another rule still
//! folds (a same-rule twin is preferred when there are several); when the
//! two are merged, the rule of the sighting that knew the container wins,
//! since it is the one that used the container context. A folded twin's
//! rule is not reported: the first alert was eBPF's, which always knows the
//! container, so its rule is at least as specific.
//!
//! Memory is bounded: past `cap` remembered sightings the oldest is
//! forgotten (a held alert among them leaves at once); the worst case is a
//! twin that is not folded, never a lost alert.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::alert::Alert;
use crate::event::{Action, Event, FileRef, Source};

/// Actions the two sources may name differently for one syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ActionClass {
    /// A file opened for writing, written, created or truncated: eBPF says
    /// `create` for an `O_CREAT` open that audit calls `open_write`.
    Content,
    /// Mode, owner or extended attributes: `setattr` paths differ by hook.
    Attributes,
    Other(Action),
}

impl ActionClass {
    fn of(action: Action) -> ActionClass {
        match action {
            Action::OpenWrite | Action::Write | Action::Create | Action::Truncate => {
                ActionClass::Content
            }
            Action::Chmod | Action::Chown | Action::Setxattr => ActionClass::Attributes,
            other => ActionClass::Other(other),
        }
    }
}

/// What the file of a sighting is known by: its path, and its inode when
/// the source knows it (a path seen through a bind mount may differ where
/// the inode does not).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileKey {
    Path(Bytes),
    Inode { dev: u64, inode: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    class: ActionClass,
    pid: u32,
    file: FileKey,
}

/// The one or two keys an alert is found by.
fn keys_of(alert: &Alert) -> Vec<Key> {
    let ev = &alert.event;
    let (class, pid) = (ActionClass::of(ev.action), ev.process.pid);
    let key = |file| Key { class, pid, file };
    match &ev.file {
        None => vec![key(FileKey::Path(Bytes::new()))],
        Some(f) => {
            let mut keys = vec![key(FileKey::Path(f.path.clone()))];
            if let (Some(dev), Some(inode)) = (f.dev, f.inode) {
                keys.push(key(FileKey::Inode { dev, inode }));
            }
            keys
        }
    }
}

/// One source's sighting of an action, remembered for the other's twin.
struct Sighting {
    source: Source,
    /// The rule, by address: rules live as long as the pipeline.
    rule: usize,
    keys: Vec<Key>,
    /// The alert while it is held for its twin (audit only, for `hold`).
    held: Option<Alert>,
}

pub(super) struct Correlator {
    enabled: bool,
    window: Duration,
    hold: Duration,
    cap: usize,
    next_seq: u64,
    sightings: HashMap<u64, Sighting>,
    by_key: HashMap<Key, Vec<u64>>,
    /// (forget at, seq) in arrival order; entries already gone are skipped.
    forget: VecDeque<(Instant, u64)>,
    /// (release at, seq) of held alerts, in arrival order.
    release: VecDeque<(Instant, u64)>,
    held: usize,
    folded: u64,
}

impl Correlator {
    pub fn new(window: Duration, hold: Duration, cap: usize) -> Correlator {
        Correlator {
            enabled: false,
            window,
            hold: hold.min(window),
            cap: cap.max(1),
            next_seq: 0,
            sightings: HashMap::new(),
            by_key: HashMap::new(),
            forget: VecDeque::new(),
            release: VecDeque::new(),
            held: 0,
            folded: 0,
        }
    }

    /// Correlation makes sense only while both sources run.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Whether `alert` leaves [`Correlator::push`] at once, as it came, and
    /// nothing is remembered of it: when correlation is off, or for sources
    /// that have no twin.
    pub fn passes(&self, alert: &Alert) -> bool {
        !self.enabled || !matches!(alert.event.source, Source::Ebpf | Source::Audit)
    }

    pub fn push(&mut self, alert: Alert, now: Instant, out: &mut Vec<Alert>) {
        if self.passes(&alert) {
            out.push(alert);
            return;
        }
        self.expire(now, out);
        let keys = keys_of(&alert);
        if let Some(seq) = self.twin_of(&alert, &keys) {
            let twin = self.forget_sighting(seq).expect("indexed sightings exist");
            match twin.held {
                Some(first) => {
                    self.held -= 1;
                    out.push(merge(first, alert));
                }
                None => self.folded += 1,
            }
            return;
        }
        let held = alert.event.source == Source::Audit && !self.hold.is_zero();
        let seq = self.next_seq;
        self.next_seq += 1;
        for key in &keys {
            self.by_key.entry(key.clone()).or_default().push(seq);
        }
        let mut sighting = Sighting {
            source: alert.event.source,
            rule: Arc::as_ptr(&alert.rule) as usize,
            keys,
            held: None,
        };
        if held {
            sighting.held = Some(alert);
            self.held += 1;
            self.release.push_back((now + self.hold, seq));
        } else {
            out.push(alert);
        }
        self.sightings.insert(seq, sighting);
        self.forget.push_back((now + self.window, seq));
        while self.sightings.len() > self.cap {
            self.forget_oldest(out);
        }
    }

    /// The oldest sighting from the other source under any of `keys`: under
    /// the same rule if there is one, else under any rule.
    fn twin_of(&self, alert: &Alert, keys: &[Key]) -> Option<u64> {
        let rule = Arc::as_ptr(&alert.rule) as usize;
        let source = alert.event.source;
        let candidates = || {
            keys.iter()
                .filter_map(|k| self.by_key.get(k))
                .flatten()
                .filter(|seq| self.sightings[seq].source != source)
        };
        let same_rule = candidates()
            .filter(|seq| self.sightings[seq].rule == rule)
            .min();
        same_rule.or_else(|| candidates().min()).copied()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let release = self.release.front().map(|(at, _)| *at);
        let forget = self.forget.front().map(|(at, _)| *at);
        match (release, forget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Releases held alerts whose hold is over and forgets old sightings.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Alert>) {
        self.expire(now, out);
    }

    /// Releases everything held and forgets every sighting.
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        while !self.forget.is_empty() {
            self.forget_oldest(out);
        }
        self.release.clear();
    }

    /// Alerts held back now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Twins folded into an alert already sent, since the start.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Alert>) {
        while let Some(&(at, seq)) = self.release.front() {
            if at > now {
                break;
            }
            self.release.pop_front();
            if let Some(alert) = self.sightings.get_mut(&seq).and_then(|s| s.held.take()) {
                self.held -= 1;
                out.push(alert);
            }
        }
        while let Some(&(at, _)) = self.forget.front() {
            if at > now {
                break;
            }
            self.forget_oldest(out);
        }
    }

    fn forget_oldest(&mut self, out: &mut Vec<Alert>) {
        while let Some((_, seq)) = self.forget.pop_front() {
            if let Some(sighting) = self.forget_sighting(seq) {
                if let Some(alert) = sighting.held {
                    self.held -= 1;
                    out.push(alert);
                }
                return;
            }
        }
    }

    fn forget_sighting(&mut self, seq: u64) -> Option<Sighting> {
        let sighting = self.sightings.remove(&seq)?;
        for key in &sighting.keys {
            if let Some(seqs) = self.by_key.get_mut(key) {
                seqs.retain(|s| *s != seq);
                if seqs.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
        Some(sighting)
    }
}

/// One alert from a held sighting and its twin: the rule of the one that
/// knew the container (the more specific), the held one's otherwise; the
/// event of the one whose rule is kept, with what only the other knew
/// filled in; both providers.
fn merge(held: Alert, twin: Alert) -> Alert {
    let twin_more_specific =
        twin.event.process.container_id.is_some() && held.event.process.container_id.is_none();
    let (mut kept, other) = if twin_more_specific {
        (twin, held)
    } else {
        (held, twin)
    };
    kept.providers.add(other.providers);
    fill_event(&mut kept.event, other.event);
    kept
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
