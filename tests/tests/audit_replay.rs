//! `dockwatch replay` over archived audit logs: the shared ENRICHED
//! capture, the RAW and ENRICHED captures of scenario.sh, rotated and
//! compressed generations in any order, stdin, and bad input.

mod audit_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use audit_common::{by_serial, check_scenario, replay};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/audit")
        .join(name)
}

/// The shared capture's `key="docker"` syscall events: serial, action,
/// path, target, pid, ppid, executable.
const SHARED: &[(u64, &str, &str, &str, u64, u64, &str)] = &[
    (
        59,
        "open_write",
        "/etc/docker/daemon.json",
        "",
        16776,
        16732,
        "/usr/bin/touch",
    ),
    (
        60,
        "open_write",
        "/etc/docker/daemon.json",
        "",
        16732,
        16731,
        "/usr/bin/bash",
    ),
    (
        61,
        "chmod",
        "/etc/docker/daemon.json",
        "",
        16777,
        16732,
        "/usr/bin/chmod",
    ),
    (
        62,
        "chown",
        "/etc/docker/daemon.json",
        "",
        16778,
        16732,
        "/usr/bin/chown",
    ),
    (
        63,
        "rename",
        "/etc/docker/daemon.json",
        "/etc/docker/daemon.json.old",
        16779,
        16732,
        "/usr/bin/mv",
    ),
    (
        64,
        "rename",
        "/etc/docker/daemon.json.old",
        "/etc/docker/daemon.json",
        16780,
        16732,
        "/usr/bin/mv",
    ),
    (
        65,
        "open_write",
        "/etc/docker/sedNtlUC9",
        "",
        16781,
        16732,
        "/usr/bin/sed",
    ),
    // fchown(fd): name=(null); the path comes from the inode seen at 65.
    (
        66,
        "chown",
        "/etc/docker/sedNtlUC9",
        "",
        16781,
        16732,
        "/usr/bin/sed",
    ),
    (
        67,
        "setxattr",
        "/etc/docker/sedNtlUC9",
        "",
        16781,
        16732,
        "/usr/bin/sed",
    ),
    (
        68,
        "rename",
        "/etc/docker/sedNtlUC9",
        "/etc/docker/daemon.json",
        16781,
        16732,
        "/usr/bin/sed",
    ),
    (
        69,
        "open_write",
        "/etc/default/docker",
        "",
        16732,
        16731,
        "/usr/bin/bash",
    ),
    (
        70,
        "mkdir",
        "/var/lib/docker",
        "",
        16783,
        16732,
        "/usr/bin/mkdir",
    ),
    (
        71,
        "mkdir",
        "/var/lib/docker/containers",
        "",
        16783,
        16732,
        "/usr/bin/mkdir",
    ),
    (
        72,
        "open_write",
        "/usr/bin/runc",
        "",
        16784,
        16732,
        "/usr/bin/cp",
    ),
    (
        73,
        "chmod",
        "/usr/bin/runc",
        "",
        16785,
        16732,
        "/usr/bin/chmod",
    ),
    (
        74,
        "unlink",
        "/usr/bin/runc",
        "",
        16786,
        16732,
        "/usr/bin/rm",
    ),
    (
        75,
        "open_write",
        "/lib/systemd/system/docker.service",
        "",
        16732,
        16731,
        "/usr/bin/bash",
    ),
    (
        76,
        "mkdir",
        "/run/containerd",
        "",
        16787,
        16732,
        "/usr/bin/mkdir",
    ),
    (
        77,
        "symlink",
        "/dev/null",
        "/run/containerd/containerd.sock",
        16788,
        16732,
        "/usr/bin/ln",
    ),
    (
        79,
        "open_write",
        "/etc/containerd/config.toml",
        "",
        16732,
        16731,
        "/usr/bin/bash",
    ),
    (
        80,
        "open_write",
        "/etc/docker/daemon.json",
        "",
        16792,
        16732,
        "/root/.pyenv/versions/3.11.7/bin/python3.11",
    ),
    (
        119,
        "open_write",
        "/var/lib/docker/containers/abc/config.v2.json",
        "",
        17145,
        17144,
        "/usr/bin/bash",
    ),
    (
        120,
        "open_write",
        "/usr/lib/systemd/system/docker.service",
        "",
        17145,
        17144,
        "/usr/bin/bash",
    ),
];

