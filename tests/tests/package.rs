//! The Debian package end to end on this machine: `cargo xtask package`
//! builds it, `dpkg -i` installs it without starting anything (no systemd
//! here), the unit passes `systemd-analyze verify`, the unit's `ExecStart`
//! run by hand (inside the unit's capability bounding set) brings the daemon
//! up with the packaged config and rules and stops cleanly on SIGTERM, the
//! man pages render and the completions know the subcommands, and
//! `dpkg --purge` leaves nothing behind.
//!
//! One test, because building the release .deb is slow: each step needs the
//! installed package the previous one left.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dockwatch_tests::machine_lock;

const UNIT: &str = "/lib/systemd/system/dockwatch.service";

/// Where the package may leave traces; the dpkg and apt databases, which
/// record the install itself, are left out (and checked with `dpkg -s`).
const WATCHED: &[&str] = &["/etc", "/usr", "/var/lib", "/var/log", "/run", "/opt"];
const IGNORED: &[&str] = &[
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/log/apt",
    "/var/log/dpkg.log",
    "/var/log/audit",
    "/run/lock",
    "/run/user",
];

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn must(program: &str, args: &[&str]) -> String {
    let (ok, text) = run(program, args);
    assert!(ok, "`{program} {}` failed:\n{text}", args.join(" "));
    text
}

fn snapshot() -> BTreeSet<PathBuf> {
    let mut all = BTreeSet::new();
    for root in WATCHED {
        walk(Path::new(root), &mut all);
    }
    all
}

fn walk(dir: &Path, into: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if IGNORED.iter().any(|i| path.starts_with(i)) {
            continue;
        }
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        into.insert(path.clone());
        if is_dir {
            walk(&path, into);
        }
    }
}

/// The .deb: `$DOCKWATCH_DEB`, else built by `cargo xtask package`.
fn build_deb() -> PathBuf {
    if let Some(deb) = std::env::var_os("DOCKWATCH_DEB") {
        return PathBuf::from(deb);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .args(["xtask", "package"])
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo xtask package");
    assert!(out.status.success(), "cargo xtask package failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = PathBuf::from(stdout.lines().last().expect("xtask names the .deb").trim());
    assert!(deb.is_file(), "{} is not a file", deb.display());
    deb
}

fn exec_start() -> Vec<String> {
    let unit = std::fs::read_to_string(UNIT).expect("unit installed");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("unit has ExecStart=");
    line.split_whitespace().map(str::to_string).collect()
}

/// `CAP_BPF CAP_PERFMON` → `-all,+bpf,+perfmon` for setpriv.
fn bounding_set() -> String {
    let unit = std::fs::read_to_string(UNIT).expect("unit installed");
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("unit has CapabilityBoundingSet=");
    let mut set = "-all".to_string();
    for cap in caps.split_whitespace() {
        let name = cap.strip_prefix("CAP_").expect("CAP_ name").to_lowercase();
        set.push_str(",+");
        set.push_str(&name);
    }
    set
}

/// Starts `program args` (setpriv execs dockwatch, so the pid is the
/// daemon's), waits for the `ready` line on stderr, sends SIGTERM and
/// returns the exit status and everything it logged.
fn run_until_ready_then_term(program: &str, args: &[String]) -> (ExitStatus, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let (tx, rx) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            eprintln!("[dockwatch] {line}");
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !log.iter().any(|l: &String| l.contains("dockwatch ready")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait for dockwatch");
    let _ = reader.join();
    log.extend(rx.try_iter());
    (status, log.join("\n"))
}

struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "dockwatch"]);
    }
}

