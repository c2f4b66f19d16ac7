//! The listening sockets, one builder for both engines: one listener per worker, all on
//! one port through `SO_REUSEPORT`, so the kernel spreads new connections across workers
//! and no accept queue is shared.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Whether the listeners block: the tokio engine needs non-blocking sockets for its
/// reactor; the io_uring engine keeps them blocking so the kernel parks a multishot
/// accept on the socket instead of returning `EAGAIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocking {
    Yes,
    No,
}

/// Binds `count` listeners on `addr`. With port 0 the first picks a port and the rest
/// join it. Returns the listeners and the address they share.
pub(crate) fn reuseport_listeners(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
    blocking: Blocking,
) -> io::Result<(Vec<Socket>, SocketAddr)> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        // socket2 opens with SOCK_CLOEXEC: the agent or a shell spawned later must not
        // inherit the bid port.
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        // Accepted sockets inherit TCP_NODELAY: responses are whole, never worth delaying.
        socket.set_tcp_nodelay(true)?;
        socket.set_nonblocking(blocking == Blocking::No)?;
        socket.bind(&bound.into())?;
        socket.listen(backlog)?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("listener has no inet address"))?;
        }
        listeners.push(socket);
    }
    Ok((listeners, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_share_one_chosen_port_and_blocking_is_as_asked() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (sockets, addr) = reuseport_listeners(any, 3, 16, Blocking::No).unwrap();
        assert_eq!(sockets.len(), 3);
        assert_ne!(addr.port(), 0);
        for socket in &sockets {
            let local = socket.local_addr().unwrap().as_socket().unwrap();
            assert_eq!(local, addr);
            assert!(socket.tcp_nodelay().unwrap());
            assert!(socket.reuse_port().unwrap());
        }
        // The port is taken only by SO_REUSEPORT sockets: a plain bind is refused.
        assert!(std::net::TcpListener::bind(addr).is_err());
        let (blocking, _) = reuseport_listeners(any, 1, 16, Blocking::Yes).unwrap();
        let flags = file_flags(&blocking[0]);
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        assert_ne!(file_flags(&sockets[0]) & libc::O_NONBLOCK, 0);
    }

    fn file_flags(socket: &Socket) -> libc::c_int {
        use std::os::fd::AsRawFd;
        // SAFETY: F_GETFL on a descriptor the socket owns reads its flags and nothing else.
        unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_GETFL) }
    }
}
