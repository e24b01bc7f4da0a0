//! RELP outputs against a real rsyslogd with `imrelp` on loopback: every
//! alert arrives exactly once while the receiver restarts, plain and over
//! TLS with a client certificate; bad RELP URLs are usage errors.
//!
//! The sender is `dw-push`, which drives the real `dockwatch::outbox` as the
//! daemon does (as in `sink_rsyslog`). Receiver restarts are SIGTERM only:
//! imrelp acknowledges a record once it is in rsyslog's in-memory queue, so
//! a SIGKILL of rsyslogd may lose acknowledged records (outbox/delivery.rs
//! documents it); exactly-once is promised for orderly restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use dockwatch_tests::rsyslog::{
    alert_of, assert_refused_without_client_certificate, seq_of, Push, Rsyslog, TlsFiles,
};
use dockwatch_tests::{machine_lock, run_cli};
use serde_json::Value;

/// Asserts that the imrelp records hold each of `0..n` exactly once and
/// look like dockwatch's RFC 5424 records.
fn assert_exactly_once(records: &[Value], n: u64, what: &str) {
    let relp: Vec<&Value> = records.iter().filter(|r| r["input"] == "imrelp").collect();
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for record in &relp {
        *counts.entry(seq_of(record)).or_default() += 1;
    }
    let missing: Vec<u64> = (0..n).filter(|s| !counts.contains_key(s)).collect();
    let doubled: Vec<(&u64, &usize)> = counts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(missing.is_empty(), "{what}: never arrived: {missing:?}");
    assert!(
        doubled.is_empty(),
        "{what}: arrived more than once: {doubled:?}"
    );
    assert_eq!(relp.len() as u64, n, "{what}: record count");
    for record in relp {
        assert_eq!(record["app"], "dockwatch", "{record}");
        assert_eq!(record["hostname"], "testhost", "{record}");
        assert_eq!(record["msgid"], "docker-config-write", "{record}");
        let sd = record["sd"].as_str().unwrap();
        assert!(
            sd.starts_with("[dockwatch@32473 rule=\"docker-config-write\""),
            "{sd}"
        );
        assert_eq!(alert_of(record)["rule"]["id"], "docker-config-write");
    }
}

#[test]
fn every_alert_arrives_exactly_once_across_three_receiver_restarts() {
    let _lock = machine_lock();
    let mut rsyslog = Rsyslog::start();
    let state = tempfile::tempdir().unwrap();
    let push = Push::start(
        state.path(),
        &[rsyslog.relp_url()],
        &["--count", "800", "--rate", "400", "--wait", "60"],
    );
    // dw-push reports every 100 alerts accepted.
    for at in [100, 300, 500] {
        push.expect(&format!("accepted {at}"), Duration::from_secs(30));
        rsyslog.stop();
        // Alerts keep coming while the receiver is down; they wait in the
        // spool, beside the ones sent and not yet answered.
        push.expect(&format!("accepted {}", at + 100), Duration::from_secs(30));
        rsyslog.restart();
    }
    // `delivered`: every record answered `200 OK` by imrelp.
    push.expect("delivered", Duration::from_secs(60));
    push.finish();
    // SIGTERM drains rsyslog's queue and closes the output file.
    rsyslog.stop();
    assert_exactly_once(&rsyslog.records(), 800, "relp");
}

#[test]
fn relp_over_tls_with_a_client_certificate_survives_a_restart() {
    let _lock = machine_lock();
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = TlsFiles::generate(certs_dir.path());
    let mut rsyslog = Rsyslog::start_tls(certs.clone());
    let state = tempfile::tempdir().unwrap();
    let mut args = vec!["--count", "400", "--rate", "400", "--wait", "60"];
    args.extend([
        "--tls-ca",
        certs.ca.to_str().unwrap(),
        "--tls-cert",
        certs.client_cert.to_str().unwrap(),
        "--tls-key",
        certs.client_key.to_str().unwrap(),
    ]);
    let push = Push::start(state.path(), &[rsyslog.relp_tls_url()], &args);
    push.expect("accepted 100", Duration::from_secs(30));
    rsyslog.stop();
    push.expect("accepted 200", Duration::from_secs(30));
    rsyslog.restart();
    push.expect("delivered", Duration::from_secs(60));
    push.finish();
    rsyslog.stop();
    assert_exactly_once(&rsyslog.records(), 400, "relp+tls");

    // imrelp demands a certificate signed by the CA: without one nothing
    // is delivered, which shows the one above was presented and checked.
    assert_refused_without_client_certificate(&certs, Rsyslog::relp_tls_url, "RELP/TLS");
}

#[test]
fn bad_relp_urls_exit_2_naming_the_url() {
    for (url, why) in [
        ("syslog+relp://host:notaport", "expected HOST or HOST:PORT"),
        ("syslog+relp://", "expected HOST or HOST:PORT"),
        (
            "syslog+relp://127.0.0.1?framing=newline",
            "syslog+relp takes no option \"framing\"",
        ),
        ("syslog+relp+tls://bad_name!", "not a valid TLS server name"),
        ("syslog+relps://127.0.0.1", "unknown scheme"),
    ] {
        let (code, _, stderr) = run_cli(["replay", "--output", url, "/dev/null"]);
        assert_eq!(code, 2, "{url}: {stderr}");
        assert!(stderr.contains(url), "{url}: names the URL: {stderr}");
        assert!(stderr.contains(why), "{url}: says why ({why}): {stderr}");
        assert!(
            stderr.contains("syslog+relp://HOST[:PORT]"),
            "{url}: lists the accepted forms: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
