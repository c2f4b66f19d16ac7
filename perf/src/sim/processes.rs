//! The bidder (and, for the controller, the agent) as the simulator runs them: real
//! binaries in simulation mode on configurations written into the run's folder, on
//! free loopback ports, stopped (SIGTERM, then SIGKILL) when the run ends.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::http::Conn;

/// The simulated campaign's id and the exchange's partner name.
pub const CAMPAIGN: &str = "sim-display";
pub const PARTNER: &str = "sim-exchange";
/// How long a process may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process may take to exit after SIGTERM before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Starts tried when a free port was taken by another process first.
const START_ATTEMPTS: usize = 3;
/// A fixed notice key: the simulator's runs are throwaway.
const NOTICE_KEY: &str = "auction-sim-notice-key-0123456789abcdef0123456789";

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub bidder: PathBuf,
    pub agent: PathBuf,
}

/// What the bidder is configured with for one run.
#[derive(Debug, Clone)]
pub struct BidderSetup {
    pub daily_budget_micros: i64,
    pub value_cpm_micros: i64,
    pub max_bid_cpm_micros: i64,
    /// `[bidding] default_shading_ppm`: the static baselines' shading.
    pub shading_ppm: u32,
    /// The campaign's `floor_markup_ppm` (the floor × 1.10 baseline).
    pub floor_markup_ppm: Option<u32>,
    /// Banner sizes the campaign has creatives for.
    pub sizes: Vec<(u32, u32)>,
}

/// A running bidder (and agent) for one simulated day.
pub struct Stack {
    bidder: Child,
    agent: Option<Child>,
    pub bid: SocketAddr,
    pub admin: SocketAddr,
    pub notices: SocketAddr,
    /// The agent's control socket, when one runs.
    pub agent_socket: Option<PathBuf>,
    pub dir: PathBuf,
}

/// Three distinct free loopback addresses: the listeners are held together while
/// their ports are read, so the kernel cannot hand out one port twice.
fn free_addrs() -> Result<(SocketAddr, SocketAddr, SocketAddr)> {
    let listeners = [
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
    ];
    Ok((
        listeners[0].local_addr()?,
        listeners[1].local_addr()?,
        listeners[2].local_addr()?,
    ))
}

