//! Posture as a pipeline stage on a thread of its own. Its checks run
//! `auditctl`, read files, walk container directories and ask the engine:
//! any of them can take long (a slow disk, a hung engine), and on the event
//! loop that would hold back every event behind it. Here the loop hands
//! over, by a bounded channel, only the events posture can act on, and
//! posture's alerts come back by another channel to go out like any other.
//!
//! A plain thread rather than a tokio task: every check blocks (processes,
//! file reads), and a thread keeps them off the runtime's workers without
//! wrapping each in `spawn_blocking`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::live::Posture;
use crate::alert::Alert;
use crate::event::Event;

/// Events waiting for posture. When full, the event is not queued and the
/// next pass re-reads everything instead: a lost event costs a full
/// re-check, never a stalled event loop.
const QUEUE: usize = 4096;

/// The event loop's end of the posture stage.
pub struct PostureStage {
    events: Option<SyncSender<Event>>,
    overflowed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PostureStage {
    /// Starts `posture` on its own thread; its alerts arrive on the
    /// returned receiver.
    pub fn spawn(posture: Posture) -> std::io::Result<(PostureStage, UnboundedReceiver<Alert>)> {
        let (events, queue) = mpsc::sync_channel(QUEUE);
        let (alerts, out) = unbounded_channel();
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let thread = std::thread::Builder::new()
            .name("posture".to_string())
            .spawn(move || run(posture, queue, alerts, flag))?;
        let stage = PostureStage {
            events: Some(events),
            overflowed,
            thread: Some(thread),
        };
        Ok((stage, out))
    }

    /// Hands `event` to posture when posture can act on it; never waits.
    pub fn offer(&self, event: &Event) {
        if !Posture::acts_on(event) {
            return;
        }
        let Some(events) = &self.events else {
            return;
        };
        match events.try_send(event.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.overflowed.store(true, Ordering::Relaxed),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Lets posture finish the events it was given and stops it; its last
    /// alerts are then on the receiver.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.events = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the posture thread panicked; its last alerts are lost");
            }
        }
    }
}

impl Drop for PostureStage {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    mut posture: Posture,
    queue: mpsc::Receiver<Event>,
    alerts: UnboundedSender<Alert>,
    overflowed: Arc<AtomicBool>,
) {
    let send = |found: Vec<Alert>| {
        for alert in found {
            // The receiver is gone only when the daemon is stopping.
            let _ = alerts.send(alert);
        }
    };
    loop {
        let wait = posture
            .next_deadline()
            .saturating_duration_since(Instant::now());
        match queue.recv_timeout(wait) {
            Ok(event) => send(posture.on_event(&event)),
            Err(RecvTimeoutError::Timeout) => send(posture.tick(Instant::now())),
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if overflowed.swap(false, Ordering::Relaxed) {
            tracing::warn!("posture fell behind the events; re-reading the whole baseline");
            send(posture.recheck_all());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    use super::*;
    use crate::event::{Action, Detail, FileRef, Source};
    use crate::posture::PostureConfig;

    #[test]
    fn a_change_offered_to_the_stage_comes_back_as_a_drift_alert() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("etc/docker/daemon.json");
        std::fs::create_dir_all(json.parent().unwrap()).unwrap();
        std::fs::write(&json, r#"{"icc": false}"#).unwrap();
        let config = PostureConfig {
            root: dir.path().to_path_buf(),
            auditctl: PathBuf::from("/nonexistent/auditctl"),
            settle_ms: 0,
            ..PostureConfig::default()
        };
        let (posture, _) = Posture::start(&config, "h".into()).unwrap();
        let (stage, mut alerts) = PostureStage::spawn(posture).unwrap();

        // Not a file change: posture is not even asked.
        stage.offer(&Event::new(Source::Docker, Action::ContainerStart));
        std::fs::write(&json, r#"{"icc": true}"#).unwrap();
        let mut event = Event::new(Source::Audit, Action::Write);
        event.file = Some(FileRef::new(json.as_os_str().as_bytes().to_vec()));
        stage.offer(&event);
        // Settled at once (settle_ms 0), but the alert may still be due on
        // the thread's next pass: wait for it, then stop.
        let alert = alerts.blocking_recv().unwrap();
        stage.finish();
        assert_eq!(alert.event.action, Action::PostureDrift);
        let Detail::Posture(change) = &alert.event.detail else {
            panic!("{alert:?}");
        };
        assert_eq!(change.key, "icc");
        assert!(alerts.try_recv().is_err());
    }
}
