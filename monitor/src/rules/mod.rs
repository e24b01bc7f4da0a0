//! Rule files (YAML, one directory) → a validated, compiled matcher, and the
//! watch set that the kernel probes and auditd need to see those paths.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::alert::{RuleRef, Severity};
use crate::config::ConfigError;
use crate::event::{Action, Event};

/// One path the sources must watch, with audit's meaning: a file, or a
/// directory and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub path: PathBuf,
    /// Actions of interest, as [`Action::bit`] masks.
    pub actions: u32,
    /// Audit key (`-k`).
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    name: String,
    #[serde(default)]
    description: String,
    severity: String,
    #[serde(default)]
    tags: Vec<String>,
    paths: Vec<String>,
    actions: Vec<String>,
}

struct Rule {
    info: Arc<RuleRef>,
    paths: Vec<Vec<u8>>,
    actions: u32,
}

/// The compiled rules.
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Loads every `*.yaml`/`*.yml` file of `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, ConfigError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            ConfigError::in_file(dir, format!("cannot read the rules directory: {e}"))
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ConfigError::in_file(
                dir,
                "no rule files (*.yaml) in the rules directory",
            ));
        }
        let mut rules = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| ConfigError::in_file(file, format!("cannot read: {e}")))?;
            let parsed: RuleFile =
                serde_norway::from_str(&text).map_err(|e| match e.location() {
                    Some(loc) => ConfigError::at(file, loc.line(), loc.column(), e.to_string()),
                    None => ConfigError::in_file(file, e.to_string()),
                })?;
            for spec in parsed.rules {
                rules.push(compile(file, spec)?);
            }
        }
        Ok(RuleSet { rules })
    }

    /// Rules `event` matches, in file order.
    pub fn matches<'a>(&'a self, event: &Event, out: &mut Vec<&'a Arc<RuleRef>>) {
        for rule in &self.rules {
            if rule.actions & event.action.bit() == 0 {
                continue;
            }
            if event
                .paths()
                .any(|f| rule.paths.iter().any(|p| under(&f.path, p)))
            {
                out.push(&rule.info);
            }
        }
    }

    /// Paths the sources must watch.
    pub fn watches(&self) -> Vec<Watch> {
        self.rules
            .iter()
            .flat_map(|r| {
                r.paths.iter().map(|p| Watch {
                    path: PathBuf::from(String::from_utf8_lossy(p).into_owned()),
                    actions: r.actions,
                    key: r.info.id.clone(),
                })
            })
            .collect()
    }
}

fn compile(file: &Path, spec: RuleSpec) -> Result<Rule, ConfigError> {
    let _ = &spec.description;
    let severity = Severity::from_name(&spec.severity).ok_or_else(|| {
        ConfigError::in_file(
            file,
            format!("rule {}: unknown severity {:?}", spec.id, spec.severity),
        )
    })?;
    let mut actions = 0;
    for name in &spec.actions {
        let action = Action::from_name(name).ok_or_else(|| {
            ConfigError::in_file(file, format!("rule {}: unknown action {name:?}", spec.id))
        })?;
        actions |= action.bit();
    }
    Ok(Rule {
        info: Arc::new(RuleRef {
            id: spec.id,
            name: spec.name,
            severity,
            tags: spec.tags,
        }),
        paths: spec
            .paths
            .into_iter()
            .map(|p| p.trim_end_matches('/').as_bytes().to_vec())
            .collect(),
        actions,
    })
}

/// `path` is `watched` or lies below it.
fn under(path: &[u8], watched: &[u8]) -> bool {
    path.strip_prefix(watched)
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// `dockwatch rules lint|list|auditctl`.
pub fn command(action: crate::cli::RulesAction, dir: &Path) -> anyhow::Result<u8> {
    let rules = RuleSet::load_dir(dir)?;
    match action {
        crate::cli::RulesAction::Lint => {
            println!(
                "{}: {} rules, no problems",
                dir.display(),
                rules.rules.len()
            );
        }
        crate::cli::RulesAction::List => {
            for rule in &rules.rules {
                println!(
                    "{}\t{}\t{}",
                    rule.info.id, rule.info.severity, rule.info.name
                );
            }
        }
        crate::cli::RulesAction::Auditctl => {
            for watch in rules.watches() {
                println!("-w {} -p wa -k {}", watch.path.display(), watch.key);
            }
        }
    }
    Ok(0)
}
