//! Splitting a byte stream into lines, with a bound on line length.
//!
//! Both the tailer (which sees a file grow, so the last line may be
//! incomplete for a while) and replay (which reads to the end) use it. It
//! counts lines for warnings and tracks the file offset of the next unread
//! line for checkpoints. A line longer than the bound is skipped as it
//! streams past, without ever being held in memory whole.

use std::io::{self, Read};

use memchr::memchr;

/// Longest line kept: audit records are at most ~9 KiB from the kernel;
/// ENRICHED lines add a little. Anything far longer is not a record.
pub const MAX_LINE: usize = 64 * 1024;

const BUFFER: usize = 256 * 1024;

/// One line out of the reader.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line, without its newline.
    Text(&'a [u8]),
    /// A line longer than [`MAX_LINE`], skipped; its length in bytes.
    TooLong(u64),
}

pub struct LineReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Number of the line `next` returns next (1-based).
    next_line_no: u64,
    /// File offset of `buf[start]`.
    offset: u64,
    /// Bytes of an overlong line dropped so far.
    discarding: Option<u64>,
}

impl Default for LineReader {
    fn default() -> LineReader {
        LineReader::new(0)
    }
}

impl LineReader {
    /// A reader for a stream whose next byte is at `offset`.
    pub fn new(offset: u64) -> LineReader {
        LineReader {
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            next_line_no: 1,
            offset,
            discarding: None,
        }
    }

    /// Reads more of `source` into the buffer; returns the bytes read (0 at
    /// end of input, for now).
    pub fn fill(&mut self, source: &mut dyn Read) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // A full buffer without a newline: the line is overlong.
            let dropped = (self.end - self.start) as u64;
            self.discarding = Some(self.discarding.unwrap_or(0) + dropped);
            self.offset += dropped;
            self.start = 0;
            self.end = 0;
        }
        loop {
            match source.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next complete line in the buffer, if any, and its 1-based number.
    pub fn next_line(&mut self) -> Option<(Line<'_>, u64)> {
        loop {
            let avail = &self.buf[self.start..self.end];
            let nl = memchr(b'\n', avail)?;
            let consumed = nl + 1;
            self.start += consumed;
            self.offset += consumed as u64;
            let line_no = self.next_line_no;
            self.next_line_no += 1;
            if let Some(dropped) = self.discarding.take() {
                return Some((Line::TooLong(dropped + nl as u64), line_no));
            }
            if nl > MAX_LINE {
                return Some((Line::TooLong(nl as u64), line_no));
            }
            let line = &self.buf[self.start - consumed..self.start - 1];
            if line.is_empty() {
                continue;
            }
            return Some((Line::Text(line), line_no));
        }
    }

    /// At end of input: the last line when it has no newline.
    pub fn last_line(&mut self) -> Option<(Line<'_>, u64)> {
        if self.start == self.end && self.discarding.is_none() {
            return None;
        }
        let len = self.end - self.start;
        let start = self.start;
        self.start = self.end;
        self.offset += len as u64;
        let line_no = self.next_line_no;
        self.next_line_no += 1;
        if let Some(dropped) = self.discarding.take() {
            return Some((Line::TooLong(dropped + len as u64), line_no));
        }
        if len > MAX_LINE {
            return Some((Line::TooLong(len as u64), line_no));
        }
        Some((Line::Text(&self.buf[start..self.end]), line_no))
    }

    /// The buffered bytes not yet returned as lines.
    pub fn peek(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Removes and returns the buffered bytes (to re-read them through a
    /// decoder).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let taken = self.peek().to_vec();
        self.offset += taken.len() as u64;
        self.start = self.end;
        taken
    }

    /// File offset just past the line last returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes read but not yet returned as lines (an incomplete last line).
    pub fn pending(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8]) -> Vec<String> {
        let mut r = LineReader::new(0);
        let mut src = input;
        let mut out = Vec::new();
        loop {
            while let Some((line, _)) = r.next_line() {
                out.push(match line {
                    Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    Line::TooLong(n) => format!("<{n}>"),
                });
            }
            if r.fill(&mut src).unwrap() == 0 {
                break;
            }
        }
        if let Some((line, _)) = r.last_line() {
            out.push(match line {
                Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Line::TooLong(n) => format!("<{n}>"),
            });
        }
        out
    }

    #[test]
    fn splits_and_keeps_the_unterminated_last_line() {
        assert_eq!(collect(b"a\n\nbb\nccc"), vec!["a", "bb", "ccc"]);
    }

    #[test]
    fn overlong_lines_are_skipped_not_held() {
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1 << 20));
        input.extend_from_slice(b"\nlast\n");
        assert_eq!(collect(&input), vec!["first", "<1048576>", "last"]);
    }
}
