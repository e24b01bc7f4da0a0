//! The central tier of the README's "Fleet collection": rsyslogd runs the
//! shipped `monitor/packaging/fleet/rsyslog-central.conf` (only its
//! certificate paths, ports and log directory moved into a temporary
//! directory), two dockwatch instances with different `host_name`s send to
//! it, one over RELP with TLS and one over syslog with TLS, and each host's
//! file holds exactly that host's alerts, as the README's ECS table
//! describes them.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use dockwatch_tests::rsyslog::{spawn_rsyslogd, TlsFiles};
use dockwatch_tests::{machine_lock, run_cli, shared_fixture, shipped_rules};
use serde_json::Value;

const CENTRAL_CONF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../monitor/packaging/fleet/rsyslog-central.conf"
);

/// rsyslogd running the central configuration; SIGTERM on drop.
struct Collector {
    child: Option<Child>,
    dir: PathBuf,
    relp_port: u16,
    tls_port: u16,
}

impl Collector {
    fn start(dir: &Path, certs: &TlsFiles) -> Collector {
        let relp_port = free_port();
        let tls_port = free_port();
        let mut conf = std::fs::read_to_string(CENTRAL_CONF).unwrap();
        let fleet = dir.join("fleet");
        for (from, to) in [
            ("/etc/rsyslog-tls/ca.pem", certs.ca.display().to_string()),
            (
                "/etc/rsyslog-tls/server.pem",
                certs.server_cert.display().to_string(),
            ),
            (
                "/etc/rsyslog-tls/server.key",
                certs.server_key.display().to_string(),
            ),
            ("/var/log/fleet/", format!("{}/", fleet.display())),
            ("port=\"2514\"", format!("port=\"{relp_port}\"")),
            ("port=\"6514\"", format!("port=\"{tls_port}\"")),
        ] {
            assert!(conf.contains(from), "{CENTRAL_CONF} no longer has {from}");
            conf = conf.replace(from, &to);
        }
        // A private instance: its own work directory, not /var/spool/rsyslog.
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let conf = format!("global(workDirectory=\"{}/work\")\n{conf}", dir.display());
        std::fs::write(dir.join("central.conf"), conf).unwrap();
        let child = spawn_rsyslogd(&dir.join("central.conf"), &dir.join("rsyslogd.pid"));
        let mut collector = Collector {
            child: Some(child),
            dir: dir.to_path_buf(),
            relp_port,
            tls_port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while [relp_port, tls_port]
            .iter()
            .any(|&p| TcpStream::connect(("127.0.0.1", p)).is_err())
        {
            if let Some(status) = collector.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rsyslogd refused the central configuration ({status})");
            }
            assert!(Instant::now() < deadline, "rsyslogd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        collector
    }

    fn host_file(&self, host: &str) -> PathBuf {
        self.dir.join("fleet").join(host).join("dockwatch.jsonl")
    }

    fn alerts(&self, host: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.host_file(host)).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{host}: {l:?}: {e}")))
            .collect()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A host's config.toml: its name, its own state directory, the fleet TLS
/// identity.
fn host_config(dir: &Path, host: &str, certs: &TlsFiles) -> PathBuf {
    let path = dir.join(format!("{host}.toml"));
    std::fs::write(
        &path,
        format!(
            "host_name = \"{host}\"\nstate_dir = \"{}\"\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join(format!("state-{host}")).display(),
            certs.ca.display(),
            certs.client_cert.display(),
            certs.client_key.display(),
        ),
    )
    .unwrap();
    path
}

/// `dockwatch replay` of the shared audit capture with the host's config
/// into `output`; returns stdout.
fn replay(config: &Path, output: &str) -> String {
    let log = shared_fixture("audit/enriched-docker-watches.log");
    let (code, stdout, stderr) = run_cli([
        "replay".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--rules".as_ref(),
        shipped_rules().as_os_str(),
        "--output".as_ref(),
        output.as_ref(),
        log.as_os_str(),
    ]);
    assert_eq!(code, 0, "replay into {output}: {stderr}");
    stdout
}

#[test]
fn per_host_files_hold_each_hosts_alerts_over_relp_and_tls() {
    let _lock = machine_lock();
    let dir = tempfile::tempdir().unwrap();
    let certs = TlsFiles::generate(dir.path());
    let mut collector = Collector::start(dir.path(), &certs);
    let hosts = [
        (
            "web-1",
            format!("syslog+relp+tls://127.0.0.1:{}", collector.relp_port),
        ),
        (
            "web-2",
            format!("syslog+tls://127.0.0.1:{}", collector.tls_port),
        ),
    ];
    let mut expected = Vec::new();
    for (host, url) in &hosts {
        let config = host_config(dir.path(), host, &certs);
        replay(&config, url);
        // What the same replay prints locally is what the collector must hold.
        let local: Vec<Value> = replay(&config, "stdout")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(local.len() > 10, "{host}: the capture yields alerts");
        expected.push(local);
    }
    // Syslog over TLS has no acknowledgement: wait until rsyslogd wrote
    // the records, then stop it so the files are complete.
    let deadline = Instant::now() + Duration::from_secs(20);
    while hosts
        .iter()
        .zip(&expected)
        .any(|((host, _), want)| collector.alerts(host).len() < want.len())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    collector.stop();

    for ((host, url), want) in hosts.iter().zip(&expected) {
        let got = collector.alerts(host);
        assert_eq!(&got, want, "{host} ({url}): the collector's file");
        for alert in &got {
            // The README's "Alert fields" table, as a SIEM reads them.
            assert_eq!(alert["host"]["name"], *host, "{alert}");
            for path in [
                "/@timestamp",
                "/event/action",
                "/event/outcome",
                "/event/id",
                "/rule/id",
                "/rule/name",
                "/rule/severity",
            ] {
                assert!(alert.pointer(path).is_some(), "{host}: no {path}: {alert}");
            }
            assert_eq!(alert["event"]["provider"], serde_json::json!(["audit"]));
            assert!(alert["rule"]["tags"].is_array(), "{alert}");
            // A change to a file names the file and who made it; reports
            // about the sources themselves (records lost) have neither.
            if alert["file"].is_object() {
                for path in [
                    "/file/path",
                    "/process/pid",
                    "/process/name",
                    "/process/executable",
                    "/process/command_line",
                    "/process/parent/pid",
                    "/user/id",
                    "/user/effective/id",
                    "/tags",
                ] {
                    assert!(alert.pointer(path).is_some(), "{host}: no {path}: {alert}");
                }
            }
        }
        assert!(
            got.iter()
                .any(|a| a["file"]["path"] == "/etc/docker/daemon.json"),
            "{host}: the daemon.json writes"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("fleet"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["web-1", "web-2"], "one directory per host");
}
