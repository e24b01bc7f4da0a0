//! What the pipeline hands to the sinks: an [`Event`] that matched a rule,
//! and its one-line JSON form.
//!
//! The JSON is written by hand rather than through serde because it is on the
//! hot path of `replay` (millions of events) and because every byte a process
//! controls must be escaped our way: no newline, quote, 0x1d or invalid UTF-8
//! in a file name may split or forge a line. Field names follow the Elastic
//! Common Schema where it has one; fields with no value are left out.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::event::{Detail, EngineDetail, Event, FileRef, Outcome, Source};

/// Syslog severities, the scale rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Emergency = 0,
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl Severity {
    pub const ALL: [Severity; 8] = [
        Severity::Emergency,
        Severity::Alert,
        Severity::Critical,
        Severity::Error,
        Severity::Warning,
        Severity::Notice,
        Severity::Info,
        Severity::Debug,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Emergency => "emergency",
            Severity::Alert => "alert",
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
            Severity::Debug => "debug",
        }
    }

    pub fn from_name(name: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The syslog numeric level (0 emergency .. 7 debug).
    pub const fn level(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of a rule an alert carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    pub id: String,
    pub name: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    /// `"rule":{…}` as every alert of this rule writes it: rendered once
    /// here, not once per alert.
    json: Box<[u8]>,
}

impl RuleRef {
    pub fn new(id: String, name: String, severity: Severity, tags: Vec<String>) -> RuleRef {
        let mut json = Vec::with_capacity(64 + id.len() + name.len());
        json.extend_from_slice(b"\"rule\":{\"id\":");
        json_str(&mut json, id.as_bytes());
        json.extend_from_slice(b",\"name\":");
        json_str(&mut json, name.as_bytes());
        json.extend_from_slice(b",\"severity\":\"");
        json.extend_from_slice(severity.as_str().as_bytes());
        json.extend_from_slice(b"\",\"tags\":[");
        for (i, t) in tags.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json_str(&mut json, t.as_bytes());
        }
        json.extend_from_slice(b"]}");
        RuleRef {
            id,
            name,
            severity,
            tags,
            json: json.into_boxed_slice(),
        }
    }
}

/// The sources that saw an alert's action: a set, listed in [`Source`]
/// order (one alert stands for both sightings when both saw it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Providers(u8);

impl Providers {
    pub fn of(source: Source) -> Providers {
        Providers(Providers::bit(source))
    }

    fn bit(source: Source) -> u8 {
        1 << source as u8
    }

    pub fn contains(self, source: Source) -> bool {
        self.0 & Providers::bit(source) != 0
    }

