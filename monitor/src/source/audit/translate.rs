//! A complete group of records → one [`Event`].
//!
//! This is where audit's vocabulary becomes dockwatch's: syscall numbers
//! become actions, PATH items become absolute paths (joined with CWD or
//! their PARENT item), a rename becomes a source and a target, PROCTITLE and
//! EXECVE become a command line, CONFIG_CHANGE and DAEMON_END become
//! `audit_config` events naming who changed audit.
//!
//! Every string of one event is decoded into a single buffer that is then
//! frozen and sliced, so an event costs one allocation for all its bytes.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrayvec::ArrayVec;
use bytes::Bytes;

use crate::event::{Action, AuditId, Detail, Event, FileRef, Outcome, Process, Source};

use super::group::Group;
use super::record::{
    decode_str_into, parse_dec, parse_hex, parse_id_field, parse_oct, parse_signed, unquote,
    Fields, Record, RecordType,
};
use super::syscalls::{self, Kind};

/// Inode → path memory, for events that name a file only by descriptor
/// (`fchown(fd)`, `write(fd)`: `name=(null)`).
const INODE_CACHE: usize = 1024;

/// PATH items looked at per event; more are counted but not resolved.
const MAX_ITEMS: usize = 16;

/// Inode → path memory. Hashed with foldhash: SipHash showed in replay
/// profiles, and the cache is bounded and cleared when full, so a hasher
/// that is only minimally DoS-resistant costs nothing to fear.
type InodeCache = HashMap<(u64, u64), Bytes, foldhash::fast::RandomState>;

/// Turns groups into events; remembers recent inode paths across events.
#[derive(Default)]
pub struct Translator {
    inodes: InodeCache,
    scratch: Scratch,
}

/// Decoding buffers reused from event to event.
#[derive(Default)]
struct Scratch {
    cwd: Vec<u8>,
    name: Vec<u8>,
    dir: Vec<u8>,
}

impl Scratch {
    /// Decodes the CWD record's value; false when there is none.
    fn load_cwd(&mut self, raw: Option<&[u8]>) -> bool {
        self.cwd.clear();
        raw.is_some_and(|raw| decode_str_into(raw, &mut self.cwd))
    }

    fn cwd(&self, present: bool) -> Option<&[u8]> {
        present.then_some(self.cwd.as_slice())
    }

    /// PATH item `index` as a file: its name made absolute, or the path an
    /// earlier event gave its inode when the name is `(null)`.
    fn file_ref(
        &mut self,
        inodes: &InodeCache,
        arena: &mut Arena,
        items: &[Item<'_>],
        index: usize,
        has_cwd: bool,
    ) -> PendingFile {
        let item = &items[index];
        self.name.clear();
        let named = item
            .name
            .is_some_and(|raw| decode_str_into(raw, &mut self.name));
        let path = if named {
            self.dir.clear();
            let has_dir = parent_dir(items, index, &self.name)
                .is_some_and(|raw| decode_str_into(raw, &mut self.dir));
            let dir = has_dir.then_some(self.dir.as_slice());
            PathSource::Arena(arena.path(&self.name, dir, self.cwd(has_cwd)))
        } else {
            match (item.dev, item.inode) {
                (Some(dev), Some(ino)) => inodes
                    .get(&(dev, ino))
                    .map_or(PathSource::Arena(0..0), |known| {
                        PathSource::Known(known.clone())
                    }),
                _ => PathSource::Arena(0..0),
            }
        };
        PendingFile {
            path,
            inode: item.inode,
            dev: item.dev,
            mode: item.mode,
            uid: item.ouid,
            gid: item.ogid,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum NameType {
    #[default]
    Normal,
    Parent,
    Create,
    Delete,
    Unknown,
}

#[derive(Debug, Clone, Copy, Default)]
struct Item<'a> {
    name: Option<&'a [u8]>,
    nametype: NameType,
    inode: Option<u64>,
    dev: Option<u64>,
    mode: Option<u32>,
    ouid: Option<u32>,
    ogid: Option<u32>,
}

#[derive(Debug, Default)]
struct Syscall<'a> {
    arch: u64,
    nr: Option<u64>,
    /// ENRICHED logs' `SYSCALL=` name, for architectures not tabled.
    enriched: &'a [u8],
    success: Option<bool>,
    exit: Option<i64>,
    /// `a0`..`a3` as written: an event reads one or two of them, so they
    /// are parsed when read ([`Syscall::arg`]), not all four up front.
    args: [Option<&'a [u8]>; 4],
    process: RawProcess<'a>,
    key: Option<&'a [u8]>,
}

impl Syscall<'_> {
    /// Argument `i` (`a0`..`a3`), a hex number.
    fn arg(&self, i: usize) -> Option<u64> {
        self.args.get(i).copied().flatten().and_then(parse_hex)
    }
}

#[derive(Debug, Default)]
struct RawProcess<'a> {
    pid: Option<u32>,
    ppid: Option<u32>,
    uid: Option<u32>,
    euid: Option<u32>,
    gid: Option<u32>,
    auid: Option<u32>,
    comm: Option<&'a [u8]>,
    exe: Option<&'a [u8]>,
}

impl<'a> RawProcess<'a> {
    #[inline(always)]
    fn take(&mut self, key: &[u8], value: &'a [u8]) -> bool {
        let number = unquote(value);
        match key {
            b"pid" => self.pid = parse_dec(number).and_then(|v| u32::try_from(v).ok()),
            b"ppid" => self.ppid = parse_dec(number).and_then(|v| u32::try_from(v).ok()),
            b"uid" => self.uid = parse_id_field(number),
            b"euid" => self.euid = parse_id_field(number),
            b"gid" => self.gid = parse_id_field(number),
            b"auid" => self.auid = parse_id_field(number),
            b"comm" => self.comm = Some(value),
            b"exe" => self.exe = Some(value),
            _ => return false,
        }
        true
    }
}

/// The records of a group that matter, borrowed from it.
#[derive(Default)]
struct Parts<'a> {
    syscall: Option<Syscall<'a>>,
    cwd: Option<&'a [u8]>,
    /// Not an array of defaults: zeroing sixteen items for every event
    /// showed in replay profiles.
    items: ArrayVec<Item<'a>, MAX_ITEMS>,
    proctitle: Option<&'a [u8]>,
    /// Every EXECVE record's body, in order: a long command line is split
    /// over several (`a1_len=` then `a1[0]=…` chunks, continued in the next
    /// record with the same serial).
    execve: Vec<&'a [u8]>,
    sockaddr: Option<&'a [u8]>,
    openat2_flags: Option<u64>,
    config: Option<Record<'a>>,
}

