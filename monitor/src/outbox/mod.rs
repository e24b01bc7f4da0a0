//! Per-sink buffering between the pipeline and the wire, so an alert
//! accepted here is delivered at least once and in order per sink, across a
//! receiver restart, a network outage, log rotation and a restart (or
//! SIGKILL) of dockwatch itself.
//!
//! Syslog sinks get a disk spool and a delivery thread each (`delivery`,
//! `spool`); `send` only appends to the spool, so a dead receiver never
//! stalls the pipeline. Files and stdout are written directly: a local
//! write is as cheap as spooling it would be.

mod delivery;
pub mod spool;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::alert::{Alert, RuleRef, Severity};
use crate::config::{Config, ConfigError};
use crate::event::{Action, Detail, Event, Source};
use crate::sink::file::FileSink;
use crate::sink::{self, Target};
pub use delivery::DeliveryStatus;
use delivery::{Outbox, Plan, Wire};
use spool::SpoolWriter;

/// The `[outbox]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Disk a syslog sink's spool may use; past it, new alerts are dropped
    /// and counted (reported once delivery resumes).
    pub spool_max_bytes: u64,
    /// Size of one spool segment file.
    pub segment_bytes: u64,
    /// Bytes resent after a stream connection breaks, beyond what the kernel
    /// still held unacknowledged: what a receiver may have had unread when
    /// it went away.
    pub resend_bytes: u64,
    /// How long stopping may spend delivering what is queued.
    pub shutdown_timeout_ms: u64,
    /// Default size rotation of `file://` outputs (0: none); `?max_bytes=`.
    pub file_max_bytes: u64,
    /// Rotated generations kept (`alerts.jsonl.1` … `.N`); `?keep=`.
    pub file_keep: u32,
}

impl Default for OutboxConfig {
    fn default() -> OutboxConfig {
        OutboxConfig {
            spool_max_bytes: 256 << 20,
            segment_bytes: 8 << 20,
            resend_bytes: 256 << 10,
            shutdown_timeout_ms: 5_000,
            file_max_bytes: 0,
            file_keep: 5,
        }
    }
}

/// Bytes of stdout lines gathered before they are written.
const STDOUT_BATCH: usize = 64 << 10;

/// Every configured output.
pub struct Outputs {
    sinks: Vec<Output>,
    /// The URL of each of `sinks`.
    urls: Vec<String>,
    line: Vec<u8>,
    /// Lines for stdout not yet written: batched so a replay writes in
    /// large chunks instead of one syscall per alert.
    stdout: Vec<u8>,
    shutdown_timeout: Duration,
}

/// One output as `dockwatch status` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OutputStatus {
    /// The output URL.
    pub output: String,
    /// Spool and delivery of a syslog output; files and stdout have none.
    pub delivery: Option<DeliveryStatus>,
}

enum Output {
    Stdout,
    File(FileSink),
    /// A syslog or RELP output behind its spool, with the spool directory
    /// to remove at exit when it is private.
    Spooled(Outbox, Option<PathBuf>),
}

impl Outputs {
    /// Opens every output; URL and spool problems are configuration errors.
    pub fn open(urls: &[String], config: &Config) -> Result<Outputs, ConfigError> {
        let host: Arc<str> = config.host_name().into();
        let mut sinks = Vec::with_capacity(urls.len());
        for url in urls {
            let sink = match sink::parse_url(url, config)? {
                Target::Stdout => Output::Stdout,
                Target::File { path, rotation } => {
                    Output::File(FileSink::open(&path, rotation).map_err(|e| {
                        ConfigError::new(format!(
                            "output {url:?}: cannot open {}: {e}",
                            path.display()
                        ))
                    })?)
                }
                Target::Syslog {
                    endpoint,
                    framing,
                    formatter,
                } => spooled(
                    url,
                    Wire::Syslog { endpoint, framing },
                    formatter,
                    config,
                    &host,
                )?,
                Target::Relp {
                    endpoint,
                    formatter,
                } => spooled(url, Wire::Relp(endpoint), formatter, config, &host)?,
            };
            sinks.push(sink);
        }
        Ok(Outputs {
            sinks,
            urls: urls.to_vec(),
            line: Vec::with_capacity(1024),
            stdout: Vec::new(),
            shutdown_timeout: Duration::from_millis(config.outbox.shutdown_timeout_ms),
        })
    }

