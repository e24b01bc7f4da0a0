//! The compiled matcher: which enabled rules an [`Event`] matches.
//!
//! Its cost must not grow with the number of rules. Rule paths are indexed by
//! their literal directory (the path itself for a subtree, the part before
//! the first wildcard for a glob), so an event costs one hash lookup per
//! component of its path, plus one glob set per indexed directory on that
//! walk; only rules found that way are looked at further. Actions are bit
//! masks, so a whole rule set rejects an uninteresting action in one AND.
//! Rules on engine actions have no path; they are kept in a list of their
//! own, looked at only for engine events (a few a second at most).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use globset::{GlobSet, GlobSetBuilder};

use super::load::{ExceptDef, PathPattern, ProcessCond, RuleDef, ValuePattern};
use crate::alert::RuleRef;
use crate::event::{Event, Process};

/// `auid` as the kernel writes it when no one logged in.
const AUID_UNSET: u32 = u32::MAX;

pub(crate) struct Matcher {
    rules: Vec<CompiledRule>,
    /// Union of every rule's actions.
    any_actions: u64,
    /// Literal directory (or file) → rules anchored there. One lookup per
    /// path component of every event: foldhash, as SipHash showed in replay
    /// profiles; the keys come from the rule files, not from events.
    index: HashMap<Box<[u8]>, Node, foldhash::fast::RandomState>,
    /// The lengths of the index's keys, one bit each ([`length_bit`]): most
    /// of an event's ancestors have a length no key has, and need no lookup.
    key_lengths: u64,
    /// Rules on engine actions (no paths).
    engine: Vec<u32>,
}

/// A bit per key length, lengths of 63 and more sharing the last.
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

#[derive(Default)]
struct Node {
    /// Rules whose path is this subtree.
    subtree: Vec<u32>,
    /// Globs rooted here, with the rule of each.
    globs: Option<GlobGroup>,
}

struct GlobGroup {
    set: GlobSet,
    rule_of: Vec<u32>,
}

struct CompiledRule {
    info: Arc<RuleRef>,
    actions: u64,
    paths: PathSet,
    process: ProcessMatcher,
    except: Vec<ExceptMatcher>,
}

/// A small set of path patterns, checked one by one (exceptions, and
/// re-checking which of an event's paths a rule matched).
struct PathSet {
    subtrees: Vec<Box<[u8]>>,
    globs: GlobSet,
}

struct ProcessMatcher {
    exe: Option<ValueSet>,
    comm: Option<ValueSet>,
    parent_exe: Option<ValueSet>,
    uid: Option<Vec<u32>>,
    auid: Option<Vec<u32>>,
    container: Option<bool>,
}

struct ValueSet {
    exact: Vec<Box<[u8]>>,
    globs: GlobSet,
}

struct ExceptMatcher {
    actions: u64,
    paths: Option<PathSet>,
    process: ProcessMatcher,
}

