//! Reading a rules directory: parse each file, merge them in name order
//! (lists, `extend_lists`, rules, `modify`), expand `$list` references and
//! validate every value into a [`RuleDef`]. Every mistake is reported at the
//! `file:line:col` of the value that causes it, with what to do instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{Glob, GlobBuilder};

use super::locate::{locate, NodePath};
use super::schema::{ExceptSpec, ProcessSpecRef, RuleFile, RuleSpec, Text};
use crate::alert::{RuleRef, Severity};
use crate::config::ConfigError;
use crate::event::Action;

/// The longest `comm` the kernel keeps (TASK_COMM_LEN - 1).
const COMM_MAX: usize = 15;
/// How deep `$list` references may nest before we call it a cycle.
const LIST_DEPTH_MAX: usize = 8;

/// One validated rule, as written (after merging and list expansion).
#[derive(Debug)]
pub(crate) struct RuleDef {
    pub info: Arc<RuleRef>,
    pub description: String,
    pub enabled: bool,
    pub paths: Vec<PathPattern>,
    pub actions: u64,
    pub process: ProcessCond,
    pub except: Vec<ExceptDef>,
    /// `file:line:col` of the rule's id, for `rules list`.
    pub defined_at: String,
}

/// A path of a rule: a file or directory with everything below it (audit's
/// `-w` meaning), or a glob matched against the whole path.
#[derive(Debug, Clone)]
pub(crate) enum PathPattern {
    Subtree(Vec<u8>),
    Glob {
        glob: Glob,
        /// The literal directory before the first wildcard: what must be
        /// watched for the glob to see anything.
        root: Vec<u8>,
    },
}

impl PathPattern {
    /// The directory or file the sources must watch.
    pub fn root(&self) -> &[u8] {
        match self {
            PathPattern::Subtree(p) => p,
            PathPattern::Glob { root, .. } => root,
        }
    }

    pub fn as_text(&self) -> String {
        match self {
            PathPattern::Subtree(p) => String::from_utf8_lossy(p).into_owned(),
            PathPattern::Glob { glob, .. } => glob.glob().to_string(),
        }
    }
}

/// An executable or comm: exact, or a glob.
#[derive(Debug, Clone)]
pub(crate) enum ValuePattern {
    Exact(String),
    Glob(Glob),
}

/// Conditions on the acting process; `None` means "any".
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessCond {
    pub exe: Option<Vec<ValuePattern>>,
    pub comm: Option<Vec<ValuePattern>>,
    pub parent_exe: Option<Vec<ValuePattern>>,
    pub uid: Option<Vec<u32>>,
    pub auid: Option<Vec<u32>>,
    pub container: Option<bool>,
}

impl ProcessCond {
    fn is_empty(&self) -> bool {
        self.exe.is_none()
            && self.comm.is_none()
            && self.parent_exe.is_none()
            && self.uid.is_none()
            && self.auid.is_none()
            && self.container.is_none()
    }
}

/// One exception of a rule: everything given must hold for it to apply.
#[derive(Debug, Clone)]
pub(crate) struct ExceptDef {
    pub paths: Option<Vec<PathPattern>>,
    pub actions: Option<u64>,
    pub process: ProcessCond,
}

/// Where a value was written: a file and a node in it.
#[derive(Debug, Clone)]
struct Origin {
    file: usize,
    node: NodePath,
}

/// A list value with its origin.
#[derive(Debug, Clone)]
struct Item {
    text: String,
    origin: Origin,
}

/// The files read so far, to turn origins into positions.
struct Files {
    files: Vec<(PathBuf, String)>,
}

impl Files {
    fn error(&self, origin: &Origin, message: impl Into<String>) -> ConfigError {
        let (path, text) = &self.files[origin.file];
        match locate(text, &origin.node) {
            Some((line, col)) => ConfigError::at(path, line, col, message),
            None => ConfigError::in_file(path, format!("{}: {}", origin.node, message.into())),
        }
    }

    fn position(&self, origin: &Origin) -> String {
        let (path, text) = &self.files[origin.file];
        match locate(text, &origin.node) {
            Some((line, col)) => format!("{}:{line}:{col}", path.display()),
            None => path.display().to_string(),
        }
    }
}

