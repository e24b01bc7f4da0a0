//! Event → matched rules → [`Alert`], with live audit paths first given the
//! rules' spelling ([`spelling`]) and engine actions attributed to the
//! client that asked ([`attribute`]), then the two stages that keep alerts
//! few and whole: correlation of the same action seen by both sources
//! ([`correlate`]) and flood aggregation ([`flood`]).
//!
//! Events with no path (lost records, audit configuration changes) match no
//! rule; they become alerts of their own ([`own_reports`]) and skip
//! correlation and flood control, which would only delay or fold them.

mod attribute;
mod correlate;
mod flood;
mod own_reports;
mod spelling;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::alert::Alert;
use crate::alert::RuleRef;
use crate::event::{Action, Event};
use crate::rules::{RuleSet, Watch};
use crate::source::docker::ContainerNames;

use attribute::Attribution;
use correlate::Correlator;
use flood::FloodControl;
use own_reports::OwnReports;
use spelling::Spelling;

/// The `[pipeline]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// How long an action seen by one source is remembered, when both run,
    /// so that the other source's sighting of it is folded into the alert
    /// already sent (milliseconds). Nothing waits this long.
    pub correlation_window_ms: u64,
    /// How long an audit alert that eBPF has not seen yet waits for eBPF's
    /// sighting before it leaves alone (milliseconds; 0: never waits).
    pub correlation_hold_ms: u64,
    /// Most sightings remembered for correlation at once; past it the
    /// oldest is forgotten (a held alert among them leaves).
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
            correlation_hold_ms: 2,
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
    correlator: Correlator,
    flood: FloodControl,
    own: OwnReports,
    /// Alerts between correlation and flood control (reused buffer).
    staged: Vec<Alert>,
    /// The allocation of the per-event list of matched rules, kept between
    /// events (a fresh Vec per event showed in replay profiles). It holds
    /// no elements between calls; see [`recycle`].
    matched: Vec<&'static Arc<RuleRef>>,
    /// dockwatch's own pid: its connections (the docker source's to
    /// docker.sock, a syslog sink's) are seen by the probes and by audit,
    /// and are not activity to report.
    own_pid: u32,
    attribution: Attribution,
    /// Names and images of containers, from the docker source.
    names: Option<ContainerNames>,
    /// The rules' spelling of watched paths audit names otherwise.
    spelling: Spelling,
}

impl Pipeline {
    pub fn new(rules: Arc<RuleSet>, config: &PipelineConfig, host: Arc<str>) -> Pipeline {
        Pipeline {
            rules,
            host,
            correlator: Correlator::new(
                Duration::from_millis(config.correlation_window_ms),
                Duration::from_millis(config.correlation_hold_ms),
                config.correlation_max_held,
            ),
            flood: FloodControl::new(
                config.flood_burst,
                Duration::from_millis(config.flood_window_ms),
                config.flood_max_keys,
            ),
            own: OwnReports::new(),
            staged: Vec::new(),
            matched: Vec::new(),
            own_pid: std::process::id(),
            attribution: Attribution::new(std::path::Path::new("/var/run/docker.sock")),
            names: None,
            spelling: Spelling::default(),
        }
    }

    /// Folds the two sources' sightings of one action into one alert: call
    /// with `true` when both the eBPF and the audit source run.
    pub fn correlating(mut self, both_sources: bool) -> Pipeline {
        self.correlator.set_enabled(both_sources);
        self
    }

    /// Guards dockwatch's own files: changes to them by any other process
    /// are `dockwatch-self-modified` alerts, whatever the rules say.
    pub fn guarding(mut self, paths: Vec<Vec<u8>>) -> Pipeline {
        self.own.guarding(paths);
        self
    }

    /// Replaces the rule set (a reload). Called between two events by the
    /// loop that owns the pipeline, so each event meets exactly one set;
    /// alerts held for correlation or flood control keep their rule.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    /// Attributes engine events to the client on `socket` (the engine's
    /// API socket, `[sources.docker] socket`).
    pub fn attributing(mut self, socket: &std::path::Path) -> Pipeline {
        self.attribution = Attribution::new(socket);
        self
    }

    /// Gives audit events the watched paths' spelling (`/var/run/docker.sock`
    /// where the kernel logged `/run/docker.sock`) for these watches: at
    /// start and after each reload of a live run.
    pub fn respell(&mut self, watches: &[Watch]) {
        self.spelling = Spelling::of(watches);
    }

    /// Names the container of events from processes in one.
    pub fn naming(mut self, names: ContainerNames) -> Pipeline {
        self.names = Some(names);
        self
    }

    /// Gives an audit event the rules' spelling of its paths, an engine
    /// event the client process that asked for it (and notes clients'
    /// connects), and an event from a process in a container that
    /// container's name and image. Called for every live event before
    /// anything else sees it, so that posture's reports have all three.
    pub fn attribute(&mut self, event: &mut Event, now: Instant) {
        self.spelling.apply(event);
        self.attribution.apply(event, now);
        if let Some(names) = &self.names {
            attribute::name_container(event, names);
        }
    }

    /// Feeds one event; alerts ready now are appended to `out`.
    pub fn push(&mut self, event: Event, now: Instant, out: &mut Vec<Alert>) {
        if event.action == Action::Connect && event.process.pid == self.own_pid {
            return;
        }
        if let Some(rule) = self.own.rule_for(&event) {
            out.push(Alert::new(event, Arc::clone(rule), self.host.clone()));
            return;
        }
        let mut matched = recycle(std::mem::take(&mut self.matched));
        self.rules.matches(&event, &mut matched);
        let Some((last, others)) = matched.split_last() else {
            self.matched = recycle(matched);
            return;
        };
        // `matched` borrows the rules: the stages are passed field by field.
        let (correlator, flood, staged) = (&mut self.correlator, &mut self.flood, &mut self.staged);
        for rule in others {
            let alert = Alert::new(event.clone(), Arc::clone(rule), self.host.clone());
            correlate_then_flood(correlator, flood, staged, alert, now, out);
        }
        let alert = Alert::new(event, Arc::clone(last), self.host.clone());
        correlate_then_flood(correlator, flood, staged, alert, now, out);
        self.matched = recycle(matched);
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

    /// Sightings folded into an alert the other source's sighting already
    /// made (one action, one alert), since the start.
    pub fn folded(&self) -> u64 {
        self.correlator.folded()
    }
}

/// Correlation, then flood control. An alert correlation passes as it is
/// goes straight on rather than through `staged`: one move of the alert
/// less, on every alert of a replay.
fn correlate_then_flood(
    correlator: &mut Correlator,
    flood: &mut FloodControl,
    staged: &mut Vec<Alert>,
    alert: Alert,
    now: Instant,
    out: &mut Vec<Alert>,
) {
    if correlator.passes(&alert) {
        flood.push(alert, now, out);
        return;
    }
    correlator.push(alert, now, staged);
    for alert in staged.drain(..) {
        flood.push(alert, now, out);
    }
}

/// Empties `v` and hands back its allocation as a Vec of another lifetime.
/// An empty `into_iter().collect()` between same-sized types reuses the
/// buffer in place, so the matched-rules list allocates once, not per event.
fn recycle<'b>(mut v: Vec<&Arc<RuleRef>>) -> Vec<&'b Arc<RuleRef>> {
    v.clear();
    v.into_iter().map(|_| unreachable!()).collect()
}
