//! One audit record, parsed in place: its type, its event id and the
//! `key=value` fields of its body.
//!
//! The same parser serves audit.log lines (`type=SYSCALL msg=audit(…): …`,
//! RAW or ENRICHED) and netlink payloads (`audit(…): …`, the type in the
//! message header). Nothing is copied and nothing allocated here: values are
//! slices of the input, and decoding the kernel's encodings (quoted, hex,
//! `(null)`) happens only for the fields someone asks for, straight into the
//! caller's buffer.

use std::fmt;

use memchr::memchr;

use crate::event::AuditId;

/// Separates the raw fields from the interpreted ones in ENRICHED logs.
pub const ENRICHED_SEPARATOR: u8 = 0x1d;

/// An audit record type (linux/audit.h and libaudit.h numbers: the
/// kernel's and those user space tools write through auditd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u16);

macro_rules! record_types {
    ($($name:ident = $code:literal),* $(,)?) => {
        impl RecordType {
            $(pub const $name: RecordType = RecordType($code);)*

            /// The type named as audit.log names it (`SYSCALL`,
            /// `UNKNOWN[1337]`); `None` for a name we do not know.
            pub fn from_name(name: &[u8]) -> Option<RecordType> {
                // The records of syscall events first: they are most lines.
                match name {
                    b"PATH" => return Some(RecordType::PATH),
                    b"SYSCALL" => return Some(RecordType::SYSCALL),
                    b"CWD" => return Some(RecordType::CWD),
                    b"PROCTITLE" => return Some(RecordType::PROCTITLE),
                    _ => {}
                }
                match name {
                    $(n if n == stringify!($name).as_bytes() => Some(RecordType($code)),)*
                    _ => {
                        let code = name.strip_prefix(b"UNKNOWN[")?.strip_suffix(b"]")?;
                        parse_dec(code).and_then(|c| u16::try_from(c).ok()).map(RecordType)
                    }
                }
            }

            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($code => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

record_types! {
    USER = 1005,
    LOGIN = 1006,
    USER_AUTH = 1100,
    USER_ACCT = 1101,
    USER_MGMT = 1102,
    CRED_ACQ = 1103,
    CRED_DISP = 1104,
    USER_START = 1105,
    USER_END = 1106,
    USER_AVC = 1107,
    USER_CHAUTHTOK = 1108,
    USER_ERR = 1109,
    CRED_REFR = 1110,
    USYS_CONFIG = 1111,
    USER_LOGIN = 1112,
    USER_LOGOUT = 1113,
    ADD_USER = 1114,
    DEL_USER = 1115,
    ADD_GROUP = 1116,
    DEL_GROUP = 1117,
    DAC_CHECK = 1118,
    CHGRP_ID = 1119,
    TEST = 1120,
    TRUSTED_APP = 1121,
    USER_SELINUX_ERR = 1122,
    USER_CMD = 1123,
    USER_TTY = 1124,
    CHUSER_ID = 1125,
    GRP_AUTH = 1126,
    SYSTEM_BOOT = 1127,
    SYSTEM_SHUTDOWN = 1128,
    SYSTEM_RUNLEVEL = 1129,
    SERVICE_START = 1130,
    SERVICE_STOP = 1131,
    GRP_MGMT = 1132,
    GRP_CHAUTHTOK = 1133,
    MAC_CHECK = 1134,
    ACCT_LOCK = 1135,
    ACCT_UNLOCK = 1136,
    USER_DEVICE = 1137,
    SOFTWARE_UPDATE = 1138,
    DAEMON_START = 1200,
    DAEMON_END = 1201,
    DAEMON_ABORT = 1202,
    DAEMON_CONFIG = 1203,
    DAEMON_RECONFIG = 1204,
    DAEMON_ROTATE = 1205,
    DAEMON_RESUME = 1206,
    DAEMON_ACCEPT = 1207,
    DAEMON_CLOSE = 1208,
    DAEMON_ERR = 1209,
    SYSCALL = 1300,
    PATH = 1302,
    IPC = 1303,
    SOCKETCALL = 1304,
    CONFIG_CHANGE = 1305,
    SOCKADDR = 1306,
    CWD = 1307,
    EXECVE = 1309,
    IPC_SET_PERM = 1311,
    MQ_OPEN = 1312,
    MQ_SENDRECV = 1313,
    MQ_NOTIFY = 1314,
    MQ_GETSETATTR = 1315,
    KERNEL_OTHER = 1316,
    FD_PAIR = 1317,
    OBJ_PID = 1318,
    TTY = 1319,
    EOE = 1320,
    BPRM_FCAPS = 1321,
    CAPSET = 1322,
    MMAP = 1323,
    NETFILTER_PKT = 1324,
    NETFILTER_CFG = 1325,
    SECCOMP = 1326,
    PROCTITLE = 1327,
    FEATURE_CHANGE = 1328,
    REPLACE = 1329,
    KERN_MODULE = 1330,
    FANOTIFY = 1331,
    TIME_INJOFFSET = 1332,
    TIME_ADJNTPVAL = 1333,
    BPF = 1334,
    EVENT_LISTENER = 1335,
    URINGOP = 1336,
    OPENAT2 = 1337,
    DM_CTRL = 1338,
    DM_EVENT = 1339,
    AVC = 1400,
    SELINUX_ERR = 1401,
    AVC_PATH = 1402,
    MAC_POLICY_LOAD = 1403,
    MAC_STATUS = 1404,
    MAC_CONFIG_CHANGE = 1405,
    MAC_UNLBL_ALLOW = 1406,
    MAC_CIPSOV4_ADD = 1407,
    MAC_CIPSOV4_DEL = 1408,
    MAC_MAP_ADD = 1409,
    MAC_MAP_DEL = 1410,
    MAC_IPSEC_ADDSA = 1411,
    MAC_IPSEC_DELSA = 1412,
    MAC_IPSEC_ADDSPD = 1413,
    MAC_IPSEC_DELSPD = 1414,
    MAC_IPSEC_EVENT = 1415,
    MAC_UNLBL_STCADD = 1416,
    MAC_UNLBL_STCDEL = 1417,
    MAC_CALIPSO_ADD = 1418,
    MAC_CALIPSO_DEL = 1419,
    MAC_TASK_CONTEXTS = 1420,
    MAC_OBJ_CONTEXTS = 1421,
    APPARMOR_AUDIT = 1501,
    APPARMOR_ALLOWED = 1502,
    APPARMOR_DENIED = 1503,
    APPARMOR_HINT = 1504,
    APPARMOR_STATUS = 1505,
    APPARMOR_ERROR = 1506,
    ANOM_PROMISCUOUS = 1700,
    ANOM_ABEND = 1701,
    ANOM_LINK = 1702,
    ANOM_CREAT = 1703,
    INTEGRITY_DATA = 1800,
    INTEGRITY_METADATA = 1801,
    INTEGRITY_STATUS = 1802,
    INTEGRITY_HASH = 1803,
    INTEGRITY_PCR = 1804,
    INTEGRITY_RULE = 1805,
    INTEGRITY_EVM_XATTR = 1806,
    INTEGRITY_POLICY_RULE = 1807,
    KERNEL = 2000,
    ANOM_LOGIN_FAILURES = 2100,
    ANOM_LOGIN_TIME = 2101,
    ANOM_LOGIN_SESSIONS = 2102,
    ANOM_LOGIN_ACCT = 2103,
    ANOM_LOGIN_LOCATION = 2104,
    ANOM_MAX_DAC = 2105,
    ANOM_MAX_MAC = 2106,
    ANOM_AMTU_FAIL = 2107,
    ANOM_RBAC_FAIL = 2108,
    ANOM_RBAC_INTEGRITY_FAIL = 2109,
    ANOM_CRYPTO_FAIL = 2110,
    ANOM_ACCESS_FS = 2111,
    ANOM_EXEC = 2112,
    ANOM_MK_EXEC = 2113,
    ANOM_ADD_ACCT = 2114,
    ANOM_DEL_ACCT = 2115,
    ANOM_MOD_ACCT = 2116,
    ANOM_ROOT_TRANS = 2117,
    ANOM_LOGIN_SERVICE = 2118,
    ANOM_LOGIN_ROOT = 2119,
    ANOM_ORIGIN_FAILURES = 2120,
    ANOM_SESSION = 2121,
    USER_ROLE_CHANGE = 2300,
    ROLE_ASSIGN = 2301,
    ROLE_REMOVE = 2302,
    LABEL_OVERRIDE = 2303,
    LABEL_LEVEL_CHANGE = 2304,
    USER_LABELED_EXPORT = 2305,
    USER_UNLABELED_EXPORT = 2306,
    DEV_ALLOC = 2307,
    DEV_DEALLOC = 2308,
    FS_RELABEL = 2309,
    USER_MAC_POLICY_LOAD = 2310,
    ROLE_MODIFY = 2311,
    USER_MAC_CONFIG_CHANGE = 2312,
    USER_MAC_STATUS = 2313,
    CRYPTO_TEST_USER = 2400,
    CRYPTO_PARAM_CHANGE_USER = 2401,
    CRYPTO_LOGIN = 2402,
    CRYPTO_LOGOUT = 2403,
    CRYPTO_KEY_USER = 2404,
    CRYPTO_FAILURE_USER = 2405,
    CRYPTO_REPLAY_USER = 2406,
    CRYPTO_SESSION = 2407,
    CRYPTO_IKE_SA = 2408,
    CRYPTO_IPSEC_SA = 2409,
    VIRT_CONTROL = 2500,
    VIRT_RESOURCE = 2501,
    VIRT_MACHINE_ID = 2502,
    VIRT_INTEGRITY_CHECK = 2503,
    VIRT_CREATE = 2504,
    VIRT_DESTROY = 2505,
    VIRT_MIGRATE_IN = 2506,
    VIRT_MIGRATE_OUT = 2507,
}

impl RecordType {
    /// Records auditd writes about itself: they carry auditd's own serials,
    /// not the kernel's, so they say nothing about kernel serial gaps.
    pub fn is_daemon(self) -> bool {
        (1200..1300).contains(&self.0)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "UNKNOWN[{}]", self.0),
        }
    }
}

/// One record, borrowed from the line or payload it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: RecordType,
    pub id: AuditId,
    /// The `key=value` fields as the kernel (or auditd) wrote them.
    pub body: &'a [u8],
    /// ENRICHED format: auditd's interpretations after 0x1d (`SYSCALL=openat
    /// AUID="unset" …`); empty in RAW logs and netlink payloads.
    pub enriched: &'a [u8],
}

/// Why a line is not an audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No `type=` at the start.
    NoType,
    /// A record type name that is neither known nor `UNKNOWN[n]`.
    UnknownTypeName,
    /// No `msg=audit(` after the type.
    NoHeader,
    /// `audit(seconds.millis:serial)` is malformed.
    BadId,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::NoType => "not an audit record (no `type=` at the start)",
            ParseError::UnknownTypeName => "record type is neither a known name nor UNKNOWN[n]",
            ParseError::NoHeader => "no `msg=audit(...)` header after the type",
            ParseError::BadId => "malformed event id in `audit(seconds.millis:serial)`",
        })
    }
}

