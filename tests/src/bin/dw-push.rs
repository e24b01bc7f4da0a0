//! Test and benchmark driver: pushes numbered alerts through the real
//! `dockwatch::outbox::Outputs`, as the daemon does, so the sink tests can
//! kill, restart and rotate around it.
//!
//! ```text
//! dw-push --state-dir DIR --url URL... [--from N] [--count N] [--rate PER_SEC]
//!         [--hostile] [--hold] [--wait SECS] [--spool-max-bytes N]
//!         [--resend-bytes N]
//!         [--tls-ca PEM --tls-cert PEM --tls-key PEM]
//! ```
//!
//! Alert `i` has `file.path` `/etc/docker/seq/NNNNNNNN` (`i` in eight
//! digits). Prints `accepted N` every 100 alerts, `sent N SECS` at the end,
//! then waits for delivery and prints `delivered SECS` (or `undelivered`),
//! and `rss_kib PEAK`. `--hold` sleeps after sending instead (for SIGKILL).
//! SIGHUP reopens the outputs, as in the daemon.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use dockwatch::alert::{Alert, RuleRef, Severity};
use dockwatch::config::Config;
use dockwatch::event::{Action, Event, FileRef, Outcome, Process, Source};
use dockwatch::outbox::Outputs;
use dockwatch_tests::rsyslog::hostile_paths;

static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_: libc::c_int) {
    HANGUP.store(true, Ordering::Relaxed);
}

fn main() {
    let mut urls = Vec::new();
    let mut state_dir = None;
    let (mut from, mut count, mut rate) = (0u64, 0u64, 0u64);
    let (mut hostile, mut hold, mut wait) = (false, false, 60u64);
    let mut spool_max_bytes = None;
    let mut resend_bytes = None;
    let mut tls = dockwatch::sink::TlsConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => urls.push(value()),
            "--state-dir" => state_dir = Some(PathBuf::from(value())),
            "--from" => from = value().parse().expect("--from N"),
            "--count" => count = value().parse().expect("--count N"),
            "--rate" => rate = value().parse().expect("--rate N"),
            "--wait" => wait = value().parse().expect("--wait SECS"),
            "--resend-bytes" => resend_bytes = Some(value().parse().expect("--resend-bytes N")),
            "--spool-max-bytes" => {
                spool_max_bytes = Some(value().parse().expect("--spool-max-bytes N"))
            }
            "--tls-ca" => tls.ca = Some(PathBuf::from(value())),
            "--tls-cert" => tls.cert = Some(PathBuf::from(value())),
            "--tls-key" => tls.key = Some(PathBuf::from(value())),
            "--hostile" => hostile = true,
            "--hold" => hold = true,
            _ => panic!("unknown argument {arg}"),
        }
    }
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe { libc::signal(libc::SIGHUP, on_hangup as *const () as libc::sighandler_t) };

    let mut config = Config {
        host_name: Some("testhost".into()),
        state_dir: state_dir.expect("--state-dir DIR"),
        tls,
        ..Config::default()
    };
    if let Some(bytes) = resend_bytes {
        config.outbox.resend_bytes = bytes;
    }
    if let Some(cap) = spool_max_bytes {
        config.outbox.spool_max_bytes = cap;
    }
    let mut outputs = match Outputs::open(&urls, &config) {
        Ok(outputs) => outputs,
        Err(e) => {
            eprintln!("dw-push: {e}");
            std::process::exit(2);
        }
    };
    let rule = Arc::new(RuleRef::new(
        "docker-config-write".into(),
        "Docker configuration written".into(),
        Severity::Warning,
        vec!["cis:3.18".into()],
    ));
    let host: Arc<str> = "testhost".into();
    let paths: Vec<Vec<u8>> = if hostile {
        hostile_paths()
    } else {
        (from..from + count)
            .map(|i| format!("/etc/docker/seq/{i:08}").into_bytes())
            .collect()
    };
    let mut stdout = std::io::stdout();
    let started = Instant::now();
    for (n, path) in paths.into_iter().enumerate() {
        if HANGUP.swap(false, Ordering::Relaxed) {
            outputs.reopen();
        }
        if rate > 0 {
            let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let mut event = Event::new(Source::Audit, Action::OpenWrite);
        event.time = UNIX_EPOCH + Duration::from_micros(1_795_869_685_000_000 + n as u64);
        event.outcome = Outcome::Success;
        event.file = Some(FileRef::new(path));
        event.process = Process {
            pid: 4242,
            uid: Some(0),
            comm: Some("tee".into()),
            exe: Some("/usr/bin/tee".into()),
            cmdline: Some("tee -a /etc/docker/daemon.json".into()),
            ..Process::default()
        };
        outputs.send(&Alert::new(event, rule.clone(), host.clone()));
        if (n + 1) % 100 == 0 {
            let _ = writeln!(stdout, "accepted {}", from + n as u64 + 1);
        }
    }
    let _ = writeln!(stdout, "sent {:.3}", started.elapsed().as_secs_f64());
    let _ = stdout.flush();
    if hold {
        loop {
            std::thread::sleep(Duration::from_millis(50));
            if HANGUP.swap(false, Ordering::Relaxed) {
                outputs.reopen();
            }
        }
    }
    let delivered = outputs.wait_delivered(Duration::from_secs(wait));
    if delivered {
        let _ = writeln!(stdout, "delivered {:.3}", started.elapsed().as_secs_f64());
    } else {
        let _ = writeln!(stdout, "undelivered");
    }
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    let _ = writeln!(stdout, "rss_kib {rss}");
    outputs.shutdown_blocking();
}
