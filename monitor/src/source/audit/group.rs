//! The records of one audit event, gathered while it is incomplete.
//!
//! Records arrive one line (or netlink message) at a time and the input
//! buffer they were parsed from is reused, so a group keeps its own copy of
//! each record's bytes in one buffer. Groups are recycled by the
//! reassembler, so in steady state gathering allocates nothing.

use std::ops::Range;
use std::time::Instant;

use crate::event::AuditId;

use super::record::{Record, RecordType};

#[derive(Debug, Clone)]
struct Stored {
    kind: RecordType,
    body: Range<u32>,
    enriched: Range<u32>,
}

/// The records seen so far for one `(timestamp, serial)`.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: AuditId,
    buf: Vec<u8>,
    records: Vec<Stored>,
    /// Reassembler's record count when the last record arrived.
    pub last_record: u64,
    /// When the last record arrived (live sources only).
    pub last_at: Option<Instant>,
    /// Where the first record started in its input (file offset), so a
    /// checkpoint can point before everything still open.
    pub origin: u64,
}

impl Group {
    pub fn new(id: AuditId) -> Group {
        Group {
            id,
            buf: Vec::with_capacity(2048),
            records: Vec::with_capacity(8),
            last_record: 0,
            last_at: None,
            origin: 0,
        }
    }

    /// Empties the group for reuse under a new id, keeping its buffers.
    pub fn reset(&mut self, id: AuditId, origin: u64) {
        self.id = id;
        self.origin = origin;
        self.buf.clear();
        self.records.clear();
        self.last_record = 0;
        self.last_at = None;
    }

    pub fn push(&mut self, record: &Record<'_>) {
        let body = self.append(record.body);
        // Only SYSCALL's interpretation is ever read (the syscall name, for
        // architectures without a table); the rest need not be copied.
        let enriched = if record.kind == RecordType::SYSCALL {
            self.append(record.enriched)
        } else {
            0..0
        };
        self.records.push(Stored {
            kind: record.kind,
            body,
            enriched,
        });
    }

    fn append(&mut self, bytes: &[u8]) -> Range<u32> {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(bytes);
        start..self.buf.len() as u32
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held, to bound what one runaway event may take.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The records, in arrival order. Only SYSCALL keeps its ENRICHED part.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        self.records.iter().map(|s| Record {
            kind: s.kind,
            id: self.id,
            body: &self.buf[s.body.start as usize..s.body.end as usize],
            enriched: &self.buf[s.enriched.start as usize..s.enriched.end as usize],
        })
    }
}
