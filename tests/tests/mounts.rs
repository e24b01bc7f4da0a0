//! Mounts over watched paths: a bind mount over a watched binary, a tmpfs
//! over a watched directory, a remount and the unmounts are alerts of the
//! built-in `watched-path-mounted-over` rule, naming the mount and what it
//! covers, and the file watch follows what the mount shows; a mount over
//! an unwatched directory in the same run is not.
//! Real mounts in the host's mount table: root and the machine lock.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use dockwatch_tests::{machine_lock, read_alerts, wait_for_alerts, Monitored};
use serde_json::Value;

/// A private tree standing in for the host's Docker paths, with every
/// mount made below it undone on drop (innermost first).
struct Tree {
    dir: tempfile::TempDir,
    mounted: Vec<PathBuf>,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::Builder::new()
            .prefix("dockwatch-mounts")
            .tempdir()
            .unwrap();
        let tree = Tree {
            dir,
            mounted: Vec::new(),
        };
        for d in ["usr/bin", "etc/docker", "srv/scratch", "decoy"] {
            std::fs::create_dir_all(tree.path(d)).unwrap();
        }
        std::fs::write(tree.path("usr/bin/runc"), "the real runc\n").unwrap();
        std::fs::write(tree.path("decoy/runc"), "#!/bin/sh\n# not runc\n").unwrap();
        std::fs::write(tree.path("etc/docker/daemon.json"), "{}\n").unwrap();
        tree
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn text(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    fn mount(&mut self, args: &[&str], point: &str) {
        let point = self.path(point);
        let status = Command::new("mount")
            .args(args)
            .arg(&point)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount {args:?} {}", point.display());
        self.mounted.push(point);
    }

    fn umount(&mut self, point: &str) {
        let point = self.path(point);
        let status = Command::new("umount").arg(&point).status().unwrap();
        assert!(status.success(), "umount {}", point.display());
        self.mounted.retain(|p| p != &point);
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for point in self.mounted.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
    }
}

fn rules(tree: &Tree) -> String {
    format!(
        "rules:
  - id: runc-changed
    name: runc changed
    severity: critical
    paths: [{runc}]
    actions: [open_write]
  - id: docker-config-write
    name: Docker daemon configuration modified
    severity: warning
    paths: [{etc}, {etc}/daemon.json]
    actions: [open_write]
",
        runc = tree.text("usr/bin/runc"),
        etc = tree.text("etc/docker"),
    )
}

fn mount_alerts(alerts: &[Value]) -> Vec<&Value> {
    alerts
        .iter()
        .filter(|a| a["rule"]["id"] == "watched-path-mounted-over")
        .collect()
}

fn covers(alert: &Value) -> Vec<&str> {
    alert["mount"]["covers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect()
}

#[test]
fn mounts_over_watched_paths_alert_and_others_do_not() {
    let _lock = machine_lock();
    let mut tree = Tree::new();
    let monitored = Monitored::start(
        &rules(&tree),
        "[sources.audit]\nmode = \"off\"\n[posture]\nenabled = false\n",
    );
    assert!(
        monitored
            .daemon
            .log()
            .iter()
            .any(|l| l.contains("following mount table changes")),
        "{:#?}",
        monitored.daemon.log()
    );

    let alerts_file = monitored.alerts.clone();
    // Each change is awaited before the next: two changes that land
    // between two readings of the table are seen as their sum (a bind
    // mount made read-only at once reads as one read-only mount).
    let reported = |n: usize| {
        wait_for_alerts(&alerts_file, Duration::from_secs(30), |alerts| {
            mount_alerts(alerts).len() >= n
        });
    };
    // Not over anything watched: the engine mounting below its own
    // directories looks like this.
    tree.mount(&["-t", "tmpfs", "scratch"], "srv/scratch");
    // The attack: another file shown under runc's name.
    let decoy = tree.text("decoy/runc");
    tree.mount(&["--bind", &decoy], "usr/bin/runc");
    reported(1);
    // The watch follows the object now shown under the name: a write to
    // the decoy, by its own name, changes what the engine would run as
    // runc. The kernel's watch set is updated just after the mount alert,
    // so the write is repeated until it is seen (it never is without
    // following: the decoy's own path is not watched).
    let decoy_path = tree.path("decoy/runc");
    let followed = (0..300).any(|_| {
        std::fs::write(&decoy_path, "#!/bin/sh\n# not runc either\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        read_alerts(&alerts_file)
            .iter()
            .any(|a| a["rule"]["id"] == "runc-changed")
    });
    assert!(followed, "no write alert through the bind mount");
    tree.mount(&["-o", "remount,bind,ro"], "usr/bin/runc");
    reported(2);
    tree.umount("usr/bin/runc");
    reported(3);
    // A tmpfs over the whole config directory.
    tree.mount(&["-t", "tmpfs", "evil"], "etc/docker");
    reported(4);
    tree.umount("etc/docker");
    tree.umount("srv/scratch");
    reported(5);
    let status = monitored.daemon.stop();
    assert!(status.success(), "{status:?}");

    let alerts = read_alerts(&alerts_file);
    let mounts = mount_alerts(&alerts);
    let seen: Vec<(&str, &str)> = mounts
        .iter()
        .map(|a| {
            (
                a["mount"]["op"].as_str().unwrap(),
                a["file"]["path"].as_str().unwrap(),
            )
        })
        .collect();
    let runc = tree.text("usr/bin/runc");
    let etc = tree.text("etc/docker");
    assert_eq!(
        seen,
        [
            ("mount", runc.as_str()),
            ("remount", runc.as_str()),
            ("unmount", runc.as_str()),
            ("mount", etc.as_str()),
            ("unmount", etc.as_str()),
        ],
        "{alerts:#?}"
    );
    let bind = mounts[0];
    assert_eq!(bind["rule"]["severity"], "critical");
    assert_eq!(bind["event"]["action"], "mount");
    assert_eq!(bind["event"]["provider"][0], "mounts");
    assert_eq!(covers(bind), [runc.as_str()]);
    // What now shows under runc's name: the decoy, within its file system.
    assert!(
        bind["mount"]["root"]
            .as_str()
            .unwrap()
            .ends_with("/decoy/runc"),
        "{bind:#}"
    );
    assert!(mounts[1]["mount"]["options"]
        .as_str()
        .unwrap()
        .starts_with("ro"));
    let tmpfs = mounts[3];
    assert_eq!(tmpfs["mount"]["type"], "tmpfs");
    assert_eq!(tmpfs["mount"]["source"], "evil");
    let daemon_json = tree.text("etc/docker/daemon.json");
    assert_eq!(covers(tmpfs), [etc.as_str(), daemon_json.as_str()]);
    assert!(
        !alerts
            .iter()
            .any(|a| a.to_string().contains(&tree.text("srv/scratch"))),
        "a mount over nothing watched alerted: {alerts:#?}"
    );
}

#[test]
fn the_mount_table_can_be_switched_off() {
    let _lock = machine_lock();
    let mut tree = Tree::new();
    let monitored = Monitored::start(
        &rules(&tree),
        "[sources.audit]\nmode = \"off\"\n[posture]\nenabled = false\n\
         [sources.mounts]\nenabled = false\n",
    );
    let decoy = tree.text("decoy/runc");
    tree.mount(&["--bind", &decoy], "usr/bin/runc");
    tree.umount("usr/bin/runc");
    // Positive control: the daemon still sees a write to a watched file,
    // so silence is the switch, not blindness.
    std::fs::write(tree.path("etc/docker/daemon.json"), "{\"icc\": true}\n").unwrap();
    let alerts_file = monitored.alerts.clone();
    wait_for_alerts(&alerts_file, Duration::from_secs(30), |alerts| {
        alerts
            .iter()
            .any(|a| a["rule"]["id"] == "docker-config-write")
    });
    assert!(monitored.daemon.stop().success());
    let alerts = read_alerts(&alerts_file);
    assert!(mount_alerts(&alerts).is_empty(), "{alerts:#?}");
    assert!(
        alerts
            .iter()
            .any(|a| a["rule"]["id"] == "docker-config-write"),
        "{alerts:#?}"
    );
}
