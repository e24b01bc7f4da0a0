//! Syslog outputs against a real rsyslogd on loopback: hostile names,
//! receiver restarts mid-stream, and a SIGKILL of the sender.
//!
//! The sender is `dw-push`, which drives the real `dockwatch::outbox`
//! exactly as the daemon does. Run as root: `cargo build -p monitor -p
//! dockwatch-tests --bins && cargo test -p dockwatch-tests --test sink_rsyslog`.

use std::collections::HashMap;
use std::time::Duration;

use dockwatch_tests::machine_lock;
use dockwatch_tests::rsyslog::{
    alert_of, assert_refused_without_client_certificate, hostile_paths, seq_of, Push, Rsyslog,
};
use serde_json::Value;

/// Records of one rsyslog input (`imtcp`, `imudp`, `imuxsock`).
fn from_input<'a>(records: &'a [Value], input: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["input"] == input).collect()
}

/// Checks at-least-once, in order: every number in `0..n` arrives, first
/// arrivals ascend, and a number repeats only by a resend of a recent run.
/// Returns how many records were duplicates.
fn check_sequence(seqs: &[u64], n: u64, what: &str) -> usize {
    let mut seen = HashMap::new();
    let mut next_new = 0;
    for &s in seqs {
        *seen.entry(s).or_insert(0) += 1;
        if seen[&s] == 1 {
            assert_eq!(
                s, next_new,
                "{what}: {s} arrived first when {next_new} was due"
            );
            next_new += 1;
        }
    }
    assert_eq!(next_new, n, "{what}: only {next_new} of {n} alerts arrived");
    seqs.len() - n as usize
}

#[test]
fn hostile_names_give_one_well_formed_record_each() {
    let _lock = machine_lock();
    let rsyslog = Rsyslog::start();
    let state = tempfile::tempdir().unwrap();
    let urls = [
        rsyslog.tcp_url(),
        format!("{}?framing=newline", rsyslog.tcp_url()),
        rsyslog.udp_url(),
        rsyslog.unix_url(),
    ];
    let push = Push::start(state.path(), &urls, &["--hostile"]);
    push.expect("delivered", Duration::from_secs(30));
    let pid = push.child.id().to_string();
    push.finish();

    let paths = hostile_paths();
    // TCP twice (two framings), UDP, unix.
    let want = paths.len() * 4;
    rsyslog.wait_for(Duration::from_secs(10), |r| r.len() >= want);
    std::thread::sleep(Duration::from_millis(300));
    let records = rsyslog.records();
    assert_eq!(
        records.len(),
        want,
        "one record per name and output: {records:#?}"
    );
    for input in ["imtcp", "imudp", "imuxsock"] {
        let got = from_input(&records, input);
        let per_output = if input == "imtcp" { 2 } else { 1 };
        assert_eq!(got.len(), paths.len() * per_output, "{input}");
        for path in &paths {
            let expected = expected_json_path(path);
            let matching: Vec<&&Value> = got
                .iter()
                .filter(|r| alert_of(r)["file"]["path"] == expected.as_str())
                .collect();
            assert_eq!(
                matching.len(),
                per_output,
                "{input}: records of {expected:?}"
            );
            for record in matching {
                assert_eq!(record["app"], "dockwatch", "{input}: {record}");
                assert_eq!(record["procid"], pid.as_str(), "{input}: {record}");
                assert_eq!(alert_of(record)["rule"]["id"], "docker-config-write");
                if input != "imuxsock" {
                    // RFC 5424: MSGID and STRUCTURED-DATA as rsyslog parsed them.
                    assert_eq!(record["msgid"], "docker-config-write", "{record}");
                    let sd = record["sd"].as_str().unwrap();
                    assert!(
                        sd.starts_with("[dockwatch@32473 rule=\"docker-config-write\""),
                        "{sd}"
                    );
                    assert!(sd.ends_with("\"]"), "SD must close once, at its end: {sd}");
                    assert_eq!(sd_param(sd, "path"), sd_expected(path), "{sd}");
                }
            }
        }
    }
}

fn dgram_qlen() -> usize {
    std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(512)
}

