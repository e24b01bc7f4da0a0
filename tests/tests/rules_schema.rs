//! What the rule language means: named lists and their extension, later
//! files changing earlier rules by id, process conditions, exceptions,
//! globs, and the watch set rules yield. Event-level, through the library.

use std::path::PathBuf;

use dockwatch::event::{Action, Event, FileRef, Process, Source};
use dockwatch::rules::RuleSet;

fn load(files: &[(&str, &str)]) -> RuleSet {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    RuleSet::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"))
}

fn ev(action: Action, path: &str, exe: &str) -> Event {
    let mut event = Event::new(Source::Audit, action);
    event.file = Some(FileRef::new(path.as_bytes().to_vec()));
    event.process = Process {
        pid: 7,
        uid: Some(1000),
        auid: Some(1000),
        comm: Some(exe.rsplit('/').next().unwrap().as_bytes().to_vec().into()),
        exe: Some(exe.as_bytes().to_vec().into()),
        parent_exe: Some("/usr/bin/bash".into()),
        ..Process::default()
    };
    event
}

fn ids(rules: &RuleSet, event: &Event) -> Vec<String> {
    let mut out = Vec::new();
    rules.matches(event, &mut out);
    let mut ids: Vec<String> = out.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids
}

const BASE: &str = "
lists:
  engine: [/usr/bin/dockerd]
  writes: [open_write, truncate]
rules:
  - id: cfg
    name: config
    severity: warning
    paths: [/etc/docker]
    actions: [$writes]
    except:
      - exe: [$engine]
";

#[test]
fn lists_expand_and_later_files_extend_them() {
    let rules = load(&[("10.yaml", BASE)]);
    let podman = ev(
        Action::OpenWrite,
        "/etc/docker/daemon.json",
        "/usr/bin/podman",
    );
    assert_eq!(ids(&rules, &podman), ["cfg"]);
    assert!(ids(
        &rules,
        &ev(Action::Truncate, "/etc/docker/a", "/usr/bin/dockerd")
    )
    .is_empty());

    let rules = load(&[
        ("10.yaml", BASE),
        ("20.yaml", "extend_lists:\n  engine: [/usr/bin/podman]\n"),
    ]);
    assert!(
        ids(&rules, &podman).is_empty(),
        "extended list excuses podman"
    );
}

#[test]
fn later_file_disables_or_extends_a_rule_by_id() {
    let event = ev(Action::OpenWrite, "/etc/docker/daemon.json", "/usr/bin/vi");
    let rules = load(&[
        ("10.yaml", BASE),
        ("20.yaml", "modify:\n  - id: cfg\n    enabled: false\n"),
    ]);
    assert!(ids(&rules, &event).is_empty());
    assert!(
        rules.watches().is_empty(),
        "a disabled rule watches nothing"
    );
    assert_eq!(rules.rules().filter(|(_, on)| !on).count(), 1);

    let rules = load(&[
        ("10.yaml", BASE),
        (
            "20.yaml",
            "modify:\n  - id: cfg\n    severity: critical\n    append:\n      paths: [/etc/containerd]\n      actions: [chmod]\n      tags: [\"cis:1.1.12\"]\n      except:\n        - exe: [/usr/bin/vi]\n          paths: [/etc/docker/daemon.json]\n",
        ),
    ]);
    assert!(ids(&rules, &event).is_empty(), "appended exception applies");
    let other = ev(Action::Chmod, "/etc/containerd/config.toml", "/usr/bin/vi");
    let mut out = Vec::new();
    rules.matches(&other, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].severity.as_str(), "critical");
    assert_eq!(out[0].tags, ["cis:1.1.12"]);
}