impl<'a> Parts<'a> {
    fn gather(group: &'a Group) -> Parts<'a> {
        let mut parts = Parts::default();
        for record in group.records() {
            match record.kind {
                RecordType::SYSCALL => {
                    // Parsed in place: the struct is large, and returning it
                    // by value copied it twice.
                    parse_syscall(&record, parts.syscall.insert(Syscall::default()))
                }
                RecordType::CWD => parts.cwd = record.field(b"cwd"),
                RecordType::PATH if !parts.items.is_full() => {
                    parts.items.push(parse_item(record.body));
                }
                RecordType::PROCTITLE => parts.proctitle = record.field(b"proctitle"),
                RecordType::EXECVE => parts.execve.push(record.body),
                RecordType::SOCKADDR => parts.sockaddr = record.field(b"saddr"),
                RecordType::OPENAT2 => {
                    parts.openat2_flags = record.field(b"oflag").and_then(parse_oct).map(u64::from)
                }
                RecordType::CONFIG_CHANGE | RecordType::DAEMON_END | RecordType::DAEMON_ABORT => {
                    parts.config = Some(record)
                }
                _ => {}
            }
        }
        parts
    }

    fn items(&self) -> &[Item<'a>] {
        &self.items
    }
}

/// Takes `fields` in the order of `keys` while the record follows it,
/// calling `$take(key, value)` with each key a constant (so an inlined
/// `take` folds its key match away); stops at the first field out of
/// order, leaving it and the rest to the caller's generic loop.
macro_rules! take_in_order {
    ($fields:expr, $take:expr, [$($key:literal),* $(,)?]) => {
        'ordered: {
            $(match $fields.next_if_key($key) {
                Some(value) => {
                    if $take($key, value) {
                        break 'ordered;
                    }
                }
                None => break 'ordered,
            })*
        }
    };
}

fn parse_syscall<'a>(record: &Record<'a>, sc: &mut Syscall<'a>) {
    let mut fields = record.fields();
    // audit_log_exit (kernel/auditsc.c) writes these first, in this order;
    // LSM subjects and anything else come before `key` and go the generic way.
    take_in_order!(
        fields,
        |k, v| {
            sc.take(k, v);
            false
        },
        [
            b"arch", b"syscall", b"success", b"exit", b"a0", b"a1", b"a2", b"a3", b"items",
            b"ppid", b"pid", b"auid", b"uid", b"gid", b"euid", b"suid", b"fsuid", b"egid", b"sgid",
            b"fsgid", b"tty", b"ses", b"comm", b"exe", b"key",
        ]
    );
    for (key, value) in fields {
        sc.take(key, value);
    }
    sc.enriched = record.enriched;
}

impl<'a> Syscall<'a> {
    #[inline(always)]
    fn take(&mut self, key: &[u8], value: &'a [u8]) {
        match key {
            b"arch" => self.arch = parse_hex(unquote(value)).unwrap_or(0),
            b"syscall" => self.nr = parse_dec(unquote(value)),
            b"success" => self.success = Some(unquote(value) == b"yes"),
            b"exit" => self.exit = parse_signed(unquote(value)),
            b"a0" => self.args[0] = Some(value),
            b"a1" => self.args[1] = Some(value),
            b"a2" => self.args[2] = Some(value),
            b"a3" => self.args[3] = Some(value),
            b"key" => self.key = Some(value),
            _ => {
                self.process.take(key, value);
            }
        }
    }
}

