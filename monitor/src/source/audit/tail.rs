//! Following audit.log as auditd writes and rotates it.
//!
//! The tailer holds the file open and reads what is appended. auditd
//! rotates by renaming audit.log to audit.log.1 (older ones shift up) and
//! starting a new audit.log, so when the path stops naming the file we hold,
//! we first drain the held file to its end, then find the generation that
//! came next by identity (it may already have been rotated further if we
//! were slow) and carry on there. Position is kept as (file identity,
//! offset) so a checkpoint can resume exactly.
//!
//! The same comparison tells a rotation from tampering, which is reported
//! as an `AuditConfig` event the built-in `audit-tampered` rule turns into
//! an alert (see `pipeline::own_reports`):
//! - **rotation** (no report): the file we hold is found again as
//!   `audit.log.N`. A rename of audit.log to audit.log.1 by hand looks the
//!   same and is not told apart.
//! - `audit_log_truncated`: the path still names our file but it is shorter
//!   than what was read (`: > audit.log`, `truncate`). auditd only appends.
//! - `audit_log_deleted`: our file was unlinked (no links left) and nothing
//!   is at the path.
//! - `audit_log_replaced`: our file was unlinked and another file is at the
//!   path. auditd never unlinks its live file; a rotation while we were more
//!   than `num_logs` generations behind would look the same.
//! - `audit_log_moved`: our file still has links but is not among the
//!   generations: renamed somewhere else.
//!
//! Each is reported once per file held.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::assemble::{Emit, Reassembler};
use super::checkpoint;
use super::feed::Input;
use super::lines::LineReader;
use crate::event::{Action, Detail, Event, Source};

/// Generations (`audit.log.N`) searched when following a rotation; auditd's
/// `num_logs` cannot exceed 999, and more than 99 is unusual.
const MAX_GENERATION: u32 = 999;

/// Identity of one file, stable across renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The file being read and where in it.
pub struct Position {
    pub file: File,
    pub id: FileId,
    pub lines: LineReader,
    /// See [`checkpoint::fingerprint`]; 0 until the file has a first line.
    pub fingerprint: u64,
    path: PathBuf,
}

impl Position {
    /// Opens `path` and places the reader at `offset`.
    pub fn open(path: &Path, offset: u64) -> io::Result<Position> {
        use std::io::{Seek, SeekFrom};
        let mut file = File::open(path)?;
        let id = FileId::of(&file.metadata()?);
        file.seek(SeekFrom::Start(offset))?;
        Ok(Position {
            file,
            id,
            lines: LineReader::new(offset),
            fingerprint: checkpoint::fingerprint(path).unwrap_or(0),
            path: path.to_path_buf(),
        })
    }

    /// The fingerprint, computed again while the file had no full line.
    pub fn fingerprint(&mut self) -> u64 {
        if self.fingerprint == 0 {
            self.fingerprint = checkpoint::fingerprint(&self.path).unwrap_or(0);
        }
        self.fingerprint
    }

    /// Opens `path` at its current end.
    pub fn open_at_end(path: &Path) -> io::Result<Position> {
        let size = std::fs::metadata(path)?.len();
        Position::open(path, size)
    }
}

/// What the live path says about the file we hold.
#[derive(Debug, PartialEq, Eq)]
pub enum PathState {
    /// Still our file, at least as long as we have read.
    Same,
    /// Our file, but shorter than what we read: truncated or rewritten in
    /// place. Start again from its beginning.
    Shrunk,
    /// The path names another file (or none): ours was rotated away.
    Rotated,
}

pub fn path_state(path: &Path, held: &Position) -> PathState {
    match std::fs::metadata(path) {
        Ok(meta) if FileId::of(&meta) == held.id => {
            let read = held.lines.offset() + held.lines.pending() as u64;
            if meta.len() < read {
                PathState::Shrunk
            } else {
                PathState::Same
            }
        }
        _ => PathState::Rotated,
    }
}

