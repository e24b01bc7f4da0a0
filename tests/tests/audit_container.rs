//! Processes in containers, on a real Docker engine and a real auditd,
//! with the eBPF source off (audit-only hosts: kernels without BTF) and on:
//! a container writing a watched host file through a bind mount, or
//! chmodding docker.sock through a bind of `/`, is one alert naming the
//! host path and the container's id, also when the writer has exited by
//! the time dockwatch reads the event.

use std::process::Command;
use std::time::Duration;

use dockwatch_tests::auditd::Auditd;
use dockwatch_tests::docker::{Engine, IMAGE, SOCKET};
use dockwatch_tests::layout::Layout;
use dockwatch_tests::{machine_lock, read_alerts, wait_for_alerts, Monitored};
use serde_json::Value;

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

const RULES: &str = "rules:
  - id: docker-config-write
    name: Docker daemon configuration modified
    severity: warning
    paths: [/etc/docker]
    actions: [open_write, write, truncate, rename, unlink, create, chmod, chown]
  - id: docker-sock-chmod
    name: docker.sock permissions changed
    severity: critical
    paths: [/var/run/docker.sock]
    actions: [chmod, chown]
  - id: docker-sock-connect-from-container
    name: Container connected to docker.sock
    severity: critical
    paths: [/var/run/docker.sock]
    actions: [connect]
    process:
      container: true
";

fn alerts_on<'a>(alerts: &'a [Value], path: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["file"]["path"] == path)
        .collect()
}

/// A real engine, a real auditd watching /etc/docker, and dockwatch on the
/// audit source alone (the eBPF source would see the same writes).
struct Scene {
    engine: Engine,
    layout: Layout,
    auditd: Auditd,
    run: Monitored,
}

impl Scene {
    fn start() -> Scene {
        Scene::start_with(Sources::AuditOnly)
    }

