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

use super::{Counters, Response};
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
    /// Watches that come from no rule file: posture's inputs and dockwatch's
    /// own files. A reload keeps them.
    standing_watches: Vec<Watch>,
    /// Rules loaded now.
    pub rules: usize,
}

/// A checked reload on its way in. The new rules replace the old ones only
/// once the kernel holds the new watch set and the events queued before
/// that moment are handled: what happened before the reload is judged by
/// the old rules, what happens after it by the new, and each event by
/// exactly one set.
pub struct Pending {
    rules: Arc<RuleSet>,
    report: ReloadReport,
    kernel: Option<KernelAnswer>,
    /// Events still to handle with the old rules, counted once the kernel
    /// has answered.
    queued: Option<usize>,
    /// Where `dockwatch reload` waits for the outcome (none for SIGHUP).
    reply: Option<oneshot::Sender<Response>>,
}

impl Pending {
    /// Waits for the kernel's answer; never returns when there is none to
    /// wait for.
    pub async fn kernel_answer(pending: &mut Option<Pending>) -> Result<usize, String> {
        match pending.as_mut().and_then(|p| p.kernel.as_mut()) {
            Some(answer) => answer
                .await
                .unwrap_or_else(|_| Err("the eBPF reader has stopped".to_string())),
            None => std::future::pending().await,
        }
    }

    /// The kernel holds the new set; `queued` events were sent before it
    /// said so.
    pub fn kernel_done(&mut self, answer: Result<usize, String>, queued: usize) {
        match answer {
            Ok(inodes) => self.report.watched_inodes = Some(inodes),
            Err(e) => tracing::error!("reload: cannot update the kernel's watch set: {e}"),
        }
        self.kernel = None;
        self.queued = Some(queued);
    }

    /// One event handled (with the old rules).
    pub fn on_event(&mut self) {
        if let Some(n) = &mut self.queued {
            *n = n.saturating_sub(1);
        }
    }

    pub fn ready(&self) -> bool {
        self.queued == Some(0)
    }
}

impl Reloader {
    pub fn new(plan: ReloadPlan, standing_watches: Vec<Watch>, rules: usize) -> Reloader {
        Reloader {
            plan,
            standing_watches,
            rules,
        }
    }

    /// Reads everything again and, when it is all good, hands the new
    /// watches to the eBPF source and returns the reload to finish with
    /// [`Reloader::apply`] (see [`Pending`]); `queued` is the number of
    /// events waiting now, for when there is no kernel to wait for. A
    /// broken file refuses the reload: logged, raised as a
    /// `dockwatch-reload-refused` alert into `alerts`, and answered to
    /// `reply` (`file:line:col: …`); nothing changes.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        running: &mut Config,
        pipeline: &mut Pipeline,
        ebpf: Option<&EbpfSource>,
        queued: usize,
        counters: &mut Counters,
        alerts: &mut Vec<Alert>,
        reply: Option<oneshot::Sender<Response>>,
    ) -> Option<Pending> {
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
                if let Some(reply) = reply {
                    let _ = reply.send(Response::error(error));
                }
                return None;
            }
        };
        for key in &prepared.needs_restart {
            tracing::warn!(
                "reload: {key} changed in the configuration and needs a restart; the running value stays"
            );
        }
        let rules = Arc::new(prepared.rules);
        let mut watches = rules.watches();
        watches.extend(self.standing_watches.iter().cloned());
        running.rules = prepared.config.rules;
        let kernel = ebpf.map(|source| source.rewatch(watches));
        let report = ReloadReport {
            rules: rules.len(),
            rules_dir: prepared.rules_dir.display().to_string(),
            watched_inodes: None,
            needs_restart: prepared
                .needs_restart
                .iter()
                .map(|k| k.to_string())
                .collect(),
        };
        Some(Pending {
            rules,
            report,
            queued: kernel.is_none().then_some(queued),
            kernel,
            reply,
        })
    }

    /// Swaps the rules of a [`Pending::ready`] reload in, between two
    /// events, and answers whoever asked.
    /// Swaps the rules in; returns the watches they and posture want, for
    /// the sources that follow paths without a kernel map.
    pub fn apply(
        &mut self,
        pending: Pending,
        pipeline: &mut Pipeline,
        counters: &mut Counters,
    ) -> Vec<Watch> {
        let Pending {
            rules,
            report,
            reply,
            ..
        } = pending;
        let mut watches = rules.watches();
        watches.extend(self.standing_watches.iter().cloned());
        self.rules = rules.len();
        pipeline.set_rules(rules);
        counters.reloads_applied += 1;
        counters.last_reload = Some(format!(
            "applied: {} rules from {}",
            report.rules, report.rules_dir
        ));
        tracing::info!(
            rules = report.rules,
            rules_dir = report.rules_dir.as_str(),
            watched_inodes = report.watched_inodes,
            "reload applied"
        );
        if let Some(reply) = reply {
            let _ = reply.send(Response {
                reload: Some(report),
                ..Response::default()
            });
        }
        watches
    }
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
