//! The Docker engine as a source: its event stream on docker.sock, turned
//! into [`Event`]s (`container_create`, `container_exec`, `container_cp`,
//! `plugin_disable`, `image_load`, ...) with the container they are about.
//!
//! Files and syscalls show that dockerd wrote a `hostconfig.json`; only the
//! engine says that a container was created, with which configuration, or
//! that someone ran `docker exec` or `docker cp` into one. This source asks
//! the engine for what its events leave out (a new container's inspect, an
//! exec's user and privilege) and keeps a name and image cache so that every
//! event names its container (read from the containers' `config.v2.json`
//! until the engine first answers). It judges nothing: posture decides whether a
//! new container's configuration is risky, and rules whether an exec is.
//!
//! The engine comes and goes (upgrades, restarts, not yet started at boot):
//! the source waits for it, saying so once, and resumes the stream with
//! `since=` the time of the last event it passed on, so an event the engine
//! still holds is neither lost nor passed on twice. Events the engine made
//! while no stream was open and then forgot in its own restart cannot be
//! asked for again; the engine keeps them only in memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use bollard::Docker;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::event::{Action, Container, Detail, EngineDetail, Event, ExecInfo, Outcome, Source};
use crate::source::EventSender;

/// The `[sources.docker]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    pub enabled: bool,
    /// The engine's API socket.
    pub socket: PathBuf,
    /// The engine's `data-root`: containers are named from their
    /// `config.v2.json` there while the engine does not answer.
    pub data_root: PathBuf,
}

impl Default for DockerConfig {
    fn default() -> DockerConfig {
        DockerConfig {
            enabled: true,
            socket: PathBuf::from("/var/run/docker.sock"),
            data_root: PathBuf::from("/var/lib/docker"),
        }
    }
}

/// Seconds a request other than the event stream may take (inspect, ping).
const REQUEST_TIMEOUT: u64 = 10;
/// Retry delays while the engine is away: quick at first, as after a
/// restart it is back within a second or two.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Follows the engine while alive; stops on drop.
pub struct DockerSource {
    task: tokio::task::JoinHandle<()>,
    names: ContainerNames,
}

/// The containers the engine knows, by id, kept current by the source:
/// what names the container of an event from a process inside one.
#[derive(Clone, Default)]
pub struct ContainerNames(Arc<RwLock<HashMap<String, Arc<Container>>>>);

impl ContainerNames {
    pub fn get(&self, id: &str) -> Option<Arc<Container>> {
        self.0.read().ok()?.get(id).cloned()
    }

    pub fn insert(&self, container: Arc<Container>) {
        if let Ok(mut containers) = self.0.write() {
            containers.insert(container.id.clone(), container);
        }
    }

    /// Names every container from its state file (`config.v2.json`), for
    /// the time until the engine answers; a container whose file cannot
    /// be read is left out, as it would be by the engine.
    pub fn read_state(&self, containers_dir: &std::path::Path) {
        #[derive(Deserialize)]
        struct State {
            #[serde(rename = "ID")]
            id: String,
            #[serde(rename = "Name", default)]
            name: String,
            #[serde(rename = "Config", default)]
            config: StateConfig,
        }
        #[derive(Deserialize, Default)]
        struct StateConfig {
            #[serde(rename = "Image", default)]
            image: Option<String>,
        }
        let Ok(dirs) = std::fs::read_dir(containers_dir) else {
            return;
        };
        for dir in dirs.flatten() {
            let Ok(text) = std::fs::read(dir.path().join("config.v2.json")) else {
                continue;
            };
            let Ok(state) = serde_json::from_slice::<State>(&text) else {
                continue;
            };
            let name = state.name.trim_start_matches('/').to_string();
            self.insert(Arc::new(Container {
                id: state.id,
                name: Some(name).filter(|n| !n.is_empty()),
                image: state.config.image,
            }));
        }
    }

    fn remove(&self, id: &str) {
        if let Ok(mut containers) = self.0.write() {
            containers.remove(id);
        }
    }
}

