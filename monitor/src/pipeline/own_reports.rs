//! Alerts dockwatch raises on its own, with no rule behind them: records a
//! source lost, the audit system being reconfigured or stopped, mounts over
//! watched paths, changes to dockwatch's own binary, configuration or rules
//! by anyone but dockwatch, a reload refused (the old rules keep running,
//! which the operator must learn from the alert stream, not only from the
//! daemon's log), the heartbeat (a silent monitor and a dead one look alike
//! without it), and the start alert (whether the previous run was killed,
//! and how long the host went unwatched). No rule file can switch these
//! off, because a monitor that can be blinded without a trace is worse than
//! none.

use std::sync::Arc;

use crate::alert::{RuleRef, Severity};
use crate::event::{Action, Detail, Event};

/// The built-in rules, built once.
pub(super) struct OwnReports {
    lost: Arc<RuleRef>,
    tampered: Arc<RuleRef>,
    changed: Arc<RuleRef>,
    mounted: Arc<RuleRef>,
    self_modified: Arc<RuleRef>,
    /// dockwatch's own binary, configuration and rules ([`OwnReports::guarding`]).
    guarded: Vec<Vec<u8>>,
    /// Changes dockwatch makes itself are its work, not tampering.
    own_pid: u32,
    reload_refused: Arc<RuleRef>,
    heartbeat: Arc<RuleRef>,
    started: Arc<RuleRef>,
    restarted_unclean: Arc<RuleRef>,
}

/// MITRE ATT&CK: Impair Defenses: Disable or Modify Linux Audit System.
const ATTACK_AUDIT: &str = "attack:T1562.012";
/// MITRE ATT&CK: Hide Artifacts (a mount over a file shows other content
/// under its name).
const ATTACK_HIDE: &str = "attack:T1564";
/// MITRE ATT&CK: Impair Defenses: Disable or Modify Tools.
const ATTACK_TOOLS: &str = "attack:T1562.001";

impl OwnReports {
    pub(super) fn new() -> OwnReports {
        let rule = |id: &str, name: &str, severity, tags: &[&str]| {
            Arc::new(RuleRef::new(
                id.to_string(),
                name.to_string(),
                severity,
                tags.iter().map(|t| t.to_string()).collect(),
            ))
        };
        OwnReports {
            lost: rule(
                "dockwatch-records-lost",
                "Event records lost: activity may have gone unseen",
                Severity::Error,
                &[],
            ),
            tampered: rule(
                "audit-tampered",
                "Audit rules removed, audit disabled, auditd stopped or audit.log tampered with",
                Severity::Critical,
                &[ATTACK_AUDIT],
            ),
            changed: rule(
                "audit-config-changed",
                "Audit configuration changed",
                Severity::Notice,
                &[ATTACK_AUDIT],
            ),
            mounted: rule(
                "watched-path-mounted-over",
                "A mount hides or replaces a watched path",
                Severity::Critical,
                &[ATTACK_HIDE],
            ),
            self_modified: rule(
                "dockwatch-self-modified",
                "dockwatch's own binary, configuration or rules changed",
                Severity::Critical,
                &[ATTACK_TOOLS],
            ),
            guarded: Vec::new(),
            own_pid: std::process::id(),
            reload_refused: rule(
                "dockwatch-reload-refused",
                "Reload refused: the new configuration or rules are broken; the old ones keep running",
                Severity::Error,
                &[],
            ),
            heartbeat: rule(
                "dockwatch-heartbeat",
                "dockwatch is running",
                Severity::Info,
                &[],
            ),
            started: rule(
                "dockwatch-started",
                "dockwatch started",
                Severity::Info,
                &[],
            ),
            restarted_unclean: rule(
                "dockwatch-restarted-unclean",
                "dockwatch started after a run that was killed or crashed: the host went unwatched",
                Severity::Error,
                &[ATTACK_TOOLS],
            ),
        }
    }

