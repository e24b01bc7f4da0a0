//! Draining the ring buffer into events, and turning the kernel's per-CPU
//! loss counters into `records_lost` events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use monitor_common::{Record, STAT_LOST};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use std::ffi::OsStr;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::decode;
use super::loader::KernelWatches;
use super::watches::WatchSet;
use crate::event::{Action, Detail, Event, FileRef, Source};
use crate::rules::Watch;
use crate::source::{mountinfo, EventSender};

/// Counters the source keeps for the monitor's stats.
#[derive(Default)]
pub struct Stats {
    received: AtomicU64,
    lost: AtomicU64,
    /// Records the kernel could not judge and userspace found unwatched.
    filtered: AtomicU64,
}

impl Stats {
    /// (records received, records lost, records filtered in userspace).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
            self.filtered.load(Ordering::Relaxed),
        )
    }
}

/// A new list of watches for the kernel (a reload), and where to say
/// how many inodes it watches once it holds them.
pub struct Rewatch {
    /// `None`: resolve the same paths again, because a mount changed the
    /// object a path names.
    pub watches: Option<Vec<Watch>>,
    pub done: tokio::sync::oneshot::Sender<Result<usize, String>>,
}

/// Forwards every record about a watched object until the receiver goes
/// away, keeping the kernel's watch set in step with what the records say
/// was created, renamed or removed, and with the rules (`rewatches`).
pub async fn read_records(
    ring: RingBuf<MapData>,
    tx: EventSender,
    stats: Arc<Stats>,
    mut watches: KernelWatches,
    mut rules: Vec<Watch>,
    mut rewatches: tokio::sync::mpsc::UnboundedReceiver<Rewatch>,
) {
    // SAFETY: the ring buffer owns its map descriptor, which stays open and
    // unchanged for as long as the `AsyncFd` owns the ring buffer.
    let registered = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!("cannot poll the eBPF ring buffer: {e}");
            return;
        }
    };
    let mut batch = Vec::new();
    loop {
        let readable = tokio::select! {
            readable = fd.readable_mut() => readable,
            Some(Rewatch { watches: new, done }) = rewatches.recv() => {
                // What the kernel reported under the old set goes out
                // before the answer, so the daemon, which swaps the rules
                // once every event sent before the answer is handled,
                // judges it by the old rules. (The new set is resolved
                // below, whatever these records changed.)
                take_records(fd.get_mut(), watches.current(), &stats, &mut batch);
                if !send_all(&tx, &mut batch).await {
                    return;
                }
                if let Some(new) = new {
                    rules = new;
                }
                let set = WatchSet::resolve(&rules);
                for (path, why) in &set.rejected {
                    tracing::error!(path = %path.display(), "watch ignored: {why}");
                }
                let inodes = set.keys.len();
                let _ = done.send(
                    watches
                        .replace(set)
                        .map(|()| inodes)
                        .map_err(|e| format!("{e:#}")),
                );
                continue;
            }
        };
        let mut guard = match readable {
            Ok(guard) => guard,
            Err(e) => {
                tracing::error!("polling the eBPF ring buffer failed: {e}");
                return;
            }
        };
        let structural = take_records(guard.get_inner_mut(), watches.current(), &stats, &mut batch);
        guard.clear_ready();
        if structural {
            let set = WatchSet::resolve(&rules);
            if let Err(e) = watches.replace(set) {
                tracing::error!("{e:#}");
            }
        }
        if !send_all(&tx, &mut batch).await {
            return;
        }
    }
}

/// Moves the records in the ring into `batch` as events, those about
/// watched objects only; returns whether any can change what the watch
/// paths name.
fn take_records(
    ring: &mut RingBuf<MapData>,
    set: &WatchSet,
    stats: &Stats,
    batch: &mut Vec<Event>,
) -> bool {
    let mut structural = false;
    while let Some(item) = ring.next() {
        let Some(mut event) = decode_item(&item) else {
            continue;
        };
        structural |= is_structural(&event);
        if keep_watched(&mut event, set) {
            decode::add_command_line(&mut event.process);
            batch.push(event);
        } else {
            stats.filtered.fetch_add(1, Ordering::Relaxed);
        }
    }
    stats
        .received
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    structural
}

/// Sends `batch`; false once the receiver has gone away.
async fn send_all(tx: &EventSender, batch: &mut Vec<Event>) -> bool {
    for event in batch.drain(..) {
        if tx.send(event).await.is_err() {
            return false;
        }
    }
    true
}

/// Events that can change which inode a watched path names: the actions
/// that add or remove names, and a change to a directory by a call the
/// inode hooks could not name.
fn is_structural(event: &Event) -> bool {
    let dir_written = event.action == Action::Write
        && event
            .file
            .as_ref()
            .and_then(|f| f.mode)
            .is_some_and(|m| m & libc::S_IFMT == libc::S_IFDIR);
    dir_written
        || matches!(
            event.action,
            Action::Create
                | Action::Rename
                | Action::Unlink
                | Action::Mkdir
                | Action::Link
                | Action::Symlink
                | Action::Mknod
        )
}