impl DockerSource {
    /// Starts following the engine at `config.socket`. Never fails: an
    /// engine that is not running yet is waited for.
    pub fn start(config: &DockerConfig, tx: EventSender) -> DockerSource {
        let socket = config.socket.clone();
        let names = ContainerNames::default();
        names.read_state(&config.data_root.join("containers"));
        let task = tokio::spawn(follow(socket, tx, names.clone()));
        DockerSource { task, names }
    }

    /// The source's container cache, for naming containers elsewhere.
    pub fn names(&self) -> ContainerNames {
        self.names.clone()
    }
}

impl Drop for DockerSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(socket: PathBuf, tx: EventSender, names: ContainerNames) {
    let sock_name = socket.display().to_string();
    // Events from the moment the daemon started count, even those the
    // engine makes before the stream is open.
    let mut resume = Resume::new(SystemTime::now());
    let mut cache = Cache { containers: names };
    let mut delay = BACKOFF_FIRST;
    let mut waiting = false;
    loop {
        let docker = match connect(&sock_name).await {
            Ok(docker) => docker,
            Err(e) => {
                if !waiting {
                    tracing::info!(
                        socket = sock_name.as_str(),
                        "docker engine not reachable ({e}); waiting for it"
                    );
                    waiting = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        waiting = false;
        delay = BACKOFF_FIRST;
        cache.fill(&docker).await;
        let since = resume.since();
        let options = EventsOptions {
            since: Some(since.clone()),
            ..EventsOptions::default()
        };
        tracing::info!(
            socket = sock_name.as_str(),
            since = since.as_str(),
            "docker engine: following events"
        );
        let mut stream = docker.events(Some(options));
        let ended = loop {
            match stream.next().await {
                Some(Ok(message)) => {
                    if !resume.is_new(&message) {
                        continue;
                    }
                    if let Some(event) = translate(&docker, &mut cache, message).await {
                        if tx.send(event).await.is_err() {
                            return; // the daemon is stopping
                        }
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "closed by the engine".to_string(),
            }
        };
        tracing::info!(
            socket = sock_name.as_str(),
            "docker engine event stream ended ({ended}); resuming when the engine answers"
        );
    }
}

/// A client for the engine at `socket` that has answered, speaking the
/// engine's API version (Debian's dockerd is older than bollard's default).
pub(crate) async fn connect(socket: &str) -> Result<Docker, bollard::errors::Error> {
    let docker = Docker::connect_with_unix(socket, REQUEST_TIMEOUT, bollard::API_DEFAULT_VERSION)?;
    let docker = docker.negotiate_version().await?;
    docker.ping().await?;
    Ok(docker)
}

/// Where the stream resumes: the time of the last event passed on, and
/// which events had exactly that time. The engine's `since` includes its
/// bound, so those are skipped when it sends them again.
struct Resume {
    last_nanos: i64,
    at_last: Vec<EventKey>,
}

type EventKey = (Option<EventMessageTypeEnum>, String, String);

impl Resume {
    fn new(start: SystemTime) -> Resume {
        let nanos = start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Resume {
            last_nanos: nanos,
            at_last: Vec::new(),
        }
    }

    /// `since=` as the engine reads it: seconds, a dot, and nine digits of
    /// nanoseconds (it takes the fraction as a count of nanoseconds, so
    /// the digits must not be shortened).
    fn since(&self) -> String {
        format!(
            "{}.{:09}",
            self.last_nanos.div_euclid(1_000_000_000),
            self.last_nanos.rem_euclid(1_000_000_000)
        )
    }

    /// Whether `message` has not been passed on yet; notes it if so.
    fn is_new(&mut self, message: &EventMessage) -> bool {
        let nanos = event_nanos(message);
        let key = (
            message.typ,
            message.action.clone().unwrap_or_default(),
            message
                .actor
                .as_ref()
                .and_then(|a| a.id.clone())
                .unwrap_or_default(),
        );
        if nanos < self.last_nanos {
            return false;
        }
        if nanos == self.last_nanos {
            if self.at_last.contains(&key) {
                return false;
            }
            self.at_last.push(key);
            return true;
        }
        self.last_nanos = nanos;
        self.at_last.clear();
        self.at_last.push(key);
        true
    }
}

fn event_nanos(message: &EventMessage) -> i64 {
    message
        .time_nano
        .or(message.time.map(|s| s.saturating_mul(1_000_000_000)))
        .unwrap_or(0)
}

/// Container id → name and image, from the engine's list at each connect
/// and from its events since.
struct Cache {
    containers: ContainerNames,
}

impl Cache {
    async fn fill(&mut self, docker: &Docker) {
        let options = ListContainersOptions {
            all: true,
            ..ListContainersOptions::default()
        };
        match docker.list_containers(Some(options)).await {
            Ok(list) => {
                let Ok(mut containers) = self.containers.0.write() else {
                    return;
                };
                containers.clear();
                for c in list {
                    let Some(id) = c.id else { continue };
                    let name = c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_string());
                    let container = Container {
                        id: id.clone(),
                        name,
                        image: c.image,
                    };
                    containers.insert(id, Arc::new(container));
                }
            }
            Err(e) => tracing::warn!("docker engine: cannot list containers: {e}"),
        }
    }

    /// The container of an event, from its attributes (the engine adds the
    /// name and image to every container event) or what is known of it.
    fn container(&mut self, id: &str, attributes: &HashMap<String, String>) -> Arc<Container> {
        let name = attributes.get("name").cloned();
        let image = attributes.get("image").cloned();
        let known = self.containers.get(id);
        if let Some(known) = &known {
            let same = name.as_ref().is_none_or(|n| known.name.as_ref() == Some(n))
                && image
                    .as_ref()
                    .is_none_or(|i| known.image.as_ref() == Some(i));
            if same {
                return known.clone();
            }
        }
        let container = Arc::new(Container {
            id: id.to_string(),
            name: name.or_else(|| known.as_ref().and_then(|k| k.name.clone())),
            image: image.or_else(|| known.as_ref().and_then(|k| k.image.clone())),
        });
        self.containers.insert(container.clone());
        container
    }

    fn forget(&mut self, id: &str) {
        self.containers.remove(id);
    }
}

/// The [`Event`] for an engine event, when it is one dockwatch reports.
async fn translate(docker: &Docker, cache: &mut Cache, message: EventMessage) -> Option<Event> {
    let engine_action = message.action.clone().unwrap_or_default();
    let actor = message.actor.clone().unwrap_or_default();
    let id = actor.id.clone().unwrap_or_default();
    let attributes = actor.attributes.clone().unwrap_or_default();
    // `exec_start: sh -c id`: the command follows the verb.
    let (verb, rest) = match engine_action.split_once(": ") {
        Some((verb, rest)) => (verb, Some(rest)),
        None => (engine_action.as_str(), None),
    };
    let action = match (message.typ?, verb) {
        (EventMessageTypeEnum::CONTAINER, "destroy") => {
            cache.forget(&id);
            return None;
        }
        (EventMessageTypeEnum::CONTAINER, verb) => match verb {
            "create" => Action::ContainerCreate,
            "start" => Action::ContainerStart,
            "exec_start" => Action::ContainerExec,
            "extract-to-dir" => Action::ContainerCp,
            "archive-path" => Action::ContainerArchive,
            "commit" => Action::ContainerCommit,
            "update" => Action::ContainerUpdate,
            "rename" => {
                cache.forget(&id);
                cache.container(&id, &attributes);
                return None;
            }
            _ => return None,
        },
        (EventMessageTypeEnum::IMAGE, verb) => match verb {
            "load" => Action::ImageLoad,
            "pull" => Action::ImagePull,
            "import" => Action::ImageImport,
            _ => return None,
        },
        (EventMessageTypeEnum::PLUGIN, verb) => match verb {
            "install" => Action::PluginInstall,
            "enable" => Action::PluginEnable,
            "disable" => Action::PluginDisable,
            "remove" => Action::PluginRemove,
            _ => return None,
        },
        _ => return None,
    };

    let mut event = Event::new(Source::Docker, action);
    let nanos = event_nanos(&message);
    if nanos > 0 {
        event.time = UNIX_EPOCH + Duration::from_nanos(nanos as u64);
    }
    event.outcome = Outcome::Success;
    let mut detail = EngineDetail {
        action: engine_action.clone(),
        ..EngineDetail::default()
    };
    if message.typ == Some(EventMessageTypeEnum::CONTAINER) {
        event.container = Some(cache.container(&id, &attributes));
    } else {
        detail.object_id = Some(id.clone()).filter(|i| !i.is_empty());
        detail.object_name = attributes.get("name").cloned();
    }
    match action {
        Action::ContainerCreate | Action::ContainerUpdate => {
            match docker.inspect_container(&id, None).await {
                Ok(inspect) => match serde_json::to_value(&inspect) {
                    Ok(value) => detail.inspect = Some(value),
                    Err(e) => tracing::warn!("docker engine: inspect of {id}: {e}"),
                },
                // Removed already (`run --rm` of a short command): the
                // file-based container checks are all there is.
                Err(e) => tracing::info!("docker engine: cannot inspect container {id}: {e}"),
            }
        }
        Action::ContainerExec => {
            // The engine writes `exec_start: id ` for a command without
            // arguments.
            let mut exec = ExecInfo {
                command: rest.unwrap_or_default().trim_end().to_string(),
                ..ExecInfo::default()
            };
            if let Some(exec_id) = attributes.get("execID") {
                match docker.inspect_exec(exec_id).await {
                    Ok(inspect) => {
                        if let Some(config) = inspect.process_config {
                            exec.user = config.user.unwrap_or_default();
                            exec.privileged = config.privileged.unwrap_or(false);
                        }
                    }
                    Err(e) => tracing::info!("docker engine: cannot inspect exec {exec_id}: {e}"),
                }
            }
            detail.exec = Some(exec);
        }
        _ => {}
    }
    event.detail = Detail::Engine(Box::new(detail));
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn message(nanos: i64, action: &str, id: &str) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some(id.to_string()),
                attributes: None,
            }),
            time: Some(nanos / 1_000_000_000),
            time_nano: Some(nanos),
            ..EventMessage::default()
        }
    }

