//! `dockwatch replay`: archived audit logs → events, oldest first.
//!
//! Logs come as audit.log and its rotated generations, in whatever order
//! the shell globbed them, some gzip-compressed, or on stdin. Each input's
//! first record says where it belongs in time; inputs are then streamed one
//! after another through a single reassembler, so an event whose records
//! straddle a rotation is still one event.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::event::{AuditId, Detail, Event};

use super::assemble::Reassembler;
use super::feed::Input;
use super::lines::LineReader;
use super::record::Record;

/// Serial gaps warned about one by one before they are only counted.
const GAPS_SHOWN: u64 = 20;

struct Source {
    input: Input,
    reader: Box<dyn Read>,
    lines: LineReader,
    first: Option<AuditId>,
    /// Position in the command line, to keep ties stable.
    position: usize,
}

/// Reads `files` (`-` is stdin; gzip detected by content) and calls
/// `on_event` for every event, oldest input first.
pub fn replay(files: &[PathBuf], on_event: &mut dyn FnMut(Event)) -> anyhow::Result<()> {
    let mut sources = Vec::with_capacity(files.len());
    for (position, file) in files.iter().enumerate() {
        sources.push(open(file, position)?);
    }
    sources.sort_by_key(|s| (s.first.is_none(), s.first, s.position));
    let mut reassembler = Reassembler::default();
    // Gaps in an archive are worth knowing about whatever the rules say;
    // past a few, they are only counted.
    let mut gaps = 0u64;
    let mut missing = 0u64;
    let mut emit = |event: Event| {
        if let (Detail::Lost { count, what }, Some(id)) = (&event.detail, event.audit_id) {
            gaps += 1;
            missing += count;
            if gaps <= GAPS_SHOWN {
                tracing::warn!(
                    "{count} {what} before audit({}.{:03}:{})",
                    id.secs,
                    id.millis,
                    id.serial
                );
            }
        }
        on_event(event)
    };
    for mut source in sources {
        // A damaged file (a truncated .gz, an I/O error) costs its rest,
        // not the other files.
        if let Err(e) = stream(&mut source, &mut reassembler, &mut emit) {
            tracing::warn!("{}: {e}; skipping the rest of this file", source.input.name);
        }
        source.input.finish();
    }
    reassembler.flush(&mut emit);
    if gaps > GAPS_SHOWN {
        tracing::warn!(
            "{gaps} serial gaps in all, {missing} audit events missing (only the first {GAPS_SHOWN} gaps shown)"
        );
    }
    Ok(())
}

fn open(path: &Path, position: usize) -> anyhow::Result<Source> {
    let (name, raw): (String, Box<dyn Read>) = if path == Path::new("-") {
        ("<stdin>".to_string(), Box::new(io::stdin().lock()))
    } else {
        let file = File::open(path).with_context(|| {
            format!(
                "cannot open {} (replay reads audit logs: check the path and that you may read it)",
                path.display()
            )
        })?;
        (path.display().to_string(), Box::new(file))
    };
    let mut lines = LineReader::new(0);
    let mut reader = raw;
    lines
        .fill(&mut reader)
        .with_context(|| format!("cannot read {name}"))?;
    // gzip by content, not by name: rotated logs are compressed under any name.
    if lines.peek().starts_with(&[0x1f, 0x8b]) {
        let head = lines.take_buffered();
        let chained = io::Cursor::new(head).chain(reader);
        reader = Box::new(flate2::read::MultiGzDecoder::new(chained));
        lines = LineReader::new(0);
        if let Err(e) = lines.fill(&mut reader) {
            tracing::warn!("{name}: cannot decompress: {e}; skipping this file");
            reader = Box::new(io::empty());
            lines = LineReader::new(0);
        }
    }
    let first = first_id(lines.peek());
    Ok(Source {
        input: Input::new(name),
        reader,
        lines,
        first,
        position,
    })
}

/// The id of the first record among already-buffered lines.
fn first_id(buffered: &[u8]) -> Option<AuditId> {
    buffered
        .split(|&b| b == b'\n')
        .find_map(|line| Record::parse_line(line).ok())
        .map(|r| r.id)
}

fn stream(
    source: &mut Source,
    reassembler: &mut Reassembler,
    emit: &mut dyn FnMut(Event),
) -> io::Result<()> {
    let Source {
        input,
        reader,
        lines,
        ..
    } = source;
    loop {
        let mut origin = lines.offset();
        while let Some((line, line_no)) = lines.next_line() {
            input.feed(line, line_no, origin, None, reassembler, emit);
            origin = lines.offset();
        }
        if lines.fill(reader.as_mut())? == 0 {
            break;
        }
    }
    let origin = lines.offset();
    if let Some((line, line_no)) = lines.last_line() {
        input.unterminated(line_no);
        input.feed(line, line_no, origin, None, reassembler, emit);
    }
    Ok(())
}
