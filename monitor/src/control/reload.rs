//! Reloading the configuration and rules of a running daemon (SIGHUP,
//! `dockwatch reload`).
//!
//! Both are read and checked in full before anything changes; a broken
//! file refuses the whole reload (with `file:line:col`) and the old set
//! keeps running. What can change live is the rule set (and so the kernel's
//! watches). Sources and outputs hold open probes, files, connections and
//! spools whose swap would itself be a gap: a changed key of theirs, or of
//! any other section, is named in a "needs a restart" warning and the rest
//! is applied.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::Counters;
use crate::alert::Alert;
use crate::config::{Config, ConfigError};
use crate::event::{Action, Detail, Event, Source};
use crate::pipeline::Pipeline;
use crate::rules::{RuleSet, Watch};
use crate::source::ebpf::EbpfSource;

/// What to read again on a reload: the files the daemon started from.
#[derive(Debug, Clone)]
pub struct ReloadPlan {
    /// `--config`, else the default path (a missing default is the defaults).
    pub config_path: Option<PathBuf>,
    /// `--rules`, which wins over the configuration's `[rules] dir`.
    pub rules_flag: Option<PathBuf>,
    /// The directory used at start, kept when neither names one.
    pub rules_dir: PathBuf,
}

/// A checked new configuration and rule set, not yet applied.
pub struct Prepared {
    pub config: Config,
    pub rules: RuleSet,
    pub rules_dir: PathBuf,
    /// Configuration keys whose change needs a restart.
    pub needs_restart: Vec<&'static str>,
}

/// What a reload did, for the log and `dockwatch reload`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadReport {
    pub rules: usize,
    pub rules_dir: String,
    /// Inodes the kernel watches now (when the eBPF source runs).
    pub watched_inodes: Option<usize>,
    /// Changed configuration keys left as they were until a restart.
    pub needs_restart: Vec<String>,
}

impl ReloadPlan {
    /// Reads and checks everything; `running` is the configuration in use.
    pub fn prepare(&self, running: &Config) -> Result<Prepared, ConfigError> {
        let config = Config::load(self.config_path.as_deref())?;
        let rules_dir = self
            .rules_flag
            .clone()
            .or_else(|| config.rules.dir.clone())
            .unwrap_or_else(|| self.rules_dir.clone());
        let rules = RuleSet::load_dir(&rules_dir)?;
        let needs_restart = needs_restart(running, &config);
        Ok(Prepared {
            config,
            rules,
            rules_dir,
            needs_restart,
        })
    }
}

/// The kernel's answer to a new watch set: inodes watched, or the error.
pub type KernelAnswer = oneshot::Receiver<Result<usize, String>>;

/// The event loop's reload: owns what a reload reads again and what it
/// keeps (the posture checks' watches, which no rule file names).
pub struct Reloader {
    plan: ReloadPlan,
    posture_watches: Vec<Watch>,
    /// Rules loaded now.
    pub rules: usize,
}

impl Reloader {
    pub fn new(plan: ReloadPlan, posture_watches: Vec<Watch>, rules: usize) -> Reloader {
        Reloader {
            plan,
            posture_watches,
            rules,
        }
    }

    /// Reads everything again and, when it is all good, swaps the rules in
    /// `pipeline` and hands the new watches to the eBPF source (whose answer
    /// [`finish`] waits for). A broken file refuses the reload: logged,
    /// raised as a `dockwatch-reload-refused` alert into `alerts`, and
    /// returned (`file:line:col: …`); nothing changes.
    ///
    /// Called by the loop that owns `pipeline`, between two events, so every
    /// event meets exactly one rule set.
    pub fn reload(
        &mut self,
        running: &mut Config,
        pipeline: &mut Pipeline,
        ebpf: Option<&EbpfSource>,
        counters: &mut Counters,
        alerts: &mut Vec<Alert>,
    ) -> Result<(ReloadReport, Option<KernelAnswer>), String> {
        let prepared = match self.plan.prepare(running) {
            Ok(prepared) => prepared,
            Err(e) => {
                let error = e.to_string();
                tracing::error!(
                    "reload refused, the old configuration and rules keep running: {error}"
                );
                counters.reloads_refused += 1;
                counters.last_reload = Some(format!("refused: {error}"));
                let mut event = Event::new(Source::Monitor, Action::ReloadRefused);
                event.detail = Detail::Refused {
                    error: error.clone(),
                };
                pipeline.push(event, Instant::now(), alerts);
                return Err(error);
            }
        };
        for key in &prepared.needs_restart {
            tracing::warn!(
                "reload: {key} changed in the configuration and needs a restart; the running value stays"
            );
        }
        let rules = Arc::new(prepared.rules);
        let mut watches = rules.watches();
        watches.extend(self.posture_watches.iter().cloned());
        self.rules = rules.len();
        pipeline.set_rules(rules);
        running.rules = prepared.config.rules;
        let kernel = ebpf.map(|source| source.rewatch(watches));
        counters.reloads_applied += 1;
        counters.last_reload = Some(format!(
            "applied: {} rules from {}",
            self.rules,
            prepared.rules_dir.display()
        ));
        let report = ReloadReport {
            rules: self.rules,
            rules_dir: prepared.rules_dir.display().to_string(),
            watched_inodes: None,
            needs_restart: prepared
                .needs_restart
                .iter()
                .map(|k| k.to_string())
                .collect(),
        };
        Ok((report, kernel))
    }
}

