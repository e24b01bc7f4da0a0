//! Wiring of the stages for `run` (live sources) and `replay` (archived
//! logs): sources → one channel → pipeline → outputs. The stages themselves
//! live in their own modules; this one only starts, connects and stops them,
//! and has the event loop answer the control socket between two events
//! (status, reload: see `control`).

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::{Config, ConfigError};
use crate::control::reload::{Pending, ReloadPlan, Reloader};
use crate::control::run_record::{self, PreviousRun, RunRecord};
use crate::control::{Control, Counters, Request, Response, Status};
use crate::event::{Action, Source};
use crate::outbox::Outputs;
use crate::pipeline::Pipeline;
use crate::posture::{Posture, PostureStage};
use crate::privilege::{self, Capability};
use crate::rules::{RuleSet, Watch};
use crate::source::audit::{AuditMode, AuditSource};
use crate::source::docker::DockerSource;
use crate::source::ebpf::EbpfSource;
use crate::source::mounts::MountsSource;

/// Events in flight between sources and the pipeline; when full, sources
/// wait (and the kernel ring buffer absorbs, then counts, what overflows).
const EVENT_QUEUE: usize = 16 * 1024;

/// `dockwatch run`.
pub fn run(config: Config, plan: ReloadPlan, output_flags: Vec<String>) -> anyhow::Result<()> {
    let mut wanted = Vec::new();
    if config.sources.ebpf.enabled {
        wanted.push((Capability::Bpf, "loading the eBPF probes"));
        wanted.push((Capability::Perfmon, "attaching tracepoints"));
    }
    match config.sources.audit.mode {
        AuditMode::Netlink => wanted.push((Capability::AuditRead, "reading audit netlink")),
        AuditMode::Log => wanted.push((Capability::DacReadSearch, "reading the audit log")),
        AuditMode::Off => {}
    }
    privilege::require(&wanted)?;

    let rules = Arc::new(RuleSet::load_dir(&plan.rules_dir)?);
    let urls = pick_outputs(output_flags, &config);
    let outputs = Outputs::open(&urls, &config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(config, plan, rules, outputs))
}

fn pick_outputs(flags: Vec<String>, config: &Config) -> Vec<String> {
    if !flags.is_empty() {
        flags
    } else if !config.outputs.is_empty() {
        config.outputs.clone()
    } else {
        crate::sink::default_outputs()
    }
}

