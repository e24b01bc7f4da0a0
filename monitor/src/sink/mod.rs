//! Alert delivery: the `--output` URLs, the wire formats (JSON lines,
//! RFC 5424, RFC 3164) and the transports behind them.
//!
//! This module knows how to put one record on one wire; buffering, spooling
//! and retrying belong to `outbox`, which drives it.

pub mod file;
pub mod format;
pub mod relp;
pub mod tls;
pub mod transport;

use std::path::PathBuf;

use rustls::pki_types::ServerName;
use serde::Deserialize;

use crate::config::{Config, ConfigError};
use file::Rotation;
use format::{Format, Formatter};
use relp::RelpEndpoint;
use transport::{Endpoint, Framing};

/// The `[tls]` section: certificates for `syslog+tls://` outputs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM bundle of the CAs that may sign the receiver's certificate
    /// (default: the system bundle).
    pub ca: Option<PathBuf>,
    /// PEM certificate chain presented to receivers that ask for one.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

/// What an error message lists as valid output URLs.
pub const ACCEPTED_URLS: &str = "stdout, file:///PATH, syslog+unix:///PATH, \
    syslog+udp://HOST[:PORT], syslog+tcp://HOST[:PORT], syslog+tls://HOST[:PORT], \
    syslog+relp://HOST[:PORT] or syslog+relp+tls://HOST[:PORT]; file takes ?max_bytes=N&keep=N, syslog takes ?format=rfc5424|rfc3164|json, \
    &framing=octet|newline (tcp, tls) and &facility=NAME";

/// A parsed output URL.
#[derive(Debug)]
pub enum Target {
    Stdout,
    File {
        path: PathBuf,
        rotation: Option<Rotation>,
    },
    Syslog {
        endpoint: Endpoint,
        framing: Framing,
        formatter: Formatter,
    },
    /// RELP: every record acknowledged by the receiver.
    Relp {
        endpoint: RelpEndpoint,
        formatter: Formatter,
    },
}

/// Parses one output URL; errors name the URL and the accepted forms.
pub fn parse_url(url: &str, config: &Config) -> Result<Target, ConfigError> {
    let bad = |why: &str| ConfigError::new(format!("output {url:?}: {why}; use {ACCEPTED_URLS}"));
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut params = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad(&format!("option {pair:?} is not KEY=VALUE")))?;
        params.push((key, value));
    }
    let (scheme, rest) = match base.split_once("://") {
        Some(split) => split,
        None if base == "stdout" => ("stdout", ""),
        None => return Err(bad("not a URL")),
    };
    match scheme {
        "stdout" => {
            if let Some((key, _)) = params.first() {
                return Err(bad(&format!("stdout takes no option {key:?}")));
            }
            Ok(Target::Stdout)
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err(bad("a file path must be absolute (file:///var/log/…)"));
            }
            let mut max_bytes = config.outbox.file_max_bytes;
            let mut keep = config.outbox.file_keep;
            for (key, value) in params {
                match key {
                    "max_bytes" => {
                        max_bytes =
                            number(value).ok_or_else(|| bad("max_bytes wants a byte count"))?
                    }
                    "keep" => {
                        keep = number(value)
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|&n| n > 0)
                            .ok_or_else(|| bad("keep wants a count of at least 1"))?
                    }
                    _ => return Err(bad(&format!("file takes no option {key:?}"))),
                }
            }
            let rotation = (max_bytes > 0).then_some(Rotation { max_bytes, keep });
            Ok(Target::File {
                path: PathBuf::from(rest),
                rotation,
            })
        }
        "syslog+relp" | "syslog+relp+tls" => {
            let mut format = Format::Rfc5424;
            let mut facility = 3; // daemon
            for (key, value) in params {
                if !record_option(key, value, &mut format, &mut facility).map_err(&bad)? {
                    return Err(bad(&format!("syslog+relp takes no option {key:?}")));
                }
            }
            let (host, port) = host_port(rest, relp::DEFAULT_PORT)
                .ok_or_else(|| bad("expected HOST or HOST:PORT"))?;
            let tls = if scheme == "syslog+relp+tls" {
                let server_name = tls_server_name(host).map_err(&bad)?;
                Some((server_name, tls::client_config(&config.tls)?))
            } else {
                None
            };
            Ok(Target::Relp {
                endpoint: RelpEndpoint {
                    addr: socket_addr(host, port),
                    tls,
                },
                formatter: Formatter::new(format, facility, true),
            })
        }
        "syslog+unix" | "syslog+udp" | "syslog+tcp" | "syslog+tls" => {
            let is_unix = scheme == "syslog+unix";
            let mut format = if is_unix {
                Format::Rfc3164
            } else {
                Format::Rfc5424
            };
            let mut framing = Framing::OctetCounting;
            let mut facility = 3; // daemon
            for (key, value) in params {
                if record_option(key, value, &mut format, &mut facility).map_err(&bad)? {
                    continue;
                }
                match key {
                    "framing" => {
                        framing = match value {
                            "octet" | "octet-counting" => Framing::OctetCounting,
                            "newline" | "lf" => Framing::Newline,
                            _ => return Err(bad("framing is octet or newline")),
                        }
                    }
                    _ => return Err(bad(&format!("syslog takes no option {key:?}"))),
                }
            }
            let endpoint = if is_unix {
                if !rest.starts_with('/') {
                    return Err(bad(
                        "a socket path must be absolute (syslog+unix:///dev/log)",
                    ));
                }
                Endpoint::Unix(PathBuf::from(rest))
            } else {
                let default_port = if scheme == "syslog+tls" { 6514 } else { 514 };
                let (host, port) = host_port(rest, default_port)
                    .ok_or_else(|| bad("expected HOST or HOST:PORT"))?;
                let addr = socket_addr(host, port);
                match scheme {
                    "syslog+udp" => Endpoint::Udp(addr),
                    "syslog+tcp" => Endpoint::Tcp(addr),
                    _ => {
                        let server_name = tls_server_name(host).map_err(&bad)?;
                        Endpoint::Tls {
                            addr,
                            server_name,
                            config: tls::client_config(&config.tls)?,
                        }
                    }
                }
            };
            let formatter = Formatter::new(format, facility, !is_unix);
            Ok(Target::Syslog {
                endpoint,
                framing,
                formatter,
            })
        }
        _ => Err(bad(&format!("unknown scheme {scheme:?}"))),
    }
}

