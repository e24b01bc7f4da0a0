//! `dockwatch rules lint`: broken rule files are rejected with the exact
//! file:line:col of the mistake, a message saying what to fix, and exit
//! code 2; the shipped rules pass. Runs the real binary; no machine state.

use std::path::Path;

use dockwatch_tests::{run_cli, shipped_rules};

/// A valid rule to surround the broken parts with.
const GOOD: &str = "\
rules:
  - id: good
    name: Good rule
    severity: warning
    paths: [/etc/docker]
    actions: [open_write]
";

struct Case {
    what: &'static str,
    /// (file name, contents), loaded in name order.
    files: &'static [(&'static str, &'static str)],
    /// `file:line:col` expected, file relative to the rules directory.
    at: &'static str,
    /// A fragment of the message.
    says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "unknown field",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    pathz: [/etc/docker]\n    actions: [open_write]\n",
        )],
        at: "10.yaml:6:5",
        says: "unknown field `pathz`, expected one of",
    },
    Case {
        what: "unknown top-level section",
        files: &[("10.yaml", "rule:\n  - id: r1\n")],
        at: "10.yaml:1:1",
        says: "unknown field `rule`",
    },
    Case {
        what: "missing name",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write]\n",
        )],
        at: "10.yaml:2:5",
        says: "missing field `name`",
    },
    Case {
        what: "YAML syntax error",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker\n    actions: [open_write]\n",
        )],
        at: "10.yaml:6:12",
        says: "did not find expected ',' or ']'",
    },
    Case {
        what: "list name given twice in one file",
        files: &[("10.yaml", "lists:\n  engine: [/usr/bin/dockerd]\n  engine: [/usr/bin/podman]\n")],
        at: "10.yaml:3:3",
        says: "list `engine` is given twice in this section",
    },
    Case {
        what: "field given twice in one rule",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    paths: [/etc/containerd]\n    actions: [open_write]\n",
        )],
        at: "10.yaml:2:5",
        says: "duplicate field `paths`",
    },
    Case {
        what: "duplicate id across files",
        files: &[("10-a.yaml", GOOD), ("20-b.yaml", GOOD)],
        at: "20-b.yaml:2:9",
        says: "duplicate rule id `good`, first defined at ",
    },
    Case {
        what: "bad glob",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker, \"/etc/docker/[abc\"]\n    actions: [open_write]\n",
        )],
        at: "10.yaml:5:26",
        says: "invalid glob `/etc/docker/[abc`",
    },
    Case {
        what: "relative path can never match",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths:\n      - /etc/docker\n      - etc/containerd\n    actions: [open_write]\n",
        )],
        at: "10.yaml:7:9",
        says: "path `etc/containerd` is relative; events carry absolute paths, so it can never match",
    },
    Case {
        what: "unnormalized path can never match",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/../docker]\n    actions: [open_write]\n",
        )],
        at: "10.yaml:5:13",
        says: "is not normalized",
    },
    Case {
        what: "glob without a literal directory",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [\"/**/docker.sock\"]\n    actions: [connect]\n",
        )],
        at: "10.yaml:5:13",
        says: "has no fixed directory before its first wildcard",
    },
    Case {
        what: "unknown list",
        files: &[(
            "10.yaml",
            "lists:\n  engine: [/usr/bin/dockerd]\nrules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write]\n    except:\n      - exe: [$engin]\n",
        )],
        at: "10.yaml:10:15",
        says: "unknown list `$engin`; define it under `lists:` (known lists: engine)",
    },
    Case {
        what: "bad item inside a list is reported where the list defines it",
        files: &[
            ("00-lists.yaml", "lists:\n  sockets:\n    - /run/docker.sock\n    - docker.sock\n"),
            (
                "10.yaml",
                "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [$sockets]\n    actions: [connect]\n",
            ),
        ],
        at: "00-lists.yaml:4:7",
        says: "path `docker.sock` is relative",
    },
    Case {
        what: "unknown action",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write, opne]\n",
        )],
        at: "10.yaml:6:27",
        says: "unknown action `opne`; one of: open_write, write,",
    },
    Case {
        what: "action dockwatch raises itself",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [records_lost]\n",
        )],
        at: "10.yaml:6:15",
        says: "so a rule can never match it",
    },
    Case {
        what: "unknown severity",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: high\n    paths: [/etc/docker]\n    actions: [open_write]\n",
        )],
        at: "10.yaml:4:15",
        says: "unknown severity `high`; use a syslog level: emergency, alert, critical",
    },
    Case {
        what: "bad rule id",
        files: &[(
            "10.yaml",
            "rules:\n  - id: has space\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write]\n",
        )],
        at: "10.yaml:2:9",
        says: "rule id `has space` must be",
    },
    Case {
        what: "modify of an unknown rule",
        files: &[("10.yaml", GOOD), ("20.yaml", "modify:\n  - id: goood\n    enabled: false\n")],
        at: "20.yaml:2:9",
        says: "no rule with id `goood` to modify",
    },
    Case {
        what: "extend of an unknown list",
        files: &[("10.yaml", "extend_lists:\n  engine: [/usr/bin/podman]\n")],
        at: "10.yaml:2:3",
        says: "no list `engine` to extend",
    },
    Case {
        what: "list defined twice",
        files: &[
            ("10.yaml", "lists:\n  engine: [/usr/bin/dockerd]\n"),
            ("20.yaml", "# more\nlists:\n  engine: [/usr/bin/podman]\n"),
        ],
        at: "20.yaml:3:3",
        says: "list `engine` is already defined at",
    },
    Case {
        what: "comm longer than the kernel keeps",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write]\n    process:\n      comm: [containerd-shim-runc-v2]\n",
        )],
        at: "10.yaml:8:14",
        says: "longer than 15 bytes; the kernel truncates comm to 15, so it can never match: use `containerd-shim`",
    },
    Case {
        what: "relative executable",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write]\n    except:\n      - exe: [dockerd]\n",
        )],
        at: "10.yaml:8:15",
        says: "executable `dockerd` is not an absolute path",
    },
    Case {
        what: "non-numeric uid",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write]\n    process:\n      uid: [root]\n",
        )],
        at: "10.yaml:8:13",
        says: "uid `root` is not a number",
    },
    Case {
        what: "empty exception",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write]\n    except:\n      - {}\n",
        )],
        at: "10.yaml:8:9",
        says: "empty exception: it would silence the rule for every event",
    },
    Case {
        what: "exception for actions the rule does not have",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write]\n    except:\n      - actions: [chmod]\n        exe: [/usr/bin/dockerd]\n",
        )],
        at: "10.yaml:8:9",
        says: "none of these actions is among the rule's actions",
    },
    Case {
        what: "empty paths",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: []\n    actions: [open_write]\n",
        )],
        at: "10.yaml:5:5",
        says: "the rule has no paths, so it can never match",
    },
    Case {
        what: "no paths on a path action",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    actions: [open_write]\n",
        )],
        at: "10.yaml:2:9",
        says: "the rule has no `paths:`; its actions happen to files",
    },
    Case {
        what: "paths on an engine action",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [container_exec]\n",
        )],
        at: "10.yaml:5:5",
        says: "engine actions (container_exec) have no path, so `paths:` can never match",
    },
    Case {
        what: "engine and path actions in one rule",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    paths: [/etc/docker]\n    actions: [open_write, container_cp]\n",
        )],
        at: "10.yaml:6:5",
        says: "engine actions (container_cp) are about containers, images and plugins, not paths, and cannot share a rule with path actions (open_write)",
    },
    Case {
        what: "exception paths on an engine rule",
        files: &[(
            "10.yaml",
            "rules:\n  - id: r1\n    name: x\n    severity: warning\n    actions: [container_exec]\n    except:\n      - paths: [/etc]\n",
        )],
        at: "10.yaml:7:9",
        says: "an exception's `paths:` can never apply",
    },
];