/// A rule after merging, before list expansion and validation.
struct Draft {
    id: String,
    id_origin: Origin,
    name: String,
    description: String,
    severity: Item,
    tags: Vec<Item>,
    enabled: bool,
    paths: Vec<Item>,
    paths_origin: Origin,
    /// `paths:` was written (in the rule or a `modify:` append).
    paths_given: bool,
    actions: Vec<Item>,
    actions_origin: Origin,
    process: DraftProcess,
    except: Vec<DraftExcept>,
}

#[derive(Default)]
struct DraftProcess {
    exe: Option<(Vec<Item>, Origin)>,
    comm: Option<(Vec<Item>, Origin)>,
    parent_exe: Option<(Vec<Item>, Origin)>,
    uid: Option<(Vec<Item>, Origin)>,
    auid: Option<(Vec<Item>, Origin)>,
    container: Option<bool>,
}

struct DraftExcept {
    paths: Option<(Vec<Item>, Origin)>,
    actions: Option<(Vec<Item>, Origin)>,
    process: DraftProcess,
    origin: Origin,
}

/// Rule files of `dir` (`*.yaml`, `*.yml`), in name order.
pub(crate) fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::in_file(
            dir,
            format!(
                "cannot read the rules directory: {e}; give an existing directory with --rules"
            ),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::in_file(
            dir,
            "no rule files (*.yaml) in the rules directory; add one or point --rules elsewhere",
        ));
    }
    Ok(files)
}

/// Reads, merges and validates the rule files, in the order given.
pub(crate) fn load_files(paths: &[PathBuf]) -> Result<Vec<RuleDef>, ConfigError> {
    let mut files = Files { files: Vec::new() };
    let mut lists: HashMap<String, (Vec<Item>, Origin)> = HashMap::new();
    let mut drafts: Vec<Draft> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();

    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::in_file(path, format!("cannot read: {e}")))?;
        let parsed = parse(path, &text)?;
        let file = files.files.len();
        files.files.push((path.clone(), text));
        let at = |node: NodePath| Origin { file, node };
        let root = NodePath::default();

        for (name, items) in &parsed.lists.0 {
            let origin = at(root.key("lists").key_name(name));
            check_list_name(&files, name, &origin)?;
            if let Some((_, first)) = lists.get(name) {
                return Err(files.error(
                    &origin,
                    format!(
                        "list `{name}` is already defined at {}; to add items to it use `extend_lists:`",
                        files.position(first)
                    ),
                ));
            }
            let items = items_at(items, &root.key("lists").key(name), file);
            lists.insert(name.clone(), (items, origin));
        }
        for (name, items) in &parsed.extend_lists.0 {
            let origin = at(root.key("extend_lists").key_name(name));
            let Some((list, _)) = lists.get_mut(name) else {
                return Err(files.error(
                    &origin,
                    format!("no list `{name}` to extend; define it under `lists:` in this or an earlier file"),
                ));
            };
            list.extend(items_at(items, &root.key("extend_lists").key(name), file));
        }
        for (i, spec) in parsed.rules.into_iter().enumerate() {
            let node = root.key("rules").index(i);
            let draft = draft(spec, &node, file);
            check_id(&files, &draft.id, &draft.id_origin)?;
            if let Some(&first) = by_id.get(&draft.id) {
                return Err(files.error(
                    &draft.id_origin,
                    format!(
                        "duplicate rule id `{}`, first defined at {}; pick another id, or change the first rule with `modify:`",
                        draft.id,
                        files.position(&drafts[first].id_origin)
                    ),
                ));
            }
            by_id.insert(draft.id.clone(), drafts.len());
            drafts.push(draft);
        }
        for (i, modify) in parsed.modify.into_iter().enumerate() {
            let node = root.key("modify").index(i);
            let Some(&index) = by_id.get(&modify.id) else {
                return Err(files.error(
                    &at(node.key("id")),
                    format!(
                        "no rule with id `{}` to modify; `modify:` changes rules of this or an earlier file (files load in name order)",
                        modify.id
                    ),
                ));
            };
            let rule = &mut drafts[index];
            if let Some(enabled) = modify.enabled {
                rule.enabled = enabled;
            }
            if let Some(severity) = modify.severity {
                rule.severity = Item {
                    text: severity,
                    origin: at(node.key("severity")),
                };
            }
            if let Some(name) = modify.name {
                rule.name = name;
            }
            if let Some(description) = modify.description {
                rule.description = description;
            }
            let append = node.key("append");
            let add = modify.append;
            rule.tags
                .extend(items_at(&add.tags, &append.key("tags"), file));
            if !add.paths.is_empty() {
                rule.paths_given = true;
                rule.paths_origin = at(append.key_name("paths"));
            }
            rule.paths
                .extend(items_at(&add.paths, &append.key("paths"), file));
            rule.actions
                .extend(items_at(&add.actions, &append.key("actions"), file));
            for (j, except) in add.except.iter().enumerate() {
                rule.except
                    .push(draft_except(except, &append.key("except").index(j), file));
            }
        }
    }

    let resolver = Resolver {
        files: &files,
        lists: &lists,
    };
    drafts.iter().map(|d| resolver.rule(d)).collect()
}

