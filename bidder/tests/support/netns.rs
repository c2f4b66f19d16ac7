//! Network namespaces for tests that attach XDP programs or move real traffic: each
//! test gets its own (`ip netns add`), works in it from a dedicated thread (`setns`
//! changes only the calling thread), and the [`Netns`] guard deletes it on drop, also
//! when an assertion fails. Deleting a namespace destroys its interfaces, which
//! detaches whatever XDP program was on them.
//!
//! Needs root (CAP_SYS_ADMIN); CI runs as root.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A named network namespace, deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace with `lo` up; `tag` makes the name tell which test made it.
    pub fn new(tag: &str) -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "bt-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> …`, which must succeed; returns its standard output.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip link show dev <dev>` inside the namespace.
    pub fn link_show(&self, dev: &str) -> String {
        self.ip(&["link", "show", "dev", dev])
    }

    /// A veth pair `a` ↔ `b`, both up, inside the namespace.
    pub fn veth(&self, a: &str, b: &str) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
    }

    /// Runs `f` on a thread that has entered the namespace, and returns its result;
    /// a panic inside (a failed assertion) is re-raised here with its message.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: `ns` is an open namespace file for the duration of the call;
                // setns only moves this (scoped, soon finished) thread.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            });
            match thread.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A command that will run inside the namespace, not yet started.
    ///
    /// It enters the namespace with `setns` between fork and exec rather than through
    /// `ip netns exec`, which also remounts `/sys` in a mount namespace of its own: a
    /// bidder started that way would pin its maps on a private bpffs, invisible here
    /// and gone when it exits.
    pub fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt as _;
        let path = format!("/var/run/netns/{}", self.name);
        let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        let mut command = Command::new(program);
        // SAFETY: the hook runs in the forked child before exec and only makes the
        // async-signal-safe setns call on a descriptor the child inherited; `ns` is
        // moved into the hook, so it stays open until the command is dropped.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a command that must succeed; its standard output.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