impl Stack {
    /// Writes the configurations into `dir` and starts the bidder on `clock_file`;
    /// with `agent_config`, the agent too (its table and socket paths are set here).
    pub fn start(
        bins: &Binaries,
        dir: &Path,
        clock_file: &Path,
        setup: &BidderSetup,
        agent_config: Option<&str>,
    ) -> Result<Stack> {
        // Another process may take a free port between our probe and the bidder's
        // bind: that start is tried again on other ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Stack::start_once(bins, dir, clock_file, setup, agent_config) {
                Err(e)
                    if attempt < START_ATTEMPTS
                        && e.to_string().contains("Address already in use") => {}
                other => return other,
            }
        }
    }

    fn start_once(
        bins: &Binaries,
        dir: &Path,
        clock_file: &Path,
        setup: &BidderSetup,
        agent_config: Option<&str>,
    ) -> Result<Stack> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (bid, admin, notices) = free_addrs()?;
        let key = dir.join("notice.key");
        std::fs::write(&key, NOTICE_KEY)?;
        let config = dir.join("bidder.toml");
        std::fs::write(
            &config,
            bidder_config(setup, dir, clock_file, bid, admin, notices),
        )?;
        let bidder = spawn(
            &bins.bidder,
            &["run", "--simulate"],
            &config,
            &dir.join("bidder.log"),
        )?;
        let mut stack = Stack {
            bidder,
            agent: None,
            bid,
            admin,
            notices,
            agent_socket: None,
            dir: dir.to_path_buf(),
        };
        stack.wait_ready()?;
        if let Some(extra) = agent_config {
            let socket = dir.join("agent.sock");
            let config = dir.join("agent.toml");
            std::fs::write(&config, agent_toml(dir, clock_file, &socket, admin, extra))?;
            let agent = spawn(
                &bins.agent,
                &["--simulate"],
                &config,
                &dir.join("agent.log"),
            )?;
            stack.agent = Some(agent);
            let until = Instant::now() + READY_TIMEOUT;
            while std::os::unix::net::UnixStream::connect(&socket).is_err() {
                if let Some(Ok(Some(status))) = stack.agent.as_mut().map(Child::try_wait) {
                    bail!("the agent exited with {status}: {}", stack.log("agent.log"));
                }
                if Instant::now() > until {
                    bail!(
                        "the agent's socket did not appear: {}",
                        stack.log("agent.log")
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            stack.agent_socket = Some(socket);
        }
        Ok(stack)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let until = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.bidder.try_wait()? {
                bail!(
                    "the bidder exited with {status}: {}",
                    self.log("bidder.log")
                );
            }
            if let Ok((200, _)) = Conn::new(self.admin).send("GET", "/ready", b"") {
                return Ok(());
            }
            if Instant::now() > until {
                bail!(
                    "the bidder was not ready in time: {}",
                    self.log("bidder.log")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A log of this run, for an error message.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// One request on the agent's control socket; its `result`.
    pub fn agent_call(&self, request: &str) -> Result<serde_json::Value> {
        use std::io::{BufRead, BufReader, Write};
        let socket = self.agent_socket.as_ref().context("no agent runs")?;
        let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(READY_TIMEOUT))?;
        stream.write_all(request.as_bytes())?;
        stream.write_all(b"\n")?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        let answer: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("the agent answered {line:?}"))?;
        if answer["ok"] != true {
            bail!("the agent refused {request}: {}", answer["error"]);
        }
        Ok(answer["result"].clone())
    }

    /// The bidder's `/metrics`.
    pub fn metrics(&self) -> Result<String> {
        let (status, body) = Conn::new(self.admin).send("GET", "/metrics", b"")?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Stops the agent and the bidder; an error if either did not exit 0.
    pub fn stop(mut self) -> Result<()> {
        let mut problems = Vec::new();
        if let Some(agent) = self.agent.take() {
            if let Err(e) = terminate(agent, "agent") {
                problems.push(e.to_string());
            }
        }
        let bidder = std::mem::replace(&mut self.bidder, Command::new("true").spawn()?);
        if let Err(e) = terminate(bidder, "bidder") {
            problems.push(format!("{e}: {}", self.log("bidder.log")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("; "))
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.bidder).chain(self.agent.as_mut()) {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `binary args --config config`, warnings and worse logged to `log`.
fn spawn(binary: &Path, args: &[&str], config: &Path, log: &Path) -> Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new(binary)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

fn terminate(mut child: Child, name: &str) -> Result<()> {
    let pid = libc::pid_t::try_from(child.id()).context("pid")?;
    // SAFETY: kill(2) on our own child, not yet reaped (we hold its `Child`).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let until = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("the {name} exited with {status}");
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the {name} did not exit within {EXIT_TIMEOUT:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn bidder_config(
    s: &BidderSetup,
    dir: &Path,
    clock_file: &Path,
    bid: SocketAddr,
    admin: SocketAddr,
    notices: SocketAddr,
) -> String {
    let markup = s
        .floor_markup_ppm
        .map(|ppm| format!("floor_markup_ppm = {ppm}\n"))
        .unwrap_or_default();
    let creatives: String = s
        .sizes
        .iter()
        .map(|(w, h)| {
            format!(
                "  [[campaign.creative]]\n  id = \"banner-{w}x{h}\"\n  format = \"banner\"\n  w = {w}\n  h = {h}\n  adomain = [\"sim.example\"]\n  adm = \"<div>sim</div>\"\n"
            )
        })
        .collect();
    format!(
        r#"# Written by auction-sim for one simulated day; not a production configuration.
[server]
listen = "{bid}"
admin_listen = "{admin}"
engine = "io_uring"
cores = [0]

[bidding]
seat = "sim"
currency = "USD"
host_id = 1
default_shading_ppm = {shading}
# The simulated exchange waits for every answer: a hiccup of this host must not turn a
# bid into a late no-bid, which would make two runs of one seed differ.
network_allowance_ms = 0
deadline_cap_ms = 1000
# A bid's money waits up to 10 simulated minutes for its notice (this caps the
# partner's horizon below; with unnoticed_bids = "charge" a shorter one would charge
# the lost bids among the slowest notices).
reservation_ttl_ms = 600_000

[notice]
base_url = "http://{notices}/notice"
hmac_key_file = "notice.key"
listen = "{notices}"

# The baselines are unpaced on purpose: the breaker would pause them at noon.
[breaker]
spend_rate_multiple = 0

[[partner]]
name = "{PARTNER}"
cidrs = ["127.0.0.0/8"]
qps_limit = 1_000_000
burst = 1_000_000
# Notices come late in simulated time; bids hold their price for 10 simulated minutes.
notice_horizon_ms = 600_000
# The simulated exchange sends a notice for every bid: silence is a lost notice.
unnoticed_bids = "charge"

[[campaign]]
id = "{CAMPAIGN}"
advertiser = "Simulated"
daily_budget_micros = {budget}
time_zone = "UTC"
max_bid_cpm_micros = {max_bid}
base_cpm_micros = {value}
{markup}  [campaign.targeting]
  media = ["banner"]
{creatives}
# The controller steps on fresh figures: the simulator asks it to wait for two
# publications, which come every 10 ms here.
[strategy]
table_path = "{dir}/strategy"
stats_path = "{dir}/stats"
stats_interval_ms = 10

[simulation]
clock_file = "{clock}"
"#,
        shading = s.shading_ppm,
        budget = s.daily_budget_micros,
        max_bid = s.max_bid_cpm_micros,
        value = s.value_cpm_micros,
        dir = dir.display(),
        clock = clock_file.display(),
    )
}

fn agent_toml(
    dir: &Path,
    clock_file: &Path,
    socket: &Path,
    admin: SocketAddr,
    extra: &str,
) -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    format!(
        r#"# Written by auction-sim for one simulated day; not a production configuration.
audit_log = "{dir}/audit.jsonl"
bidder_admin = "{admin}"
metrics_listen = ""

[socket]
path = "{socket}"
allowed_uids = [{uid}]

[tables]
strategy_path = "{dir}/strategy"
stats_path = "{dir}/stats"

[llm]
enabled = false

[simulation]
clock_file = "{clock}"

{extra}
"#,
        dir = dir.display(),
        socket = socket.display(),
        clock = clock_file.display(),
    )
}
