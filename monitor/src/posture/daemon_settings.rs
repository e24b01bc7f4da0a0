//! The Docker daemon's effective settings, from every place an operator can
//! put them: `/etc/docker/daemon.json`, the `ExecStart=` of docker.service
//! (and its drop-ins), and `DOCKER_OPTS`/`OPTIONS` in /etc/default/docker and
//! /etc/sysconfig/docker. Each setting remembers where it came from, so the
//! evidence can say which file to edit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::host::HostPaths;

/// Where a setting was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub value: Value,
    pub origin: String,
}

/// A configuration file that could not be used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: PathBuf,
    pub reason: String,
    /// The file exists but is not valid JSON (as opposed to unreadable).
    pub invalid_json: bool,
}

/// Settings by daemon.json name (`icc`, `hosts`, `insecure-registries`).
#[derive(Debug, Clone, Default)]
pub struct DaemonSettings {
    values: BTreeMap<String, Setting>,
    /// Files that exist but could not be read or parsed.
    pub problems: Vec<Problem>,
    /// daemon.json's state: `None` missing, `Some(true)` parsed.
    pub daemon_json_parsed: Option<bool>,
}

/// Settings that are lists: flags repeat, daemon.json holds arrays.
const LIST_SETTINGS: &[&str] = &["hosts", "authorization-plugins", "insecure-registries"];

impl DaemonSettings {
    /// Reads every source under `host`. Never fails: what cannot be read is
    /// recorded in [`DaemonSettings::problems`].
    pub fn read(host: &HostPaths) -> DaemonSettings {
        let mut settings = DaemonSettings::default();
        settings.read_daemon_json(&host.daemon_json());
        for (path, what) in unit_files(host) {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    if let Some(line) = exec_start(&text) {
                        let origin = format!("{} ({what})", path.display());
                        settings.apply_flags(&split_words(&line), &origin);
                    }
                }
                Err(e) => settings.unreadable(&path, e),
            }
        }
        for (path, vars) in [
            (host.default_docker(), &["DOCKER_OPTS"][..]),
            (host.sysconfig_docker(), &["OPTIONS", "DOCKER_OPTS"][..]),
        ] {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for (name, value) in env_assignments(&text) {
                        if vars.contains(&name.as_str()) {
                            let origin = format!("{} ({name})", path.display());
                            settings.apply_flags(&split_words(&value), &origin);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => settings.unreadable(&path, e),
            }
        }
        settings
    }

    fn unreadable(&mut self, path: &Path, e: std::io::Error) {
        self.problems.push(Problem {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
            invalid_json: false,
        });
    }

    fn read_daemon_json(&mut self, path: &Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.daemon_json_parsed = Some(false);
                return self.unreadable(path, e);
            }
        };
        let origin = path.display().to_string();
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => {
                self.daemon_json_parsed = Some(true);
                for (key, value) in map {
                    self.set(&key, value, &origin);
                }
            }
            Ok(other) => {
                self.daemon_json_parsed = Some(false);
                self.problems.push(Problem {
                    path: path.to_path_buf(),
                    reason: format!("not a JSON object but {}", json_kind(&other)),
                    invalid_json: true,
                });
            }
            Err(e) => {
                self.daemon_json_parsed = Some(false);
                self.problems.push(Problem {
                    path: path.to_path_buf(),
                    reason: format!(
                        "invalid JSON at line {} column {}: {e}",
                        e.line(),
                        e.column()
                    ),
                    invalid_json: true,
                });
            }
        }
    }

    fn set(&mut self, key: &str, value: Value, origin: &str) {
        if LIST_SETTINGS.contains(&key) {
            let items = match value {
                Value::Array(items) => items,
                other => vec![other],
            };
            let entry = self
                .values
                .entry(key.to_string())
                .or_insert_with(|| Setting {
                    value: Value::Array(Vec::new()),
                    origin: origin.to_string(),
                });
            if !entry.origin.split(", ").any(|o| o == origin) {
                entry.origin = format!("{}, {origin}", entry.origin);
            }
            if let Value::Array(list) = &mut entry.value {
                list.extend(items);
            }
        } else {
            self.values.insert(
                key.to_string(),
                Setting {
                    value,
                    origin: origin.to_string(),
                },
            );
        }
    }

    /// Applies dockerd command-line flags (already split into words).
    fn apply_flags(&mut self, words: &[String], origin: &str) {
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            i += 1;
            let (flag, inline) = match word.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (word.as_str(), None),
            };
            if let Some(&(_, key)) = BOOL_FLAGS.iter().find(|(f, _)| *f == flag) {
                let on = inline.as_deref().is_none_or(|v| v != "false" && v != "0");
                self.set(key, Value::Bool(on), origin);
            } else if let Some(&(_, key)) = VALUE_FLAGS.iter().find(|(f, _)| *f == flag) {
                let value = match inline {
                    Some(v) => v,
                    None if i < words.len() => {
                        i += 1;
                        words[i - 1].clone()
                    }
                    None => continue,
                };
                self.set(key, Value::String(value), origin);
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.values.get(key)
    }

    /// A boolean setting, `None` when unset or not a boolean.
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|s| s.value.as_bool())
    }

    /// A string setting, `None` when unset or empty.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(|s| s.value.as_str())
            .filter(|s| !s.is_empty())
    }

    /// A list setting's items as strings (empty when unset).
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.get(key).map(|s| &s.value) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `tcp://` entries of `hosts`.
    pub fn tcp_hosts(&self) -> Vec<String> {
        self.list("hosts")
            .into_iter()
            .filter(|h| h.starts_with("tcp://"))
            .collect()
    }

    /// Where `key` was set, for evidence: ` (in /etc/docker/daemon.json)`.
    pub fn origin(&self, key: &str) -> String {
        self.get(key)
            .map(|s| format!(" (in {})", s.origin))
            .unwrap_or_default()
    }
}

