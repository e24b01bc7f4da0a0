//! Records → complete events: grouping by `(timestamp, serial)`, deciding
//! when a group is complete, and noticing serials that never arrived.
//!
//! audit.log has no EOE records, and records of concurrent events may
//! interleave, so a group is complete on EOE (netlink), or once a number of
//! records of other events have followed its last one, or, for live sources,
//! once it has been quiet for a short window. Memory is bounded: too many
//! open groups or an oversized one are emitted early rather than held.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::event::{Action, AuditId, Detail, Event, Source};

use super::group::Group;
use super::record::{Record, RecordType};
use super::translate::Translator;

/// How events leave the reassembler.
pub type Emit<'a> = dyn FnMut(Event) + 'a;

/// Limits that keep reassembly bounded and timely.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A group is complete once this many records of other events followed
    /// its last record.
    pub later_records: u64,
    /// Live sources: a group quiet for this long is complete.
    pub quiet: Duration,
    /// Open groups held at most; the oldest is emitted beyond.
    pub max_open: usize,
    /// Records and bytes one group may hold before it is emitted as is.
    pub max_records: usize,
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            later_records: 32,
            quiet: Duration::from_millis(200),
            max_open: 4096,
            max_records: 1024,
            max_bytes: 1 << 20,
        }
    }
}

/// Serials recently completed, to drop stragglers instead of emitting a
/// second, partial event for them.
const RECENT: usize = 256;

/// Counters for the status log and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub groups: u64,
    pub events: u64,
    /// Records for an event already emitted.
    pub stragglers: u64,
    /// Groups emitted early by a memory bound.
    pub forced: u64,
    /// Kernel serials that never arrived.
    pub missing_serials: u64,
}

pub struct Reassembler {
    limits: Limits,
    open: VecDeque<Group>,
    spare: Vec<Group>,
    recent: VecDeque<(AuditId, u64)>,
    /// The highest id in `recent`: ids above it cannot be stragglers.
    recent_max: Option<AuditId>,
    /// No open group is complete by count before this record number: a
    /// lower bound on `last_record + later_records + 1` over `open`, so most
    /// records need no scan of the open groups. Groups only gain records or
    /// leave, which keeps it a lower bound; a scan makes it exact again.
    due: u64,
    translator: Translator,
    gaps: GapTracker,
    stats: Stats,
}

impl Default for Reassembler {
    fn default() -> Reassembler {
        Reassembler::new(Limits::default())
    }
}

