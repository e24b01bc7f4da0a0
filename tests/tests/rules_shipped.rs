//! Every shipped rule fires on its scenario and stays silent on its
//! exception, and one change raises one alert (no two shipped rules overlap).
//! Event-level: events go through the library's matcher exactly as the
//! pipeline feeds it; no machine state is touched.

use std::collections::BTreeSet;
use std::sync::Arc;

use dockwatch::event::{Action, Event, FileRef, Process, Source};
use dockwatch::rules::RuleSet;
use dockwatch_tests::{shipped_rules, CIS_AUDIT_PATHS};

const CONTAINER: &str = "4c6f0e2b7a1d9c8e5f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";

fn ev(action: &str, path: &str, exe: &str) -> Event {
    let action = Action::from_name(action).expect("known action");
    let mut event = Event::new(Source::Ebpf, action);
    event.file = Some(FileRef::new(path.as_bytes().to_vec()));
    let comm = exe.rsplit('/').next().unwrap_or(exe);
    event.process = Process {
        pid: 4242,
        uid: Some(0),
        comm: Some(comm.as_bytes()[..comm.len().min(15)].to_vec().into()),
        exe: Some(exe.as_bytes().to_vec().into()),
        ..Process::default()
    };
    event
}

fn renamed(from: &str, to: &str, exe: &str) -> Event {
    let mut event = ev("rename", from, exe);
    event.target = Some(FileRef::new(to.as_bytes().to_vec()));
    event
}

/// An engine event (source::docker) on a container.
fn engine(action: &str) -> Event {
    let action = Action::from_name(action).expect("known action");
    Event::new(Source::Docker, action)
}

fn in_container(mut event: Event) -> Event {
    event.process.container_id = Some(CONTAINER.to_string());
    event
}

struct Scenario {
    rule: &'static str,
    fires: Vec<Event>,
    silent: Vec<Event>,
}