impl Matcher {
    pub fn new(defs: &[RuleDef]) -> Matcher {
        let mut index: HashMap<Box<[u8]>, Node, _> = HashMap::default();
        let mut pending_globs: HashMap<Box<[u8]>, (GlobSetBuilder, Vec<u32>)> = HashMap::new();
        let mut rules = Vec::new();
        let mut any_actions = 0;
        let mut engine = Vec::new();
        for def in defs.iter().filter(|d| d.enabled) {
            let id = rules.len() as u32;
            if def.paths.is_empty() {
                engine.push(id);
            }
            for pattern in &def.paths {
                match pattern {
                    PathPattern::Subtree(p) => {
                        let node = index.entry(p.clone().into_boxed_slice()).or_default();
                        if !node.subtree.contains(&id) {
                            node.subtree.push(id);
                        }
                    }
                    PathPattern::Glob { glob, root } => {
                        let (builder, owners) = pending_globs
                            .entry(root.clone().into_boxed_slice())
                            .or_insert_with(|| (GlobSetBuilder::new(), Vec::new()));
                        builder.add(glob.clone());
                        owners.push(id);
                    }
                }
            }
            any_actions |= def.actions;
            rules.push(CompiledRule {
                info: def.info.clone(),
                actions: def.actions,
                paths: PathSet::new(&def.paths),
                process: ProcessMatcher::new(&def.process),
                except: def.except.iter().map(ExceptMatcher::new).collect(),
            });
        }
        for (root, (builder, rule_of)) in pending_globs {
            let set = builder
                .build()
                .expect("globs were validated one by one when loaded");
            index.entry(root).or_default().globs = Some(GlobGroup { set, rule_of });
        }
        let key_lengths = index.keys().fold(0, |bits, k| bits | length_bit(k.len()));
        Matcher {
            rules,
            any_actions,
            index,
            key_lengths,
            engine,
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Appends to `out` each rule `event` matches, once.
    pub fn matches<'a>(&'a self, event: &Event, out: &mut Vec<&'a Arc<RuleRef>>) {
        let bit = event.action.bit();
        if self.any_actions & bit == 0 {
            return;
        }
        if event.action.is_engine() {
            for &rule in &self.engine {
                self.consider(rule, event, bit, out);
            }
            return;
        }
        // Allocates only when a glob matches.
        let mut glob_hits = Vec::new();
        for file in event.paths() {
            let path: &[u8] = &file.path;
            for key in self_and_ancestors(path) {
                if self.key_lengths & length_bit(key.len()) == 0 {
                    continue;
                }
                let Some(node) = self.index.get(key) else {
                    continue;
                };
                for &rule in &node.subtree {
                    self.consider(rule, event, bit, out);
                }
                if let Some(group) = &node.globs {
                    group.set.matches_into(as_path(path), &mut glob_hits);
                    for &hit in &glob_hits {
                        self.consider(group.rule_of[hit], event, bit, out);
                    }
                }
            }
        }
    }

    fn consider<'a>(&'a self, rule: u32, event: &Event, bit: u64, out: &mut Vec<&'a Arc<RuleRef>>) {
        let rule = &self.rules[rule as usize];
        if rule.actions & bit == 0 || out.iter().any(|r| Arc::ptr_eq(r, &rule.info)) {
            return;
        }
        if !rule.process.matches(&event.process) {
            return;
        }
        if rule
            .except
            .iter()
            .any(|e| e.applies(event, bit, &rule.paths))
        {
            return;
        }
        out.push(&rule.info);
    }
}

/// `/a/b/c`, `/a/b`, `/a`, `/`: the keys a path can be indexed under.
fn self_and_ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut next = if path.is_empty() { None } else { Some(path) };
    std::iter::from_fn(move || {
        let current = next?;
        next = match memchr::memrchr(b'/', current) {
            _ if current == b"/" => None,
            Some(0) => Some(&current[..1]),
            Some(i) => Some(&current[..i]),
            None => None,
        };
        Some(current)
    })
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

