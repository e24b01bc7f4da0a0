//! `cargo xtask bench matcher`: events per second through the rule matcher
//! on one core, with the shipped rules and with 1,000 generated rules, as
//! ratios against baselines measured in the same run: an empty rule set
//! (the cost of the call itself) and a naive matcher that scans all 1,000
//! rules for every event (what the index saves).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dockwatch::alert::RuleRef;
use dockwatch::event::{Action, Event, FileRef, Process, Source};
use dockwatch::rules::RuleSet;
use globset::{GlobBuilder, GlobMatcher};

/// Events per timed pass.
const EVENTS: usize = 2_000_000;
/// Timed passes; the best counts.
const PASSES: usize = 5;
const GENERATED: usize = 1000;

fn main() {
    pin_to_one_cpu();
    let shipped_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let shipped = RuleSet::load_dir(&shipped_dir).expect("shipped rules load");

    let generated = generate(GENERATED);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("10-generated.yaml"), &generated.yaml).unwrap();
    let thousand = RuleSet::load_dir(dir.path()).expect("generated rules load");
    assert_eq!(thousand.len(), GENERATED);

    let empty_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(empty_dir.path().join("empty.yaml"), "rules: []\n").unwrap();
    let empty = RuleSet::load_dir(empty_dir.path()).expect("empty rule set loads");

    let events = event_mix();
    let hits = |rules: &RuleSet| {
        let mut out = Vec::new();
        events
            .iter()
            .map(|e| {
                out.clear();
                rules.matches(e, &mut out);
                out.len()
            })
            .sum::<usize>()
    };
    let naive_hits: usize = events.iter().map(|e| generated.naive_matches(e)).sum();
    println!(
        "bench matcher: {} distinct events cycled to {EVENTS} per pass, best of {PASSES}, one CPU",
        events.len()
    );
    println!(
        "  matches per {} events: shipped {}, generated {}, naive {}",
        events.len(),
        hits(&shipped),
        hits(&thousand),
        naive_hits
    );

    let empty_t = time(|| run_indexed(&empty, &events));
    let shipped_t = time(|| run_indexed(&shipped, &events));
    let thousand_t = time(|| run_indexed(&thousand, &events));
    let naive_t = time(|| run_naive(&generated, &events));

    let row = |name: &str, t: Duration| {
        let ns = t.as_secs_f64() * 1e9 / EVENTS as f64;
        println!(
            "  {name:<42} {ns:>8.1} ns/event  {:>6.2} M events/s  {:>6.1}x empty",
            EVENTS as f64 / t.as_secs_f64() / 1e6,
            t.as_secs_f64() / empty_t.as_secs_f64()
        );
    };
    row("baseline: empty rule set", empty_t);
    row(&format!("shipped rules ({})", shipped.len()), shipped_t);
    row(&format!("{GENERATED} generated rules, indexed"), thousand_t);
    row(&format!("baseline: {GENERATED} rules, naive scan"), naive_t);
    println!(
        "  1,000 rules cost {:.2}x the shipped set; the index is {:.1}x faster than a scan",
        thousand_t.as_secs_f64() / shipped_t.as_secs_f64(),
        naive_t.as_secs_f64() / thousand_t.as_secs_f64()
    );
}

fn run_indexed(rules: &RuleSet, events: &[Event]) -> usize {
    let mut out: Vec<&Arc<RuleRef>> = Vec::with_capacity(8);
    let mut total = 0;
    for event in events.iter().cycle().take(EVENTS) {
        out.clear();
        rules.matches(black_box(event), &mut out);
        total += out.len();
    }
    total
}

fn run_naive(rules: &Generated, events: &[Event]) -> usize {
    let mut total = 0;
    for event in events.iter().cycle().take(EVENTS) {
        total += rules.naive_matches(black_box(event));
    }
    total
}