fn lint(dir: &Path) -> (i32, String, String) {
    run_cli([
        "rules".as_ref(),
        "lint".as_ref(),
        "--rules".as_ref(),
        dir.as_os_str(),
    ])
}

#[test]
fn broken_rule_files_are_rejected_at_their_position() {
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in case.files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let (code, stdout, stderr) = lint(dir.path());
        let expected = format!("{}/{}: ", dir.path().display(), case.at);
        let ok = code == 2
            && stdout.is_empty()
            && stderr.contains(&expected)
            && stderr.contains(case.says)
            && !stderr.contains("panicked");
        if !ok {
            failures.push(format!(
                "{}: exit {code}, want 2 and {expected:?} + {:?}; stderr: {stderr}",
                case.what, case.says
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn shipped_rules_pass_lint() {
    let (code, stdout, stderr) = lint(&shipped_rules());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("no problems"), "{stdout}");
    assert!(stdout.contains(" 33 rules (0 disabled)"), "{stdout}");
}

#[test]
fn missing_rules_directory_is_a_clear_error() {
    let (code, _, stderr) = lint(Path::new("/nonexistent/rules.d"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent/rules.d: cannot read the rules directory"),
        "{stderr}"
    );
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = lint(empty.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("no rule files (*.yaml)"), "{stderr}");
}

#[test]
fn list_shows_every_rule_with_state() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("10.yaml"), GOOD).unwrap();
    std::fs::write(
        dir.path().join("20.yaml"),
        "modify:\n  - id: good\n    enabled: false\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run_cli([
        "rules".as_ref(),
        "list".as_ref(),
        "--rules".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("good "))
        .unwrap_or_else(|| panic!("no row for `good`:\n{stdout}"));
    assert!(row.contains("warning"), "{row}");
    assert!(row.contains("disabled"), "{row}");
    assert!(row.contains("open_write"), "{row}");
    assert!(stdout.contains("10.yaml:2:9"), "{stdout}");

    let (code, stdout, _) = run_cli([
        "rules".as_ref(),
        "list".as_ref(),
        "--rules".as_ref(),
        shipped_rules().as_os_str(),
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("docker-sock-perms"), "{stdout}");
    assert!(stdout.contains("cis:3.15"), "{stdout}");
}