/// Whether the event touches a watched path, with its paths spelled as the
/// rules spell them. Most records were judged exactly by the kernel; this
/// settles the few it passed on unjudged (`..` in a path, a relative path
/// from above a watch, a creation beside a watch that does not exist yet).
///
/// When the kernel's path differs from the watched name (the watched name
/// is a symlink, or leads through one: `/var/run` → `/run`), an action on
/// one file keeps the kernel's path as its target (`file.target_path`, as
/// ECS has it for symlinks): an attacker who made `daemon.json` a link to a
/// file of theirs and edits that file, or who writes it through a hard
/// link, is reported under both names.
fn keep_watched(event: &mut Event, set: &WatchSet) -> bool {
    let one_file = event.target.is_none();
    // Only a process in a container sees its own mount table: for the
    // host's, whose unjudged records are many (creations beside a missing
    // watch), the mount tables are not read.
    let in_container = event
        .process
        .container_id
        .is_some()
        .then_some(event.process.pid);
    let mut watched = false;
    let mut reached = None;
    for (is_target, file) in [(false, event.file.as_mut()), (true, event.target.as_mut())]
        .into_iter()
        .filter_map(|(is_target, file)| Some((is_target, file?)))
    {
        let path = Path::new(OsStr::from_bytes(&file.path));
        let spelled = set
            .classify(path)
            .or_else(|| {
                // The watched file itself under another name (a hard link):
                // report it by the name the rules watch.
                let (dev, ino) = (file.dev?, file.inode?);
                set.object(dev, ino).map(Path::to_path_buf)
            })
            .or_else(|| {
                // A path in a container's mount namespace (`-v /etc/docker:/x`
                // names /etc/docker/daemon.json /x/daemon.json).
                let host = host_path_in_container(in_container?, file)?;
                set.classify(&host)
            });
        if let Some(spelled) = spelled {
            watched = true;
            if spelled != path {
                let kernel_path = std::mem::replace(
                    &mut file.path,
                    Bytes::from(spelled.into_os_string().into_vec()),
                );
                if !is_target && one_file && event.action.changes_one_existing_file() {
                    reached = Some(FileRef {
                        path: kernel_path,
                        ..file.clone()
                    });
                }
            }
        }
    }
    if reached.is_some() {
        event.target = reached;
    }
    watched
}

/// The host path of a file a process in another mount namespace named,
/// from its `/proc/PID/mountinfo`, when the process still runs and the host
/// path is verifiably the same object (same device and inode): the kernel
/// matched the object by inode, its name is the container's.
fn host_path_in_container(pid: u32, file: &FileRef) -> Option<PathBuf> {
    let (dev, ino) = (file.dev?, file.inode?);
    let inside: Vec<_> =
        mountinfo::entries(&std::fs::read(format!("/proc/{pid}/mountinfo")).ok()?).collect();
    let host: Vec<_> = mountinfo::entries(&std::fs::read("/proc/self/mountinfo").ok()?).collect();
    let host = PathBuf::from(OsString::from_vec(mountinfo::host_path(
        &file.path, &inside, &host,
    )?));
    let meta = std::fs::symlink_metadata(&host).ok()?;
    (meta.ino() == ino && decode::kernel_dev(meta.dev()) == dev).then_some(host)
}

fn decode_item(item: &[u8]) -> Option<Event> {
    if item.len() < std::mem::size_of::<Record>() {
        tracing::warn!(len = item.len(), "short eBPF record ignored");
        return None;
    }
    // SAFETY: `Record` is plain integers and byte arrays, so any bytes are
    // a valid value; the length was checked and the read is unaligned-safe.
    let rec: Record = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
    decode::event_of(&rec)
}

/// How often the loss counters are read.
const LOSS_POLL: Duration = Duration::from_secs(1);

/// Sends a `records_lost` event whenever the kernel's counters grew.
pub async fn report_losses(
    counters: PerCpuArray<MapData, u64>,
    tx: EventSender,
    stats: Arc<Stats>,
) {
    let mut reported = 0u64;
    let mut tick = tokio::time::interval(LOSS_POLL);
    loop {
        tick.tick().await;
        let lost = match counters.get(&STAT_LOST, 0) {
            Ok(per_cpu) => per_cpu.iter().sum::<u64>(),
            Err(e) => {
                tracing::warn!("cannot read the eBPF loss counters: {e}");
                continue;
            }
        };
        stats.lost.store(lost, Ordering::Relaxed);
        if lost > reported {
            let count = lost - reported;
            reported = lost;
            tracing::warn!(
                count,
                "eBPF ring buffer full: kernel records lost; raise [sources.ebpf] ring_buffer_kib"
            );
            let mut event = Event::new(Source::Ebpf, Action::RecordsLost);
            event.detail = Detail::Lost {
                count,
                what: "ebpf ring buffer full",
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}