fn parse_item(body: &[u8]) -> Item<'_> {
    let mut item = Item::default();
    let mut fields = Fields::new(body);
    let mut done = false;
    // audit_log_name (kernel/audit.c) writes these first, in this order.
    take_in_order!(
        fields,
        |k, v| {
            done = item.take(k, v);
            done
        },
        [
            b"item",
            b"name",
            b"inode",
            b"dev",
            b"mode",
            b"ouid",
            b"ogid",
            b"rdev",
            b"nametype"
        ]
    );
    if done {
        return item;
    }
    for (key, value) in fields {
        if item.take(key, value) {
            break;
        }
    }
    item
}

impl<'a> Item<'a> {
    /// Takes one PATH field; true once the rest of the record holds nothing
    /// we use.
    #[inline(always)]
    fn take(&mut self, key: &[u8], value: &'a [u8]) -> bool {
        if key == b"name" {
            self.name = Some(value);
            return false;
        }
        let value = unquote(value);
        match key {
            b"inode" => self.inode = parse_dec(value),
            b"dev" => self.dev = parse_dev(value),
            b"mode" => self.mode = parse_oct(value),
            b"ouid" => self.ouid = parse_id_field(value),
            b"ogid" => self.ogid = parse_id_field(value),
            // Kernels before 3.14 wrote `objtype=` where later ones write
            // `nametype=`, with the same values.
            b"nametype" | b"objtype" => {
                self.nametype = match value {
                    b"PARENT" => NameType::Parent,
                    b"CREATE" => NameType::Create,
                    b"DELETE" => NameType::Delete,
                    b"NORMAL" => NameType::Normal,
                    _ => NameType::Unknown,
                };
                // The kernel writes nametype after the fields we use; only
                // capability and security fields follow.
                return self.mode.is_some();
            }
            _ => {}
        }
        false
    }
}

/// `fe:00` (hex major:minor) → the kernel's `MKDEV` encoding.
fn parse_dev(s: &[u8]) -> Option<u64> {
    // Five bytes: a plain scan, not a memchr call.
    let colon = s.iter().position(|&b| b == b':')?;
    let major = parse_hex(&s[..colon])?;
    let minor = parse_hex(&s[colon + 1..])?;
    Some(major << 20 | minor)
}

/// Byte ranges of one event's strings inside its single buffer.
struct Arena {
    buf: Vec<u8>,
}

impl Default for Arena {
    fn default() -> Arena {
        Arena {
            buf: Vec::with_capacity(384),
        }
    }
}

impl Arena {
    fn decoded(&mut self, raw: Option<&[u8]>) -> Option<Range<usize>> {
        let start = self.buf.len();
        decode_str_into(raw?, &mut self.buf).then_some(start..self.buf.len())
    }

    /// An absolute, normalized path: `name` as is when absolute, else under
    /// `dir` (itself made absolute with `cwd` when relative).
    fn path(&mut self, name: &[u8], dir: Option<&[u8]>, cwd: Option<&[u8]>) -> Range<usize> {
        let start = self.buf.len();
        if name.first() != Some(&b'/') {
            for base in [cwd, dir].into_iter().flatten() {
                if base.first() == Some(&b'/') {
                    self.buf.truncate(start);
                }
                push_normalized(&mut self.buf, start, base);
            }
        }
        push_normalized(&mut self.buf, start, name);
        if self.buf.len() == start {
            self.buf.push(b'/');
        }
        start..self.buf.len()
    }
}

/// Appends `path`'s components to the path being built at `buf[start..]`,
/// resolving `.` and `..` lexically and collapsing slashes.
fn push_normalized(buf: &mut Vec<u8>, start: usize, path: &[u8]) {
    // Most paths are normal already (plain names between single slashes):
    // one check, then one copy rather than one per component.
    let names = path.strip_prefix(b"/").unwrap_or(path);
    if !names.is_empty()
        && names
            .split(|&b| b == b'/')
            .all(|c| !matches!(c, b"" | b"." | b".."))
    {
        buf.push(b'/');
        buf.extend_from_slice(names);
        return;
    }
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                let cut = memchr::memrchr(b'/', &buf[start..]).map_or(start, |i| start + i);
                buf.truncate(cut);
            }
            _ => {
                buf.push(b'/');
                buf.extend_from_slice(component);
            }
        }
    }
}

impl Translator {
    pub fn new() -> Translator {
        Translator::default()
    }

