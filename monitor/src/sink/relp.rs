//! A RELP client (Reliable Event Logging Protocol, what rsyslog's `imrelp`
//! speaks) for `syslog+relp://` and `syslog+relp+tls://` outputs.
//!
//! Plain syslog over TCP cannot tell the sender which records a restarting
//! receiver read: the outbox has to guess and resend a window, so records
//! arrive twice. RELP answers every record with its own acknowledgement,
//! so the outbox confirms exactly the records the receiver took and, after
//! a reconnect, resends only the others.
//!
//! No Rust crate implements RELP, so this is a small client written from
//! the protocol description (rsyslog's RELP documentation and librelp's
//! behaviour, checked against the real `imrelp` by the tests):
//!
//! ```text
//! FRAME   = TXNR SP COMMAND SP DATALEN [SP DATA] LF
//! TXNR    = 1..999999999, one per command, wrapping to 1; the reply reuses it
//! open    : relp_version=0 LF relp_software=… LF commands=syslog
//! syslog  : one syslog message (here RFC 5424 by default)
//! rsp     : "200 OK" (accepted) or another code and a text (refused)
//! close   : the client's goodbye, answered by an rsp
//! serverclose (TXNR 0): the receiver is going away
//! ```
//!
//! Like `transport`, this is blocking I/O on the sink's delivery thread;
//! which records to (re)send and when one is confirmed is the outbox's
//! business.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::transport;

/// Default port of `syslog+relp://` (imrelp has none; 2514 is customary).
pub const DEFAULT_PORT: u16 = 2514;

/// How long one wait for replies lasts, so the delivery thread still sees
/// a stop or a reconnect request while the receiver is silent.
pub const REPLY_POLL: Duration = Duration::from_millis(100);

/// The largest reply accepted: the `open` reply with its offers is the
/// longest a receiver sends.
const REPLY_MAX: usize = 64 << 10;

const TXNR_MAX: u32 = 999_999_999;