fn under(path: &[u8], dir: &[u8]) -> bool {
    if dir == b"/" {
        return path.first() == Some(&b'/');
    }
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

impl PathSet {
    fn new(patterns: &[PathPattern]) -> PathSet {
        let mut subtrees = Vec::new();
        let mut globs = GlobSetBuilder::new();
        for pattern in patterns {
            match pattern {
                PathPattern::Subtree(p) => subtrees.push(p.clone().into_boxed_slice()),
                PathPattern::Glob { glob, .. } => {
                    globs.add(glob.clone());
                }
            }
        }
        PathSet {
            subtrees,
            globs: globs.build().expect("globs were validated when loaded"),
        }
    }

    fn matches(&self, path: &[u8]) -> bool {
        self.subtrees.iter().any(|dir| under(path, dir))
            || (!self.globs.is_empty() && self.globs.is_match(as_path(path)))
    }
}

impl ValueSet {
    fn new(values: &[ValuePattern]) -> ValueSet {
        let mut exact = Vec::new();
        let mut globs = GlobSetBuilder::new();
        for value in values {
            match value {
                ValuePattern::Exact(v) => exact.push(v.as_bytes().into()),
                ValuePattern::Glob(g) => {
                    globs.add(g.clone());
                }
            }
        }
        ValueSet {
            exact,
            globs: globs.build().expect("globs were validated when loaded"),
        }
    }

    fn matches(&self, value: Option<&[u8]>) -> bool {
        let Some(value) = value else {
            // Unknown to the source: a condition on it cannot be shown to
            // hold, so rules do not fire and exceptions do not silence.
            return false;
        };
        self.exact.iter().any(|v| **v == *value)
            || (!self.globs.is_empty() && self.globs.is_match(as_path(value)))
    }
}

impl ProcessMatcher {
    fn new(cond: &ProcessCond) -> ProcessMatcher {
        ProcessMatcher {
            exe: cond.exe.as_deref().map(ValueSet::new),
            comm: cond.comm.as_deref().map(ValueSet::new),
            parent_exe: cond.parent_exe.as_deref().map(ValueSet::new),
            uid: cond.uid.clone(),
            auid: cond.auid.clone(),
            container: cond.container,
        }
    }

    fn matches(&self, p: &Process) -> bool {
        if let Some(set) = &self.exe {
            if !set.matches(p.exe.as_deref()) {
                return false;
            }
        }
        if let Some(set) = &self.comm {
            if !set.matches(p.comm.as_deref()) {
                return false;
            }
        }
        if let Some(set) = &self.parent_exe {
            if !set.matches(p.parent_exe.as_deref()) {
                return false;
            }
        }
        if let Some(uids) = &self.uid {
            if !p.uid.is_some_and(|uid| uids.contains(&uid)) {
                return false;
            }
        }
        if let Some(auids) = &self.auid {
            // Events keep an unset login uid as None; rules may name it as
            // the kernel does, 4294967295.
            if !auids.contains(&p.auid.unwrap_or(AUID_UNSET)) {
                return false;
            }
        }
        if let Some(in_container) = self.container {
            if p.container_id.is_some() != in_container {
                return false;
            }
        }
        true
    }
}

impl ExceptMatcher {
    fn new(def: &ExceptDef) -> ExceptMatcher {
        ExceptMatcher {
            actions: def.actions.unwrap_or(u64::MAX),
            paths: def.paths.as_deref().map(PathSet::new),
            process: ProcessMatcher::new(&def.process),
        }
    }

    /// The exception covers this event: right action and process, and every
    /// path of the event that the rule matched is one of its paths (so a
    /// rename *into* a watched file is not excused by its excused source).
    fn applies(&self, event: &Event, bit: u64, rule_paths: &PathSet) -> bool {
        if self.actions & bit == 0 || !self.process.matches(&event.process) {
            return false;
        }
        let Some(paths) = &self.paths else {
            return true;
        };
        let mut covered_any = false;
        for file in event.paths() {
            if rule_paths.matches(&file.path) {
                if !paths.matches(&file.path) {
                    return false;
                }
                covered_any = true;
            }
        }
        covered_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_walk_to_root() {
        let keys: Vec<&[u8]> = self_and_ancestors(b"/etc/docker/daemon.json").collect();
        assert_eq!(
            keys,
            [
                &b"/etc/docker/daemon.json"[..],
                b"/etc/docker",
                b"/etc",
                b"/"
            ]
        );
        assert_eq!(self_and_ancestors(b"/").count(), 1);
        assert_eq!(self_and_ancestors(b"").count(), 0);
    }

    #[test]
    fn under_respects_component_boundaries() {
        assert!(under(b"/etc/group", b"/etc/group"));
        assert!(!under(b"/etc/group-", b"/etc/group"));
        assert!(under(b"/etc/docker/x", b"/etc/docker"));
        assert!(under(b"/anything", b"/"));
    }
}