#[test]
fn shared_enriched_capture_replays_into_the_right_events() {
    let log = dockwatch_tests::shared_fixture("audit/enriched-docker-watches.log");
    let (code, alerts, stderr) = replay(&[&log]);
    assert_eq!(code, 0, "{stderr}");
    // The capture skips serials 81 to 116: reported as lost, nothing else.
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].ends_with("36 audit events (serial gap) before audit(1795869716.002:117)"),
        "{stderr}"
    );
    // ... and as an alert of its own, beside one alert per event.
    let (lost, alerts): (Vec<_>, Vec<_>) = alerts
        .into_iter()
        .partition(|a| a["event"]["action"] == "records_lost");
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert_eq!(lost[0]["rule"]["id"], "dockwatch-records-lost");
    assert_eq!(lost[0]["dockwatch"]["lost"]["count"], 36, "{:#}", lost[0]);
    // auditctl -w, a refused auditctl -W, auditctl -w: one alert each, the
    // removal as tampering, each naming auditctl's pid.
    let (config, alerts): (Vec<_>, Vec<_>) = alerts
        .into_iter()
        .partition(|a| a["event"]["action"] == "audit_config");
    let config: Vec<(&str, &str, u64)> = config
        .iter()
        .map(|a| {
            (
                a["rule"]["id"].as_str().unwrap(),
                a["event"]["outcome"].as_str().unwrap(),
                a["process"]["pid"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        config,
        [
            ("audit-config-changed", "success", 16790),
            ("audit-tampered", "failure", 17150),
            ("audit-config-changed", "success", 17152),
        ]
    );
    assert_eq!(alerts.len(), SHARED.len(), "{alerts:#?}");
    for &(serial, action, path, target, pid, ppid, exe) in SHARED {
        let a = by_serial(&alerts, serial).unwrap_or_else(|| panic!("no event {serial}"));
        let what = format!("event {serial}: {a}");
        assert_eq!(a["event"]["action"], action, "{what}");
        assert_eq!(a["event"]["outcome"], "success", "{what}");
        assert_eq!(
            a["event"]["provider"],
            serde_json::json!(["audit"]),
            "{what}"
        );
        assert_eq!(a["file"]["path"], path, "{what}");
        if target.is_empty() {
            assert!(a["file"].get("target_path").is_none(), "{what}");
        } else {
            assert_eq!(a["file"]["target_path"], target, "{what}");
        }
        assert_eq!(a["process"]["pid"], pid, "{what}");
        assert_eq!(a["process"]["parent"]["pid"], ppid, "{what}");
        assert_eq!(a["process"]["executable"], exe, "{what}");
        assert_eq!(a["user"]["id"], "0", "{what}");
        // auid=4294967295 is "unset": left out, not invented.
        assert!(a["user"].get("audit").is_none(), "{what}");
        assert_eq!(a["tags"], serde_json::json!(["docker"]), "{what}");
    }
    let chmod = by_serial(&alerts, 73).unwrap();
    assert_eq!(chmod["file"]["mode"], "0755");
    assert_eq!(chmod["process"]["command_line"], "chmod 755 /usr/bin/runc");
    let renamed = by_serial(&alerts, 68).unwrap();
    assert_eq!(renamed["file"]["inode"], "876906");
    assert_eq!(renamed["file"]["device"], "254:0");
}

#[test]
fn raw_and_enriched_captures_replay_into_the_scenario() {
    for name in ["scenario-raw.log", "scenario-enriched.log"] {
        let (code, alerts, stderr) = replay(&[&fixture(name)]);
        assert_eq!(code, 0, "{name}: {stderr}");
        check_scenario(&alerts);
    }
}

/// Splits `text` into `n` parts at line boundaries (not at event
/// boundaries: an event may straddle two files, as it can in a rotation).
fn split_lines(text: &[u8], n: usize) -> Vec<Vec<u8>> {
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let per = lines.len().div_ceil(n);
    lines.chunks(per).map(|c| c.concat()).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout
}

#[test]
fn rotated_and_compressed_generations_in_any_order() {
    let text = std::fs::read(fixture("scenario-enriched.log")).unwrap();
    let parts = split_lines(&text, 4);
    assert_eq!(parts.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    // audit.log.3 is the oldest generation; .2 is compressed under a name
    // that does not say so, .1 under one that does.
    let names = ["audit.log.3", "audit.log.2", "audit.log.1.gz", "audit.log"];
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
    for (i, (part, path)) in parts.iter().zip(&paths).enumerate() {
        let bytes = if i == 1 || i == 2 {
            gzip(part)
        } else {
            part.clone()
        };
        std::fs::write(path, bytes).unwrap();
    }
    let shuffled = [&paths[2], &paths[0], &paths[3], &paths[1]];
    let files: Vec<&Path> = shuffled.iter().map(|p| p.as_path()).collect();
    let (code, alerts, stderr) = replay(&files);
    assert_eq!(code, 0, "{stderr}");
    check_scenario(&alerts);
}

#[test]
fn stdin_is_a_log_too() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = audit_common::match_all_rules(tmp.path());
    let log = std::fs::File::open(fixture("scenario-raw.log")).unwrap();
    let out = Command::new(dockwatch_tests::dockwatch_bin())
        .args(["replay", "--rules", rules.to_str().unwrap(), "-"])
        .stdin(log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    check_scenario(&alerts);
}

#[test]
fn bad_input_is_warned_about_by_file_and_line_and_processing_goes_on() {
    let text = std::fs::read(fixture("scenario-raw.log")).unwrap();
    let mut lines: Vec<Vec<u8>> = text
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    // Between events (before a SYSCALL record), so no event loses records.
    let before_syscall: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with(b"type=SYSCALL"))
        .map(|(i, _)| i)
        .collect();
    let mut binary: Vec<u8> = (0..=255u8)
        .filter(|&b| b != b'\n')
        .cycle()
        .take(3000)
        .collect();
    binary.push(b'\n');
    let mut huge = vec![b'x'; 1 << 20];
    huge.push(b'\n');
    let inserts: Vec<(usize, Vec<u8>)> = vec![
        (
            before_syscall[3],
            b"type=SYSCALL msg=audit(17958802".to_vec(),
        ),
        (before_syscall[6], binary),
        (before_syscall[9], huge),
        (
            before_syscall[12],
            b"type=PATH msg=audit(1795880269.0x1:77): item=0\n".to_vec(),
        ),
    ];
    for (at, mut bad) in inserts.into_iter().rev() {
        if !bad.ends_with(b"\n") {
            bad.push(b'\n');
        }
        lines.insert(at, bad);
    }
    let bad_line_numbers: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            !l.starts_with(b"type=") || l.len() > 9000 || l.windows(3).any(|w| w == b"0x1")
        })
        .map(|(i, _)| i + 1)
        .chain(
            lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.as_slice() == b"type=SYSCALL msg=audit(17958802\n")
                .map(|(i, _)| i + 1),
        )
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("audit.log");
    let mut bytes = lines.concat();
    // A truncated last line, as a crash mid-write leaves it.
    bytes.extend_from_slice(b"type=CWD msg=audit(1795880269.999:9999): cwd=\"/");
    std::fs::write(&damaged, &bytes).unwrap();
    let last_line = lines.len() + 1;
    let not_a_log = dir.path().join("passwd");
    std::fs::copy("/etc/passwd", &not_a_log).unwrap();

    let (code, alerts, stderr) = replay(&[&damaged, &not_a_log]);
    assert_eq!(code, 0, "bad lines are warnings, not errors: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    check_scenario(&alerts);
    for n in &bad_line_numbers {
        let located = format!("{}:{n}: ", damaged.display());
        assert!(
            stderr.contains(&located),
            "no warning at {located} in:\n{stderr}"
        );
    }
    let truncated = format!(
        "{}:{last_line}: the last line has no newline",
        damaged.display()
    );
    assert!(
        stderr.contains(&truncated),
        "no {truncated:?} in:\n{stderr}"
    );
    assert!(
        stderr.contains("1048577-byte line") || stderr.contains("1048576-byte line"),
        "the huge line is named with its size:\n{stderr}"
    );
    let passwd = format!("{}:1: skipped: not an audit record", not_a_log.display());
    assert!(stderr.contains(&passwd), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: no audit records at all", not_a_log.display())),
        "{stderr}"
    );
}

#[test]
fn a_damaged_gzip_file_costs_only_itself() {
    let text = std::fs::read(fixture("scenario-raw.log")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("audit.log");
    std::fs::write(&good, &text).unwrap();
    let mut gz = gzip(b"type=CWD msg=audit(1.000:1): cwd=\"/\"\n");
    gz.truncate(gz.len() / 2);
    gz.extend_from_slice(b"garbage after the cut");
    let bad = dir.path().join("audit.log.1.gz");
    std::fs::write(&bad, gz).unwrap();
    let (code, alerts, stderr) = replay(&[&bad, &good]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    check_scenario(&alerts);
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let (code, _, stderr) = replay(&[Path::new("/nonexistent/audit.log")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/nonexistent/audit.log"), "{stderr}");
}