    /// The event a complete group stands for; `None` when it is nothing
    /// dockwatch reports (a syscall it does not map, a lone record).
    pub fn translate(&mut self, group: &Group) -> Option<Event> {
        let parts = Parts::gather(group);
        if let Some(config) = parts.config {
            return Some(self.audit_config(group.id, &parts, &config));
        }
        let sc = parts.syscall.as_ref()?;
        let name = match sc.nr.and_then(|nr| syscalls::name(sc.arch, nr)) {
            Some(name) => name,
            None => {
                let named = Fields::new(sc.enriched).find(|(k, _)| *k == b"SYSCALL")?.1;
                std::str::from_utf8(named).ok()?
            }
        };
        let kind = syscalls::kind(name)?;
        let action = match kind {
            Kind::Open { flags_arg } => {
                let flags = match flags_arg {
                    Some(i) => sc.arg(i),
                    None => parts.openat2_flags.or(Some(syscalls::OPEN_WRITE_FLAGS)),
                };
                if flags? & syscalls::OPEN_WRITE_FLAGS == 0 {
                    return None;
                }
                Action::OpenWrite
            }
            Kind::Chmod { .. } => Action::Chmod,
            Kind::Chown { .. } => Action::Chown,
            // socketcall(SYS_CONNECT = 3, args): its SOCKADDR record is
            // the same as connect's.
            Kind::SocketCall if sc.arg(0) == Some(3) => Action::Connect,
            Kind::SocketCall => return None,
            Kind::Fixed(action) => action,
        };

        let mut arena = Arena::default();
        // Not Event::new: it reads the clock, and replay makes millions.
        let mut event = Event {
            time: time_of(group.id),
            source: Source::Audit,
            action,
            outcome: match (sc.success, sc.exit) {
                (Some(true), _) => Outcome::Success,
                (Some(false), Some(exit)) => Outcome::from_return(exit.min(-1)),
                (Some(false), None) => Outcome::Failure { errno: 0 },
                (None, _) => Outcome::Unknown,
            },
            file: None,
            target: None,
            process: Process::default(),
            audit_id: Some(group.id),
            audit_key: None,
            container: None,
            detail: Detail::None,
        };

        let scratch = &mut self.scratch;
        let has_cwd = scratch.load_cwd(parts.cwd);
        let (file_item, target_item) = pick_items(action, parts.items());
        let items = parts.items();
        let mut file =
            file_item.map(|i| scratch.file_ref(&self.inodes, &mut arena, items, i, has_cwd));
        let mut target =
            target_item.map(|i| scratch.file_ref(&self.inodes, &mut arena, items, i, has_cwd));
        if action == Action::Connect {
            let cwd = scratch.cwd(has_cwd);
            if let Some(path) = unix_socket_path(&mut arena, parts.sockaddr, cwd) {
                let mut socket = file.take().unwrap_or_default();
                socket.path = path;
                file = Some(socket);
            }
        }
        match kind {
            Kind::Chmod { mode_arg } => {
                if let (Some(f), Some(mode)) = (file.as_mut(), sc.arg(mode_arg)) {
                    let kind_bits = f.mode.map_or(0, |m| m & 0o170000);
                    f.mode = Some(kind_bits | (mode as u32 & 0o7777));
                }
            }
            Kind::Chown { owner_arg, id16 } => {
                if let Some(f) = file.as_mut() {
                    let unchanged = if id16 { 0xffff } else { u32::MAX };
                    let new_id =
                        |arg: Option<u64>| arg.map(|v| v as u32).filter(|&v| v != unchanged);
                    if let Some(uid) = new_id(sc.arg(owner_arg)) {
                        f.uid = Some(uid);
                    }
                    if let Some(gid) = new_id(sc.arg(owner_arg + 1)) {
                        f.gid = Some(gid);
                    }
                }
            }
            _ => {}
        }

        let process = process_ranges(&mut arena, &sc.process, &parts, action == Action::Exec);
        let key = key_range(&mut arena, sc.key);

        let bytes = Bytes::from(arena.buf);
        let resolve = |f: PendingFile| f.finish(&bytes);
        event.file = file.map(resolve);
        event.target = target.take().map(resolve);
        event.process = process.finish(&bytes);
        event.audit_key = key.map(|r| bytes.slice(r));
        self.remember(&event, &parts);
        Some(event)
    }

    fn remember(&mut self, event: &Event, parts: &Parts<'_>) {
        if parts.items.is_empty() {
            return;
        }
        for file in event.paths() {
            if let (Some(dev), Some(ino), false) = (file.dev, file.inode, file.path.is_empty()) {
                if self.inodes.len() >= INODE_CACHE {
                    self.inodes.clear();
                }
                // The same files come back again and again: an equal path
                // already cached stays, sparing a clone and a drop (two
                // atomic reference count updates) per event.
                match self.inodes.entry((dev, ino)) {
                    Entry::Occupied(mut known) => {
                        if *known.get() != file.path {
                            known.insert(file.path.clone());
                        }
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(file.path.clone());
                    }
                }
            }
        }
    }

