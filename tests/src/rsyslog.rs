//! A private, real `rsyslogd` for the sink tests: its own configuration,
//! pid file, work directory and loopback listeners (TCP, UDP, RELP and a
//! unix datagram socket in its own directory, never /dev/log; RELP over TLS
//! too when started with TLS files), writing every
//! dockwatch record it parses to a JSON-lines file of the fields rsyslog
//! saw (app-name, procid, msgid, structured-data, msg, input).
//!
//! Callers hold [`crate::machine_lock`]: rsyslogd is machine-wide state.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Rsyslog {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Plain TCP, or TLS when started with [`Rsyslog::start_tls`].
    pub tcp_port: u16,
    pub udp_port: u16,
    /// Plain RELP (imrelp).
    pub relp_port: u16,
    /// RELP over TLS, demanding a client certificate; listening only when
    /// started with [`Rsyslog::start_tls`].
    pub relp_tls_port: u16,
    tls: Option<TlsFiles>,
    /// rsyslogd was SIGKILLed: its output file may hold one torn line.
    killed: bool,
}

/// PEM files for a TLS listener that demands a client certificate signed
/// by the same CA.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// A fresh CA, a server certificate for 127.0.0.1 and a client
    /// certificate, made with openssl in `dir`.
    pub fn generate(dir: &Path) -> TlsFiles {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=dockwatch test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                &format!("{name}.pem"),
            ]);
        }
        TlsFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

impl Rsyslog {
    /// Writes the configuration and starts rsyslogd; returns once all
    /// listeners accept.
    pub fn start() -> Rsyslog {
        Rsyslog::start_with(None)
    }

    /// Like [`Rsyslog::start`], but the TCP listener speaks TLS (gtls) and
    /// requires a client certificate signed by `tls.ca`.
    pub fn start_tls(tls: TlsFiles) -> Rsyslog {
        Rsyslog::start_with(Some(tls))
    }

    fn start_with(tls: Option<TlsFiles>) -> Rsyslog {
        let dir = tempfile::Builder::new()
            .prefix("dw-rsyslog")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("work")).unwrap();
        let mut rsyslog = Rsyslog {
            tcp_port: free_tcp_port(),
            udp_port: free_udp_port(),
            relp_port: free_tcp_port(),
            relp_tls_port: free_tcp_port(),
            dir,
            child: None,
            tls,
            killed: false,
        };
        rsyslog.write_config();
        rsyslog.restart();
        rsyslog
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The unix datagram socket it listens on.
    pub fn unix_socket(&self) -> PathBuf {
        self.dir().join("log")
    }

    /// Where the parsed records go.
    pub fn output(&self) -> PathBuf {
        self.dir().join("dockwatch.jsonl")
    }

    pub fn tcp_url(&self) -> String {
        format!("syslog+tcp://127.0.0.1:{}", self.tcp_port)
    }

    pub fn tls_url(&self) -> String {
        format!("syslog+tls://127.0.0.1:{}", self.tcp_port)
    }

    pub fn udp_url(&self) -> String {
        format!("syslog+udp://127.0.0.1:{}", self.udp_port)
    }

    pub fn relp_url(&self) -> String {
        format!("syslog+relp://127.0.0.1:{}", self.relp_port)
    }

    pub fn relp_tls_url(&self) -> String {
        format!("syslog+relp+tls://127.0.0.1:{}", self.relp_tls_port)
    }

    pub fn unix_url(&self) -> String {
        format!("syslog+unix://{}", self.unix_socket().display())
    }

