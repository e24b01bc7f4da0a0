//! CIS section 2: the Docker daemon's configuration, judged from the
//! effective settings of [`DaemonSettings`].

use serde_json::{json, Value};

use super::daemon_settings::DaemonSettings;
use super::finding::{Check, Finding, Status};
use crate::alert::Severity;

macro_rules! check {
    ($name:ident, $id:literal, $cis:literal, $unmet:ident, $sev:ident, $title:literal) => {
        pub static $name: Check = Check {
            id: $id,
            title: $title,
            cis: $cis,
            unmet: Status::$unmet,
            severity: Severity::$sev,
        };
    };
}
pub(crate) use check;

check!(
    DAEMON_JSON,
    "daemon-json",
    false,
    Fail,
    Error,
    "Ensure the Docker daemon's configuration files can be read and parsed"
);
check!(
    ICC,
    "2.2",
    true,
    Warn,
    Warning,
    "Ensure network traffic is restricted between containers on the default bridge"
);
check!(
    INSECURE_REGISTRIES,
    "2.5",
    true,
    Fail,
    Error,
    "Ensure insecure registries are not used"
);
check!(
    TLS,
    "2.7",
    true,
    Fail,
    Critical,
    "Ensure TLS authentication for Docker daemon is configured"
);
check!(
    USERNS,
    "2.9",
    true,
    Warn,
    Notice,
    "Enable user namespace support"
);
check!(
    AUTHZ,
    "2.12",
    true,
    Fail,
    Error,
    "Ensure that authorization for Docker client commands is enabled"
);
check!(
    LOG_DRIVER,
    "2.13",
    true,
    Warn,
    Notice,
    "Ensure centralized and remote logging is configured"
);
check!(
    NO_NEW_PRIVILEGES,
    "2.14",
    true,
    Warn,
    Warning,
    "Ensure containers are restricted from acquiring new privileges"
);
check!(
    LIVE_RESTORE,
    "2.15",
    true,
    Warn,
    Notice,
    "Ensure live restore is enabled"
);
check!(
    USERLAND_PROXY,
    "2.16",
    true,
    Warn,
    Notice,
    "Ensure Userland Proxy is Disabled"
);

/// Every section-2 finding for `settings`.
pub fn evaluate(settings: &DaemonSettings, out: &mut Vec<Finding>) {
    let start = out.len();
    judge(settings, out);
    super::finding::sort_by_id(&mut out[start..]);
}

