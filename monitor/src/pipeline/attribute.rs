//! Who asked the engine. dockerd runs as root and its events name no
//! client: "dockerd created a privileged container" says nothing of the
//! person. The client's connect to docker.sock, though, is seen by the eBPF
//! probes and by audit with its pid, uids, login uid and executable. An
//! engine event is attributed to the last client that connected to the
//! engine's socket before it, within [`WINDOW`]: the docker CLI connects
//! for each request, so the connection that carried the request is the last
//! one before the engine reports its effect.
//!
//! What this cannot tell apart: two clients whose requests interleave
//! within the window (the later connect wins), and actions the engine takes
//! on its own (a restart policy starting a container) shortly after some
//! client connected. It needs the connect events: the shipped rules watch
//! docker.sock for `connect`, which puts it in the probes' and auditd's
//! watch set.
//!
//! The other way round, an event from a process inside a container knows
//! only the container's id (from its cgroup); [`name_container`] adds the
//! name and image from the docker source's cache.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::event::{Action, Event, Outcome, Process, Source};
use crate::source::docker::ContainerNames;

/// How long after a client's connect an engine event may still be its.
pub(super) const WINDOW: Duration = Duration::from_secs(5);
/// Connects remembered at most (a busy CI host connects often).
const KEEP: usize = 256;

pub(super) struct Attribution {
    /// The engine's socket as sources may spell it (`/var/run` is `/run`).
    sockets: Vec<Bytes>,
    /// Client connects, oldest first.
    recent: VecDeque<(Instant, Process)>,
    own_pid: u32,
}

impl Attribution {
    pub(super) fn new(socket: &Path) -> Attribution {
        let path = socket.as_os_str().as_encoded_bytes();
        let mut sockets = vec![Bytes::copy_from_slice(path)];
        if let Some(rest) = path.strip_prefix(b"/var/run/") {
            sockets.push(Bytes::from([&b"/run/"[..], rest].concat()));
        } else if let Some(rest) = path.strip_prefix(b"/run/") {
            sockets.push(Bytes::from([&b"/var/run/"[..], rest].concat()));
        }
        Attribution {
            sockets,
            recent: VecDeque::new(),
            own_pid: std::process::id(),
        }
    }

    /// Notes a client's connect; gives an engine event its client.
    pub(super) fn apply(&mut self, event: &mut Event, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
        {
            self.recent.pop_front();
        }
        if event.action == Action::Connect {
            let to_engine = event
                .file
                .as_ref()
                .is_some_and(|f| self.sockets.contains(&f.path));
            let failed = matches!(event.outcome, Outcome::Failure { .. });
            // dockwatch's own requests (inspect, the event stream) are
            // not a client's.
            if to_engine && !failed && event.process.pid != self.own_pid {
                // Both sources report the same connect: keep one, the
                // later one, which may know more (audit's login uid).
                self.recent.retain(|(_, p)| p.pid != event.process.pid);
                if self.recent.len() == KEEP {
                    self.recent.pop_front();
                }
                self.recent.push_back((now, event.process.clone()));
            }
            return;
        }
        if event.source == Source::Docker && event.process.pid == 0 {
            if let Some((_, client)) = self.recent.back() {
                event.process = client.clone();
            }
        }
    }
}

/// Gives an event from a process in a container that container's name and
/// image, as the engine told them (the kernel knows only its id).
pub(super) fn name_container(event: &mut Event, names: &ContainerNames) {
    if event.container.is_none() {
        if let Some(id) = &event.process.container_id {
            event.container = names.get(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Container, FileRef};
    use std::sync::Arc;

    #[test]
    fn a_process_in_a_known_container_gets_its_name_and_image() {
        let names = ContainerNames::default();
        let id = "ab".repeat(32);
        names.insert(Arc::new(Container {
            id: id.clone(),
            name: Some("web".into()),
            image: Some("nginx:1".into()),
        }));
        let mut write = connect("/etc/docker/daemon.json", 7);
        write.process.container_id = Some(id.clone());
        name_container(&mut write, &names);
        let container = write.container.as_ref().unwrap();
        assert_eq!(container.name.as_deref(), Some("web"));
        assert_eq!(container.image.as_deref(), Some("nginx:1"));

        let mut unknown = connect("/etc/docker/daemon.json", 8);
        unknown.process.container_id = Some("cd".repeat(32));
        name_container(&mut unknown, &names);
        assert!(unknown.container.is_none(), "an unknown id stays as it is");
    }

    fn connect(path: &str, pid: u32) -> Event {
        let mut event = Event::new(Source::Ebpf, Action::Connect);
        event.file = Some(FileRef::new(path.as_bytes().to_vec()));
        event.outcome = Outcome::Success;
        event.process.pid = pid;
        event.process.uid = Some(1000);
        event.process.exe = Some("/usr/bin/docker".into());
        event
    }

    #[test]
    fn an_engine_event_is_the_last_clients_within_the_window() {
        let mut a = Attribution::new(Path::new("/var/run/docker.sock"));
        let t0 = Instant::now();
        let mut create = Event::new(Source::Docker, Action::ContainerCreate);
        a.apply(&mut create.clone(), t0);
        assert_eq!(create.process.pid, 0, "no client yet");

        a.apply(&mut connect("/run/docker.sock", 41), t0);
        a.apply(&mut connect("/var/run/docker.sock", 42), t0);
        a.apply(&mut connect("/run/containerd/containerd.sock", 43), t0);
        a.apply(&mut connect("/run/docker.sock", std::process::id()), t0);
        a.apply(&mut create, t0 + Duration::from_millis(5));
        assert_eq!(create.process.pid, 42);
        assert_eq!(create.process.uid, Some(1000));

        let mut late = Event::new(Source::Docker, Action::ContainerStart);
        a.apply(&mut late, t0 + WINDOW + Duration::from_millis(1));
        assert_eq!(late.process.pid, 0, "too long after any connect");
    }
}
