//! The engine's event stream as a source, on a real dockerd: a risky
//! `docker create` is one `docker-risky-container` alert with its CIS ids
//! and the container's name and image, a hardened one is a
//! `container_create` and nothing more; `docker exec` and `docker cp` are
//! alerts naming the container and the client that asked (a docker group
//! member by uid); an engine that is not running at start is
//! waited for, and one restarted while dockwatch runs loses and doubles no
//! event. Root, the machine lock, and the Engine guard's cleanup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dockwatch_tests::docker::{Engine, IMAGE, SOCKET};
use dockwatch_tests::{machine_lock, read_alerts, wait_for_alerts, Daemon, Monitored};
use serde_json::Value;

/// Every `container_create` the engine reports, as an alert, so a test
/// sees the events that no shipped rule turns into one.
const SEE_CREATES: &str = "\
rules:
  - id: test-container-created
    name: container created
    severity: info
    actions: [container_create]
";

/// Log line of the docker source each time it (re)subscribes.
const FOLLOWING: &str = "docker engine: following events";

/// How long an engine event may take to become an alert here: well above
/// the milliseconds it takes, for a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

/// `dockwatch run` over the shipped rules plus [`SEE_CREATES`], with the
/// docker source on the test engine's socket, alerts to a file.
struct Watching {
    daemon: Daemon,
    alerts: PathBuf,
    _monitored: tempfile::TempDir,
}

impl Watching {
    fn start() -> Watching {
        // Posture judges the creates; the eBPF probes watch the
        // containers' state files, whose findings must not be reported a
        // second time. Flood control off: every create is counted.
        let m = Monitored::start_over_shipped(
            SEE_CREATES,
            &format!(
                "[sources.audit]\nmode = \"off\"\n[sources.docker]\nsocket = {SOCKET:?}\n\
                 [pipeline]\nflood_window_ms = 0\n[posture]\nenabled = true\n\
                 auditctl = \"/nonexistent/auditctl\"\n"
            ),
        );
        let (daemon, alerts, dir) = m.into_parts();
        Watching {
            daemon,
            alerts,
            _monitored: dir,
        }
    }

    /// Waits until `n` stderr lines contain `needle`.
    fn wait_for_log_count(&self, needle: &str, n: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let log = self.daemon.log();
            if log.iter().filter(|l| l.contains(needle)).count() >= n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dockwatch did not log {needle:?} {n} times:\n{}",
                log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until an alert of `rule` names container `name`.
    fn wait_for(&self, rule: &str, name: &str) {
        let alerts = wait_for_alerts(&self.alerts, WAIT, |a| !of(a, rule, name).is_empty());
        assert!(
            !of(&alerts, rule, name).is_empty(),
            "no {rule} alert for {name}: {alerts:#?}\n{}",
            self.daemon.log().join("\n")
        );
    }

    /// Stops dockwatch (a clean exit) and returns every alert it wrote and
    /// its log.
    fn stop(self) -> (Vec<Value>, Vec<String>) {
        let log = self.daemon.log();
        let status = self.daemon.stop();
        assert!(
            status.success(),
            "dockwatch exited {status}:\n{}",
            log.join("\n")
        );
        (read_alerts(&self.alerts), log)
    }
}

/// The uid of the docker group member the tests act as: no account is
/// made for it, the docker group is given as a supplementary group.
const MEMBER_UID: u32 = 4242;

/// `docker ARGS` as [`MEMBER_UID`], a member of the docker group; its
/// stdout (the new container's id).
fn as_docker_group_member(args: &[&str]) -> String {
    let group = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some("docker")).then(|| f.nth(1).unwrap().to_string())
        })
        .expect("a docker group (the docker.io package makes it)");
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={MEMBER_UID}"),
            &format!("--regid={MEMBER_UID}"),
            &format!("--groups={group}"),
            "/usr/bin/docker",
        ])
        .args(args)
        .env("HOME", home.path())
        .env("DOCKER_HOST", format!("unix://{SOCKET}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?} as uid {MEMBER_UID}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Alerts of `rule` about container `name`.
fn of<'a>(alerts: &'a [Value], rule: &str, name: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["rule"]["id"] == rule && a["container"]["name"] == name)
        .collect()
}