    /// Accepts an alert for every sink; never blocks on delivery.
    pub fn send(&mut self, alert: &Alert) {
        if let [Output::Stdout] = self.sinks.as_slice() {
            // Stdout alone (replay's default): the line goes straight into
            // the batch rather than through `line`.
            alert.write_json(&mut self.stdout);
            self.stdout.push(b'\n');
            if self.stdout.len() >= STDOUT_BATCH {
                self.flush();
            }
            return;
        }
        let mut json_ready = false;
        for sink in &mut self.sinks {
            match sink {
                Output::Spooled(outbox, _) => outbox.send(alert),
                Output::Stdout | Output::File(_) => {
                    if !json_ready {
                        self.line.clear();
                        alert.write_json(&mut self.line);
                        self.line.push(b'\n');
                        json_ready = true;
                    }
                    if let Output::File(file) = sink {
                        if let Err(e) = file.write_line(&self.line) {
                            tracing::error!("cannot write alert to {}: {e}", file.path().display());
                        }
                    } else {
                        self.stdout.extend_from_slice(&self.line);
                    }
                }
            }
        }
        if self.stdout.len() >= STDOUT_BATCH {
            self.flush();
        }
    }

    /// Writes what [`Outputs::send`] batched for stdout. The daemon calls it
    /// after each event's alerts, so a live alert is never held back.
    pub fn flush(&mut self) {
        if self.stdout.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) must not stop the other outputs.
        let _ = out.write_all(&self.stdout).and_then(|()| out.flush());
        self.stdout.clear();
    }

    /// After logrotate (SIGHUP): files are reopened at their paths and
    /// syslog connections rebuilt.
    pub fn reopen(&mut self) {
        for sink in &mut self.sinks {
            match sink {
                Output::Stdout => {}
                Output::File(file) => {
                    if let Err(e) = file.reopen() {
                        tracing::error!("cannot reopen {}: {e}", file.path().display());
                    }
                }
                Output::Spooled(outbox, _) => outbox.reconnect(),
            }
        }
    }

    /// Every output with its delivery state.
    pub fn status(&self) -> Vec<OutputStatus> {
        self.sinks
            .iter()
            .zip(&self.urls)
            .map(|(sink, url)| OutputStatus {
                output: url.clone(),
                delivery: match sink {
                    Output::Spooled(outbox, _) => Some(outbox.status()),
                    Output::Stdout | Output::File(_) => None,
                },
            })
            .collect()
    }

    /// Whether every syslog sink has delivered all it accepted.
    pub fn delivered(&self) -> bool {
        self.sinks.iter().all(|s| match s {
            Output::Spooled(outbox, _) => outbox.delivered(),
            _ => true,
        })
    }

    /// Waits up to `timeout` for [`Outputs::delivered`].
    pub fn wait_delivered(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.delivered() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Delivers what can be delivered within `[outbox] shutdown_timeout_ms`;
    /// the rest stays in the spool for the next start.
    pub async fn shutdown(mut self) {
        self.flush();
        let _ = tokio::task::spawn_blocking(move || self.shutdown_blocking()).await;
    }

    /// [`Outputs::shutdown`] for callers without a runtime.
    pub fn shutdown_blocking(mut self) {
        self.flush();
        let deadline = Instant::now() + self.shutdown_timeout;
        let outboxes: Vec<(Outbox, Option<PathBuf>)> = self
            .sinks
            .into_iter()
            .filter_map(|s| match s {
                Output::Spooled(outbox, private) => Some((outbox, private)),
                _ => None,
            })
            .collect();
        for (outbox, _) in &outboxes {
            outbox.begin_shutdown(deadline);
        }
        for (outbox, private) in outboxes {
            let delivered = outbox.join();
            if let (Some(dir), true) = (private, delivered) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// A syslog or RELP output: its spool, locked, and its delivery thread.
fn spooled(
    url: &str,
    wire: Wire,
    formatter: sink::format::Formatter,
    config: &Config,
    host: &Arc<str>,
) -> Result<Output, ConfigError> {
    let mut dir = spool_dir(&config.state_dir, url);
    let mut private = false;
    let lock = match lock_spool(&dir) {
        Ok(lock) => Ok(lock),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            // Another dockwatch (a `run` beside a `replay`)
            // owns the spool: use one of our own, removed
            // at exit once delivered.
            let shared = dir.clone();
            dir.set_extension(format!("pid{}", std::process::id()));
            private = true;
            tracing::warn!(
                "spool {} is in use by another dockwatch; using {}",
                shared.display(),
                dir.display()
            );
            lock_spool(&dir)
        }
        Err(e) => Err(e),
    }
    .map_err(|e| {
        ConfigError::new(format!(
            "output {url:?}: cannot use the spool {}: {e}; set state_dir to a writable directory",
            dir.display()
        ))
    })?;
    let (writer, reader) = SpoolWriter::open(
        &dir,
        config.outbox.spool_max_bytes,
        config.outbox.segment_bytes.max(4096),
    )
    .map_err(|e| {
        ConfigError::new(format!(
            "output {url:?}: cannot open the spool {}: {e}",
            dir.display()
        ))
    })?;
    let plan = Plan {
        name: url.to_string(),
        wire,
        formatter: Arc::new(formatter),
        resend_bytes: config.outbox.resend_bytes,
        host: host.clone(),
    };
    let outbox = Outbox::start(plan, writer, reader, lock)
        .map_err(|e| ConfigError::new(format!("output {url:?}: cannot start delivery: {e}")))?;
    Ok(Output::Spooled(outbox, private.then_some(dir)))
}

/// The alert that reports drops by an outbox bound.
pub fn dropped_alert(sink: &str, count: u64, host: Arc<str>) -> Alert {
    let mut event = Event::new(Source::Monitor, Action::AlertsDropped);
    event.detail = Detail::Dropped {
        sink: sink.to_string(),
        count,
    };
    let rule = Arc::new(RuleRef::new(
        "dockwatch-alerts-dropped".into(),
        "alerts dropped: an output's spool was full".into(),
        Severity::Warning,
        Vec::new(),
    ));
    Alert::new(event, rule, host)
}

/// `<state_dir>/outbox/<url>`: one spool per destination, so changing the
/// format or adding an output never mixes records.
fn spool_dir(state_dir: &Path, url: &str) -> PathBuf {
    let name: String = url
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    // FNV-1a keeps URLs that differ only in punctuation apart.
    let hash = url.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    state_dir
        .join("outbox")
        .join(format!("{name}-{:08x}", hash as u32))
}

/// Takes `<dir>/lock`: two processes appending to one spool would
/// interleave segment numbers.
fn lock_spool(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(err);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FileRef;
    use std::os::unix::net::UnixDatagram;

    fn alert(n: u32) -> Alert {
        let mut event = Event::new(Source::Ebpf, Action::OpenWrite);
        event.file = Some(FileRef::new(format!("/etc/docker/{n}").into_bytes()));
        let rule = Arc::new(RuleRef::new(
            "r".into(),
            "r".into(),
            Severity::Notice,
            Vec::new(),
        ));
        Alert::new(event, rule, "h".into())
    }

    #[test]
    fn status_shows_the_backlog_and_the_last_error_until_delivery_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let config = Config {
            state_dir: dir.path().join("state"),
            ..Config::default()
        };
        let url = format!("syslog+unix://{}?format=json", socket.display());
        let mut outputs = Outputs::open(std::slice::from_ref(&url), &config).unwrap();
        outputs.send(&alert(1));
        // No receiver yet: wait for the delivery thread's first failure.
        let deadline = Instant::now() + Duration::from_secs(5);
        let failing = loop {
            let status = outputs.status().remove(0).delivery.unwrap();
            if status.last_error.is_some() || Instant::now() > deadline {
                break status;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(failing.delivery_errors >= 1, "{failing:?}");
        assert!(failing.spool_bytes > 0, "{failing:?}");
        assert!(failing.oldest_undelivered_secs.is_some(), "{failing:?}");
        assert!(failing.last_error_at.is_some(), "{failing:?}");

        let receiver = UnixDatagram::bind(&socket).unwrap();
        assert!(outputs.wait_delivered(Duration::from_secs(10)));
        let delivered = outputs.status().remove(0);
        assert_eq!(delivered.output, url);
        let delivered = delivered.delivery.unwrap();
        assert_eq!(delivered.oldest_undelivered_secs, None, "{delivered:?}");
        // The last error stays on show: it tells what happened.
        assert!(delivered.last_error.is_some());
        outputs.shutdown_blocking();
        drop(receiver);
    }

    #[test]
    fn delivers_in_order_and_a_second_process_gets_its_own_spool() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let receiver = UnixDatagram::bind(&socket).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let config = Config {
            state_dir: dir.path().join("state"),
            ..Config::default()
        };
        // Receive while sending: the socket queue holds only
        // net.unix.max_dgram_qlen datagrams.
        let reading = std::thread::spawn(move || {
            let mut paths = Vec::new();
            let mut buf = vec![0; 65536];
            for _ in 0..51 {
                let n = receiver.recv(&mut buf).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
                paths.push(v["file"]["path"].as_str().unwrap().to_string());
            }
            paths
        });
        let url = format!("syslog+unix://{}?format=json", socket.display());
        let mut first = Outputs::open(std::slice::from_ref(&url), &config).unwrap();
        let mut second = Outputs::open(std::slice::from_ref(&url), &config).unwrap();
        for n in 0..50 {
            first.send(&alert(n));
        }
        second.send(&alert(1000));
        assert!(first.wait_delivered(Duration::from_secs(5)));
        assert!(second.wait_delivered(Duration::from_secs(5)));
        first.shutdown_blocking();
        second.shutdown_blocking();
        let paths = reading.join().unwrap();
        let ours: Vec<&String> = paths.iter().filter(|p| *p != "/etc/docker/1000").collect();
        let want: Vec<String> = (0..50).map(|n| format!("/etc/docker/{n}")).collect();
        assert_eq!(ours, want.iter().collect::<Vec<_>>());
        assert!(paths.contains(&"/etc/docker/1000".to_string()));
        // The private spool is gone once delivered; the shared one stays.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("state/outbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    /// A RELP peer that reads frames off `conn`: `(txnr, command, data)`.
    fn relp_frames(
        conn: &mut std::io::BufReader<std::net::TcpStream>,
        n: usize,
    ) -> Vec<(String, String, String)> {
        use std::io::{BufRead, Read};
        let mut frames = Vec::new();
        while frames.len() < n {
            let mut head = Vec::new();
            for _ in 0..3 {
                let mut word = Vec::new();
                loop {
                    let mut b = [0u8];
                    conn.read_exact(&mut b).unwrap();
                    if b[0] == b' ' || b[0] == b'\n' {
                        break;
                    }
                    word.push(b[0]);
                }
                head.push(String::from_utf8(word).unwrap());
            }
            let len: usize = head[2].parse().unwrap();
            let mut data = vec![0; len];
            conn.read_exact(&mut data).unwrap();
            if len > 0 {
                let mut lf = Vec::new();
                conn.read_until(b'\n', &mut lf).unwrap();
            }
            frames.push((
                head[0].clone(),
                head[1].clone(),
                String::from_utf8(data).unwrap(),
            ));
        }
        frames
    }

    /// The one behaviour imrelp cannot be made to show on demand: a
    /// refusal. The refused alert is reported and resent on a new session;
    /// the ones answered 200 around it are not sent again.
    #[test]
    fn a_refused_relp_record_is_resent_alone() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = std::thread::spawn(move || {
            let open_ok = |conn: &mut std::net::TcpStream, txnr: &str| {
                let data = "200 OK\nrelp_version=0\ncommands=syslog";
                writeln!(conn, "{txnr} rsp {} {data}", data.len()).unwrap();
            };
            let paths = |frames: &[(String, String, String)]| -> Vec<String> {
                frames
                    .iter()
                    .map(|(_, _, d)| {
                        let v: serde_json::Value = serde_json::from_str(d).unwrap();
                        v["file"]["path"].as_str().unwrap().to_string()
                    })
                    .collect()
            };
            let (first, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(first.try_clone().unwrap());
            let mut first = first;
            let open = relp_frames(&mut reader, 1);
            assert_eq!(open[0].1, "open");
            assert!(open[0].2.contains("commands=syslog"), "{}", open[0].2);
            open_ok(&mut first, &open[0].0);
            let records = relp_frames(&mut reader, 5);
            // Answers out of order, the refusal last: every 200 is seen
            // before the client gives the session up.
            for (i, (txnr, command, _)) in records.iter().enumerate() {
                assert_eq!(command, "syslog");
                if i != 1 {
                    writeln!(first, "{txnr} rsp 6 200 OK").unwrap();
                }
            }
            writeln!(first, "{} rsp 14 500 queue full", records[1].0).unwrap();
            let (second, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(second.try_clone().unwrap());
            let mut second = second;
            let open = relp_frames(&mut reader, 1);
            open_ok(&mut second, &open[0].0);
            let resent = relp_frames(&mut reader, 1);
            writeln!(second, "{} rsp 6 200 OK", resent[0].0).unwrap();
            (paths(&records), paths(&resent), reader)
        });
        let config = Config {
            state_dir: dir.path().join("state"),
            ..Config::default()
        };
        let url = format!("syslog+relp://127.0.0.1:{port}?format=json");
        let mut outputs = Outputs::open(std::slice::from_ref(&url), &config).unwrap();
        for n in 0..5 {
            outputs.send(&alert(n));
        }
        assert!(outputs.wait_delivered(Duration::from_secs(10)));
        let (first, resent, conn) = peer.join().unwrap();
        // The peer hangs up instead of answering `close`.
        drop(conn);
        let want: Vec<String> = (0..5).map(|n| format!("/etc/docker/{n}")).collect();
        assert_eq!(first, want);
        assert_eq!(resent, ["/etc/docker/1"]);
        outputs.shutdown_blocking();
    }
}