fn parse(path: &Path, text: &str) -> Result<RuleFile, ConfigError> {
    let parsed: Result<Option<RuleFile>, _> = serde_norway::from_str(text);
    match parsed {
        Ok(file) => Ok(file.unwrap_or_default()),
        Err(e) => {
            let message = e.to_string();
            // serde_norway appends the position in words; we give it as
            // file:line:col instead.
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            Err(match e.location() {
                Some(loc) => ConfigError::at(path, loc.line(), loc.column(), message),
                None => ConfigError::in_file(path, message),
            })
        }
    }
}

fn items_at(items: &[Text], node: &NodePath, file: usize) -> Vec<Item> {
    items
        .iter()
        .enumerate()
        .map(|(i, t)| Item {
            text: t.0.clone(),
            origin: Origin {
                file,
                node: node.index(i),
            },
        })
        .collect()
}

fn draft(spec: RuleSpec, node: &NodePath, file: usize) -> Draft {
    let at = |node: NodePath| Origin { file, node };
    Draft {
        id_origin: at(node.key("id")),
        id: spec.id,
        name: spec.name,
        description: spec.description,
        severity: Item {
            text: spec.severity,
            origin: at(node.key("severity")),
        },
        tags: items_at(&spec.tags, &node.key("tags"), file),
        enabled: spec.enabled,
        paths_given: spec.paths.is_some(),
        paths: items_at(
            spec.paths.as_deref().unwrap_or_default(),
            &node.key("paths"),
            file,
        ),
        paths_origin: at(node.key_name("paths")),
        actions: items_at(&spec.actions, &node.key("actions"), file),
        actions_origin: at(node.key_name("actions")),
        process: draft_process(spec.process.as_ref(), &node.key("process"), file),
        except: spec
            .except
            .iter()
            .enumerate()
            .map(|(i, e)| draft_except(e, &node.key("except").index(i), file))
            .collect(),
    }
}

fn draft_process(spec: ProcessSpecRef<'_>, node: &NodePath, file: usize) -> DraftProcess {
    let field = |items: Option<&[Text]>, key: &str| {
        items.map(|items| {
            (
                items_at(items, &node.key(key), file),
                Origin {
                    file,
                    node: node.key_name(key),
                },
            )
        })
    };
    DraftProcess {
        exe: field(spec.exe, "exe"),
        comm: field(spec.comm, "comm"),
        parent_exe: field(spec.parent_exe, "parent_exe"),
        uid: field(spec.uid, "uid"),
        auid: field(spec.auid, "auid"),
        container: spec.container,
    }
}

fn draft_except(spec: &ExceptSpec, node: &NodePath, file: usize) -> DraftExcept {
    let field = |items: &Option<Vec<Text>>, key: &str| {
        items.as_ref().map(|items| {
            (
                items_at(items, &node.key(key), file),
                Origin {
                    file,
                    node: node.key_name(key),
                },
            )
        })
    };
    DraftExcept {
        paths: field(&spec.paths, "paths"),
        actions: field(&spec.actions, "actions"),
        // Exception fields sit beside paths/actions, not under `process:`.
        process: draft_process(spec.process(), node, file),
        origin: Origin {
            file,
            node: node.clone(),
        },
    }
}