fn scenarios() -> Vec<Scenario> {
    let s = |rule, fires, silent| Scenario {
        rule,
        fires,
        silent,
    };
    vec![
        s(
            "dockerd-binary-modified",
            vec![
                ev("open_write", "/usr/bin/dockerd", "/usr/bin/cp"),
                renamed("/tmp/dockerd.new", "/usr/sbin/dockerd", "/usr/bin/mv"),
                ev("setxattr", "/usr/bin/dockerd", "/usr/sbin/setcap"),
            ],
            vec![ev("exec", "/usr/bin/dockerd", "/usr/bin/dockerd")],
        ),
        s(
            "containerd-state-modified",
            vec![ev(
                "create",
                "/run/containerd/io.containerd.runtime.v2.task/moby/abc/config.json",
                "/usr/bin/python3",
            )],
            vec![
                ev(
                    "create",
                    "/run/containerd/io.containerd.runtime.v2.task/moby/abc/config.json",
                    "/usr/bin/containerd-shim-runc-v2",
                ),
                ev(
                    "unlink",
                    "/run/containerd/runc/moby/abc/state.json",
                    "/usr/bin/runc",
                ),
                ev(
                    "mknod",
                    "/run/containerd/containerd.sock",
                    "/usr/bin/containerd",
                ),
            ],
        ),
        s(
            "docker-data-modified",
            vec![
                ev(
                    "open_write",
                    "/var/lib/docker/containers/abc/config.v2.json",
                    "/usr/bin/vi",
                ),
                // A container writing outside its own layers and volumes.
                in_container(ev(
                    "open_write",
                    "/var/lib/docker/containers/abc/hostconfig.json",
                    "/bin/sh",
                )),
            ],
            vec![
                ev(
                    "open_write",
                    "/var/lib/docker/containers/abc/config.v2.json",
                    "/usr/bin/dockerd",
                ),
                in_container(ev(
                    "open_write",
                    "/var/lib/docker/overlay2/l1/diff/srv/app.log",
                    "/usr/local/bin/app",
                )),
                in_container(ev(
                    "create",
                    "/var/lib/docker/volumes/data/_data/db.sqlite",
                    "/usr/local/bin/app",
                )),
            ],
        ),
        s(
            "docker-config-write",
            vec![
                ev("open_write", "/etc/docker/daemon.json", "/usr/bin/touch"),
                ev(
                    "unlink",
                    "/etc/docker/certs.d/registry:5000/ca.crt",
                    "/usr/bin/rm",
                ),
                // The exception covers key.json only, not a rename onto daemon.json.
                renamed(
                    "/etc/docker/key.json",
                    "/etc/docker/daemon.json",
                    "/usr/bin/dockerd",
                ),
            ],
            vec![ev("open_write", "/etc/docker/key.json", "/usr/bin/dockerd")],
        ),
        s(
            "docker-service-unit-modified",
            vec![
                ev(
                    "open_write",
                    "/lib/systemd/system/docker.service",
                    "/usr/bin/vi",
                ),
                ev(
                    "create",
                    "/etc/systemd/system/docker.service.d/override.conf",
                    "/usr/bin/systemctl",
                ),
            ],
            vec![ev(
                "open_write",
                "/lib/systemd/system/docker.service.bak",
                "/usr/bin/vi",
            )],
        ),
        s(
            "docker-socket-unit-modified",
            vec![ev(
                "truncate",
                "/usr/lib/systemd/system/docker.socket",
                "/usr/bin/vi",
            )],
            vec![ev(
                "open_write",
                "/usr/lib/systemd/system/dbus.socket",
                "/usr/bin/vi",
            )],
        ),
        s(
            "docker-default-file-modified",
            vec![ev("open_write", "/etc/default/docker", "/usr/bin/nano")],
            vec![ev("open_write", "/etc/default/grub", "/usr/bin/nano")],
        ),
        s(
            "containerd-config-modified",
            vec![
                ev("open_write", "/etc/containerd/config.toml", "/usr/bin/vi"),
                ev("chmod", "/etc/containerd/config.toml", "/usr/bin/chmod"),
            ],
            vec![ev(
                "open_write",
                "/etc/containerd-old/config.toml",
                "/usr/bin/vi",
            )],
        ),
        s(
            "docker-sysconfig-modified",
            vec![ev("open_write", "/etc/sysconfig/docker", "/usr/bin/vi")],
            vec![ev("open_write", "/etc/sysconfig/network", "/usr/bin/vi")],
        ),
        s(
            "containerd-binary-modified",
            vec![
                ev("open_write", "/usr/bin/containerd", "/usr/bin/cp"),
                renamed(
                    "/tmp/shim",
                    "/usr/bin/containerd-shim-runc-v2",
                    "/usr/bin/dpkg",
                ),
                ev(
                    "chmod",
                    "/usr/bin/containerd-shim-runc-v1",
                    "/usr/bin/chmod",
                ),
                ev(
                    "open_write",
                    "/usr/bin/containerd-shim-kata-v2",
                    "/usr/bin/cp",
                ),
            ],
            vec![ev(
                "open_write",
                "/usr/bin/containerd-stress",
                "/usr/bin/cp",
            )],
        ),
        s(
            "runc-binary-modified",
            vec![ev("open_write", "/usr/bin/runc", "/usr/bin/cp")],
            vec![ev(
                "exec",
                "/usr/bin/runc",
                "/usr/bin/containerd-shim-runc-v2",
            )],
        ),
        s(
            "docker-helper-binary-modified",
            vec![
                ev("chmod", "/usr/bin/docker-proxy", "/usr/bin/chmod"),
                ev("open_write", "/usr/bin/docker", "/usr/bin/cp"),
                ev(
                    "create",
                    "/usr/libexec/docker/cli-plugins/docker-evil",
                    "/usr/bin/curl",
                ),
            ],
            vec![ev("open_write", "/usr/bin/dockerize", "/usr/bin/cp")],
        ),
        s(
            "docker-service-unit-perms",
            vec![ev(
                "chmod",
                "/lib/systemd/system/docker.service",
                "/usr/bin/chmod",
            )],
            vec![ev(
                "chmod",
                "/lib/systemd/system/ssh.service",
                "/usr/bin/chmod",
            )],
        ),
        s(
            "docker-socket-unit-perms",
            vec![ev(
                "chown",
                "/etc/systemd/system/docker.socket",
                "/usr/bin/chown",
            )],
            vec![ev(
                "chown",
                "/etc/systemd/system/ssh.socket",
                "/usr/bin/chown",
            )],
        ),
        s(
            "docker-config-dir-perms",
            vec![
                ev("chmod", "/etc/docker", "/usr/bin/chmod"),
                ev("chown", "/etc/docker/seccomp.json", "/usr/bin/chown"),
            ],
            vec![],
        ),
        s(
            "docker-registry-certs-perms",
            vec![ev(
                "chown",
                "/etc/docker/certs.d/registry:5000/ca.crt",
                "/usr/bin/chown",
            )],
            vec![],
        ),
        s(
            "docker-tls-perms",
            vec![
                ev("chmod", "/etc/docker/ca.pem", "/usr/bin/chmod"),
                ev("chmod", "/etc/docker/tls/server-key.pem", "/usr/bin/chmod"),
                ev("chown", "/etc/docker/tls/server.cert", "/usr/bin/chown"),
            ],
            vec![],
        ),
        s(
            "docker-sock-perms",
            vec![
                ev("chmod", "/var/run/docker.sock", "/usr/bin/chmod"),
                ev("chown", "/run/docker.sock", "/usr/bin/chown"),
            ],
            vec![
                ev("chmod", "/run/docker.sock", "/usr/bin/dockerd"),
                ev("chown", "/run/docker.sock", "/usr/bin/dockerd"),
            ],
        ),
        s(
            "docker-sock-replaced",
            vec![
                ev("unlink", "/run/docker.sock", "/usr/bin/rm"),
                renamed("/tmp/fake.sock", "/var/run/docker.sock", "/usr/bin/mv"),
            ],
            vec![
                ev("mknod", "/run/docker.sock", "/usr/bin/dockerd"),
                ev("unlink", "/run/docker.sock", "/usr/bin/dockerd"),
            ],
        ),
        s(
            "docker-daemon-json-perms",
            vec![ev("chmod", "/etc/docker/daemon.json", "/usr/bin/chmod")],
            vec![],
        ),
        s(
            "docker-default-file-perms",
            vec![ev("chmod", "/etc/default/docker", "/usr/bin/chmod")],
            vec![],
        ),
        s(
            "docker-sysconfig-perms",
            vec![ev("chown", "/etc/sysconfig/docker", "/usr/bin/chown")],
            vec![],
        ),
        s(
            "containerd-sock-perms",
            vec![ev(
                "chown",
                "/run/containerd/containerd.sock",
                "/usr/bin/chown",
            )],
            vec![ev(
                "chmod",
                "/run/containerd/containerd.sock",
                "/usr/bin/containerd",
            )],
        ),
        s(
            "docker-sock-connect-unexpected",
            vec![
                ev("connect", "/run/docker.sock", "/usr/bin/python3"),
                ev("connect", "/var/run/docker.sock", "/usr/bin/curl"),
            ],
            vec![
                ev("connect", "/run/docker.sock", "/usr/bin/docker"),
                ev(
                    "connect",
                    "/var/run/docker.sock",
                    "/usr/libexec/docker/cli-plugins/docker-compose",
                ),
            ],
        ),
        s(
            "docker-sock-connect-from-container",
            vec![
                in_container(ev("connect", "/var/run/docker.sock", "/usr/bin/docker")),
                in_container(ev("connect", "/run/docker.sock", "/usr/bin/python3")),
            ],
            vec![ev("connect", "/var/run/docker.sock", "/usr/bin/docker")],
        ),
        s(
            "containerd-sock-connect-unexpected",
            vec![ev(
                "connect",
                "/run/containerd/containerd.sock",
                "/usr/bin/socat",
            )],
            vec![
                ev(
                    "connect",
                    "/run/containerd/containerd.sock",
                    "/usr/bin/dockerd",
                ),
                ev("connect", "/run/containerd/containerd.sock", "/usr/bin/ctr"),
                ev(
                    "connect",
                    "/run/containerd/containerd.sock",
                    "/usr/bin/containerd-shim-runc-v2",
                ),
            ],
        ),
        s(
            "docker-group-modified",
            vec![
                renamed("/etc/group+", "/etc/group", "/usr/sbin/usermod"),
                ev("open_write", "/etc/gshadow", "/usr/sbin/gpasswd"),
            ],
            vec![
                // The temporary file before the rename; the rename alerts.
                ev("open_write", "/etc/group+", "/usr/sbin/usermod"),
                ev("open_write", "/etc/group.lock", "/usr/sbin/usermod"),
            ],
        ),
        s(
            "docker-container-exec",
            vec![engine("container_exec")],
            vec![engine("container_start"), engine("container_create")],
        ),
        s(
            "docker-container-cp",
            vec![engine("container_cp")],
            // Copying out is reading, as `docker logs` is.
            vec![engine("container_archive")],
        ),
        s(
            "docker-container-commit",
            vec![engine("container_commit")],
            vec![engine("container_update")],
        ),
        s(
            "docker-plugin-changed",
            vec![
                engine("plugin_install"),
                engine("plugin_enable"),
                engine("plugin_remove"),
            ],
            vec![],
        ),
        s(
            "docker-plugin-disabled",
            vec![engine("plugin_disable")],
            vec![],
        ),
        s(
            "docker-image-load",
            vec![engine("image_load"), engine("image_import")],
            // Pulls come from a registry, which the daemon's settings judge.
            vec![engine("image_pull")],
        ),
    ]
}

