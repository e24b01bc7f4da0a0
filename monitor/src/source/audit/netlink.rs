//! The kernel's audit netlink socket: the read-only multicast group that
//! carries every record beside auditd (or without it), and the status
//! request that reports the kernel's `lost` counter and who is auditd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::record::RecordType;

/// `NETLINK_AUDIT`.
const NETLINK_AUDIT: libc::c_int = 9;
/// `AUDIT_NLGRP_READLOG`: the multicast group of audit records.
const GROUP_READLOG: u32 = 1;
/// `AUDIT_GET`.
const AUDIT_GET: u16 = 1000;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;

fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_AUDIT,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind(fd: &OwnedFd, groups: u32) -> io::Result<()> {
    // SAFETY: sockaddr_nl is plain old data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    // SAFETY: addr outlives the call and the length matches its type.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_timeout(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: tv outlives the call and the length matches its type.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What one receive gave.
#[derive(Debug)]
pub enum Received<'a> {
    /// A record: its type and payload (`audit(…): fields`).
    Record(RecordType, &'a [u8]),
    /// Nothing within the timeout.
    Idle,
    /// The socket's buffer overflowed: records were dropped by the kernel.
    Overflow,
}

/// A member of the audit multicast group.
pub struct Multicast {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Multicast {
    /// Joins the group; needs CAP_AUDIT_READ.
    pub fn open(timeout: Duration) -> io::Result<Multicast> {
        let fd = netlink_socket()?;
        bind(&fd, GROUP_READLOG)?;
        set_timeout(&fd, timeout)?;
        // A bigger buffer rides out bursts; root may exceed rmem_max.
        let size: libc::c_int = 8 << 20;
        // SAFETY: size outlives the call; failure only leaves the default.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Ok(Multicast {
            fd,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Waits up to the timeout for one message.
    pub fn recv(&mut self) -> io::Result<Received<'_>> {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr() as *mut libc::c_void,
                self.buf.len(),
                0,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Received::Idle),
                Some(libc::ENOBUFS) => Ok(Received::Overflow),
                _ => Err(err),
            };
        }
        let msg = &self.buf[..n as usize];
        let Some((kind, payload)) = parse_message(msg) else {
            return Ok(Received::Idle);
        };
        Ok(Received::Record(RecordType(kind), payload))
    }
}

/// One netlink message: its type and payload, bounded by its own length.
fn parse_message(msg: &[u8]) -> Option<(u16, &[u8])> {
    if msg.len() < NLMSG_HDRLEN {
        return None;
    }
    let len = u32::from_ne_bytes(msg[0..4].try_into().ok()?) as usize;
    let kind = u16::from_ne_bytes(msg[4..6].try_into().ok()?);
    let end = len.clamp(NLMSG_HDRLEN, msg.len());
    Some((kind, &msg[NLMSG_HDRLEN..end]))
}

/// The kernel's audit status (`auditctl -s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub enabled: u32,
    /// auditd's pid, 0 when none is registered.
    pub pid: u32,
    /// Records the kernel dropped since boot.
    pub lost: u32,
    pub backlog: u32,
}

/// Asks the kernel for its audit status; needs CAP_AUDIT_CONTROL.
pub fn status() -> io::Result<Status> {
    let fd = netlink_socket()?;
    bind(&fd, 0)?;
    set_timeout(&fd, Duration::from_secs(1))?;
    let mut req = [0u8; NLMSG_HDRLEN];
    req[0..4].copy_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&AUDIT_GET.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: sockaddr_nl zeroed addresses the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: req and kernel outlive the call; lengths match.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr() as *const libc::c_void,
            req.len(),
            0,
            &kernel as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let Some((kind, payload)) = parse_message(&buf[..n as usize]) else {
            continue;
        };
        match kind {
            AUDIT_GET if payload.len() >= 32 => {
                let word =
                    |i: usize| u32::from_ne_bytes(payload[i * 4..i * 4 + 4].try_into().unwrap());
                return Ok(Status {
                    enabled: word(1),
                    pid: word(3),
                    lost: word(6),
                    backlog: word(7),
                });
            }
            NLMSG_ERROR if payload.len() >= 4 => {
                let errno = i32::from_ne_bytes(payload[0..4].try_into().unwrap());
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded_by_their_length() {
        let mut msg = vec![0u8; 40];
        msg[0..4].copy_from_slice(&30u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&1307u16.to_ne_bytes());
        let (kind, payload) = parse_message(&msg).unwrap();
        assert_eq!(kind, 1307);
        assert_eq!(payload.len(), 14);
        assert!(parse_message(&msg[..10]).is_none());
    }
}
