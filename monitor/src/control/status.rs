//! What `dockwatch status` reports, the counters behind it, and its table.
//!
//! The counters are plain integers owned by the event loop, which is also
//! the only reader (it answers status calls between events): cheaper than
//! atomics, and no lock on the event path.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::config::Config;
use crate::event::{Detail, Event, Source};
use crate::outbox::{OutputStatus, Outputs};
use crate::source::audit::checkpoint::Checkpoint;
use crate::source::ebpf::EbpfSource;

/// Counts the event loop keeps as events and alerts pass.
pub struct Counters {
    started: Instant,
    /// Events by source, indexed by [`slot`].
    events: [u64; SOURCES],
    /// Records the sources reported lost, by source.
    lost: [u64; SOURCES],
    alerts: HashMap<String, u64>,
    pub reloads_applied: u64,
    pub reloads_refused: u64,
    /// The last reload's outcome, in words.
    pub last_reload: Option<String>,
}

/// `Source::ALL` lists the sources in declaration order.
fn slot(source: Source) -> usize {
    source as usize
}

const SOURCES: usize = Source::ALL.len();

impl Default for Counters {
    fn default() -> Counters {
        Counters::new()
    }
}

impl Counters {
    pub fn new() -> Counters {
        Counters {
            started: Instant::now(),
            events: [0; SOURCES],
            lost: [0; SOURCES],
            alerts: HashMap::new(),
            reloads_applied: 0,
            reloads_refused: 0,
            last_reload: None,
        }
    }

    pub fn on_event(&mut self, event: &Event) {
        let i = slot(event.source);
        self.events[i] += 1;
        if let Detail::Lost { count, .. } = event.detail {
            self.lost[i] += count;
        }
    }

    pub fn on_alert(&mut self, alert: &Alert) {
        let id = alert.rule.id.as_str();
        // The lookup by &str allocates only for a rule's first alert.
        match self.alerts.get_mut(id) {
            Some(n) => *n += alert.count,
            None => {
                self.alerts.insert(id.to_string(), alert.count);
            }
        }
    }

    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn events(&self, source: Source) -> u64 {
        self.events[slot(source)]
    }

    pub fn lost(&self, source: Source) -> u64 {
        self.lost[slot(source)]
    }

    pub fn alerts(&self) -> BTreeMap<String, u64> {
        self.alerts.iter().map(|(k, &v)| (k.clone(), v)).collect()
    }
}

/// One running source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    /// The hook set attached (eBPF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<String>,
    /// Events it handed to the pipeline.
    pub events: u64,
    /// Records it reported lost (ring buffer full, audit backlog, gaps).
    pub lost: u64,
    /// Records the kernel passed on that userspace found unwatched (eBPF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered: Option<u64>,
}

/// Where the audit reader will resume after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointStatus {
    pub path: String,
    /// Absent while nothing has been saved yet.
    pub log: Option<String>,
    pub offset: Option<u64>,
    pub serial: Option<u64>,
}

/// Reloads since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadCounts {
    pub applied: u64,
    pub refused: u64,
    pub last: Option<String>,
}

/// The answer to `dockwatch status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: f64,
    /// Rules loaded now.
    pub rules: usize,
    pub sources: Vec<SourceStatus>,
    /// Alerts by rule id (a flood summary counts every alert it stands for).
    pub alerts: BTreeMap<String, u64>,
    pub outputs: Vec<OutputStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_checkpoint: Option<CheckpointStatus>,
    pub reloads: ReloadCounts,
}

