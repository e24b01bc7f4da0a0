//! `dockwatch status` and `dockwatch reload`: the CLI end of the control
//! socket.
//!
//! Exit codes: 0 answered (reload applied); [`EXIT_NOT_RUNNING`] (1) when no
//! daemon answers on the socket; [`EXIT_REFUSED`] (2) when the daemon
//! refused (a broken rule or configuration file on reload, a peer that is
//! not root).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::socket::{ask, AskError};
use super::{Request, Response};

/// No daemon answers on the control socket.
pub const EXIT_NOT_RUNNING: u8 = 1;
/// The daemon answered with a refusal.
pub const EXIT_REFUSED: u8 = 2;

/// How long a status may take: the event loop answers between two events.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// A reload also re-resolves every watch path.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

fn call(socket: &Path, request: Request, timeout: Duration) -> Result<Response, u8> {
    match ask(socket, request, timeout) {
        Ok(response) => Ok(response),
        Err(AskError::Connect(e)) => {
            eprintln!(
                "dockwatch: no dockwatch is running: cannot connect to {}: {e}",
                socket.display()
            );
            Err(EXIT_NOT_RUNNING)
        }
        Err(AskError::Exchange(e)) => {
            eprintln!(
                "dockwatch: the daemon on {} did not answer: {e:#}",
                socket.display()
            );
            Err(EXIT_NOT_RUNNING)
        }
    }
}

/// `dockwatch status [--json]`; returns the exit code.
pub fn status_command(socket: &Path, json: bool) -> anyhow::Result<u8> {
    let response = match call(socket, Request::Status, STATUS_TIMEOUT) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let status = match (response.status, response.error) {
        (Some(status), _) => status,
        (None, error) => {
            eprintln!(
                "dockwatch: {}",
                error.as_deref().unwrap_or("the daemon sent no status")
            );
            return Ok(EXIT_REFUSED);
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
    } else {
        out.write_all(status.table().as_bytes())?;
    }
    Ok(0)
}

/// `dockwatch reload`; returns the exit code.
pub fn reload_command(socket: &Path) -> anyhow::Result<u8> {
    let response = match call(socket, Request::Reload, RELOAD_TIMEOUT) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    match (response.reload, response.error) {
        (Some(report), _) => {
            let mut out = std::io::stdout().lock();
            write!(
                out,
                "reloaded: {} rules from {}",
                report.rules, report.rules_dir
            )?;
            if let Some(inodes) = report.watched_inodes {
                write!(out, ", {inodes} inodes watched")?;
            }
            writeln!(out)?;
            for key in &report.needs_restart {
                writeln!(out, "not applied: {key} changed and needs a restart")?;
            }
            Ok(0)
        }
        (None, error) => {
            eprintln!(
                "dockwatch: reload refused, the old configuration and rules keep running: {}",
                error.as_deref().unwrap_or("no reason given")
            );
            Ok(EXIT_REFUSED)
        }
    }
}
