//! Flood control: many alerts of one rule from one process become a few
//! alerts carrying counts.
//!
//! Per (rule, process, action), the first `burst` alerts of a window pass as
//! they are; the rest are counted into one summary alert that leaves when
//! the window closes. A key that overflowed stays "hot": its next window
//! passes nothing individually, so a flood that goes on yields one summary
//! per window, and the key is forgotten after a quiet window. The number of
//! keys is bounded; past it, processes share one key per rule. A window
//! closes by the clock or by event time, whichever comes first, so replaying
//! an archive folds only what happened within a window of event time.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use crate::alert::Alert;
use crate::event::{Action, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    rule: usize,
    pid: u32,
    action: Action,
}

struct Window {
    /// When the window closes on the clock (live: tick releases it).
    ends: Instant,
    /// When it closes in event time (replay: hours of archived events pass
    /// in a second of clock, and must not be folded together).
    ends_event: SystemTime,
    passed: u32,
    /// The first alert held back, its count the number held back.
    summary: Option<Alert>,
}

pub(super) struct FloodControl {
    burst: u32,
    window: Duration,
    max_keys: usize,
    /// Looked up twice per alert: foldhash, as SipHash showed in replay
    /// profiles. The number of keys is bounded (`max_keys`).
    windows: HashMap<Key, Window, foldhash::fast::RandomState>,
    /// (end, key), earliest first; entries of replaced windows are skipped.
    expiry: BinaryHeap<Reverse<(Instant, Key)>>,
}

impl FloodControl {
    pub fn new(burst: u32, window: Duration, max_keys: usize) -> FloodControl {
        FloodControl {
            burst,
            window,
            max_keys: max_keys.max(1),
            windows: HashMap::default(),
            expiry: BinaryHeap::new(),
        }
    }

    pub fn push(&mut self, alert: Alert, now: Instant, out: &mut Vec<Alert>) {
        if alert.event.source == Source::Monitor || self.window.is_zero() {
            out.push(alert);
            return;
        }
        let mut key = Key {
            rule: std::sync::Arc::as_ptr(&alert.rule) as usize,
            pid: alert.event.process.pid,
            action: alert.event.action,
        };
        if self.windows.len() >= self.max_keys && !self.windows.contains_key(&key) {
            key.pid = 0;
        }
        let at = alert.event.time;
        // One lookup per alert: the entry serves the check and the update.
        let window = match self.windows.entry(key) {
            Entry::Occupied(open) if open.get().ends > now && at < open.get().ends_event => {
                open.into_mut()
            }
            entry => {
                // New, or its close is still queued for tick: settle it now.
                let ends = now + self.window;
                self.expiry.push(Reverse((ends, key)));
                let fresh = |passed| Window {
                    ends,
                    ends_event: at + self.window,
                    passed,
                    summary: None,
                };
                match entry {
                    Entry::Occupied(mut closed) => {
                        let mut passed = 0;
                        if let Some(summary) = closed.get_mut().summary.take() {
                            out.push(summary);
                            passed = self.burst;
                        }
                        let window = closed.into_mut();
                        *window = fresh(passed);
                        window
                    }
                    Entry::Vacant(slot) => slot.insert(fresh(0)),
                }
            }
        };
        if window.passed < self.burst {
            window.passed += 1;
            out.push(alert);
            return;
        }
        match &mut window.summary {
            Some(summary) => {
                summary.count += alert.count;
                summary.providers.add(alert.providers);
            }
            None => window.summary = Some(alert),
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.expiry.peek().map(|Reverse((at, _))| *at)
    }

    /// Closes windows that have ended, releasing their summaries.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Alert>) {
        while let Some(&Reverse((at, key))) = self.expiry.peek() {
            if at > now {
                break;
            }
            self.expiry.pop();
            let Some(window) = self.windows.get_mut(&key) else {
                continue;
            };
            if window.ends != at {
                continue; // replaced by a newer window
            }
            match window.summary.take() {
                Some(summary) => {
                    out.push(summary);
                    // Still flooding: the next window starts held back.
                    window.ends = at + self.window;
                    window.ends_event += self.window;
                    window.passed = self.burst;
                    self.expiry.push(Reverse((window.ends, key)));
                }
                None => {
                    self.windows.remove(&key);
                }
            }
        }
    }

    /// Releases every summary held.
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        let mut pending: Vec<(Instant, Alert)> = self
            .windows
            .drain()
            .filter_map(|(_, mut w)| w.summary.take().map(|s| (w.ends, s)))
            .collect();
        pending.sort_by_key(|(ends, _)| *ends);
        out.extend(pending.into_iter().map(|(_, s)| s));
        self.expiry.clear();
    }

    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}
