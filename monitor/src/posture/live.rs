//! The baseline kept current while `dockwatch run` runs: findings reported
//! once at start, then a `posture_drift` alert with before and after each
//! time an event on a file re-evaluates a check to a different verdict or
//! value. A periodic full re-check covers lost events and state that no
//! file event reports (mounts, the kernel's audit rules, sysfs).
//!
//! A `container_create` from the engine carries the new container's
//! configuration: it is judged at once by the same section 5 checks, and
//! what fails is one `docker-risky-container` alert naming every risk with
//! its CIS id, before the container ever runs. This is a built-in report
//! rather than a rule in rules/: the verdict is posture's (the checks and
//! their allow lists live here, and a rule would have to repeat them in a
//! language made for actions, paths and processes), while rules still see
//! every `container_create` for what they can judge (who, which image).
//! The container's state files then appear on disk; their findings are not
//! reported a second time as drift.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::baseline::{Baseline, Group};
use super::containers::STATE_FILES;
use super::finding::{Finding, Status};
use super::host::resolved;
use super::PostureConfig;
use crate::alert::{Alert, RuleRef, Severity};
use crate::event::{Action, Detail, Event, PostureChange, Process, Risk, Source};
use crate::rules::Watch;

/// Audit key and rule-watch key of the files posture depends on.
pub const WATCH_KEY: &str = "dockwatch-posture";

/// Rule id of the alert for a container created with a risky configuration.
pub const RISKY_CONTAINER: &str = "docker-risky-container";

/// Longest a burst of events may postpone a re-check.
const MAX_SETTLE: Duration = Duration::from_secs(2);

/// One file a group depends on, as configured and as the kernel names it.
struct Dependency {
    path: PathBuf,
    resolved: PathBuf,
}

/// A group waiting for its files to settle before it is re-read.
struct Pending {
    first: Instant,
    due: Instant,
    /// The process behind the last event, named in the drift alert.
    process: Option<Process>,
}

/// The live baseline of `dockwatch run`.
pub struct Posture {
    baseline: Baseline,
    host: Arc<str>,
    deps: Vec<(Group, Vec<Dependency>)>,
    containers_dir: PathBuf,
    findings: HashMap<Group, Vec<Finding>>,
    pending: HashMap<Group, Pending>,
    settle: Duration,
    recheck: Duration,
    next_recheck: Instant,
    rules: HashMap<(String, Severity), Arc<RuleRef>>,
    /// Containers whose configuration was judged from the engine's
    /// create: their state files are not new findings.
    judged: HashSet<String>,
}

/// Most container ids remembered in [`Posture::judged`]; past it the set
/// starts over (a forgotten one costs a duplicate alert, not a lost one).
const JUDGED_MAX: usize = 4096;

impl Posture {
    /// Reads the baseline; returns the posture and one `posture_finding`
    /// alert per check that does not pass.
    pub fn start(config: &PostureConfig, host: Arc<str>) -> anyhow::Result<(Posture, Vec<Alert>)> {
        let baseline = Baseline::new(config)?;
        let deps = Group::ALL
            .iter()
            .map(|&g| (g, dependencies(&baseline, g)))
            .collect();
        let containers_dir = resolved(&baseline.host.containers_dir());
        let now = Instant::now();
        let mut posture = Posture {
            baseline,
            host,
            deps,
            containers_dir,
            findings: HashMap::new(),
            pending: HashMap::new(),
            settle: Duration::from_millis(config.settle_ms),
            recheck: Duration::from_secs(config.recheck_secs.max(1)),
            next_recheck: now + Duration::from_secs(config.recheck_secs.max(1)),
            rules: HashMap::new(),
            judged: HashSet::new(),
        };
        let mut alerts = Vec::new();
        for group in Group::ALL {
            let mut found = Vec::new();
            posture.baseline.evaluate(group, &mut found);
            for f in found.iter().filter(|f| f.status >= Status::Warn) {
                let change = change(f, Value::Null, f.value.clone());
                alerts.push(posture.alert(Action::PostureFinding, f, change, None));
            }
            posture.findings.insert(group, found);
        }
        Ok((posture, alerts))
    }