fn matched(rules: &RuleSet, event: &Event) -> Vec<String> {
    let mut out = Vec::new();
    rules.matches(event, &mut out);
    out.iter().map(|r| r.id.clone()).collect()
}

fn describe(event: &Event) -> String {
    let path = |f: &Option<FileRef>| {
        f.as_ref()
            .map(|f| String::from_utf8_lossy(&f.path).into_owned())
            .unwrap_or_default()
    };
    format!(
        "{} {} {} by {} (container: {})",
        event.action.as_str(),
        path(&event.file),
        path(&event.target),
        String::from_utf8_lossy(event.process.exe.as_deref().unwrap_or_default()),
        event.process.container_id.is_some()
    )
}

#[test]
fn every_shipped_rule_fires_on_its_scenario_and_only_it() {
    let rules = RuleSet::load_dir(&shipped_rules()).expect("shipped rules load");
    for scenario in scenarios() {
        assert!(!scenario.fires.is_empty(), "{}: no scenario", scenario.rule);
        for event in &scenario.fires {
            assert_eq!(
                matched(&rules, event),
                [scenario.rule],
                "{}: {}",
                scenario.rule,
                describe(event)
            );
        }
    }
}

#[test]
fn every_shipped_rule_stays_silent_on_its_exception() {
    let rules = RuleSet::load_dir(&shipped_rules()).expect("shipped rules load");
    for scenario in scenarios() {
        for event in &scenario.silent {
            assert_eq!(
                matched(&rules, event),
                Vec::<String>::new(),
                "{} should stay silent: {}",
                scenario.rule,
                describe(event)
            );
        }
    }
}

