//! The rules' watches → the kernel's watch set: (device, inode) keys with
//! the operations each asks for.
//!
//! A watch names a path with audit's `-w` meaning: a file, or a directory and
//! everything below it. The kernel matches inodes, not strings, so a path is
//! resolved here once (following symlinks, as the kernel will when the path
//! is used) and again whenever the file system under it changes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use monitor_common::{WatchKey, WatchValue, WATCH_SUBTREE};

use super::decode::{kernel_dev, ops_of_actions};
use crate::rules::Watch;

/// A watch whose path does not exist (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub path: PathBuf,
    pub ops: u32,
}

/// What the kernel should hold, computed from the rules and the file system.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchSet {
    pub keys: BTreeMap<(u64, u64), WatchValue>,
    /// Watch paths that do not exist now.
    pub pending: Vec<Pending>,
    /// Watch paths that cannot be used, with the reason.
    pub rejected: Vec<(PathBuf, String)>,
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
            match std::fs::metadata(&watch.path) {
                Ok(meta) => set.add(&meta, ops),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => set.pending.push(Pending {
                    path: watch.path.clone(),
                    ops,
                }),
                Err(e) => set
                    .rejected
                    .push((watch.path.clone(), format!("cannot stat: {e}"))),
            }
            // The path as written may be reached through a symlink (e.g.
            // /var/run → /run); the kernel sees the target, which `metadata`
            // followed.
        }
        set
    }

    fn add(&mut self, meta: &std::fs::Metadata, ops: u32) {
        let key = (kernel_dev(meta.dev()), meta.ino());
        let value = self.keys.entry(key).or_default();
        value.ops |= ops;
        if meta.is_dir() {
            value.flags |= WATCH_SUBTREE;
        }
    }

    /// The kernel map's key for an entry of [`WatchSet::keys`].
    pub fn kernel_key(key: (u64, u64)) -> WatchKey {
        WatchKey {
            dev: key.0,
            ino: key.1,
        }
    }
}

/// `path` lies at or below `watched`.
pub fn is_under(path: &Path, watched: &Path) -> bool {
    path.starts_with(watched)
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

    #[test]
    fn directories_are_subtrees_and_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let set = WatchSet::resolve(&[
            watch(dir.path(), &[Action::OpenWrite]),
            watch(&file, &[Action::Chmod]),
        ]);
        assert_eq!(set.keys.len(), 2);
        let dir_ino = std::fs::metadata(dir.path()).unwrap().ino();
        let (_, v) = set.keys.iter().find(|(k, _)| k.1 == dir_ino).unwrap();
        assert_eq!(v.flags & WATCH_SUBTREE, WATCH_SUBTREE);
        let file_ino = std::fs::metadata(&file).unwrap().ino();
        let (_, v) = set.keys.iter().find(|(k, _)| k.1 == file_ino).unwrap();
        assert_eq!(v.flags, 0);
        assert_eq!(v.ops, monitor_common::Op::Chmod.bit());
    }

    #[test]
    fn missing_paths_wait_and_relative_paths_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("later/config.toml");
        let set = WatchSet::resolve(&[
            watch(&missing, &[Action::OpenWrite]),
            watch(Path::new("etc/docker"), &[Action::OpenWrite]),
        ]);
        assert!(set.keys.is_empty());
        assert_eq!(set.pending[0].path, missing);
        assert_eq!(set.rejected[0].0, Path::new("etc/docker"));
        assert!(set.rejected[0].1.contains("absolute"), "{:?}", set.rejected);
    }

    #[test]
    fn same_inode_merges_operations() {
        let dir = tempfile::tempdir().unwrap();
        let set = WatchSet::resolve(&[
            watch(dir.path(), &[Action::OpenWrite]),
            watch(dir.path(), &[Action::Unlink]),
        ]);
        assert_eq!(set.keys.len(), 1);
        let v = set.keys.values().next().unwrap();
        assert_ne!(v.ops & monitor_common::Op::Rmdir.bit(), 0);
        assert_ne!(v.ops & monitor_common::Op::OpenWrite.bit(), 0);
    }
}