    #[test]
    fn containers_are_named_from_their_state_files() {
        let dir = tempfile::tempdir().unwrap();
        let id = "ab".repeat(32);
        std::fs::create_dir(dir.path().join(&id)).unwrap();
        std::fs::write(
            dir.path().join(&id).join("config.v2.json"),
            format!(r#"{{"ID":"{id}","Name":"/web","Config":{{"Image":"nginx:1"}}}}"#),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("broken")).unwrap();
        std::fs::write(dir.path().join("broken/config.v2.json"), "{").unwrap();
        let names = ContainerNames::default();
        names.read_state(dir.path());
        let web = names.get(&id).unwrap();
        assert_eq!(web.name.as_deref(), Some("web"));
        assert_eq!(web.image.as_deref(), Some("nginx:1"));
        assert_eq!(names.0.read().unwrap().len(), 1);
    }

    #[test]
    fn since_keeps_nine_digits_of_nanoseconds() {
        let resume = Resume::new(UNIX_EPOCH + Duration::new(1_700_000_000, 5));
        assert_eq!(resume.since(), "1700000000.000000005");
    }

    #[test]
    fn a_resumed_stream_passes_each_event_once() {
        let t = 1_700_000_000_000_000_000;
        let mut resume = Resume::new(UNIX_EPOCH + Duration::from_nanos(t as u64));
        assert!(resume.is_new(&message(t + 10, "create", "a")));
        assert!(resume.is_new(&message(t + 10, "create", "b")));
        assert!(resume.is_new(&message(t + 20, "start", "a")));
        assert_eq!(resume.since(), "1700000000.000000020");
        // The engine sends again what is at or after `since`.
        assert!(!resume.is_new(&message(t + 10, "create", "b")));
        assert!(!resume.is_new(&message(t + 20, "start", "a")));
        assert!(resume.is_new(&message(t + 20, "start", "b")));
        assert!(resume.is_new(&message(t + 30, "create", "c")));
        // Older than where the stream started: before dockwatch ran.
        let mut fresh = Resume::new(UNIX_EPOCH + Duration::from_nanos(t as u64));
        assert!(!fresh.is_new(&message(t - 1, "create", "z")));
    }
}
