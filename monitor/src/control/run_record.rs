//! The run record, `<state_dir>/run.json`: how the previous run of dockwatch
//! ended, for the start alert.
//!
//! A SIGKILLed or crashed monitor leaves no trace of its own: it writes
//! nothing on the way out, and a SIEM sees only silence until the heartbeat
//! is missed. So the daemon keeps a small record of its own life: written
//! when it is ready, refreshed every [`ALIVE_EVERY`], and marked stopped
//! once its outputs are flushed at a clean stop. The next start reads it
//! and says, in the `dockwatch-started` or `dockwatch-restarted-unclean`
//! alert, whether that run stopped cleanly and how long the host went
//! unwatched. After an unclean end the gap is counted from the last
//! refresh, so it is short by at most `ALIVE_EVERY`.
//!
//! Each write goes to a temporary file renamed over the record: a crash in
//! the middle of one leaves the previous record, never half of one.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::event::{Action, Detail, Event, Source};

/// How often a running daemon refreshes its record: the precision of the
/// gap reported after an unclean end.
pub const ALIVE_EVERY: Duration = Duration::from_secs(10);

const FILE: &str = "run.json";

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Record {
    pid: u32,
    /// Unix milliseconds.
    started_ms: u64,
    alive_ms: u64,
    /// Set by a clean stop only.
    stopped_ms: Option<u64>,
}

/// How the previous run ended, as the start alert tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviousRun {
    /// No record: the first run with this state directory.
    None,
    /// It stopped cleanly (SIGTERM, SIGINT) `gap` ago.
    Clean { pid: u32, gap: Duration },
    /// It was killed or crashed; last alive `gap` ago.
    Unclean { pid: u32, gap: Duration },
    /// The record could not be read; why.
    Unknown(String),
}

impl PreviousRun {
    /// The word the alert carries in `dockwatch.start.previous_run`.
    pub fn word(&self) -> &'static str {
        match self {
            PreviousRun::None => "none",
            PreviousRun::Clean { .. } => "clean",
            PreviousRun::Unclean { .. } => "unclean",
            PreviousRun::Unknown(_) => "unknown",
        }
    }

    /// The event the pipeline turns into the start alert.
    pub fn start_event(&self) -> Event {
        let mut event = Event::new(Source::Monitor, Action::MonitorStart);
        let (pid, gap) = match self {
            PreviousRun::Clean { pid, gap } | PreviousRun::Unclean { pid, gap } => {
                (Some(*pid), Some(gap.as_secs()))
            }
            PreviousRun::None | PreviousRun::Unknown(_) => (None, None),
        };
        event.detail = Detail::Start {
            previous_run: self.word(),
            previous_pid: pid,
            gap_secs: gap,
        };
        event
    }
}

/// This run's record, kept up to date while the daemon runs.
pub struct RunRecord {
    path: PathBuf,
    record: Record,
}

impl RunRecord {
    /// Reads what the previous run left in `state_dir`, then writes this
    /// run's record over it.
    pub fn begin(state_dir: &Path) -> (PreviousRun, std::io::Result<RunRecord>) {
        let path = state_dir.join(FILE);
        let now = unix_ms(SystemTime::now());
        let previous = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PreviousRun::None,
            Err(e) => PreviousRun::Unknown(format!("cannot read {}: {e}", path.display())),
            Ok(bytes) => match serde_json::from_slice::<Record>(&bytes) {
                Err(e) => {
                    PreviousRun::Unknown(format!("{} is not a run record: {e}", path.display()))
                }
                Ok(old) => match old.stopped_ms {
                    Some(stopped) => PreviousRun::Clean {
                        pid: old.pid,
                        gap: since(stopped, now),
                    },
                    None => PreviousRun::Unclean {
                        pid: old.pid,
                        gap: since(old.alive_ms, now),
                    },
                },
            },
        };
        let record = RunRecord {
            path,
            record: Record {
                pid: std::process::id(),
                started_ms: now,
                alive_ms: now,
                stopped_ms: None,
            },
        };
        let written = std::fs::create_dir_all(state_dir)
            .and_then(|()| record.write())
            .map(|()| record);
        (previous, written)
    }

    /// The daemon still runs.
    pub fn alive(&mut self) -> std::io::Result<()> {
        self.record.alive_ms = unix_ms(SystemTime::now());
        self.write()
    }

    /// The daemon stopped cleanly: its outputs are flushed.
    pub fn stopped(mut self) -> std::io::Result<()> {
        let now = unix_ms(SystemTime::now());
        self.record.alive_ms = now;
        self.record.stopped_ms = Some(now);
        self.write()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self) -> std::io::Result<()> {
        let partial = self.path.with_extension("json.partial");
        let bytes = serde_json::to_vec(&self.record).map_err(std::io::Error::other)?;
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, &self.path)
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A clock set back between runs gives a zero gap, not a panic.
fn since(then_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(then_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_run_then_a_clean_stop_then_a_kill() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");

        let (previous, record) = RunRecord::begin(&state);
        assert_eq!(previous, PreviousRun::None);
        record.unwrap().stopped().unwrap();

        let (previous, record) = RunRecord::begin(&state);
        assert!(
            matches!(previous, PreviousRun::Clean { pid, .. } if pid == std::process::id()),
            "{previous:?}"
        );
        // Dropped without `stopped`: what a SIGKILL leaves.
        drop(record.unwrap());

        let (previous, _record) = RunRecord::begin(&state);
        assert!(
            matches!(previous, PreviousRun::Unclean { .. }),
            "{previous:?}"
        );
    }

    #[test]
    fn a_damaged_record_is_unknown_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"pid\":").unwrap();
        let (previous, record) = RunRecord::begin(dir.path());
        assert!(
            matches!(&previous, PreviousRun::Unknown(why) if why.contains("not a run record")),
            "{previous:?}"
        );
        record.unwrap();
        let (previous, _) = RunRecord::begin(dir.path());
        assert!(
            matches!(previous, PreviousRun::Unclean { .. }),
            "{previous:?}"
        );
    }

    #[test]
    fn a_clock_set_back_gives_a_zero_gap() {
        assert_eq!(since(2_000, 1_000), Duration::ZERO);
        assert_eq!(since(1_000, 3_500), Duration::from_millis(2_500));
    }
}
