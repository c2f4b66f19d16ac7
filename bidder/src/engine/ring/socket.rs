//! The few socket syscalls made outside the ring: creating listeners, per-connection
//! options, and the shedding path. None runs per request.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Converts a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and its exact size is passed; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret).map(drop)
}

/// Binds one `SO_REUSEPORT` listener per worker to `addr`. With port 0 the first socket
/// picks the port and the others join it, so all workers share one address.
pub(crate) fn reuseport_listeners(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let mut addr = addr;
    let mut fds = Vec::with_capacity(count);
    for _ in 0..count {
        let fd = listener(addr, backlog)?;
        if addr.port() == 0 {
            addr = local_addr(fd.as_raw_fd())?;
        }
        fds.push(fd);
    }
    Ok((fds, addr))
}

fn listener(addr: SocketAddr, backlog: u32) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = check(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    // Accepted sockets inherit TCP_NODELAY: responses are whole, never worth delaying.
    set_int_opt(raw, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
    check(unsafe { libc::bind(raw, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    let backlog = backlog.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: listen(2) on a bound socket we own.
    check(unsafe { libc::listen(raw, backlog) })?;
    Ok(fd)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    socket_addr(fd, libc::getsockname)
}

/// The address of the client on an accepted socket: partners without a bid path of
/// their own are recognised by it. One syscall per connection, not per request.
pub(crate) fn peer_addr(fd: RawFd) -> Option<std::net::IpAddr> {
    socket_addr(fd, libc::getpeername).ok().map(|a| a.ip())
}

type NameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// `getsockname` or `getpeername`, decoded.
fn socket_addr(fd: RawFd, name: NameFn) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are live and describe a buffer of `len` bytes.
    check(unsafe {
        name(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for an AF_INET socket.
            let sin = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for an AF_INET6 socket.
            let sin6 = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => Err(io::Error::from(io::ErrorKind::Unsupported)),
    }
}

/// Answers a connection we have no slot for: the canned bytes in one non-blocking send
/// (they fit any fresh socket buffer), then close. Synchronous on purpose: this is the
/// overload path, and it must not need any of the per-connection resources that ran out.
pub(crate) fn shed(fd: RawFd, response: &[u8]) {
    // SAFETY: `fd` is a connected socket we own; `response` is a live byte slice.
    unsafe {
        libc::send(
            fd,
            response.as_ptr().cast(),
            response.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        libc::shutdown(fd, libc::SHUT_WR);
    }
    close(fd);
}

/// Sends a small canned response now, without waiting: used only when nothing else is
/// being written on the connection, so the bytes fit the empty socket buffer.
pub(crate) fn send_now(fd: RawFd, response: &[u8]) {
    // SAFETY: `fd` is a connected socket we own; `response` is a live byte slice.
    unsafe {
        libc::send(
            fd,
            response.as_ptr().cast(),
            response.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
    }
}

/// Half-closes our side so the client reads our last response, then EOF.
pub(crate) fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown(2) on a socket we own; failure (already reset) is harmless.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// Ends every pending operation on the socket (a multishot receive completes with EOF).
pub(crate) fn shutdown_both(fd: RawFd) {
    // SAFETY: shutdown(2) on a socket we own; failure (already reset) is harmless.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Closes a descriptor we own and no operation still uses.
pub(crate) fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and drops it here; nothing uses it afterwards.
    unsafe { libc::close(fd) };
}

/// An eventfd that wakes a worker blocked in the ring.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with valid flags; the result is checked.
    let raw = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?;
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Adds one to an eventfd, waking whoever reads it.
pub(crate) fn wake(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64, as eventfd(2) requires.
    unsafe { libc::write(fd, (&one as *const u64).cast(), size_of::<u64>()) };
}