#[test]
fn every_shipped_rule_has_a_scenario() {
    let rules = RuleSet::load_dir(&shipped_rules()).expect("shipped rules load");
    let shipped: BTreeSet<String> = rules.rules().map(|(r, _)| r.id.clone()).collect();
    let tested: BTreeSet<String> = scenarios().iter().map(|s| s.rule.to_string()).collect();
    assert_eq!(shipped, tested, "shipped rules and scenarios differ");
    assert!(rules.rules().all(|(_, enabled)| enabled));
}

/// dockerd, containerd and runc at their normal work: starting, creating
/// the sockets, running a container, writing state. Nothing may fire.
#[test]
fn docker_engine_at_normal_work_raises_nothing() {
    let rules = RuleSet::load_dir(&shipped_rules()).expect("shipped rules load");
    let work = [
        ev("mknod", "/run/docker.sock", "/usr/bin/dockerd"),
        ev("chown", "/run/docker.sock", "/usr/bin/dockerd"),
        ev("chmod", "/run/docker.sock", "/usr/bin/dockerd"),
        ev("open_write", "/etc/docker/key.json", "/usr/bin/dockerd"),
        ev(
            "connect",
            "/run/containerd/containerd.sock",
            "/usr/bin/dockerd",
        ),
        ev(
            "mknod",
            "/run/containerd/containerd.sock",
            "/usr/bin/containerd",
        ),
        ev(
            "chmod",
            "/run/containerd/containerd.sock",
            "/usr/bin/containerd",
        ),
        ev(
            "mkdir",
            "/var/lib/docker/containers/abc",
            "/usr/bin/dockerd",
        ),
        ev(
            "open_write",
            "/var/lib/docker/containers/abc/hostconfig.json",
            "/usr/bin/dockerd",
        ),
        renamed(
            "/var/lib/docker/containers/abc/.tmp-config.v2.json",
            "/var/lib/docker/containers/abc/config.v2.json",
            "/usr/bin/dockerd",
        ),
        ev(
            "mkdir",
            "/var/lib/docker/overlay2/l1/diff",
            "/usr/bin/dockerd",
        ),
        ev(
            "create",
            "/run/containerd/io.containerd.runtime.v2.task/moby/abc/address",
            "/usr/bin/containerd-shim-runc-v2",
        ),
        ev(
            "open_write",
            "/run/containerd/runc/moby/abc/state.json",
            "/usr/bin/runc",
        ),
        ev(
            "chown",
            "/var/lib/docker/volumes/data/_data",
            "/usr/sbin/runc",
        ),
        ev(
            "unlink",
            "/var/lib/docker/containers/abc/resolv.conf",
            "/usr/local/bin/dockerd",
        ),
        ev("connect", "/run/docker.sock", "/usr/bin/docker"),
    ];
    for event in &work {
        assert_eq!(
            matched(&rules, event),
            Vec::<String>::new(),
            "engine work raised an alert: {}",
            describe(event)
        );
    }
}

#[test]
fn audit_and_ebpf_events_match_alike() {
    let rules = RuleSet::load_dir(&shipped_rules()).expect("shipped rules load");
    let mut event = ev("open_write", "/etc/docker/daemon.json", "/usr/bin/touch");
    event.source = Source::Audit;
    assert_eq!(matched(&rules, &event), ["docker-config-write"]);
    // A source that could not name the executable: rules without process
    // conditions still fire, and exceptions on exe do not silence.
    event.process.exe = None;
    assert_eq!(matched(&rules, &event), ["docker-config-write"]);
    let mut sock = ev("chmod", "/run/docker.sock", "/usr/bin/dockerd");
    sock.process.exe = None;
    assert_eq!(matched(&rules, &sock), ["docker-sock-perms"]);
}

#[test]
fn watches_cover_every_cis_audit_path() {
    let rules = Arc::new(RuleSet::load_dir(&shipped_rules()).expect("shipped rules load"));
    let watched: BTreeSet<String> = rules
        .watches()
        .iter()
        .map(|w| w.path.to_string_lossy().into_owned())
        .collect();
    for path in CIS_AUDIT_PATHS {
        assert!(
            watched.contains(*path),
            "{path} is not watched: {watched:?}"
        );
    }
}