    /// Files and directories the sources must watch for posture.
    pub fn watches(&self) -> Vec<Watch> {
        let actions = Action::WRITE_CLASS
            .iter()
            .chain(Action::ATTR_CLASS)
            .fold(0, |m, a| m | a.bit());
        let mut paths: Vec<&PathBuf> = self
            .deps
            .iter()
            .flat_map(|(_, deps)| deps.iter().map(|d| &d.resolved))
            // A watch needs at least the parent directory to exist.
            .filter(|p| p.exists() || p.parent().is_some_and(Path::exists))
            .collect();
        paths.sort();
        paths.dedup();
        paths
            .into_iter()
            .map(|p| Watch {
                path: p.clone(),
                actions,
                key: WATCH_KEY.to_string(),
            })
            .collect()
    }

    /// Notes an event; the checks depending on what it touched are re-read
    /// once their files settle. Returns alerts that are due now.
    pub fn on_event(&mut self, event: &Event) -> Vec<Alert> {
        let now = Instant::now();
        let risky = if event.action == Action::ContainerCreate {
            self.judge_created(event)
        } else {
            None
        };
        if event.source != Source::Monitor {
            let groups = self.affected(event);
            for group in groups {
                let settle = self.settle;
                let pending = self.pending.entry(group).or_insert(Pending {
                    first: now,
                    due: now,
                    process: None,
                });
                pending.due = (now + settle).min(pending.first + MAX_SETTLE);
                pending.process = Some(event.process.clone());
            }
        }
        let mut alerts = self.tick(now);
        alerts.extend(risky);
        alerts
    }

    /// The `docker-risky-container` alert for a container the engine
    /// created, when its configuration fails a section 5 check.
    fn judge_created(&mut self, event: &Event) -> Option<Alert> {
        let Detail::Engine(engine) = &event.detail else {
            return None;
        };
        let inspect = engine.inspect.as_ref()?;
        if let Some(container) = &event.container {
            if self.judged.len() >= JUDGED_MAX {
                self.judged.clear();
            }
            self.judged.insert(container.id.clone());
        }
        let mut found = Vec::new();
        self.baseline.judge_container(inspect, &mut found);
        // Fail only: a missing hardening option (no-new-privileges, ports
        // on all interfaces) is the file-based finding's business, or every
        // default `docker run` would be a risky container.
        let failed: Vec<&Finding> = found.iter().filter(|f| f.status == Status::Fail).collect();
        if failed.is_empty() {
            return None;
        }
        let severity = failed.iter().map(|f| f.check.severity).min()?;
        let mut tags: Vec<String> = failed.iter().flat_map(|f| f.check.tags()).collect();
        tags.sort();
        tags.dedup();
        let rule = Arc::new(RuleRef::new(
            RISKY_CONTAINER.to_string(),
            "Container created with a risky configuration".to_string(),
            severity,
            tags,
        ));
        let mut event = event.clone();
        if let Detail::Engine(engine) = &mut event.detail {
            engine.inspect = None;
            engine.risks = failed
                .iter()
                .map(|f| Risk {
                    check_id: f.check.id.to_string(),
                    title: f.check.title.to_string(),
                    evidence: f.evidence.clone(),
                    value: f.value.clone(),
                })
                .collect();
        }
        Some(Alert::new(event, rule, self.host.clone()))
    }

    /// When [`Posture::tick`] must next run.
    pub fn next_deadline(&self) -> Instant {
        self.pending
            .values()
            .map(|p| p.due)
            .fold(self.next_recheck, Instant::min)
    }

