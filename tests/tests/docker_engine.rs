//! `dockwatch check` against containers a real Docker engine made: a risky
//! `docker create` is a finding with its CIS id, a hardened one is none.

use dockwatch_tests::docker::{Engine, IMAGE};
use dockwatch_tests::{machine_lock, run_cli};
use serde_json::Value;

/// The failing checks of `dockwatch check --json` whose key names `name`.
fn failing_for(name: &str) -> Vec<(String, String)> {
    let (_code, stdout, stderr) = run_cli(["check", "--json"]);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}): {stdout}\n{stderr}"));
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == "fail")
        .filter(|c| {
            c["key"]
                .as_str()
                .is_some_and(|k| k.starts_with(&format!("{name} (")))
        })
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn risky_containers_are_findings_and_a_hardened_one_is_none() {
    let _lock = machine_lock();
    let engine = Engine::start();
    engine.docker(&["create", "--privileged", "--name", "dw-priv", IMAGE, "true"]);
    engine.docker(&[
        "create", "-v", "/:/host", "--name", "dw-root", IMAGE, "true",
    ]);
    engine.docker(&["create", "--pid=host", "--name", "dw-pid", IMAGE, "true"]);
    engine.docker(&[
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

    let ids = |name: &str| -> Vec<String> {
        let mut ids: Vec<String> = failing_for(name).into_iter().map(|(id, _)| id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids("dw-priv"), ["5.4"]);
    assert_eq!(ids("dw-root"), ["5.31", "5.5", "5.5"]);
    assert_eq!(ids("dw-pid"), ["5.15"]);
    assert_eq!(ids("dw-plain"), Vec::<String>::new());
    // The positive control of the negative: the hardened container is in
    // the report, passing.
    let (_, stdout, _) = run_cli(["check", "--json"]);
    assert!(stdout.contains("dw-plain ("), "{stdout}");
}

/// CIS 1.1.3 judges the engine that runs, found through /proc: Debian's
/// docker.io runs /usr/sbin/dockerd, where no /usr/bin/dockerd exists.
#[test]
fn the_audit_watch_check_names_the_running_engine() {
    let _lock = machine_lock();
    let engine = Engine::start();
    let exe = std::fs::read_link(format!("/proc/{}/exe", engine.pid())).expect("dockerd's exe");
    let (_code, stdout, stderr) = run_cli(["check", "--json"]);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}): {stdout}\n{stderr}"));
    let found: Vec<&Value> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["id"] == "1.1.3")
        .collect();
    assert_eq!(found.len(), 1, "{report:#}");
    let evidence = found[0]["evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&exe.display().to_string()),
        "1.1.3 names {}: {:#}",
        exe.display(),
        found[0]
    );
}

/// CIS 1.2.2 from the engine itself: the version it reports on its socket,
/// against `posture.min_engine_version`, both ways.
#[test]
fn the_engine_version_is_judged_against_the_configured_minimum() {
    let _lock = machine_lock();
    let engine = Engine::start();
    let reported = engine.docker(&["version", "--format", "{{.Server.Version}}"]);
    let reported = reported.trim();
    let dir = tempfile::tempdir().unwrap();
    let judged = |minimum: &str| -> Value {
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!("[posture]\nmin_engine_version = \"{minimum}\"\n"),
        )
        .unwrap();
        let (_code, stdout, stderr) =
            run_cli(["check", "--json", "--config", config.to_str().unwrap()]);
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}): {stdout}\n{stderr}"));
        let found: Vec<Value> = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["id"] == "1.2.2")
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "{report:#}");
        found[0].clone()
    };
    let old_enough = judged("1.0.0");
    assert_eq!(old_enough["status"], "pass", "{old_enough:#}");
    assert_eq!(old_enough["value"], reported, "{old_enough:#}");
    let too_old = judged("999.0.0");
    assert_eq!(too_old["status"], "warn", "{too_old:#}");
    assert!(
        too_old["evidence"]
            .as_str()
            .unwrap()
            .contains("older than posture.min_engine_version 999.0.0"),
        "{too_old:#}"
    );
}
