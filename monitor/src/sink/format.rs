//! The bytes of one record: a JSON line, or the alert's JSON wrapped in an
//! RFC 5424 or RFC 3164 syslog header.
//!
//! Everything a process controls reaches the record only through
//! [`json_str`], which leaves no raw control character, quote or backslash;
//! the structured-data values additionally escape `]`. So a file name can
//! neither split a record (newline, NUL), nor forge a field (0x1d, `"`),
//! nor close the STRUCTURED-DATA element early (`]`).

use std::time::SystemTime;

use crate::alert::{json_str, write_timestamp, Alert};

/// Which wire format a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The alert JSON alone (JSON lines).
    Json,
    /// RFC 5424 with STRUCTURED-DATA and the JSON as MSG.
    Rfc5424,
    /// BSD syslog, for old receivers and /dev/log.
    Rfc3164,
}

impl Format {
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            "rfc5424" => Some(Format::Rfc5424),
            "rfc3164" => Some(Format::Rfc3164),
            _ => None,
        }
    }
}

/// SD-ID of dockwatch's structured-data element. 32473 is the private
/// enterprise number set aside for documentation (RFC 5612); receivers key on
/// the name part.
pub const SD_ID: &str = "dockwatch@32473";

/// Longest structured-data value, in bytes of the original field: the full
/// value is always in the JSON message, the SD copy is an index and must not
/// push a record past a receiver's message size limit.
const SD_VALUE_MAX: usize = 512;

/// Renders alerts for one sink.
#[derive(Debug, Clone)]
pub struct Formatter {
    pub format: Format,
    /// Syslog facility code (0..=23).
    pub facility: u8,
    /// Whether the RFC 3164 header carries a HOSTNAME (network receivers do;
    /// /dev/log receivers add their own).
    pub bsd_hostname: bool,
    /// PROCID: dockwatch's own pid.
    pub pid: u32,
}

impl Formatter {
    pub fn new(format: Format, facility: u8, bsd_hostname: bool) -> Formatter {
        Formatter {
            format,
            facility,
            bsd_hostname,
            pid: std::process::id(),
        }
    }

    /// Appends the record for `alert`, unframed.
    pub fn write(&self, alert: &Alert, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => alert.write_json(out),
            Format::Rfc5424 => self.write_5424(alert, out),
            Format::Rfc3164 => self.write_3164(alert, out),
        }
    }

    fn pri(&self, alert: &Alert, out: &mut Vec<u8>) {
        let pri = u32::from(self.facility) * 8 + u32::from(alert.rule.severity.level());
        out.push(b'<');
        out.extend_from_slice(itoa::Buffer::new().format(pri).as_bytes());
        out.push(b'>');
    }

    fn write_5424(&self, alert: &Alert, out: &mut Vec<u8>) {
        self.pri(alert, out);
        out.extend_from_slice(b"1 ");
        write_timestamp(out, alert.event.time);
        out.push(b' ');
        header_field(out, alert.host.as_bytes(), 255);
        out.extend_from_slice(b" dockwatch ");
        out.extend_from_slice(itoa::Buffer::new().format(self.pid).as_bytes());
        out.push(b' ');
        header_field(out, alert.rule.id.as_bytes(), 32);
        out.push(b' ');
        write_structured_data(alert, out);
        out.push(b' ');
        alert.write_json(out);
    }

    fn write_3164(&self, alert: &Alert, out: &mut Vec<u8>) {
        self.pri(alert, out);
        write_bsd_timestamp(out, alert.event.time);
        out.push(b' ');
        if self.bsd_hostname {
            header_field(out, alert.host.as_bytes(), 255);
            out.push(b' ');
        }
        out.extend_from_slice(b"dockwatch[");
        out.extend_from_slice(itoa::Buffer::new().format(self.pid).as_bytes());
        out.extend_from_slice(b"]: ");
        alert.write_json(out);
    }
}

/// A header token (HOSTNAME, MSGID): printable US-ASCII without spaces,
/// `-` when empty, cut at `max` bytes. Other bytes become `_`: header fields
/// come from the configuration, but must still never break the header.
fn header_field(out: &mut Vec<u8>, value: &[u8], max: usize) {
    if value.is_empty() {
        out.push(b'-');
        return;
    }
    out.extend(value.iter().take(max).map(|&b| match b {
        33..=126 => b,
        _ => b'_',
    }));
}

/// `[dockwatch@32473 rule="…" action="…" …]` with the fields a SIEM filters
/// on; the full alert is in MSG.
fn write_structured_data(alert: &Alert, out: &mut Vec<u8>) {
    let ev = &alert.event;
    out.push(b'[');
    out.extend_from_slice(SD_ID.as_bytes());
    sd_param(out, "rule", alert.rule.id.as_bytes());
    sd_param(out, "severity", alert.rule.severity.as_str().as_bytes());
    sd_param(out, "action", ev.action.as_str().as_bytes());
    sd_param(out, "outcome", ev.outcome.as_str().as_bytes());
    if let Some(file) = &ev.file {
        sd_param(out, "path", &file.path);
    }
    if ev.process.pid != 0 {
        sd_param(
            out,
            "pid",
            itoa::Buffer::new().format(ev.process.pid).as_bytes(),
        );
    }
    if let Some(exe) = &ev.process.exe {
        sd_param(out, "exe", exe);
    }
    if let Some(uid) = ev.process.uid {
        sd_param(out, "uid", itoa::Buffer::new().format(uid).as_bytes());
    }
    if let Some(auid) = ev.process.auid {
        sd_param(out, "auid", itoa::Buffer::new().format(auid).as_bytes());
    }
    if let Some(id) = &ev.process.container_id {
        sd_param(out, "container", id.as_bytes());
    }
    out.push(b']');
}