    fn audit_config(&mut self, id: AuditId, parts: &Parts<'_>, config: &Record<'_>) -> Event {
        let mut event = Event::new(Source::Audit, Action::AuditConfig);
        event.time = time_of(id);
        event.audit_id = Some(id);
        let mut raw = RawProcess::default();
        let mut op = None;
        let mut key = None;
        let mut res = None;
        for (k, v) in config.fields() {
            match k {
                b"op" => op = Some(v),
                b"key" => key = Some(v),
                b"res" => res = Some(v),
                _ => {
                    raw.take(k, v);
                }
            }
        }
        // The syscall that carried the change (auditctl's sendto) names the
        // process better than CONFIG_CHANGE itself does.
        if let Some(sc) = &parts.syscall {
            let p = &sc.process;
            raw = RawProcess {
                pid: p.pid.or(raw.pid),
                ppid: p.ppid,
                uid: p.uid.or(raw.uid),
                euid: p.euid,
                gid: p.gid,
                auid: raw.auid.or(p.auid),
                comm: p.comm,
                exe: p.exe,
            };
        }
        event.outcome = match res {
            Some(b"1" | b"success" | b"yes") => Outcome::Success,
            Some(_) => Outcome::Failure { errno: 0 },
            None => Outcome::Unknown,
        };
        let mut arena = Arena::default();
        let has_cwd = self.scratch.load_cwd(parts.cwd);
        let file = (!parts.items.is_empty()).then(|| {
            self.scratch
                .file_ref(&self.inodes, &mut arena, parts.items(), 0, has_cwd)
        });
        let process = process_ranges(&mut arena, &raw, parts, false);
        let key = key_range(&mut arena, key);
        let bytes = Bytes::from(arena.buf);
        event.file = file.map(|f| f.finish(&bytes));
        event.process = process.finish(&bytes);
        event.audit_key = key.map(|r| bytes.slice(r));
        let op = op.map_or_else(
            || config.kind.to_string(),
            |v| String::from_utf8_lossy(v.strip_prefix(b"\"").unwrap_or(v)).into_owned(),
        );
        let op = op.trim_end_matches('"').to_string();
        let text = format!("{} {}", config.kind, String::from_utf8_lossy(config.body));
        event.detail = Detail::AuditConfig { op, text };
        event
    }
}

/// The directory a relative PATH item lives in: its PARENT item. A rename
/// logs the old directory first and the new one second, so a DELETE item
/// takes the first PARENT and a CREATE item the last.
fn parent_dir<'a>(items: &[Item<'a>], index: usize, name: &[u8]) -> Option<&'a [u8]> {
    if name.first() == Some(&b'/') || name.contains(&b'/') {
        return None;
    }
    let mut parents = items[..index]
        .iter()
        .filter(|i| i.nametype == NameType::Parent)
        .filter_map(|i| i.name);
    match items[index].nametype {
        NameType::Create => parents.next_back(),
        _ => parents.next(),
    }
}

/// Chooses the PATH items that are the event's file and target.
fn pick_items(action: Action, items: &[Item<'_>]) -> (Option<usize>, Option<usize>) {
    let find = |t: NameType| items.iter().position(|i| i.nametype == t);
    let rfind = |t: NameType| items.iter().rposition(|i| i.nametype == t);
    let not_parent = items.iter().position(|i| i.nametype != NameType::Parent);
    let any = not_parent.or(if items.is_empty() { None } else { Some(0) });
    match action {
        Action::Rename => (find(NameType::Delete).or(any), rfind(NameType::Create)),
        Action::Link => (find(NameType::Normal), rfind(NameType::Create).or(any)),
        Action::Symlink => {
            let content = items
                .iter()
                .position(|i| !matches!(i.nametype, NameType::Parent | NameType::Create));
            match (content, rfind(NameType::Create)) {
                (Some(c), Some(t)) => (Some(c), Some(t)),
                (c, t) => (t.or(c), None),
            }
        }
        Action::Unlink => (find(NameType::Delete).or(any), None),
        Action::Mkdir | Action::Mknod | Action::OpenWrite => {
            (rfind(NameType::Create).or(any), None)
        }
        Action::Exec => (if items.is_empty() { None } else { Some(0) }, None),
        _ => (any, None),
    }
}

/// `sockaddr_un` from a SOCKADDR record's hex: the socket's path (`@name`
/// for the abstract namespace).
fn unix_socket_path(
    arena: &mut Arena,
    saddr: Option<&[u8]>,
    cwd: Option<&[u8]>,
) -> Option<PathSource> {
    let mut raw = Vec::new();
    if !decode_str_into(saddr?, &mut raw) || raw.len() < 3 || raw[..2] != [1, 0] {
        return None;
    }
    let sun_path = &raw[2..];
    if sun_path[0] == 0 {
        let name = &sun_path[1..];
        let end = memchr::memchr(0, name).unwrap_or(name.len());
        let start = arena.buf.len();
        arena.buf.push(b'@');
        arena.buf.extend_from_slice(&name[..end]);
        return Some(PathSource::Arena(start..arena.buf.len()));
    }
    let end = memchr::memchr(0, sun_path).unwrap_or(sun_path.len());
    let name = &sun_path[..end];
    if name.first() != Some(&b'/') && cwd.is_none_or(|c| c.first() != Some(&b'/')) {
        // A relative path and no CWD record to place it: the name as the
        // process gave it, not an absolute path made up from it.
        let start = arena.buf.len();
        arena.buf.extend_from_slice(name);
        return Some(PathSource::Arena(start..arena.buf.len()));
    }
    Some(PathSource::Arena(arena.path(name, None, cwd)))
}

pub(super) fn time_of(id: AuditId) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::new(id.secs, id.millis.min(999) * 1_000_000))
        .unwrap_or(UNIX_EPOCH)
}

/// The decoded key; several keys on one rule stay joined by 0x01, as the
/// kernel joins them, so a key that itself holds a comma stays one key.
fn key_range(arena: &mut Arena, key: Option<&[u8]>) -> Option<Range<usize>> {
    arena.decoded(key)
}