#[test]
fn process_conditions_must_all_hold() {
    let rules = load(&[(
        "10.yaml",
        "
rules:
  - id: root-shell-in-container
    name: x
    severity: alert
    paths: [/run/docker.sock]
    actions: [connect]
    process:
      uid: [0]
      comm: [\"*sh\"]
      parent_exe: [/usr/bin/containerd-shim*]
      container: true
  - id: unlogged
    name: x
    severity: notice
    paths: [/etc/group]
    actions: [open_write]
    process:
      auid: [4294967295]
",
    )]);
    let mut event = ev(Action::Connect, "/run/docker.sock", "/bin/bash");
    event.process.uid = Some(0);
    event.process.parent_exe = Some("/usr/bin/containerd-shim-runc-v2".into());
    event.process.container_id = Some("abc".into());
    assert_eq!(ids(&rules, &event), ["root-shell-in-container"]);
    for spoil in [
        |e: &mut Event| e.process.uid = Some(1),
        |e: &mut Event| e.process.comm = Some("python3".into()),
        |e: &mut Event| e.process.parent_exe = Some("/usr/bin/sshd".into()),
        |e: &mut Event| e.process.container_id = None,
        |e: &mut Event| e.process.uid = None,
    ] {
        let mut e = event.clone();
        spoil(&mut e);
        assert!(ids(&rules, &e).is_empty(), "{:?}", e.process);
    }

    let mut group = ev(Action::OpenWrite, "/etc/group", "/usr/sbin/usermod");
    assert!(ids(&rules, &group).is_empty(), "auid 1000 is set");
    group.process.auid = None;
    assert_eq!(
        ids(&rules, &group),
        ["unlogged"],
        "4294967295 names an unset auid"
    );
}

#[test]
fn globs_match_whole_paths_and_watch_their_literal_directory() {
    let rules = load(&[(
        "10.yaml",
        "
rules:
  - id: shims
    name: x
    severity: critical
    paths: [\"/usr/bin/containerd-shim*\", \"/etc/docker/**/*.pem\"]
    actions: [open_write]
",
    )]);
    let hit = |p: &str| !ids(&rules, &ev(Action::OpenWrite, p, "/usr/bin/cp")).is_empty();
    assert!(hit("/usr/bin/containerd-shim"));
    assert!(hit("/usr/bin/containerd-shim-runc-v2"));
    assert!(!hit("/usr/bin/containerd"));
    assert!(!hit("/usr/bin/containerd-shim-x/inner"), "* stops at /");
    assert!(hit("/etc/docker/ca.pem"));
    assert!(hit("/etc/docker/tls/deep/key.pem"));
    assert!(!hit("/etc/docker/ca.pem.bak"));

    let watched: Vec<PathBuf> = rules.watches().into_iter().map(|w| w.path).collect();
    assert_eq!(
        watched,
        [PathBuf::from("/etc/docker"), PathBuf::from("/usr/bin")]
    );
}

#[test]
fn subtree_paths_stop_at_component_boundaries_and_match_rename_targets() {
    let rules = load(&[("10.yaml", BASE)]);
    assert!(ids(
        &rules,
        &ev(Action::OpenWrite, "/etc/dockerfile", "/usr/bin/vi")
    )
    .is_empty());
    assert!(ids(&rules, &ev(Action::Chmod, "/etc/docker/x", "/usr/bin/vi")).is_empty());
    let mut rename = ev(Action::Truncate, "/tmp/x", "/usr/bin/vi");
    rename.target = Some(FileRef::new(&b"/etc/docker/daemon.json"[..]));
    assert_eq!(ids(&rules, &rename), ["cfg"]);
}

#[test]
fn watches_carry_rule_actions_and_key() {
    let rules = load(&[("10.yaml", BASE)]);
    let watches = rules.watches();
    assert_eq!(watches.len(), 1);
    assert_eq!(watches[0].path, PathBuf::from("/etc/docker"));
    assert_eq!(watches[0].key, "cfg");
    assert_eq!(
        watches[0].actions,
        Action::OpenWrite.bit() | Action::Truncate.bit()
    );
}

#[test]
fn many_rules_on_one_path_each_match_once() {
    let mut text = String::from("rules:\n");
    for i in 0..50 {
        text.push_str(&format!(
            "  - id: r{i}\n    name: x\n    severity: info\n    paths: [/etc/docker, /etc/docker/daemon.json, \"/etc/docker/*.json\"]\n    actions: [open_write]\n"
        ));
    }
    let rules = load(&[("10.yaml", &text)]);
    let mut event = ev(Action::OpenWrite, "/etc/docker/daemon.json", "/usr/bin/vi");
    event.target = Some(FileRef::new(&b"/etc/docker/other.json"[..]));
    assert_eq!(ids(&rules, &event).len(), 50);
}