    /// Adds every source of `other`.
    pub fn add(&mut self, other: Providers) {
        self.0 |= other.0;
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Source> {
        Source::ALL.into_iter().filter(move |&s| self.contains(s))
    }
}

impl<const N: usize> PartialEq<[Source; N]> for Providers {
    fn eq(&self, other: &[Source; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

/// One alert: an event, the rule it matched, and what correlation and flood
/// control added.
#[derive(Debug, Clone)]
pub struct Alert {
    pub event: Event,
    pub rule: Arc<RuleRef>,
    /// Every source that saw this action (one alert when both did).
    pub providers: Providers,
    /// How many events this alert stands for (flood aggregation); 1 normally.
    pub count: u64,
    pub host: Arc<str>,
}

impl Alert {
    pub fn new(event: Event, rule: Arc<RuleRef>, host: Arc<str>) -> Alert {
        let providers = Providers::of(event.source);
        Alert {
            event,
            rule,
            providers,
            count: 1,
            host,
        }
    }

    /// Appends the alert as one JSON object, without a trailing newline.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let ev = &self.event;
        out.extend_from_slice(b"{\"@timestamp\":\"");
        write_timestamp(out, ev.time);
        out.extend_from_slice(b"\",\"host\":{\"name\":");
        json_str(out, self.host.as_bytes());
        out.extend_from_slice(b"},\"event\":{\"action\":\"");
        out.extend_from_slice(ev.action.as_str().as_bytes());
        out.extend_from_slice(b"\",\"outcome\":\"");
        out.extend_from_slice(ev.outcome.as_str().as_bytes());
        out.push(b'"');
        if let Outcome::Failure { errno } = ev.outcome {
            out.extend_from_slice(b",\"errno\":");
            push_int(out, errno as i64);
        }
        out.extend_from_slice(b",\"provider\":[");
        for (i, p) in self.providers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(p.as_str().as_bytes());
            out.push(b'"');
        }
        out.push(b']');
        if self.count > 1 {
            out.extend_from_slice(b",\"count\":");
            push_int(out, self.count as i64);
        }
        if let Some(id) = ev.audit_id {
            out.extend_from_slice(b",\"id\":\"");
            push_int(out, id.secs as i64);
            out.push(b'.');
            push_millis(out, id.millis);
            out.push(b':');
            push_int(out, id.serial as i64);
            out.push(b'"');
        }
        out.extend_from_slice(b"},");
        out.extend_from_slice(&self.rule.json);
        if let Some(file) = &ev.file {
            out.extend_from_slice(b",\"file\":{");
            write_file(out, file);
            if let Some(target) = &ev.target {
                out.extend_from_slice(b",\"target_path\":");
                json_str(out, &target.path);
                if let Some(inode) = target.inode {
                    out.extend_from_slice(b",\"target_inode\":\"");
                    push_int(out, inode as i64);
                    out.push(b'"');
                }
            }
            out.push(b'}');
        }
        write_process(out, ev);
        write_container(out, ev);
        if let Some(key) = &ev.audit_key {
            // One tag per key: the kernel joins a rule's keys with 0x01.
            out.extend_from_slice(b",\"tags\":[");
            for (i, one) in key.split(|&b| b == 0x01).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, one);
            }
            out.push(b']');
        }
        write_detail(out, &ev.detail);
        out.push(b'}');
    }

    /// The alert as a JSON string (tests, small tools).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        // write_json emits only valid UTF-8: every byte of foreign input goes
        // through json_str, which escapes invalid sequences.
        String::from_utf8(out).expect("alert JSON is UTF-8")
    }
}

fn write_file(out: &mut Vec<u8>, file: &FileRef) {
    out.extend_from_slice(b"\"path\":");
    json_str(out, &file.path);
    if let Some(inode) = file.inode {
        // ECS keeps inode as a string: u64 exceeds JSON's safe integers.
        out.extend_from_slice(b",\"inode\":\"");
        push_int(out, inode as i64);
        out.push(b'"');
    }
    if let Some(dev) = file.dev {
        out.extend_from_slice(b",\"device\":\"");
        push_int(out, (dev >> 20) as i64);
        out.push(b':');
        push_int(out, (dev & 0xfffff) as i64);
        out.push(b'"');
    }
    if let Some(mode) = file.mode {
        out.extend_from_slice(b",\"mode\":\"");
        // Four octal digits by hand: `format!` allocated once per alert.
        let perm = mode & 0o7777;
        out.extend([9, 6, 3, 0].map(|shift| b'0' + ((perm >> shift) & 0o7) as u8));
        out.push(b'"');
    }
    if let Some(uid) = file.uid {
        out.extend_from_slice(b",\"uid\":\"");
        push_int(out, uid as i64);
        out.push(b'"');
    }
    if let Some(gid) = file.gid {
        out.extend_from_slice(b",\"gid\":\"");
        push_int(out, gid as i64);
        out.push(b'"');
    }
}