fn tags(alert: &Value) -> Vec<String> {
    alert["rule"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn risk_checks(alert: &Value) -> Vec<String> {
    let mut checks: Vec<String> = alert["docker"]["risks"]
        .as_array()
        .unwrap_or_else(|| panic!("no docker.risks: {alert:#}"))
        .iter()
        .map(|r| r["check"].as_str().unwrap().to_string())
        .collect();
    checks.sort();
    checks
}

/// The one alert of `rule` for `name`, with the container context every
/// engine alert carries.
fn one<'a>(alerts: &'a [Value], rule: &str, name: &str, id: &str) -> &'a Value {
    let found = of(alerts, rule, name);
    assert_eq!(found.len(), 1, "one {rule} alert for {name}: {found:#?}");
    let alert = found[0];
    assert_eq!(alert["container"]["id"], id, "{alert:#}");
    assert_eq!(alert["container"]["image"]["name"], IMAGE, "{alert:#}");
    alert
}

#[test]
fn risky_creates_are_one_alert_each_with_cis_ids_and_a_hardened_create_none() {
    let _lock = machine_lock();
    let engine = Engine::start();
    let watching = Watching::start();
    watching.wait_for_log_count(FOLLOWING, 1);
    // A client the rules do not expect (perl is essential on Debian): the
    // positive control of dockwatch's own connections raising nothing.
    let connect = format!("IO::Socket::UNIX->new(Peer => {SOCKET:?}) or die $!");
    let ok = std::process::Command::new("/usr/bin/perl")
        .args(["-MIO::Socket::UNIX", "-e", &connect])
        .status()
        .unwrap()
        .success();
    assert!(ok, "perl could not connect to {SOCKET}");

    // A user who is not root but in the docker group asks for the
    // privileged container: the alert must name that user, not dockerd.
    let privileged =
        as_docker_group_member(&["create", "--privileged", "--name", "dw-priv", IMAGE, "true"]);
    let root = engine.docker(&[
        "create", "-v", "/:/host", "--name", "dw-root", IMAGE, "true",
    ]);
    let spaces = engine.docker(&[
        "create",
        "--pid=host",
        "--net=host",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--name",
        "dw-spaces",
        IMAGE,
        "true",
    ]);
    let plain = engine.docker(&[
        "create",
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "ALL",
        "--name",
        "dw-plain",
        IMAGE,
        "true",
    ]);
    // Engine events arrive in order: the last create seen means all were.
    watching.wait_for("test-container-created", "dw-plain");
    let connects = |alerts: &[Value]| -> Vec<String> {
        alerts
            .iter()
            .filter(|a| a["rule"]["id"] == "docker-sock-connect-unexpected")
            .map(|a| {
                a["process"]["executable"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    wait_for_alerts(&watching.alerts, WAIT, |a| !connects(a).is_empty());
    let (alerts, _) = watching.stop();
    let connects = connects(&alerts);
    assert!(!connects.is_empty(), "perl's connect: {alerts:#?}");
    assert!(
        connects.iter().all(|exe| exe.starts_with("/usr/bin/perl")),
        "only perl connected unexpectedly: {connects:?}"
    );

    let risky = "docker-risky-container";
    let alert = one(&alerts, risky, "dw-priv", &privileged);
    assert_eq!(alert["event"]["action"], "container_create");
    assert_eq!(alert["event"]["provider"], serde_json::json!(["docker"]));
    assert_eq!(alert["user"]["id"], MEMBER_UID.to_string(), "{alert:#}");
    assert_eq!(
        alert["process"]["executable"], "/usr/bin/docker",
        "{alert:#}"
    );
    assert_eq!(alert["rule"]["severity"], "critical");
    assert_eq!(tags(alert), ["cis:5.4"]);
    assert_eq!(risk_checks(alert), ["5.4"]);

    let alert = one(&alerts, risky, "dw-root", &root);
    assert_eq!(alert["user"]["id"], "0", "{alert:#}");
    // The harness's docker is the first on PATH.
    let exe = alert["process"]["executable"].as_str().unwrap_or_default();
    assert!(exe.ends_with("/bin/docker"), "{alert:#}");
    assert_eq!(tags(alert), ["cis:5.31", "cis:5.5"]);
    let evidence = alert["docker"]["risks"].to_string();
    assert!(evidence.contains("mounts the host's /"), "{alert:#}");

    let alert = one(&alerts, risky, "dw-spaces", &spaces);
    assert_eq!(tags(alert), ["cis:5.15", "cis:5.21", "cis:5.3", "cis:5.9"]);
    assert!(
        alert["docker"]["risks"].to_string().contains("SYS_ADMIN"),
        "{alert:#}"
    );

    // The positive control of the silence: the hardened create was seen.
    one(&alerts, "test-container-created", "dw-plain", &plain);
    assert!(of(&alerts, risky, "dw-plain").is_empty(), "{alerts:#?}");
    // Each risky create was reported once: the state files that dockerd
    // wrote for it are no second (posture drift) report.
    let drift: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            a["posture"]["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("dw-"))
        })
        .collect();
    assert!(drift.is_empty(), "{drift:#?}");
}

#[test]
fn docker_exec_and_docker_cp_are_alerts_naming_the_container() {
    let _lock = machine_lock();
    let engine = Engine::start();
    let id = engine.docker(&["run", "-d", "--name", "dw-exec", IMAGE, "sleep", "600"]);
    let watching = Watching::start();
    watching.wait_for_log_count(FOLLOWING, 1);

    engine.docker(&["exec", "dw-exec", "id"]);
    engine.docker(&["exec", "-u", "1000", "dw-exec", "ls", "/tmp"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("payload");
    std::fs::write(&file, "x").unwrap();
    engine.docker(&["cp", file.to_str().unwrap(), "dw-exec:/tmp/payload"]);
    watching.wait_for("docker-container-cp", "dw-exec");
    let (alerts, _) = watching.stop();

    let execs = of(&alerts, "docker-container-exec", "dw-exec");
    assert_eq!(execs.len(), 2, "{execs:#?}");
    for exec in &execs {
        assert_eq!(exec["container"]["id"], id.as_str(), "{exec:#}");
        assert_eq!(exec["container"]["image"]["name"], IMAGE);
        assert_eq!(exec["event"]["action"], "container_exec");
        assert_eq!(exec["docker"]["exec"]["privileged"], false);
        // Who asked: the docker CLI, as root.
        assert_eq!(exec["user"]["id"], "0", "{exec:#}");
        let exe = exec["process"]["executable"].as_str().unwrap_or_default();
        assert!(exe.ends_with("/bin/docker"), "{exec:#}");
    }
    assert_eq!(
        execs[0]["docker"]["exec"]["command"], "id",
        "{:#}",
        execs[0]
    );
    assert_eq!(execs[0]["docker"]["exec"]["user"], "");
    assert_eq!(execs[1]["docker"]["exec"]["command"], "ls /tmp");
    assert_eq!(execs[1]["docker"]["exec"]["user"], "1000");
    let cp = one(&alerts, "docker-container-cp", "dw-exec", &id);
    assert_eq!(cp["event"]["action"], "container_cp");
    assert_eq!(cp["event"]["provider"], serde_json::json!(["docker"]));
    assert_eq!(cp["rule"]["severity"], "warning");
}

#[test]
fn an_engine_started_late_and_restarted_loses_and_doubles_no_event() {
    let _lock = machine_lock();
    assert!(
        !Path::new(SOCKET).exists(),
        "{SOCKET} exists: another engine runs"
    );
    // No engine yet: dockwatch starts anyway and waits for it.
    let watching = Watching::start();
    watching.wait_for_log_count("docker engine not reachable", 1);

    let mut engine = Engine::start();
    // Possibly before dockwatch's next try: `since=` its start covers it.
    engine.docker(&["create", "--name", "dw-early", IMAGE, "true"]);
    watching.wait_for("test-container-created", "dw-early");
    engine.docker(&["create", "--name", "dw-before", IMAGE, "true"]);
    watching.wait_for("test-container-created", "dw-before");

    let followed = watching
        .daemon
        .log()
        .iter()
        .filter(|l| l.contains(FOLLOWING))
        .count();
    engine.restart();
    watching.wait_for_log_count(FOLLOWING, followed + 1);
    engine.docker(&["create", "--name", "dw-after", IMAGE, "true"]);
    watching.wait_for("test-container-created", "dw-after");
    let (alerts, log) = watching.stop();

    for name in ["dw-early", "dw-before", "dw-after"] {
        let seen = of(&alerts, "test-container-created", name);
        assert_eq!(seen.len(), 1, "{name} once: {alerts:#?}");
    }
    // The harness's `docker import` of the test image, made while the
    // stream was opening.
    let imports: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["id"] == "docker-image-load")
        .collect();
    assert_eq!(imports.len(), 1, "{imports:#?}");
    assert_eq!(imports[0]["event"]["action"], "image_import");
    // Waiting is not an error, and is said once per absence of the engine.
    let waits = log
        .iter()
        .filter(|l| l.contains("docker engine not reachable"))
        .count();
    assert!((1..=2).contains(&waits), "{}", log.join("\n"));
    assert!(
        !log.iter()
            .any(|l| l.contains("ERROR") || l.contains("panicked")),
        "{}",
        log.join("\n")
    );
}
