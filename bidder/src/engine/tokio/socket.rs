//! The listening sockets: one per worker, all on one port through `SO_REUSEPORT`, so the
//! kernel spreads new connections across workers and no accept queue is shared.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `n` non-blocking listeners on `addr`. With port 0 the first picks a port and
/// the rest join it. Returns the listeners and the address they share.
pub(super) fn reuseport_listeners(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        socket.listen(backlog)?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("listener has no inet address"))?;
        }
        listeners.push(socket.into());
    }
    Ok((listeners, bound))
}
