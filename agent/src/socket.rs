//! The control socket: a unix stream listener, one task per client, every limit
//! explicit — line length, idle time, clients at once — and every peer checked by
//! its kernel-reported credentials (`SO_PEERCRED`) before a byte is read.
//!
//! A client's errors never end its connection (it gets a structured error and may
//! send the next line); only `denied`, `busy` and `idle_timeout` close it. Requests
//! are answered one at a time under one lock: each is microseconds of table and file
//! work, and serialising them is what makes "old → new" in the audit log true.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::audit::Who;
use crate::config::SocketConfig;
use crate::protocol::{self, Code, Error, Response};
use crate::verbs::Agent;

/// Mode of the socket file: owner and group may connect, nobody else.
pub const SOCKET_MODE: u32 = 0o660;

/// Binds the socket at `config.path` (replacing a stale one), mode 0660, group set.
pub fn bind(config: &SocketConfig) -> Result<UnixListener, String> {
    let path = &config.path;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // A socket left by a dead agent: the table lock (taken before this) proves no
    // live agent owns it.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: removing the old socket: {e}", path.display())),
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("{}: bind: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| format!("{}: chmod: {e}", path.display()))?;
    if !config.group.is_empty() {
        let gid = group_id(&config.group)?;
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| format!("{}: chown to group {}: {e}", path.display(), config.group))?;
    }
    Ok(listener)
}

/// The gid of a group name (or a numeric gid).
fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group").map_err(|e| format!("/etc/group: {e}"))?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(n, _)| *n == name)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| format!("socket.group `{name}` is not a group on this host"))
}

/// Serves clients until the listener fails. Each client gets its own task.
pub async fn serve(listener: UnixListener, agent: Arc<Mutex<Agent>>) {
    let clients = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let limits = lock(&agent).config().socket.clone();
        let agent = Arc::clone(&agent);
        let clients = Arc::clone(&clients);
        tokio::spawn(async move {
            // Counted before anything else so a flood cannot exceed the limit.
            let n = clients.fetch_add(1, Ordering::AcqRel) + 1;
            client(stream, &agent, &limits, n).await;
            clients.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

fn lock(agent: &Mutex<Agent>) -> std::sync::MutexGuard<'_, Agent> {
    // A panic inside a verb is a bug; the table and audit log are written in an order
    // that leaves them consistent, so serving on is safe.
    agent
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn client(stream: UnixStream, agent: &Mutex<Agent>, limits: &SocketConfig, clients: usize) {
    let (read, mut write) = stream.into_split();
    let who = match peer(&read, limits) {
        Ok(who) => who,
        Err(e) => {
            let _ = write
                .write_all(&Response::err(serde_json::Value::Null, e).to_line())
                .await;
            return;
        }
    };
    if clients > limits.max_clients {
        let e = Error::new(
            Code::Busy,
            format!("{} clients connected", limits.max_clients),
            "retry in a moment",
        );
        let _ = write
            .write_all(&Response::err(serde_json::Value::Null, e).to_line())
            .await;
        return;
    }
    let mut read = BufReader::new(read);
    let mut line = Vec::with_capacity(1024);
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    loop {
        line.clear();
        let got =
            tokio::time::timeout(idle, read_line(&mut read, &mut line, limits.max_line_bytes))
                .await;
        let answer = match got {
            Err(_) => {
                let e = Error::new(
                    Code::IdleTimeout,
                    format!("nothing received for {} ms", limits.idle_timeout_ms),
                    "send a request within the idle timeout, or reconnect",
                );
                let _ = write
                    .write_all(&Response::err(serde_json::Value::Null, e).to_line())
                    .await;
                return;
            }
            Ok(Err(_)) | Ok(Ok(Line::Eof)) => return,
            Ok(Ok(Line::TooLong(n))) => Response::err(
                serde_json::Value::Null,
                Error::new(
                    Code::LineTooLong,
                    format!(
                        "request line of {n}+ bytes; the limit is {}",
                        limits.max_line_bytes
                    ),
                    "send one request per line; the connection stays usable",
                ),
            ),
            Ok(Ok(Line::Complete)) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(Ok(Line::Complete)) => match protocol::parse(&line) {
                Ok(req) => lock(agent).handle(req, who.clone()),
                Err(resp) => *resp,
            },
        };
        if write.write_all(&answer.to_line()).await.is_err() {
            return;
        }
    }
}

/// How reading one line ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Complete,
    /// Over the limit; the rest of the line (up to its newline) was discarded.
    TooLong(usize),
    Eof,
}

/// Reads up to a newline into `line`, never buffering more than `max` bytes: past it
/// the line is read and dropped to its end so the next request starts clean.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    let mut seen = 0usize;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if seen == 0 || seen > max {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let (chunk, done, ended) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        seen += chunk.len();
        if seen <= max {
            line.extend_from_slice(chunk);
        }
        r.consume(done);
        if ended {
            return Ok(if seen > max {
                Line::TooLong(seen)
            } else {
                Line::Complete
            });
        }
    }
}

/// The peer's credentials, if its uid or one of its groups is allowed.
fn peer(stream: &tokio::net::unix::OwnedReadHalf, limits: &SocketConfig) -> Result<Who, Error> {
    let cred = stream.as_ref().peer_cred().map_err(|e| {
        Error::new(
            Code::Denied,
            format!("cannot read peer credentials: {e}"),
            "connect over the unix socket",
        )
    })?;
    let who = Who {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        actor: None,
    };
    if limits.allowed_uids.contains(&who.uid) {
        return Ok(who);
    }
    let groups = who.pid.map(supplementary_groups).unwrap_or_default();
    let allowed = std::iter::once(who.gid)
        .chain(groups)
        .any(|g| limits.allowed_gids.contains(&g));
    if allowed {
        return Ok(who);
    }
    Err(Error::new(
        Code::Denied,
        format!("uid {} (gid {}) may not use this socket", who.uid, who.gid),
        "ask an operator to add your uid to socket.allowed_uids or a group of yours to socket.allowed_gids",
    ))
}

/// The supplementary groups of a process, from `/proc/<pid>/status` (`SO_PEERCRED`
/// carries only the primary group).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let path = format!("/proc/{pid}/status");
    let Ok(text) = std::fs::read_to_string(Path::new(&path)) else {
        return Vec::new();
    };
    text.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        let mut r = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let got = read_line(&mut r, &mut line, max).await.unwrap();
            if got == Line::Eof {
                return out;
            }
            out.push((got, line));
        }
    }

    #[tokio::test]
    async fn long_lines_are_dropped_whole_and_the_next_line_is_read() {
        let got = lines(b"abc\n0123456789\nxy\nlast", 8).await;
        assert_eq!(
            got,
            vec![
                (Line::Complete, b"abc".to_vec()),
                (Line::TooLong(10), b"01234567".to_vec()),
                (Line::Complete, b"xy".to_vec()),
                (Line::Complete, b"last".to_vec()),
            ]
        );
    }
}
