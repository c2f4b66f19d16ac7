//! The generator's only contact with the kernel beyond std: epoll with a nanosecond
//! timeout, the monotonic clock, and getrusage.
//!
//! Why not std or an async runtime: an open-loop generator must send each request at its
//! intended instant with microsecond precision. `epoll_wait` and async-runtime timers
//! round to milliseconds, which at 50,000 req/s would batch 50 requests per wake and add
//! up to a millisecond to every latency reported. `epoll_pwait2` (Linux 5.11) takes a
//! nanosecond timeout, and unlike a separately armed timerfd it programs a timer only
//! when it actually sleeps: on a VM, where each timer reprogramming traps to the
//! hypervisor, a timerfd re-armed per request cost more CPU than the requests.
//! The thread's timer slack is lowered so the kernel does not defer the wake.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Nanoseconds in a second, for timespec conversions.
const NS_PER_S: u64 = 1_000_000_000;

/// Timer slack of a generator thread: how much later than asked the kernel may wake
/// it (the default, 50 µs, would show up in every latency measured from intended).
const TIMER_SLACK_NS: u64 = 1_000;

/// Reads the monotonic clock in nanoseconds. All schedule arithmetic in the generator
/// uses this one clock, because the timer deadline must be expressed in it.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call, and
    // CLOCK_MONOTONIC is always supported on Linux, so the call cannot fail or write
    // out of bounds.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// What a registered socket wants to hear about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Responses may arrive; nothing is waiting to be written.
    Read,
    /// A partial write (or a connect in progress) waits for buffer space as well.
    ReadWrite,
}

impl Interest {
    fn events(self) -> u32 {
        let base = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        match self {
            Interest::Read => base,
            Interest::ReadWrite => base | libc::EPOLLOUT as u32,
        }
    }
}

/// One readiness report: which token, and whether it can read, write, or failed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Error or hang-up: the owner should read (to see EOF or the error) and close.
    pub hangup: bool,
}

/// An epoll instance owned by exactly one worker thread.
pub(crate) struct Poller {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    /// Creates the epoll instance and lowers the calling thread's timer slack, so it
    /// must be called on the thread that waits; `max_events` bounds one `wait` batch.
    pub(crate) fn new(max_events: usize) -> io::Result<Self> {
        assert!(max_events > 0 && max_events <= i32::MAX as usize);
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer argument and only changes
        // the calling thread's own timer slack.
        unsafe {
            cvt(libc::prctl(
                libc::PR_SET_TIMERSLACK,
                TIMER_SLACK_NS as libc::c_ulong,
            ))?
        };
        // SAFETY: epoll_create1 takes no pointers; a non-negative return is a fresh fd
        // that nothing else owns, so wrapping it in OwnedFd transfers sole ownership.
        let epoll = unsafe { cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))? };
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        Ok(Poller {
            epoll,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events],
        })
    }

    /// Registers a socket under `token` (level-triggered).
    pub(crate) fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest.events())
    }

    /// Changes what a registered socket is watched for.
    pub(crate) fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest.events())
    }

    /// Unregisters a socket before it is closed.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn ctl(&self, op: i32, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` is a valid epoll_event for the duration of the call (the
        // kernel copies it and ignores it for EPOLL_CTL_DEL); both fds are open.
        unsafe { cvt(libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event))? };
        Ok(())
    }

    /// Waits until a socket is ready or the monotonic clock reaches `deadline_ns`
    /// (a deadline already passed polls without sleeping), and returns the ready set.
    /// Interrupted waits return an empty set rather than an error.
    pub(crate) fn wait(
        &mut self,
        deadline_ns: u64,
    ) -> io::Result<impl Iterator<Item = Ready> + '_> {
        let timeout_ns = deadline_ns.saturating_sub(now_ns());
        let timeout = libc::timespec {
            tv_sec: (timeout_ns / NS_PER_S) as libc::time_t,
            tv_nsec: (timeout_ns % NS_PER_S) as libc::c_long,
        };
        // SAFETY: the events pointer and length describe `self.events`, a live,
        // writable buffer of initialised epoll_event values the kernel fills in place;
        // `timeout` is a valid timespec that outlives the call; a null sigmask (with
        // its size argument) means the signal mask is left alone.
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                &timeout as *const libc::timespec,
                std::ptr::null::<libc::sigset_t>(),
                0 as libc::size_t,
            )
        };
        let n = match cvt(n as i32) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                return Err(io::Error::other("epoll_pwait2 needs Linux 5.11 or later"))
            }
            Err(e) => return Err(e),
        };
        Ok(self.events[..n].iter().map(|ev| {
            let events = ev.events;
            let token = ev.u64;
            Ready {
                token,
                readable: events & (libc::EPOLLIN as u32) != 0,
                writable: events & (libc::EPOLLOUT as u32) != 0,
                hangup: events & ((libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32) != 0,
            }
        }))
    }
}

/// Process CPU time so far (user, system), in microseconds, from getrusage.
pub(crate) fn process_cpu_us() -> (u64, u64) {
    // SAFETY: rusage is plain old data, so all-zero is a valid value to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage that outlives the call, and
    // RUSAGE_SELF is always a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) failed");
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    (us(usage.ru_utime), us(usage.ru_stime))
}

fn cvt(rc: i32) -> io::Result<i32> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_with_nothing_ready_returns_at_its_deadline_and_not_before() {
        let mut poller = Poller::new(8).unwrap();
        for delay_ns in [200_000, 2_000_000] {
            let deadline = now_ns() + delay_ns;
            assert_eq!(poller.wait(deadline).unwrap().count(), 0);
            let woke = now_ns();
            assert!(woke >= deadline, "woke {} ns early", deadline - woke);
            // Generous bound: a shared 2-core VM can delay a wake, but not by 50 ms.
            assert!(woke - deadline < 50_000_000);
        }
    }

    #[test]
    fn a_ready_socket_ends_the_wait_at_once_and_a_past_deadline_only_polls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut poller = Poller::new(8).unwrap();
        let began = now_ns();
        assert_eq!(poller.wait(began).unwrap().count(), 0);
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        poller.add(listener.as_raw_fd(), 7, Interest::Read).unwrap();
        let ready: Vec<Ready> = poller.wait(now_ns() + 5_000_000_000).unwrap().collect();
        assert_eq!(
            (ready.len(), ready[0].token, ready[0].readable),
            (1, 7, true)
        );
        assert!(now_ns() - began < 1_000_000_000);
    }
}
