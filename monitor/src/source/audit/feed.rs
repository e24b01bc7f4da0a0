//! Lines of one named input → records → the reassembler, with warnings for
//! what is not a record.
//!
//! Bad lines never stop processing. Each is reported as `file:line: reason`;
//! after a few per input the rest are only counted, so a file that is not
//! an audit log at all yields a handful of warnings and one summary rather
//! than a million lines of noise.

use std::time::Instant;

use super::assemble::{Emit, Reassembler};
use super::lines::{Line, MAX_LINE};
use super::record::{IdCache, Record};

/// Warnings printed per input before the rest are only counted.
const SHOWN: u64 = 10;

/// One input's name and its bad-line accounting.
pub struct Input {
    pub name: String,
    pub records: u64,
    bad: u64,
    ids: IdCache,
}

impl Input {
    pub fn new(name: impl Into<String>) -> Input {
        Input {
            name: name.into(),
            records: 0,
            bad: 0,
            ids: IdCache::default(),
        }
    }

    /// Parses `line` (number `line_no`, starting at file offset `origin`)
    /// and hands the record on.
    pub fn feed(
        &mut self,
        line: Line<'_>,
        line_no: u64,
        origin: u64,
        now: Option<Instant>,
        reassembler: &mut Reassembler,
        emit: &mut Emit<'_>,
    ) {
        match line {
            Line::Text(text) => match Record::parse_line_cached(text, &mut self.ids) {
                Ok(record) => {
                    self.records += 1;
                    reassembler.push(&record, origin, now, emit);
                }
                Err(e) => self.warn(line_no, format_args!("skipped: {e}")),
            },
            Line::TooLong(len) => self.warn(
                line_no,
                format_args!(
                    "skipped a {len}-byte line (longer than {MAX_LINE} bytes: not an audit record)"
                ),
            ),
        }
    }

    /// The input ended in the middle of a line: a writer was cut off.
    pub fn unterminated(&mut self, line_no: u64) {
        self.warn(
            line_no,
            format_args!(
                "the last line has no newline (the log was cut off mid-write); reading it anyway"
            ),
        );
    }

    fn warn(&mut self, line_no: u64, what: std::fmt::Arguments<'_>) {
        self.bad += 1;
        if self.bad <= SHOWN {
            tracing::warn!("{}:{line_no}: {what}", self.name);
        }
    }

    /// Reports what was not shown; call once at the end of the input.
    pub fn finish(&mut self) {
        if self.bad > SHOWN {
            tracing::warn!(
                "{}: {} more bad lines not shown ({} bad, {} records in all)",
                self.name,
                self.bad - SHOWN,
                self.bad,
                self.records
            );
        }
        if self.records == 0 && self.bad > 0 {
            tracing::warn!(
                "{}: no audit records at all: is this an audit log?",
                self.name
            );
        }
    }

    pub fn bad_lines(&self) -> u64 {
        self.bad
    }
}