async fn run_async(
    mut config: Config,
    plan: ReloadPlan,
    rules: Arc<RuleSet>,
    mut outputs: Outputs,
) -> anyhow::Result<()> {
    // Installed before anything starts: a SIGTERM that arrives while the
    // sources attach (systemd stopping a unit that is still starting) must
    // end in a clean stop, not in the default action killing the process.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut counters = Counters::new();
    let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
    let host: Arc<str> = config.host_name().into();
    let (posture, posture_findings) = if config.posture.enabled {
        let (posture, findings) = Posture::start(&config.posture, host.clone())?;
        (Some(posture), findings)
    } else {
        (None, Vec::new())
    };
    let guarded = own_files(&plan);
    let mut standing_watches: Vec<_> = posture.iter().flat_map(Posture::watches).collect();
    standing_watches.extend(guarded.iter().map(|path| {
        Watch {
            path: path.clone(),
            actions: Action::WRITE_CLASS
                .iter()
                .chain(Action::ATTR_CLASS)
                .fold(0, |bits, a| bits | a.bit()),
            key: "dockwatch-self-modified".to_string(),
        }
    }));
    let mut watches = rules.watches();
    watches.extend(standing_watches.iter().cloned());

    let mut started = Vec::new();
    // Dropping a source stops it.
    let ebpf = if config.sources.ebpf.enabled {
        match EbpfSource::start(&config.sources.ebpf, &watches, tx.clone()).await {
            Ok(source) => {
                started.push("ebpf");
                Some(source)
            }
            Err(e) => {
                tracing::error!("eBPF source unavailable: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let audit = if config.sources.audit.mode != AuditMode::Off {
        match AuditSource::start(&config.sources.audit, tx.clone()).await {
            Ok(source) => {
                started.push("audit");
                Some(source)
            }
            Err(e) => {
                tracing::error!("audit source unavailable: {e:#}");
                None
            }
        }
    } else {
        None
    };
    if let (Some(ebpf), false) = (&ebpf, started.contains(&"audit")) {
        if !ebpf.sees_32bit_calls() {
            tracing::warn!(
                "the eBPF syscall tracepoints do not see 32-bit system calls (int 0x80, -m32 \
                 binaries): such a process can change watched files unseen; enable \
                 [sources.audit] to cover them"
            );
        }
    }
    let mounts = if config.sources.mounts.enabled {
        match MountsSource::start(&config.sources.mounts, &watches, tx.clone()) {
            Ok(source) => Some(source),
            Err(e) => {
                tracing::error!("mount changes over watched paths will not be seen: {e}");
                None
            }
        }
    } else {
        None
    };
    // Waits for an engine that is not running yet, so it always starts.
    let docker = config.sources.docker.enabled.then(|| {
        started.push("docker");
        DockerSource::start(&config.sources.docker, tx.clone())
    });
    drop(tx);
    // Audit checkpoints advance only past events handled here.
    let audit_acks = audit.as_ref().map(AuditSource::acks);
    if started.is_empty() {
        return Err(ConfigError::new(
            "no event source could start (see the errors above); enable [sources.ebpf] or [sources.audit]",
        )
        .into());
    }

    // Posture's checks block (auditctl, file reads, the engine); they run
    // on its own thread and its alerts come back here.
    let (posture, mut posture_alerts) = match posture {
        Some(posture) => {
            let (stage, alerts) = PostureStage::spawn(posture)?;
            (Some(stage), Some(alerts))
        }
        None => (None, None),
    };

    let mut reloader = Reloader::new(plan, standing_watches, rules.len());
    let mut pipeline = Pipeline::new(rules, &config.pipeline, host)
        .correlating(started.contains(&"ebpf") && started.contains(&"audit"))
        .guarding(
            guarded
                .iter()
                .map(|p| p.as_os_str().as_bytes().to_vec())
                .collect(),
        )
        .attributing(&config.sources.docker.socket);
    if let Some(docker) = &docker {
        pipeline = pipeline.naming(docker.names());
    }
    pipeline.respell(&watches);
    let (_control, mut calls) = Control::start(&config.control).await;
    let mut heartbeat = (config.control.heartbeat_secs > 0).then(|| {
        let every = std::time::Duration::from_secs(config.control.heartbeat_secs);
        tokio::time::interval_at(tokio::time::Instant::now() + every, every)
    });
    tracing::info!(
        sources = started.join(",").as_str(),
        watches = watches.len(),
        "dockwatch ready"
    );
    let mut alerts = Vec::new();
    let (previous_run, record) = RunRecord::begin(&config.state_dir);
    if let PreviousRun::Unknown(why) = &previous_run {
        tracing::warn!("how the previous run ended is unknown: {why}");
    }
    let mut record = record
        .inspect_err(|e| {
            tracing::error!(
                "cannot write the run record in {}: {e}; the next start cannot tell \
                 whether this run was killed (set state_dir to a writable directory)",
                config.state_dir.display()
            )
        })
        .ok();
    let mut alive = tokio::time::interval_at(
        tokio::time::Instant::now() + run_record::ALIVE_EVERY,
        run_record::ALIVE_EVERY,
    );
    pipeline.push(previous_run.start_event(), Instant::now(), &mut alerts);
    for alert in alerts.drain(..) {
        counters.on_alert(&alert);
        outputs.send(&alert);
    }
    for alert in &posture_findings {
        outputs.send(alert);
    }
    outputs.flush();

    // A reload waiting for the kernel's watch set and the events queued
    // before it (see `control::reload::Pending`).
    let mut pending = None;
    loop {
        let deadline = pipeline.next_deadline();
        let mut from_audit = false;
        let mut reload_asked = None;
        tokio::select! {
            event = rx.recv() => match event {
                Some(mut event) => {
                    from_audit = event.source == Source::Audit;
                    if let (Source::Mounts, Some(ebpf)) = (event.source, ebpf.as_ref()) {
                        ebpf.follow_mounts();
                    }
                    pipeline.attribute(&mut event, Instant::now());
                    counters.on_event(&event);
                    if let Some(posture) = &posture {
                        posture.offer(&event);
                    }
                    pipeline.push(event, Instant::now(), &mut alerts);
                    if let Some(pending) = pending.as_mut() {
                        pending.on_event();
                    }
                }
                None => break,
            },
            _ = sleep_until(deadline) => pipeline.tick(Instant::now(), &mut alerts),
            Some(alert) = posture_alert(&mut posture_alerts) => alerts.push(alert),
            _ = beat(&mut heartbeat) => {
                let status = Status::gather(&counters, reloader.rules, &started, ebpf.as_ref(), &outputs, &config);
                pipeline.push(status.heartbeat(), Instant::now(), &mut alerts);
            }
            _ = alive.tick() => {
                if let Some(Err(e)) = record.as_mut().map(RunRecord::alive) {
                    tracing::warn!("cannot refresh the run record: {e}");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration and rules");
                reload_asked = Some(None);
            }
            Some(call) = calls.recv() => match call.request {
                Request::Status => {
                    let status = Status::gather(&counters, reloader.rules, &started, ebpf.as_ref(), &outputs, &config);
                    let _ = call.reply.send(Response { status: Some(Box::new(status)), ..Response::default() });
                }
                Request::Reload => reload_asked = Some(Some(call.reply)),
            },
            answer = Pending::kernel_answer(&mut pending) => {
                if let Some(pending) = pending.as_mut() {
                    pending.kernel_done(answer, rx.len());
                }
            }
        }
        if let Some(reply) = reload_asked {
            // logrotate's snippet needs no signal (size rotation is
            // dockwatch's own), but a reload still reopens the files.
            outputs.reopen();
            if pending.is_some() {
                tracing::warn!("reload asked for while one is under way; ignored");
                if let Some(reply) = reply {
                    let _ = reply.send(Response::error("a reload is under way; ask again"));
                }
            } else {
                pending = reloader.start(
                    &mut config,
                    &mut pipeline,
                    ebpf.as_ref(),
                    rx.len(),
                    &mut counters,
                    &mut alerts,
                    reply,
                );
            }
        }
        if pending.as_ref().is_some_and(Pending::ready) {
            if let Some(ready) = pending.take() {
                let watches = reloader.apply(ready, &mut pipeline, &mut counters);
                pipeline.respell(&watches);
                if let Some(mounts) = &mounts {
                    mounts.rewatch(&watches);
                }
            }
        }
        for alert in alerts.drain(..) {
            counters.on_alert(&alert);
            outputs.send(&alert);
        }
        outputs.flush();
        if let (true, Some(acks)) = (from_audit, &audit_acks) {
            acks.done();
        }
    }
    // Posture's verdicts on the events it was given still go out.
    if let (Some(posture), Some(mut found)) = (posture, posture_alerts) {
        tokio::task::block_in_place(|| posture.finish());
        while let Ok(alert) = found.try_recv() {
            alerts.push(alert);
        }
    }
    pipeline.flush(&mut alerts);
    for alert in alerts.drain(..) {
        outputs.send(&alert);
    }
    outputs.shutdown().await;
    // Last: a run that dies before its alerts are out has not stopped cleanly.
    if let Some(record) = record {
        let path = record.path().to_path_buf();
        if let Err(e) = record.stopped() {
            tracing::warn!("cannot mark the clean stop in {}: {e}", path.display());
        }
    }
    tracing::info!("dockwatch stopped");
    Ok(())
}

async fn beat(heartbeat: &mut Option<tokio::time::Interval>) {
    match heartbeat {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// dockwatch's own binary, configuration file and rules directory: what
/// an attacker edits to blind it. The state directory is left out: the
/// daemon writes its spools there itself, and every such write would come
/// back through the probes.
fn own_files(plan: &ReloadPlan) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    match std::env::current_exe() {
        Ok(exe) => paths.push(exe),
        Err(e) => tracing::warn!("cannot tell which binary runs ({e}); it is not guarded"),
    }
    let config = plan
        .config_path
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG));
    if config.exists() {
        paths.push(config);
    }
    paths.push(plan.rules_dir.clone());
    paths
}

async fn posture_alert(
    alerts: &mut Option<tokio::sync::mpsc::UnboundedReceiver<crate::alert::Alert>>,
) -> Option<crate::alert::Alert> {
    match alerts {
        Some(alerts) => alerts.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Events replayed between two readings of the clock.
const CLOCK_EVERY: u32 = 256;

/// `dockwatch replay`: returns the exit code.
pub fn replay(
    config: Config,
    rules_dir: PathBuf,
    output_flags: Vec<String>,
    files: Vec<PathBuf>,
) -> anyhow::Result<u8> {
    let rules = Arc::new(RuleSet::load_dir(&rules_dir)?);
    let urls = if output_flags.is_empty() {
        vec!["stdout".to_string()]
    } else {
        output_flags
    };
    let mut outputs = Outputs::open(&urls, &config)?;
    let host: Arc<str> = config.host_name().into();
    let mut pipeline = Pipeline::new(rules, &config.pipeline, host);
    // Delivery runs on the runtime's workers while this thread parses.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut alerts = Vec::new();
        // Flood windows last a second; events come every microsecond or
        // two. The clock is read once per batch of events, not per event,
        // where reading it showed in replay profiles.
        let mut now = Instant::now();
        let mut since_clock = 0u32;
        tokio::task::block_in_place(|| {
            crate::source::audit::replay(&files, &mut |event| {
                since_clock += 1;
                if since_clock == CLOCK_EVERY {
                    since_clock = 0;
                    now = Instant::now();
                }
                pipeline.push(event, now, &mut alerts);
                for alert in alerts.drain(..) {
                    outputs.send(&alert);
                }
            })
        })?;
        pipeline.flush(&mut alerts);
        for alert in alerts.drain(..) {
            outputs.send(&alert);
        }
        outputs.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(0)
}