fn check_id(files: &Files, id: &str, origin: &Origin) -> Result<(), ConfigError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if valid {
        Ok(())
    } else {
        Err(files.error(
            origin,
            format!(
                "rule id `{id}` must be 1 to 64 letters, digits, `-`, `_`, `.` or `:` (it becomes the audit key)"
            ),
        ))
    }
}

fn check_list_name(files: &Files, name: &str, origin: &Origin) -> Result<(), ConfigError> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        Ok(())
    } else {
        Err(files.error(
            origin,
            format!("list name `{name}` must be letters, digits, `-` or `_`"),
        ))
    }
}

/// Expands list references and validates values.
struct Resolver<'a> {
    files: &'a Files,
    lists: &'a HashMap<String, (Vec<Item>, Origin)>,
}

impl Resolver<'_> {
    fn rule(&self, d: &Draft) -> Result<RuleDef, ConfigError> {
        let severity = Severity::from_name(&d.severity.text).ok_or_else(|| {
            let known: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
            self.files.error(
                &d.severity.origin,
                format!(
                    "unknown severity `{}`; use a syslog level: {}",
                    d.severity.text,
                    known.join(", ")
                ),
            )
        })?;
        let tags = self.expand(&d.tags)?;
        let actions = self.actions(&d.actions, &d.actions_origin)?;
        let engine = actions & engine_mask();
        let paths = if engine == 0 {
            if !d.paths_given {
                return Err(self.files.error(
                    &d.id_origin,
                    "the rule has no `paths:`; its actions happen to files, so list at least one path",
                ));
            }
            self.paths(&d.paths, &d.paths_origin, "rule")?
        } else if engine != actions {
            return Err(self.files.error(
                &d.actions_origin,
                format!(
                    "engine actions ({}) are about containers, images and plugins, not paths, and cannot share a rule with path actions ({}); split it into two rules",
                    names(engine),
                    names(actions & !engine)
                ),
            ));
        } else if d.paths_given {
            return Err(self.files.error(
                &d.paths_origin,
                format!(
                    "engine actions ({}) have no path, so `paths:` can never match; remove it",
                    names(engine)
                ),
            ));
        } else {
            Vec::new()
        };
        let process = self.process(&d.process)?;
        let mut except = Vec::with_capacity(d.except.len());
        for e in &d.except {
            if let (true, Some((_, origin))) = (engine != 0, &e.paths) {
                return Err(self.files.error(
                    origin,
                    "the rule's actions are engine actions, which have no path, so an exception's `paths:` can never apply; remove it",
                ));
            }
            except.push(self.except(e, actions)?);
        }
        Ok(RuleDef {
            info: Arc::new(RuleRef::new(
                d.id.clone(),
                d.name.clone(),
                severity,
                tags.into_iter().map(|t| t.text).collect(),
            )),
            description: d.description.clone(),
            enabled: d.enabled,
            paths,
            actions,
            process,
            except,
            defined_at: self.files.position(&d.id_origin),
        })
    }

    fn except(&self, e: &DraftExcept, rule_actions: u64) -> Result<ExceptDef, ConfigError> {
        let paths = match &e.paths {
            Some((items, origin)) => Some(self.paths(items, origin, "exception")?),
            None => None,
        };
        let actions = match &e.actions {
            Some((items, origin)) => {
                let mask = self.actions(items, origin)?;
                if mask & rule_actions == 0 {
                    return Err(self.files.error(
                        origin,
                        "none of these actions is among the rule's actions, so this exception can never apply",
                    ));
                }
                Some(mask)
            }
            None => None,
        };
        let process = self.process(&e.process)?;
        if paths.is_none() && actions.is_none() && process.is_empty() {
            return Err(self.files.error(
                &e.origin,
                "empty exception: it would silence the rule for every event; give paths, actions or process fields, or set `enabled: false` on the rule",
            ));
        }
        Ok(ExceptDef {
            paths,
            actions,
            process,
        })
    }

    /// `items` with every `$list` replaced by the list's items.
    fn expand(&self, items: &[Item]) -> Result<Vec<Item>, ConfigError> {
        let mut out = Vec::with_capacity(items.len());
        self.expand_into(items, 0, &mut out)?;
        Ok(out)
    }

    fn expand_into(
        &self,
        items: &[Item],
        depth: usize,
        out: &mut Vec<Item>,
    ) -> Result<(), ConfigError> {
        for item in items {
            let Some(name) = item.text.strip_prefix('$') else {
                out.push(item.clone());
                continue;
            };
            let Some((list, _)) = self.lists.get(name) else {
                let mut known: Vec<&str> = self.lists.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(self.files.error(
                    &item.origin,
                    format!(
                        "unknown list `${name}`; define it under `lists:` (known lists: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            if depth >= LIST_DEPTH_MAX {
                return Err(self.files.error(
                    &item.origin,
                    format!("list `${name}` nests more than {LIST_DEPTH_MAX} deep: do lists reference each other in a cycle?"),
                ));
            }
            self.expand_into(list, depth + 1, out)?;
        }
        Ok(())
    }

    fn paths(
        &self,
        items: &[Item],
        origin: &Origin,
        what: &str,
    ) -> Result<Vec<PathPattern>, ConfigError> {
        let items = self.expand(items)?;
        if items.is_empty() {
            return Err(self.files.error(
                origin,
                format!("the {what} has no paths, so it can never match; list at least one"),
            ));
        }
        items
            .iter()
            .map(|item| parse_path(&item.text).map_err(|msg| self.files.error(&item.origin, msg)))
            .collect()
    }

    fn actions(&self, items: &[Item], origin: &Origin) -> Result<u64, ConfigError> {
        let items = self.expand(items)?;
        if items.is_empty() {
            return Err(self.files.error(
                origin,
                "no actions, so this can never match; list at least one (open_write, chmod, connect, ...)",
            ));
        }
        let mut mask = 0;
        for item in &items {
            mask |= parse_action(&item.text).map_err(|msg| self.files.error(&item.origin, msg))?;
        }
        Ok(mask)
    }

    fn process(&self, p: &DraftProcess) -> Result<ProcessCond, ConfigError> {
        Ok(ProcessCond {
            exe: self.values(&p.exe, ValueKind::Executable)?,
            comm: self.values(&p.comm, ValueKind::Comm)?,
            parent_exe: self.values(&p.parent_exe, ValueKind::Executable)?,
            uid: self.ids(&p.uid, "uid")?,
            auid: self.ids(&p.auid, "auid")?,
            container: p.container,
        })
    }

    fn values(
        &self,
        field: &Option<(Vec<Item>, Origin)>,
        kind: ValueKind,
    ) -> Result<Option<Vec<ValuePattern>>, ConfigError> {
        self.process_list(field, |text| parse_value(text, kind))
    }

    fn ids(
        &self,
        field: &Option<(Vec<Item>, Origin)>,
        what: &str,
    ) -> Result<Option<Vec<u32>>, ConfigError> {
        self.process_list(field, |text| {
            text.parse::<u32>().map_err(|_| {
                format!("{what} `{text}` is not a number; give the numeric id (0 for root)")
            })
        })
    }

    /// A process condition's list (lists expanded), each item parsed by
    /// `parse`; an absent field accepts any process, an empty one is an error.
    fn process_list<T>(
        &self,
        field: &Option<(Vec<Item>, Origin)>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        let Some((items, origin)) = field else {
            return Ok(None);
        };
        let items = self.expand(items)?;
        if items.is_empty() {
            return Err(self.files.error(
                origin,
                "empty list: no process can match it; remove the field to accept any",
            ));
        }
        items
            .iter()
            .map(|item| parse(&item.text).map_err(|m| self.files.error(&item.origin, m)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[derive(Clone, Copy)]
enum ValueKind {
    Executable,
    Comm,
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '[', '{', '\\'])
}

fn build_glob(text: &str) -> Result<Glob, String> {
    GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob `{text}`: {}", e.kind()))
}

/// Validates one rule path: absolute, normalized, a valid glob with a
/// literal directory in front.
pub(crate) fn parse_path(text: &str) -> Result<PathPattern, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "path `{text}` is relative; events carry absolute paths, so it can never match: write it from / (e.g. /etc/docker)"
        ));
    }
    // `/etc/docker/` is `/etc/docker`; `/` stays the root.
    let trimmed = match text.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let unnormalized = trimmed != "/"
        && trimmed
            .split('/')
            .skip(1)
            .any(|c| c.is_empty() || c == "." || c == "..");
    if unnormalized {
        return Err(format!(
            "path `{text}` is not normalized (`//`, `.` or `..`); events carry normalized paths, so it can never match"
        ));
    }
    if !is_glob(trimmed) {
        return Ok(PathPattern::Subtree(trimmed.as_bytes().to_vec()));
    }
    let glob = build_glob(trimmed)?;
    let literal: Vec<&str> = trimmed
        .split('/')
        .skip(1)
        .take_while(|c| !is_glob(c))
        .collect();
    if literal.is_empty() {
        return Err(format!(
            "glob `{text}` has no fixed directory before its first wildcard: the kernel and auditd would have to watch the whole file system; start it with a directory such as /etc/docker/"
        ));
    }
    Ok(PathPattern::Glob {
        glob,
        root: format!("/{}", literal.join("/")).into_bytes(),
    })
}

