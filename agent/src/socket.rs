//! The control socket: a unix stream listener, one task per client, every limit
//! explicit — line length, idle time, clients at once — and every peer checked by
//! its kernel-reported credentials (`SO_PEERCRED`) before a byte is read.
//!
//! A client's errors never end its connection (it gets a structured error and may
//! send the next line); only `denied`, `busy` and `idle_timeout` close it. Requests
//! are answered one at a time under one lock: each is microseconds of table and file
//! work, and serialising them is what makes "old → new" in the audit log true.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
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

/// How long a refused client's request is waited for (and discarded) after its
/// refusal: a client that writes before it reads would otherwise meet a closed socket
/// (EPIPE) and never see why.
const REFUSED_LINGER_MS: u64 = 1_000;

async fn client(stream: UnixStream, agent: &Mutex<Agent>, limits: &SocketConfig, clients: usize) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let admitted = peer(read.get_ref(), limits).and_then(|who| {
        if clients > limits.max_clients {
            return Err(Error::new(
                Code::Busy,
                format!("{} clients connected", limits.max_clients),
                "retry in a moment",
            ));
        }
        Ok(who)
    });
    let who = match admitted {
        Ok(who) => who,
        Err(e) => {
            let _ = write
                .write_all(&Response::err(serde_json::Value::Null, e).to_line())
                .await;
            let mut discard = Vec::new();
            let _ = tokio::time::timeout(
                Duration::from_millis(REFUSED_LINGER_MS),
                read_line(&mut read, &mut discard, limits.max_line_bytes),
            )
            .await;
            return;
        }
    };
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
            // Answered like any bad line: a client that sent one waits for an answer.
            Ok(Ok(Line::Complete)) if line.iter().all(u8::is_ascii_whitespace) => Response::err(
                serde_json::Value::Null,
                Error::new(
                    Code::BadJson,
                    "empty request line",
                    "send one JSON request per line",
                ),
            ),
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
    let groups = peer_groups(stream.as_ref().as_raw_fd()).map_err(|e| {
        Error::new(
            Code::Denied,
            format!("cannot read the peer's groups (SO_PEERGROUPS): {e}"),
            "connect over the unix socket",
        )
    })?;
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

/// Most supplementary groups a process can have (Linux `NGROUPS_MAX`).
const MAX_PEER_GROUPS: usize = 65_536;

/// The peer's supplementary groups as the kernel recorded them when it connected
/// (`SO_PEERGROUPS`, Linux 4.13): read from the socket itself, so no other process can
/// stand in for the peer (reading `/proc/<pid>` races with pid reuse).
fn peer_groups(fd: std::os::fd::RawFd) -> std::io::Result<Vec<u32>> {
    const GID_BYTES: usize = std::mem::size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut len = (groups.len() * GID_BYTES) as libc::socklen_t;
        assert!(groups.len() <= MAX_PEER_GROUPS);
        // SAFETY: `groups` is valid for writes of `len` bytes, and `len` is a valid
        // socklen_t the kernel updates with the bytes it wrote (or needs).
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let needed = len as usize / GID_BYTES;
        if rc == 0 {
            groups.truncate(needed);
            return Ok(groups);
        }
        let err = std::io::Error::last_os_error();
        // ERANGE: the buffer was too small and `len` says how large it must be.
        if err.raw_os_error() == Some(libc::ERANGE)
            && needed > groups.len()
            && needed <= MAX_PEER_GROUPS
        {
            groups.resize(needed, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_groups_are_the_connecting_processs_groups() {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut got = peer_groups(ours.as_raw_fd()).unwrap();
        // SAFETY: a null list with size 0 only asks for the count.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        let mut want = vec![0 as libc::gid_t; n as usize];
        // SAFETY: `want` has room for `n` gids.
        let n = unsafe { libc::getgroups(n, want.as_mut_ptr()) };
        want.truncate(n as usize);
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        // A descriptor that is not a socket is an error, never an empty list.
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(peer_groups(file.as_raw_fd()).is_err());
    }

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