fn judge(settings: &DaemonSettings, out: &mut Vec<Finding>) {
    let daemon_json_problem = settings
        .problems
        .iter()
        .find(|p| p.path.ends_with("daemon.json"));
    if settings.problems.is_empty() {
        out.push(DAEMON_JSON.pass(
            "configuration files",
            json!("ok"),
            "every configuration file present could be read and parsed",
        ));
    }
    for problem in &settings.problems {
        let value = if problem.invalid_json {
            "invalid JSON"
        } else {
            "unreadable"
        };
        out.push(
            DAEMON_JSON
                .unmet(
                    format!("{}", problem.path.display()),
                    json!(value),
                    format!("{}: {}", problem.path.display(), problem.reason),
                )
                .at(&problem.path),
        );
    }
    // Without daemon.json's contents, its settings are unknown: say so
    // instead of judging Docker's defaults.
    if let Some(problem) = daemon_json_problem {
        let why = format!(
            "cannot tell: {} could not be used ({})",
            problem.path.display(),
            problem.reason
        );
        for check in [
            &ICC,
            &INSECURE_REGISTRIES,
            &TLS,
            &USERNS,
            &AUTHZ,
            &LOG_DRIVER,
            &NO_NEW_PRIVILEGES,
            &LIVE_RESTORE,
            &USERLAND_PROXY,
        ] {
            out.push(
                check
                    .info(key_of(check), Value::Null, why.clone())
                    .undetermined(),
            );
        }
        return;
    }

    let icc = settings.flag("icc");
    out.push(match icc {
        Some(false) => ICC.pass("icc", json!(false), format!("icc is false{}", settings.origin("icc"))),
        Some(true) => ICC.unmet("icc", json!(true), format!("icc is true{}", settings.origin("icc"))),
        None => ICC.unmet("icc", Value::Null, "icc is not set; Docker's default lets containers on the default bridge talk to each other"),
    });

    let registries = settings.list("insecure-registries");
    out.push(INSECURE_REGISTRIES.verdict(
        registries.is_empty(),
        "insecure-registries",
        json!(registries),
        if registries.is_empty() {
            "no insecure registry configured".to_string()
        } else {
            format!(
                "insecure registries {}{}",
                registries.join(", "),
                settings.origin("insecure-registries")
            )
        },
    ));

    let tcp = settings.tcp_hosts();
    if tcp.is_empty() {
        out.push(TLS.pass("tls", Value::Null, "the daemon does not listen on TCP"));
    } else {
        let mut missing = Vec::new();
        if settings.flag("tlsverify") != Some(true) {
            missing.push("tlsverify");
        }
        for key in ["tlscacert", "tlscert", "tlskey"] {
            if settings.text(key).is_none() {
                missing.push(key);
            }
        }
        out.push(TLS.verdict(
            missing.is_empty(),
            "tls",
            json!(missing),
            if missing.is_empty() {
                format!("{} with tlsverify and certificates", tcp.join(", "))
            } else {
                format!(
                    "listens on {}{} without {}",
                    tcp.join(", "),
                    settings.origin("hosts"),
                    missing.join(", ")
                )
            },
        ));
    }

    let plugins = settings.list("authorization-plugins");
    out.push(if tcp.is_empty() {
        AUTHZ.pass(
            "authorization-plugins",
            json!(plugins),
            "the daemon does not listen on TCP",
        )
    } else if plugins.is_empty() {
        AUTHZ.unmet(
            "authorization-plugins",
            json!(plugins),
            format!(
                "listens on {} without an authorization plugin",
                tcp.join(", ")
            ),
        )
    } else {
        AUTHZ.pass(
            "authorization-plugins",
            json!(plugins),
            format!(
                "authorization plugins {}{}",
                plugins.join(", "),
                settings.origin("authorization-plugins")
            ),
        )
    });

    out.push(text_setting(settings, &USERNS, "userns-remap"));
    out.push(text_setting(settings, &LOG_DRIVER, "log-driver"));
    out.push(bool_setting(
        settings,
        &NO_NEW_PRIVILEGES,
        "no-new-privileges",
        true,
        false,
    ));
    out.push(bool_setting(
        settings,
        &LIVE_RESTORE,
        "live-restore",
        true,
        false,
    ));
    out.push(bool_setting(
        settings,
        &USERLAND_PROXY,
        "userland-proxy",
        false,
        true,
    ));
}

fn key_of(check: &Check) -> &'static str {
    match check.id {
        "2.2" => "icc",
        "2.5" => "insecure-registries",
        "2.7" => "tls",
        "2.9" => "userns-remap",
        "2.12" => "authorization-plugins",
        "2.13" => "log-driver",
        "2.14" => "no-new-privileges",
        "2.15" => "live-restore",
        "2.16" => "userland-proxy",
        _ => check.id,
    }
}

/// A setting that must hold a non-empty string.
fn text_setting(settings: &DaemonSettings, check: &'static Check, key: &str) -> Finding {
    match settings.text(key) {
        Some(v) => check.pass(
            key,
            json!(v),
            format!("{key} is {v:?}{}", settings.origin(key)),
        ),
        None => check.unmet(key, Value::Null, format!("{key} is not set")),
    }
}

/// A boolean setting that must be `want`; Docker's default is `default`.
fn bool_setting(
    settings: &DaemonSettings,
    check: &'static Check,
    key: &str,
    want: bool,
    default: bool,
) -> Finding {
    match settings.flag(key) {
        Some(v) => check.verdict(
            v == want,
            key,
            json!(v),
            format!("{key} is {v}{}", settings.origin(key)),
        ),
        None => check.verdict(
            default == want,
            key,
            Value::Null,
            format!("{key} is not set (Docker's default is {default})"),
        ),
    }
}
