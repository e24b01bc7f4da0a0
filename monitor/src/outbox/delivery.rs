//! The outbox of one syslog sink: `send` writes the record to the spool and
//! wakes a delivery thread, which reads the spool in order, sends, and
//! reconnects with backoff when the receiver goes away.
//!
//! A write that succeeded on a socket is not proof of delivery: a receiver
//! that restarts drops what sat unread in its socket buffer, and neither
//! TCP nor a unix datagram socket tells the sender. So a sent record only
//! becomes *confirmed* (and the spool cursor passes it) once enough has been
//! sent after it that it cannot still sit in those buffers, or once the
//! connection has been idle with nothing unacknowledged. After a failure the
//! thread resends from the confirmed point: records may arrive twice, never
//! zero times. The window is the kernel's count of unacknowledged bytes plus
//! `resend_bytes` on stream sockets, `net.unix.max_dgram_qlen` records on
//! unix datagram sockets, and nothing on UDP (which cannot know of any loss).
//!
//! RELP outputs need no guessing: the receiver answers every record by its
//! transaction number. Up to [`RELP_WINDOW`] records are outstanding; the
//! confirmed point passes a record only once it and every record before it
//! got `rsp 200`. After a broken connection, a `serverclose` or a refusal
//! (any other code, reported and retried with backoff), the thread resends
//! from the confirmed point and skips the records already acknowledged
//! beyond it, so a receiver restart yields neither loss nor duplicates.
//! rsyslog's `imrelp` acknowledges once a record is in its main queue: a
//! SIGTERM drains that queue before rsyslogd exits, a SIGKILL loses what it
//! held unwritten (make the receiver's queue disk-assisted for that case).

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::spool::{Batch, Pos, SpoolReader, SpoolWriter};
use crate::alert::Alert;
use crate::sink::format::Formatter;
use crate::sink::relp::{self, RelpEndpoint, Reply, Session};
use crate::sink::transport::{Connection, Endpoint, Framing};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the spool is fsync'd while records come in.
const SYNC_EVERY: Duration = Duration::from_millis(100);
/// Idle time after which everything sent counts as received.
const SETTLE: Duration = Duration::from_millis(200);
/// Bytes read from the spool and sent in one go.
const BATCH_BYTES: usize = 256 * 1024;
/// RELP records sent and not yet answered, at most.
const RELP_WINDOW: usize = 1024;
/// A RELP receiver that answers nothing for this long while records are
/// outstanding is taken for hung: reconnect and resend the unanswered.
const RELP_STALL: Duration = Duration::from_secs(30);

/// What the sending side and the delivery thread share.
struct Shared {
    writer: Mutex<SpoolWriter>,
    wake: Condvar,
    stop: AtomicBool,
    reconnect: AtomicBool,
    /// Set, under the writer lock, while the delivery thread sleeps: a send
    /// then wakes it; otherwise it will see the new record anyway, and the
    /// futex call per alert is saved.
    sleeping: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    /// The delivery thread's confirmed position, for [`Outbox::delivered`].
    confirmed: Mutex<Pos>,
    /// Unconfirmed records in groups of at most [`MARK_SPAN`]: (end of the
    /// group, when its first record was accepted). The front's time is the
    /// age of the oldest undelivered alert, for `dockwatch status`; grouping
    /// keeps this to one entry per second of backlog, not one per alert.
    marks: Mutex<VecDeque<(Pos, Instant)>>,
    /// Connection and send failures so far, and the last one.
    errors: AtomicU64,
    last_error: Mutex<Option<(String, SystemTime)>>,
}

/// Span of one group of [`Shared::marks`].
const MARK_SPAN: Duration = Duration::from_secs(1);