/// Where a RELP output connects.
#[derive(Debug, Clone)]
pub struct RelpEndpoint {
    pub addr: String,
    /// TLS (`syslog+relp+tls://`): the receiver's name and the client
    /// configuration of `[tls]`.
    pub tls: Option<(ServerName<'static>, Arc<ClientConfig>)>,
}

/// What a receiver said about one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The answer to the command `txnr`: `code` 200 means accepted.
    Rsp { txnr: u32, code: u16, text: String },
    /// The receiver is closing the session (rsyslog stopping).
    ServerClose,
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// An open RELP session: the `open` exchange done, syslog commands next.
pub struct Session {
    stream: Stream,
    /// Frames queued by [`Session::queue`], written by [`Session::flush`].
    out: Vec<u8>,
    /// Received bytes not yet parsed into a reply.
    input: Vec<u8>,
    next_txnr: u32,
}

impl Session {
    /// Connects and opens the session; a receiver that refuses the offers
    /// (or is not RELP at all) is a connect error.
    pub fn connect(endpoint: &RelpEndpoint) -> io::Result<Session> {
        let stream = match &endpoint.tls {
            None => Stream::Tcp(transport::tcp_connect(&endpoint.addr)?),
            Some((name, config)) => {
                Stream::Tls(transport::tls_connect(&endpoint.addr, name, config)?)
            }
        };
        // Frames go out a batch per write; Nagle would only hold back the
        // tail of each batch until the receiver's ACK.
        stream.tcp().set_nodelay(true)?;
        stream.tcp().set_read_timeout(Some(REPLY_POLL))?;
        let mut session = Session {
            stream,
            out: Vec::with_capacity(256 << 10),
            input: Vec::with_capacity(4096),
            next_txnr: 1,
        };
        let offers = format!(
            "relp_version=0\nrelp_software=dockwatch,{},https://github.com/dockwatch\ncommands=syslog",
            env!("CARGO_PKG_VERSION")
        );
        let txnr = session.queue_command("open", offers.as_bytes());
        session.flush()?;
        let deadline = Instant::now() + transport::IO_TIMEOUT;
        let mut replies = Vec::new();
        loop {
            if !session.read_replies(&mut replies)? && Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the receiver did not answer the RELP open",
                ));
            }
            match replies.first() {
                None => continue,
                Some(Reply::Rsp {
                    txnr: t,
                    code,
                    text,
                }) if *t == txnr => {
                    if *code != 200 {
                        return Err(io::Error::other(format!(
                            "the receiver refused the RELP session: {code} {text}"
                        )));
                    }
                    if !offers_syslog(text) {
                        return Err(io::Error::other(format!(
                            "the RELP receiver does not offer the syslog command: {text:?}"
                        )));
                    }
                    return Ok(session);
                }
                Some(other) => {
                    return Err(io::Error::other(format!(
                        "unexpected RELP reply to open: {other:?}"
                    )))
                }
            }
        }
    }

    /// Queues one syslog command; returns its transaction number.
    pub fn queue(&mut self, record: &[u8]) -> u32 {
        self.queue_command("syslog", record)
    }

    fn queue_command(&mut self, command: &str, data: &[u8]) -> u32 {
        let txnr = self.next_txnr;
        self.next_txnr = if txnr >= TXNR_MAX { 1 } else { txnr + 1 };
        let mut num = itoa::Buffer::new();
        self.out.extend_from_slice(num.format(txnr).as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(command.as_bytes());
        self.out.push(b' ');
        self.out
            .extend_from_slice(num.format(data.len()).as_bytes());
        if !data.is_empty() {
            self.out.push(b' ');
            self.out.extend_from_slice(data);
        }
        self.out.push(b'\n');
        txnr
    }

    /// Writes the queued frames.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self
            .stream
            .write_all(&self.out)
            .and_then(|()| self.stream.flush());
        self.out.clear();
        result
    }

    /// Waits up to [`REPLY_POLL`] for replies and appends every complete
    /// one. Returns `false` when nothing arrived in that time; the end of
    /// the connection is an error.
    pub fn read_replies(&mut self, replies: &mut Vec<Reply>) -> io::Result<bool> {
        // One reply may already sit whole in the buffer.
        let before = replies.len();
        self.parse_into(replies)?;
        if replies.len() > before {
            return Ok(true);
        }
        quick_ack(self.stream.tcp());
        let mut chunk = [0u8; 16 << 10];
        let n = match self.stream.read(&mut chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the RELP receiver closed the connection",
                ))
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        self.input.extend_from_slice(&chunk[..n]);
        self.parse_into(replies)?;
        Ok(true)
    }

    fn parse_into(&mut self, replies: &mut Vec<Reply>) -> io::Result<()> {
        let mut at = 0;
        while let Some((reply, used)) = parse_reply(&self.input[at..])? {
            replies.push(reply);
            at += used;
        }
        self.input.drain(..at);
        Ok(())
    }

    /// Ends the session politely: `close`, its answer, then (TLS)
    /// close_notify and FIN. Replies to earlier commands that arrive
    /// meanwhile are appended to `replies`, so none is lost at shutdown.
    pub fn close(mut self, replies: &mut Vec<Reply>, deadline: Instant) {
        let txnr = self.queue_command("close", b"");
        if self.flush().is_ok() {
            let mut got = Vec::new();
            'wait: while Instant::now() < deadline {
                match self.read_replies(&mut got) {
                    Ok(_) => {}
                    Err(_) => break,
                }
                for reply in got.drain(..) {
                    match reply {
                        Reply::Rsp { txnr: t, .. } if t == txnr => break 'wait,
                        Reply::ServerClose => break 'wait,
                        other => replies.push(other),
                    }
                }
            }
        }
        if let Stream::Tls(s) = &mut self.stream {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.stream.tcp().shutdown(std::net::Shutdown::Both);
    }
}

/// Asks the kernel to acknowledge what arrives next at once (Linux's
/// TCP_QUICKACK, which lapses by itself, hence once per read). librelp
/// writes each answer as its own small segment with Nagle's algorithm on:
/// after the first, the rest wait for our ACK, and a delayed ACK (40 ms)
/// would cap the rate at a window per 40 ms.
fn quick_ack(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to an int of the stated size on a
    // socket we own; failure only costs speed.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Whether the `open` reply's offers include `commands=…syslog…`.
fn offers_syslog(text: &str) -> bool {
    text.lines()
        .filter_map(|l| l.strip_prefix("commands="))
        .any(|cmds| cmds.split(',').any(|c| c.trim() == "syslog"))
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed RELP reply: {}", why.into()),
    )
}

