//! The on-disk spool of one sink: numbered segment files of length-prefixed
//! records, and a cursor file naming the first record not yet confirmed.
//!
//! Every accepted record is written here before `send` returns (one
//! `write(2)`, no fsync: the page cache survives a SIGKILL of dockwatch;
//! fsync runs in batches for power loss). The delivery thread reads the
//! records back in order. Keeping the spool as the single path, rather than
//! a memory queue that spills to disk only under pressure, is what makes a
//! SIGKILL lose nothing and keeps one code path for "slow", "down" and
//! "restarted".
//!
//! Layout: `<dir>/<segment:016x>.seg` holds records as `u32 LE length` +
//! bytes; `<dir>/cursor` holds `segment u64 LE, offset u64 LE`. A writer
//! always starts a fresh segment, so a record torn by a crash can only be at
//! the end of an older segment, where the reader skips it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A place in the spool: segment number and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

const HEADER: usize = 4;
/// Largest record the reader accepts; anything longer is corruption.
const RECORD_MAX: usize = 16 << 20;

/// The writing half, shared with `send` under a mutex.
pub struct SpoolWriter {
    dir: PathBuf,
    file: File,
    segment: u64,
    segment_len: u64,
    segment_max: u64,
    /// Bytes in segment files on disk.
    pub total: u64,
    cap: u64,
    /// Records refused since the last report because `cap` was reached.
    pub dropped: u64,
    /// Bytes written since the last fsync.
    pub unsynced: bool,
}

impl SpoolWriter {
    /// Opens the spool in `dir` (created if needed): the writer on a new
    /// segment, the reader at the saved cursor.
    pub fn open(dir: &Path, cap: u64, segment_max: u64) -> io::Result<(SpoolWriter, SpoolReader)> {
        std::fs::create_dir_all(dir)?;
        let mut segments = list_segments(dir)?;
        segments.sort_unstable();
        let mut total = 0;
        for &seg in &segments {
            total += std::fs::metadata(segment_path(dir, seg))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        let oldest = segments.first().copied();
        let segment = segments.last().map_or(1, |s| s + 1);
        let file = create_segment(dir, segment)?;
        let cursor = read_cursor(dir)?;
        let start = match (cursor, oldest) {
            // The cursor may name a segment already deleted after delivery.
            (Some(c), Some(oldest)) if c.segment >= oldest => c,
            (_, Some(oldest)) => Pos {
                segment: oldest,
                offset: 0,
            },
            (_, None) => Pos { segment, offset: 0 },
        };
        let cursor_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join("cursor"))?;
        let writer = SpoolWriter {
            dir: dir.to_path_buf(),
            file,
            segment,
            segment_len: 0,
            // Several segments fit under the cap, so delivery frees space
            // segment by segment.
            segment_max: segment_max.min(cap / 8).max(4096),
            total,
            cap,
            dropped: 0,
            unsynced: false,
        };
        let reader = SpoolReader {
            dir: dir.to_path_buf(),
            pos: start,
            file: None,
            cursor_file,
            deleted_below: oldest.unwrap_or(segment),
        };
        Ok((writer, reader))
    }

    /// Appends one record; `false` when the size cap refused it (counted).
    pub fn append(&mut self, record: &[u8], scratch: &mut Vec<u8>) -> io::Result<bool> {
        let size = (HEADER + record.len()) as u64;
        if self.total + size > self.cap {
            self.dropped += 1;
            return Ok(false);
        }
        if self.segment_len > 0 && self.segment_len + size > self.segment_max {
            self.roll()?;
        }
        scratch.clear();
        scratch.extend_from_slice(&(record.len() as u32).to_le_bytes());
        scratch.extend_from_slice(record);
        self.file.write_all(scratch)?;
        self.segment_len += size;
        self.total += size;
        self.unsynced = true;
        Ok(true)
    }

    /// Starts a new segment; the old one can go once delivered.
    pub fn roll(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.file = create_segment(&self.dir, self.segment + 1)?;
        self.segment += 1;
        self.segment_len = 0;
        Ok(())
    }

    /// Whether, everything being delivered, the current segment should be
    /// closed so its space is freed.
    pub fn worth_rolling(&self) -> bool {
        self.segment_len > 0 && (self.segment_len >= self.segment_max / 4 || !self.has_room())
    }

    /// Just past the last record written.
    pub fn end(&self) -> Pos {
        Pos {
            segment: self.segment,
            offset: self.segment_len,
        }
    }

