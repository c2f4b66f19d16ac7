//! A real `bidder run` child process on a copy of the demo configuration (free ports,
//! an absolute key path, tables of its own), for the suites that run the binary
//! (`tests/daemon.rs`, `tests/fleet.rs`). Each daemon lives in a [`Daemon`] guard that
//! kills it (and removes its temporary folder) if the test fails; every wait is
//! bounded. Include it beside `engines/harness.rs` as `harness`.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{banner, edit, Client, JsonBody, CLIENT_TIMEOUT};
use testkit::{eventually, TempDir};

pub const BIDDER: &str = env!("CARGO_BIN_EXE_bidder");
/// How long a daemon may take to answer `/ready` (a debug build on a busy machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to exit after SIGTERM: the configured grace and slack.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// `shutdown_grace_ms` in the test configurations.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// Tries to start a daemon when another process took one of its free ports first.
pub const START_ATTEMPTS: usize = 3;

// ---- a temporary folder and the configuration in it --------------------------------

/// A loopback address with a port nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
}

/// The demo configuration for a daemon on `bid` and `admin`, with the key file at an
/// absolute path (the copy lives elsewhere), a short shutdown grace, and a deadline
/// cap that a loaded machine cannot turn bids into no-bids with.
pub fn demo_config(a: &Addrs, token_file: &Path) -> String {
    let demo = crate::harness::demo_path();
    let key = demo.with_file_name("demo-notice.key");
    let text = std::fs::read_to_string(&demo).expect("read the demo config");
    let text = edit(&text, "\"127.0.0.1:8080\"", &format!("\"{}\"", a.bid));
    let text = edit(
        &text,
        "admin_listen = \"127.0.0.1:9090\"",
        &format!(
            "admin_listen = \"{}\"\nadmin_token_file = \"{}\"",
            a.admin,
            token_file.display()
        ),
    );
    let text = edit(
        &text,
        "http://127.0.0.1:9091/notice",
        &format!("http://{}/notice", a.notices),
    );
    let text = edit(
        &text,
        "listen = \"127.0.0.1:9091\"",
        &format!("listen = \"{}\"", a.notices),
    );
    let text = edit(
        &text,
        "\"demo-notice.key\"",
        &format!("\"{}\"", key.display()),
    );
    let text = edit(
        &text,
        "cores = [0, 1]\n",
        &format!(
            "cores = [0, 1]\nshutdown_grace_ms = {}\n",
            SHUTDOWN_GRACE.as_millis()
        ),
    );
    edit(&text, "deadline_cap_ms = 8", "deadline_cap_ms = 1000")
}

/// The addresses a test daemon listens on.
pub struct Addrs {
    pub bid: SocketAddr,
    pub admin: SocketAddr,
    pub notices: SocketAddr,
}

impl Addrs {
    pub fn free() -> Addrs {
        Addrs {
            bid: free_addr(),
            admin: free_addr(),
            notices: free_addr(),
        }
    }
}

/// The admin token of the test daemons (`admin_token_file` holds it).
pub const TOKEN: &str = "daemon-test-admin-token-0123456789abcdef";

/// Writes [`TOKEN`] into `dir`; the file's path.
pub fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("admin.token");
    std::fs::write(&path, format!("{TOKEN}\n")).expect("write the admin token");
    path
}

// ---- the daemon -------------------------------------------------------------------

/// A running `bidder run`; killed when dropped if it has not exited.
pub struct Daemon {
    pub child: Child,
    pub bid: SocketAddr,
    pub admin: SocketAddr,
    pub notices: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
    pub _dir: TempDir,
}

impl Daemon {
    /// Starts `bidder run` on `customise(demo_config(..))` and waits for `/ready`.
    pub fn start(tag: &str, customise: impl Fn(String) -> String) -> Daemon {
        Daemon::start_with(tag, customise, spawn_run)
    }

