//! Fuzzes the audit parser and reassembler with audit.log text and netlink
//! payloads: no input may panic, and every event must render as one line
//! of valid JSON.
//!
//! The first byte picks the mode: even = audit.log lines (with a live clock
//! every few lines, to exercise the quiet window), odd = netlink messages
//! (two bytes of record type, then the payload up to a NUL).

#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use dockwatch::alert::{Alert, RuleRef, Severity};
use dockwatch::event::Event;
use dockwatch::source::audit::assemble::{Limits, Reassembler};
use dockwatch::source::audit::record::{Record, RecordType};
use libfuzzer_sys::fuzz_target;

fn check(event: Event, rule: &Arc<RuleRef>) {
    let alert = Alert::new(event, rule.clone(), "fuzz".into());
    let json = alert.to_json();
    assert!(!json.contains('\n'), "an alert spans lines: {json}");
    let _: serde_json::Value = serde_json::from_str(&json).expect("alert JSON parses");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let rule = Arc::new(RuleRef {
        id: "fuzz".into(),
        name: "fuzz".into(),
        severity: Severity::Info,
        tags: Vec::new(),
    });
    // Small bounds so the fuzzer reaches them.
    let limits = Limits {
        later_records: 4,
        quiet: Duration::from_millis(1),
        max_open: 8,
        max_records: 16,
        max_bytes: 4096,
    };
    let mut reassembler = Reassembler::new(limits);
    let mut emit = |event: Event| check(event, &rule);
    let start = Instant::now();
    if mode % 2 == 0 {
        for (n, line) in input.split(|&b| b == b'\n').enumerate() {
            let now = (mode & 2 != 0).then(|| start + Duration::from_millis(n as u64));
            if let Ok(record) = Record::parse_line(line) {
                let _ = record.fields().count();
                reassembler.push(&record, n as u64, now, &mut emit);
            }
            if let Some(now) = now {
                if n % 7 == 0 {
                    reassembler.expire(now, &mut emit);
                }
            }
        }
    } else {
        let mut rest = input;
        while rest.len() >= 2 {
            let kind = RecordType(u16::from_le_bytes([rest[0], rest[1]]));
            let body = &rest[2..];
            let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
            if let Ok(record) = Record::parse_payload(kind, &body[..end]) {
                reassembler.push(&record, 0, None, &mut emit);
            }
            rest = &body[(end + 1).min(body.len())..];
        }
    }
    reassembler.flush(&mut emit);
});
