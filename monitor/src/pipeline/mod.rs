//! Event → matched rules → [`Alert`]. Correlation of the same action seen by
//! both sources and flood aggregation live here too.

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use crate::alert::Alert;
use crate::event::Event;
use crate::rules::RuleSet;

/// The `[pipeline]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {}

pub struct Pipeline {
    rules: Arc<RuleSet>,
    host: Arc<str>,
}

impl Pipeline {
    pub fn new(rules: Arc<RuleSet>, _config: &PipelineConfig, host: Arc<str>) -> Pipeline {
        Pipeline { rules, host }
    }

    /// Feeds one event; alerts ready now are appended to `out`.
    pub fn push(&mut self, event: Event, _now: Instant, out: &mut Vec<Alert>) {
        let mut matched = Vec::new();
        self.rules.matches(&event, &mut matched);
        for rule in matched {
            out.push(Alert::new(event.clone(), rule.clone(), self.host.clone()));
        }
    }

    /// When [`Pipeline::tick`] must next be called, if anything is held back.
    pub fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Releases alerts whose windows have closed.
    pub fn tick(&mut self, _now: Instant, _out: &mut Vec<Alert>) {}

    /// Releases everything held back (shutdown, end of replay).
    pub fn flush(&mut self, _out: &mut Vec<Alert>) {}
}
