//! `cargo xtask bench sink`: alerts per second delivered to a real rsyslogd
//! through dockwatch's outbox (spool, delivery thread, RFC 5424), over TCP
//! (octet counting) and over RELP (imrelp, every record acknowledged), and
//! the sender's peak RSS, against a baseline in the same run: the very same
//! records written by a plain buffered TCP writer.
//!
//! Every run ends when rsyslogd has written the last record, so the figures
//! are end-to-end delivery rates and the ratios show what the outbox (and
//! RELP's acknowledgements) cost on top of what the receiver can take.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const ALERTS: u64 = 200_000;
const ROUNDS: usize = 3;
const TARGET_RATE: f64 = 100_000.0;
const TARGET_RSS_MIB: f64 = 50.0;

pub fn run() -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "dockwatch-tests",
            "--bin",
            "dw-push",
        ])
        .status()?;
    if !status.success() {
        bail!("building dw-push failed");
    }
    let push = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/dw-push");
    let work = WorkDir::new()?;
    let mut rsyslog = Receiver::start(work.path())?;
    let record = capture_record(&push, work.path())?;

    // Alternate the two, three rounds, and keep the medians: the machine
    // is shared, and alternating spreads the noise over both.
    let (mut baselines, mut outboxes, mut accepts, mut rss) = (vec![], vec![], vec![], vec![]);
    let (mut relps, mut relp_rss) = (vec![], vec![]);
    for round in 0..ROUNDS {
        baselines.push(plain_writer(&rsyslog, &record)?);
        let tcp_url = format!("syslog+tcp://127.0.0.1:{}", rsyslog.port);
        let (delivered, accepted, rss_mib) = outbox(
            &rsyslog,
            &push,
            &tcp_url,
            &work.path().join(format!("state-{round}")),
        )?;
        outboxes.push(delivered);
        accepts.push(accepted);
        rss.push(rss_mib);
        let relp_url = format!("syslog+relp://127.0.0.1:{}", rsyslog.relp_port);
        let (delivered, _, rss_mib) = outbox(
            &rsyslog,
            &push,
            &relp_url,
            &work.path().join(format!("relp-state-{round}")),
        )?;
        relps.push(delivered);
        relp_rss.push(rss_mib);
    }
    let baseline = median(baselines);
    let outbox = median(outboxes);
    let accepted = median(accepts);
    let rss_mib = rss.into_iter().fold(0.0, f64::max);
    let relp = median(relps);
    let relp_rss_mib = relp_rss.into_iter().fold(0.0, f64::max);

    let rate = |secs: f64| ALERTS as f64 / secs;
    println!(
        "bench sink: {ALERTS} alerts of {} bytes to rsyslogd (RFC 5424) over TCP (octet counting) and RELP, median of {ROUNDS}",
        record.len()
    );
    println!(
        "  baseline (plain buffered TCP writer): {:>9.0} alerts/s",
        rate(baseline)
    );
    println!(
        "  dockwatch outbox, delivered:          {:>9.0} alerts/s  ({:.2}x baseline)",
        rate(outbox),
        baseline / outbox
    );
    println!(
        "  dockwatch outbox, accepted by send(): {:>9.0} alerts/s",
        rate(accepted)
    );
    println!("  dockwatch peak RSS (max of runs):     {rss_mib:>9.1} MiB");
    println!(
        "  dockwatch outbox over RELP, delivered: {:>8.0} alerts/s  ({:.2}x baseline)",
        rate(relp),
        baseline / relp
    );
    println!("  dockwatch RELP peak RSS (max of runs): {relp_rss_mib:>8.1} MiB");
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    println!(
        "  targets: {TARGET_RATE:.0} alerts/s (tcp {}, relp {}), RSS <= {TARGET_RSS_MIB} MiB (tcp {}, relp {})",
        verdict(rate(outbox) >= TARGET_RATE),
        verdict(rate(relp) >= TARGET_RATE),
        verdict(rss_mib <= TARGET_RSS_MIB),
        verdict(relp_rss_mib <= TARGET_RSS_MIB),
    );
    rsyslog.stop();
    Ok(())
}

