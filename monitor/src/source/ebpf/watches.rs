//! The rules' watches → what the kernel filters on, and the userspace check
//! that finishes the job for the few records the kernel cannot judge.
//!
//! A watch names a path with audit's `-w` meaning: a file, or a directory and
//! everything below it, whether or not it exists yet. The kernel gets it
//! three ways:
//! - `keys`: (device, inode) of the watched object, for calls that hold a
//!   file (open, fchmod, ...), matched by walking up parent directories;
//! - `paths`: the path as written and as resolved (symlinks followed), for
//!   calls that name a path (chmod, rename, ...), matched by longest prefix;
//! - `ancestors`: the directories above it, from which a relative path
//!   may lead into it.
//!
//! A watch on a missing path puts its nearest existing directory in `keys`
//! for creations, and is resolved again when something is created there.
//! Any creation, rename or removal under a watch re-resolves the set, so a
//! replaced file's new inode is watched and its old number forgotten.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use monitor_common::{Op, WatchValue, WATCH_CHILDREN, WATCH_SUBTREE};

use super::decode::{kernel_dev, ops_of_actions};
use crate::rules::{resolve_path, Watch};

/// Operations the kernel always reports on watched paths, whatever the rules
/// ask for: they change which inodes the watches name.
pub const STRUCTURAL: u32 = Op::Create.bit()
    | Op::Rename.bit()
    | Op::Unlink.bit()
    | Op::Rmdir.bit()
    | Op::Mkdir.bit()
    | Op::Link.bit()
    | Op::Symlink.bit()
    | Op::Mknod.bit();

/// One watched path, as the rules wrote it and as the file system resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPath {
    pub spelled: PathBuf,
    pub resolved: PathBuf,
}

/// What the kernel should hold, computed from the rules and the file system.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchSet {
    pub keys: BTreeMap<(u64, u64), WatchValue>,
    /// Trie entries: `P\0` (the object) and `P/` (below a directory).
    pub paths: BTreeMap<Vec<u8>, WatchValue>,
    pub ancestors: BTreeSet<(u64, u64)>,
    /// The watched objects that exist, by inode, with their watch path.
    pub objects: BTreeMap<(u64, u64), PathBuf>,
    /// Watch paths that do not exist now.
    pub pending: Vec<PathBuf>,
    /// Watch paths that cannot be used, with the reason.
    pub rejected: Vec<(PathBuf, String)>,
    pub table: Vec<WatchPath>,
}

impl WatchSet {
    /// Resolves every watch against the file system as it is now.
    pub fn resolve(watches: &[Watch]) -> WatchSet {
        let mut set = WatchSet::default();
        for watch in watches {
            let ops = ops_of_actions(watch.actions);
            if ops == 0 {
                continue;
            }
            if !watch.path.is_absolute() {
                set.rejected.push((
                    watch.path.clone(),
                    "a watch path must be absolute (start with /); fix the rule's path".into(),
                ));
                continue;
            }
            set.add(&normalize(&watch.path), ops | STRUCTURAL);
        }
        set
    }

    fn add(&mut self, spelled: &Path, ops: u32) {
        let resolved = resolve_path(spelled);
        let meta = std::fs::metadata(&resolved);
        let is_dir = meta.as_ref().map(|m| m.is_dir()).unwrap_or(true);
        match &meta {
            Ok(meta) => {
                self.objects
                    .entry(key_of(meta))
                    .or_insert_with(|| spelled.to_path_buf());
                let value = self.keys.entry(key_of(meta)).or_default();
                value.ops |= ops;
                if meta.is_dir() {
                    value.flags |= WATCH_SUBTREE;
                }
            }
            Err(_) => {
                self.pending.push(spelled.to_path_buf());
                // Creating a missing directory on the way must reach
                // userspace too, so that the set is resolved again.
                for path in [spelled, resolved.as_path()] {
                    for dir in path.ancestors().skip(1).take_while(|d| !d.exists()) {
                        let mut exact = dir.as_os_str().as_bytes().to_vec();
                        exact.push(0);
                        self.paths.entry(exact).or_default().ops |= STRUCTURAL;
                    }
                }
                // Creations directly in the nearest existing directory reach
                // userspace, which then watches what appeared.
                if let Some(dir) = resolved.ancestors().skip(1).find(|d| d.is_dir()) {
                    if let Ok(meta) = std::fs::metadata(dir) {
                        let value = self.keys.entry(key_of(&meta)).or_default();
                        value.ops |= STRUCTURAL;
                        value.flags |= WATCH_CHILDREN;
                    }
                }
            }
        }
        for path in [spelled, resolved.as_path()] {
            let bytes = path.as_os_str().as_bytes();
            let mut exact = bytes.to_vec();
            exact.push(0);
            self.paths.entry(exact).or_default().ops |= ops;
            if is_dir {
                let mut below = bytes.to_vec();
                if below.last() != Some(&b'/') {
                    below.push(b'/');
                }
                let value = self.paths.entry(below).or_default();
                value.ops |= ops;
                value.flags |= WATCH_SUBTREE;
            }
            for dir in path.ancestors().skip(1) {
                if let Ok(meta) = std::fs::metadata(dir) {
                    self.ancestors.insert(key_of(&meta));
                }
            }
        }
        let entry = WatchPath {
            spelled: spelled.to_path_buf(),
            resolved,
        };
        if !self.table.contains(&entry) {
            self.table.push(entry);
        }
    }

