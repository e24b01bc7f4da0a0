//! Audit paths in the rules' spelling. A rule watches
//! `/var/run/docker.sock`; the kernel logs the name a process used, and a
//! process that says `/run/docker.sock` (or a container with `/` bound at
//! `/host`, whose path becomes `/run/docker.sock` on the host) does not
//! match that rule by name, although the kernel's watch caught it by inode.
//! On a Debian host `/var/run` is a symlink to `/run`: an audit-only host
//! would miss `chmod 666 /run/docker.sock`.
//!
//! The eBPF source rewrites its own paths (it holds the watch set, see
//! `source::ebpf::watches`); this does the same for audit events: a path
//! under the resolved form of a watched path is renamed to the watched
//! spelling, and for a change to one file the kernel's path stays as its
//! target (`file.target_path`), as eBPF reports it, so the two sources'
//! views of one action stay one alert. Live events only: an archive's
//! paths are another host's, and this host's symlinks say nothing of them.

use bytes::Bytes;

use crate::event::{Event, FileRef, Source};
use crate::rules::{path_is_at_or_below, resolve_path, Watch};

#[derive(Default)]
pub(super) struct Spelling {
    /// (resolved, as the rules spell it), for the watches whose two differ.
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Spelling {
    /// The pairs for `watches`, resolved against the file system now.
    pub(super) fn of(watches: &[Watch]) -> Spelling {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for watch in watches {
            let resolved = resolve_path(&watch.path);
            if resolved != watch.path {
                let pair = (
                    resolved.into_os_string().into_encoded_bytes(),
                    watch.path.as_os_str().as_encoded_bytes().to_vec(),
                );
                if !pairs.contains(&pair) {
                    pairs.push(pair);
                }
            }
        }
        Spelling { pairs }
    }

    /// Renames an audit event's paths to the rules' spelling.
    pub(super) fn apply(&self, event: &mut Event) {
        if event.source != Source::Audit || self.pairs.is_empty() {
            return;
        }
        let one_file = event.target.is_none() && event.action.changes_one_existing_file();
        if let Some(file) = event.target.as_mut() {
            if let Some(spelled) = self.spelled(&file.path) {
                file.path = spelled;
            }
        }
        if let Some(file) = event.file.as_mut() {
            if let Some(spelled) = self.spelled(&file.path) {
                let kernel_path = std::mem::replace(&mut file.path, spelled);
                if one_file {
                    event.target = Some(FileRef {
                        path: kernel_path,
                        ..file.clone()
                    });
                }
            }
        }
    }

    fn spelled(&self, path: &[u8]) -> Option<Bytes> {
        let (resolved, spelled) = self
            .pairs
            .iter()
            .find(|(resolved, _)| path_is_at_or_below(path, resolved))?;
        Some(Bytes::from(
            [&spelled[..], &path[resolved.len()..]].concat(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Action;

    fn spelling(dir: &std::path::Path) -> Spelling {
        let real = dir.join("run");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.join("var-run")).unwrap();
        Spelling::of(&[Watch {
            path: dir.join("var-run/docker.sock"),
            actions: Action::Chmod.bit(),
            key: "sock".into(),
        }])
    }

    fn audit(action: Action, path: &std::path::Path) -> Event {
        let mut event = Event::new(Source::Audit, action);
        event.file = Some(FileRef::new(path.as_os_str().as_encoded_bytes().to_vec()));
        event
    }

    #[test]
    fn a_resolved_path_takes_the_rules_spelling_and_keeps_the_kernels_as_target() {
        let dir = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(dir.path()).unwrap();
        let spelling = spelling(&dir);
        let mut event = audit(Action::Chmod, &dir.join("run/docker.sock"));
        spelling.apply(&mut event);
        let path = |f: &Option<FileRef>| f.as_ref().map(|f| f.path.to_vec());
        let as_bytes = |p: std::path::PathBuf| Some(p.into_os_string().into_encoded_bytes());
        assert_eq!(path(&event.file), as_bytes(dir.join("var-run/docker.sock")));
        assert_eq!(path(&event.target), as_bytes(dir.join("run/docker.sock")));

        // Other paths, other sources and replayed names stay as they are.
        let mut other = audit(Action::Chmod, &dir.join("run/containerd.sock"));
        spelling.apply(&mut other);
        assert_eq!(path(&other.file), as_bytes(dir.join("run/containerd.sock")));
        assert!(other.target.is_none());
        let mut ebpf = audit(Action::Chmod, &dir.join("run/docker.sock"));
        ebpf.source = Source::Ebpf;
        spelling.apply(&mut ebpf);
        assert_eq!(path(&ebpf.file), as_bytes(dir.join("run/docker.sock")));
    }

    #[test]
    fn a_rename_respells_both_names_and_invents_no_target() {
        let dir = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(dir.path()).unwrap();
        let spelling = spelling(&dir);
        let mut event = audit(Action::Rename, &dir.join("tmp-sock"));
        event.target = Some(FileRef::new(
            dir.join("run/docker.sock")
                .into_os_string()
                .into_encoded_bytes(),
        ));
        spelling.apply(&mut event);
        assert_eq!(
            event.target.as_ref().unwrap().path.to_vec(),
            dir.join("var-run/docker.sock")
                .into_os_string()
                .into_encoded_bytes()
        );
        assert_eq!(
            event.file.as_ref().unwrap().path.to_vec(),
            dir.join("tmp-sock").into_os_string().into_encoded_bytes()
        );
    }
}