    /// Re-reads groups whose files have settled, and everything when the
    /// periodic re-check is due.
    pub fn tick(&mut self, now: Instant) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let full = now >= self.next_recheck;
        if full {
            self.next_recheck = now + self.recheck;
        }
        for group in Group::ALL {
            let due = self.pending.get(&group).is_some_and(|p| p.due <= now);
            if !(due || full) {
                continue;
            }
            let process = self.pending.remove(&group).and_then(|p| p.process);
            self.reevaluate(group, process.as_ref(), &mut alerts);
        }
        alerts
    }

    /// Re-reads every group now, as the periodic re-check does; for when
    /// events were missed.
    pub fn recheck_all(&mut self) -> Vec<Alert> {
        let now = Instant::now();
        self.next_recheck = now;
        self.tick(now)
    }

    /// Whether [`Posture::on_event`] can do anything with `event`: judge
    /// an engine create, or re-check what an audit rule change or a file
    /// change may touch. Its own reports and everything else cannot; the
    /// posture stage hands over only these.
    pub fn acts_on(event: &Event) -> bool {
        event.source != Source::Monitor
            && (event.action == Action::ContainerCreate
                || event.action == Action::AuditConfig
                || event.action.changes_files())
    }

    /// Groups whose inputs `event` may have changed.
    fn affected(&self, event: &Event) -> Vec<Group> {
        if event.action == Action::AuditConfig {
            return vec![Group::Audit];
        }
        if !event.action.changes_files() {
            return Vec::new();
        }
        let paths: Vec<&Path> = event
            .paths()
            .map(|f| Path::new(OsStr::from_bytes(&f.path)))
            .collect();
        let mut groups = Vec::new();
        for (group, deps) in &self.deps {
            let hit = paths.iter().any(|p| {
                deps.iter().any(|d| {
                    touches(p, &d.path, event.action) || touches(p, &d.resolved, event.action)
                })
            });
            let hit = hit
                && (*group != Group::Containers || paths.iter().any(|p| self.container_state(p)));
            if hit {
                groups.push(*group);
            }
        }
        groups
    }

    /// A path whose change can alter a container's verdicts: the
    /// containers directory, a container's directory, or its state files
    /// (and Docker's temporary files renamed over them). Log files are not.
    fn container_state(&self, path: &Path) -> bool {
        self.containers_dir.starts_with(path)
            || path.parent() == Some(&self.containers_dir)
            || path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                STATE_FILES.iter().any(|s| name.contains(s))
            })
    }

    fn reevaluate(&mut self, group: Group, process: Option<&Process>, alerts: &mut Vec<Alert>) {
        let mut now = Vec::new();
        self.baseline.evaluate(group, &mut now);
        let before = self.findings.remove(&group).unwrap_or_default();
        // A container's findings are known by their state file, not by
        // their key: the key names the container, and its name arrives in
        // config.v2.json after hostconfig.json, so one container would
        // otherwise be reported under two keys, once "resolved".
        let same = |a: &Finding, b: &Finding| {
            std::ptr::eq(a.check, b.check)
                && match (group, &a.path, &b.path) {
                    (Group::Containers, Some(pa), Some(pb)) => pa == pb,
                    _ => a.key == b.key,
                }
        };
        // An undetermined verdict keeps the last known one: the unusable
        // input is reported by its own check.
        for f in now.iter_mut().filter(|f| f.undetermined) {
            if let Some(old) = before.iter().find(|b| same(b, f)) {
                *f = old.clone();
            }
        }
        for after in now.iter().filter(|f| !f.undetermined) {
            let old = before.iter().find(|b| same(b, after));
            let changed = match old {
                Some(old) => old.status != after.status || old.value != after.value,
                // A new key (a container, a certificate) matters only when
                // it does not pass, and a container the engine's create
                // was judged for has been reported already.
                None => after.status >= Status::Warn && !self.was_judged(group, after),
            };
            if changed {
                let before = old.map_or(Value::Null, |o| o.value.clone());
                let change = change(after, before, after.value.clone());
                alerts.push(self.alert(Action::PostureDrift, after, change, process));
            }
        }
        for old in &before {
            let gone = !now.iter().any(|n| same(n, old));
            // A container that went away (`docker rm`, `run --rm`) took
            // its findings with it: nothing was resolved.
            let removed = group == Group::Containers
                && old
                    .path
                    .as_ref()
                    .and_then(|p| p.parent())
                    .is_some_and(|dir| dir != self.containers_dir && !dir.exists());
            if gone && !removed && old.status >= Status::Warn {
                let resolved = Finding {
                    status: Status::Pass,
                    ..old.clone()
                };
                let change = change(&resolved, old.value.clone(), Value::Null);
                alerts.push(self.alert(Action::PostureDrift, &resolved, change, process));
            }
        }
        self.findings.insert(group, now);
        if group == Group::Daemon {
            // The TLS files section 3 judges are named in daemon.json.
            let modes = dependencies(&self.baseline, Group::FileModes);
            if let Some((_, deps)) = self.deps.iter_mut().find(|(g, _)| *g == Group::FileModes) {
                *deps = modes;
            }
        }
    }

    /// `finding` is about a container judged at its engine create.
    fn was_judged(&self, group: Group, finding: &Finding) -> bool {
        group == Group::Containers
            && finding
                .path
                .as_ref()
                .and_then(|p| p.parent())
                .and_then(|dir| dir.file_name())
                .is_some_and(|id| self.judged.contains(&*id.to_string_lossy()))
    }

    fn alert(
        &mut self,
        action: Action,
        finding: &Finding,
        change: PostureChange,
        process: Option<&Process>,
    ) -> Alert {
        let check = finding.check;
        let severity = if finding.status >= Status::Warn {
            check.severity
        } else {
            Severity::Info
        };
        let rule = self
            .rules
            .entry((check.rule_id(), severity))
            .or_insert_with(|| {
                Arc::new(RuleRef::new(
                    check.rule_id(),
                    check.title.to_string(),
                    severity,
                    check.tags(),
                ))
            })
            .clone();
        let mut event = Event::new(Source::Monitor, action);
        event.outcome = crate::event::Outcome::Success;
        if let Some(process) = process {
            event.process = process.clone();
        }
        event.detail = Detail::Posture(Box::new(change));
        Alert::new(event, rule, self.host.clone())
    }
}