impl std::error::Error for ParseError {}

/// The event id of the last header parsed, kept with its text.
///
/// The records of one event follow one another with the same
/// `audit(seconds.millis:serial)` text, so comparing the text with the last
/// one spares parsing its three numbers for most records of a log.
#[derive(Debug, Clone)]
pub struct IdCache {
    text: [u8; ID_TEXT],
    len: usize,
    id: Option<AuditId>,
}

impl Default for IdCache {
    fn default() -> IdCache {
        IdCache {
            text: [0; ID_TEXT],
            len: 0,
            id: None,
        }
    }
}

/// Longest id text cached: `18446744073709551615.999:18446744073709551615`
/// is 45 bytes.
const ID_TEXT: usize = 48;

impl IdCache {
    fn parse(&mut self, text: &[u8]) -> Option<AuditId> {
        if let Some(id) = self.id.filter(|_| text == &self.text[..self.len]) {
            return Some(id);
        }
        let id = parse_id(text)?;
        if let Some(slot) = self.text.get_mut(..text.len()) {
            slot.copy_from_slice(text);
            self.len = text.len();
            self.id = Some(id);
        }
        Some(id)
    }
}

impl<'a> Record<'a> {
    /// Parses one audit.log line (without its newline).
    pub fn parse_line(line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        Record::parse_line_cached(line, &mut IdCache::default())
    }

