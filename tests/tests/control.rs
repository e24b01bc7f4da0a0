//! A running daemon asked and changed through its control socket: `dockwatch
//! reload` swaps the rules (and the kernel's watches) with a stream of
//! writes running through it, none lost or doubled; a broken rule file or
//! configuration is refused with file:line:col and an alert while the old
//! rules keep firing; `dockwatch status --json` answers with counters that
//! move, with the audit checkpoint when audit runs; the Prometheus
//! endpoint's text follows the text-format rules; a heartbeat alert carries
//! the counters; SIGHUP reloads like `dockwatch reload`. Real daemon, real
//! eBPF probes (the syscall hooks: one event per open for write, so writes
//! can be counted exactly), real auditd. Root and the machine lock.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dockwatch_tests::{alerts_for, machine_lock, run_cli, wait_for_alerts, Monitored};
use serde_json::Value;

/// A rule watching `path` for opens for write.
fn rule(id: &str, path: &Path) -> String {
    format!(
        "  - id: {id}\n    name: {id}\n    severity: warning\n    paths: [{}]\n    actions: [open_write]\n",
        path.display()
    )
}

fn rules(list: &[String]) -> String {
    format!("rules:\n{}", list.concat())
}

/// Files to write to, in a directory of their own (removed on drop).
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(names: &[&str]) -> Files {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        // Canonical: the alerts name the path as the kernel resolves it.
        std::fs::canonicalize(self.dir.path()).unwrap().join(name)
    }
}

/// One open for write: one `open_write` event with the syscall hooks.
fn touch(path: &Path) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(b"x\n").unwrap();
}

fn config(socket: &Path, extra: &str) -> String {
    format!(
        "[sources.audit]\nmode = \"off\"\n[posture]\nenabled = false\n\
         [pipeline]\nflood_window_ms = 0\n\
         [sources.ebpf]\nhooks = \"syscalls\"\nring_buffer_kib = 16384\n\
         [control]\nsocket = {:?}\n{extra}",
        socket.display()
    )
}

/// `dockwatch ARGS --config <the daemon's>`.
fn ask(m: &Monitored, args: &[&str]) -> (i32, String, String) {
    let config = m.dir().join("config.toml");
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    all.push("--config".as_ref());
    all.push(config.as_os_str());
    run_cli(all)
}

fn count(alerts: &[Value], path: &Path) -> usize {
    alerts_for(alerts, path.to_str().unwrap()).len()
}

fn socket_in(files: &Files) -> PathBuf {
    files.dir.path().join("control.sock")
}

