//! The shipped rules end to end over a real audit capture: `dockwatch
//! replay` of the shared ENRICHED log (writes, renames, sed -i, chmod and
//! chown of Docker's files) yields exactly one alert per audit event, under
//! the rule that owns the path and action. No root, no machine state.

use dockwatch_tests::{run_cli, shared_fixture, shipped_rules};

/// (audit serial, action, rule id, file path)
const EXPECTED: &[(u64, &str, &str, &str)] = &[
    (
        59,
        "open_write",
        "docker-config-write",
        "/etc/docker/daemon.json",
    ),
    (
        60,
        "open_write",
        "docker-config-write",
        "/etc/docker/daemon.json",
    ),
    (
        61,
        "chmod",
        "docker-daemon-json-perms",
        "/etc/docker/daemon.json",
    ),
    (
        62,
        "chown",
        "docker-daemon-json-perms",
        "/etc/docker/daemon.json",
    ),
    (
        63,
        "rename",
        "docker-config-write",
        "/etc/docker/daemon.json",
    ),
    (
        64,
        "rename",
        "docker-config-write",
        "/etc/docker/daemon.json.old",
    ),
    // sed -i: a temporary file, its owner and label, renamed over the file.
    (
        65,
        "open_write",
        "docker-config-write",
        "/etc/docker/sedNtlUC9",
    ),
    (
        66,
        "chown",
        "docker-config-dir-perms",
        "/etc/docker/sedNtlUC9",
    ),
    (
        67,
        "setxattr",
        "docker-config-dir-perms",
        "/etc/docker/sedNtlUC9",
    ),
    (68, "rename", "docker-config-write", "/etc/docker/sedNtlUC9"),
    (
        69,
        "open_write",
        "docker-default-file-modified",
        "/etc/default/docker",
    ),
    (70, "mkdir", "docker-data-modified", "/var/lib/docker"),
    (
        71,
        "mkdir",
        "docker-data-modified",
        "/var/lib/docker/containers",
    ),
    (72, "open_write", "runc-binary-modified", "/usr/bin/runc"),
    (73, "chmod", "runc-binary-modified", "/usr/bin/runc"),
    (74, "unlink", "runc-binary-modified", "/usr/bin/runc"),
    (
        75,
        "open_write",
        "docker-service-unit-modified",
        "/lib/systemd/system/docker.service",
    ),
    (76, "mkdir", "containerd-state-modified", "/run/containerd"),
    (77, "symlink", "containerd-state-modified", "/dev/null"),
    // auditctl adding a watch: dockwatch's own report, no rule needed.
    (
        78,
        "audit_config",
        "audit-config-changed",
        "/etc/containerd",
    ),
    (
        79,
        "open_write",
        "containerd-config-modified",
        "/etc/containerd/config.toml",
    ),
    (
        80,
        "open_write",
        "docker-config-write",
        "/etc/docker/daemon.json",
    ),
    // auditctl -W (a removal, refused) and -w: tampering, then a change.
    (117, "audit_config", "audit-tampered", ""),
    (
        118,
        "audit_config",
        "audit-config-changed",
        "/var/lib/docker",
    ),
    (
        119,
        "open_write",
        "docker-data-modified",
        "/var/lib/docker/containers/abc/config.v2.json",
    ),
    (
        120,
        "open_write",
        "docker-service-unit-modified",
        "/usr/lib/systemd/system/docker.service",
    ),
    // The capture skips serials 81 to 116: reported once the gap is certain.
    (117, "records_lost", "dockwatch-records-lost", ""),
];

#[test]
fn shared_capture_replays_into_one_alert_per_change_under_the_right_rule() {
    let log = shared_fixture("audit/enriched-docker-watches.log");
    let (code, stdout, stderr) = run_cli([
        "replay".as_ref(),
        "--rules".as_ref(),
        shipped_rules().as_os_str(),
        log.as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let alerts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect();
    let got: Vec<(u64, String, String, String)> = alerts
        .iter()
        .map(|a| {
            let serial = a["event"]["id"]
                .as_str()
                .and_then(|id| id.rsplit(':').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no audit id: {a}"));
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (
                serial,
                text(&a["event"]["action"]),
                text(&a["rule"]["id"]),
                text(&a["file"]["path"]),
            )
        })
        .collect();
    let want: Vec<(u64, String, String, String)> = EXPECTED
        .iter()
        .map(|&(s, a, r, p)| (s, a.to_string(), r.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
    assert!(alerts
        .iter()
        .all(|a| a["event"]["provider"] == serde_json::json!(["audit"])));
}