    /// [`Record::parse_line`] for the lines of one log, in order: `ids`
    /// remembers the last id so the next record of the same event need not
    /// parse it again.
    pub fn parse_line_cached(line: &'a [u8], ids: &mut IdCache) -> Result<Record<'a>, ParseError> {
        let rest = strip_node(line)
            .strip_prefix(b"type=")
            .ok_or(ParseError::NoType)?;
        let end = find(rest, b' ').ok_or(ParseError::NoHeader)?;
        let kind = RecordType::from_name(&rest[..end]).ok_or(ParseError::UnknownTypeName)?;
        let rest = rest[end + 1..]
            .strip_prefix(b"msg=")
            .ok_or(ParseError::NoHeader)?;
        Record::split_payload(kind, rest, |text| ids.parse(text))
    }

    /// Parses a netlink payload (`audit(…): fields`) of type `kind`.
    pub fn parse_payload(kind: RecordType, payload: &'a [u8]) -> Result<Record<'a>, ParseError> {
        Record::split_payload(kind, payload, parse_id)
    }

    fn split_payload(
        kind: RecordType,
        payload: &'a [u8],
        parse_id: impl FnOnce(&[u8]) -> Option<AuditId>,
    ) -> Result<Record<'a>, ParseError> {
        // Netlink payloads may end in NULs and a newline.
        let payload = trim_end(payload);
        let rest = payload
            .strip_prefix(b"audit(")
            .ok_or(ParseError::NoHeader)?;
        let close = find(rest, b')').ok_or(ParseError::BadId)?;
        let id = parse_id(&rest[..close]).ok_or(ParseError::BadId)?;
        let rest = &rest[close + 1..];
        let rest = rest.strip_prefix(b":").unwrap_or(rest);
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        let (body, enriched) = match memchr(ENRICHED_SEPARATOR, rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        Ok(Record {
            kind,
            id,
            body,
            enriched,
        })
    }

    /// The body's fields, in order.
    pub fn fields(&self) -> Fields<'a> {
        Fields::new(self.body)
    }

    /// The first body field named `key`.
    pub fn field(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.fields().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The first enriched field named `key` (`SYSCALL`, `AUID`, …).
    pub fn enriched_field(&self, key: &[u8]) -> Option<&'a [u8]> {
        Fields::new(self.enriched)
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// The line without auditd's `node=NAME ` prefix (`name_format =
/// hostname`, `fqdn`, `user`), which comes before `type=`.
///
/// The node name is dropped, not kept: an [`crate::event::Event`] has no
/// host field, and a log file holds one host's records in every setup
/// dockwatch supports (it runs on the host it watches).
#[inline(always)]
fn strip_node(line: &[u8]) -> &[u8] {
    match line.strip_prefix(b"node=") {
        Some(rest) => find(rest, b' ').map_or(line, |end| &rest[end + 1..]),
        None => line,
    }
}

/// A non-string value without the double quotes some writers put around
/// every value (`success="yes"`, `dev="00:2f"`, `nametype="DELETE"`).
#[inline(always)]
pub fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'\0' | b'\n' | b' '] = s {
        s = rest;
    }
    s
}

/// The end of year 9999: later timestamps are corrupt, not audit records.
const MAX_SECS: u64 = 253_402_300_799;

/// `1795869685.242:59` → id.
fn parse_id(s: &[u8]) -> Option<AuditId> {
    let dot = find(s, b'.')?;
    let colon = dot + 1 + find(&s[dot + 1..], b':')?;
    let millis = &s[dot + 1..colon];
    if millis.is_empty() || millis.len() > 3 {
        return None;
    }
    let secs = parse_dec(&s[..dot])?;
    if secs > MAX_SECS {
        return None;
    }
    Some(AuditId {
        secs,
        millis: parse_dec(millis)? as u32,
        serial: parse_dec(&s[colon + 1..])?,
    })
}

/// Iterator over `key=value` pairs separated by spaces.
///
/// Values are raw: `"quoted"`, hex, `(null)` or plain. Userspace records wrap
/// their own fields in `msg='…'`; those are flattened into the same stream.
/// Tokens without `=` are skipped: they occur in hand-written records and
/// in garbage, and must not stop the fields after them.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a [u8]) -> Fields<'a> {
        Fields { rest: body }
    }

    /// The next field's value when its key is `key`, as [`Iterator::next`]
    /// would return it; otherwise `None`, and nothing is consumed.
    ///
    /// The kernel writes each record type's fields in a fixed order, so a
    /// parser that expects that order compares a constant key where `next`
    /// searches for the `=`. Whatever does not follow the order (two spaces,
    /// a nested `msg='…'`, another key) is left to `next`.
    #[inline(always)]
    pub fn next_if_key(&mut self, key: &[u8]) -> Option<&'a [u8]> {
        let rest = self.rest.strip_prefix(b" ").unwrap_or(self.rest);
        let after = rest.strip_prefix(key)?.strip_prefix(b"=")?;
        if after.first() == Some(&b'\'') {
            return None;
        }
        Some(self.take_value(after))
    }

    /// The value at the start of `after` (just past a key's `=`, not a
    /// nested `msg='`); the fields go on after it.
    #[inline(always)]
    fn take_value(&mut self, after: &'a [u8]) -> &'a [u8] {
        if after.first() == Some(&b'"') {
            let len = find(&after[1..], b'"').map_or(after.len(), |q| q + 2);
            self.rest = &after[len..];
            &after[..len]
        } else {
            let len = find(after, b' ').unwrap_or(after.len());
            self.rest = &after[len..];
            strip_quote_close(&after[..len])
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    // Fields are short (a few bytes each): memchr's call and setup cost
    // more than they save, so keys and values are scanned eight bytes at a
    // time in a register (`find`, `find2`), which measured faster in replay
    // than byte loops. This is the innermost loop of every replay.
    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let mut rest = self.rest;
        loop {
            let start = rest.iter().position(|&b| b != b' ')?;
            rest = &rest[start..];
            let Some(eq) = find2(rest, b'=', b' ') else {
                self.rest = &[];
                return None;
            };
            if rest[eq] == b' ' {
                // A token without `=`: skip it.
                rest = &rest[eq..];
                continue;
            }
            let key = &rest[..eq];
            let after = &rest[eq + 1..];
            if after.first() == Some(&b'\'') {
                // msg='op=… res=success': descend into the nested fields.
                rest = &after[1..];
                continue;
            }
            return Some((key, self.take_value(after)));
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every zero byte of `x`, and possibly of bytes above the
/// first one (a borrow only runs upwards): exact for the lowest zero byte,
/// which is all `find` needs.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The first `a` in `s`: [`find2`] with one byte (inlined with `a == b`,
/// the compiler folds the second test away).
#[inline(always)]
fn find(s: &[u8], a: u8) -> Option<usize> {
    find2(s, a, a)
}

/// The first `a` or `b` in `s`. For the few-byte spans between field
/// separators, where memchr's call and setup dominate: eight bytes per step
/// in a register, then bytes one by one for the tail.
#[inline(always)]
fn find2(s: &[u8], a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (ONES * a as u64, ONES * b as u64);
    let mut chunks = s.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        let hits = zero_bytes(word ^ pa) | zero_bytes(word ^ pb);
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|i| base + i)
}

/// Drops the `'` that closes a `msg='…'` group from its last value.
fn strip_quote_close(value: &[u8]) -> &[u8] {
    value.strip_suffix(b"'").unwrap_or(value)
}

/// Decodes an encoded string field (`name`, `cwd`, `exe`, `comm`,
/// `proctitle`, `key`, EXECVE arguments): `"text"` as is, hex digits
/// decoded, `(null)`/`(none)` absent. Appends to `out` and returns whether a
/// value was present.
pub fn decode_str_into(raw: &[u8], out: &mut Vec<u8>) -> bool {
    match raw {
        [b'"', inner @ .., b'"'] => {
            out.extend_from_slice(inner);
            true
        }
        [b'"', inner @ ..] => {
            // Truncated line: keep what is there.
            out.extend_from_slice(inner);
            true
        }
        b"(null)" | b"(none)" | b"" => false,
        _ if raw.len().is_multiple_of(2) => {
            if !decode_hex_into(raw, out) {
                // Not hex after all (`?`, a bare word): keep it as is.
                out.extend_from_slice(raw);
            }
            true
        }
        _ => {
            out.extend_from_slice(raw);
            true
        }
    }
}

/// Appends the bytes an even number of hex digits stand for; false, with
/// `out` as it was, when any byte is not a hex digit.
fn decode_hex_into(raw: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.reserve(raw.len() / 2);
    // Proctitles and socket addresses are long hex strings: eight digits
    // per step in a register, checked and decoded together.
    let mut chunks = raw.chunks_exact(8);
    for chunk in &mut chunks {
        match hex_word(u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"))) {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => {
                out.truncate(start);
                return false;
            }
        }
    }
    for pair in chunks.remainder().chunks_exact(2) {
        let (high, low) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        if (high | low) == 0xff {
            out.truncate(start);
            return false;
        }
        out.push(high << 4 | low);
    }
    true
}

/// The high bit of every byte of `x` that is at least `c`. Exact when every
/// byte of `x` is below 0x80: `b + (0x80 - c)` then never carries into the
/// next byte, and its high bit says `b >= c`.
#[inline(always)]
fn at_least(x: u64, c: u8) -> u64 {
    x.wrapping_add(ONES * (0x80 - c) as u64) & HIGHS
}

/// The high bit of every byte of `x` that is at most `c` (every byte below
/// 0x80, as for [`at_least`]).
#[inline(always)]
fn at_most(x: u64, c: u8) -> u64 {
    !x.wrapping_add(ONES * (0x7f - c) as u64) & HIGHS
}

/// Eight ASCII hex digits (the first in the lowest byte) → the four bytes
/// they encode; `None` if any is not a hex digit.
#[inline(always)]
fn hex_word(word: u64) -> Option<[u8; 4]> {
    if word & HIGHS != 0 {
        return None;
    }
    let digit = at_least(word, b'0') & at_most(word, b'9');
    let lower = word | (ONES * 0x20);
    let letter = at_least(lower, b'a') & at_most(lower, b'f');
    if digit | letter != HIGHS {
        return None;
    }
    // A digit's value is its low nibble; a letter's is its low nibble + 9.
    let nibbles = (word & (ONES * 0x0f)) + (letter >> 7) * 9;
    // Even bytes hold high nibbles, odd bytes low ones: pair them into the
    // even bytes, then close the gaps.
    const EVEN: u64 = 0x000f_000f_000f_000f;
    let pairs = (nibbles & EVEN) << 4 | (nibbles >> 8) & EVEN;
    let packed = (pairs | pairs >> 8) & 0x0000_ffff_0000_ffff;
    let packed = (packed | packed >> 16) as u32;
    Some(packed.to_le_bytes())
}

/// Hex digit values; 0xff for anything that is not one.
static HEX_VALUE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = match i as u8 {
            b @ b'0'..=b'9' => b - b'0',
            b @ b'a'..=b'f' => b - b'a' + 10,
            b @ b'A'..=b'F' => b - b'A' + 10,
            _ => 0xff,
        };
        i += 1;
    }
    table
};