#[test]
fn a_reload_adds_and_removes_rules_at_once_and_every_write_alerts_exactly_once() {
    let _lock = machine_lock();
    let files = Files::new(&["kept", "added", "removed"]);
    let (kept, added, removed) = (
        files.path("kept"),
        files.path("added"),
        files.path("removed"),
    );
    let mut m = Monitored::start(
        &rules(&[rule("kept", &kept), rule("removed", &removed)]),
        &config(&socket_in(&files), ""),
    );

    // A stream of writes to a file watched before and after the reload,
    // paced so the ring buffer never fills (a loss would be reported, but
    // this test counts exactly).
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = std::thread::spawn({
        let (stop, written, kept) = (stop.clone(), written.clone(), kept.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                touch(&kept);
                written.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(300));
            }
        }
    });
    let wait_for_writes = |n: u64| {
        let target = written.load(Ordering::Relaxed) + n;
        while written.load(Ordering::Relaxed) < target {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for_writes(200);
    touch(&removed);
    touch(&added);
    std::fs::write(
        m.dir().join("rules/rules.yaml"),
        rules(&[rule("kept", &kept), rule("added", &added)]),
    )
    .unwrap();
    let (code, stdout, stderr) = ask(&m, &["reload"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("reloaded: 2 rules"), "{stdout}");
    // The new set holds from the moment `reload` returns.
    touch(&removed);
    touch(&added);
    wait_for_writes(200);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = written.load(Ordering::Relaxed);
    // Events arrive in the order of the calls: once this second alert for
    // `added` is out, every write before it has been judged.
    touch(&added);
    let alerts = wait_for_alerts(&m.alerts, Duration::from_secs(20), |a| {
        count(a, &added) >= 2
    });
    m.daemon
        .wait_for_log("reload applied", Duration::from_secs(5));
    assert_eq!(count(&alerts, &added), 2, "{alerts:#?}");
    assert_eq!(
        count(&alerts, &removed),
        1,
        "only the write before the reload alerts: {alerts:#?}"
    );
    let kept_alerts = alerts_for(&alerts, kept.to_str().unwrap());
    assert_eq!(
        kept_alerts.len() as u64,
        total,
        "every write to the kept file alerts exactly once through the reload"
    );
    assert!(kept_alerts.iter().all(|a| a["rule"]["id"] == "kept"));
    assert!(!m
        .daemon
        .log()
        .iter()
        .any(|l| l.contains("ring buffer full")));
}

#[test]
fn a_broken_rule_file_or_config_is_refused_and_the_old_rules_keep_firing() {
    let _lock = machine_lock();
    let files = Files::new(&["kept"]);
    let kept = files.path("kept");
    let mut m = Monitored::start(
        &rules(&[rule("kept", &kept)]),
        &config(&socket_in(&files), ""),
    );
    touch(&kept);
    wait_for_alerts(&m.alerts, Duration::from_secs(10), |a| count(a, &kept) == 1);

    let bad = m.dir().join("rules/zz-broken.yaml");
    std::fs::write(
        &bad,
        "rules:\n  - id: x\n    name: x\n    severity: bogus\n    paths: [/x]\n    actions: [open_write]\n",
    )
    .unwrap();
    let (code, stdout, stderr) = ask(&m, &["reload"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let location = format!("{}:4:15: unknown severity `bogus`", bad.display());
    assert!(
        stderr.contains("reload refused") && stderr.contains(&location),
        "{stderr}"
    );
    m.daemon.wait_for_log(&location, Duration::from_secs(5));
    std::fs::remove_file(&bad).unwrap();

    // A configuration mistake is refused the same way.
    let config_file = m.dir().join("config.toml");
    let good_config = std::fs::read_to_string(&config_file).unwrap();
    std::fs::write(&config_file, format!("{good_config}bogus = 1\n")).unwrap();
    let (code, _, stderr) = ask(
        &m,
        &["reload", "--socket", socket_in(&files).to_str().unwrap()],
    );
    std::fs::write(&config_file, &good_config).unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("config.toml:"), "{stderr}");

    // The old rule still fires.
    touch(&kept);
    let alerts = wait_for_alerts(&m.alerts, Duration::from_secs(10), |a| count(a, &kept) == 2);
    assert_eq!(count(&alerts, &kept), 2, "{alerts:#?}");
    let refused: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["id"] == "dockwatch-reload-refused")
        .collect();
    assert_eq!(refused.len(), 2, "{alerts:#?}");
    assert_eq!(refused[0]["event"]["action"], "reload_refused");
    assert!(
        refused[0]["dockwatch"]["reload"]["refused"]
            .as_str()
            .unwrap()
            .contains(&location),
        "{:#}",
        refused[0]
    );
    assert_eq!(refused[0]["rule"]["severity"], "error");
}

fn status(m: &Monitored) -> Value {
    let (code, stdout, stderr) = ask(m, &["status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn status_answers_root_only_and_its_counters_move_as_events_arrive() {
    let _lock = machine_lock();
    let files = Files::new(&["kept"]);
    let kept = files.path("kept");
    let socket = socket_in(&files);
    let m = Monitored::start(&rules(&[rule("kept", &kept)]), &config(&socket, ""));

    let before = status(&m);
    assert_eq!(before["pid"], m.daemon.pid());
    assert_eq!(before["rules"], 1);
    assert_eq!(before["sources"][0]["name"], "ebpf");
    assert!(
        before["sources"][0]["hooks"]
            .as_str()
            .unwrap()
            .contains("syscall tracepoints"),
        "{before:#}"
    );
    assert!(before["alerts"].get("kept").is_none(), "{before:#}");
    for _ in 0..3 {
        touch(&kept);
    }
    wait_for_alerts(&m.alerts, Duration::from_secs(10), |a| count(a, &kept) == 3);
    let after = status(&m);
    assert_eq!(after["alerts"]["kept"], 3, "{after:#}");
    let events = |s: &Value| s["sources"][0]["events"].as_u64().unwrap();
    assert!(
        events(&after) >= events(&before) + 3,
        "{before:#}\n{after:#}"
    );
    assert!(after["uptime_secs"].as_f64() > before["uptime_secs"].as_f64());
    let file_output = format!("file://{}", m.alerts.display());
    assert_eq!(after["outputs"][0]["output"], file_output.as_str());

    let (code, table, _) = ask(&m, &["status"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("kept") && table.contains("SOURCE"),
        "{table}"
    );

    // Not root: the socket's mode keeps others out...
    let nobody = |extra: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(dockwatch_tests::dockwatch_bin())
            .args(["status", "--socket", socket.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    std::fs::set_permissions(
        files.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (code, stderr) = nobody(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    // ...and with the mode loosened, the peer's uid still does.
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let (code, stderr) = nobody(&["--json"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("root only (peer uid 65534)"), "{stderr}");
    assert!(m
        .daemon
        .log()
        .iter()
        .any(|l| l.contains("refused a peer that is not root")));

    // No daemon: a clear message and exit code 1.
    drop(m);
    let (code, _, stderr) = run_cli(["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no dockwatch is running: cannot connect to {}",
            socket.display()
        )),
        "{stderr}"
    );
}

/// GET /metrics over the unix socket; the body of a 200 answer.
fn scrape(socket: &Path) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    body.to_string()
}

/// The text-format rules, strictly: every line a HELP, a TYPE before its
/// samples, a sample of a declared family, or the final `# EOF`.
fn check_text_format(text: &str) {
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut families: Vec<(String, String)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(valid_name(name) && !help.is_empty(), "{line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(valid_name(name), "{line}");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            families.push((name.to_string(), kind.to_string()));
        } else {
            let (series, value) = line.rsplit_once(' ').expect(line);
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, Some(labels.strip_suffix('}').expect(line))),
                None => (series, None),
            };
            for pair in labels.into_iter().flat_map(|l| l.split(',')) {
                let (key, val) = pair.split_once('=').expect(line);
                assert!(valid_name(key), "{line}");
                assert!(
                    val.starts_with('"') && val.ends_with('"') && val.len() >= 2,
                    "{line}"
                );
            }
            let (family, kind) = families.last().expect("a TYPE before the samples");
            let want = if kind == "counter" {
                format!("{family}_total")
            } else {
                family.clone()
            };
            assert_eq!(name, want, "a sample of the family just declared: {line}");
        }
    }
}

#[test]
fn the_metrics_endpoint_speaks_the_prometheus_text_format() {
    let _lock = machine_lock();
    let files = Files::new(&["kept"]);
    let kept = files.path("kept");
    let metrics = files.dir.path().join("metrics.sock");
    let m = Monitored::start(
        &rules(&[rule("kept", &kept)]),
        &config(
            &socket_in(&files),
            &format!("metrics = \"unix://{}\"\n", metrics.display()),
        ),
    );
    touch(&kept);
    wait_for_alerts(&m.alerts, Duration::from_secs(10), |a| count(a, &kept) == 1);
    let text = scrape(&metrics);
    check_text_format(&text);
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, label: (&str, &str)| -> f64 {
        let sample = parsed
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .unwrap_or_else(|| panic!("no {name}{{{}={:?}}} in\n{text}", label.0, label.1));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        value("dockwatch_alerts_total", ("rule", "kept")),
        1.0,
        "{text}"
    );
    assert!(
        value("dockwatch_events_total", ("source", "ebpf")) >= 1.0,
        "{text}"
    );
    assert_eq!(value("dockwatch_reloads_total", ("result", "refused")), 0.0);
    let before = value("dockwatch_events_total", ("source", "ebpf"));
    touch(&kept);
    wait_for_alerts(&m.alerts, Duration::from_secs(10), |a| count(a, &kept) == 2);
    let text = scrape(&metrics);
    check_text_format(&text);
    assert!(
        text.contains("dockwatch_alerts_total{rule=\"kept\"} 2\n"),
        "{text}"
    );
    let events: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("dockwatch_events_total{source=\"ebpf\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(events > before, "{text}");
}

#[test]
fn a_heartbeat_alert_says_the_daemon_runs_and_carries_its_counters() {
    let _lock = machine_lock();
    let files = Files::new(&["kept"]);
    let kept = files.path("kept");
    let m = Monitored::start(
        &rules(&[rule("kept", &kept)]),
        &config(&socket_in(&files), "heartbeat_secs = 1\n"),
    );
    touch(&kept);
    let counted = |a: &Value| a["dockwatch"]["heartbeat"]["alerts"]["kept"] == 1;
    let alerts = wait_for_alerts(&m.alerts, Duration::from_secs(10), |a| {
        a.iter().any(counted)
    });
    let beat = alerts
        .iter()
        .find(|a| counted(a))
        .unwrap_or_else(|| panic!("no heartbeat counting the alert: {alerts:#?}"));
    assert_eq!(beat["rule"]["id"], "dockwatch-heartbeat");
    assert_eq!(beat["event"]["action"], "heartbeat");
    assert_eq!(beat["rule"]["severity"], "info");
    let counters = &beat["dockwatch"]["heartbeat"];
    assert_eq!(counters["pid"], m.daemon.pid());
    assert!(
        counters["sources"][0]["events"].as_u64() >= Some(1),
        "{beat:#}"
    );
}

#[test]
fn status_shows_the_audit_source_and_where_its_checkpoint_stands() {
    let _lock = machine_lock();
    let files = Files::new(&["kept"]);
    let kept = files.path("kept");
    let watch = format!("-w {} -p wa -k kept", kept.display());
    let auditd = dockwatch_tests::auditd::Auditd::start("ENRICHED", &[&watch]);
    let checkpoint = files.dir.path().join("audit.checkpoint");
    let m = Monitored::start(
        &rules(&[rule("kept", &kept)]),
        &format!(
            "[posture]\nenabled = false\n[sources.ebpf]\nenabled = false\n\
             [sources.audit]\nlog = {:?}\ncheckpoint = {:?}\n[control]\nsocket = {:?}\n",
            auditd.log_path(),
            checkpoint,
            socket_in(&files)
        ),
    );
    touch(&kept);
    wait_for_alerts(&m.alerts, Duration::from_secs(10), |a| count(a, &kept) == 1);
    // The checkpoint is written shortly after the alert is out.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = status(&m);
        if !s["audit_checkpoint"]["offset"].is_null() || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["sources"][0]["name"], "audit", "{status:#}");
    assert!(
        status["sources"][0]["events"].as_u64() >= Some(1),
        "{status:#}"
    );
    let cp = &status["audit_checkpoint"];
    assert_eq!(cp["path"], checkpoint.to_str().unwrap(), "{status:#}");
    assert_eq!(cp["log"], auditd.log_path().to_str().unwrap(), "{status:#}");
    assert!(cp["offset"].as_u64() > Some(0), "{status:#}");
    drop(m);
}

#[test]
fn sighup_reloads_too_and_changes_that_need_a_restart_are_named() {
    let _lock = machine_lock();
    let files = Files::new(&["kept", "added"]);
    let (kept, added) = (files.path("kept"), files.path("added"));
    let mut m = Monitored::start(
        &rules(&[rule("kept", &kept)]),
        &config(&socket_in(&files), ""),
    );
    let config_file = m.dir().join("config.toml");
    let mut text = std::fs::read_to_string(&config_file).unwrap();
    text.push_str("[outbox]\nshutdown_timeout_ms = 1000\n");
    std::fs::write(&config_file, text).unwrap();
    std::fs::write(
        m.dir().join("rules/rules.yaml"),
        rules(&[rule("kept", &kept), rule("added", &added)]),
    )
    .unwrap();
    m.daemon.signal(libc::SIGHUP);
    m.daemon
        .wait_for_log("reload applied", Duration::from_secs(10));
    assert!(
        m.daemon
            .log()
            .iter()
            .any(|l| l.contains("[outbox] changed in the configuration and needs a restart")),
        "{:#?}",
        m.daemon.log()
    );
    touch(&added);
    let alerts = wait_for_alerts(&m.alerts, Duration::from_secs(10), |a| {
        count(a, &added) == 1
    });
    assert_eq!(count(&alerts, &added), 1, "{alerts:#?}");
    assert_eq!(status(&m)["reloads"]["applied"], 1);

    let (code, stdout, stderr) = ask(&m, &["reload"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("not applied: [outbox] changed and needs a restart"),
        "{stdout}"
    );
}

#[test]
fn a_metrics_address_off_this_host_is_refused_at_start_with_its_location() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "[control]\nmetrics = \"0.0.0.0:9187\"\n").unwrap();
    let (code, _, stderr) = run_cli(["run".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2:11: ", config.display())) && stderr.contains("loopback"),
        "{stderr}"
    );
}
