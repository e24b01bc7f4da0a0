//! Rule files (YAML, one directory) → a validated, compiled matcher, and the
//! watch set that the kernel probes and auditd need to see those paths.
//!
//! One source of truth: the same [`RuleSet`] answers "which rules does this
//! event match" for the pipeline, "which paths must be watched" for the eBPF
//! source, and "which audit rules" for `dockwatch rules auditctl`.
//!
//! A rule file may hold `lists` (named lists, used as `$name` in any list of
//! values), `extend_lists`, `rules`, and `modify` (change a rule of this or an
//! earlier file by id: disable it, change its severity, append paths,
//! actions, tags or exceptions). Files load in name order.

mod auditctl;
mod load;
mod locate;
mod matcher;
mod schema;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::alert::RuleRef;
use crate::config::ConfigError;
use crate::event::{Action, Event};

use load::RuleDef;
use matcher::Matcher;

/// One path the sources must watch, with audit's meaning: a file, or a
/// directory and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub path: PathBuf,
    /// Actions of interest, as [`Action::bit`] masks.
    pub actions: u64,
    /// Audit key (`-k`): the id of the rule that wants this watch.
    pub key: String,
}

/// `path` with symlinks resolved as far as it exists; the missing tail is
/// kept as written.
pub fn resolve_path(path: &Path) -> PathBuf {
    let mut tail = Vec::new();
    let mut cur = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(cur) {
            let mut out = real;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                cur = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Whether `path` is `dir` or lies below it, by whole components (so
/// `/etc/dockerx` is not below `/etc/docker`): what a watch on `dir` covers.
pub fn path_is_at_or_below(path: &[u8], dir: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(path)).starts_with(std::ffi::OsStr::from_bytes(dir))
}

/// The compiled rules.
pub struct RuleSet {
    defs: Vec<RuleDef>,
    matcher: Matcher,
    files: Vec<PathBuf>,
}

impl RuleSet {
    /// Loads every `*.yaml`/`*.yml` file of `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, ConfigError> {
        let files = load::rule_files(dir)?;
        RuleSet::load_files(files)
    }

    /// Loads the given files, in this order.
    pub fn load_files(files: Vec<PathBuf>) -> Result<RuleSet, ConfigError> {
        let defs = load::load_files(&files)?;
        let matcher = Matcher::new(&defs);
        Ok(RuleSet {
            defs,
            matcher,
            files,
        })
    }

    /// Appends each enabled rule `event` matches, once each.
    pub fn matches<'a>(&'a self, event: &Event, out: &mut Vec<&'a Arc<RuleRef>>) {
        self.matcher.matches(event, out)
    }

    /// Every rule loaded, enabled or not, in load order.
    pub fn rules(&self) -> impl Iterator<Item = (&Arc<RuleRef>, bool)> {
        self.defs.iter().map(|d| (&d.info, d.enabled))
    }

    /// Number of enabled rules.
    pub fn len(&self) -> usize {
        self.matcher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Paths the sources must watch, one per (path, rule), sorted by path.
    /// Globs yield their literal directory: the sources watch it whole and
    /// the matcher picks out what the glob names.
    pub fn watches(&self) -> Vec<Watch> {
        let mut merged: BTreeMap<(Vec<u8>, &str), u64> = BTreeMap::new();
        for def in self.defs.iter().filter(|d| d.enabled) {
            for pattern in &def.paths {
                *merged
                    .entry((pattern.root().to_vec(), def.info.id.as_str()))
                    .or_default() |= def.actions;
            }
        }
        merged
            .into_iter()
            .map(|((path, key), actions)| Watch {
                path: PathBuf::from(OsString::from_vec(path)),
                actions,
                key: key.to_string(),
            })
            .collect()
    }
}

/// What `dockwatch rules` can print about a rule directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Problems found while loading (none, or loading fails), and notes.
    Lint,
    /// Each rule with its severity, state, actions, tags and paths.
    List,
    /// The audit rules that feed the audit source, for `auditctl -R`.
    Auditctl,
}

/// Loads the rules in `dir` and renders `report`; a rule error is the
/// `Err`, with its file:line:col.
pub fn report(report: Report, dir: &Path) -> anyhow::Result<String> {
    let rules = RuleSet::load_dir(dir)?;
    Ok(match report {
        Report::Lint => lint_summary(&rules, dir),
        Report::List => list(&rules),
        Report::Auditctl => auditctl::render(&rules.watches(), dir, |path| {
            path.parent().is_none_or(Path::is_dir)
        }),
    })
}

fn lint_summary(rules: &RuleSet, dir: &Path) -> String {
    let disabled = rules.defs.iter().filter(|d| !d.enabled).count();
    let mut out = format!(
        "{}: {} files, {} rules ({} disabled), {} watched paths: no problems\n",
        dir.display(),
        rules.files.len(),
        rules.defs.len(),
        disabled,
        rules.watches().len()
    );
    // Not mistakes, but worth knowing: auditd and the kernel see everything
    // under a glob's directory, and dockwatch filters.
    for def in rules.defs.iter().filter(|d| d.enabled) {
        for pattern in &def.paths {
            if let load::PathPattern::Glob { glob, root } = pattern {
                out.push_str(&format!(
                    "note: {}: glob {} is watched as all of {}\n",
                    def.info.id,
                    glob.glob(),
                    String::from_utf8_lossy(root)
                ));
            }
        }
    }
    out
}

fn list(rules: &RuleSet) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "SEVERITY".to_string(),
        "STATE".to_string(),
        "ACTIONS".to_string(),
        "TAGS".to_string(),
        "NAME".to_string(),
    ]];
    for def in &rules.defs {
        let actions: Vec<&str> = Action::ALL
            .iter()
            .filter(|a| def.actions & a.bit() != 0)
            .map(|a| a.as_str())
            .collect();
        rows.push([
            def.info.id.clone(),
            def.info.severity.to_string(),
            if def.enabled { "enabled" } else { "disabled" }.to_string(),
            actions.join(","),
            def.info.tags.join(","),
            def.info.name.clone(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for def in &rules.defs {
        out.push_str(&format!("\n{} ({})\n", def.info.id, def.defined_at));
        if !def.description.is_empty() {
            out.push_str(&format!("  {}\n", def.description.trim()));
        }
        let paths: Vec<String> = def.paths.iter().map(|p| p.as_text()).collect();
        if paths.is_empty() {
            out.push_str("  paths: none (engine actions)\n");
        } else {
            out.push_str(&format!("  paths: {}\n", paths.join(" ")));
        }
        if !def.except.is_empty() {
            out.push_str(&format!("  exceptions: {}\n", def.except.len()));
        }
    }
    out
}
