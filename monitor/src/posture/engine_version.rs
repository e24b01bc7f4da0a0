//! "Ensure that the version of Docker is up to date" (CIS 1.2.2): the
//! version the running engine reports on its API socket, against
//! `posture.min_engine_version`.
//!
//! The engine is asked, not its binary run: a monitor that executes
//! `dockerd --version` as root runs whatever an attacker put at that path,
//! and the binary on disk may not be the one running after an upgrade.
//! CIS names no number: the default minimum is
//! [`EngineVersion::DEFAULT_MINIMUM`], and a fleet sets its own (checked
//! when the configuration is read, so a bad one is reported at its line). Only the
//! live host's engine is asked; a baseline read under another `root` (an
//! image mounted elsewhere) has no engine of its own to ask.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::daemon_checks::check;
use super::finding::{Check, Finding, Status};
use super::host::HostPaths;
use super::PostureConfig;
use crate::alert::Severity;

check!(
    ENGINE_VERSION,
    "1.2.2",
    true,
    Warn,
    Warning,
    "Ensure that the version of Docker is up to date"
);

/// A Docker engine version as its numbers, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct EngineVersion(u32, u32, u32);

impl EngineVersion {
    /// `posture.min_engine_version` when the configuration does not say:
    /// the 28 line (2025).
    pub const DEFAULT_MINIMUM: EngineVersion = EngineVersion(28, 0, 0);

    /// The numbers of a version, whatever follows them (`+dfsg1`, `-ce`,
    /// `-rc.1`); a missing minor or patch is 0.
    pub fn parse(version: &str) -> Option<EngineVersion> {
        let core = version
            .trim()
            .trim_start_matches('v')
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?;
        let mut parts = core.split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(EngineVersion(major, minor, patch))
    }
}

impl TryFrom<String> for EngineVersion {
    type Error = String;

    fn try_from(text: String) -> Result<EngineVersion, String> {
        EngineVersion::parse(&text)
            .ok_or_else(|| format!("{text:?} is not an engine version like \"28.0.0\""))
    }
}

impl fmt::Display for EngineVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// How long the engine may take to answer; posture's thread waits this
/// long at most when the engine hangs.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

pub fn evaluate(host: &HostPaths, config: &PostureConfig, out: &mut Vec<Finding>) {
    let key = "engine version";
    let socket = config.docker_socket.display().to_string();
    if !host.is_live() {
        out.push(
            ENGINE_VERSION
                .info(
                    key,
                    Value::Null,
                    "not asked: posture.root is not / (no engine runs in an image)",
                )
                .undetermined(),
        );
        return;
    }
    let finding = match ask_version(&socket) {
        Err(why) => ENGINE_VERSION
            .finding(
                Status::Info,
                key,
                Value::Null,
                format!("the engine does not answer on {socket} ({why}); its version is unknown"),
            )
            .undetermined(),
        Ok(version) => match EngineVersion::parse(&version) {
            None => ENGINE_VERSION.unmet(
                key,
                json!(version),
                format!("the engine reports version {version:?}, which cannot be compared"),
            ),
            Some(running) => {
                let minimum = config.min_engine_version;
                ENGINE_VERSION.verdict(
                    running >= minimum,
                    key,
                    json!(version),
                    if running >= minimum {
                        format!("engine {version} (posture.min_engine_version {minimum})")
                    } else {
                        format!(
                            "engine {version} is older than posture.min_engine_version \
                             {minimum}; upgrade it"
                        )
                    },
                )
            }
        },
    };
    out.push(finding.at(&config.docker_socket));
}

/// The engine's `Version` (`20.10.24+dfsg1`, `28.5.1`) from `GET /version`.
/// On a thread of its own with its own small runtime: posture's checks are
/// blocking code, called from posture's thread, from `dockwatch check`, and
/// at start from inside the daemon's runtime, where no runtime may block.
fn ask_version(socket: &str) -> Result<String, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| ask_version_here(socket))
            .join()
            .unwrap_or_else(|_| Err("the request thread panicked".to_string()))
    })
}

fn ask_version_here(socket: &str) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let answer = tokio::time::timeout(ANSWER_WITHIN, async {
            let docker = crate::source::docker::connect(socket)
                .await
                .map_err(|e| e.to_string())?;
            docker.version().await.map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))??;
        answer
            .version
            .ok_or_else(|| "its /version has no Version".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_their_numbers_whatever_follows() {
        let parse = EngineVersion::parse;
        assert_eq!(parse("20.10.24+dfsg1"), Some(EngineVersion(20, 10, 24)));
        assert_eq!(parse("28.5.1"), Some(EngineVersion(28, 5, 1)));
        assert_eq!(parse("v27.0"), Some(EngineVersion(27, 0, 0)));
        assert_eq!(parse("18.09.1-ce"), Some(EngineVersion(18, 9, 1)));
        assert!(parse("20.10.24").unwrap() < parse("25.0.0").unwrap());
        assert_eq!(parse("dev"), None);
        assert_eq!(parse(""), None);
        assert_eq!(EngineVersion::DEFAULT_MINIMUM.to_string(), "28.0.0");
    }

    #[test]
    fn an_engine_that_does_not_answer_is_unknown_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let config = PostureConfig {
            docker_socket: dir.path().join("docker.sock"),
            ..PostureConfig::default()
        };
        let mut out = Vec::new();
        evaluate(&HostPaths::new(&config), &config, &mut out);
        assert_eq!(out[0].status, Status::Info, "{:?}", out[0]);
        assert!(
            out[0].evidence.contains("does not answer"),
            "{}",
            out[0].evidence
        );
    }
}