/// What serde_json decodes from dockwatch's escaping of `path`.
fn expected_json_path(path: &[u8]) -> String {
    let mut out = String::new();
    for chunk in path.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The SD-PARAM value as a receiver unescapes it (`\"`, `\\`, `\]`).
fn sd_param(sd: &str, name: &str) -> String {
    let start = sd.find(&format!(" {name}=\"")).expect("param present") + name.len() + 3;
    let mut out = String::new();
    let mut chars = sd[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let n = chars.next().unwrap();
                if !matches!(n, '"' | '\\' | ']') {
                    out.push('\\');
                }
                out.push(n);
            }
            '"' => return out,
            c => out.push(c),
        }
    }
    panic!("unterminated SD-PARAM in {sd}")
}

/// The SD value: the JSON-escaped form of the first 512 bytes, as text.
fn sd_expected(path: &[u8]) -> String {
    let cut = &path[..path.len().min(512)];
    let json = serde_json::to_string(&expected_json_path(cut)).unwrap();
    let inner = &json[1..json.len() - 1];
    // Receivers unescape only \" \\ \]: the JSON escapes of control
    // characters stay visible.
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let n = chars.next().unwrap();
            match n {
                '"' | '\\' => out.push(n),
                _ => {
                    out.push('\\');
                    out.push(n);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

const FLOOD: u64 = 10_000;

#[test]
fn ten_thousand_alerts_survive_three_rsyslog_restarts() {
    let _lock = machine_lock();
    let mut rsyslog = Rsyslog::start();
    let state = tempfile::tempdir().unwrap();
    let urls = [rsyslog.tcp_url(), rsyslog.unix_url()];
    let push = Push::start(
        state.path(),
        &urls,
        &[
            "--count",
            &FLOOD.to_string(),
            "--rate",
            "2000",
            "--wait",
            "60",
        ],
    );
    // Restart while alerts flow: after ~1000, ~3500 and ~6000 accepted;
    // the last time by SIGKILL, as the OOM killer would.
    for at in [1_000, 3_500, 6_000] {
        push.expect(&format!("accepted {at}"), Duration::from_secs(30));
        if at == 6_000 {
            rsyslog.kill();
        } else {
            rsyslog.stop();
        }
        std::thread::sleep(Duration::from_millis(500));
        rsyslog.restart();
    }
    push.expect("delivered", Duration::from_secs(90));
    push.finish();
    let want = |r: &[Value]| {
        from_input(r, "imtcp").len() as u64 >= FLOOD
            && from_input(r, "imuxsock").len() as u64 >= FLOOD
    };
    rsyslog.wait_for(Duration::from_secs(10), want);
    rsyslog.stop();
    let records = rsyslog.records();
    for input in ["imtcp", "imuxsock"] {
        let seqs: Vec<u64> = from_input(&records, input)
            .into_iter()
            .map(seq_of)
            .collect();
        let duplicates = check_sequence(&seqs, FLOOD, input);
        eprintln!("{input}: {} records, {duplicates} duplicates", seqs.len());
        // Resends are bounded by the outbox's window per restart: 256 KiB
        // plus unacknowledged bytes on TCP (~400 alerts of ~650 bytes),
        // net.unix.max_dgram_qlen datagrams on the unix socket.
        let bound = if input == "imtcp" {
            3 * 1_500
        } else {
            3 * 2 * dgram_qlen()
        };
        assert!(
            duplicates <= bound,
            "{input}: {duplicates} duplicates, more than {bound}"
        );
    }
}

#[test]
fn sigkill_of_the_sender_then_restart_loses_nothing() {
    let _lock = machine_lock();
    let mut rsyslog = Rsyslog::start();
    let state = tempfile::tempdir().unwrap();
    let urls = [rsyslog.tcp_url(), rsyslog.unix_url()];
    let first = Push::start(
        state.path(),
        &urls,
        &["--count", "3000", "--rate", "3000", "--hold"],
    );
    // The receiver goes away mid-stream: the rest is only in the spool when
    // the sender dies.
    first.expect("accepted 1000", Duration::from_secs(30));
    rsyslog.stop();
    first.expect("sent", Duration::from_secs(30));
    drop(first); // SIGKILL
    rsyslog.restart();
    let second = Push::start(state.path(), &urls, &["--from", "3000", "--count", "100"]);
    second.expect("delivered", Duration::from_secs(60));
    second.finish();
    rsyslog.wait_for(Duration::from_secs(10), |r| {
        from_input(r, "imtcp").len() >= 3100 && from_input(r, "imuxsock").len() >= 3100
    });
    rsyslog.stop();
    let records = rsyslog.records();
    for input in ["imtcp", "imuxsock"] {
        let seqs: Vec<u64> = from_input(&records, input)
            .into_iter()
            .map(seq_of)
            .collect();
        let duplicates = check_sequence(&seqs, 3100, input);
        eprintln!("{input}: {} records, {duplicates} duplicates", seqs.len());
    }
}

#[test]
fn a_full_spool_drops_new_alerts_and_reports_the_count() {
    let _lock = machine_lock();
    let mut rsyslog = Rsyslog::start();
    rsyslog.stop();
    let state = tempfile::tempdir().unwrap();
    let urls = [rsyslog.tcp_url()];
    // Room for about 150 alerts of ~650 bytes while the receiver is down.
    let push = Push::start(
        state.path(),
        &urls,
        &[
            "--count",
            "1000",
            "--spool-max-bytes",
            "100000",
            "--wait",
            "60",
        ],
    );
    push.expect("sent", Duration::from_secs(30));
    rsyslog.restart();
    push.expect("delivered", Duration::from_secs(60));
    push.finish();
    let records = rsyslog.wait_for(Duration::from_secs(10), |r| {
        r.iter()
            .any(|r| alert_of(r)["event"]["action"] == "alerts_dropped")
    });
    let (report, kept): (Vec<&Value>, Vec<&Value>) = records
        .iter()
        .partition(|r| alert_of(r)["event"]["action"] == "alerts_dropped");
    assert_eq!(report.len(), 1, "one drop report: {report:#?}");
    let seqs: Vec<u64> = kept.iter().map(|r| seq_of(r)).collect();
    let kept_count = seqs.len() as u64;
    assert!((100..200).contains(&kept_count), "kept {kept_count}");
    check_sequence(&seqs, kept_count, "imtcp");
    let dropped = alert_of(report[0]);
    assert_eq!(dropped["dockwatch"]["dropped"]["count"], 1000 - kept_count);
    assert_eq!(dropped["dockwatch"]["dropped"]["sink"], rsyslog.tcp_url());
    assert_eq!(report[0]["msgid"], "dockwatch-alerts-dropped");
}

#[test]
fn tls_with_client_certificate_survives_a_restart() {
    let _lock = machine_lock();
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = dockwatch_tests::rsyslog::TlsFiles::generate(certs_dir.path());
    let mut rsyslog = Rsyslog::start_tls(certs.clone());
    let state = tempfile::tempdir().unwrap();
    let tls_args = [
        "--tls-ca",
        certs.ca.to_str().unwrap(),
        "--tls-cert",
        certs.client_cert.to_str().unwrap(),
        "--tls-key",
        certs.client_key.to_str().unwrap(),
    ];
    let mut args = vec!["--count", "3000", "--rate", "2000", "--wait", "60"];
    args.extend(tls_args);
    let push = Push::start(state.path(), &[rsyslog.tls_url()], &args);
    push.expect("accepted 1000", Duration::from_secs(30));
    rsyslog.stop();
    std::thread::sleep(Duration::from_millis(500));
    rsyslog.restart();
    push.expect("delivered", Duration::from_secs(60));
    push.finish();
    rsyslog.wait_for(Duration::from_secs(10), |r| {
        from_input(r, "imtcp").len() >= 3000
    });
    rsyslog.stop();
    let records = rsyslog.records();
    let seqs: Vec<u64> = from_input(&records, "imtcp")
        .into_iter()
        .map(seq_of)
        .collect();
    let duplicates = check_sequence(&seqs, 3000, "tls");
    eprintln!("tls: {} records, {duplicates} duplicates", seqs.len());
    assert_eq!(records[0]["msgid"], "docker-config-write");

    // The receiver demands a client certificate: without one nothing gets
    // through, which shows the one above was presented.
    assert_refused_without_client_certificate(&certs, Rsyslog::tls_url, "TLS");
}
