//! Where the audit.log reader is, saved so a restart resumes with no gap
//! and no duplicate.
//!
//! A checkpoint names the file by identity (device, inode) and by a
//! fingerprint of its first line, because a rotated-away file's inode may
//! be reused by a new audit.log. The offset points before every event not
//! yet fully delivered; `done` lists the events after that offset that were
//! delivered anyway (events interleave), so they are not emitted twice.
//!
//! A position is only saved once the daemon has acknowledged every event
//! sent before it: an event still in the channel when dockwatch dies is
//! read again on restart.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::event::AuditId;

use super::tail::FileId;

/// Bytes of the first line that identify a file.
const FINGERPRINT_BYTES: usize = 256;

/// How often a changed position is written at most.
const WRITE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The configured log path this position belongs to.
    pub log: PathBuf,
    pub file: FileId,
    /// FNV-1a of the file's first line (up to 256 bytes); 0 when the file
    /// had no complete line yet.
    pub fingerprint: u64,
    pub offset: u64,
    /// Highest kernel serial seen, to notice a gap across the restart.
    pub serial: Option<u64>,
    /// Events at or after `offset` already delivered: (secs, millis, serial).
    pub done: Vec<(u64, u32, u64)>,
}

impl Checkpoint {
    /// Reads a checkpoint; a missing file is `None`, a damaged one is `None`
    /// with a warning (reading starts afresh at the end of the log).
    pub fn load(path: &Path) -> Option<Checkpoint> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("{}: cannot read the audit checkpoint: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_slice(&text) {
            Ok(cp) => Some(cp),
            Err(e) => {
                tracing::warn!(
                    "{}: damaged audit checkpoint ({e}); starting at the end of the log",
                    path.display()
                );
                None
            }
        }
    }

    /// Writes atomically (temporary file, fsync, rename).
    pub fn store(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self).map_err(io::Error::other)?)?;
        file.sync_data()?;
        std::fs::rename(&tmp, path)
    }

    pub fn done_ids(&self) -> Vec<AuditId> {
        self.done
            .iter()
            .map(|&(secs, millis, serial)| AuditId {
                secs,
                millis,
                serial,
            })
            .collect()
    }
}

/// FNV-1a of the first line of `path` (see [`Checkpoint::fingerprint`]).
pub fn fingerprint(path: &Path) -> io::Result<u64> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    let mut file = File::open(path)?;
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..])? {
            0 => break,
            n => len += n,
        }
    }
    Ok(fingerprint_of(&head[..len]))
}

/// Fingerprint of a file starting with `head`.
pub fn fingerprint_of(head: &[u8]) -> u64 {
    let Some(end) =
        memchr::memchr(b'\n', head).or((head.len() == FINGERPRINT_BYTES).then_some(head.len()))
    else {
        return 0;
    };
    head[..end]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Counts events the daemon has finished with (delivered to the outputs).
#[derive(Debug, Clone, Default)]
pub struct Acks(Arc<AtomicU64>);

impl Acks {
    /// One more audit event handled.
    pub fn done(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Saves positions once the events before them are acknowledged.
pub struct Checkpointer {
    path: PathBuf,
    acks: Acks,
    /// Positions waiting for acknowledgement: (events sent before, position).
    waiting: VecDeque<(u64, Checkpoint)>,
    written: Option<Checkpoint>,
    last_write: Option<Instant>,
    /// A failed write was reported; quiet until one succeeds again.
    failing: bool,
}

impl Checkpointer {
    pub fn new(path: PathBuf, acks: Acks) -> Checkpointer {
        Checkpointer {
            path,
            acks,
            waiting: VecDeque::new(),
            written: None,
            last_write: None,
            failing: false,
        }
    }

    /// `position` is where a restart may resume once `sent` events have
    /// been acknowledged.
    pub fn note(&mut self, sent: u64, position: Checkpoint) {
        if let Some((s, last)) = self.waiting.back_mut() {
            if *last == position {
                *s = sent.max(*s);
                return;
            }
        }
        if self.waiting.is_empty() && self.written.as_ref() == Some(&position) {
            return;
        }
        self.waiting.push_back((sent, position));
        // Bound: keep the newest positions; older ones are superseded anyway.
        if self.waiting.len() > 4096 {
            self.waiting.pop_front();
        }
    }

    /// Positions still waiting for acknowledgement or for their write.
    pub fn pending(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Writes the newest acknowledged position, at most every 100 ms
    /// unless `now_anyway`.
    pub fn flush(&mut self, now_anyway: bool) {
        let acked = self.acks.count();
        let mut ready = None;
        while self.waiting.front().is_some_and(|(sent, _)| *sent <= acked) {
            ready = self.waiting.pop_front().map(|(_, cp)| cp);
        }
        let Some(cp) = ready else {
            return;
        };
        let due = self
            .last_write
            .is_none_or(|at| at.elapsed() >= WRITE_INTERVAL);
        if !due && !now_anyway {
            // Not yet: keep it as the head of the queue.
            self.waiting.push_front((0, cp));
            return;
        }
        match cp.store(&self.path) {
            Ok(()) => {
                if self.failing {
                    tracing::info!("{}: audit checkpoint saved again", self.path.display());
                }
                self.failing = false;
                self.written = Some(cp);
                self.last_write = Some(Instant::now());
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(
                        "{}: cannot save the audit checkpoint: {e}; until it can, a restart resumes from an older position and repeats events (is [sources.audit] checkpoint writable?)",
                        self.path.display()
                    );
                }
                self.failing = true;
                self.last_write = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(offset: u64) -> Checkpoint {
        Checkpoint {
            log: PathBuf::from("/var/log/audit/audit.log"),
            file: FileId { dev: 1, ino: 2 },
            fingerprint: 3,
            offset,
            serial: Some(9),
            done: vec![(1, 2, 3)],
        }
    }

    #[test]
    fn positions_are_saved_only_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.checkpoint");
        let acks = Acks::default();
        let mut cp = Checkpointer::new(path.clone(), acks.clone());
        cp.note(2, position(100));
        cp.flush(true);
        assert_eq!(
            Checkpoint::load(&path),
            None,
            "2 events sent, none acknowledged"
        );
        acks.done();
        acks.done();
        cp.flush(true);
        assert_eq!(Checkpoint::load(&path), Some(position(100)));
        assert_eq!(Checkpoint::load(&path).unwrap().done_ids()[0].serial, 3);
    }

    #[test]
    fn fingerprints_need_a_whole_first_line() {
        assert_eq!(fingerprint_of(b"type=DAEMON_START msg=audit(1.0:1)"), 0);
        assert_ne!(fingerprint_of(b"type=DAEMON_START\nmore"), 0);
        assert_ne!(
            fingerprint_of(b"a\n"),
            fingerprint_of(b"b\n"),
            "different first lines"
        );
    }

    #[test]
    fn a_damaged_checkpoint_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.checkpoint");
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(Checkpoint::load(&path), None);
    }
}