fn time(mut pass: impl FnMut() -> usize) -> Duration {
    black_box(pass()); // warm caches and branch predictors
    (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            black_box(pass());
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// Rules in the shapes people write: directory subtrees, globs under a
/// fixed directory, exceptions on the executable; varied actions.
struct Generated {
    yaml: String,
    naive: Vec<NaiveRule>,
}

struct NaiveRule {
    actions: u64,
    subtrees: Vec<Vec<u8>>,
    globs: Vec<GlobMatcher>,
}

const ACTION_SETS: &[&[&str]] = &[
    &[
        "open_write",
        "write",
        "truncate",
        "rename",
        "unlink",
        "create",
    ],
    &["chmod", "chown", "setxattr"],
    &["connect"],
    &["open_write", "chmod", "chown", "rename", "unlink"],
];

fn generate(count: usize) -> Generated {
    let mut yaml = String::from("rules:\n");
    let mut naive = Vec::with_capacity(count);
    for i in 0..count {
        let (paths, globs): (Vec<String>, Vec<String>) = match i % 10 {
            0..=5 => (
                vec![format!("/srv/svc{i}/conf"), format!("/etc/app{i}")],
                vec![],
            ),
            6..=8 => (vec![], vec![format!("/opt/vendor{i}/**/*.conf")]),
            _ => (vec![], vec![format!("/usr/local/bin/tool{i}-*")]),
        };
        let actions = ACTION_SETS[i % ACTION_SETS.len()];
        let quoted: Vec<String> = paths
            .iter()
            .chain(&globs)
            .map(|p| format!("\"{p}\""))
            .collect();
        yaml.push_str(&format!(
            "  - id: gen-{i}\n    name: generated rule {i}\n    severity: info\n    paths: [{}]\n    actions: [{}]\n",
            quoted.join(", "),
            actions.join(", ")
        ));
        if i % 3 == 0 {
            yaml.push_str(&format!(
                "    except:\n      - exe: [/usr/bin/agent{i}, \"/usr/libexec/agent{i}/*\"]\n"
            ));
        }
        naive.push(NaiveRule {
            actions: actions
                .iter()
                .map(|a| Action::from_name(a).unwrap().bit())
                .fold(0, |m, b| m | b),
            subtrees: paths.into_iter().map(String::into_bytes).collect(),
            globs: globs
                .iter()
                .map(|g| {
                    GlobBuilder::new(g)
                        .literal_separator(true)
                        .build()
                        .unwrap()
                        .compile_matcher()
                })
                .collect(),
        });
    }
    Generated { yaml, naive }
}

impl Generated {
    /// Every rule, every path, every event: no index.
    fn naive_matches(&self, event: &Event) -> usize {
        let bit = event.action.bit();
        let mut n = 0;
        for rule in &self.naive {
            if rule.actions & bit == 0 {
                continue;
            }
            let hit = event.paths().any(|f| {
                let path: &[u8] = &f.path;
                rule.subtrees.iter().any(|dir| {
                    path.strip_prefix(dir.as_slice())
                        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
                }) || rule
                    .globs
                    .iter()
                    .any(|g| g.is_match(std::str::from_utf8(path).unwrap_or_default()))
            });
            n += hit as usize;
        }
        n
    }
}

/// What a busy Docker host sends: about half the events hit a watched path
/// (the kernel and auditd pre-filter), half are near misses under the same
/// directories, and the generated rules get their share of hits.
fn event_mix() -> Vec<Event> {
    let ev = |action: Action, path: &str, exe: &str| {
        let mut event = Event::new(Source::Ebpf, action);
        event.file = Some(FileRef::new(path.as_bytes().to_vec()));
        event.process = Process {
            pid: 4242,
            uid: Some(0),
            comm: Some(exe.rsplit('/').next().unwrap().as_bytes().to_vec().into()),
            exe: Some(exe.as_bytes().to_vec().into()),
            ..Process::default()
        };
        event
    };
    let mut events = vec![
        ev(Action::OpenWrite, "/etc/docker/daemon.json", "/usr/bin/vi"),
        ev(Action::Chmod, "/run/docker.sock", "/usr/bin/chmod"),
        ev(Action::Chmod, "/run/docker.sock", "/usr/bin/dockerd"),
        ev(Action::Connect, "/var/run/docker.sock", "/usr/bin/docker"),
        ev(Action::Connect, "/var/run/docker.sock", "/usr/bin/python3"),
        ev(
            Action::OpenWrite,
            "/var/lib/docker/containers/0123456789ab/config.v2.json",
            "/usr/bin/dockerd",
        ),
        ev(
            Action::Create,
            "/run/containerd/io.containerd.runtime.v2.task/moby/0123/address",
            "/usr/bin/containerd-shim-runc-v2",
        ),
        ev(
            Action::Chmod,
            "/etc/docker/tls/server-key.pem",
            "/usr/bin/chmod",
        ),
        ev(
            Action::OpenWrite,
            "/usr/bin/containerd-shim-runc-v2",
            "/usr/bin/cp",
        ),
        ev(Action::Rename, "/etc/group+", "/usr/sbin/usermod"),
        ev(Action::OpenWrite, "/home/user/notes.txt", "/usr/bin/vi"),
        ev(Action::OpenWrite, "/usr/bin/python3.11", "/usr/bin/dpkg"),
        ev(Action::Chmod, "/etc/passwd", "/usr/bin/chmod"),
        ev(Action::OpenWrite, "/var/lib/dpkg/status", "/usr/bin/dpkg"),
        ev(Action::Exec, "/usr/bin/dockerd", "/usr/bin/dockerd"),
        ev(
            Action::Connect,
            "/run/systemd/journal/socket",
            "/usr/bin/dockerd",
        ),
    ];
    if let Some(rename) = events.iter_mut().find(|e| e.action == Action::Rename) {
        rename.target = Some(FileRef::new(&b"/etc/group"[..]));
    }
    for k in [3usize, 17, 250, 501, 999] {
        let k6 = k - k % 10; // a subtree rule
        events.push(ev(
            Action::OpenWrite,
            &format!("/srv/svc{k6}/conf/app.yaml"),
            "/usr/bin/vi",
        ));
        events.push(ev(
            Action::Chmod,
            &format!("/opt/vendor{}/etc/sub/main.conf", k6 + 6),
            "/usr/bin/chmod",
        ));
        events.push(ev(
            Action::OpenWrite,
            &format!("/usr/local/bin/tool{}-helper", k6 + 9),
            &format!("/usr/bin/agent{}", k6 + 9),
        ));
        events.push(ev(
            Action::OpenWrite,
            &format!("/srv/svc{k6}/data/blob"),
            "/usr/bin/vi",
        ));
    }
    events
}

#[cfg(target_os = "linux")]
fn pin_to_one_cpu() {
    // SAFETY: sched_setaffinity on this thread with a zeroed, then filled,
    // cpu_set_t; failure only leaves the thread unpinned.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("bench matcher: could not pin to CPU 0; figures may be noisier");
        }
    }
}