/// ` name="value"`. The value goes through [`json_str`] (which already
/// escapes `"` and `\` the way RFC 5424 wants, and turns control characters
/// and invalid UTF-8 into escapes), then `]` is escaped too.
fn sd_param(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    let start = out.len();
    json_str(out, &value[..value.len().min(SD_VALUE_MAX)]);
    // json_str wrote `"…"`; escape every `]` between the quotes.
    let brackets = memchr::memchr_iter(b']', &out[start..]).count();
    if brackets > 0 {
        let quoted = out.split_off(start);
        out.reserve(quoted.len() + brackets);
        for &b in &quoted {
            if b == b']' {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
}

/// `Mmm dd hh:mm:ss` (RFC 3164; UTC: dockwatch keeps no time zone data).
fn write_bsd_timestamp(out: &mut Vec<u8>, time: SystemTime) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // Reuse the RFC 3339 writer and pick its fields apart: one calendar
    // algorithm in the code base is enough.
    let mut iso = Vec::with_capacity(27);
    write_timestamp(&mut iso, time);
    let month = (iso[5] - b'0') * 10 + (iso[6] - b'0');
    out.extend_from_slice(MONTHS[usize::from(month.clamp(1, 12) - 1)]);
    out.push(b' ');
    out.push(if iso[8] == b'0' { b' ' } else { iso[8] });
    out.push(iso[9]);
    out.push(b' ');
    out.extend_from_slice(&iso[11..19]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{RuleRef, Severity};
    use crate::event::{Action, Event, FileRef, Outcome, Process, Source};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    fn alert(path: &[u8]) -> Alert {
        let mut ev = Event::new(Source::Audit, Action::OpenWrite);
        ev.time = UNIX_EPOCH + Duration::from_micros(1_795_869_685_242_123);
        ev.outcome = Outcome::Success;
        ev.file = Some(FileRef::new(path.to_vec()));
        ev.process = Process {
            pid: 77,
            uid: Some(0),
            exe: Some("/usr/bin/tee".into()),
            ..Process::default()
        };
        let rule = Arc::new(RuleRef::new(
            "docker-config-write".into(),
            "x".into(),
            Severity::Critical,
            vec![],
        ));
        Alert::new(ev, rule, "web-1".into())
    }

    fn render(format: Format, path: &[u8]) -> String {
        let mut f = Formatter::new(format, 3, true);
        f.pid = 4242;
        let mut out = Vec::new();
        f.write(&alert(path), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc5424_header_and_sd() {
        let line = render(Format::Rfc5424, b"/etc/docker/daemon.json");
        let expect = "<26>1 2026-11-28T12:41:25.242123Z web-1 dockwatch 4242 docker-config-write \
            [dockwatch@32473 rule=\"docker-config-write\" severity=\"critical\" action=\"open_write\" \
            outcome=\"success\" path=\"/etc/docker/daemon.json\" pid=\"77\" exe=\"/usr/bin/tee\" uid=\"0\"] {";
        assert!(line.starts_with(expect), "{line}");
        let json = &line[line.find("] {").unwrap() + 2..];
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["file"]["path"], "/etc/docker/daemon.json");
    }

    #[test]
    fn rfc3164_header() {
        let line = render(Format::Rfc3164, b"/x");
        assert!(
            line.starts_with("<26>Nov 28 12:41:25 web-1 dockwatch[4242]: {\"@timestamp\""),
            "{line}"
        );
    }

    #[test]
    fn hostile_path_stays_inside_its_param() {
        let line = render(Format::Rfc5424, b"/etc/docker/a\n]\"\\\x1d\x00\xff x=\"1\"");
        assert!(!line.bytes().any(|b| b < 0x20), "{line:?}");
        let sd_start = line.find('[').unwrap();
        // Walk the SD element as a receiver would: the first unescaped `]`
        // outside a quoted value closes it.
        let bytes = line.as_bytes();
        let (mut i, mut quoted, mut end) = (sd_start + 1, false, None);
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let end = end.expect("SD element closes");
        assert_eq!(&line[end..end + 3], "] {", "{line}");
        let sd = &line[sd_start..=end];
        assert!(
            sd.contains(r#"path="/etc/docker/a\n\]\"\\\\\u001d\u0000\\xff x=\"1\"""#),
            "{sd}"
        );
        let v: serde_json::Value = serde_json::from_str(&line[end + 2..]).unwrap();
        assert_eq!(
            v["file"]["path"],
            "/etc/docker/a\n]\"\\\\\u{1d}\u{0}\\xff x=\"1\""
        );
    }

    #[test]
    fn long_values_are_cut_in_sd_only() {
        let path = vec![b'a'; 4096];
        let line = render(Format::Rfc5424, &path);
        let sd_path = line.split("path=\"").nth(1).unwrap();
        assert_eq!(sd_path.find('"'), Some(SD_VALUE_MAX));
        assert!(line.contains(&format!("\"path\":\"{}\"", "a".repeat(4096))));
    }
}