/// Waits until the kernel holds the new watch set, then logs the reload.
pub async fn finish(mut report: ReloadReport, kernel: Option<KernelAnswer>) -> ReloadReport {
    if let Some(answer) = kernel {
        match answer.await {
            Ok(Ok(inodes)) => report.watched_inodes = Some(inodes),
            Ok(Err(e)) => tracing::error!("reload: {e}"),
            Err(_) => tracing::error!("reload: the eBPF reader has stopped"),
        }
    }
    tracing::info!(
        rules = report.rules,
        rules_dir = report.rules_dir.as_str(),
        watched_inodes = report.watched_inodes,
        "reload applied"
    );
    report
}

/// The keys (top-level settings and sections) that differ, except those a
/// reload applies. Compared through `Debug`, which every section derives and
/// which shows every field, so a new setting is covered without a list here
/// to keep in step.
pub fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let d = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let keys: [(&'static str, String, String); 10] = [
        ("host_name", d(&running.host_name), d(&new.host_name)),
        ("state_dir", d(&running.state_dir), d(&new.state_dir)),
        ("outputs", d(&running.outputs), d(&new.outputs)),
        (
            "[sources.ebpf]",
            d(&running.sources.ebpf),
            d(&new.sources.ebpf),
        ),
        (
            "[sources.audit]",
            d(&running.sources.audit),
            d(&new.sources.audit),
        ),
        ("[pipeline]", d(&running.pipeline), d(&new.pipeline)),
        ("[posture]", d(&running.posture), d(&new.posture)),
        ("[outbox]", d(&running.outbox), d(&new.outbox)),
        ("[tls]", d(&running.tls), d(&new.tls)),
        ("[control]", d(&running.control), d(&new.control)),
    ];
    keys.into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(key, _, _)| key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("c.toml"), text).unwrap()
    }

    #[test]
    fn only_rules_change_live() {
        let running = parse("");
        let new = parse(
            "outputs = [\"stdout\"]\n[rules]\ndir = \"/x\"\n[sources.ebpf]\nhooks = \"syscalls\"\n",
        );
        assert_eq!(needs_restart(&running, &new), ["outputs", "[sources.ebpf]"]);
        assert!(needs_restart(&running, &parse("[rules]\ndir = \"/y\"\n")).is_empty());
    }

    #[test]
    fn a_broken_rule_file_refuses_the_reload_with_its_location() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.yaml"), "rules:\n  - id: [\n").unwrap();
        let plan = ReloadPlan {
            config_path: Some(dir.path().join("missing.toml")),
            rules_flag: Some(dir.path().to_path_buf()),
            rules_dir: dir.path().to_path_buf(),
        };
        // A named config that is missing is an error too.
        let err = plan.prepare(&Config::default()).err().unwrap();
        assert!(err.to_string().contains("missing.toml"), "{err}");
        let config = dir.path().join("c.toml");
        std::fs::write(&config, "").unwrap();
        let plan = ReloadPlan {
            config_path: Some(config),
            ..plan
        };
        let err = plan.prepare(&Config::default()).err().unwrap();
        assert!(err.to_string().contains("r.yaml:"), "{err}");
        assert!(err.line.is_some(), "{err:?}");
    }
}