#[test]
fn deb_installs_runs_and_purges_clean() {
    let _lock = machine_lock();
    let deb = build_deb();
    let deb_arg = deb.display().to_string();
    // A leftover from an interrupted run would make the snapshot lie.
    let _ = run("dpkg", &["--purge", "dockwatch"]);
    // systemd-analyze leaves this marker; it is not the package's.
    let units_load = Path::new("/run/systemd/systemd-units-load");
    let had_units_load = units_load.exists();
    let before = snapshot();

    let _purge = Purge;
    let text = must("dpkg", &["-i", &deb_arg]);
    assert!(text.contains("Setting up dockwatch"), "{text}");
    assert!(
        !run("pgrep", &["-x", "dockwatch"]).0,
        "installing on a host without systemd must not start dockwatch"
    );
    let files = must("dpkg", &["-L", "dockwatch"]);
    for expected in [
        "/usr/bin/dockwatch",
        "/etc/dockwatch/config.toml",
        UNIT,
        "/etc/logrotate.d/dockwatch",
        "/usr/share/dockwatch/rules/10-docker-files.yaml",
        "/usr/share/man/man1/dockwatch.1",
        "/usr/share/man/man1/dockwatch-run.1",
        "/usr/share/bash-completion/completions/dockwatch",
        "/usr/share/zsh/vendor-completions/_dockwatch",
        "/usr/share/fish/vendor_completions.d/dockwatch.fish",
    ] {
        assert!(
            files.lines().any(|l| l == expected),
            "{expected} not in the package:\n{files}"
        );
    }
    // Local rules live in /etc/dockwatch/rules.d, which the package never
    // ships, so an upgrade cannot overwrite them.
    assert!(!files
        .lines()
        .any(|l| l.starts_with("/etc/dockwatch/rules.d")));
    let conffiles = must("dpkg-query", &["-W", "-f=${Conffiles}", "dockwatch"]);
    assert!(
        conffiles.contains("/etc/dockwatch/config.toml"),
        "{conffiles}"
    );

    let verify = must("systemd-analyze", &["verify", UNIT]);
    assert!(verify.trim().is_empty(), "systemd-analyze verify: {verify}");

    // The packaged config finds the packaged rules (no rules.d yet).
    let rules = must(
        "/usr/bin/dockwatch",
        &["rules", "list", "--config", "/etc/dockwatch/config.toml"],
    );
    assert!(rules.contains("docker"), "{rules}");

    // The unit's ExecStart, by hand, inside the unit's bounding set and
    // without new privileges, as systemd would run it.
    let exec = exec_start();
    assert_eq!(exec[0], "/usr/bin/dockwatch");
    let bset = bounding_set();
    let mut args = vec![
        "--bounding-set".to_string(),
        bset,
        "--inh-caps".to_string(),
        "-all".to_string(),
        "--no-new-privs".to_string(),
        "--".to_string(),
    ];
    args.extend(exec);
    let (status, log) = run_until_ready_then_term("setpriv", &args);
    assert!(log.contains("dockwatch ready"), "no ready line:\n{log}");
    assert!(!log.contains("missing privilege"), "{log}");
    assert_eq!(status.code(), Some(0), "exit after SIGTERM:\n{log}");

    // Man pages render; completions know the subcommands.
    let man = must(
        "man",
        &["-l", "-P", "cat", "/usr/share/man/man1/dockwatch.1"],
    );
    assert!(man.contains("dockwatch"), "{man}");
    assert!(man.contains("replay"), "{man}");
    for file in [
        "/usr/share/bash-completion/completions/dockwatch",
        "/usr/share/zsh/vendor-completions/_dockwatch",
        "/usr/share/fish/vendor_completions.d/dockwatch.fish",
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        for sub in ["run", "replay", "check", "rules"] {
            assert!(text.contains(sub), "{file} does not mention {sub}");
        }
    }

    let installed: Vec<String> = must("dpkg", &["-L", "dockwatch"])
        .lines()
        .map(str::to_string)
        .collect();
    must("dpkg", &["--purge", "dockwatch"]);
    if !had_units_load {
        let _ = std::fs::remove_file(units_load);
    }
    let (still, _) = run("dpkg", &["-s", "dockwatch"]);
    assert!(!still, "dpkg still knows dockwatch after --purge");
    let after = snapshot();
    let left: Vec<_> = after.difference(&before).collect();
    assert!(left.is_empty(), "left behind after purge: {left:?}");
    for path in installed {
        let p = Path::new(&path);
        if !p.is_dir() {
            assert!(!p.exists(), "{path} survived the purge");
        }
    }
}