/// The engine actions, as one mask.
fn engine_mask() -> u64 {
    Action::ALL
        .iter()
        .filter(|a| a.is_engine())
        .fold(0, |m, a| m | a.bit())
}

/// The names of the actions of `mask`, comma separated.
fn names(mask: u64) -> String {
    let names: Vec<&str> = Action::ALL
        .iter()
        .filter(|a| mask & a.bit() != 0)
        .map(|a| a.as_str())
        .collect();
    names.join(", ")
}

fn parse_action(text: &str) -> Result<u64, String> {
    let Some(action) = Action::from_name(text) else {
        let known: Vec<&str> = Action::ALL
            .iter()
            .filter(|a| is_rule_action(**a))
            .map(|a| a.as_str())
            .collect();
        return Err(format!(
            "unknown action `{text}`; one of: {}",
            known.join(", ")
        ));
    };
    if !is_rule_action(action) {
        return Err(format!(
            "action `{text}` is reported by dockwatch itself, never for a path, so a rule can never match it"
        ));
    }
    Ok(action.bit())
}

/// Actions a rule can name: what happens to a path, and what the engine
/// does; the others are dockwatch's own reports.
pub(crate) fn is_rule_action(action: Action) -> bool {
    !matches!(
        action,
        Action::AuditConfig
            | Action::RecordsLost
            | Action::PostureDrift
            | Action::PostureFinding
            | Action::AlertsDropped
    )
}