    /// A handle on the current segment, to fsync outside the lock.
    pub fn sync_handle(&mut self) -> io::Result<File> {
        self.unsynced = false;
        self.file.try_clone()
    }

    /// Whether the spool holds less than half its cap: room enough to
    /// report drops without refusing the report itself.
    pub fn has_room(&self) -> bool {
        self.total < self.cap / 2
    }
}

/// The reading half, owned by the delivery thread.
pub struct SpoolReader {
    dir: PathBuf,
    pos: Pos,
    file: Option<(u64, File)>,
    cursor_file: File,
    /// Every segment below this number is already deleted.
    deleted_below: u64,
}

/// Records read in one go; `records` are ranges of `data`.
#[derive(Default)]
pub struct Batch {
    pub data: Vec<u8>,
    pub records: Vec<(usize, usize)>,
    /// Where the record after this batch starts.
    pub end: Pos,
}

impl Batch {
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.records.iter().map(|&(s, e)| &self.data[s..e])
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.records.iter().map(|&(s, e)| (e - s) as u64).sum()
    }
}

impl SpoolReader {
    pub fn position(&self) -> Pos {
        self.pos
    }

    /// Goes back (or forward) to `pos`, to resend after a failure.
    pub fn seek(&mut self, pos: Pos) {
        self.pos = pos;
    }

    /// Reads whole records from the current position, up to about
    /// `max_bytes`, none at or past `end` (the writer's end).
    pub fn read(&mut self, end: Pos, max_bytes: usize, batch: &mut Batch) -> io::Result<()> {
        batch.data.clear();
        batch.records.clear();
        loop {
            batch.end = self.pos;
            if self.pos >= end {
                return Ok(());
            }
            let limit = if self.pos.segment == end.segment {
                (end.offset - self.pos.offset) as usize
            } else {
                usize::MAX
            };
            let want = limit.min(max_bytes.max(HEADER));
            if !self.open_segment()? {
                // Missing older segment: nothing to read there.
                self.next_segment();
                continue;
            }
            let file = &self.file.as_ref().expect("segment open").1;
            // Records are read straight into the batch and sent from there.
            batch.data.resize(want, 0);
            let n = read_full_at(file, &mut batch.data, self.pos.offset)?;
            let data = &batch.data[..n];
            let mut at = 0;
            while at + HEADER <= n {
                let len = u32::from_le_bytes(data[at..at + HEADER].try_into().unwrap()) as usize;
                if len > RECORD_MAX {
                    tracing::warn!(
                        segment = self.pos.segment,
                        offset = self.pos.offset,
                        "corrupt spool record; skipping the rest of the segment"
                    );
                    batch.records.clear();
                    self.next_segment();
                    return Ok(());
                }
                if at + HEADER + len > n {
                    break;
                }
                batch.records.push((at + HEADER, at + HEADER + len));
                at += HEADER + len;
            }
            self.pos.offset += at as u64;
            batch.end = self.pos;
            if !batch.records.is_empty() {
                return Ok(());
            }
            // No whole record in the window: a record bigger than the
            // window, a segment's end, or a record torn by a crash.
            if n >= HEADER {
                let len = u32::from_le_bytes(batch.data[..HEADER].try_into().unwrap()) as usize;
                if HEADER + len <= limit && n == want {
                    // Larger than max_bytes: read it alone.
                    batch.data.resize(HEADER + len, 0);
                    let got = read_full_at(file, &mut batch.data, self.pos.offset)?;
                    if got == HEADER + len {
                        batch.records.push((HEADER, HEADER + len));
                        self.pos.offset += got as u64;
                        batch.end = self.pos;
                        return Ok(());
                    }
                }
            }
            if self.pos.segment < end.segment {
                if n > 0 {
                    tracing::warn!(
                        segment = self.pos.segment,
                        "torn record at the end of a spool segment (crash while writing); skipped"
                    );
                }
                self.next_segment();
                continue;
            }
            return Ok(());
        }
    }