/// The options every syslog-framed output takes (`format`, `facility`):
/// `Ok(true)` when `key` is one of them and was applied, `Ok(false)` when
/// it is not, the reason when its value is bad.
fn record_option(
    key: &str,
    value: &str,
    format: &mut Format,
    facility: &mut u8,
) -> Result<bool, &'static str> {
    match key {
        "format" => {
            *format = Format::from_name(value).ok_or("format is rfc5424, rfc3164 or json")?
        }
        "facility" => *facility = facility_code(value).ok_or(FACILITIES)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// The name a TLS receiver's certificate must carry.
fn tls_server_name(host: &str) -> Result<ServerName<'static>, &'static str> {
    ServerName::try_from(host.to_string()).map_err(|_| "the host is not a valid TLS server name")
}

const FACILITIES: &str = "facility is kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp or local0..local7";

/// `HOST:PORT`, with brackets around an IPv6 address.
fn socket_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn number(value: &str) -> Option<u64> {
    value.parse().ok()
}

fn host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
        None => default_port,
    };
    Some((host, port))
}

fn facility_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 12] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp",
    ];
    if let Some(i) = NAMES.iter().position(|&n| n == name) {
        return Some(i as u8);
    }
    let n: u8 = name.strip_prefix("local")?.parse().ok()?;
    (n <= 7).then_some(16 + n)
}

/// Outputs when neither `--output` nor the configuration names any: stdout,
/// and the local syslog socket when there is one.
pub fn default_outputs() -> Vec<String> {
    let mut outputs = vec!["stdout".to_string()];
    if std::path::Path::new("/dev/log").exists() {
        outputs.push("syslog+unix:///dev/log".to_string());
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target, ConfigError> {
        parse_url(url, &Config::default())
    }

    #[test]
    fn accepts_design_urls() {
        assert!(matches!(parse("stdout"), Ok(Target::Stdout)));
        match parse("file:///var/log/dockwatch/alerts.jsonl?max_bytes=1000&keep=3").unwrap() {
            Target::File { path, rotation } => {
                assert_eq!(path, PathBuf::from("/var/log/dockwatch/alerts.jsonl"));
                assert_eq!(
                    rotation,
                    Some(Rotation {
                        max_bytes: 1000,
                        keep: 3
                    })
                );
            }
            other => panic!("{other:?}"),
        }
        match parse("syslog+tcp://127.0.0.1:1514?framing=newline&facility=local3").unwrap() {
            Target::Syslog {
                endpoint: Endpoint::Tcp(addr),
                framing,
                formatter,
            } => {
                assert_eq!(addr, "127.0.0.1:1514");
                assert_eq!(framing, Framing::Newline);
                assert_eq!(formatter.facility, 19);
                assert_eq!(formatter.format, Format::Rfc5424);
            }
            other => panic!("{other:?}"),
        }
        match parse("syslog+udp://[::1]").unwrap() {
            Target::Syslog {
                endpoint: Endpoint::Udp(addr),
                ..
            } => assert_eq!(addr, "[::1]:514"),
            other => panic!("{other:?}"),
        }
        match parse("syslog+unix:///dev/log").unwrap() {
            Target::Syslog {
                endpoint: Endpoint::Unix(p),
                formatter,
                ..
            } => {
                assert_eq!(p, PathBuf::from("/dev/log"));
                assert_eq!(formatter.format, Format::Rfc3164);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn relp_urls_default_to_port_2514_and_rfc5424() {
        match parse("syslog+relp://collector.example").unwrap() {
            Target::Relp {
                endpoint,
                formatter,
            } => {
                assert_eq!(endpoint.addr, "collector.example:2514");
                assert!(endpoint.tls.is_none());
                assert_eq!(formatter.format, Format::Rfc5424);
            }
            other => panic!("{other:?}"),
        }
        match parse("syslog+relp://[::1]:20514?facility=local0").unwrap() {
            Target::Relp {
                endpoint,
                formatter,
            } => {
                assert_eq!(endpoint.addr, "[::1]:20514");
                assert_eq!(formatter.facility, 16);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_url_and_the_accepted_forms() {
        for url in [
            "syslog://x",
            "file://relative",
            "syslog+tcp://host:port",
            "syslog+tcp://:514",
            "syslog+udp://h?format=xml",
            "syslog+relp://h?framing=octet",
            "syslog+relp://h:0",
            "stdout?x=1",
            "/var/log/x",
        ] {
            let err = parse(url).unwrap_err().to_string();
            assert!(err.contains(&format!("{url:?}")), "{err}");
            assert!(err.contains("syslog+tcp://HOST[:PORT]"), "{err}");
        }
    }
}
