//! What a check concludes: a verdict, the observed value (what drift alerts
//! compare), and the evidence a person needs to act on it.

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use crate::alert::Severity;

/// A check's verdict, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Pass,
    /// Not applicable here (the file does not exist, nothing listens on TCP).
    Info,
    /// A hardening recommendation not followed.
    Warn,
    /// A setting that grants access or privilege it should not.
    Fail,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Info => "INFO",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of the baseline, as the catalogue defines it.
#[derive(Debug)]
pub struct Check {
    /// CIS Docker Benchmark v1.6.0 id (`2.2`), or dockwatch's own id.
    pub id: &'static str,
    pub title: &'static str,
    /// Whether `id` is a CIS id (it then becomes a `cis:ID` tag).
    pub cis: bool,
    /// The verdict when the check is not met: `Fail` or `Warn`.
    pub unmet: Status,
    /// Alert severity when the check is not met.
    pub severity: Severity,
}

impl Check {
    /// The stable rule id alerts carry: `posture-cis-2.2`, `posture-daemon-json`.
    pub fn rule_id(&self) -> String {
        if self.cis {
            format!("posture-cis-{}", self.id)
        } else {
            format!("posture-{}", self.id)
        }
    }

    pub fn tags(&self) -> Vec<String> {
        if self.cis {
            vec![format!("cis:{}", self.id)]
        } else {
            Vec::new()
        }
    }

    pub fn pass(
        &'static self,
        key: impl Into<String>,
        value: Value,
        evidence: impl Into<String>,
    ) -> Finding {
        self.finding(Status::Pass, key, value, evidence)
    }

    pub fn unmet(
        &'static self,
        key: impl Into<String>,
        value: Value,
        evidence: impl Into<String>,
    ) -> Finding {
        self.finding(self.unmet, key, value, evidence)
    }

    pub fn info(
        &'static self,
        key: impl Into<String>,
        value: Value,
        evidence: impl Into<String>,
    ) -> Finding {
        self.finding(Status::Info, key, value, evidence)
    }

    /// `pass` when `ok`, else the check's unmet verdict.
    pub fn verdict(
        &'static self,
        ok: bool,
        key: impl Into<String>,
        value: Value,
        evidence: impl Into<String>,
    ) -> Finding {
        let status = if ok { Status::Pass } else { self.unmet };
        self.finding(status, key, value, evidence)
    }

    pub fn finding(
        &'static self,
        status: Status,
        key: impl Into<String>,
        value: Value,
        evidence: impl Into<String>,
    ) -> Finding {
        Finding {
            check: self,
            key: key.into(),
            status,
            value,
            evidence: evidence.into(),
            path: None,
            undetermined: false,
        }
    }
}

/// A check's result for one key (a setting, a file, a container).
#[derive(Debug, Clone)]
pub struct Finding {
    pub check: &'static Check,
    /// What was looked at: `icc`, `/run/docker.sock mode`, `web: privileged`.
    /// Unique per check; drift compares findings with the same check and key.
    pub key: String,
    pub status: Status,
    /// The observed value (`false`, `"0666"`, `["alice"]`), `null` when unset.
    pub value: Value,
    pub evidence: String,
    /// The file the finding is about, when there is one.
    pub path: Option<PathBuf>,
    /// The verdict could not be reached because an input is unusable (a
    /// broken daemon.json, auditctl failing). That input has a finding of
    /// its own; drift keeps the last known value instead of reporting
    /// every dependent check as changed.
    pub undetermined: bool,
}

impl Finding {
    /// Marks the finding as [`Finding::undetermined`].
    pub fn undetermined(mut self) -> Finding {
        self.undetermined = true;
        self
    }

    pub fn at(mut self, path: impl Into<PathBuf>) -> Finding {
        self.path = Some(path.into());
        self
    }
}

/// Sorts findings by check id as the benchmark numbers them (`3.9` before
/// `3.10`), dockwatch's own ids first; stable, so keys keep their order.
pub fn sort_by_id(findings: &mut [Finding]) {
    findings.sort_by_key(|f| {
        f.check
            .id
            .split('.')
            .map(|part| part.parse::<u32>().ok())
            .collect::<Option<Vec<u32>>>()
            .unwrap_or_default()
    });
}