    /// Opens the segment at the current position; `false` if it is gone.
    fn open_segment(&mut self) -> io::Result<bool> {
        if self.file.as_ref().map(|(s, _)| *s) != Some(self.pos.segment) {
            match File::open(segment_path(&self.dir, self.pos.segment)) {
                Ok(f) => self.file = Some((self.pos.segment, f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn next_segment(&mut self) {
        self.pos = Pos {
            segment: self.pos.segment + 1,
            offset: 0,
        };
    }

    /// Records `confirmed` as the restart point and deletes the segments
    /// before it; returns the bytes freed.
    pub fn commit(&mut self, confirmed: Pos) -> io::Result<u64> {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&confirmed.segment.to_le_bytes());
        raw[8..].copy_from_slice(&confirmed.offset.to_le_bytes());
        self.cursor_file.write_all_at(&raw, 0)?;
        let mut freed = 0;
        while self.deleted_below < confirmed.segment {
            let path = segment_path(&self.dir, self.deleted_below);
            if let Ok(meta) = std::fs::metadata(&path) {
                freed += meta.len();
                std::fs::remove_file(&path)?;
            }
            self.deleted_below += 1;
        }
        Ok(freed)
    }

    pub fn sync_cursor(&self) -> io::Result<()> {
        self.cursor_file.sync_data()
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016x}.seg"))
}

fn create_segment(dir: &Path, segment: u64) -> io::Result<File> {
    OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment_path(dir, segment))
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(hex) = name.strip_suffix(".seg") {
            if let Ok(n) = u64::from_str_radix(hex, 16) {
                out.push(n);
            }
        }
    }
    Ok(out)
}

fn read_cursor(dir: &Path) -> io::Result<Option<Pos>> {
    match std::fs::read(dir.join("cursor")) {
        Ok(raw) if raw.len() >= 16 => Ok(Some(Pos {
            segment: u64::from_le_bytes(raw[..8].try_into().unwrap()),
            offset: u64::from_le_bytes(raw[8..16].try_into().unwrap()),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(reader: &mut SpoolReader, end: Pos) -> Vec<String> {
        let mut out = Vec::new();
        let mut batch = Batch::default();
        loop {
            reader.read(end, 64, &mut batch).unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(batch.iter().map(|r| String::from_utf8(r.to_vec()).unwrap()));
        }
    }

    #[test]
    fn replays_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut scratch = Vec::new();
        let (mut w, mut r) = SpoolWriter::open(dir.path(), 1 << 20, 40).unwrap();
        for i in 0..10 {
            assert!(w
                .append(format!("record-{i}").as_bytes(), &mut scratch)
                .unwrap());
        }
        let got = drain(&mut r, w.end());
        assert_eq!(got.len(), 10);
        assert_eq!(got[9], "record-9");
        // Confirm the first three only, then "crash".
        {
            let (_, mut again) = SpoolWriter::open(dir.path(), 1 << 20, 40).unwrap();
            let mut batch = Batch::default();
            again
                .read(
                    Pos {
                        segment: u64::MAX,
                        offset: 0,
                    },
                    40,
                    &mut batch,
                )
                .unwrap();
            assert_eq!(
                batch.records.len(),
                3,
                "40 bytes hold three 12-byte records"
            );
            again.commit(batch.end).unwrap();
        }
        drop((w, r));
        let (w, mut r) = SpoolWriter::open(dir.path(), 1 << 20, 40).unwrap();
        let got = drain(&mut r, w.end());
        assert_eq!(got.first().map(String::as_str), Some("record-3"));
        assert_eq!(got.last().map(String::as_str), Some("record-9"));
        assert_eq!(got.len(), 7);
    }

    #[test]
    fn a_record_larger_than_a_read_still_comes_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut scratch = Vec::new();
        let (mut w, mut r) = SpoolWriter::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        let big = "b".repeat(100);
        w.append(b"small", &mut scratch).unwrap();
        w.append(big.as_bytes(), &mut scratch).unwrap();
        w.append(b"tail", &mut scratch).unwrap();
        assert_eq!(drain(&mut r, w.end()), ["small", big.as_str(), "tail"]);
    }

    #[test]
    fn cap_refuses_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut scratch = Vec::new();
        let (mut w, _r) = SpoolWriter::open(dir.path(), 30, 1 << 20).unwrap();
        assert!(w.append(b"0123456789", &mut scratch).unwrap());
        assert!(w.append(b"0123456789", &mut scratch).unwrap());
        assert!(!w.append(b"0123456789", &mut scratch).unwrap());
        assert_eq!(w.dropped, 1);
    }

    #[test]
    fn torn_tail_of_old_segment_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut scratch = Vec::new();
        {
            let (mut w, _r) = SpoolWriter::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            w.append(b"whole", &mut scratch).unwrap();
            // A header promising 100 bytes, then a crash.
            w.file.write_all(&100u32.to_le_bytes()).unwrap();
            w.file.write_all(b"par").unwrap();
        }
        let (mut w, mut r) = SpoolWriter::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        w.append(b"after", &mut scratch).unwrap();
        assert_eq!(drain(&mut r, w.end()), ["whole", "after"]);
    }
}
