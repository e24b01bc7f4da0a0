//! `dockwatch check`'s output: a table in the manner of
//! docker-bench-security, or one JSON document for machines.

use std::io::Write;

use serde_json::{json, Value};

use super::finding::{Finding, Status};

/// Counts per verdict.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub pass: usize,
    pub info: usize,
    pub warn: usize,
    pub fail: usize,
}

impl Summary {
    pub fn of(findings: &[Finding]) -> Summary {
        let mut s = Summary::default();
        for f in findings {
            match f.status {
                Status::Pass => s.pass += 1,
                Status::Info => s.info += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
            }
        }
        s
    }
}

/// One line per finding, the evidence indented below it.
pub fn write_table(out: &mut dyn Write, findings: &[Finding]) -> std::io::Result<()> {
    let id_width = findings.iter().map(|f| f.check.id.len()).max().unwrap_or(0);
    for f in findings {
        writeln!(
            out,
            "[{}] {:<id_width$}  {}",
            f.status.label(),
            f.check.id,
            f.check.title
        )?;
        let evidence = f.evidence.replace(['\n', '\r'], " ");
        writeln!(out, "       {:<id_width$}  * {}: {}", "", f.key, evidence)?;
    }
    let s = Summary::of(findings);
    writeln!(
        out,
        "\n{} checks: {} pass, {} warn, {} fail, {} info",
        findings.len(),
        s.pass,
        s.warn,
        s.fail,
        s.info
    )
}

pub fn to_json(findings: &[Finding]) -> Value {
    let s = Summary::of(findings);
    let checks: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut v = json!({
                "id": f.check.id,
                "rule": f.check.rule_id(),
                "title": f.check.title,
                "status": f.status.as_str(),
                "key": f.key,
                "value": f.value,
                "evidence": f.evidence,
                "tags": f.check.tags(),
            });
            if let Some(path) = &f.path {
                v["path"] = json!(path.to_string_lossy());
            }
            v
        })
        .collect();
    json!({
        "checks": checks,
        "summary": {"total": findings.len(), "pass": s.pass, "warn": s.warn, "fail": s.fail, "info": s.info},
    })
}
