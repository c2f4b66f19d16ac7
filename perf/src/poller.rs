//! The generator's only contact with the kernel beyond std: epoll for socket readiness,
//! a timerfd for send deadlines, and the monotonic clock.
//!
//! Why not std or an async runtime: an open-loop generator must send each request at its
//! intended instant with microsecond precision. epoll and async-runtime timers round to
//! milliseconds, which at 50,000 req/s would batch 50 requests per wake and add up to a
//! millisecond to every latency it reports. A timerfd armed at an absolute
//! `CLOCK_MONOTONIC` deadline fires with hrtimer precision and wakes the same
//! `epoll_wait` that socket events do, so one thread serves both without spinning.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Nanoseconds in a second, for timespec conversions.
const NS_PER_S: u64 = 1_000_000_000;

/// Token that `Poller::wait` reports for the timer; connection tokens are their index.
pub(crate) const TIMER_TOKEN: u64 = u64::MAX;

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

/// An epoll instance plus one timerfd, owned by exactly one worker thread.
pub(crate) struct Poller {
    epoll: OwnedFd,
    timer: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    /// Creates the epoll instance and the timer; `max_events` bounds one `wait` batch.
    pub(crate) fn new(max_events: usize) -> io::Result<Self> {
        assert!(max_events > 0 && max_events <= i32::MAX as usize);
        // SAFETY: epoll_create1 takes no pointers; a non-negative return is a fresh fd
        // that nothing else owns, so wrapping it in OwnedFd transfers sole ownership.
        let epoll = unsafe { cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))? };
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: as above, timerfd_create takes no pointers and returns a fresh fd.
        let timer = unsafe {
            cvt(libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            ))?
        };
        let timer = unsafe { OwnedFd::from_raw_fd(timer) };
        let poller = Poller {
            epoll,
            timer,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events],
        };
        poller.ctl(
            libc::EPOLL_CTL_ADD,
            poller.timer.as_raw_fd(),
            TIMER_TOKEN,
            libc::EPOLLIN as u32,
        )?;
        Ok(poller)
    }

    /// Registers a socket under `token` (level-triggered).
    pub(crate) fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        debug_assert_ne!(token, TIMER_TOKEN);
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

    /// Arms the timer to fire at `deadline_ns` on the monotonic clock (a deadline in
    /// the past fires at once), or disarms it with `None`. Re-arming also clears a
    /// fired timer's readiness, so the timer never needs a separate read.
    pub(crate) fn arm_timer(&self, deadline_ns: Option<u64>) -> io::Result<()> {
        // A zero it_value disarms a timerfd, so a real deadline must never be zero.
        let at = deadline_ns.map_or(0, |ns| ns.max(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at / NS_PER_S) as libc::time_t,
                tv_nsec: (at % NS_PER_S) as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec that outlives the call, the old-value
        // pointer may be null, and the timer fd is open and owned by `self`.
        unsafe {
            cvt(libc::timerfd_settime(
                self.timer.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            ))?
        };
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1: until an event) and returns the ready set.
    /// Interrupted waits return an empty set rather than an error.
    pub(crate) fn wait(&mut self, timeout_ms: i32) -> io::Result<impl Iterator<Item = Ready> + '_> {
        // SAFETY: the pointer and length describe `self.events`, a live, writable
        // buffer of initialised epoll_event values that the kernel fills in place.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        let n = match cvt(n) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
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
    fn timer_fires_near_its_deadline_and_not_before() {
        let mut poller = Poller::new(8).unwrap();
        let deadline = now_ns() + 2_000_000;
        poller.arm_timer(Some(deadline)).unwrap();
        let fired = loop {
            let tokens: Vec<u64> = poller.wait(1_000).unwrap().map(|r| r.token).collect();
            if tokens.contains(&TIMER_TOKEN) {
                break now_ns();
            }
        };
        assert!(
            fired >= deadline,
            "timer fired {} ns early",
            deadline - fired
        );
        // Generous bound: a shared 2-core VM can delay a wake, but not by 50 ms.
        assert!(fired - deadline < 50_000_000);
    }

    #[test]
    fn rearming_clears_a_fired_timer() {
        let mut poller = Poller::new(8).unwrap();
        poller.arm_timer(Some(1)).unwrap();
        assert_eq!(poller.wait(1_000).unwrap().count(), 1);
        poller.arm_timer(None).unwrap();
        assert_eq!(poller.wait(0).unwrap().count(), 0);
    }
}
