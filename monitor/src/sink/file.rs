//! The `file://` output: one JSON alert per line, rotated by size, and
//! reopened when someone else (logrotate) moves the file away.
//!
//! Writes are synchronous and unbuffered: a line is in the page cache when
//! `write` returns, so a crash of dockwatch loses nothing and a reader
//! tailing the file sees each alert at once. Before each write the path is
//! compared with the open file (device and inode), so once logrotate has
//! renamed the file and created its successor, the next alert goes to the
//! new file and nothing more lands in the moved one.
//!
//! Between logrotate's rename and its `create` there is a moment with no
//! file at the path. Creating one then races logrotate, which finds the
//! name taken and moves our new file aside (to a `.backup` name no reader
//! tails): two alerts went there in a test under load. So while the moved
//! file still has a name, alerts keep going to it for [`ROTATOR_GRACE`]
//! (they are in the rotated file, in order); only then, or at once when
//! the file was deleted rather than moved, is a new one created.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long alerts keep going to a moved file while nothing has replaced
/// it: logrotate creates the successor right after its rename.
const ROTATOR_GRACE: Duration = Duration::from_secs(1);

/// Size rotation: past `max_bytes`, `alerts.jsonl` becomes `alerts.jsonl.1`,
/// `.1` becomes `.2`, …, and `.keep` is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: u32,
}

pub struct FileSink {
    path: PathBuf,
    file: File,
    identity: (u64, u64),
    size: u64,
    rotation: Option<Rotation>,
    /// Since when the path has named no file while ours, moved, still
    /// has a name.
    vacant_since: Option<Instant>,
}

impl FileSink {
    pub fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<FileSink> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (file, identity, size) = open_append(path)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            file,
            identity,
            size,
            rotation,
            vacant_since: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one complete line (`line` ends with a newline).
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.should_reopen() {
            self.reopen()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        if let Some(rotation) = self.rotation {
            if self.size >= rotation.max_bytes {
                self.rotate(rotation)?;
            }
        }
        Ok(())
    }

    /// Opens the configured path afresh (SIGHUP after logrotate).
    pub fn reopen(&mut self) -> io::Result<()> {
        let (file, identity, size) = open_append(&self.path)?;
        self.file = file;
        self.identity = identity;
        self.size = size;
        self.vacant_since = None;
        Ok(())
    }

    /// Whether the next line belongs in a file opened afresh at the path:
    /// another file is there now, or ours was deleted, or ours was moved
    /// and nothing has replaced it for [`ROTATOR_GRACE`].
    fn should_reopen(&mut self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.dev(), meta.ino()) != self.identity,
            Err(_) => {
                let still_named = self.file.metadata().is_ok_and(|m| m.nlink() > 0);
                if !still_named {
                    return true;
                }
                let since = *self.vacant_since.get_or_insert_with(Instant::now);
                since.elapsed() >= ROTATOR_GRACE
            }
        }
    }

    fn rotate(&mut self, rotation: Rotation) -> io::Result<()> {
        let generation = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let keep = rotation.keep.max(1);
        match std::fs::remove_file(generation(keep)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (1..keep).rev() {
            match std::fs::rename(generation(n), generation(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, generation(1))?;
        self.reopen()
    }
}

fn open_append(path: &Path) -> io::Result<(File, (u64, u64), u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, (meta.dev(), meta.ino()), meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_keeping_generations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let rotation = Rotation {
            max_bytes: 10,
            keep: 2,
        };
        let mut sink = FileSink::open(&path, Some(rotation)).unwrap();
        for line in [
            "1111111\n",
            "2222222\n",
            "3333333\n",
            "4444444\n",
            "5555555\n",
        ] {
            sink.write_line(line.as_bytes()).unwrap();
        }
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
        assert_eq!(read("a.jsonl"), "5555555\n");
        assert_eq!(read("a.jsonl.1"), "3333333\n4444444\n");
        assert_eq!(read("a.jsonl.2"), "1111111\n2222222\n");
        assert!(!dir.path().join("a.jsonl.3").exists());
    }

    #[test]
    fn follows_a_moved_file_once_the_rotator_replaced_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let moved = dir.path().join("a.jsonl.1");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let mut sink = FileSink::open(&path, None).unwrap();
        sink.write_line(b"one\n").unwrap();
        // logrotate's rename: until its create, lines stay in the moved file.
        std::fs::rename(&path, &moved).unwrap();
        sink.write_line(b"two\n").unwrap();
        assert!(!path.exists(), "no file raced logrotate's create");
        // Its create: the next line goes to the new file.
        std::fs::write(&path, "").unwrap();
        sink.write_line(b"three\n").unwrap();
        assert_eq!(read(&moved), "one\ntwo\n");
        assert_eq!(read(&path), "three\n");
    }

    #[test]
    fn a_moved_file_nothing_replaces_is_followed_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut sink = FileSink::open(&path, None).unwrap();
        sink.write_line(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("a.jsonl.1")).unwrap();
        sink.write_line(b"two\n").unwrap();
        std::thread::sleep(ROTATOR_GRACE);
        sink.write_line(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.jsonl.1")).unwrap(),
            "one\ntwo\n"
        );
    }

    #[test]
    fn a_deleted_file_is_replaced_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut sink = FileSink::open(&path, None).unwrap();
        sink.write_line(b"one\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        sink.write_line(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }
}