/// `audit.log.N`.
pub fn generation(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Where `finished` lives now among `path`'s generations: 0 for the live
/// path, N for `path.N`.
pub fn find_generation(path: &Path, finished: FileId) -> Option<u32> {
    if std::fs::metadata(path).is_ok_and(|m| FileId::of(&m) == finished) {
        return Some(0);
    }
    let mut misses = 0;
    for n in 1..=MAX_GENERATION {
        match std::fs::metadata(generation(path, n)) {
            Ok(meta) if FileId::of(&meta) == finished => return Some(n),
            Ok(_) => misses = 0,
            Err(_) => {
                // Generations are contiguous; a few holes mean the end.
                misses += 1;
                if misses > 3 {
                    return None;
                }
            }
        }
    }
    None
}

/// The file written after `finished`: the generation just below it, or the
/// live path. `None` when `finished` is no longer among the generations.
pub fn successor(path: &Path, finished: FileId) -> Option<PathBuf> {
    match find_generation(path, finished)? {
        0 => None,
        1 => Some(path.to_path_buf()),
        n => Some(generation(path, n - 1)),
    }
}

/// Follows one audit.log: reads what is appended, crosses rotations, and
/// feeds every record to the reassembler.
pub struct Tailer {
    path: PathBuf,
    position: Option<Position>,
    input: Input,
    /// A warning about the missing file was given.
    told_missing: bool,
    /// The held file whose tampering was reported, so it is reported once.
    reported: Option<FileId>,
}

impl Tailer {
    /// Starts at the current end of `path` (or at its beginning once it
    /// appears, if it does not exist yet).
    pub fn at_end(path: &Path) -> Tailer {
        let position = match Position::open_at_end(path) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(
                    "{}: {e}; waiting for auditd to create it (is auditd running and \
                     [sources.audit] log the file its auditd.conf names?)",
                    path.display()
                );
                None
            }
        };
        // Line numbers in warnings count from where reading began.
        let name = match &position {
            Some(p) if p.lines.offset() > 0 => {
                format!("{} (from byte {})", path.display(), p.lines.offset())
            }
            _ => path.display().to_string(),
        };
        Tailer {
            path: path.to_path_buf(),
            told_missing: position.is_none(),
            reported: None,
            position,
            input: Input::new(name),
        }
    }

    /// Resumes in a file already opened at a checkpoint.
    pub fn resume(path: &Path, position: Position, name: String) -> Tailer {
        Tailer {
            path: path.to_path_buf(),
            position: Some(position),
            input: Input::new(name),
            told_missing: false,
            reported: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file held, its fingerprint and the offset of the next unread
    /// line.
    pub fn position(&mut self) -> Option<(FileId, u64, u64)> {
        self.position
            .as_mut()
            .map(|p| (p.id, p.fingerprint(), p.lines.offset()))
    }

    /// Reads everything available now, following rotations; returns whether
    /// any bytes were read.
    pub fn poll(
        &mut self,
        now: Instant,
        reassembler: &mut Reassembler,
        emit: &mut Emit<'_>,
        progress: &mut Progress<'_>,
    ) -> bool {
        let mut progressed = false;
        loop {
            let Some(position) = self.position.as_mut() else {
                match Position::open(&self.path, 0) {
                    Ok(p) => {
                        if self.told_missing {
                            tracing::info!("{}: appeared, reading it", self.path.display());
                        }
                        self.told_missing = false;
                        self.position = Some(p);
                        continue;
                    }
                    Err(_) => return progressed,
                }
            };
            progressed |= drain(position, &mut self.input, now, reassembler, emit, progress);
            match path_state(&self.path, position) {
                PathState::Same => return progressed,
                PathState::Shrunk => {
                    tracing::warn!(
                        "{}: shrank below what was read; reading it again from the start",
                        self.path.display()
                    );
                    let read = position.lines.offset();
                    let now_len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
                    emit(tamper_event(
                        "audit_log_truncated",
                        format!(
                            "{} truncated from {read} to {now_len} bytes outside a rotation",
                            self.path.display()
                        ),
                    ));
                    match Position::open(&self.path, 0) {
                        Ok(p) => self.switch(p, self.path.display().to_string()),
                        Err(_) => return progressed,
                    }
                }
                PathState::Rotated => {
                    // One more drain: auditd may have written the last
                    // records between our read and its rename.
                    progressed |=
                        drain(position, &mut self.input, now, reassembler, emit, progress);
                    let finished = position.id;
                    let next = match successor(&self.path, finished) {
                        Some(next) => next,
                        None => {
                            if find_generation(&self.path, finished).is_none() {
                                if self.reported != Some(finished) {
                                    self.reported = Some(finished);
                                    emit(vanished_event(&self.path, &position.file));
                                    tracing::warn!(
                                        "{}: the file being read left its rotation generations; \
                                         continuing with the live file, events in between may be missing",
                                        self.path.display()
                                    );
                                }
                                self.path.clone()
                            } else {
                                return progressed;
                            }
                        }
                    };
                    match Position::open(&next, 0) {
                        Ok(p) => {
                            tracing::debug!("following rotation to {}", next.display());
                            let name = self.path.display().to_string();
                            self.finish_input(reassembler, emit, now);
                            // Records still open came from the old file;
                            // a resume can only point into the new one.
                            reassembler.rebase_origins(0);
                            self.switch(p, name);
                        }
                        // Renamed, not yet re-created: try again next poll.
                        Err(_) => return progressed,
                    }
                }
            }
        }
    }

    fn finish_input(&mut self, reassembler: &mut Reassembler, emit: &mut Emit<'_>, now: Instant) {
        if let Some(position) = self.position.as_mut() {
            let origin = position.lines.offset();
            if let Some((line, line_no)) = position.lines.last_line() {
                self.input
                    .feed(line, line_no, origin, Some(now), reassembler, emit);
            }
        }
        self.input.finish();
    }

    fn switch(&mut self, position: Position, name: String) {
        self.position = Some(position);
        self.input = Input::new(name);
    }
}

/// A built-in tamper report about audit.log.
fn tamper_event(op: &str, text: String) -> Event {
    let mut event = Event::new(Source::Audit, Action::AuditConfig);
    event.detail = Detail::AuditConfig {
        op: op.to_string(),
        text,
    };
    event
}

/// The report for a held file that is no longer among the generations:
/// deleted, replaced or moved away (see the module doc).
fn vanished_event(path: &Path, held: &File) -> Event {
    let links = held.metadata().map_or(0, |m| m.nlink());
    let live = std::fs::symlink_metadata(path).is_ok();
    let shown = path.display();
    let (op, text) = match (links, live) {
        (0, false) => (
            "audit_log_deleted",
            format!("{shown} deleted outside a rotation; no new file in its place"),
        ),
        (0, true) => (
            "audit_log_replaced",
            format!("{shown} deleted outside a rotation and replaced by another file"),
        ),
        _ => (
            "audit_log_moved",
            format!("{shown} renamed to somewhere other than its rotation generations"),
        ),
    };
    tamper_event(op, text)
}

/// Called after each line with the file, its fingerprint and the offset
/// after the line, so the caller can note a resumable position.
pub type Progress<'a> = dyn FnMut(&Reassembler, FileId, u64, u64) + 'a;

/// Reads `position` to its current end, feeding complete lines.
fn drain(
    position: &mut Position,
    input: &mut Input,
    now: Instant,
    reassembler: &mut Reassembler,
    emit: &mut Emit<'_>,
    progress: &mut Progress<'_>,
) -> bool {
    let mut progressed = false;
    loop {
        let mut origin = position.lines.offset();
        while let Some((line, line_no)) = position.lines.next_line() {
            input.feed(line, line_no, origin, Some(now), reassembler, emit);
            origin = position.lines.offset();
            let fingerprint = position.fingerprint();
            progress(reassembler, position.id, fingerprint, origin);
        }
        match position.lines.fill(&mut position.file) {
            Ok(0) => return progressed,
            Ok(_) => progressed = true,
            Err(e) => {
                tracing::warn!("{}: read failed: {e}", input.name);
                return progressed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn event(serial: u64) -> String {
        format!(
            "type=SYSCALL msg=audit(10.000:{serial}): arch=c000003e syscall=90 success=yes exit=0 a1=1ff pid=1\n\
             type=PATH msg=audit(10.000:{serial}): item=0 name=\"/f{serial}\" nametype=NORMAL\n"
        )
    }

    fn append(path: &Path, text: &str) {
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn poll_all(tailer: &mut Tailer, r: &mut Reassembler) -> Vec<u64> {
        let mut serials = Vec::new();
        // Tamper reports carry no audit id; records are what is counted.
        let mut emit = |e: crate::event::Event| {
            if let Some(id) = e.audit_id {
                serials.push(id.serial);
            }
        };
        let mut progress = |_: &Reassembler, _: FileId, _: u64, _: u64| {};
        tailer.poll(Instant::now(), r, &mut emit, &mut progress);
        r.flush(&mut emit);
        serials
    }

    #[test]
    fn follows_rotation_and_drains_the_old_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        append(&log, &event(1));
        let mut tailer = Tailer::resume(&log, Position::open(&log, 0).unwrap(), "t".into());
        let mut r = Reassembler::default();
        assert_eq!(poll_all(&mut tailer, &mut r), [1]);
        // Rotated twice while we were not looking, with late lines in the
        // file we hold.
        std::fs::rename(&log, generation(&log, 1)).unwrap();
        append(&generation(&log, 1), &event(2));
        append(&log, &event(3));
        std::fs::rename(generation(&log, 1), generation(&log, 2)).unwrap();
        std::fs::rename(&log, generation(&log, 1)).unwrap();
        append(&log, &event(4));
        assert_eq!(poll_all(&mut tailer, &mut r), [2, 3, 4]);
    }

    #[test]
    fn a_file_rewritten_in_place_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        append(&log, &(event(1) + &event(2)));
        let mut tailer = Tailer::resume(&log, Position::open(&log, 0).unwrap(), "t".into());
        let mut r = Reassembler::default();
        assert_eq!(poll_all(&mut tailer, &mut r), [1, 2]);
        // Same inode, new and shorter content.
        std::fs::write(&log, event(3)).unwrap();
        assert_eq!(poll_all(&mut tailer, &mut r), [3]);
    }
}