/// Seconds for a plain buffered TCP writer to get `ALERTS` copies of
/// `record` written by rsyslogd.
fn plain_writer(rsyslog: &Receiver, record: &[u8]) -> anyhow::Result<f64> {
    let before = rsyslog.lines();
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", rsyslog.port))?;
    let mut framed = Vec::with_capacity(1 << 20);
    for _ in 0..ALERTS {
        framed.extend_from_slice(format!("{} ", record.len()).as_bytes());
        framed.extend_from_slice(record);
        if framed.len() >= 1 << 20 {
            stream.write_all(&framed)?;
            framed.clear();
        }
    }
    stream.write_all(&framed)?;
    rsyslog.wait_for(before + ALERTS)?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds until rsyslogd has written `ALERTS` alerts sent through the
/// outbox to `url`, seconds `send` took for them, and the sender's peak RSS
/// in MiB.
fn outbox(
    rsyslog: &Receiver,
    push: &Path,
    url: &str,
    state: &Path,
) -> anyhow::Result<(f64, f64, f64)> {
    let before = rsyslog.lines();
    let started = Instant::now();
    let mut child = Command::new(push)
        .arg("--state-dir")
        .arg(state)
        .arg("--url")
        .arg(url)
        .args(["--count", &ALERTS.to_string(), "--wait", "120"])
        .stdout(Stdio::piped())
        .spawn()?;
    rsyslog.wait_for(before + ALERTS)?;
    let delivered = started.elapsed().as_secs_f64();
    let report = child_output(&mut child)?;
    let accepted = field(&report, "sent").context("dw-push printed no `sent`")?;
    let rss_mib = field(&report, "rss_kib").context("dw-push printed no `rss_kib`")? / 1024.0;
    Ok((delivered, accepted, rss_mib))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One record exactly as the outbox frames it, caught by a listener.
fn capture_record(push: &Path, work: &Path) -> anyhow::Result<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let mut child = Command::new(push)
        .arg("--state-dir")
        .arg(work.join("capture-state"))
        .arg("--url")
        .arg(format!("syslog+tcp://127.0.0.1:{port}"))
        .args(["--count", "1", "--wait", "2"])
        .stdout(Stdio::null())
        .spawn()?;
    let (mut conn, _) = listener.accept()?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut len = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        conn.read_exact(&mut byte)?;
        if byte[0] == b' ' {
            break;
        }
        len.push(byte[0]);
    }
    let len: usize = std::str::from_utf8(&len)?.parse()?;
    let mut record = vec![0; len];
    conn.read_exact(&mut record)?;
    drop(conn);
    child.wait()?;
    Ok(record)
}

fn child_output(child: &mut Child) -> anyhow::Result<String> {
    let mut out = String::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut out)?;
    child.wait()?;
    Ok(out)
}

fn field(report: &str, name: &str) -> Option<f64> {
    BufReader::new(report.as_bytes())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .and_then(|v| v.trim().parse().ok())
        })
}

/// A private rsyslogd (imtcp and imrelp) that writes one two-byte line per
/// record, so the receiver's own cost stays small and counting is a file
/// size.
struct Receiver {
    child: Option<Child>,
    port: u16,
    relp_port: u16,
    output: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> anyhow::Result<Receiver> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let relp_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let output = dir.join("received");
        std::fs::create_dir_all(dir.join("work"))?;
        let conf = format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1")
module(load="imrelp")
input(type="imrelp" port="{relp_port}" address="127.0.0.1")
template(name="one" type="string" string="x\n")
action(type="omfile" file="{out}" template="one" asyncWriting="on" ioBufferSize="256k" flushOnTXEnd="off" flushInterval="1")
"#,
            d = dir.display(),
            out = output.display(),
        );
        std::fs::write(dir.join("rsyslog.conf"), conf)?;
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .spawn()
            .context("start rsyslogd (cargo xtask setup installs it, and rsyslog-relp)")?;
        let receiver = Receiver {
            child: Some(child),
            port,
            relp_port,
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while [port, relp_port]
            .iter()
            .any(|&p| TcpStream::connect(("127.0.0.1", p)).is_err())
        {
            if Instant::now() > deadline {
                bail!("rsyslogd did not listen on {port} and {relp_port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(receiver)
    }

    fn lines(&self) -> u64 {
        std::fs::metadata(&self.output).map_or(0, |m| m.len() / 2)
    }

    fn wait_for(&self, lines: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut last = (self.lines(), Instant::now());
        while self.lines() < lines {
            let now = self.lines();
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(20) {
                bail!("rsyslogd stalled at {now} of {lines} records");
            }
            if Instant::now() > deadline {
                bail!("rsyslogd received {now} of {lines} records in 300 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scratch directory removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> anyhow::Result<WorkDir> {
        let dir = std::env::temp_dir().join(format!("dw-bench-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(WorkDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
