//! Event → matched rules → [`Alert`], then the two stages that keep alerts
//! few and whole: correlation of the same action seen by both sources
//! ([`correlate`]) and flood aggregation ([`flood`]).
//!
//! Events dockwatch raises itself (lost records, dropped alerts, posture
//! changes, audit configuration changes) match no path rule; they become
//! alerts under built-in rules and skip both stages, so a report of loss is
//! never itself held back or summarized away.

mod correlate;
mod flood;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::alert::{Alert, RuleRef, Severity};
use crate::event::{Action, Detail, Event};
use crate::rules::RuleSet;

use correlate::Correlator;
use flood::FloodControl;

/// The `[pipeline]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// How long an alert from one source waits for the same action from
    /// the other, when both run (milliseconds).
    pub correlation_window_ms: u64,
    /// Most alerts held for correlation at once; past it the oldest leaves.
    pub correlation_max_held: usize,
    /// Alerts per rule, process and action passed individually per window.
    pub flood_burst: u32,
    /// Length of a flood window (milliseconds); 0 turns flood control off.
    pub flood_window_ms: u64,
    /// Most (rule, process, action) keys tracked; past it processes share
    /// one key per rule.
    pub flood_max_keys: usize,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            correlation_window_ms: 500,
            correlation_max_held: 16 * 1024,
            flood_burst: 10,
            flood_window_ms: 1000,
            flood_max_keys: 64 * 1024,
        }
    }
}

pub struct Pipeline {
    rules: Arc<RuleSet>,
    host: Arc<str>,
    builtin: Builtin,
    correlator: Correlator,
    flood: FloodControl,
    /// Alerts between correlation and flood control (reused buffer).
    staged: Vec<Alert>,
}

impl Pipeline {
    pub fn new(rules: Arc<RuleSet>, config: &PipelineConfig, host: Arc<str>) -> Pipeline {
        Pipeline {
            rules,
            host,
            builtin: Builtin::new(),
            correlator: Correlator::new(
                Duration::from_millis(config.correlation_window_ms),
                config.correlation_max_held,
            ),
            flood: FloodControl::new(
                config.flood_burst,
                Duration::from_millis(config.flood_window_ms),
                config.flood_max_keys,
            ),
            staged: Vec::new(),
        }
    }

    /// Holds alerts for their twin from the other source: call with `true`
    /// when both the eBPF and the audit source run.
    pub fn correlating(mut self, both_sources: bool) -> Pipeline {
        self.correlator.set_enabled(both_sources);
        self
    }

    /// Feeds one event; alerts ready now are appended to `out`.
    pub fn push(&mut self, event: Event, now: Instant, out: &mut Vec<Alert>) {
        if !crate::rules::is_path_action(event.action) {
            let rule = self.builtin.rule_for(&event);
            out.push(Alert::new(event, rule, self.host.clone()));
            return;
        }
        let mut matched = Vec::new();
        self.rules.matches(&event, &mut matched);
        let Some((last, others)) = matched.split_last() else {
            return;
        };
        for rule in others {
            let alert = Alert::new(event.clone(), Arc::clone(rule), self.host.clone());
            self.correlator.push(alert, now, &mut self.staged);
        }
        let alert = Alert::new(event, Arc::clone(last), self.host.clone());
        self.correlator.push(alert, now, &mut self.staged);
        for alert in self.staged.drain(..) {
            self.flood.push(alert, now, out);
        }
    }

    /// When [`Pipeline::tick`] must next be called, if anything is held back.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.correlator.next_deadline(), self.flood.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Releases alerts whose windows have closed.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Alert>) {
        self.correlator.tick(now, &mut self.staged);
        for alert in self.staged.drain(..) {
            self.flood.push(alert, now, out);
        }
        self.flood.tick(now, out);
    }

    /// Releases everything held back (shutdown, end of replay).
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        self.correlator.flush(&mut self.staged);
        let now = Instant::now();
        for alert in self.staged.drain(..) {
            self.flood.push(alert, now, out);
        }
        self.flood.flush(out);
    }

    /// Alerts held for correlation and flood keys tracked (for tests and
    /// self-monitoring).
    pub fn held(&self) -> (usize, usize) {
        (self.correlator.held(), self.flood.tracked())
    }
}

/// Rules for what dockwatch reports itself.
struct Builtin {
    records_lost: Arc<RuleRef>,
    alerts_dropped: Arc<RuleRef>,
    audit_config: Arc<RuleRef>,
}

impl Builtin {
    fn new() -> Builtin {
        let rule = |id: &str, name: &str, severity| {
            Arc::new(RuleRef {
                id: id.to_string(),
                name: name.to_string(),
                severity,
                tags: Vec::new(),
            })
        };
        Builtin {
            records_lost: rule(
                "dockwatch-records-lost",
                "Event records lost before dockwatch could read them",
                Severity::Warning,
            ),
            alerts_dropped: rule(
                "dockwatch-alerts-dropped",
                "Alerts dropped by a full outbox",
                Severity::Warning,
            ),
            audit_config: rule(
                "audit-config-changed",
                "Audit rules or audit daemon state changed",
                Severity::Warning,
            ),
        }
    }

    fn rule_for(&self, event: &Event) -> Arc<RuleRef> {
        match event.action {
            Action::AlertsDropped => self.alerts_dropped.clone(),
            Action::AuditConfig => self.audit_config.clone(),
            Action::PostureDrift | Action::PostureFinding => posture_rule(event),
            _ => self.records_lost.clone(),
        }
    }
}

/// A posture report's rule carries the CIS id of the check that changed.
fn posture_rule(event: &Event) -> Arc<RuleRef> {
    let id = if event.action == Action::PostureDrift {
        "docker-posture-drift"
    } else {
        "docker-posture-finding"
    };
    let (name, severity, tags) = match &event.detail {
        Detail::Posture(change) => (
            change.title.clone(),
            match change.status {
                "fail" => Severity::Warning,
                "warn" => Severity::Notice,
                _ => Severity::Info,
            },
            vec![format!("cis:{}", change.check_id)],
        ),
        _ => (
            "Docker baseline check changed".to_string(),
            Severity::Warning,
            Vec::new(),
        ),
    };
    Arc::new(RuleRef {
        id: id.to_string(),
        name,
        severity,
        tags,
    })
}
