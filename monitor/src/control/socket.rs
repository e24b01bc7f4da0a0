//! The control socket: binding it root-only, serving one request line per
//! connection, and the client side the CLI uses.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::{Call, Request, Response};

/// Longest request line accepted.
const REQUEST_MAX: u64 = 4096;
/// How long a connected client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A listening socket's task, and the socket file it removes at the end.
pub struct Listener {
    task: tokio::task::JoinHandle<()>,
    /// The socket file this daemon created.
    file: Option<Placed>,
}

/// A socket file placed by [`bind_private`].
pub struct Placed {
    path: PathBuf,
    ino: u64,
    /// Its directory, when this daemon created that too: removed at the end
    /// if empty, so a run leaves nothing behind.
    dir: Option<PathBuf>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(placed) = &self.file {
            // Only our own: another daemon may have replaced it since.
            if std::fs::symlink_metadata(&placed.path).is_ok_and(|m| m.ino() == placed.ino) {
                let _ = std::fs::remove_file(&placed.path);
            }
            if let Some(dir) = &placed.dir {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

impl Listener {
    pub async fn control(path: &Path, calls: mpsc::Sender<Call>) -> anyhow::Result<Listener> {
        let (listener, placed) = bind_private(path).await?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(stream, calls.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("control socket accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Listener {
            task,
            file: Some(placed),
        })
    }

    pub fn new(task: tokio::task::JoinHandle<()>, file: Option<Placed>) -> Listener {
        Listener { task, file }
    }
}

/// Binds a unix socket at `path`, mode 0600, root's only. It is bound under
/// a temporary name and renamed into place once its mode is set, so there is
/// no moment at which it is open to others. A socket a live daemon answers
/// on is left alone (an error); a stale one is replaced.
pub async fn bind_private(path: &Path) -> anyhow::Result<(UnixListener, Placed)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .with_context(|| format!("{}: not a socket path", path.display()))?;
    let created = !dir.exists();
    if created {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            anyhow::bail!(
                "{}: exists and is not a socket; remove it or choose another [control] path",
                path.display()
            );
        }
    }
    if UnixStream::connect(path).await.is_ok() {
        anyhow::bail!(
            "{}: another dockwatch is answering on it; give this one its own [control] socket",
            path.display()
        );
    }
    let name = path.file_name().context("socket path without a name")?;
    let mut temp_name = name.to_os_string();
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let _ = std::fs::remove_file(&temp);
    let listener =
        UnixListener::bind(&temp).with_context(|| format!("cannot bind {}", temp.display()))?;
    let placed = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        return Err(anyhow::Error::new(e).context(format!("cannot place {}", path.display())));
    }
    let ino = std::fs::symlink_metadata(path)?.ino();
    let placed = Placed {
        path: path.to_path_buf(),
        ino,
        dir: created.then(|| dir.to_path_buf()),
    };
    Ok((listener, placed))
}

/// One connection: check the peer, read its request line, have the event
/// loop answer, write the answer line.
async fn serve(stream: UnixStream, calls: mpsc::Sender<Call>) {
    let uid = stream.peer_cred().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    let response = match uid {
        Ok(0) => {
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read.take(REQUEST_MAX));
            match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
                Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
                    Ok(request) => ask_loop(&calls, request).await,
                    Err(e) => Response::error(format!("bad request {:?}: {e}", line.trim_end())),
                },
                Ok(Err(e)) => Response::error(format!("cannot read the request: {e}")),
                Err(_) => Response::error("no request line within 5 s"),
            }
        }
        Ok(uid) => {
            tracing::warn!(uid, "control socket: refused a peer that is not root");
            Response::error(format!(
                "refused: the control socket answers root only (peer uid {uid})"
            ))
        }
        Err(e) => Response::error(format!("refused: cannot identify the peer: {e}")),
    };
    let mut line = serde_json::to_vec(&response).unwrap_or_default();
    line.push(b'\n');
    let _ = write.write_all(&line).await;
    let _ = write.shutdown().await;
}

/// Hands `request` to the event loop and waits for its answer.
pub async fn ask_loop(calls: &mpsc::Sender<Call>, request: Request) -> Response {
    let (reply, answer) = oneshot::channel();
    if calls.send(Call { request, reply }).await.is_err() {
        return Response::error("dockwatch is stopping");
    }
    answer
        .await
        .unwrap_or_else(|_| Response::error("dockwatch is stopping"))
}

/// Why a client got no answer.
pub enum AskError {
    /// Nothing listens there: no daemon runs (or not with this socket).
    Connect(std::io::Error),
    /// Connected, but the exchange failed.
    Exchange(anyhow::Error),
}

/// The client side: one request, one response, within `timeout`.
pub fn ask(path: &Path, request: Request, timeout: Duration) -> Result<Response, AskError> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(AskError::Connect)?;
    let mut exchange = || -> anyhow::Result<Response> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut line = serde_json::to_vec(&request)?;
        line.push(b'\n');
        // A daemon that refuses the peer answers at once and closes, maybe
        // before the request is written: the refusal is still there to read.
        if let Err(e) = stream.write_all(&line) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(e.into());
            }
        }
        let mut answer = String::new();
        BufReader::new(&stream)
            .read_line(&mut answer)
            .context("no answer from the daemon")?;
        if answer.is_empty() {
            anyhow::bail!("the daemon closed the connection without an answer");
        }
        serde_json::from_str(&answer)
            .with_context(|| format!("unreadable answer {:?}", answer.trim_end()))
    };
    exchange().map_err(AskError::Exchange)
}