impl Reassembler {
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler {
            limits,
            open: VecDeque::new(),
            spare: Vec::new(),
            recent: VecDeque::with_capacity(RECENT),
            recent_max: None,
            due: u64::MAX,
            translator: Translator::new(),
            gaps: GapTracker::default(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The highest kernel serial seen, for checkpoints.
    pub fn last_serial(&self) -> Option<u64> {
        self.gaps.max
    }

    /// The input offset of the earliest record still open.
    pub fn open_origin(&self) -> Option<u64> {
        self.open.iter().map(|g| g.origin).min()
    }

    /// Moves every open group's origin to `origin` (the input changed).
    pub fn rebase_origins(&mut self, origin: u64) {
        for group in &mut self.open {
            group.origin = origin;
        }
        for (_, o) in &mut self.recent {
            *o = 0;
        }
    }

    /// Events completed recently whose first record lies at or after
    /// `offset`: what a resume from `offset` must not emit again.
    pub fn completed_since(&self, offset: u64) -> Vec<AuditId> {
        self.recent
            .iter()
            .filter(|(_, origin)| *origin >= offset)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Resuming from a checkpoint: these ids were already emitted, and
    /// `serial` was the highest kernel serial seen.
    pub fn resume(&mut self, done: &[AuditId], serial: Option<u64>) {
        for &id in done {
            self.remember(id, u64::MAX);
        }
        self.gaps.max = serial;
    }

    /// Adds one record that started at offset `origin` of its input;
    /// complete events go to `emit`. `now` is given by live sources and
    /// enables the quiet window.
    pub fn push(
        &mut self,
        record: &Record<'_>,
        origin: u64,
        now: Option<Instant>,
        emit: &mut Emit<'_>,
    ) {
        self.stats.records += 1;
        let seq = self.stats.records;
        if record.kind == RecordType::EOE {
            if let Some(i) = self.open.iter().position(|g| g.id == record.id) {
                self.complete(i, emit);
            }
            return;
        }
        // Most records belong to the newest group: no search for them.
        let newest = self.open.len().checked_sub(1);
        let index = match newest
            .filter(|&i| self.open[i].id == record.id)
            .or_else(|| self.open.iter().rposition(|g| g.id == record.id))
        {
            Some(i) => i,
            None => {
                if self.recent_max.is_some_and(|max| record.id <= max)
                    && self.recent.iter().any(|(id, _)| *id == record.id)
                {
                    self.stats.stragglers += 1;
                    tracing::debug!(id = ?record.id, "record for an event already emitted");
                    return;
                }
                if !record.kind.is_daemon() {
                    self.gaps.saw(record.id, seq);
                }
                let mut group = self.spare.pop().unwrap_or_else(|| Group::new(record.id));
                group.reset(record.id, origin);
                self.open.push_back(group);
                self.due = self.due.min(seq + self.limits.later_records + 1);
                self.stats.groups += 1;
                self.open.len() - 1
            }
        };
        let group = &mut self.open[index];
        group.push(record);
        group.last_record = seq;
        group.last_at = now;
        if group.len() >= self.limits.max_records || group.bytes() >= self.limits.max_bytes {
            self.stats.forced += 1;
            self.complete(index, emit);
        }
        // Complete what enough later records have followed.
        if seq >= self.due {
            while let Some(i) = self
                .open
                .iter()
                .position(|g| seq - g.last_record > self.limits.later_records)
            {
                self.complete(i, emit);
            }
            self.due = self.open.iter().fold(u64::MAX, |due, g| {
                due.min(g.last_record + self.limits.later_records + 1)
            });
        }
        while self.open.len() > self.limits.max_open {
            self.stats.forced += 1;
            self.complete(0, emit);
        }
        self.report_gaps(seq, false, emit);
    }

    /// Live sources: completes groups quiet since `now - quiet`.
    pub fn expire(&mut self, now: Instant, emit: &mut Emit<'_>) {
        while let Some(i) = self.open.iter().position(|g| {
            g.last_at
                .is_none_or(|at| now.saturating_duration_since(at) >= self.limits.quiet)
        }) {
            self.complete(i, emit);
        }
        let seq = self.stats.records;
        self.report_gaps(seq, true, emit);
    }

    /// When [`Reassembler::expire`] should next run, if anything is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open
            .iter()
            .filter_map(|g| g.last_at)
            .min()
            .map(|at| at + self.limits.quiet)
    }

    /// Completes everything (end of input, shutdown).
    pub fn flush(&mut self, emit: &mut Emit<'_>) {
        while !self.open.is_empty() {
            self.complete(0, emit);
        }
        let seq = self.stats.records;
        self.report_gaps(seq, true, emit);
    }

    fn complete(&mut self, index: usize, emit: &mut Emit<'_>) {
        let Some(group) = self.open.remove(index) else {
            return;
        };
        self.remember(group.id, group.origin);
        if let Some(event) = self.translator.translate(&group) {
            self.stats.events += 1;
            emit(event);
        }
        self.spare.push(group);
    }

    fn remember(&mut self, id: AuditId, origin: u64) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((id, origin));
        self.recent_max = Some(self.recent_max.map_or(id, |m| m.max(id)));
    }

    #[inline]
    fn report_gaps(&mut self, seq: u64, all: bool, emit: &mut Emit<'_>) {
        let horizon = if all {
            u64::MAX
        } else {
            self.limits.later_records * 4
        };
        if let Some((count, last_id)) = self.gaps.settled(seq, horizon) {
            self.stats.missing_serials += count;
            let mut event = Event::new(Source::Audit, Action::RecordsLost);
            event.time = super::translate::time_of(last_id);
            event.audit_id = Some(last_id);
            event.detail = Detail::Lost {
                count,
                what: "audit events (serial gap)",
            };
            emit(event);
        }
    }
}

/// Kernel serials increase by one per event; a serial that never shows up
/// was lost. Records of concurrent events may arrive out of order, so a
/// missing range is only reported once enough later records have passed
/// without it.
#[derive(Debug, Default)]
struct GapTracker {
    max: Option<u64>,
    /// Missing serial ranges (inclusive), when noticed, and the id that
    /// revealed them.
    suspects: Vec<(u64, u64, u64, AuditId)>,
}

/// A serial this far below the highest seen means the counter restarted.
const SERIAL_RESET: u64 = 1 << 20;

impl GapTracker {
    fn saw(&mut self, id: AuditId, seq: u64) {
        let s = id.serial;
        let Some(max) = self.max else {
            self.max = Some(s);
            return;
        };
        if s > max {
            if s > max + 1 {
                if s - max > SERIAL_RESET {
                    self.suspects.clear();
                } else {
                    self.suspects.push((max + 1, s - 1, seq, id));
                }
            }
            self.max = Some(s);
        } else if max - s > SERIAL_RESET {
            self.suspects.clear();
            self.max = Some(s);
        } else if let Some(i) = self.suspects.iter().position(|r| r.0 <= s && s <= r.1) {
            let (lo, hi, at, by) = self.suspects.swap_remove(i);
            if lo < s {
                self.suspects.push((lo, s - 1, at, by));
            }
            if s < hi {
                self.suspects.push((s + 1, hi, at, by));
            }
        }
    }

