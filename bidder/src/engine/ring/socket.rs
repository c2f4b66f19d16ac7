//! The few socket syscalls made outside the ring: the peer's address, the shedding
//! path, half-closes and the wake eventfd. None runs per request. (Listeners are built
//! by the parent's `listener`, shared with the tokio engine.)

use std::io;
use std::mem::size_of;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Converts a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The address of the client on an accepted socket: partners without a bid path of
/// their own are recognised by it. One syscall per connection, not per request.
pub(crate) fn peer_addr(fd: RawFd) -> Option<std::net::IpAddr> {
    // SAFETY: `fd` is an open socket the caller owns for at least this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let addr = socket2::SockRef::from(&borrowed).peer_addr().ok()?;
    addr.as_socket().map(|a| a.ip())
}

/// Answers a connection we have no slot for: the canned bytes in one non-blocking send
/// (they fit any fresh socket buffer), then close. Synchronous on purpose: this is the
/// overload path, and it must not need any of the per-connection resources that ran out.
pub(crate) fn shed(fd: RawFd, response: &[u8]) {
    send_now(fd, response);
    shutdown_write(fd);
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