/// A decimal unsigned number.
pub fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s.len() < 20 {
        // Every id, pid and inode: 19 digits cannot overflow a u64, so the
        // loop needs no overflow checks.
        let mut v: u64 = 0;
        for &b in s {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as u64;
        }
        return Some(v);
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// A decimal number that may be negative (`exit=-13`).
pub fn parse_signed(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(digits) => parse_dec(digits)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        None => parse_dec(s).and_then(|v| i64::try_from(v).ok()),
    }
}

/// A hex number without prefix (`a2=941`, `arch=c000003e`).
pub fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    // Digits by table, validity checked once at the end: a branch per
    // digit on its class (0-9 or a-f) is a coin toss for the predictor, and
    // a SYSCALL record has some forty hex digits.
    let mut v: u64 = 0;
    let mut seen = 0u8;
    for &b in s {
        let d = HEX_VALUE[b as usize];
        seen |= d;
        v = v << 4 | (d & 0xf) as u64;
    }
    (seen & 0xf0 == 0).then_some(v)
}

/// An octal number (`mode=0100600`).
pub fn parse_oct(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 11 {
        return None;
    }
    // Eleven octal digits are 33 bits: the loop runs in a u64 without
    // overflow checks, and the fit in a u32 is checked once at the end.
    let mut v: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 7 {
            return None;
        }
        v = v << 3 | d as u64;
    }
    u32::try_from(v).ok()
}

