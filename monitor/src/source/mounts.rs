//! Mount table changes over watched paths.
//!
//! A bind mount over `/usr/bin/runc` or a tmpfs over `/etc/docker` changes
//! what the engine runs or reads without writing a byte of the watched
//! file, so no file watch, eBPF or audit, sees it. This source watches the
//! mount table itself: the kernel marks `/proc/PID/mountinfo` readable with
//! priority (`POLLPRI`) whenever a mount is added, removed, moved or
//! remounted in that namespace, which costs nothing between changes (no
//! syscall tracepoint, no polling loop). On each change the table is read
//! again and compared with the last one; a mount whose mount point is a
//! watched path or one of its parent directories becomes an
//! [`Action::Mount`] event naming the mount and what it covers.
//!
//! The table read is the host's (`/proc/1/mountinfo` by default), not
//! dockwatch's own: under systemd's `ProtectSystem=` dockwatch runs in a
//! mount namespace of its own.
//!
//! What it cannot see: the process that mounted (the mount table does not
//! say; an audit rule on `mount`/`move_mount`/`mount_setattr` does), and a
//! mount that is made and removed again between two reads of the table.
//! Mounts below a watched directory that are not over a watched path
//! (Docker's own overlay, shm and netns mounts below `/var/lib/docker` and
//! `/run/docker`) are not reported: they are the engine at work.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::EventSender;
use crate::event::{Action, Detail, Event, FileRef, MountChange, Outcome, Source};
use crate::rules::{path_is_at_or_below, Watch};
use crate::source::mountinfo::{self, MountEntry as Mount};

/// The `[sources.mounts]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MountsConfig {
    pub enabled: bool,
    /// The mount table to follow: the host's, as its init process sees it.
    pub table: PathBuf,
}

impl Default for MountsConfig {
    fn default() -> MountsConfig {
        MountsConfig {
            enabled: true,
            table: PathBuf::from("/proc/1/mountinfo"),
        }
    }
}

/// A running mount watcher; dropping it stops it.
pub struct MountsSource {
    task: tokio::task::JoinHandle<()>,
    /// The watched paths, replaced on reload.
    watched: tokio::sync::watch::Sender<Vec<Vec<u8>>>,
}

impl Drop for MountsSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MountsSource {
    /// Reads the table once (the baseline: mounts present at start are not
    /// reported) and follows it from then on.
    pub fn start(
        config: &MountsConfig,
        watches: &[Watch],
        tx: EventSender,
    ) -> std::io::Result<MountsSource> {
        let mut file = std::fs::File::open(&config.table).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: {e}", config.table.display()))
        })?;
        let table = read_table(&mut file)?;
        // SAFETY: the File owns its descriptor for as long as the AsyncFd
        // holds it; `follow` only reads and seeks through it.
        let fd = unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) }?;
        let (watched, paths) = tokio::sync::watch::channel(watched_paths(watches));
        tracing::info!(
            table = %config.table.display(),
            mounts = table.len(),
            "following mount table changes"
        );
        let task = tokio::spawn(follow(fd, table, paths, tx));
        Ok(MountsSource { task, watched })
    }

    /// Follows mounts over these watches from the next change on.
    pub fn rewatch(&self, watches: &[Watch]) {
        self.watched.send_replace(watched_paths(watches));
    }
}

fn watched_paths(watches: &[Watch]) -> Vec<Vec<u8>> {
    let mut paths: Vec<Vec<u8>> = watches
        .iter()
        .map(|w| w.path.as_os_str().as_bytes().to_vec())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

async fn follow(
    mut fd: AsyncFd<std::fs::File>,
    mut table: HashMap<u64, Mount>,
    watched: tokio::sync::watch::Receiver<Vec<Vec<u8>>>,
    tx: EventSender,
) {
    loop {
        match fd.ready_mut(Interest::PRIORITY).await {
            Ok(mut guard) => guard.clear_ready(),
            Err(e) => {
                tracing::error!("mount table: {e}; mount changes are no longer seen");
                return;
            }
        }
        let now = match read_table(fd.get_mut()) {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!("mount table unreadable: {e}");
                continue;
            }
        };
        let events: Vec<Event> = {
            let watched = watched.borrow();
            changes(&table, &now)
                .into_iter()
                .filter_map(|(op, mount)| {
                    let covers = covered(&mount.point, &watched);
                    (!covers.is_empty()).then(|| event(op, mount, covers))
                })
                .collect()
        };
        for event in events {
            if tx.send(event).await.is_err() {
                return;
            }
        }
        table = now;
    }
}