const BOOL_FLAGS: &[(&str, &str)] = &[
    ("--icc", "icc"),
    ("--live-restore", "live-restore"),
    ("--userland-proxy", "userland-proxy"),
    ("--no-new-privileges", "no-new-privileges"),
    ("--tls", "tls"),
    ("--tlsverify", "tlsverify"),
];

const VALUE_FLAGS: &[(&str, &str)] = &[
    ("--log-driver", "log-driver"),
    ("--userns-remap", "userns-remap"),
    ("--authorization-plugin", "authorization-plugins"),
    ("--insecure-registry", "insecure-registries"),
    ("-H", "hosts"),
    ("--host", "hosts"),
    ("--tlscacert", "tlscacert"),
    ("--tlscert", "tlscert"),
    ("--tlskey", "tlskey"),
];

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// docker.service and its drop-ins, in the order systemd applies them.
fn unit_files(host: &HostPaths) -> Vec<(PathBuf, &'static str)> {
    let mut files = Vec::new();
    if let Some(unit) = host.unit("docker.service") {
        files.push((unit, "ExecStart"));
    }
    let mut dropins: Vec<PathBuf> = host
        .unit_dropin_dirs("docker.service")
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    // systemd applies drop-ins in file-name order across directories.
    dropins.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    files.extend(dropins.into_iter().map(|p| (p, "drop-in ExecStart")));
    files
}

/// The command line of the last effective `ExecStart=` of a unit file
/// (an empty `ExecStart=` resets the list), continuation lines joined.
fn exec_start(unit: &str) -> Option<String> {
    let joined = unit.replace("\\\n", " ");
    let mut last = None;
    for line in joined.lines() {
        let line = line.trim();
        if let Some(value) = line.strip_prefix("ExecStart=") {
            let value = value.trim_start_matches(['-', '@', '+', '!', ':']).trim();
            last = if value.is_empty() {
                None
            } else {
                Some(value.to_string())
            };
        }
    }
    last
}

/// `NAME=value` lines of a shell environment file, quotes removed.
fn env_assignments(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (name, value) = l.split_once('=')?;
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            Some((name.to_string(), split_words(value).join(" ")))
        })
        .collect()
}

/// Splits a command line into words the way a POSIX shell would for simple
/// input: whitespace separates, quotes group, backslash escapes.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_set_the_same_settings_as_daemon_json() {
        let mut s = DaemonSettings::default();
        let words = split_words(
            "/usr/bin/dockerd -H fd:// -H=tcp://0.0.0.0:2376 --icc=false --live-restore \
             --log-driver syslog --insecure-registry 'r.example:5000' --tlsverify=false",
        );
        s.apply_flags(&words, "unit");
        assert_eq!(s.flag("icc"), Some(false));
        assert_eq!(s.flag("live-restore"), Some(true));
        assert_eq!(s.flag("tlsverify"), Some(false));
        assert_eq!(s.text("log-driver"), Some("syslog"));
        assert_eq!(s.list("insecure-registries"), ["r.example:5000"]);
        assert_eq!(s.tcp_hosts(), ["tcp://0.0.0.0:2376"]);
    }

    #[test]
    fn last_exec_start_wins_and_empty_resets() {
        let unit = "[Service]\nExecStart=/usr/bin/dockerd --icc=false \\\n  --live-restore\n";
        assert_eq!(
            split_words(&exec_start(unit).unwrap()),
            ["/usr/bin/dockerd", "--icc=false", "--live-restore"]
        );
        assert_eq!(exec_start("ExecStart=/a\nExecStart=\n"), None);
    }

    #[test]
    fn env_files_lose_their_quotes() {
        let vars = env_assignments("# c\nDOCKER_OPTS=\"--icc=false -H tcp://1.2.3.4:2375\"\n");
        assert_eq!(
            vars,
            [(
                "DOCKER_OPTS".to_string(),
                "--icc=false -H tcp://1.2.3.4:2375".to_string()
            )]
        );
    }
}