/// One syslog output's delivery state, for `dockwatch status` and metrics.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DeliveryStatus {
    /// Bytes of spool segments on disk (delivered records leave with their
    /// segment).
    pub spool_bytes: u64,
    /// Age of the oldest alert accepted and not yet confirmed delivered
    /// (to within a second); none when all is delivered.
    pub oldest_undelivered_secs: Option<f64>,
    pub delivery_errors: u64,
    pub last_error: Option<String>,
    /// When the last error happened (seconds since the Unix epoch).
    pub last_error_at: Option<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SpoolWriter> {
        // A panic while holding the lock leaves the spool consistent on
        // disk; keep going rather than poison every later send.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Locks a mutex of [`Shared`]; a panic elsewhere leaves its plain data
/// usable.
fn lock_of<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a delivery thread is set up.
pub struct Plan {
    pub name: String,
    pub wire: Wire,
    pub formatter: Arc<Formatter>,
    pub resend_bytes: u64,
    pub host: Arc<str>,
}

/// The protocol a delivery thread speaks.
pub enum Wire {
    /// Plain syslog on a socket: delivery inferred from windows.
    Syslog {
        endpoint: Endpoint,
        framing: Framing,
    },
    /// RELP: delivery acknowledged per record.
    Relp(RelpEndpoint),
}

/// A RELP record sent (or found acknowledged) and not yet confirmed.
struct Pending {
    txnr: u32,
    /// Where the record after it starts.
    end: Pos,
    acked: bool,
}

pub struct Outbox {
    shared: Arc<Shared>,
    formatter: Arc<Formatter>,
    thread: Option<JoinHandle<()>>,
    record: Vec<u8>,
    scratch: Vec<u8>,
    name: String,
    _lock: std::fs::File,
}

impl Outbox {
    /// `lock` is the spool's flock, held until [`Outbox::join`].
    pub fn start(
        plan: Plan,
        writer: SpoolWriter,
        reader: SpoolReader,
        lock: std::fs::File,
    ) -> std::io::Result<Outbox> {
        let shared = Arc::new(Shared {
            writer: Mutex::new(writer),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            reconnect: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            deadline: Mutex::new(None),
            confirmed: Mutex::new(reader.position()),
            marks: Mutex::new(VecDeque::new()),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        {
            // Left over from the last run: undelivered at least since now.
            let end = shared.lock().end();
            if reader.position() < end {
                lock_of(&shared.marks).push_back((end, Instant::now()));
            }
        }
        let formatter = plan.formatter.clone();
        let name = plan.name.clone();
        let thread = std::thread::Builder::new()
            .name("dockwatch-sink".into())
            .spawn({
                let shared = shared.clone();
                move || Delivery::new(plan, shared, reader).run()
            })?;
        Ok(Outbox {
            shared,
            formatter,
            thread: Some(thread),
            record: Vec::with_capacity(1024),
            scratch: Vec::with_capacity(1024),
            name,
            _lock: lock,
        })
    }

    /// Spools the alert and wakes the delivery thread; never waits for the
    /// receiver.
    pub fn send(&mut self, alert: &Alert) {
        self.record.clear();
        self.formatter.write(alert, &mut self.record);
        let mut writer = self.shared.lock();
        match writer.append(&self.record, &mut self.scratch) {
            Ok(true) => {
                let (end, now) = (writer.end(), Instant::now());
                let mut marks = lock_of(&self.shared.marks);
                match marks.back_mut() {
                    Some((group_end, since)) if now.duration_since(*since) < MARK_SPAN => {
                        *group_end = end
                    }
                    _ => marks.push_back((end, now)),
                }
            }
            Ok(false) => {}
            Err(e) => {
                writer.dropped += 1;
                tracing::warn!(
                    sink = self.name.as_str(),
                    "cannot write the spool, alert dropped: {e}"
                );
            }
        }
        let sleeping = self.shared.sleeping.load(Ordering::Relaxed);
        drop(writer);
        if sleeping {
            self.shared.wake.notify_one();
        }
    }

    /// Drops the connection and connects again (SIGHUP).
    pub fn reconnect(&self) {
        self.shared.reconnect.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// Whether every spooled record is confirmed delivered.
    pub fn delivered(&self) -> bool {
        let end = self.shared.lock().end();
        let confirmed = *self
            .shared
            .confirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        confirmed >= end
    }

    /// Spool and delivery state now.
    pub fn status(&self) -> DeliveryStatus {
        let spool_bytes = self.shared.lock().total;
        let oldest_undelivered_secs = lock_of(&self.shared.marks)
            .front()
            .map(|(_, since)| since.elapsed().as_secs_f64());
        let last = lock_of(&self.shared.last_error).clone();
        DeliveryStatus {
            spool_bytes,
            oldest_undelivered_secs,
            delivery_errors: self.shared.errors.load(Ordering::Relaxed),
            last_error_at: last.as_ref().map(|(_, at)| {
                at.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            }),
            last_error: last.map(|(e, _)| e),
        }
    }

    /// Asks the thread to deliver what it can before `deadline`, then stop.
    pub fn begin_shutdown(&self, deadline: Instant) {
        *self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// Waits for the thread after [`Outbox::begin_shutdown`]; returns
    /// whether everything was delivered.
    pub fn join(mut self) -> bool {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.delivered()
    }
}

struct Delivery {
    plan: Plan,
    shared: Arc<Shared>,
    reader: SpoolReader,
    conn: Option<Connection>,
    relp: Option<Session>,
    /// RELP records in flight, in spool order.
    pending: VecDeque<Pending>,
    /// Ends of RELP records acknowledged while one before them was not:
    /// skipped, not resent, when the spool is read again from `confirmed`.
    acked_ahead: BTreeSet<Pos>,
    replies: Vec<Reply>,
    last_reply: Instant,
    batch: Batch,
    /// End position and running totals after each batch not yet confirmed.
    inflight: VecDeque<(Pos, u64, u64)>,
    sent_bytes: u64,
    sent_records: u64,
    confirmed: Pos,
    dgram_window: u64,
    failing_since: Option<Instant>,
    next_attempt: Instant,
    backoff: Duration,
    last_sync: Instant,
    idle_since: Instant,
}

impl Delivery {
    fn new(plan: Plan, shared: Arc<Shared>, reader: SpoolReader) -> Delivery {
        let dgram_window = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(512);
        let now = Instant::now();
        Delivery {
            confirmed: reader.position(),
            plan,
            shared,
            reader,
            conn: None,
            relp: None,
            pending: VecDeque::new(),
            acked_ahead: BTreeSet::new(),
            replies: Vec::new(),
            last_reply: now,
            batch: Batch::default(),
            inflight: VecDeque::new(),
            sent_bytes: 0,
            sent_records: 0,
            dgram_window,
            failing_since: None,
            next_attempt: now,
            backoff: BACKOFF_MIN,
            last_sync: now,
            idle_since: now,
        }
    }

    fn run(mut self) {
        loop {
            let stopping = self.shared.stop.load(Ordering::Relaxed);
            let deadline = *self
                .shared
                .deadline
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if stopping && deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if self.shared.reconnect.swap(false, Ordering::Relaxed) {
                if let Some(conn) = self.conn.take() {
                    // A polite close delivers what was written.
                    conn.close();
                    self.confirm_all();
                }
                self.relp_close(Instant::now() + relp::REPLY_POLL * 10);
                self.next_attempt = Instant::now();
            }
            self.housekeeping();
            if stopping && !self.connected() && self.failing_since.is_some() {
                // The receiver is down: waiting out the bound would only
                // delay the exit; the spool keeps the rest for next time.
                break;
            }
            if !self.connected() {
                if Instant::now() < self.next_attempt {
                    if stopping && self.nothing_pending() {
                        break;
                    }
                    self.pause(self.next_attempt);
                    continue;
                }
                if !self.connect() {
                    if stopping && self.nothing_pending() {
                        break;
                    }
                    continue;
                }
            }
            if self.relp.is_some() {
                let idle = self.relp_step();
                if idle && stopping {
                    break;
                }
                if idle {
                    self.wait(Instant::now() + SETTLE);
                }
                continue;
            }
            let end = self.shared.lock().end();
            if let Err(e) = self.reader.read(end, BATCH_BYTES, &mut self.batch) {
                tracing::error!(sink = self.plan.name.as_str(), "cannot read the spool: {e}");
                self.pause(Instant::now() + BACKOFF_MAX);
                continue;
            }
            if self.batch.is_empty() {
                if self.settle() && stopping {
                    break;
                }
                self.wait(Instant::now() + SETTLE);
                continue;
            }
            self.deliver_batch();
        }
        self.finish();
    }

    /// Whether every spooled record is at least sent.
    fn nothing_pending(&self) -> bool {
        self.shared.lock().end() <= self.reader.position()
    }

    fn connected(&self) -> bool {
        self.conn.is_some() || self.relp.is_some()
    }

    fn connect(&mut self) -> bool {
        let connected = match &self.plan.wire {
            Wire::Syslog { endpoint, framing } => {
                Connection::connect(endpoint, *framing).map(|c| self.conn = Some(c))
            }
            Wire::Relp(endpoint) => Session::connect(endpoint).map(|s| {
                self.relp = Some(s);
                self.last_reply = Instant::now();
            }),
        };
        match connected {
            Ok(()) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        sink = self.plan.name.as_str(),
                        "reconnected after {:.1?}; sending the spooled alerts",
                        since.elapsed()
                    );
                }
                self.backoff = BACKOFF_MIN;
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        *lock_of(&self.shared.last_error) = Some((e.to_string(), SystemTime::now()));
        if self.failing_since.is_none() {
            tracing::warn!(
                sink = self.plan.name.as_str(),
                "syslog receiver unreachable ({e}); alerts are spooled and will be resent"
            );
            self.failing_since = Some(Instant::now());
        } else {
            tracing::debug!(sink = self.plan.name.as_str(), "reconnect failed: {e}");
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn deliver_batch(&mut self) {
        let conn = self.conn.as_mut().expect("connected before sending");
        match conn.send(self.batch.iter()) {
            Ok(skipped) => {
                self.sent_bytes += self.batch.bytes();
                self.sent_records += self.batch.records.len() as u64;
                self.inflight
                    .push_back((self.batch.end, self.sent_bytes, self.sent_records));
                self.idle_since = Instant::now();
                self.advance_confirmed();
                if skipped > 0 {
                    self.shared.lock().dropped += skipped;
                }
                self.report_dropped();
            }
            Err(e) => {
                self.conn = None;
                // Resend everything not yet confirmed.
                self.inflight.clear();
                self.reader.seek(self.confirmed);
                self.failed(&e);
                // The first retry is immediate: a receiver restart is
                // usually over by the time the error shows.
                self.next_attempt = Instant::now();
            }
        }
    }

    /// One round on a RELP session: send what the window allows, then take
    /// the replies that came. Returns whether nothing is left to send or to
    /// wait for.
    fn relp_step(&mut self) -> bool {
        let room = RELP_WINDOW.saturating_sub(self.pending.len());
        if room >= RELP_WINDOW / 4 {
            let end = self.shared.lock().end();
            if let Err(e) = self.reader.read(end, BATCH_BYTES, &mut self.batch) {
                tracing::error!(sink = self.plan.name.as_str(), "cannot read the spool: {e}");
                self.pause(Instant::now() + BACKOFF_MAX);
                return false;
            }
            if !self.batch.is_empty() && self.relp_send(room).is_err() {
                return false;
            }
        }
        if self.pending.is_empty() {
            return self.nothing_pending();
        }
        let session = self.relp.as_mut().expect("connected before sending");
        match session.read_replies(&mut self.replies) {
            Ok(true) => self.last_reply = Instant::now(),
            Ok(false) if self.last_reply.elapsed() >= RELP_STALL => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the RELP receiver answered nothing for {RELP_STALL:?}"),
                );
                self.relp_drop(&e, true);
                return false;
            }
            Ok(false) => return false,
            Err(e) => {
                // Answers read before the break still count.
                let _ = self.take_replies();
                self.relp_drop(&e, true);
                return false;
            }
        }
        if let Err((e, immediate)) = self.take_replies() {
            self.relp_drop(&e, immediate);
        }
        false
    }

    /// Queues the batch's records (at most `room` of them, skipping those
    /// already acknowledged) and writes them.
    fn relp_send(&mut self, room: usize) -> std::io::Result<()> {
        let session = self.relp.as_mut().expect("connected before sending");
        let last = self.batch.records.last().map_or(0, |r| r.1);
        let (segment, batch_end) = (self.batch.end.segment, self.batch.end.offset);
        let mut sent = 0;
        let mut taken = 0;
        if self.pending.is_empty() {
            self.last_reply = Instant::now();
        }
        for &(start, stop) in &self.batch.records {
            let end = Pos {
                segment,
                offset: batch_end - (last - stop) as u64,
            };
            if self.acked_ahead.remove(&end) {
                self.pending.push_back(Pending {
                    txnr: 0,
                    end,
                    acked: true,
                });
            } else {
                if sent == room {
                    break;
                }
                let txnr = session.queue(&self.batch.data[start..stop]);
                self.pending.push_back(Pending {
                    txnr,
                    end,
                    acked: false,
                });
                sent += 1;
            }
            taken += 1;
        }
        if taken < self.batch.records.len() {
            // The window is full: the rest is read again next round.
            let resume = self.pending.back().expect("took at least one").end;
            self.reader.seek(resume);
        }
        self.idle_since = Instant::now();
        if let Err(e) = session.flush() {
            self.relp_drop(&e, true);
            return Err(e);
        }
        self.relp_confirm();
        Ok(())
    }

    /// Applies the replies read; an error says why the session must end and
    /// whether to reconnect at once (the receiver went away) or after the
    /// backoff (it refused a record).
    fn take_replies(&mut self) -> Result<(), (std::io::Error, bool)> {
        let mut outcome = Ok(());
        for reply in self.replies.drain(..) {
            match reply {
                Reply::Rsp {
                    txnr, code: 200, ..
                } => {
                    if let Some(p) = self.pending.iter_mut().find(|p| p.txnr == txnr && !p.acked) {
                        p.acked = true;
                    }
                }
                Reply::Rsp { txnr, code, text } => {
                    tracing::warn!(
                        sink = self.plan.name.as_str(),
                        txnr,
                        "the RELP receiver refused an alert ({code} {text}); it stays spooled and is resent"
                    );
                    if outcome.is_ok() {
                        outcome = Err((
                            std::io::Error::other(format!(
                                "RELP receiver refused a record: {code} {text}"
                            )),
                            false,
                        ));
                    }
                }
                Reply::ServerClose => {
                    if outcome.is_ok() {
                        outcome = Err((
                            std::io::Error::new(
                                std::io::ErrorKind::ConnectionAborted,
                                "the RELP receiver closed the session (serverclose)",
                            ),
                            true,
                        ));
                    }
                }
            }
        }
        self.relp_confirm();
        outcome
    }

    /// Moves the confirmed point past the acknowledged head of `pending`.
    fn relp_confirm(&mut self) {
        let mut newest = None;
        while let Some(p) = self.pending.front() {
            if !p.acked {
                break;
            }
            newest = Some(p.end);
            self.pending.pop_front();
        }
        if let Some(pos) = newest {
            self.set_confirmed(pos);
            self.report_dropped();
        }
    }

    /// Forgets the session: what was acknowledged is remembered, the rest
    /// is resent from the confirmed point on the next connection.
    fn relp_drop(&mut self, e: &std::io::Error, immediate: bool) {
        self.relp = None;
        for p in self.pending.drain(..) {
            if p.acked {
                self.acked_ahead.insert(p.end);
            }
        }
        self.reader.seek(self.confirmed);
        self.failed(e);
        if immediate {
            // As on a stream: a receiver restart is usually over by the
            // time the error shows.
            self.next_attempt = Instant::now();
        }
    }

    /// Waits until `deadline` for the outstanding answers, then closes the
    /// session politely; unanswered records stay for the next connection.
    fn relp_close(&mut self, deadline: Instant) {
        let Some(mut session) = self.relp.take() else {
            return;
        };
        while self.pending.iter().any(|p| !p.acked) && Instant::now() < deadline {
            match session.read_replies(&mut self.replies) {
                Ok(_) => {
                    if self.take_replies().is_err() {
                        break;
                    }
                }
                Err(_) => {
                    let _ = self.take_replies();
                    break;
                }
            }
        }
        session.close(
            &mut self.replies,
            deadline.max(Instant::now() + relp::REPLY_POLL),
        );
        let _ = self.take_replies();
        for p in self.pending.drain(..) {
            if p.acked {
                self.acked_ahead.insert(p.end);
            }
        }
        self.reader.seek(self.confirmed);
    }

    /// Moves the confirmed point past batches that can no longer be sitting
    /// unread in a receiver's buffers.
    fn advance_confirmed(&mut self) {
        let Some(conn) = &self.conn else { return };
        let mut newest = None;
        if conn.is_fire_and_forget() {
            newest = self.inflight.back().map(|e| e.0);
            self.inflight.clear();
        } else if conn.is_datagram() {
            while let Some(&(pos, _, records)) = self.inflight.front() {
                if self.sent_records - records < self.dgram_window {
                    break;
                }
                newest = Some(pos);
                self.inflight.pop_front();
            }
        } else {
            let window = conn.unacked_bytes().unwrap_or(0) as u64 + self.plan.resend_bytes;
            while let Some(&(pos, bytes, _)) = self.inflight.front() {
                if self.sent_bytes - bytes < window {
                    break;
                }
                newest = Some(pos);
                self.inflight.pop_front();
            }
        }
        if let Some(pos) = newest {
            self.set_confirmed(pos);
        }
    }

    /// When nothing is left to send: confirm everything once the connection
    /// has been quiet with nothing unacknowledged. Returns whether all is
    /// confirmed.
    fn settle(&mut self) -> bool {
        if self.inflight.is_empty() {
            return true;
        }
        let quiet = self.idle_since.elapsed() >= SETTLE;
        let drained = self
            .conn
            .as_ref()
            .is_some_and(|c| c.unacked_bytes().unwrap_or(0) == 0);
        if quiet && drained {
            self.confirm_all();
            // Confirming may have freed the space a drop report needs.
            self.report_dropped();
            return true;
        }
        false
    }

    fn confirm_all(&mut self) {
        if let Some(&(pos, _, _)) = self.inflight.back() {
            self.inflight.clear();
            self.set_confirmed(pos);
        }
    }

    fn set_confirmed(&mut self, mut pos: Pos) {
        {
            let mut writer = self.shared.lock();
            if pos >= writer.end() && writer.worth_rolling() {
                match writer.roll() {
                    Ok(()) => {
                        // Everything is delivered: restart on the fresh
                        // segment and let the old one be deleted.
                        pos = writer.end();
                        self.reader.seek(pos);
                    }
                    Err(e) => tracing::warn!(
                        sink = self.plan.name.as_str(),
                        "cannot start a spool segment: {e}"
                    ),
                }
            }
        }
        self.confirmed = pos;
        {
            let mut marks = lock_of(&self.shared.marks);
            while marks.front().is_some_and(|&(end, _)| end <= pos) {
                marks.pop_front();
            }
        }
        *self
            .shared
            .confirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = pos;
        match self.reader.commit(pos) {
            Ok(0) => {}
            Ok(freed) => {
                let mut writer = self.shared.lock();
                writer.total = writer.total.saturating_sub(freed);
            }
            Err(e) => tracing::warn!(
                sink = self.plan.name.as_str(),
                "cannot update the spool cursor: {e}"
            ),
        }
    }

    /// Once delivery works again and the spool has room, what the cap
    /// refused becomes an alert of its own, in order with the rest.
    fn report_dropped(&mut self) {
        let mut writer = self.shared.lock();
        if writer.dropped == 0 || !writer.has_room() {
            return;
        }
        let count = std::mem::take(&mut writer.dropped);
        let alert = super::dropped_alert(&self.plan.name, count, self.plan.host.clone());
        let mut record = Vec::new();
        self.plan.formatter.write(&alert, &mut record);
        let mut scratch = Vec::new();
        if !matches!(writer.append(&record, &mut scratch), Ok(true)) {
            writer.dropped += count;
        } else {
            tracing::warn!(
                sink = self.plan.name.as_str(),
                count,
                "alerts were dropped while the spool was full"
            );
        }
    }

    /// fsync of the spool in batches.
    fn housekeeping(&mut self) {
        if self.last_sync.elapsed() < SYNC_EVERY {
            return;
        }
        self.last_sync = Instant::now();
        let handle = {
            let mut writer = self.shared.lock();
            if !writer.unsynced {
                return;
            }
            writer.sync_handle()
        };
        if let Err(e) = handle.and_then(|f| f.sync_data()) {
            tracing::warn!(
                sink = self.plan.name.as_str(),
                "cannot fsync the spool: {e}"
            );
        }
        let _ = self.reader.sync_cursor();
    }

    /// Sleeps until `until`, new records, a stop or a reconnect request,
    /// whichever is first (at most [`SYNC_EVERY`], for the fsync).
    fn wait(&self, until: Instant) {
        self.sleep(until, true);
    }

    /// Sleeps until `until`, a stop or a reconnect request (at most
    /// [`SYNC_EVERY`]), not woken by new records: between reconnect attempts
    /// and after a spool error there is nothing to do with them, and waking
    /// would spin on the writer's lock and starve `send`.
    fn pause(&self, until: Instant) {
        self.sleep(until, false);
    }

    fn sleep(&self, until: Instant, for_records: bool) {
        let until = until.min(Instant::now() + SYNC_EVERY);
        let position = self.reader.position();
        let mut writer = self.shared.lock();
        while (!for_records || writer.end() <= position)
            && !self.shared.stop.load(Ordering::Relaxed)
            && !self.shared.reconnect.load(Ordering::Relaxed)
        {
            let now = Instant::now();
            if now >= until {
                break;
            }
            self.shared.sleeping.store(true, Ordering::Relaxed);
            writer = self
                .shared
                .wake
                .wait_timeout(writer, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            self.shared.sleeping.store(false, Ordering::Relaxed);
        }
    }

    /// Last words: what is confirmed is recorded, the rest stays spooled for
    /// the next start.
    fn finish(mut self) {
        let deadline = *self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.relp_close(deadline.unwrap_or_else(Instant::now));
        if let Some(conn) = self.conn.take() {
            // Give the kernel the bounded time left to hand over the tail.
            while conn.unacked_bytes().unwrap_or(0) > 0
                && deadline.is_some_and(|d| Instant::now() < d)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            let drained = conn.unacked_bytes().unwrap_or(0) == 0;
            conn.close();
            if drained {
                self.confirm_all();
            }
        }
        self.last_sync = Instant::now() - SYNC_EVERY;
        self.housekeeping();
        let _ = self.reader.sync_cursor();
        let left = self.shared.lock().end() > self.confirmed;
        if left {
            tracing::warn!(
                sink = self.plan.name.as_str(),
                "stopping with undelivered alerts; they stay spooled and are sent at the next start"
            );
        }
    }
}