    /// The watch path of the watched object with this (device as the
    /// kernel encodes it, inode): the same file reached by another name (a
    /// hard link).
    pub fn object(&self, dev: u64, ino: u64) -> Option<&Path> {
        self.objects.get(&(dev, ino)).map(PathBuf::as_path)
    }

    /// The path to report for `path`, if it is watched: rewritten to the
    /// rules' spelling when it was reached by its resolved name (the rules
    /// say /var/run/docker.sock, the kernel sees /run/docker.sock).
    pub fn classify(&self, path: &Path) -> Option<PathBuf> {
        for w in &self.table {
            if path.starts_with(&w.spelled) {
                return Some(path.to_path_buf());
            }
            if let Ok(rest) = path.strip_prefix(&w.resolved) {
                return Some(if rest.as_os_str().is_empty() {
                    w.spelled.clone()
                } else {
                    w.spelled.join(rest)
                });
            }
        }
        // A path through some other symlink: resolve its directory.
        let (parent, name) = (path.parent()?, path.file_name()?);
        let real = std::fs::canonicalize(parent).ok()?.join(name);
        if real != path {
            return self.classify(&real);
        }
        None
    }
}

fn key_of(meta: &std::fs::Metadata) -> (u64, u64) {
    (kernel_dev(meta.dev()), meta.ino())
}

/// Lexical normalization: no `.`, no `..`, no repeated or trailing `/`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Action;

    fn watch(path: &Path, actions: &[Action]) -> Watch {
        Watch {
            path: path.to_path_buf(),
            actions: actions.iter().fold(0, |m, a| m | a.bit()),
            key: "k".into(),
        }
    }

    fn entry(set: &WatchSet, path: &str) -> Option<WatchValue> {
        set.paths.get(path.as_bytes()).copied()
    }

    #[test]
    fn directories_are_subtrees_and_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(dir.path()).unwrap();
        let file = d.join("f");
        std::fs::write(&file, "x").unwrap();
        let set = WatchSet::resolve(&[
            watch(&d, &[Action::OpenWrite]),
            watch(&file, &[Action::Chmod]),
        ]);
        assert_eq!(set.keys.len(), 2);
        let dir_ino = std::fs::metadata(&d).unwrap().ino();
        let (_, v) = set.keys.iter().find(|(k, _)| k.1 == dir_ino).unwrap();
        assert_eq!(v.flags & WATCH_SUBTREE, WATCH_SUBTREE);
        let file_ino = std::fs::metadata(&file).unwrap().ino();
        let (_, v) = set.keys.iter().find(|(k, _)| k.1 == file_ino).unwrap();
        assert_eq!(v.flags, 0);
        assert_ne!(v.ops & Op::Chmod.bit(), 0);
        assert_eq!(v.ops & Op::OpenWrite.bit(), 0);

        let d = d.to_str().unwrap();
        assert!(entry(&set, &format!("{d}\0")).is_some());
        assert_eq!(entry(&set, &format!("{d}/")).unwrap().flags, WATCH_SUBTREE);
        assert!(entry(&set, &format!("{d}/f\0")).is_some());
        assert!(entry(&set, &format!("{d}/f/")).is_none());
        let parent = std::fs::metadata(Path::new(d).parent().unwrap()).unwrap();
        assert!(set.ancestors.contains(&key_of(&parent)));
    }

    #[test]
    fn missing_paths_wait_in_their_nearest_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("later/config.toml");
        let set = WatchSet::resolve(&[
            watch(&missing, &[Action::OpenWrite]),
            watch(Path::new("etc/docker"), &[Action::OpenWrite]),
        ]);
        assert_eq!(set.pending, vec![missing.clone()]);
        let (_, v) = set.keys.iter().next().unwrap();
        assert_eq!(v.flags, WATCH_CHILDREN);
        assert!(entry(&set, &format!("{}\0", missing.display())).is_some());
        assert_eq!(set.rejected[0].0, Path::new("etc/docker"));
        assert!(set.rejected[0].1.contains("absolute"), "{:?}", set.rejected);
    }

    #[test]
    fn resolved_paths_are_reported_as_the_rules_spell_them() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let set = WatchSet::resolve(&[watch(&link, &[Action::Chmod])]);
        assert_eq!(set.classify(&real.join("sock")), Some(link.join("sock")));
        assert_eq!(set.classify(&link), Some(link.clone()));
        assert_eq!(set.classify(Path::new("/nonexistent/x")), None);
    }

    #[test]
    fn normalization_is_lexical() {
        assert_eq!(
            normalize(Path::new("/etc//./docker/../docker/daemon.json")),
            Path::new("/etc/docker/daemon.json")
        );
        assert_eq!(normalize(Path::new("/../..")), Path::new("/"));
    }
}
