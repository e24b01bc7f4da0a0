//! The Prometheus endpoint: the status counters in the text exposition
//! format (OpenMetrics flavour, encoded by `prometheus-client`), on a unix
//! socket or a loopback address.
//!
//! The HTTP side is hand-written: it answers one `GET /metrics` per
//! connection with an HTTP/1.0 response and closes, which is all a scraper
//! needs; a web server crate would be the largest dependency of the daemon
//! for that one request.

use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::socket::{ask_loop, bind_private, Listener};
use super::status::Status;
use super::{Call, MetricsAddr, Request};

/// Largest request head read.
const HEAD_MAX: usize = 8192;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn listen(addr: &MetricsAddr, calls: mpsc::Sender<Call>) -> anyhow::Result<Listener> {
    match addr {
        MetricsAddr::Unix(path) => {
            let (listener, placed) = bind_private(path).await?;
            tracing::info!(socket = %path.display(), "metrics endpoint listening");
            let task = tokio::spawn(async move {
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(serve(stream, calls.clone()));
                    }
                }
            });
            Ok(Listener::new(task, Some(placed)))
        }
        MetricsAddr::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            tracing::info!(%addr, "metrics endpoint listening");
            let task = tokio::spawn(async move {
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(serve(stream, calls.clone()));
                    }
                }
            });
            Ok(Listener::new(task, None))
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, calls: mpsc::Sender<Call>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(HEAD_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > HEAD_MAX {
                break;
            }
        }
        std::io::Result::Ok(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, target) = (words.next(), words.next());
    let response = match (method, target) {
        (Some(b"GET"), Some(b"/metrics")) => match ask_loop(&calls, Request::Status).await.status {
            Some(status) => respond("200 OK", CONTENT_TYPE, &encode_status(&status)),
            None => respond(
                "503 Service Unavailable",
                "text/plain",
                "dockwatch is stopping\n",
            ),
        },
        (Some(b"GET"), _) => respond("404 Not Found", "text/plain", "try /metrics\n"),
        _ => respond(
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n",
        ),
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn respond(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

type Labelled<M> = Family<Vec<(String, String)>, M>;
type SecondsGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn label(key: &str, value: &str) -> Vec<(String, String)> {
    vec![(key.to_string(), value.to_string())]
}

/// The status as metrics, named as Prometheus users expect: a `dockwatch_`
/// prefix, base units in the name, `_total` on counters.
pub fn encode_status(status: &Status) -> String {
    let mut registry = Registry::default();
    let uptime = SecondsGauge::default();
    uptime.set(status.uptime_secs);
    registry.register(
        "dockwatch_uptime_seconds",
        "Seconds since this dockwatch started",
        uptime,
    );
    let rules = Gauge::<i64>::default();
    rules.set(status.rules as i64);
    registry.register("dockwatch_rules", "Rules loaded", rules);

    let events = Labelled::<Counter>::default();
    let lost = Labelled::<Counter>::default();
    let filtered = Labelled::<Counter>::default();
    for s in &status.sources {
        let l = label("source", &s.name);
        events.get_or_create(&l).inc_by(s.events);
        lost.get_or_create(&l).inc_by(s.lost);
        if let Some(f) = s.filtered {
            filtered.get_or_create(&l).inc_by(f);
        }
    }
    registry.register(
        "dockwatch_events",
        "Events the sources handed to the pipeline",
        events,
    );
    registry.register(
        "dockwatch_records_lost",
        "Records a source reported lost",
        lost,
    );
    registry.register(
        "dockwatch_records_filtered",
        "Kernel records userspace found unwatched",
        filtered,
    );

    let alerts = Labelled::<Counter>::default();
    for (rule, &n) in &status.alerts {
        alerts.get_or_create(&label("rule", rule)).inc_by(n);
    }
    registry.register("dockwatch_alerts", "Alerts raised, by rule id", alerts);

    let spool = Labelled::<Gauge>::default();
    let oldest = Labelled::<SecondsGauge>::default();
    let errors = Labelled::<Counter>::default();
    for o in &status.outputs {
        let Some(d) = &o.delivery else { continue };
        let l = label("output", &o.output);
        spool
            .get_or_create(&l)
            .set(i64::try_from(d.spool_bytes).unwrap_or(i64::MAX));
        oldest
            .get_or_create(&l)
            .set(d.oldest_undelivered_secs.unwrap_or(0.0));
        errors.get_or_create(&l).inc_by(d.delivery_errors);
    }
    registry.register(
        "dockwatch_spool_bytes",
        "Bytes of an output's spool on disk",
        spool,
    );
    registry.register(
        "dockwatch_oldest_undelivered_seconds",
        "Age of an output's oldest undelivered alert (0: all delivered)",
        oldest,
    );
    registry.register(
        "dockwatch_delivery_errors",
        "Connection and send failures of an output",
        errors,
    );

    let reloads = Labelled::<Counter>::default();
    reloads
        .get_or_create(&label("result", "applied"))
        .inc_by(status.reloads.applied);
    reloads
        .get_or_create(&label("result", "refused"))
        .inc_by(status.reloads.refused);
    registry.register("dockwatch_reloads", "Reloads since start", reloads);

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}