    /// Reports changes to these paths (and below them) by any process but
    /// dockwatch itself under `dockwatch-self-modified`.
    pub(super) fn guarding(&mut self, paths: Vec<Vec<u8>>) {
        self.guarded = paths;
    }

    fn touches_guarded(&self, event: &Event) -> bool {
        event.action.changes_files()
            && event.process.pid != self.own_pid
            && event.paths().any(|file| {
                self.guarded
                    .iter()
                    .any(|g| crate::rules::path_is_at_or_below(&file.path, g))
            })
    }

    /// The built-in rule for `event`, when it is one of dockwatch's own
    /// reports rather than activity on a path.
    pub(super) fn rule_for(&self, event: &Event) -> Option<&Arc<RuleRef>> {
        if self.touches_guarded(event) {
            return Some(&self.self_modified);
        }
        match (&event.action, &event.detail) {
            (Action::RecordsLost, _) => Some(&self.lost),
            (Action::AuditConfig, Detail::AuditConfig { op, text }) => {
                Some(if weakens_audit(op, text) {
                    &self.tampered
                } else {
                    &self.changed
                })
            }
            (Action::AuditConfig, _) => Some(&self.tampered),
            (Action::Mount, _) => Some(&self.mounted),
            (Action::ReloadRefused, _) => Some(&self.reload_refused),
            (Action::Heartbeat, _) => Some(&self.heartbeat),
            (
                Action::MonitorStart,
                Detail::Start {
                    previous_run: "unclean",
                    ..
                },
            ) => Some(&self.restarted_unclean),
            (Action::MonitorStart, _) => Some(&self.started),
            _ => None,
        }
    }
}

/// Removing rules, disabling audit or stopping auditd; adding a watch or
/// raising a limit only changes it.
fn weakens_audit(op: &str, text: &str) -> bool {
    op.contains("remove")
        || op.contains("del")
        || op == "audit_disabled"
        || op == "auditd_gone"
        || op.starts_with("audit_log_")
        || text.starts_with("DAEMON_END")
        || text.starts_with("DAEMON_ABORT")
        || text.contains("audit_enabled=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    fn config_change(op: &str, text: &str) -> Event {
        let mut ev = Event::new(Source::Audit, Action::AuditConfig);
        ev.detail = Detail::AuditConfig {
            op: op.into(),
            text: text.into(),
        };
        ev
    }

    #[test]
    fn removals_and_shutdowns_are_tampering() {
        let own = OwnReports::new();
        let id = |ev: &Event| own.rule_for(ev).map(|r| r.id.clone());
        let removed = config_change("remove_rule", "CONFIG_CHANGE op=remove_rule key=docker");
        assert_eq!(id(&removed).as_deref(), Some("audit-tampered"));
        let disabled = config_change("set", "CONFIG_CHANGE op=set audit_enabled=0 old=1");
        assert_eq!(id(&disabled).as_deref(), Some("audit-tampered"));
        let stopped = config_change("DAEMON_END", "DAEMON_END op=terminate");
        assert_eq!(id(&stopped).as_deref(), Some("audit-tampered"));
        let killed = config_change("auditd_gone", "kernel audit status: enabled=1 auditd pid=0");
        assert_eq!(id(&killed).as_deref(), Some("audit-tampered"));
        let emptied = config_change("audit_log_truncated", "audit.log truncated");
        assert_eq!(id(&emptied).as_deref(), Some("audit-tampered"));
        let added = config_change("add_rule", "CONFIG_CHANGE op=add_rule key=docker");
        assert_eq!(id(&added).as_deref(), Some("audit-config-changed"));
    }

    #[test]
    fn losses_always_alert_and_path_events_are_left_to_rules() {
        let own = OwnReports::new();
        let lost = Event::new(Source::Ebpf, Action::RecordsLost);
        assert_eq!(own.rule_for(&lost).unwrap().severity, Severity::Error);
        let write = Event::new(Source::Ebpf, Action::OpenWrite);
        assert!(own.rule_for(&write).is_none());
    }
}
