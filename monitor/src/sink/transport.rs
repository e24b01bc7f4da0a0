//! Sockets to syslog receivers: unix datagram and stream (/dev/log), UDP,
//! TCP and TLS, with RFC 6587 framing on the stream ones.
//!
//! Connections are blocking: each runs on its sink's own delivery thread
//! (see `outbox`), so a slow receiver stalls only that thread, never the
//! pipeline. Every failure is an `io::Error`; the outbox decides to
//! reconnect, the transport only reports.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// How long a connect or a stalled write may take before the connection is
/// given up and rebuilt (the records are resent from the spool).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a syslog sink sends.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A local socket such as /dev/log: datagram, or stream when the
    /// receiver listens that way.
    Unix(PathBuf),
    Udp(String),
    Tcp(String),
    Tls {
        addr: String,
        server_name: ServerName<'static>,
        config: Arc<ClientConfig>,
    },
}

/// Record framing on stream transports (RFC 6587).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `LEN SP RECORD`: any byte may appear in a record.
    OctetCounting,
    /// `RECORD LF`: what older receivers understand; safe because records
    /// never contain a raw newline.
    Newline,
}

/// An open connection.
pub struct Connection {
    socket: Socket,
    framing: Framing,
    /// Framed bytes of the batch being written.
    scratch: Vec<u8>,
}

enum Socket {
    UnixDatagram(UnixDatagram),
    UnixStream(UnixStream),
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Connection {
    pub fn connect(endpoint: &Endpoint, framing: Framing) -> io::Result<Connection> {
        let socket = match endpoint {
            Endpoint::Unix(path) => {
                let dgram = UnixDatagram::unbound()?;
                match dgram.connect(path) {
                    Ok(()) => {
                        // A receiver that stops reading fills its queue;
                        // give up and reconnect rather than hang.
                        dgram.set_write_timeout(Some(IO_TIMEOUT))?;
                        Socket::UnixDatagram(dgram)
                    }
                    // The receiver listens on a stream socket (syslog-ng,
                    // rsyslog's imptcp on a path).
                    Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                        let stream = UnixStream::connect(path)?;
                        stream.set_write_timeout(Some(IO_TIMEOUT))?;
                        Socket::UnixStream(stream)
                    }
                    Err(e) => return Err(e),
                }
            }
            Endpoint::Udp(addr) => {
                let target = resolve(addr)?;
                let bind = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(bind)?;
                socket.connect(target)?;
                Socket::Udp(socket)
            }
            Endpoint::Tcp(addr) => Socket::Tcp(tcp_connect(addr)?),
            Endpoint::Tls {
                addr,
                server_name,
                config,
            } => Socket::Tls(tls_connect(addr, server_name, config)?),
        };
        Ok(Connection {
            socket,
            framing,
            scratch: Vec::new(),
        })
    }

    /// Whether each record travels as its own datagram.
    pub fn is_datagram(&self) -> bool {
        matches!(self.socket, Socket::UnixDatagram(_) | Socket::Udp(_))
    }

    /// Whether a datagram receiver's loss would go unnoticed entirely (UDP).
    pub fn is_fire_and_forget(&self) -> bool {
        matches!(self.socket, Socket::Udp(_))
    }

    /// Sends `records` in order. Returns how many were skipped because no
    /// datagram can carry them (EMSGSIZE): resending those would never
    /// succeed, so the caller counts them as dropped.
    pub fn send<'a>(&mut self, records: impl Iterator<Item = &'a [u8]>) -> io::Result<u64> {
        let mut skipped = 0;
        match &mut self.socket {
            Socket::UnixDatagram(s) => {
                for record in records {
                    skipped += datagram(s.send(record))?;
                }
            }
            Socket::Udp(s) => {
                for record in records {
                    skipped += datagram(s.send(record))?;
                }
            }
            Socket::UnixStream(_) | Socket::Tcp(_) | Socket::Tls(_) => {
                self.scratch.clear();
                for record in records {
                    frame(&mut self.scratch, self.framing, record);
                }
                let bytes = &self.scratch;
                match &mut self.socket {
                    Socket::UnixStream(s) => s.write_all(bytes)?,
                    Socket::Tcp(s) => s.write_all(bytes)?,
                    Socket::Tls(s) => {
                        s.write_all(bytes)?;
                        s.flush()?;
                    }
                    _ => unreachable!("matched stream sockets above"),
                }
            }
        }
        Ok(skipped)
    }

    /// Bytes written but not yet acknowledged by the peer's kernel
    /// (`SIOCOUTQ`); `None` on datagram sockets.
    pub fn unacked_bytes(&self) -> Option<usize> {
        let fd = match &self.socket {
            Socket::UnixStream(s) => s.as_raw_fd(),
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Tls(s) => s.sock.as_raw_fd(),
            Socket::UnixDatagram(_) | Socket::Udp(_) => return None,
        };
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (== SIOCOUTQ) writes one int through the pointer.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
        (rc == 0).then_some(queued.max(0) as usize)
    }

    /// Closes politely: TLS close_notify, then FIN, so what was written
    /// still arrives.
    pub fn close(self) {
        if let Socket::Tls(mut s) = self.socket {
            s.conn.send_close_notify();
            let _ = s.flush();
            let _ = s.sock.shutdown(std::net::Shutdown::Write);
        }
    }
}