/// An id field: `4294967295` (unset) is absent.
pub fn parse_id_field(s: &[u8]) -> Option<u32> {
    parse_dec(s)
        .and_then(|v| u32::try_from(v).ok())
        .filter(|&v| v != u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSCALL: &[u8] = b"type=SYSCALL msg=audit(1795869685.242:59): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffc55d41a02 a2=941 a3=1b6 items=1 ppid=16732 pid=16776 auid=4294967295 uid=0 comm=\"touch\" exe=\"/usr/bin/touch\" key=\"docker\"\x1dARCH=x86_64 SYSCALL=openat AUID=\"unset\"";

    #[test]
    fn parses_an_enriched_line() {
        let r = Record::parse_line(SYSCALL).unwrap();
        assert_eq!(r.kind, RecordType::SYSCALL);
        assert_eq!(
            r.id,
            AuditId {
                secs: 1795869685,
                millis: 242,
                serial: 59
            }
        );
        assert_eq!(r.field(b"syscall"), Some(&b"257"[..]));
        assert_eq!(r.field(b"key"), Some(&b"\"docker\""[..]));
        assert_eq!(r.enriched_field(b"SYSCALL"), Some(&b"openat"[..]));
        assert_eq!(r.fields().count(), 16);
    }

    #[test]
    fn node_prefixes_are_accepted() {
        // laurel/src/testdata/record-execve.txt, line 2.
        let line = b"node=work type=EXECVE msg=audit(1615114232.375:15558): argc=1 a0=\"whoami\"";
        let r = Record::parse_line(line).unwrap();
        assert_eq!(r.kind, RecordType::EXECVE);
        assert_eq!(r.id.serial, 15558);
        assert_eq!(r.field(b"a0"), Some(&b"\"whoami\""[..]));
        assert_eq!(
            Record::parse_line(b"node=work"),
            Err(ParseError::NoType),
            "a node with no record after it"
        );
    }

    #[test]
    fn unquote_strips_only_a_pair_of_double_quotes() {
        assert_eq!(unquote(b"\"yes\""), b"yes");
        assert_eq!(unquote(b"00:2f"), b"00:2f");
        assert_eq!(unquote(b"\""), b"\"");
    }

    #[test]
    fn parses_a_netlink_payload() {
        let r = Record::parse_payload(RecordType::CWD, b"audit(1.005:7): cwd=\"/\"\0").unwrap();
        assert_eq!(r.id.millis, 5);
        assert_eq!(r.field(b"cwd"), Some(&b"\"/\""[..]));
    }

    #[test]
    fn unknown_types_are_kept_by_number() {
        let r = Record::parse_line(b"type=UNKNOWN[1999] msg=audit(1.000:1): x=1").unwrap();
        assert_eq!(r.kind, RecordType(1999));
        assert_eq!(r.kind.to_string(), "UNKNOWN[1999]");
        assert_eq!(
            Record::parse_line(b"type=BOGUS msg=audit(1.000:1): x=1"),
            Err(ParseError::UnknownTypeName)
        );
    }

    #[test]
    fn user_space_types_of_other_distributions_are_known_by_name() {
        // Seen in RHEL, Ubuntu and SUSE logs of the peer projects' test data.
        for (name, code) in [
            ("ACCT_LOCK", 1135),
            ("CHGRP_ID", 1119),
            ("USER_AVC", 1107),
            ("SYSTEM_BOOT", 1127),
            ("SOFTWARE_UPDATE", 1138),
            ("MAC_POLICY_LOAD", 1403),
            ("USER_ROLE_CHANGE", 2300),
            ("CRYPTO_KEY_USER", 2404),
            ("VIRT_CONTROL", 2500),
        ] {
            let line = format!("type={name} msg=audit(1.000:1): pid=1 res=success");
            let r = Record::parse_line(line.as_bytes()).unwrap();
            assert_eq!(r.kind, RecordType(code), "{name}");
            assert_eq!(r.kind.to_string(), name);
        }
    }

    #[test]
    fn rejects_what_is_not_a_record() {
        assert_eq!(Record::parse_line(b"root:x:0:0"), Err(ParseError::NoType));
        assert_eq!(
            Record::parse_line(b"type=CWD msg=audit(1.0x:1): cwd=\"/\""),
            Err(ParseError::BadId)
        );
        assert_eq!(
            Record::parse_line(b"type=CWD msg=audit(17958"),
            Err(ParseError::BadId)
        );
        // Found by the fuzzer: a time past what SystemTime can hold.
        assert_eq!(
            Record::parse_line(b"type=CWD msg=audit(99999999999999999.000:1): cwd=\"/\""),
            Err(ParseError::BadId)
        );
    }

    #[test]
    fn flattens_userspace_msg_groups() {
        let body = b"pid=1 uid=0 msg='op=PAM:session_close acct=\"root\" res=success'";
        let fields: Vec<_> = Fields::new(body).collect();
        assert_eq!(
            fields,
            vec![
                (&b"pid"[..], &b"1"[..]),
                (&b"uid"[..], &b"0"[..]),
                (&b"op"[..], &b"PAM:session_close"[..]),
                (&b"acct"[..], &b"\"root\""[..]),
                (&b"res"[..], &b"success"[..]),
            ]
        );
    }

    #[test]
    fn decodes_encoded_strings() {
        let mut out = Vec::new();
        assert!(decode_str_into(b"746F756368002F6574", &mut out));
        assert_eq!(out, b"touch\0/et");
        out.clear();
        assert!(!decode_str_into(b"(null)", &mut out));
        assert!(!decode_str_into(b"(none)", &mut out));
        assert!(decode_str_into(b"\"/etc/docker/\"", &mut out));
        assert_eq!(out, b"/etc/docker/");
    }

    #[test]
    fn hex_words_decode_what_the_table_decodes() {
        let by_table = |digits: &[u8]| -> Option<Vec<u8>> {
            digits
                .chunks_exact(2)
                .map(|p| {
                    let (h, l) = (HEX_VALUE[p[0] as usize], HEX_VALUE[p[1] as usize]);
                    (h | l != 0xff).then_some(h << 4 | l)
                })
                .collect()
        };
        // Every byte value at every position of a word of valid digits.
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut digits = *b"09afAF7c";
                digits[at] = b;
                let word = hex_word(u64::from_le_bytes(digits));
                assert_eq!(word.map(|w| w.to_vec()), by_table(&digits), "{digits:?}");
            }
        }
        // Whole strings: words, tail pairs, and a bad digit in the tail.
        let mut out = b"kept".to_vec();
        assert!(decode_hex_into(
            b"2F6574632F646F636B65722F6461656D6F6E2E6A736F6E",
            &mut out
        ));
        assert_eq!(out, b"kept/etc/docker/daemon.json");
        assert!(!decode_hex_into(
            b"2F6574632F646F636B65722F6461656D6F6E2E6A736F6G",
            &mut out
        ));
        assert_eq!(out, b"kept/etc/docker/daemon.json");
    }

    #[test]
    fn word_scans_find_what_byte_scans_find() {
        // Bytes around the targets and the borrow edge cases of zero_bytes.
        let alphabet = [
            b' ', b'=', b'"', b')', 0x00, 0x01, 0x1f, 0x21, 0x3c, 0x3e, 0x7f, 0x80, 0xa0, 0xbd,
            0xff, b'a',
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 41) as usize;
            let s: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i % 60)) as usize + i * 7) % alphabet.len()])
                .collect();
            for &a in b" \")" {
                assert_eq!(find(&s, a), s.iter().position(|&c| c == a), "{s:?}");
            }
            assert_eq!(
                find2(&s, b'=', b' '),
                s.iter().position(|&c| c == b'=' || c == b' '),
                "{s:?}"
            );
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_signed(b"-13"), Some(-13));
        assert_eq!(parse_hex(b"c000003e"), Some(0xc000003e));
        assert_eq!(parse_oct(b"0100600"), Some(0o100600));
        assert_eq!(parse_id_field(b"4294967295"), None);
        assert_eq!(parse_dec(b"99999999999999999999999"), None);
    }
}