    fn start_with(sources: Sources) -> Scene {
        let engine = Engine::start();
        let mut layout = Layout::new();
        layout.file(DAEMON_JSON, "{}\n");
        let auditd = Auditd::start(
            "RAW",
            &[
                "-w /etc/docker -p wa -k docker",
                "-w /run/docker.sock -p wa -k docker",
            ],
        );
        let run = match sources {
            Sources::AuditOnly => Monitored::start_on_audit_log(RULES, &auditd.log_path()),
            Sources::EbpfOnly => Monitored::start(
                RULES,
                "[posture]\nenabled = false\n[sources.audit]\nmode = \"off\"\n",
            ),
            Sources::Both => Monitored::start(
                RULES,
                &format!(
                    "[posture]\nenabled = false\n[sources.audit]\nlog = {:?}\n",
                    auditd.log_path()
                ),
            ),
        };
        Scene {
            engine,
            layout,
            auditd,
            run,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sources {
    AuditOnly,
    /// The eBPF probes alone (audit off).
    EbpfOnly,
    /// Audit and the eBPF probes: their sightings of one action are one
    /// alert.
    Both,
}

/// `docker run -d -v VOLUME IMAGE sh -c SCRIPT` named `name`: the
/// container's id and the host pid of its first process.
fn start_writer(engine: &Engine, name: &str, volumes: &[&str], script: &str) -> (String, u64) {
    let mut args = vec!["run", "-d", "--name", name];
    for volume in volumes {
        args.extend(["-v", volume]);
    }
    args.extend([IMAGE, "sh", "-c", script]);
    let id = engine.docker(&args);
    let host_pid = engine
        .docker(&["inspect", "-f", "{{.State.Pid}}", &id])
        .parse()
        .unwrap();
    (id, host_pid)
}

#[test]
fn a_container_writing_a_bind_mounted_host_file_is_one_alert_with_host_path_and_container_id() {
    let _lock = machine_lock();
    let Scene {
        engine,
        layout,
        auditd,
        run,
    } = Scene::start();

    // The shell (the container's first process) opens the file for its
    // redirection, then becomes `sleep`: the process is still there when
    // dockwatch reads the event, as a container's main process is.
    let (id, host_pid) = start_writer(
        &engine,
        "dw-bind-writer",
        &["/etc/docker:/x"],
        "echo '{\"debug\": true}' >> /x/daemon.json; exec sleep 600",
    );
    assert_eq!(id.len(), 64, "docker run -d prints the full id: {id}");
    let seen = wait_for_alerts(&run.alerts, Duration::from_secs(10), |a| {
        !alerts_on(a, DAEMON_JSON).is_empty()
    });
    assert!(
        !alerts_on(&seen, DAEMON_JSON).is_empty(),
        "no alert for the container's write: {seen:#?}\n{}",
        run.daemon.log().join("\n")
    );

    // The control: a host process writing the same file, after the
    // container did. Its alert shows that everything before it in the
    // audit log was read, and it has no container.
    let mut touch = Command::new("/usr/bin/touch")
        .arg(DAEMON_JSON)
        .spawn()
        .unwrap();
    let touch_pid = u64::from(touch.id());
    assert!(touch.wait().unwrap().success());
    wait_for_alerts(&run.alerts, Duration::from_secs(10), |a| {
        alerts_on(a, DAEMON_JSON)
            .iter()
            .any(|a| a["process"]["pid"] == touch_pid)
    });
    let alerts = read_alerts(&run.alerts);
    let ours = alerts_on(&alerts, DAEMON_JSON);
    assert_eq!(ours.len(), 2, "{alerts:#?}");
    let from_container = ours[0];
    assert_eq!(
        from_container["process"]["pid"], host_pid,
        "{from_container}"
    );
    assert_eq!(
        from_container["container"]["id"],
        id.as_str(),
        "{from_container}"
    );
    assert_eq!(from_container["rule"]["id"], "docker-config-write");
    assert_eq!(from_container["event"]["action"], "open_write");
    assert_eq!(
        from_container["event"]["provider"],
        serde_json::json!(["audit"])
    );
    assert_eq!(from_container["tags"], serde_json::json!(["docker"]));
    let from_host = ours[1];
    assert_eq!(from_host["process"]["pid"], touch_pid);
    assert!(from_host["container"].is_null(), "{from_host}");
    // The container's view of the path never becomes an alert of its own.
    assert!(
        alerts_on(&alerts, "/x/daemon.json").is_empty(),
        "{alerts:#?}"
    );

    engine.docker(&["rm", "-f", &id]);
    drop(run);
    drop(auditd);
    drop(layout);
    drop(engine);
}

#[test]
fn a_short_lived_process_in_a_container_writing_through_a_bind_of_root_is_named_by_its_parent() {
    let _lock = machine_lock();
    let Scene {
        engine,
        layout,
        auditd,
        run,
    } = Scene::start();
    // The subshell is a child of the container's shell that opens the file
    // and exits at once; the shell stays (as `sleep`), so the container is
    // known by the writer's parent. (Not busybox `touch`: on an existing
    // file it only sets times, which `-p wa` does not record.)
    let (id, host_pid) = start_writer(
        &engine,
        "dw-root-writer",
        &["/:/host"],
        "(echo '{}' >> /host/etc/docker/daemon.json); exec sleep 600",
    );
    let alerts = wait_for_alerts(&run.alerts, Duration::from_secs(10), |a| {
        !alerts_on(a, DAEMON_JSON).is_empty()
    });
    let ours = alerts_on(&alerts, DAEMON_JSON);
    assert_eq!(
        ours.len(),
        1,
        "{alerts:#?}\n{}\naudit.log:\n{}",
        run.daemon.log().join("\n"),
        std::fs::read_to_string(auditd.log_path()).unwrap_or_default()
    );
    let alert = ours[0];
    assert_eq!(alert["process"]["parent"]["pid"], host_pid, "{alert}");
    assert_ne!(alert["process"]["pid"], host_pid, "{alert}");
    assert_eq!(alert["container"]["id"], id.as_str(), "{alert}");
    assert_eq!(alert["rule"]["id"], "docker-config-write");
    assert!(
        alerts_on(&alerts, "/host/etc/docker/daemon.json").is_empty(),
        "{alerts:#?}"
    );

    engine.docker(&["rm", "-f", &id]);
    drop(run);
    drop(auditd);
    drop(layout);
    drop(engine);
}

/// What a user sees of one container's action: its id, the host pid of
/// its first process, and the alerts and log of the daemon, stopped once
/// `seen` holds.
struct Seen {
    id: String,
    host_pid: u64,
    alerts: Vec<Value>,
    log: Vec<String>,
}

/// Runs `script` in a container with `volume` under dockwatch on
/// `sources`, waits until `seen`, stops dockwatch, removes the container.
fn in_container(
    sources: Sources,
    name: &str,
    volumes: &[&str],
    script: &str,
    seen: impl Fn(&[Value]) -> bool,
) -> Seen {
    let Scene {
        engine,
        layout,
        auditd,
        run,
    } = Scene::start_with(sources);
    let (id, host_pid) = start_writer(&engine, name, volumes, script);
    wait_for_alerts(&run.alerts, Duration::from_secs(10), seen);
    let (mut daemon, alerts_file, _dir) = run.into_parts();
    daemon.signal(libc::SIGTERM);
    if sources != Sources::AuditOnly {
        // Its last line, with the probes' counters.
        daemon.wait_for_log("eBPF source stopped", Duration::from_secs(15));
    }
    let log = daemon.log();
    assert!(daemon.stop().success());
    let alerts = read_alerts(&alerts_file);
    engine.docker(&["rm", "-f", &id]);
    drop(auditd);
    drop(layout);
    drop(engine);
    Seen {
        id,
        host_pid,
        alerts,
        log,
    }
}

/// The `-v /etc/docker:/x` write of daemon.json, under `sources`.
fn bind_mount_write(sources: Sources, name: &str) -> Seen {
    in_container(
        sources,
        name,
        &["/etc/docker:/x"],
        "echo '{\"debug\": true}' >> /x/daemon.json; exec sleep 600",
        |a| !alerts_on(a, DAEMON_JSON).is_empty(),
    )
}

/// The one alert on daemon.json: the container's process and its id.
fn the_containers_alert(seen: &Seen) -> Value {
    let ours = alerts_on(&seen.alerts, DAEMON_JSON);
    assert_eq!(ours.len(), 1, "{:#?}", seen.alerts);
    let alert = ours[0];
    assert_eq!(alert["process"]["pid"], seen.host_pid, "{alert:#}");
    assert_eq!(alert["container"]["id"], seen.id.as_str(), "{alert:#}");
    assert_eq!(alert["rule"]["id"], "docker-config-write", "{alert:#}");
    alert.clone()
}

/// The bind-mount write with both sources: eBPF and audit see the one
/// write, and it is one alert with the host path and the container.
#[test]
fn with_ebpf_on_too_a_container_write_through_a_bind_mount_is_still_one_alert() {
    let _lock = machine_lock();
    let seen = bind_mount_write(Sources::Both, "dw-bind-writer-both");
    the_containers_alert(&seen);
    // Both saw it: whichever came second was folded into the one alert
    // (which names both sources only when they arrived within the hold).
    let received = seen
        .log
        .iter()
        .find_map(|l| {
            let counters = l.split_once("eBPF source stopped")?.1;
            counters
                .split("received=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    assert!(received >= 1, "the probes saw the write: {:#?}", seen.log);
    assert!(
        alerts_on(&seen.alerts, "/x/daemon.json").is_empty(),
        "{:#?}",
        seen.alerts
    );
}

/// The probes alone: the kernel matched the host file by inode, the
/// process named it by the container's path; the alert names the host
/// path, keeps the container's as the target, and the container.
#[test]
fn with_ebpf_alone_a_container_write_through_a_bind_mount_names_the_host_path() {
    let _lock = machine_lock();
    let seen = bind_mount_write(Sources::EbpfOnly, "dw-bind-writer-ebpf");
    let alert = the_containers_alert(&seen);
    assert_eq!(
        alert["event"]["provider"],
        serde_json::json!(["ebpf"]),
        "{alert:#}"
    );
    assert_eq!(alert["file"]["target_path"], "/x/daemon.json", "{alert:#}");
}

/// `chmod 666` of docker.sock from a container that bind-mounts `/`: the
/// host's socket opened to every user, by a process the host sees only as
/// the container's. One alert, the host path, the container; with audit
/// alone and with both sources.
fn chmod_of_docker_sock_through_a_bind_of_root(sources: Sources) {
    let _lock = machine_lock();
    let is_ours = |a: &&Value| a["rule"]["id"] == "docker-sock-chmod";
    let seen = in_container(
        sources,
        "dw-sock-chmod",
        &["/:/host"],
        "chmod 666 /host/run/docker.sock; exec sleep 600",
        |a| a.iter().any(|a| is_ours(&a)),
    );
    let ours: Vec<&Value> = seen.alerts.iter().filter(is_ours).collect();
    assert_eq!(ours.len(), 1, "{:#?}", seen.alerts);
    let alert = ours[0];
    assert_eq!(alert["event"]["action"], "chmod", "{alert:#}");
    assert_eq!(alert["file"]["path"], SOCKET, "{alert:#}");
    // The shell forks chmod: the writer is the container's first process's
    // child.
    assert_eq!(
        alert["process"]["parent"]["pid"], seen.host_pid,
        "{alert:#}"
    );
    assert_eq!(alert["container"]["id"], seen.id.as_str(), "{alert:#}");
    if sources == Sources::Both {
        let providers = alert["event"]["provider"].as_array().unwrap();
        assert!(providers.iter().any(|p| p == "ebpf"), "{alert:#}");
    }
}

#[test]
fn chmod_of_docker_sock_through_a_bind_of_root_with_audit_alone() {
    chmod_of_docker_sock_through_a_bind_of_root(Sources::AuditOnly);
}

#[test]
fn chmod_of_docker_sock_through_a_bind_of_root_with_both_sources() {
    chmod_of_docker_sock_through_a_bind_of_root(Sources::Both);
}

/// `socket(AF_UNIX)` and `connect` to /var/run/docker.sock, by raw
/// syscalls (busybox has no unix-socket client); exits 0 when connected.
const CONNECTOR: &str = r#"
static long sys3(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}
struct sockaddr_un { unsigned short family; char path[108]; };
void _start(void) {
    static const struct sockaddr_un addr = { 1, "/var/run/docker.sock" };
    long fd = sys3(41, 1, 1, 0);
    long rc = fd < 0 ? 1 : (sys3(42, fd, (long)&addr, sizeof addr) == 0 ? 0 : 2);
    sys3(60, rc, 0, 0);
}
"#;

/// A process in a container that has docker.sock mounted connects to the
/// engine: the container's way out to the host. One alert under the
/// container rule, naming the container, with the probes alone and with
/// both sources. (Audit alone is not tested: here the kernel wrote no
/// record for the container's connect under the `-S connect -F path=`
/// rule that `dockwatch rules auditctl` writes, though it records a host
/// process's connect under the same rule; why is still open.)
fn connect_to_docker_sock_from_a_container(sources: Sources) {
    let _lock = machine_lock();
    let tools = tempfile::tempdir().unwrap();
    dockwatch_tests::build_freestanding_c(tools.path(), "connect", CONNECTOR, &[]);
    let tools_volume = format!("{}:/t", tools.path().display());
    let is_ours = |a: &&Value| a["rule"]["id"] == "docker-sock-connect-from-container";
    let seen = in_container(
        sources,
        "dw-sock-connect",
        &["/var/run/docker.sock:/var/run/docker.sock", &tools_volume],
        "/t/connect && echo connected > /t/done; exec sleep 600",
        |a| a.iter().any(|a| is_ours(&a)),
    );
    assert!(
        tools.path().join("done").exists(),
        "the connector did not connect"
    );
    let ours: Vec<&Value> = seen.alerts.iter().filter(is_ours).collect();
    assert_eq!(ours.len(), 1, "{:#?}", seen.alerts);
    let alert = ours[0];
    assert_eq!(alert["event"]["action"], "connect", "{alert:#}");
    assert_eq!(alert["file"]["path"], SOCKET, "{alert:#}");
    assert_eq!(
        alert["process"]["parent"]["pid"], seen.host_pid,
        "{alert:#}"
    );
    assert_eq!(alert["container"]["id"], seen.id.as_str(), "{alert:#}");
}

#[test]
fn connect_to_docker_sock_from_a_container_with_ebpf_alone() {
    connect_to_docker_sock_from_a_container(Sources::EbpfOnly);
}

#[test]
fn connect_to_docker_sock_from_a_container_with_both_sources() {
    connect_to_docker_sock_from_a_container(Sources::Both);
}
