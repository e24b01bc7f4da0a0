//! The running audit.log source: a thread that tails the log, reassembles
//! events, sends them to the daemon and saves acknowledged positions.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;

use crate::event::Event;
use crate::source::EventSender;

use super::assemble::Reassembler;
use super::checkpoint::{Acks, Checkpoint, Checkpointer};
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
}

impl<'a> Sender<'a> {
    pub fn new(tx: EventSender, stop: &'a AtomicBool) -> Sender<'a> {
        Sender {
            tx,
            stop,
            sent: Cell::new(0),
            failed: Cell::new(false),
        }
    }

    pub fn send(&self, event: Event) {
        if self.failed.get() {
            return;
        }
        let mut event = event;
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
                return Tailer::resume(log, position, path.display().to_string());
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
