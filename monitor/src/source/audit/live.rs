//! The running audit.log source: a thread that tails the log, reassembles
//! events, sends them to the daemon and saves acknowledged positions.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;

use crate::event::{Action, Detail, Event, Source};
use crate::source::EventSender;

use super::assemble::Reassembler;
use super::checkpoint::{Acks, Checkpoint, Checkpointer};
use super::container::Containers;
use super::netlink::{self, Multicast, Received};
use super::record::Record;
use super::tail::{self, FileId, Position, Tailer};
use super::AuditConfig;

/// How often the log is checked for new lines when idle.
const POLL: Duration = Duration::from_millis(50);

/// Sends events, waiting while the channel is full but giving up when
/// asked to stop, so shutdown never hangs on a daemon no longer reading.
pub struct Sender<'a> {
    tx: EventSender,
    stop: &'a AtomicBool,
    sent: Cell<u64>,
    failed: Cell<bool>,
    /// When auditd last said it was stopping (DAEMON_END, DAEMON_ABORT).
    daemon_end: Cell<Option<Instant>>,
    /// Live events only: a replayed archive's pids mean nothing today.
    containers: RefCell<Containers>,
}

impl<'a> Sender<'a> {
    pub fn new(tx: EventSender, stop: &'a AtomicBool) -> Sender<'a> {
        Sender {
            tx,
            stop,
            sent: Cell::new(0),
            failed: Cell::new(false),
            daemon_end: Cell::new(None),
            containers: RefCell::new(Containers::default()),
        }
    }

    pub fn send(&self, event: Event) {
        if self.failed.get() {
            return;
        }
        report_in_log(&event);
        if let Detail::AuditConfig { text, .. } = &event.detail {
            if text.starts_with("DAEMON_END") || text.starts_with("DAEMON_ABORT") {
                self.daemon_end.set(Some(Instant::now()));
            }
        }
        let mut event = event;
        self.containers.borrow_mut().annotate(&mut event);
        loop {
            match self.tx.try_send(event) {
                Ok(()) => {
                    self.sent.set(self.sent.get() + 1);
                    return;
                }
                Err(TrySendError::Full(back)) => {
                    if self.stop.load(Ordering::Relaxed) {
                        self.failed.set(true);
                        return;
                    }
                    event = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(TrySendError::Closed(_)) => {
                    self.failed.set(true);
                    return;
                }
            }
        }
    }

    /// auditd announced its end within the last few seconds.
    pub fn auditd_said_goodbye(&self) -> bool {
        self.daemon_end
            .get()
            .is_some_and(|at| at.elapsed() < Duration::from_secs(5))
    }

    pub fn sent(&self) -> u64 {
        self.sent.get()
    }

    /// The daemon is gone, or stopped reading while we were stopping.
    pub fn failed(&self) -> bool {
        self.failed.get()
    }
}

/// Runs until `stop` is set or the daemon stops listening.
pub fn follow_log(config: &AuditConfig, tx: EventSender, acks: Acks, stop: &AtomicBool) {
    let mut reassembler = Reassembler::default();
    let mut tailer = match config.checkpoint.as_deref().and_then(Checkpoint::load) {
        Some(cp) if cp.log == config.log => resume(&config.log, &cp, &mut reassembler),
        _ => Tailer::at_end(&config.log),
    };
    let mut checkpointer = config
        .checkpoint
        .clone()
        .map(|path| Checkpointer::new(path, acks));
    let sender = Sender::new(tx, stop);
    let mut emit = |event: Event| sender.send(event);
    let mut watchdog = Watchdog::new(true);
    let log = config.log.clone();
    // The position after a line is only noted when that line sent events:
    // enough for exactness, and cheap on lines that complete nothing.
    let noted = Cell::new(0u64);
    let mut notes: Vec<(u64, Checkpoint)> = Vec::new();
    while !stop.load(Ordering::Relaxed) && !sender.failed() {
        let now = Instant::now();
        let mut progress = |r: &Reassembler, file: FileId, fp: u64, offset: u64| {
            if checkpointer.is_none() || sender.sent() == noted.get() || sender.failed() {
                return;
            }
            noted.set(sender.sent());
            notes.push((sender.sent(), snapshot(&log, r, file, fp, offset)));
        };
        let progressed = tailer.poll(now, &mut reassembler, &mut emit, &mut progress);
        reassembler.expire(Instant::now(), &mut emit);
        watchdog.poll(Instant::now(), sender.auditd_said_goodbye(), &mut emit);
        if let Some(cp) = checkpointer.as_mut() {
            for (sent, position) in notes.drain(..) {
                cp.note(sent, position);
            }
            if !sender.failed() {
                if let Some((file, fp, offset)) = tailer.position() {
                    cp.note(
                        sender.sent(),
                        snapshot(&log, &reassembler, file, fp, offset),
                    );
                }
            }
            cp.flush(false);
        }
        if !progressed {
            std::thread::sleep(POLL);
        }
    }
    if let Some(cp) = checkpointer.as_mut() {
        // Give the daemon a moment to finish what it holds, then save what
        // it acknowledged; the rest is read again on restart.
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            cp.flush(true);
            if Instant::now() > deadline || !cp.pending() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Where a restart may resume: before the oldest open event.
fn snapshot(
    log: &Path,
    r: &Reassembler,
    file: FileId,
    fingerprint: u64,
    offset: u64,
) -> Checkpoint {
    let offset = r.open_origin().map_or(offset, |o| o.min(offset));
    Checkpoint {
        log: log.to_path_buf(),
        file,
        fingerprint,
        offset,
        serial: r.last_serial(),
        done: r
            .completed_since(offset)
            .into_iter()
            .map(|id| (id.secs, id.millis, id.serial))
            .collect(),
    }
}

/// Opens the file a checkpoint names, wherever rotation has moved it.
fn resume(log: &Path, cp: &Checkpoint, reassembler: &mut Reassembler) -> Tailer {
    let located = tail::find_generation(log, cp.file).map(|n| match n {
        0 => log.to_path_buf(),
        n => tail::generation(log, n),
    });
    let matching = located.filter(|path| {
        let same_content = cp.fingerprint == 0
            || super::checkpoint::fingerprint(path).is_ok_and(|fp| fp == cp.fingerprint);
        let long_enough = std::fs::metadata(path).is_ok_and(|m| m.len() >= cp.offset);
        same_content && long_enough
    });
    reassembler.resume(&cp.done_ids(), cp.serial);
    if let Some(path) = matching {
        match Position::open(&path, cp.offset) {
            Ok(position) => {
                tracing::info!(
                    "{}: resuming at byte {} of {}",
                    log.display(),
                    cp.offset,
                    path.display()
                );
                // Line numbers in warnings count from the resume point.
                let name = format!("{} (from byte {})", path.display(), cp.offset);
                return Tailer::resume(log, position, name);
            }
            Err(e) => tracing::warn!("{}: cannot reopen: {e}", path.display()),
        }
    }
    // The file was rotated away and deleted (or replaced under the same
    // inode) while dockwatch was down: read every generation still there,
    // oldest first.
    let oldest = (1..=999u32)
        .map(|n| tail::generation(log, n))
        .take_while(|p| p.exists())
        .last()
        .unwrap_or_else(|| log.to_path_buf());
    tracing::warn!(
        "{}: the checkpointed file is gone; reading from the start of {}, events logged in between may be missing",
        log.display(),
        oldest.display()
    );
    match Position::open(&oldest, 0) {
        Ok(position) => Tailer::resume(log, position, oldest.display().to_string()),
        Err(_) => Tailer::at_end(log),
    }
}

/// Runs the netlink multicast source until `stop` is set or the daemon
/// stops listening.
pub fn follow_netlink(
    multicast: Multicast,
    tx: EventSender,
    stop: &AtomicBool,
    beside_auditd: bool,
) {
    let mut multicast = multicast;
    let mut reassembler = Reassembler::default();
    let sender = Sender::new(tx, stop);
    let mut emit = |event: Event| sender.send(event);
    let mut watchdog = Watchdog::new(beside_auditd);
    while !stop.load(Ordering::Relaxed) && !sender.failed() {
        match multicast.recv() {
            Ok(Received::Record(kind, payload)) => match Record::parse_payload(kind, payload) {
                Ok(record) => reassembler.push(&record, 0, Some(Instant::now()), &mut emit),
                Err(e) => tracing::warn!(
                    "audit netlink: skipped a {kind} message: {e}: {:?}",
                    String::from_utf8_lossy(&payload[..payload.len().min(200)])
                ),
            },
            Ok(Received::Idle) => {}
            Ok(Received::Overflow) => {
                let mut event = Event::new(Source::Audit, Action::RecordsLost);
                event.detail = Detail::Lost {
                    count: 1,
                    what: "audit netlink messages (receive buffer overflowed; at least one)",
                };
                emit(event);
            }
            Err(e) => {
                tracing::error!("audit netlink: receive failed: {e}; the netlink source stops");
                break;
            }
        }
        let now = Instant::now();
        reassembler.expire(now, &mut emit);
        watchdog.poll(now, sender.auditd_said_goodbye(), &mut emit);
    }
    reassembler.flush(&mut emit);
}

/// Logs what an operator must see even without a rule for it: audit
/// being reconfigured or stopped, and records lost.
fn report_in_log(event: &Event) {
    match &event.detail {
        Detail::AuditConfig { op, text } => {
            let p = &event.process;
            let who = match (&p.exe, p.pid) {
                (Some(exe), pid) => format!("pid {pid} ({})", String::from_utf8_lossy(exe)),
                (None, 0) => "an unknown process".to_string(),
                (None, pid) => format!("pid {pid}"),
            };
            let auid = p
                .auid
                .map_or_else(|| "unset".to_string(), |a| a.to_string());
            tracing::warn!("audit configuration changed ({op}) by {who}, auid {auid}: {text}");
        }
        Detail::Lost { count, what } => tracing::warn!("lost {count} {what}"),
        _ => {}
    }
}

/// How often the kernel's audit status is read.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Watches the kernel's audit status for what no record reports: a rising
/// `lost` counter, audit switched off, auditd gone without a DAEMON_END.
struct Watchdog {
    last: Option<netlink::Status>,
    next: Instant,
    disabled: bool,
    /// Whether auditd is expected (log mode): its disappearance matters.
    watch_auditd: bool,
}

impl Watchdog {
    fn new(watch_auditd: bool) -> Watchdog {
        Watchdog {
            last: None,
            next: Instant::now(),
            disabled: false,
            watch_auditd,
        }
    }

    /// `announced`: auditd's own DAEMON_END was just seen, so its
    /// disappearance is already reported.
    fn poll(&mut self, now: Instant, announced: bool, emit: &mut dyn FnMut(Event)) {
        if self.disabled || now < self.next {
            return;
        }
        self.next = now + STATUS_INTERVAL;
        let status = match netlink::status() {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(
                    "cannot read the kernel's audit status ({e}); records the kernel drops will not be reported (needs CAP_AUDIT_CONTROL)"
                );
                self.disabled = true;
                return;
            }
        };
        if let Some(last) = self.last {
            if status.lost > last.lost {
                let mut event = Event::new(Source::Audit, Action::RecordsLost);
                event.detail = Detail::Lost {
                    count: u64::from(status.lost - last.lost),
                    what: "audit records dropped by the kernel (lost counter)",
                };
                emit(event);
            }
            if last.enabled != 0 && status.enabled == 0 {
                emit(config_event("audit_disabled", &status));
            }
            if self.watch_auditd && last.pid != 0 && status.pid == 0 && !announced {
                emit(config_event("auditd_gone", &status));
            }
        }
        self.last = Some(status);
    }
}

fn config_event(op: &str, status: &netlink::Status) -> Event {
    let mut event = Event::new(Source::Audit, Action::AuditConfig);
    event.detail = Detail::AuditConfig {
        op: op.to_string(),
        text: format!(
            "kernel audit status: enabled={} auditd pid={} lost={} backlog={}",
            status.enabled, status.pid, status.lost, status.backlog
        ),
    };
    event
}