/// Parses one frame from the start of `buf`: the reply and the bytes it
/// took, or `None` when it is not complete yet.
fn parse_reply(buf: &[u8]) -> io::Result<Option<(Reply, usize)>> {
    let mut fields = [0usize; 2];
    let mut at = 0;
    // TXNR SP COMMAND SP DATALEN: find the first two spaces.
    for field in &mut fields {
        match buf[at..].iter().position(|&b| b == b' ') {
            Some(i) => {
                *field = at + i;
                at += i + 1;
            }
            None if buf.len() - at > 40 => return Err(bad("no header")),
            None => return Ok(None),
        }
    }
    let txnr = number(&buf[..fields[0]]).ok_or_else(|| bad("bad transaction number"))?;
    let command = std::str::from_utf8(&buf[fields[0] + 1..fields[1]])
        .map_err(|_| bad("command is not text"))?;
    // DATALEN ends at SP (data follows) or LF (no data).
    let rest = &buf[fields[1] + 1..];
    let Some(end) = rest.iter().position(|&b| b == b' ' || b == b'\n') else {
        return if rest.len() > 10 {
            Err(bad("no data length"))
        } else {
            Ok(None)
        };
    };
    let len = number(&rest[..end]).ok_or_else(|| bad("bad data length"))? as usize;
    if len > REPLY_MAX {
        return Err(bad(format!("{len} bytes of data")));
    }
    let data_start = fields[1] + 1 + end + usize::from(rest[end] == b' ');
    let total = data_start + len + 1;
    if buf.len() < total {
        return Ok(None);
    }
    if buf[total - 1] != b'\n' {
        return Err(bad("frame does not end with LF"));
    }
    let data = String::from_utf8_lossy(&buf[data_start..data_start + len]);
    let reply = match command {
        "rsp" => {
            let code = data
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| bad(format!("rsp without a status code: {data:?}")))?;
            let text = data.get(3..).unwrap_or("").trim_start_matches(' ');
            Reply::Rsp {
                txnr: txnr as u32,
                code,
                text: text.to_string(),
            }
        }
        "serverclose" => Reply::ServerClose,
        other => return Err(bad(format!("unexpected command {other:?}"))),
    };
    Ok(Some((reply, total)))
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies_as_imrelp_sends_them() {
        let wire = b"1 rsp 59 200 OK\nrelp_version=0\nrelp_software=librelp\ncommands=syslog\n2 rsp 6 200 OK\n3 rsp 14 500 queue full\n0 serverclose 0\n4 rsp";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((reply, used)) = parse_reply(&wire[at..]).unwrap() {
            got.push(reply);
            at += used;
        }
        assert_eq!(&wire[at..], b"4 rsp", "an incomplete frame waits");
        assert_eq!(got.len(), 4);
        match &got[0] {
            Reply::Rsp {
                txnr: 1,
                code: 200,
                text,
            } => assert!(offers_syslog(text), "{text}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            got[2],
            Reply::Rsp {
                txnr: 3,
                code: 500,
                text: "queue full".into()
            }
        );
        assert_eq!(got[3], Reply::ServerClose);
    }

    #[test]
    fn rejects_garbage() {
        for wire in [&b"x rsp 6 200 OK\n"[..], b"1 rsp 6 200 OKX", b"1 hello 0\n"] {
            assert!(
                parse_reply(wire).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn transaction_numbers_wrap_to_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut session = Session {
            stream: Stream::Tcp(tcp),
            out: Vec::new(),
            input: Vec::new(),
            next_txnr: TXNR_MAX,
        };
        assert_eq!(session.queue(b"a"), TXNR_MAX);
        assert_eq!(session.queue(b""), 1);
        assert_eq!(session.out, b"999999999 syslog 1 a\n1 syslog 0\n");
    }
}