fn write_process(out: &mut Vec<u8>, ev: &Event) {
    let p = &ev.process;
    if p.pid == 0 && p.exe.is_none() && p.comm.is_none() {
        return;
    }
    out.extend_from_slice(b",\"process\":{\"pid\":");
    push_int(out, p.pid as i64);
    if p.ppid.is_some() || p.parent_exe.is_some() {
        out.extend_from_slice(b",\"parent\":{");
        let mut first = true;
        if let Some(ppid) = p.ppid {
            out.extend_from_slice(b"\"pid\":");
            push_int(out, ppid as i64);
            first = false;
        }
        if let Some(exe) = &p.parent_exe {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(b"\"executable\":");
            json_str(out, exe);
        }
        out.push(b'}');
    }
    if let Some(comm) = &p.comm {
        out.extend_from_slice(b",\"name\":");
        json_str(out, comm);
    }
    if let Some(exe) = &p.exe {
        out.extend_from_slice(b",\"executable\":");
        json_str(out, exe);
    }
    if let Some(cmd) = &p.cmdline {
        out.extend_from_slice(b",\"command_line\":");
        json_str(out, cmd);
    }
    out.push(b'}');
    if p.uid.is_some() || p.euid.is_some() || p.auid.is_some() {
        out.extend_from_slice(b",\"user\":{");
        let mut sep = false;
        let mut field = |out: &mut Vec<u8>, name: &[u8], v: u32| {
            if sep {
                out.push(b',');
            }
            sep = true;
            out.extend_from_slice(name);
            push_int(out, v as i64);
            out.push(b'"');
        };
        if let Some(uid) = p.uid {
            field(out, b"\"id\":\"", uid);
        }
        if let Some(euid) = p.euid {
            field(out, b"\"effective\":{\"id\":\"", euid);
            out.push(b'}');
        }
        if let Some(auid) = p.auid {
            field(out, b"\"audit\":{\"id\":\"", auid);
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// `container`: the one the engine acted on, with its name and image, else
/// the one the acting process runs in.
fn write_container(out: &mut Vec<u8>, ev: &Event) {
    if let Some(c) = &ev.container {
        out.extend_from_slice(b",\"container\":{\"id\":");
        json_str(out, c.id.as_bytes());
        if let Some(name) = &c.name {
            out.extend_from_slice(b",\"name\":");
            json_str(out, name.as_bytes());
        }
        if let Some(image) = &c.image {
            out.extend_from_slice(b",\"image\":{\"name\":");
            json_str(out, image.as_bytes());
            out.push(b'}');
        }
        out.push(b'}');
    } else if let Some(id) = &ev.process.container_id {
        out.extend_from_slice(b",\"container\":{\"id\":");
        json_str(out, id.as_bytes());
        out.push(b'}');
    }
}

fn write_engine(out: &mut Vec<u8>, engine: &EngineDetail) {
    out.extend_from_slice(b",\"docker\":{\"action\":");
    json_str(out, engine.action.as_bytes());
    if engine.object_id.is_some() || engine.object_name.is_some() {
        out.extend_from_slice(b",\"object\":{");
        let mut sep = "";
        if let Some(id) = &engine.object_id {
            out.extend_from_slice(b"\"id\":");
            json_str(out, id.as_bytes());
            sep = ",";
        }
        if let Some(name) = &engine.object_name {
            out.extend_from_slice(sep.as_bytes());
            out.extend_from_slice(b"\"name\":");
            json_str(out, name.as_bytes());
        }
        out.push(b'}');
    }
    if let Some(exec) = &engine.exec {
        out.extend_from_slice(b",\"exec\":{\"command\":");
        json_str(out, exec.command.as_bytes());
        out.extend_from_slice(b",\"user\":");
        json_str(out, exec.user.as_bytes());
        out.extend_from_slice(b",\"privileged\":");
        out.extend_from_slice(if exec.privileged { b"true" } else { b"false" });
        out.push(b'}');
    }
    if !engine.risks.is_empty() {
        out.extend_from_slice(b",\"risks\":[");
        for (i, risk) in engine.risks.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"check\":");
            json_str(out, risk.check_id.as_bytes());
            out.extend_from_slice(b",\"title\":");
            json_str(out, risk.title.as_bytes());
            out.extend_from_slice(b",\"evidence\":");
            json_str(out, risk.evidence.as_bytes());
            out.extend_from_slice(b",\"value\":");
            // serde_json's Display escapes strings properly and emits UTF-8.
            out.extend_from_slice(risk.value.to_string().as_bytes());
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn write_detail(out: &mut Vec<u8>, detail: &Detail) {
    match detail {
        Detail::None => {}
        Detail::Lost { count, what } => {
            out.extend_from_slice(b",\"dockwatch\":{\"lost\":{\"count\":");
            push_int(out, *count as i64);
            out.extend_from_slice(b",\"what\":");
            json_str(out, what.as_bytes());
            out.extend_from_slice(b"}}");
        }
        Detail::Dropped { sink, count } => {
            out.extend_from_slice(b",\"dockwatch\":{\"dropped\":{\"count\":");
            push_int(out, *count as i64);
            out.extend_from_slice(b",\"sink\":");
            json_str(out, sink.as_bytes());
            out.extend_from_slice(b"}}");
        }
        Detail::Heartbeat { counters } => {
            out.extend_from_slice(b",\"dockwatch\":{\"heartbeat\":");
            out.extend_from_slice(counters.as_bytes());
            out.push(b'}');
        }
        Detail::Start {
            previous_run,
            previous_pid,
            gap_secs,
        } => {
            out.extend_from_slice(b",\"dockwatch\":{\"start\":{\"previous_run\":");
            json_str(out, previous_run.as_bytes());
            if let Some(pid) = previous_pid {
                out.extend_from_slice(b",\"previous_pid\":");
                push_int(out, i64::from(*pid));
            }
            if let Some(gap) = gap_secs {
                out.extend_from_slice(b",\"gap_seconds\":");
                push_int(out, *gap as i64);
            }
            out.extend_from_slice(b"}}");
        }
        Detail::Refused { error } => {
            out.extend_from_slice(b",\"dockwatch\":{\"reload\":{\"refused\":");
            json_str(out, error.as_bytes());
            out.extend_from_slice(b"}}");
        }
        Detail::AuditConfig { op, text } => {
            out.extend_from_slice(b",\"audit\":{\"op\":");
            json_str(out, op.as_bytes());
            out.extend_from_slice(b",\"message\":");
            json_str(out, text.as_bytes());
            out.push(b'}');
        }
        Detail::Mount(change) => {
            out.extend_from_slice(b",\"mount\":{\"op\":\"");
            out.extend_from_slice(change.op.as_bytes());
            out.extend_from_slice(b"\",\"type\":");
            json_str(out, change.fstype.as_bytes());
            out.extend_from_slice(b",\"source\":");
            json_str(out, &change.source);
            out.extend_from_slice(b",\"root\":");
            json_str(out, &change.root);
            out.extend_from_slice(b",\"options\":");
            json_str(out, change.options.as_bytes());
            out.extend_from_slice(b",\"covers\":[");
            for (i, path) in change.covers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, path);
            }
            out.extend_from_slice(b"]}");
        }
        Detail::Posture(change) => {
            out.extend_from_slice(b",\"posture\":{\"check\":");
            json_str(out, change.check_id.as_bytes());
            out.extend_from_slice(b",\"title\":");
            json_str(out, change.title.as_bytes());
            out.extend_from_slice(b",\"key\":");
            json_str(out, change.key.as_bytes());
            out.extend_from_slice(b",\"before\":");
            // serde_json's Display escapes strings properly and emits UTF-8.
            out.extend_from_slice(change.before.to_string().as_bytes());
            out.extend_from_slice(b",\"after\":");
            out.extend_from_slice(change.after.to_string().as_bytes());
            out.extend_from_slice(b",\"status\":\"");
            out.extend_from_slice(change.status.as_bytes());
            out.push(b'"');
            if let Some(path) = &change.path {
                out.extend_from_slice(b",\"path\":");
                json_str(out, path.as_bytes());
            }
            out.push(b'}');
        }
        Detail::Engine(engine) => write_engine(out, engine),
    }
}

/// Writes `bytes` as a JSON string, losslessly. Valid UTF-8 passes through,
/// with JSON's mandatory escapes and every control character (newline,
/// 0x1d, DEL) as `\u00XX`. In the string a reader decodes, a backslash
/// always starts an escape of dockwatch's own: `\\` is one backslash and
/// `\xNN` (two lowercase hex digits) is the byte NN of an invalid UTF-8
/// sequence. So the file name `a\xff` (six characters) and the byte string
/// `a` 0xff differ — `a\\xff` and `a\xff` — and the exact bytes come back
/// by undoing those two escapes ([`unescape_bytes`]).
pub fn json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    // Nearly every string is printable ASCII without `"` or `\`: valid
    // UTF-8 with nothing to escape. One branch-free pass (it vectorizes)
    // finds that, and the bytes go out in one copy, without the UTF-8
    // validation and escape scan below.
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                escape_utf8(out, valid.as_bytes());
                break;
            }
            Err(err) => {
                let (valid, after) = rest.split_at(err.valid_up_to());
                escape_utf8(out, valid);
                let bad = err.error_len().unwrap_or(after.len());
                for &b in &after[..bad] {
                    out.extend_from_slice(b"\\\\x");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
                rest = &after[bad..];
            }
        }
    }
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Printable ASCII other than `"` and `\`: bytes JSON takes as they are.
fn is_plain(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |plain, &b| {
        plain & (b' '..=b'~').contains(&b) & (b != b'"') & (b != b'\\')
    })
}

/// Bytes `escape_utf8` must rewrite: controls, DEL, `"` and `\\`.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[0x7f] = true;
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