enum PathSource {
    Arena(Range<usize>),
    Known(Bytes),
}

struct PendingFile {
    path: PathSource,
    inode: Option<u64>,
    dev: Option<u64>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl PendingFile {
    fn finish(self, bytes: &Bytes) -> FileRef {
        FileRef {
            path: match self.path {
                PathSource::Arena(r) => bytes.slice(r),
                PathSource::Known(b) => b,
            },
            inode: self.inode,
            dev: self.dev,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

impl Default for PendingFile {
    fn default() -> PendingFile {
        PendingFile {
            path: PathSource::Arena(0..0),
            inode: None,
            dev: None,
            mode: None,
            uid: None,
            gid: None,
        }
    }
}

struct PendingProcess {
    pid: u32,
    ppid: Option<u32>,
    uid: Option<u32>,
    euid: Option<u32>,
    gid: Option<u32>,
    auid: Option<u32>,
    comm: Option<Range<usize>>,
    exe: Option<Range<usize>>,
    cmdline: Option<Range<usize>>,
}

impl PendingProcess {
    fn finish(self, bytes: &Bytes) -> Process {
        Process {
            pid: self.pid,
            ppid: self.ppid,
            uid: self.uid,
            euid: self.euid,
            gid: self.gid,
            auid: self.auid,
            comm: self.comm.map(|r| bytes.slice(r)),
            exe: self.exe.map(|r| bytes.slice(r)),
            cmdline: self.cmdline.map(|r| bytes.slice(r)),
            container_id: None,
            parent_exe: None,
        }
    }
}

fn process_ranges(
    arena: &mut Arena,
    raw: &RawProcess<'_>,
    parts: &Parts<'_>,
    prefer_execve: bool,
) -> PendingProcess {
    let comm = arena.decoded(raw.comm);
    let exe = arena.decoded(raw.exe);
    let execve = if prefer_execve || parts.proctitle.is_none() {
        execve_cmdline(arena, &parts.execve)
    } else {
        None
    };
    let cmdline = execve.or_else(|| proctitle_cmdline(arena, parts.proctitle));
    PendingProcess {
        pid: raw.pid.unwrap_or(0),
        ppid: raw.ppid,
        uid: raw.uid,
        euid: raw.euid,
        gid: raw.gid,
        auid: raw.auid,
        comm,
        exe,
        cmdline,
    }
}

/// PROCTITLE's argv, NUL-separated → space-separated.
fn proctitle_cmdline(arena: &mut Arena, raw: Option<&[u8]>) -> Option<Range<usize>> {
    let range = arena.decoded(raw)?;
    let mut end = range.end;
    while end > range.start && arena.buf[end - 1] == 0 {
        end -= 1;
    }
    arena.buf.truncate(end);
    // A select, not a branch, so the loop vectorizes.
    for b in &mut arena.buf[range.start..end] {
        *b = if *b == 0 { b' ' } else { *b };
    }
    Some(range.start..end)
}

/// EXECVE's `a0=… a1[0]=… a1[1]=…`, over all the event's EXECVE records →
/// the arguments joined by spaces.
fn execve_cmdline(arena: &mut Arena, bodies: &[&[u8]]) -> Option<Range<usize>> {
    let start = arena.buf.len();
    let mut any = false;
    for (key, value) in bodies.iter().flat_map(|body| Fields::new(body)) {
        let Some(rest) = key.strip_prefix(b"a") else {
            continue;
        };
        if rest.ends_with(b"_len") || rest.is_empty() || !rest[0].is_ascii_digit() {
            continue;
        }
        let continued = rest.contains(&b'[') && !rest.ends_with(b"[0]");
        if any && !continued {
            arena.buf.push(b' ');
        }
        decode_str_into(value, &mut arena.buf);
        any = true;
    }
    any.then_some(start..arena.buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &[u8], dir: Option<&[u8]>, cwd: Option<&[u8]>) -> String {
        let mut arena = Arena::default();
        let r = arena.path(name, dir, cwd);
        String::from_utf8(arena.buf[r].to_vec()).unwrap()
    }

    #[test]
    fn paths_are_made_absolute_and_normal() {
        assert_eq!(path(b"/etc//docker/./x", None, None), "/etc/docker/x");
        assert_eq!(
            path(b"docker", Some(b"/var/lib"), Some(b"/srv")),
            "/var/lib/docker"
        );
        assert_eq!(path(b"a/../b", None, Some(b"/srv/ops")), "/srv/ops/b");
        assert_eq!(path(b"../../../x", None, Some(b"/srv")), "/x");
        assert_eq!(path(b"/etc/docker/", None, None), "/etc/docker");
        assert_eq!(path(b"x", Some(b"sub/"), Some(b"/srv")), "/srv/sub/x");
        assert_eq!(path(b"/", None, None), "/");
    }

    fn syscall_of(body: &str) -> String {
        let record = Record {
            kind: RecordType::SYSCALL,
            id: AuditId {
                secs: 1,
                millis: 0,
                serial: 1,
            },
            body: body.as_bytes(),
            enriched: b"",
        };
        let mut sc = Syscall::default();
        parse_syscall(&record, &mut sc);
        format!("{sc:?}")
    }

    const KERNEL_SYSCALL: &str = "arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=7ffc55d41a02 a2=941 a3=1b6 items=1 ppid=16732 pid=16776 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4 comm=\"touch\" exe=\"/usr/bin/touch\" key=\"docker\"";

    #[test]
    fn syscall_fields_out_of_kernel_order_parse_the_same() {
        let ordered = syscall_of(KERNEL_SYSCALL);
        assert!(ordered.contains("nr: Some(257)"), "{ordered}");
        assert!(ordered.contains("pid: Some(16776)"), "{ordered}");
        assert!(ordered.contains("key: Some([34, 100"), "{ordered}");
        let mut reversed: Vec<&str> = KERNEL_SYSCALL.split(' ').collect();
        reversed.reverse();
        assert_eq!(syscall_of(&reversed.join(" ")), ordered);
        // An LSM subject before the key, a doubled space, a later duplicate.
        let subj = KERNEL_SYSCALL.replace(" key=", " subj=unconfined key=");
        assert_eq!(syscall_of(&subj), ordered);
        let spaced = KERNEL_SYSCALL.replace(" pid=", "  pid=");
        assert_eq!(syscall_of(&spaced), ordered);
        let again = format!("{KERNEL_SYSCALL} pid=1");
        assert!(syscall_of(&again).contains("pid: Some(1),"));
    }

    #[test]
    fn path_items_out_of_kernel_order_parse_the_same() {
        let item = |body: &str| format!("{:?}", parse_item(body.as_bytes()));
        let ordered = "item=0 name=\"/etc/docker/daemon.json\" inode=876904 dev=fe:00 mode=0100600 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 name=\"/late\"";
        let parsed = item(ordered);
        assert!(parsed.contains("inode: Some(876904)"), "{parsed}");
        assert!(parsed.contains("mode: Some(33152)"), "{parsed}");
        // Nothing after nametype is read once mode is known...
        assert!(!parsed.contains("108, 97, 116, 101"), "{parsed}");
        assert_eq!(
            item("name=\"/etc/docker/daemon.json\" item=0 mode=0100600 inode=876904 ouid=0 dev=fe:00 ogid=0 rdev=00:00 nametype=NORMAL"),
            parsed
        );
        // ...and a name with no inode (a failed open) is still an item.
        let missing = item("item=0 name=\"/nope\" nametype=UNKNOWN cap_fp=0");
        assert!(missing.contains("nametype: Unknown"), "{missing}");
        assert!(missing.contains("inode: None"), "{missing}");
    }

    fn translate(lines: &[&str]) -> Event {
        let records: Vec<Record<'_>> = lines
            .iter()
            .map(|l| Record::parse_line(l.as_bytes()).unwrap())
            .collect();
        let mut group = Group::new(records[0].id);
        for r in &records {
            group.push(r);
        }
        Translator::new().translate(&group).expect("an event")
    }

    fn text(b: &Option<Bytes>) -> String {
        String::from_utf8_lossy(b.as_deref().unwrap_or(b"")).into_owned()
    }

    #[test]
    fn objtype_is_read_like_nametype() {
        // go-libaudit aucoalesce/testdata/rhel-7-linux-3.10.0.yaml (3.10
        // kernels write objtype=), an unlinkat of a watched file.
        let e = translate(&[
            "type=SYSCALL msg=audit(1492800799.050:20294): arch=c000003e syscall=263 success=yes exit=0 a0=ffffffffffffff9c a1=55b1d4b6e1f0 a2=0 a3=0 items=2 ppid=1 pid=740 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"systemd-logind\" exe=\"/usr/lib/systemd/systemd-logind\" key=(null)",
            "type=PATH msg=audit(1492800799.050:20294): item=0 name=\"/run/systemd/sessions/\" inode=11378 dev=00:13 mode=040755 ouid=0 ogid=0 rdev=00:00 obj=system_u:object_r:systemd_logind_sessions_t:s0 objtype=PARENT",
            "type=PATH msg=audit(1492800799.050:20294): item=1 name=\"/run/systemd/sessions/23.ref\" inode=98040 dev=00:13 mode=010600 ouid=0 ogid=0 rdev=00:00 obj=system_u:object_r:systemd_logind_sessions_t:s0 objtype=DELETE",
        ]);
        assert_eq!(e.action, Action::Unlink);
        let file = e.file.unwrap();
        assert_eq!(&file.path[..], b"/run/systemd/sessions/23.ref");
        assert_eq!(file.inode, Some(98040));
    }

    #[test]
    fn quoted_numbers_and_words_read_as_unquoted() {
        // laurel/src/testdata/record-weblogic.txt (EXECVE shortened).
        let e = translate(&[
            "type=SYSCALL msg=audit(1734013587.483:2679223): arch=c000003e syscall=59 success=\"yes\" exit=0 a0=1b5cda0 a1=1b762a0 a2=1b70790 a3=7ffc6132eef0 items=2 ppid=1362170 pid=1362221 auid=4294967295 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=\"(none)\" ses=4294967295 comm=\"java\" exe=\"/usr/java/jdk1.8.0_151/bin/java\" subj=\"docker-default\" key=(null)",
            "type=EXECVE msg=audit(1734013587.483:2679223): argc=2 a0=\"/usr/java/jdk1.8.0_151/bin/java\" a1=\"-server\"",
            "type=CWD msg=audit(1734013587.483:2679223): cwd=\"/u01/oracle/user_projects/domains/base_domain\"",
            "type=PATH msg=audit(1734013587.483:2679223): item=0 name=\"/usr/java/jdk1.8.0_151/bin/java\" inode=820124 dev=\"00:2f\" mode=100755 ouid=10 ogid=143 rdev=\"00:00\" nametype=\"NORMAL\" cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=\"0\"",
        ]);
        assert_eq!(e.action, Action::Exec);
        assert_eq!(e.outcome, Outcome::Success);
        assert_eq!(e.process.pid, 1362221);
        assert_eq!(e.process.ppid, Some(1362170));
        assert_eq!(e.process.uid, Some(1000));
        assert_eq!(e.process.auid, None);
        let file = e.file.unwrap();
        assert_eq!(file.dev, Some(0x2f));
        assert_eq!(file.mode, Some(0o100755));
        assert_eq!(
            text(&e.process.cmdline),
            "/usr/java/jdk1.8.0_151/bin/java -server"
        );
    }

    #[test]
    fn execve_continued_over_records_is_one_command_line() {
        // integrations test-oversized-execve.log: a17 split over two
        // EXECVE records of one event (hex shortened here).
        let e = translate(&[
            "type=SYSCALL msg=audit(1635260656.462:3336): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 items=2 ppid=1 pid=2 auid=0 uid=0 gid=0 euid=0 comm=\"sh\" exe=\"/bin/sh\" key=(null)",
            "type=EXECVE msg=audit(1635260656.462:3336): argc=2 a0=\"sh\" a1_len=8 a1[0]=41424344",
            "type=EXECVE msg=audit(1635260656.462:3336): a1[1]=45464748",
        ]);
        assert_eq!(text(&e.process.cmdline), "sh ABCDEFGH");
    }

    #[test]
    fn an_i386_open_for_write_is_an_open_write() {
        // A 32-bit `int 0x80` open(path, O_WRONLY|O_CREAT|O_TRUNC) on an
        // x86_64 host: arch=40000003, syscall=5, flags in a1 (0x241).
        let e = translate(&[
            "type=SYSCALL msg=audit(1795869685.242:60): arch=40000003 syscall=5 success=yes exit=3 a0=804a000 a1=241 a2=1a4 a3=0 items=2 ppid=100 pid=101 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm=\"w32\" exe=\"/tmp/w32\" key=\"docker\"",
            "type=CWD msg=audit(1795869685.242:60): cwd=\"/root\"",
            "type=PATH msg=audit(1795869685.242:60): item=0 name=\"/etc/docker/\" inode=876900 dev=fe:00 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
            "type=PATH msg=audit(1795869685.242:60): item=1 name=\"/etc/docker/daemon.json\" inode=876904 dev=fe:00 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
        ]);
        assert_eq!(e.action, Action::OpenWrite);
        assert_eq!(&e.file.unwrap().path[..], b"/etc/docker/daemon.json");
        assert_eq!(text(&e.process.exe), "/tmp/w32");
    }

    #[test]
    fn an_i386_socketcall_connect_is_a_connect() {
        let e = translate(&[
            "type=SYSCALL msg=audit(1795869685.242:61): arch=40000003 syscall=102 success=yes exit=0 a0=3 a1=ffd0a0b0 a2=0 a3=0 items=0 ppid=100 pid=102 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 comm=\"c32\" exe=\"/tmp/c32\" key=(null)",
            "type=SOCKADDR msg=audit(1795869685.242:61): saddr=01002F72756E2F646F636B65722E736F636B00",
        ]);
        assert_eq!(e.action, Action::Connect);
        assert_eq!(&e.file.unwrap().path[..], b"/run/docker.sock");
    }

    #[test]
    fn a_relative_socket_path_without_cwd_stays_relative() {
        let mut arena = Arena::default();
        // AF_UNIX, "docker.sock".
        let saddr = b"0100646F636B65722E736F636B00";
        let Some(PathSource::Arena(r)) = unix_socket_path(&mut arena, Some(saddr), None) else {
            panic!("no path");
        };
        assert_eq!(&arena.buf[r], b"docker.sock");
        let Some(PathSource::Arena(r)) = unix_socket_path(&mut arena, Some(saddr), Some(b"/run"))
        else {
            panic!("no path");
        };
        assert_eq!(&arena.buf[r], b"/run/docker.sock");
    }

    #[test]
    fn execve_arguments_join_chunks() {
        let mut arena = Arena::default();
        let r = execve_cmdline(
            &mut arena,
            &[b"argc=3 a0=\"ls\" a1_len=4 a1[0]=\"ab\" a1[1]=\"cd\" a2=2D6C"],
        )
        .unwrap();
        assert_eq!(&arena.buf[r], b"ls abcd -l");
    }
}
