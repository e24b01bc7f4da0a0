//! The audit source's own alerts: audit reconfigured, disabled or stopped
//! (tamper), and audit records lost.
//!
//! These events name no watched path, so no rule can match them; the
//! pipeline leaves them to the stage that raised them. They are alerts all
//! the same: an attacker's first move against a watched host is often to
//! blind its audit trail, and a gap in the trail must be visible where the
//! alerts are read.

use std::sync::Arc;

use crate::alert::{Alert, RuleRef, Severity};
use crate::event::{Action, Detail, Event, Source};

/// Built-in rules for the audit source's reports.
pub struct Reports {
    host: Arc<str>,
    tampered: Arc<RuleRef>,
    changed: Arc<RuleRef>,
    lost: Arc<RuleRef>,
}

impl Reports {
    pub fn new(host: Arc<str>) -> Reports {
        let rule = |id: &str, name: &str, severity, tags: &[&str]| {
            Arc::new(RuleRef {
                id: id.to_string(),
                name: name.to_string(),
                severity,
                tags: tags.iter().map(|t| t.to_string()).collect(),
            })
        };
        Reports {
            host,
            tampered: rule(
                "audit-tampered",
                "Audit rules removed, audit disabled or auditd stopped",
                Severity::Critical,
                &["attack:T1562.012"],
            ),
            changed: rule(
                "audit-config-changed",
                "Audit configuration changed",
                Severity::Notice,
                &[],
            ),
            lost: rule(
                "audit-records-lost",
                "Audit records lost",
                Severity::Error,
                &[],
            ),
        }
    }

    /// The alert `event` stands for by itself, if it is one of the audit
    /// source's reports.
    pub fn alert(&self, event: &Event) -> Option<Alert> {
        if event.source != Source::Audit {
            return None;
        }
        let rule = match (&event.action, &event.detail) {
            (Action::RecordsLost, _) => &self.lost,
            (Action::AuditConfig, Detail::AuditConfig { op, text }) => {
                if is_tamper(op, text) {
                    &self.tampered
                } else {
                    &self.changed
                }
            }
            _ => return None,
        };
        Some(Alert::new(event.clone(), rule.clone(), self.host.clone()))
    }
}

/// Changes that weaken auditing: rules removed, audit switched off, auditd
/// stopped or gone.
fn is_tamper(op: &str, text: &str) -> bool {
    match op {
        "remove_rule" | "remove_all" | "trim" | "terminate" | "abort" | "auditd_gone"
        | "audit_disabled" => true,
        _ => {
            text.starts_with("DAEMON_END")
                || text.starts_with("DAEMON_ABORT")
                || text.contains(" audit_enabled=0 ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(op: &str, text: &str) -> Event {
        let mut event = Event::new(Source::Audit, Action::AuditConfig);
        event.detail = Detail::AuditConfig {
            op: op.into(),
            text: text.into(),
        };
        event
    }

    #[test]
    fn removals_and_stops_are_tamper_additions_are_not() {
        let reports = Reports::new("h".into());
        let rule = |e: &Event| reports.alert(e).unwrap().rule.id.clone();
        assert_eq!(rule(&config("remove_rule", "")), "audit-tampered");
        assert_eq!(
            rule(&config(
                "set",
                "CONFIG_CHANGE op=set audit_enabled=0 old=1 res=1"
            )),
            "audit-tampered"
        );
        assert_eq!(rule(&config("add_rule", "")), "audit-config-changed");
        let lost = Event::new(Source::Audit, Action::RecordsLost);
        assert_eq!(rule(&lost), "audit-records-lost");
        let ebpf = Event::new(Source::Ebpf, Action::RecordsLost);
        assert!(reports.alert(&ebpf).is_none(), "not this stage's report");
    }
}