    /// Missing serials noticed more than `horizon` records ago: their count
    /// and the latest id that revealed them.
    fn settled(&mut self, seq: u64, horizon: u64) -> Option<(u64, AuditId)> {
        if self.suspects.is_empty() {
            return None;
        }
        let mut count = 0;
        let mut last: Option<AuditId> = None;
        self.suspects.retain(|&(lo, hi, at, by)| {
            if horizon == u64::MAX || seq - at > horizon {
                count += hi - lo + 1;
                last = Some(last.map_or(by, |l| l.max(by)));
                false
            } else {
                true
            }
        });
        last.map(|id| (count, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> (Vec<Event>, Stats) {
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        for line in lines {
            let rec = Record::parse_line(line.as_bytes()).unwrap();
            r.push(&rec, 0, None, &mut |e| out.push(e));
        }
        r.flush(&mut |e| out.push(e));
        (out, r.stats())
    }

    #[test]
    fn interleaved_events_are_kept_apart() {
        let (events, stats) = feed(&[
            "type=SYSCALL msg=audit(10.000:1): arch=c000003e syscall=90 success=yes exit=0 a0=1 a1=1ff pid=5 comm=\"chmod\"",
            "type=SYSCALL msg=audit(10.000:2): arch=c000003e syscall=87 success=no exit=-2 pid=6",
            "type=CWD msg=audit(10.000:1): cwd=\"/etc\"",
            "type=PATH msg=audit(10.000:2): item=0 name=\"/x\" nametype=DELETE",
            "type=PATH msg=audit(10.000:1): item=0 name=\"docker\" nametype=NORMAL mode=0100600",
        ]);
        assert_eq!(stats.missing_serials, 0);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].action, Action::Chmod);
        let file = events[0].file.as_ref().unwrap();
        assert_eq!(&file.path[..], b"/etc/docker");
        assert_eq!(file.mode, Some(0o100777));
        assert_eq!(events[1].action, Action::Unlink);
        assert_eq!(
            events[1].outcome,
            crate::event::Outcome::Failure { errno: 2 }
        );
    }

    #[test]
    fn serial_gaps_are_reported_once_settled() {
        let (events, stats) = feed(&[
            "type=CWD msg=audit(10.000:1): cwd=\"/\"",
            "type=CWD msg=audit(10.000:3): cwd=\"/\"",
            "type=CWD msg=audit(10.000:2): cwd=\"/\"",
            "type=CWD msg=audit(10.000:7): cwd=\"/\"",
        ]);
        assert_eq!(stats.missing_serials, 3);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, Action::RecordsLost);
        assert!(matches!(events[0].detail, Detail::Lost { count: 3, .. }));
    }

    #[test]
    fn stragglers_do_not_make_a_second_event() {
        let mut lines = vec![
            "type=SYSCALL msg=audit(10.000:1): arch=c000003e syscall=90 success=yes exit=0 a1=1ff pid=5".to_string(),
        ];
        for s in 2..40 {
            lines.push(format!("type=CWD msg=audit(10.000:{s}): cwd=\"/\""));
        }
        lines.push("type=PATH msg=audit(10.000:1): item=0 name=\"/a\"".to_string());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (events, stats) = feed(&refs);
        assert_eq!(events.len(), 1);
        assert_eq!(stats.stragglers, 1);
    }

    #[test]
    fn incomplete_events_are_bounded_and_still_emitted() {
        let limits = Limits {
            later_records: 1000,
            max_open: 4,
            max_records: 3,
            ..Limits::default()
        };
        let mut r = Reassembler::new(limits);
        let mut out = Vec::new();
        // Ten events whose records keep coming: never complete by count.
        for serial in 1..=10u64 {
            let line = format!(
                "type=SYSCALL msg=audit(10.000:{serial}): arch=c000003e syscall=90 success=yes exit=0 a1=1ff pid=1"
            );
            r.push(
                &Record::parse_line(line.as_bytes()).unwrap(),
                0,
                None,
                &mut |e| out.push(e),
            );
            assert!(r.open.len() <= 4, "open groups are bounded");
        }
        assert_eq!(out.len(), 6, "the oldest were emitted early");
        // One event with too many records is emitted as it is.
        for item in 0..5 {
            let line = format!("type=PATH msg=audit(10.000:11): item={item} name=\"/x\"");
            r.push(
                &Record::parse_line(line.as_bytes()).unwrap(),
                0,
                None,
                &mut |e| out.push(e),
            );
        }
        r.flush(&mut |e| out.push(e));
        assert_eq!(out.len(), 10, "lone PATH records make no event");
        assert!(r.stats().forced >= 7);
    }
}