fn dependencies(baseline: &Baseline, group: Group) -> Vec<Dependency> {
    baseline
        .dependencies(group)
        .into_iter()
        .map(|path| Dependency {
            resolved: resolved(&path),
            path,
        })
        .collect()
}

/// What a drift or finding alert says about `finding`.
fn change(finding: &Finding, before: Value, after: Value) -> PostureChange {
    PostureChange {
        check_id: finding.check.id.to_string(),
        title: finding.check.title.to_string(),
        key: finding.key.clone(),
        before,
        after,
        status: finding.status.as_str(),
        path: finding
            .path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
    }
}

/// `event_path` can have changed what `dep` names: it is `dep`, lies below
/// it, is a directory above it, or (for a rename whose other side a source
/// did not report) sits beside it.
fn touches(event_path: &Path, dep: &Path, action: Action) -> bool {
    event_path.starts_with(dep)
        || dep.starts_with(event_path)
        || (action == Action::Rename
            && event_path.parent().is_some()
            && event_path.parent() == dep.parent())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FileRef;

    fn posture_in(root: &Path) -> (Posture, Vec<Alert>) {
        let config = PostureConfig {
            root: root.to_path_buf(),
            auditctl: PathBuf::from("/nonexistent/auditctl"),
            settle_ms: 0,
            ..PostureConfig::default()
        };
        Posture::start(&config, "h".into()).unwrap()
    }

    fn write_event(path: &Path, action: Action) -> Event {
        let mut event = Event::new(Source::Audit, action);
        event.file = Some(FileRef::new(path.as_os_str().as_bytes().to_vec()));
        event.process.pid = 4242;
        event
    }

    fn drift(alerts: &[Alert]) -> Vec<&PostureChange> {
        alerts
            .iter()
            .filter(|a| a.event.action == Action::PostureDrift)
            .map(|a| match &a.event.detail {
                Detail::Posture(change) => &**change,
                other => panic!("drift alert without posture detail: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn icc_flip_is_one_drift_alert_with_before_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("etc/docker/daemon.json");
        std::fs::create_dir_all(json.parent().unwrap()).unwrap();
        std::fs::write(&json, r#"{"icc": false}"#).unwrap();
        let (mut posture, initial) = posture_in(dir.path());
        assert!(initial
            .iter()
            .all(|a| a.event.action == Action::PostureFinding));
        assert!(!initial.iter().any(|a| a.rule.id == "posture-cis-2.2"));
        assert!(posture.watches().iter().any(|w| w.path == json));

        std::fs::write(&json, r#"{"icc": true}"#).unwrap();
        let mut alerts = posture.on_event(&write_event(&json, Action::OpenWrite));
        alerts.extend(posture.tick(Instant::now()));
        let changes = drift(&alerts);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].check_id, "2.2");
        assert_eq!(changes[0].key, "icc");
        assert_eq!(changes[0].before, Value::Bool(false));
        assert_eq!(changes[0].after, Value::Bool(true));
        assert_eq!(changes[0].status, "warn");
        assert_eq!(alerts[0].rule.id, "posture-cis-2.2");
        assert_eq!(alerts[0].rule.tags, ["cis:2.2"]);
        assert_eq!(alerts[0].event.process.pid, 4242);

        // Nothing changed: no alert.
        let again = posture.on_event(&write_event(&json, Action::Write));
        assert!(drift(&again).is_empty());
    }

    #[test]
    fn a_broken_daemon_json_is_one_alert_and_keeps_the_last_known_settings() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("etc/docker/daemon.json");
        std::fs::create_dir_all(json.parent().unwrap()).unwrap();
        std::fs::write(&json, r#"{"icc": false, "live-restore": true}"#).unwrap();
        let (mut posture, _) = posture_in(dir.path());

        std::fs::write(&json, r#"{"icc": fal"#).unwrap();
        let alerts = posture.on_event(&write_event(&json, Action::Write));
        let changes = drift(&alerts);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].check_id, "daemon-json");
        assert_eq!(changes[0].after, Value::from("invalid JSON"));
        assert_eq!(changes[0].status, "fail");

        std::fs::write(&json, r#"{"icc": true, "live-restore": true}"#).unwrap();
        let alerts = posture.on_event(&write_event(&json, Action::Write));
        let mut changes: Vec<(&str, &Value, &Value)> = drift(&alerts)
            .iter()
            .map(|c| (c.check_id.as_str(), &c.before, &c.after))
            .collect();
        changes.sort_by_key(|c| c.0);
        assert_eq!(
            changes,
            [
                ("2.2", &Value::Bool(false), &Value::Bool(true)),
                ("daemon-json", &Value::from("invalid JSON"), &Value::Null),
            ]
        );
    }

    #[test]
    fn rename_over_the_file_re_evaluates_it() {
        let dir = tempfile::tempdir().unwrap();
        let group = dir.path().join("etc/group");
        std::fs::create_dir_all(group.parent().unwrap()).unwrap();
        std::fs::write(&group, "root:x:0:\ndocker:x:999:alice\n").unwrap();
        let (mut posture, _) = posture_in(dir.path());
        let tmp = dir.path().join("etc/sedAbc123");
        std::fs::write(&tmp, "root:x:0:\ndocker:x:999:alice,mallory\n").unwrap();
        std::fs::rename(&tmp, &group).unwrap();
        let mut event = write_event(&tmp, Action::Rename);
        event.target = Some(FileRef::new(group.as_os_str().as_bytes().to_vec()));
        let alerts = posture.on_event(&event);
        let changes = drift(&alerts);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].check_id, "1.1.2");
        assert_eq!(changes[0].before, serde_json::json!(["alice"]));
        assert_eq!(changes[0].after, serde_json::json!(["alice", "mallory"]));
    }

    #[test]
    fn unrelated_events_and_container_logs_re_evaluate_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let containers = dir.path().join("var/lib/docker/containers/abc");
        std::fs::create_dir_all(&containers).unwrap();
        let (posture, _) = posture_in(dir.path());
        assert!(posture
            .affected(&write_event(
                &containers.join("abc-json.log"),
                Action::Write
            ))
            .is_empty());
        assert!(posture
            .affected(&write_event(&dir.path().join("etc/hosts"), Action::Write))
            .is_empty());
        assert_eq!(
            posture.affected(&write_event(
                &containers.join("hostconfig.json"),
                Action::Rename
            )),
            [Group::Containers]
        );
    }

    #[test]
    fn a_new_privileged_container_is_one_alert() {
        let dir = tempfile::tempdir().unwrap();
        let containers = dir.path().join("var/lib/docker/containers");
        std::fs::create_dir_all(&containers).unwrap();
        let (mut posture, _) = posture_in(dir.path());
        let id = "4f1c0a6b7e2d".repeat(5) + "abcd";
        let cdir = containers.join(&id);
        std::fs::create_dir(&cdir).unwrap();
        std::fs::write(
            cdir.join("config.v2.json"),
            r#"{"ID":"x","Name":"/web","AppArmorProfile":"docker-default","NoNewPrivileges":true}"#,
        )
        .unwrap();
        let alerts = posture.on_event(&write_event(&cdir.join("config.v2.json"), Action::Write));
        assert!(drift(&alerts).is_empty(), "{:#?}", drift(&alerts));
        std::fs::write(cdir.join("hostconfig.json"), r#"{"Privileged":true}"#).unwrap();
        let alerts = posture.on_event(&write_event(&cdir.join("hostconfig.json"), Action::Write));
        let changes = drift(&alerts);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].check_id, "5.4");
        assert_eq!(changes[0].key, "web (4f1c0a6b7e2d): privileged");
        assert_eq!(
            (&changes[0].before, &changes[0].after),
            (&Value::Bool(false), &Value::Bool(true))
        );
        assert_eq!(alerts[0].rule.severity, Severity::Critical);
    }
}