fn event(op: &'static str, mount: &Mount, covers: Vec<Bytes>) -> Event {
    let mut event = Event::new(Source::Mounts, Action::Mount);
    event.outcome = Outcome::Success;
    event.file = Some(FileRef::new(Bytes::copy_from_slice(&mount.point)));
    event.detail = Detail::Mount(Box::new(MountChange {
        op,
        fstype: mount.fstype.clone(),
        source: Bytes::copy_from_slice(&mount.source),
        root: Bytes::copy_from_slice(&mount.root),
        options: mount.options.clone(),
        covers,
    }));
    event
}

fn read_table(file: &mut std::fs::File) -> std::io::Result<HashMap<u64, Mount>> {
    file.rewind()?;
    let mut text = Vec::with_capacity(16 * 1024);
    file.read_to_end(&mut text)?;
    Ok(parse_table(&text))
}

/// The table by mount id.
fn parse_table(text: &[u8]) -> HashMap<u64, Mount> {
    mountinfo::entries(text).map(|m| (m.id, m)).collect()
}

/// What changed between two readings, in mount id order: a new id is a
/// mount, a gone id an unmount, a moved mount point a move and other
/// options a remount. An id reused for a different file system is an
/// unmount of the old and a mount of the new.
fn changes<'a>(
    before: &'a HashMap<u64, Mount>,
    after: &'a HashMap<u64, Mount>,
) -> Vec<(&'static str, &'a Mount)> {
    let mut ids: Vec<u64> = before.keys().chain(after.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        match (before.get(&id), after.get(&id)) {
            (None, Some(new)) => out.push(("mount", new)),
            (Some(old), None) => out.push(("unmount", old)),
            (Some(old), Some(new)) if old == new => {}
            (Some(old), Some(new)) => {
                if (&old.root, &old.dev, &old.fstype, &old.source)
                    != (&new.root, &new.dev, &new.fstype, &new.source)
                {
                    out.push(("unmount", old));
                    out.push(("mount", new));
                } else if old.point != new.point {
                    out.push(("unmount", old));
                    out.push(("move", new));
                } else {
                    out.push(("remount", new));
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// The watched paths a mount at `point` hides or replaces: the mount point
/// itself and everything below it.
fn covered(point: &[u8], watched: &[Vec<u8>]) -> Vec<Bytes> {
    watched
        .iter()
        .filter(|w| path_is_at_or_below(w, point))
        .map(|w| Bytes::copy_from_slice(w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
27 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
40 27 0:40 / /etc/my\\040docker rw,nosuid shared:7 master:2 - tmpfs tmp\\134fs rw\n";

    #[test]
    fn the_table_is_keyed_by_mount_id() {
        let table = parse_table(TABLE);
        assert_eq!(table.len(), 3);
        assert_eq!(table[&40].point, b"/etc/my docker");
        assert_eq!(table[&27].point, b"/");
    }

    #[test]
    fn each_kind_of_change_is_told_apart() {
        let before = parse_table(TABLE);
        let mut after = before.clone();
        after.remove(&22);
        after.get_mut(&27).unwrap().options = "ro,relatime".into();
        after.get_mut(&40).unwrap().point = b"/srv".to_vec();
        after.insert(
            50,
            mountinfo::entry(b"50 27 254:1 /usr/bin/true /usr/bin/runc rw - ext4 /dev/vda rw")
                .unwrap(),
        );
        let ops: Vec<(&str, &[u8])> = changes(&before, &after)
            .into_iter()
            .map(|(op, m)| (op, m.point.as_slice()))
            .collect();
        assert_eq!(
            ops,
            [
                ("unmount", &b"/proc"[..]),
                ("remount", b"/"),
                ("unmount", b"/etc/my docker"),
                ("move", b"/srv"),
                ("mount", b"/usr/bin/runc"),
            ]
        );
        assert!(changes(&before, &before).is_empty());
    }

    #[test]
    fn a_mount_covers_the_watched_paths_at_and_below_its_point() {
        let watched: Vec<Vec<u8>> = ["/etc/docker", "/etc/docker/daemon.json", "/usr/bin/runc"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        assert_eq!(covered(b"/etc/docker", &watched).len(), 2);
        assert_eq!(covered(b"/etc", &watched).len(), 2);
        assert_eq!(covered(b"/usr/bin/runc", &watched).len(), 1);
        // Not a parent: a sibling with a common prefix, or a mount below.
        assert!(covered(b"/etc/dock", &watched).is_empty());
        assert!(covered(b"/etc/docker/daemon.json/x", &watched).is_empty());
        assert!(covered(b"/var/lib/docker/overlay2/abc/merged", &watched).is_empty());
    }
}