/// A TLS stream to `addr`, handshake done and the receiver's verdict on
/// our certificate awaited; shared by the syslog and RELP outputs.
pub fn tls_connect(
    addr: &str,
    server_name: &ServerName<'static>,
    config: &Arc<ClientConfig>,
) -> io::Result<Box<StreamOwned<ClientConnection, TcpStream>>> {
    let mut tcp = tcp_connect(addr)?;
    let mut tls =
        ClientConnection::new(config.clone(), server_name.clone()).map_err(io::Error::other)?;
    // Finish the handshake now, so a certificate problem shows as a
    // connect failure rather than a lost first batch.
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)?;
    }
    await_verdict(&mut tls, &mut tcp)?;
    Ok(Box::new(StreamOwned::new(tls, tcp)))
}

/// How long a new TLS 1.3 connection waits for the receiver's verdict.
const VERDICT_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// TLS 1.3 ends the client's handshake before the receiver has judged the
/// client's certificate: a receiver that refuses it (or one that was
/// needed and not sent) says so with an alert or a close a moment later,
/// while records written meanwhile are acknowledged by its kernel and then
/// thrown away. Waiting for that moment makes the refusal a connect
/// failure, retried and reported, instead of records that look delivered.
/// Session tickets, which a receiver sends once it accepted, end the wait
/// early; a receiver that sends nothing costs the wait once per connect.
fn await_verdict(tls: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    if tls.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return Ok(());
    }
    tcp.set_read_timeout(Some(VERDICT_WAIT))?;
    let verdict = match tls.read_tls(tcp) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the receiver closed the TLS connection right after the handshake: \
             it refused this client (check [tls] cert and key against the CA the receiver trusts)",
        )),
        Ok(_) => tls
            .process_new_packets()
            .map(drop)
            .map_err(io::Error::other),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    };
    tcp.set_read_timeout(None)?;
    verdict
}

fn datagram(result: io::Result<usize>) -> io::Result<u64> {
    match result {
        Ok(_) => Ok(0),
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
            tracing::warn!("a record is larger than the datagram limit and was dropped: {e}");
            Ok(1)
        }
        Err(e) => Err(e),
    }
}

/// Appends one framed record.
pub fn frame(out: &mut Vec<u8>, framing: Framing, record: &[u8]) {
    match framing {
        Framing::OctetCounting => {
            out.extend_from_slice(itoa::Buffer::new().format(record.len()).as_bytes());
            out.push(b' ');
            out.extend_from_slice(record);
        }
        Framing::Newline => {
            out.extend_from_slice(record);
            out.push(b'\n');
        }
    }
}

fn resolve(addr: &str) -> io::Result<std::net::SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to no address"),
        )
    })
}

pub fn tcp_connect(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&resolve(addr)?, IO_TIMEOUT)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_counting_counts_bytes() {
        let mut out = Vec::new();
        frame(&mut out, Framing::OctetCounting, "é\n]".as_bytes());
        assert_eq!(out, "4 é\n]".as_bytes());
        out.clear();
        frame(&mut out, Framing::Newline, b"abc");
        assert_eq!(out, b"abc\n");
    }

    #[test]
    fn unix_stream_receivers_get_framed_records() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut conn = Connection::connect(&Endpoint::Unix(path), Framing::OctetCounting).unwrap();
        assert!(!conn.is_datagram());
        conn.send([&b"one"[..], b"three"].into_iter()).unwrap();
        conn.close();
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = [0u8; 12];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"3 one5 three");
    }

    #[test]
    fn unix_datagram_round_trip_and_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let endpoint = Endpoint::Unix(path.clone());
        let err = Connection::connect(&endpoint, Framing::OctetCounting)
            .err()
            .unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let receiver = UnixDatagram::bind(&path).unwrap();
        let mut conn = Connection::connect(&endpoint, Framing::OctetCounting).unwrap();
        assert!(conn.is_datagram());
        conn.send([&b"one"[..], b"two"].into_iter()).unwrap();
        let mut buf = [0u8; 16];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
    }
}
