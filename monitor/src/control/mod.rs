//! Talking to a running daemon: `dockwatch status` and `dockwatch reload`
//! over a unix control socket, and the optional Prometheus endpoint.
//!
//! A fleet operator needs to ask a dockwatch how it is doing and to change
//! its rules without the gap a restart is. Both go through the daemon's
//! event loop, which owns the pipeline and the counters: a request is a
//! [`Call`] the loop answers between two events. So a status is one
//! consistent picture, a reload swaps the rules between two events (none
//! dropped, none matched twice), and the event path carries no lock.
//!
//! The socket is root's only: created mode 0600 (bound under a temporary
//! name, then renamed, so it is never reachable with looser permissions),
//! and a peer whose `SO_PEERCRED` uid is not 0 is refused even if someone
//! loosened the mode. One JSON request line, one JSON response line.
//!
//! The same status goes out as a `dockwatch-heartbeat` alert every
//! `heartbeat_secs`, so the collector can tell a quiet host from a dead
//! monitor without asking each host.

mod client;
mod metrics;
pub mod reload;
pub mod run_record;
mod socket;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use client::{reload_command, status_command, EXIT_NOT_RUNNING, EXIT_REFUSED};
pub use reload::ReloadReport;
pub use status::{Counters, Status};

/// Where the control socket is when the configuration does not say.
pub const DEFAULT_SOCKET: &str = "/run/dockwatch/control.sock";

/// The `[control]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// The control socket `dockwatch status` and `dockwatch reload` use.
    pub socket: PathBuf,
    /// Prometheus text endpoint: `unix:///PATH` or a loopback `IP:PORT`;
    /// off when absent.
    pub metrics: Option<MetricsAddr>,
    /// Seconds between heartbeat alerts (`dockwatch-heartbeat`, with the
    /// status counters); 0 turns them off.
    pub heartbeat_secs: u64,
}

impl Default for ControlConfig {
    fn default() -> ControlConfig {
        ControlConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            metrics: None,
            heartbeat_secs: 300,
        }
    }
}

/// Where the metrics endpoint listens. Only this host may read it: the
/// counters tell an attacker which rules fire and whether alerts get out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::str::FromStr for MetricsAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<MetricsAddr, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "metrics = {s:?}: a socket path must be absolute (unix:///run/dockwatch/metrics.sock)"
                ));
            }
            return Ok(MetricsAddr::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = s.parse().map_err(|_| {
            format!(
                "metrics = {s:?}: use unix:///PATH or a loopback address such as 127.0.0.1:9187"
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "metrics = {s:?}: the metrics endpoint listens on a unix socket or a loopback address only (127.0.0.1:9187, [::1]:9187)"
            ));
        }
        Ok(MetricsAddr::Tcp(addr))
    }
}

impl<'de> Deserialize<'de> for MetricsAddr {
    // Refused here rather than at start, so the error carries the value's
    // file:line:col like every other configuration mistake.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MetricsAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Status,
    Reload,
}

/// The daemon's answer: exactly one of the fields is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<Status>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadReport>,
    /// The request was not carried out (refused reload, refused peer, bad
    /// request), in words for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response {
            error: Some(message.into()),
            ..Response::default()
        }
    }
}

/// A request for the event loop and where its answer goes.
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Calls waiting for the event loop; a few are plenty (one operator, one
/// scraper).
const CALL_QUEUE: usize = 16;

/// The listening sockets; dropping it stops them and removes the socket
/// files it created.
pub struct Control {
    _listeners: Vec<socket::Listener>,
}

impl Control {
    /// Binds the control socket and, when configured, the metrics endpoint.
    /// A socket that cannot be bound is logged and left out, not fatal:
    /// watching matters more than being asked about it.
    pub async fn start(config: &ControlConfig) -> (Control, mpsc::Receiver<Call>) {
        let (tx, calls) = mpsc::channel(CALL_QUEUE);
        let mut listeners = Vec::new();
        match socket::Listener::control(&config.socket, tx.clone()).await {
            Ok(l) => listeners.push(l),
            Err(e) => tracing::error!(
                socket = %config.socket.display(),
                "control socket unavailable, `dockwatch status` and `dockwatch reload` will not reach this daemon (SIGHUP still reloads): {e:#}"
            ),
        }
        if let Some(addr) = &config.metrics {
            match metrics::listen(addr, tx).await {
                Ok(l) => listeners.push(l),
                Err(e) => tracing::error!("metrics endpoint unavailable: {e:#}"),
            }
        }
        (
            Control {
                _listeners: listeners,
            },
            calls,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_listen_on_this_host_only() {
        assert_eq!(
            "127.0.0.1:9187".parse::<MetricsAddr>(),
            Ok(MetricsAddr::Tcp("127.0.0.1:9187".parse().unwrap()))
        );
        assert!("[::1]:9187".parse::<MetricsAddr>().is_ok());
        assert_eq!(
            "unix:///run/dockwatch/metrics.sock".parse::<MetricsAddr>(),
            Ok(MetricsAddr::Unix("/run/dockwatch/metrics.sock".into()))
        );
        for bad in [
            "0.0.0.0:9187",
            "10.0.0.1:9187",
            "unix://rel",
            "localhost:9187",
        ] {
            assert!(bad.parse::<MetricsAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_public_metrics_address_is_located_in_the_config() {
        let text = "[control]\nmetrics = \"0.0.0.0:9187\"\n";
        let err = crate::config::Config::parse(std::path::Path::new("c.toml"), text).unwrap_err();
        assert!(err.to_string().starts_with("c.toml:2:11: "), "{err}");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