fn escape_utf8(out: &mut Vec<u8>, s: &[u8]) {
    // Most strings need no escape at all: one table scan finds that, and
    // the bytes go out in a single copy.
    let Some(first) = s.iter().position(|&b| NEEDS_ESCAPE[b as usize]) else {
        out.extend_from_slice(s);
        return;
    };
    let mut start = 0;
    for (i, &b) in s.iter().enumerate().skip(first) {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            // Doubled in the decoded text too: `\\` then means one
            // backslash, and `\xNN` can only be a byte (see json_str).
            b'\\' => b"\\\\\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// The bytes a string written by [`json_str`] stood for, from its decoded
/// JSON text: undoes `\\` and `\xNN`. `None` when a backslash starts
/// anything else (not dockwatch's escaping).
pub fn unescape_bytes(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next()? {
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

fn push_millis(out: &mut Vec<u8>, millis: u32) {
    out.push(b'0' + (millis / 100 % 10) as u8);
    out.push(b'0' + (millis / 10 % 10) as u8);
    out.push(b'0' + (millis % 10) as u8);
}

thread_local! {
    /// The last second written and its text up to the seconds: alerts come
    /// many to a second, and the calendar arithmetic showed in replay
    /// profiles.
    static LAST_SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
}

/// RFC 3339 UTC with microseconds: `2026-11-28T12:42:07.123456Z`.
pub fn write_timestamp(out: &mut Vec<u8>, time: SystemTime) {
    let (secs, micros) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        Err(_) => (0, 0),
    };
    let second = LAST_SECOND.with(|last| match last.get() {
        (cached, text) if cached == secs => text,
        _ => {
            let text = second_text(secs);
            last.set((secs, text));
            text
        }
    });
    let mut buf = [0u8; 8];
    buf[0] = b'.';
    put_digits(&mut buf[1..7], micros);
    buf[7] = b'Z';
    out.extend_from_slice(&second);
    out.extend_from_slice(&buf);
}

/// `2026-11-28T12:42:07` for `secs` since the epoch.
fn second_text(secs: i64) -> [u8; 19] {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut buf = [0u8; 19];
    put_digits(&mut buf[0..4], y as u32);
    buf[4] = b'-';
    put_digits(&mut buf[5..7], m);
    buf[7] = b'-';
    put_digits(&mut buf[8..10], d);
    buf[10] = b'T';
    put_digits(&mut buf[11..13], (sod / 3600) as u32);
    buf[13] = b':';
    put_digits(&mut buf[14..16], (sod / 60 % 60) as u32);
    buf[16] = b':';
    put_digits(&mut buf[17..19], (sod % 60) as u32);
    buf
}

fn put_digits(dst: &mut [u8], mut v: u32) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm): a date crate would cost an allocation per
/// alert on the replay hot path.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Action, Process};
    use std::time::Duration;

    fn sample() -> Alert {
        let mut ev = Event::new(Source::Ebpf, Action::Chmod);
        ev.time = UNIX_EPOCH + Duration::from_micros(1_795_869_685_242_123);
        ev.outcome = Outcome::Success;
        let mut file = FileRef::new(&b"/var/run/docker.sock"[..]);
        file.mode = Some(0o140666);
        ev.file = Some(file);
        ev.process = Process {
            pid: 4242,
            ppid: Some(4200),
            uid: Some(0),
            auid: Some(1000),
            comm: Some("chmod".into()),
            exe: Some("/usr/bin/chmod".into()),
            cmdline: Some("chmod 666 /var/run/docker.sock".into()),
            ..Process::default()
        };
        let rule = Arc::new(RuleRef::new(
            "docker-sock-perms".into(),
            "docker.sock permissions changed".into(),
            Severity::Critical,
            vec!["cis:3.15".into()],
        ));
        Alert::new(ev, rule, "web-1".into())
    }

    #[test]
    fn renders_design_fields() {
        let json: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(json["@timestamp"], "2026-11-28T12:41:25.242123Z");
        assert_eq!(json["host"]["name"], "web-1");
        assert_eq!(json["event"]["action"], "chmod");
        assert_eq!(json["event"]["provider"][0], "ebpf");
        assert_eq!(json["rule"]["severity"], "critical");
        assert_eq!(json["file"]["mode"], "0666");
        assert_eq!(json["process"]["parent"]["pid"], 4200);
        assert_eq!(json["user"]["audit"]["id"], "1000");
        assert!(
            json.get("container").is_none(),
            "absent fields are left out"
        );
    }

    #[test]
    fn hostile_bytes_cannot_split_or_forge() {
        let mut alert = sample();
        let evil = b"/etc/docker/x\n{\"forged\":1}\x1d\"\\\xff\xfe".to_vec();
        alert.event.file = Some(FileRef::new(evil.clone()));
        let line = alert.to_json();
        assert!(!line.contains('\n'));
        assert!(!line.contains('\u{1d}'));
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            json["file"]["path"],
            "/etc/docker/x\n{\"forged\":1}\u{1d}\"\\\\\\xff\\xfe"
        );
        let text = json["file"]["path"].as_str().unwrap();
        assert_eq!(unescape_bytes(text).unwrap(), evil);
    }

    #[test]
    fn escaping_is_lossless_both_ways() {
        let json_of = |bytes: &[u8]| {
            let mut out = Vec::new();
            json_str(&mut out, bytes);
            serde_json::from_slice::<String>(&out).unwrap()
        };
        // The literal text `\xff` and the byte 0xff no longer look alike.
        let literal = json_of(b"/etc/docker/\\xff");
        let byte = json_of(b"/etc/docker/\xff");
        assert_eq!(literal, "/etc/docker/\\\\xff");
        assert_eq!(byte, "/etc/docker/\\xff");
        assert_ne!(literal, byte);
        for bytes in [
            &b"/etc/docker/\\xff"[..],
            b"/etc/docker/\xff",
            b"back\\slash\\",
            b"\\\\x41\x80\xc3(",
            b"caf\xc3\xa9 \x00\x1d\x7f",
            b"plain",
        ] {
            assert_eq!(unescape_bytes(&json_of(bytes)).unwrap(), bytes, "{bytes:?}");
        }
        assert_eq!(unescape_bytes("a\\q"), None, "not our escape");
    }
}