    fn write_config(&self) {
        let d = self.dir().display();
        let (tls_global, imtcp) = match &self.tls {
            None => (String::new(), "module(load=\"imtcp\")".to_string()),
            Some(t) => (
                format!(
                    "global(defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\")\n",
                    t.ca.display(),
                    t.server_cert.display(),
                    t.server_key.display()
                ),
                "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"x509/certvalid\")".to_string(),
            ),
        };
        let relp_tls = match &self.tls {
            None => String::new(),
            Some(t) => format!(
                "input(type=\"imrelp\" port=\"{}\" address=\"127.0.0.1\" tls=\"on\" tls.caCert=\"{}\" tls.myCert=\"{}\" tls.myPrivKey=\"{}\" tls.authMode=\"certvalid\")\n",
                self.relp_tls_port,
                t.ca.display(),
                t.server_cert.display(),
                t.server_key.display()
            ),
        };
        let conf = format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="64k")
{tls_global}module(load="imuxsock" SysSock.Use="off")
{imtcp}
module(load="imudp")
module(load="imrelp")
input(type="imuxsock" Socket="{d}/log")
input(type="imrelp" port="{relp}" address="127.0.0.1")
{relp_tls}
input(type="imtcp" port="{tcp}" address="127.0.0.1")
input(type="imudp" port="{udp}" address="127.0.0.1")
template(name="dw" type="list") {{
  constant(value="{{")
  property(outname="input" name="inputname" format="jsonf") constant(value=",")
  property(outname="pri" name="pri" format="jsonf") constant(value=",")
  property(outname="hostname" name="hostname" format="jsonf") constant(value=",")
  property(outname="app" name="app-name" format="jsonf") constant(value=",")
  property(outname="procid" name="procid" format="jsonf") constant(value=",")
  property(outname="msgid" name="msgid" format="jsonf") constant(value=",")
  property(outname="sd" name="structured-data" format="jsonf") constant(value=",")
  property(outname="msg" name="msg" format="jsonf")
  constant(value="}}\n")
}}
if $app-name == "dockwatch" then {{
  action(type="omfile" file="{d}/dockwatch.jsonl" template="dw")
  stop
}}
action(type="omfile" file="{d}/other.log")
"#,
            tcp = self.tcp_port,
            udp = self.udp_port,
            relp = self.relp_port,
        );
        std::fs::write(self.dir().join("rsyslog.conf"), conf).unwrap();
    }

    /// Starts rsyslogd (again) with the same configuration and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "rsyslogd is already running");
        let dir = self.dir().to_path_buf();
        self.child = Some(spawn_rsyslogd(
            &dir.join("rsyslog.conf"),
            &dir.join("rsyslogd.pid"),
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let relp_tls_up =
                self.tls.is_none() || TcpStream::connect(("127.0.0.1", self.relp_tls_port)).is_ok();
            if self.unix_socket().exists()
                && TcpStream::connect(("127.0.0.1", self.tcp_port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.relp_port)).is_ok()
                && relp_tls_up
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "rsyslogd exited at start ({status}); config in {}",
                    dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, as `systemctl restart rsyslog` would; waits for the exit.
    pub fn stop(&mut self) {
        self.signal_and_wait(libc::SIGTERM);
    }

    /// SIGKILL: rsyslogd loses what it held in memory.
    pub fn kill(&mut self) {
        self.killed = true;
        self.signal_and_wait(libc::SIGKILL);
    }

    fn signal_and_wait(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
            let _ = child.wait();
        }
    }

    /// The records written so far (a partly written last line is ignored).
    /// After a SIGKILL, rsyslogd's half-written last record is followed on
    /// the same line by the first one the restarted rsyslogd wrote: that
    /// record is kept and the torn one, which rsyslogd lost, is not.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.output()).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| {
                serde_json::from_str(l)
                    .or_else(|e| {
                        let torn = self.killed.then(|| l.rfind("{\"input\":\"")).flatten();
                        match torn {
                            Some(at) if at > 0 => serde_json::from_str(&l[at..]),
                            _ => Err(e),
                        }
                    })
                    .unwrap_or_else(|e| panic!("rsyslog wrote {l:?}: {e}"))
            })
            .collect()
    }

    /// Polls until `done(records)` or the timeout; returns the last records.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.records();
            if done(&records) || Instant::now() > deadline {
                return records;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The alert JSON of a record (rsyslog keeps the space before MSG in some
/// formats).
pub fn alert_of(record: &Value) -> Value {
    let msg = record["msg"].as_str().expect("record has msg");
    serde_json::from_str(msg.trim_start())
        .unwrap_or_else(|e| panic!("MSG is not the alert JSON ({e}): {msg:?}"))
}

/// The sequence number of a `dw-push` alert (`/etc/docker/seq/NNNNNNNN`).
pub fn seq_of(record: &Value) -> u64 {
    let alert = alert_of(record);
    let path = alert["file"]["path"].as_str().expect("file.path");
    path.strip_prefix("/etc/docker/seq/")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a dw-push path: {path}"))
}

/// The hostile file names `dw-push --hostile` sends, in order.
pub fn hostile_paths() -> Vec<Vec<u8>> {
    let mut long = b"/etc/docker/".to_vec();
    long.resize(4096, b'L');
    vec![
        b"/etc/docker/new\nline".to_vec(),
        b"/etc/docker/group\x1dsep".to_vec(),
        b"/etc/docker/\"quoted\" x=\"1\"".to_vec(),
        b"/etc/docker/close]bracket] [fake@1 a=\"b\"]".to_vec(),
        b"/etc/docker/back\\slash\\".to_vec(),
        long,
        b"/etc/docker/bad\xff\xfeutf8".to_vec(),
        b"/etc/docker/nul\x00byte".to_vec(),
    ]
}

/// rsyslogd in the foreground on `conf`, with its own pid file (so it never
/// collides with the host's), its errors on the test's stderr.
pub fn spawn_rsyslogd(conf: &Path, pid_file: &Path) -> Child {
    Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(conf)
        .arg("-i")
        .arg(pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn rsyslogd (apt-get install rsyslog)")
}

/// Starts a TLS receiver that demands a client certificate, pushes ten
/// records to the URL `url_of` names with only the CA (no certificate of
/// our own), and asserts that none was delivered: the positive control
/// that a delivery test's certificate was presented and checked.
pub fn assert_refused_without_client_certificate(
    certs: &TlsFiles,
    url_of: impl Fn(&Rsyslog) -> String,
    what: &str,
) {
    let mut rsyslog = Rsyslog::start_tls(certs.clone());
    let state = tempfile::tempdir().unwrap();
    let ca_only = [
        "--count",
        "10",
        "--wait",
        "3",
        "--tls-ca",
        certs.ca.to_str().unwrap(),
    ];
    let push = Push::start(state.path(), &[url_of(&rsyslog)], &ca_only);
    push.expect("undelivered", Duration::from_secs(30));
    push.finish();
    rsyslog.stop();
    assert!(
        rsyslog.records().is_empty(),
        "delivered over {what} without a client certificate"
    );
}

/// A running `dw-push`, its stdout lines forwarded to a channel.
pub struct Push {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Push {
    pub fn start(state_dir: &std::path::Path, urls: &[String], extra: &[&str]) -> Push {
        let mut cmd = Command::new(push_bin());
        cmd.arg("--state-dir").arg(state_dir);
        for url in urls {
            cmd.arg("--url").arg(url);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn dw-push");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Push { child, lines }
    }

    /// Waits for a line starting with `prefix`; returns it.
    pub fn expect(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!("dw-push printed no {prefix:?} line within {timeout:?}"),
            }
        }
    }

    /// Waits for the process to exit successfully.
    pub fn finish(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "dw-push failed: {status}");
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `dw-push` driver built beside the test binary.
pub fn push_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .join("dw-push");
    assert!(
        bin.exists(),
        "{} is missing: cargo build -p dockwatch-tests --bins",
        bin.display()
    );
    bin
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
}
