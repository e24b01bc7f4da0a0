//! What a user sees when the command line, rules or privileges are wrong:
//! a message naming the problem and exit code 2, never a panic.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use dockwatch_tests::{dockwatch_bin, run_cli, shipped_rules};

#[test]
fn missing_rules_directory_is_named_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-rules");
    let (code, _, stderr) = run_cli(["rules", "lint", "--rules", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(
        stderr.contains(missing.to_str().unwrap()),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn unparsable_rule_file_is_located_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "rules:\n  - id: x\n    name: [unclosed\n").unwrap();
    let (code, _, stderr) = run_cli(["rules", "lint", "--rules", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "stderr: {stderr}");
    let located = format!("{}:", file.display());
    assert!(stderr.contains(&located), "no file:line:col in {stderr}");
    let rest = &stderr[stderr.find(&located).unwrap() + located.len()..];
    let mut nums = rest.split(':').take(2).map(|n| n.trim().parse::<u32>());
    assert!(
        matches!((nums.next(), nums.next()), (Some(Ok(_)), Some(Ok(_)))),
        "no line:col after the file name in {stderr}"
    );
}

#[test]
fn run_with_missing_rules_exits_2() {
    let (code, _, stderr) = run_cli(["run", "--rules", "/nonexistent/dockwatch-rules"]);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(
        stderr.contains("/nonexistent/dockwatch-rules"),
        "stderr: {stderr}"
    );
}

#[test]
fn unknown_output_url_is_a_usage_error() {
    let rules = shipped_rules();
    let (code, _, stderr) = run_cli([
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--output",
        "carrier-pigeon://coop",
        "/dev/null",
    ]);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(stderr.contains("carrier-pigeon://coop"), "stderr: {stderr}");
}

#[test]
fn run_without_root_names_the_missing_privilege() {
    // A copy of the binary nobody can execute, wherever the checkout lives.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("dockwatch");
    std::fs::copy(dockwatch_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(&bin)
        .args(["run", "--rules", "/nonexistent"])
        .current_dir(dir.path())
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("missing privilege"), "stderr: {stderr}");
    assert!(stderr.contains("CAP_BPF"), "stderr: {stderr}");
    assert!(stderr.contains("run dockwatch as root"), "stderr: {stderr}");
}

#[test]
fn an_unknown_hook_set_is_located_in_the_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[sources.ebpf]\nhooks = \"kprobes\"\n").unwrap();
    let (code, _, stderr) = run_cli([
        "run",
        "--config",
        config.to_str().unwrap(),
        "--rules",
        shipped_rules().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "stderr: {stderr}");
    let located = format!("{}:2:", config.display());
    assert!(stderr.contains(&located), "no {located} in {stderr}");
    for word in ["kprobes", "auto", "inode", "syscalls"] {
        assert!(stderr.contains(word), "no {word} in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