fn parse_value(text: &str, kind: ValueKind) -> Result<ValuePattern, String> {
    match kind {
        ValueKind::Executable if !text.starts_with('/') => {
            return Err(format!(
                "executable `{text}` is not an absolute path; executables are reported as absolute paths (/usr/bin/dockerd), so it can never match"
            ))
        }
        ValueKind::Comm if !is_glob(text) && text.len() > COMM_MAX => {
            return Err(format!(
                "comm `{text}` is longer than {COMM_MAX} bytes; the kernel truncates comm to {COMM_MAX}, so it can never match: use `{}` or match `exe` instead",
                truncate_comm(text)
            ))
        }
        _ => {}
    }
    if is_glob(text) {
        build_glob(text).map(ValuePattern::Glob)
    } else {
        Ok(ValuePattern::Exact(text.to_string()))
    }
}

fn truncate_comm(text: &str) -> &str {
    let mut end = COMM_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_roots_are_the_literal_directory() {
        let root = |p: &str| String::from_utf8(parse_path(p).unwrap().root().to_vec()).unwrap();
        assert_eq!(root("/usr/bin/containerd-shim*"), "/usr/bin");
        assert_eq!(root("/etc/docker/**/*.pem"), "/etc/docker");
        assert_eq!(root("/etc/docker/"), "/etc/docker");
        assert_eq!(root("/"), "/");
    }

    #[test]
    fn paths_that_can_never_match_are_rejected() {
        for bad in [
            "etc/docker",
            "/etc//docker",
            "/etc/./docker",
            "/etc/../docker",
            "/*/docker",
        ] {
            assert!(parse_path(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_path("/etc/docker/[").is_err());
    }
}