impl Status {
    /// The picture now. `started` names the sources that run.
    pub fn gather(
        counters: &Counters,
        rules: usize,
        started: &[&str],
        ebpf: Option<&EbpfSource>,
        outputs: &Outputs,
        config: &Config,
    ) -> Status {
        let mut sources = Vec::new();
        if let Some(ebpf) = ebpf {
            let (_, _, filtered) = ebpf.stats();
            sources.push(SourceStatus {
                name: Source::Ebpf.as_str().to_string(),
                hooks: Some(ebpf.hooks().to_string()),
                events: counters.events(Source::Ebpf),
                lost: counters.lost(Source::Ebpf),
                filtered: Some(filtered),
            });
        }
        if started.contains(&"audit") {
            sources.push(SourceStatus {
                name: Source::Audit.as_str().to_string(),
                hooks: None,
                events: counters.events(Source::Audit),
                lost: counters.lost(Source::Audit),
                filtered: None,
            });
        }
        let audit_checkpoint = config
            .sources
            .audit
            .checkpoint
            .as_ref()
            .filter(|_| started.contains(&"audit"))
            .map(|path| {
                // Read from disk: it is what a restart would resume from.
                let saved = Checkpoint::load(path);
                CheckpointStatus {
                    path: path.display().to_string(),
                    log: saved.as_ref().map(|c| c.log.display().to_string()),
                    offset: saved.as_ref().map(|c| c.offset),
                    serial: saved.as_ref().and_then(|c| c.serial),
                }
            });
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: counters.uptime_secs(),
            rules,
            sources,
            alerts: counters.alerts(),
            outputs: outputs.status(),
            audit_checkpoint,
            reloads: ReloadCounts {
                applied: counters.reloads_applied,
                refused: counters.reloads_refused,
                last: counters.last_reload.clone(),
            },
        }
    }

    /// The heartbeat event: the status as its counters.
    pub fn heartbeat(&self) -> Event {
        let mut event = Event::new(Source::Monitor, crate::event::Action::Heartbeat);
        event.detail = Detail::Heartbeat {
            counters: serde_json::to_string(self)
                .unwrap_or_else(|_| "{}".to_string())
                .into(),
        };
        event
    }

    /// The short table `dockwatch status` prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "dockwatch {} (pid {}), up {}, {} rules",
            self.version,
            self.pid,
            human_secs(self.uptime_secs),
            self.rules
        );
        let _ = writeln!(out, "\nSOURCE   EVENTS      LOST  FILTERED  HOOKS");
        for s in &self.sources {
            let _ = writeln!(
                out,
                "{:<8} {:>6} {:>9} {:>9}  {}",
                s.name,
                s.events,
                s.lost,
                s.filtered.map_or("-".to_string(), |f| f.to_string()),
                s.hooks.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(out, "\nRULE                                  ALERTS");
        if self.alerts.is_empty() {
            let _ = writeln!(out, "(no alerts yet)");
        }
        for (rule, n) in &self.alerts {
            let _ = writeln!(out, "{rule:<37} {n:>7}");
        }
        let _ = writeln!(
            out,
            "\nOUTPUT  (spool bytes, oldest undelivered, last error)"
        );
        for o in &self.outputs {
            match &o.delivery {
                None => {
                    let _ = writeln!(out, "{}  (written directly)", o.output);
                }
                Some(d) => {
                    let _ = writeln!(
                        out,
                        "{}  {} B, {}, {}",
                        o.output,
                        d.spool_bytes,
                        d.oldest_undelivered_secs
                            .map_or("all delivered".to_string(), human_secs),
                        d.last_error.as_deref().unwrap_or("no error")
                    );
                }
            }
        }
        if let Some(cp) = &self.audit_checkpoint {
            let _ = writeln!(
                out,
                "\naudit checkpoint {}: {}",
                cp.path,
                match (&cp.log, cp.offset) {
                    (Some(log), Some(offset)) => format!("{log} at byte {offset}"),
                    _ => "not written yet".to_string(),
                }
            );
        }
        let _ = writeln!(
            out,
            "\nreloads: {} applied, {} refused{}",
            self.reloads.applied,
            self.reloads.refused,
            self.reloads
                .last
                .as_ref()
                .map_or(String::new(), |l| format!("; last: {l}"))
        );
        out
    }
}

fn human_secs(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..60 => format!("{secs:.1}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