    /// [`start`](Self::start), the child started by `spawn(config, log)`.
    pub fn start_with(
        tag: &str,
        customise: impl Fn(String) -> String,
        spawn: impl Fn(&Path, &Path) -> Child,
    ) -> Daemon {
        Daemon::start_until(tag, customise, spawn, Daemon::answers_ready)
    }

    /// `/ready` answers 200.
    pub fn answers_ready(&self) -> bool {
        matches!(try_admin(self.admin, "GET", "/ready", b""), Ok((200, _)))
    }

    /// [`start_with`](Self::start_with), ready when `ready` says so.
    pub fn start_until(
        tag: &str,
        customise: impl Fn(String) -> String,
        spawn: impl Fn(&Path, &Path) -> Child,
        ready: impl Fn(&Daemon) -> bool,
    ) -> Daemon {
        for _ in 0..START_ATTEMPTS {
            let addrs = Addrs::free();
            let dir = TempDir::new(tag);
            let config = dir.0.join("bidder.toml");
            let log = dir.0.join("bidder.log");
            // Strategy and stats tables of its own: no state shared with other bidders
            // (or tests) on this host.
            let tables = format!(
                "\n[strategy]\ntable_path = \"{}\"\nstats_path = \"{}\"\n",
                dir.0.join("strategy").display(),
                dir.0.join("stats").display()
            );
            let text = customise(demo_config(&addrs, &token_file(&dir.0))) + &tables;
            std::fs::write(&config, text).expect("write config");
            let child = spawn(&config, &log);
            let mut daemon = Daemon {
                child,
                bid: addrs.bid,
                admin: addrs.admin,
                notices: addrs.notices,
                config,
                log,
                _dir: dir,
            };
            match daemon.wait_for(&ready) {
                Ok(()) => return daemon,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("bidder run did not become ready:\n{log}"),
            }
        }
        panic!("no free ports after {START_ATTEMPTS} attempts");
    }

    /// Polls `/ready` until 200; the log if the daemon exits or time runs out.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        self.wait_for(Daemon::answers_ready)
    }

    /// Polls `ready` until it holds; the log if the daemon exits or time runs out.
    pub fn wait_for(&mut self, ready: impl Fn(&Daemon) -> bool) -> Result<(), String> {
        let until = Instant::now() + READY_TIMEOUT;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if ready(self) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "not ready within {READY_TIMEOUT:?}:\n{}",
            self.log()
        ))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped (we
        // hold its `Child` and only wait through it), so the pid cannot be reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits for the daemon to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for bidder") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "still running {limit:?} later:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn admin(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        try_admin(self.admin, method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// A notice (path and query) sent to the notice listener.
    pub fn notice(&self, path: &str) -> (u16, String) {
        testkit::http::exchange(self.notices, "GET", path, "", b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()))
    }

    /// Bids on a one-banner request on a fresh connection; the price, or `None` for
    /// any other answer than a 200 bid.
    pub fn price(&self) -> Option<f64> {
        let mut c = Client::connect(self.bid);
        let resp = c.post("/bid/exchange-a", banner("p").as_bytes());
        if resp.status != 200 {
            return None;
        }
        resp.json()["seatbid"][0]["bid"][0]["price"].as_f64()
    }

    pub fn metrics(&self) -> String {
        let (status, text) = self.admin("GET", "/metrics", b"");
        assert_eq!(status, 200);
        text
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str) {
        eventually(CLIENT_TIMEOUT, needle, || self.log().contains(needle));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `bidder run --config config`, its output appended to `log`.
pub fn spawn_run(config: &Path, log: &Path) -> Child {
    let mut run = Command::new(BIDDER);
    run.args(["run", "--config"]).arg(config);
    spawn_logged(run, log)
}

/// Spawns `command`, its output appended to `log`.
pub fn spawn_logged(mut command: Command, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log handle"))
        .stderr(out)
        .spawn()
        .expect("spawn bidder run")
}

/// One control-port request on its own connection; the status and body.
pub fn try_admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    testkit::http::exchange(addr, method, path, &auth, body)
}
