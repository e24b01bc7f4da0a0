//! What the audit tests share: a rule set that matches every path and
//! action, so replay output shows every event the audit source produced,
//! and a way to run `dockwatch replay` and read its alerts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Every action that happens to a path.
pub const ALL_ACTIONS: &str = "[open_write, write, truncate, chmod, chown, setxattr, rename, unlink, create, link, symlink, mkdir, mknod, connect, exec]";

/// A rules directory with one rule matching everything under `/`.
pub fn match_all_rules(dir: &Path) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("all.yaml"),
        format!(
            "rules:\n  - id: everything\n    name: Any file activity\n    severity: info\n    paths: [/]\n    actions: {ALL_ACTIONS}\n"
        ),
    )
    .unwrap();
    rules
}

/// `dockwatch replay --rules <match all> FILES`: (exit code, alerts, stderr).
pub fn replay(files: &[&Path]) -> (i32, Vec<Value>, String) {
    let tmp = tempfile::tempdir().unwrap();
    replay_with(&match_all_rules(tmp.path()), files)
}

/// `dockwatch replay --rules RULES FILES`: (exit code, alerts, stderr).
pub fn replay_with(rules: &Path, files: &[&Path]) -> (i32, Vec<Value>, String) {
    let mut args = vec![
        "replay".to_string(),
        "--rules".to_string(),
        rules.display().to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let (code, stdout, stderr) = dockwatch_tests::run_cli(&args);
    let alerts = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect();
    (code, alerts, stderr)
}

/// The alert for audit event `serial`, if any.
pub fn by_serial(alerts: &[Value], serial: u64) -> Option<&Value> {
    alerts.iter().find(|a| {
        a["event"]["id"]
            .as_str()
            .and_then(|id| id.rsplit(':').next())
            .and_then(|s| s.parse::<u64>().ok())
            == Some(serial)
    })
}

/// The alerts (in order) whose action is `action` and file path is `path`.
pub fn find<'a>(alerts: &'a [Value], action: &str, path: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["event"]["action"] == action && a["file"]["path"] == path)
        .collect()
}

/// What tests/fixtures/audit/scenario.sh must replay into, in order:
/// (action, outcome, path, target path, executable).
const SCENARIO: &[(&str, &str, &str, &str, &str)] = &[
    (
        "open_write",
        "success",
        "/etc/docker/daemon.json",
        "",
        "/usr/bin/dash",
    ),
    (
        "open_write",
        "success",
        "/etc/docker/with space.json",
        "",
        "/usr/bin/touch",
    ),
    (
        "open_write",
        "success",
        "/etc/docker/caf\u{e9}",
        "",
        "/usr/bin/touch",
    ),
    ("mkdir", "success", "/etc/docker/sub", "", "/usr/bin/mkdir"),
    (
        "open_write",
        "success",
        "/etc/docker/rel.json",
        "",
        "/usr/bin/touch",
    ),
    (
        "rename",
        "success",
        "/etc/docker/rel.json",
        "/etc/docker/renamed.json",
        "/usr/bin/mv",
    ),
    (
        "chmod",
        "success",
        "/etc/docker/renamed.json",
        "",
        "/usr/bin/chmod",
    ),
    (
        "chown",
        "success",
        "/etc/docker/renamed.json",
        "",
        "/usr/bin/chown",
    ),
    (
        "link",
        "success",
        "/etc/docker/renamed.json",
        "/etc/docker/hard.json",
        "/usr/bin/ln",
    ),
    (
        "symlink",
        "success",
        "/etc/passwd",
        "/etc/docker/sym.json",
        "/usr/bin/ln",
    ),
    (
        "open_write",
        "success",
        "/etc/docker/renamed.json",
        "",
        "/usr/bin/truncate",
    ),
    ("setxattr", "success", "/etc/docker/renamed.json", "", ""),
    (
        "chmod",
        "success",
        "/etc/docker/daemon.json",
        "",
        "/usr/bin/chmod",
    ),
    (
        "open_write",
        "failure",
        "/etc/docker/daemon.json",
        "",
        "/usr/bin/dash",
    ),
    (
        "unlink",
        "success",
        "/etc/docker/renamed.json",
        "",
        "/usr/bin/rm",
    ),
    (
        "unlink",
        "success",
        "/etc/docker/hard.json",
        "",
        "/usr/bin/rm",
    ),
    (
        "unlink",
        "success",
        "/etc/docker/sym.json",
        "",
        "/usr/bin/rm",
    ),
    (
        "unlink",
        "success",
        "/etc/docker/with space.json",
        "",
        "/usr/bin/rm",
    ),
    (
        "unlink",
        "success",
        "/etc/docker/caf\u{e9}",
        "",
        "/usr/bin/rm",
    ),
    ("unlink", "success", "/etc/docker/sub", "", "/usr/bin/rmdir"),
    (
        "connect",
        "success",
        "/run/dockwatch-capture/docker.sock",
        "",
        "",
    ),
];

/// Checks that `alerts` are exactly the scenario's events, with the
/// details that make them useful.
pub fn check_scenario(alerts: &[Value]) {
    // dockwatch's own reports (audit reconfigured, records lost) are
    // checked by the tests that cause them; here only the scenario's events.
    let alerts: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            !matches!(
                a["event"]["action"].as_str(),
                Some("audit_config" | "records_lost")
            )
        })
        .collect();
    let seen: Vec<(String, String, String, String, String)> = alerts
        .iter()
        .map(|a| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&a["event"]["action"]),
                s(&a["event"]["outcome"]),
                s(&a["file"]["path"]),
                s(&a["file"]["target_path"]),
                s(&a["process"]["executable"]),
            )
        })
        .collect();
    let expected: Vec<(String, String, String, String, String)> = SCENARIO
        .iter()
        .map(|(a, o, p, t, e)| {
            let seen_exe = seen
                .iter()
                .find(|s| s.0 == *a && s.2 == *p)
                .map(|s| s.4.clone())
                .unwrap_or_default();
            // Interpreters (python) live where the machine put them.
            let exe = if e.is_empty() {
                seen_exe
            } else {
                e.to_string()
            };
            (
                a.to_string(),
                o.to_string(),
                p.to_string(),
                t.to_string(),
                exe,
            )
        })
        .collect();
    assert_eq!(seen, expected, "replayed events differ from the scenario");

    let modes: Vec<&str> = alerts
        .iter()
        .filter(|a| a["event"]["action"] == "chmod")
        .map(|a| a["file"]["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["0640", "0600"], "chmod carries the new mode");
    let chown = alerts
        .iter()
        .find(|a| a["event"]["action"] == "chown")
        .unwrap();
    assert_eq!(chown["file"]["uid"], "65534", "chown carries the new owner");
    assert_eq!(chown["file"]["gid"], "65534");
    let refused = alerts
        .iter()
        .find(|a| a["event"]["outcome"] == "failure")
        .unwrap();
    assert_eq!(refused["event"]["errno"], 13, "EACCES");
    assert_eq!(refused["user"]["id"], "65534", "su nobody");
    for a in &alerts {
        assert!(a["process"]["pid"].as_u64().unwrap() > 0, "{a}");
        assert!(a["process"]["command_line"].is_string(), "{a}");
        assert!(a["event"]["id"].is_string(), "{a}");
    }
    let connect = alerts.last().unwrap();
    assert_eq!(connect["tags"], serde_json::json!(["sock"]));
}
