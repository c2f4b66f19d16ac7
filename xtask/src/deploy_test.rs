//! `cargo xtask deploy-test`: the Ansible playbook converged for real into a booted
//! Debian 12 — systemd as PID 1 in `systemd-nspawn`, reached over SSH on a veth — and
//! the result checked from outside the way an operator would.
//!
//! Steps: the release archive (`dist`, debug binaries: the tests already built them);
//! a Debian 12 root file system (debootstrap, cached under `target/deploy-test/`); a
//! throwaway copy booted with its own network; the playbook twice (the second must
//! change nothing); then a bid over the veth, the XDP front attached, a reload that
//! changes a campaign, `kill -9` answered by systemd, the sysctls, `systemd-analyze`.
//! The container and its copy are removed afterwards, also when a step fails.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use crate::{command, dist, paths};

/// The machine's name, and with it the host side of its veth (`ve-` + name).
const MACHINE: &str = "bidder-dt";
const HOST_LINK: &str = "ve-bidder-dt";
/// The veth's /30: the host end and the container end (`host0`).
const HOST_ADDR: &str = "10.231.0.1/30";
const GUEST_IP: &str = "10.231.0.2";
/// Bumped when the cached root file system's recipe changes.
const ROOTFS_RECIPE: &str = "bookworm minbase systemd openssh python3 v1";
const ROOTFS_PACKAGES: &str =
    "systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,iproute2,ca-certificates";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Longest wait for the container's sshd, and for systemd to bring the bidder back.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run() -> Result<()> {
    let started = Instant::now();
    let base = paths::target_dir().join("deploy-test");
    fs::create_dir_all(&base)?;

    let archive = dist::run(dist::Profile::Debug)?;
    step(started, "release archive", &archive.display().to_string());
    let rootfs = cached_rootfs(&base)?;
    step(started, "root file system", &rootfs.display().to_string());

    let machine = Machine::boot(&base, &rootfs)?;
    machine.wait_for_ssh()?;
    step(started, "container booted, sshd answers", GUEST_IP);

    let inventory = write_inventory(&base, &machine, &archive)?;
    let first = Instant::now();
    let recap = converge(&machine, &inventory, &[])?;
    let first_s = first.elapsed().as_secs_f64();
    step(
        started,
        "first converge",
        &format!("{first_s:.0}s, {recap}"),
    );

    let second = Instant::now();
    let recap = converge(&machine, &inventory, &[])?;
    let second_s = second.elapsed().as_secs_f64();
    ensure!(
        recap.contains("changed=0") && recap.contains("failed=0"),
        "the second converge changed something: {recap}"
    );
    step(
        started,
        "second converge (idempotent)",
        &format!("{second_s:.0}s, {recap}"),
    );

    let recap = converge(
        &machine,
        &inventory,
        &[
            "--check",
            "--tags",
            "host_sysctls",
            "-e",
            "host_tuning_host_sysctls=true",
        ],
    )?;
    ensure!(
        recap.contains("failed=0"),
        "host-wide sysctls in --check mode: {recap}"
    );
    step(started, "host-wide sysctls in --check mode", &recap);

    machine.check_services()?;
    machine.check_xdp()?;
    let price = bid_price()?.context("no bid from outside the container")?;
    step(started, "bid over the veth", &format!("200, price {price}"));
    machine.check_sysctls()?;
    machine.check_reload(price)?;
    machine.check_admin_token()?;
    machine.check_restart_after_kill()?;
    machine.report_units()?;
    check_monitoring(&base)?;
    println!(
        "deploy-test: OK in {:.0}s (converge {first_s:.0}s first, {second_s:.0}s second)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(started: Instant, what: &str, detail: &str) {
    println!(
        "deploy-test: [{:>4.0}s] {what}: {detail}",
        started.elapsed().as_secs_f64()
    );
}

/// A Debian 12 root file system with sshd, python3 and a key for root; built once with
/// debootstrap and reused while its recipe is unchanged.
fn cached_rootfs(base: &Path) -> Result<PathBuf> {
    let rootfs = base.join("rootfs");
    let marker = base.join("rootfs.recipe");
    if fs::read_to_string(&marker).ok().as_deref() == Some(ROOTFS_RECIPE) {
        return Ok(rootfs);
    }
    let _ = fs::remove_file(&marker);
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)?;
    }
    let building = Instant::now();
    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .args([
            "--variant=minbase",
            "--include",
            ROOTFS_PACKAGES,
            "bookworm",
        ])
        .arg(&rootfs)
        .arg(MIRROR)
        .stdout(Stdio::null());
    command::output(&mut debootstrap).context("debootstrap of Debian 12")?;

    let key = base.join("id_ed25519");
    if !key.exists() {
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key);
        command::output(&mut keygen)?;
    }
    let ssh_dir = rootfs.join("root/.ssh");
    fs::create_dir_all(&ssh_dir)?;
    fs::copy(key.with_extension("pub"), ssh_dir.join("authorized_keys"))?;
    let network = rootfs.join("etc/systemd/network");
    fs::create_dir_all(&network)?;
    fs::write(
        network.join("10-host0.network"),
        format!("[Match]\nName=host0\n\n[Network]\nAddress={GUEST_IP}/30\n"),
    )?;
    std::os::unix::fs::symlink(
        "/lib/systemd/system/systemd-networkd.service",
        rootfs.join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service"),
    )?;
    fs::write(&marker, ROOTFS_RECIPE)?;
    println!(
        "deploy-test: debootstrap took {:.0}s",
        building.elapsed().as_secs_f64()
    );
    Ok(rootfs)
}

/// A booted container on a throwaway copy of the root file system. Dropping it powers
/// the container off, removes the copy and the host's end of the veth.
struct Machine {
    nspawn: Child,
    dir: PathBuf,
    bpffs: PathBuf,
    key: PathBuf,
    log: PathBuf,
}

impl Machine {
    fn boot(base: &Path, rootfs: &Path) -> Result<Machine> {
        let dir = base.join("machine");
        let bpffs = base.join("bpffs");
        stop_leftover(&dir, &bpffs)?;
        // nspawn's /sys has no fs/bpf; a private bpffs instance takes its place (what
        // systemd mounts on a host, and bidder-bpffs.service where it does not).
        fs::create_dir_all(&bpffs)?;
        command::output(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&bpffs))
            .context("mounting a bpffs for the container")?;
        let mut copy = Command::new("cp");
        copy.args(["-a", "--reflink=auto"]).arg(rootfs).arg(&dir);
        command::output(&mut copy).context("copying the root file system")?;
        let log = base.join("nspawn.log");
        let out = fs::File::create(&log)?;
        let nspawn = Command::new("systemd-nspawn")
            .arg("--directory")
            .arg(&dir)
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--capability=all",
                "--network-veth",
                "--machine",
                MACHINE,
            ])
            .arg(format!("--bind={}:/sys/fs/bpf", bpffs.display()))
            // nspawn's seccomp filter refuses these by default; a host has no such
            // filter, the unit's own SystemCallFilter= allows exactly them.
            .arg("--system-call-filter=bpf io_uring_setup io_uring_enter io_uring_register")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting systemd-nspawn (package systemd-container)")?;
        let machine = Machine {
            nspawn,
            dir,
            bpffs,
            key: base.join("id_ed25519"),
            log,
        };
        machine.address_host_link()?;
        Ok(machine)
    }

    /// Gives the host's end of the veth its address once nspawn has made it.
    fn address_host_link(&self) -> Result<()> {
        let until = Instant::now() + BOOT_TIMEOUT;
        while Command::new("ip")
            .args(["link", "show", HOST_LINK])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            ensure!(
                Instant::now() < until,
                "nspawn made no {HOST_LINK}:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
        command::output(Command::new("ip").args(["addr", "replace", HOST_ADDR, "dev", HOST_LINK]))?;
        command::output(Command::new("ip").args(["link", "set", HOST_LINK, "up"]))?;
        Ok(())
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ssh_command(&self, remote: &str) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.arg("-i").arg(&self.key).args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "BatchMode=yes",
            &format!("root@{GUEST_IP}"),
            remote,
        ]);
        ssh
    }

    /// Runs `remote` in the container; its stdout, or an error with what it printed.
    fn ssh(&self, remote: &str) -> Result<String> {
        let out = self
            .ssh_command(remote)
            .stdin(Stdio::null())
            .output()
            .context("running ssh")?;
        if !out.status.success() {
            bail!(
                "`{remote}` in the container failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wait_for_ssh(&self) -> Result<()> {
        let until = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Ok(state) = self.ssh("systemctl is-system-running --wait") {
                println!("deploy-test: container systemd: {}", state.trim());
                return Ok(());
            }
            ensure!(
                Instant::now() < until,
                "no ssh into the container within {BOOT_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(500));
        }
    }

    fn check_services(&self) -> Result<()> {
        let states = self.ssh("systemctl is-active bidder.service bidder-agent.service")?;
        ensure!(
            states.lines().all(|l| l == "active") && states.lines().count() == 2,
            "services not active: {states}"
        );
        println!("deploy-test: bidder.service and bidder-agent.service active");
        Ok(())
    }

    fn check_xdp(&self) -> Result<()> {
        let status = self.ssh("bidder xdp status --json")?;
        let json: serde_json::Value =
            serde_json::from_str(&status).with_context(|| format!("xdp status: {status}"))?;
        ensure!(
            json["attached"] == true && json["interface"] == "host0",
            "the XDP front is not attached to host0: {status}"
        );
        println!(
            "deploy-test: XDP attached to host0 in {} mode",
            json["mode"].as_str().unwrap_or("?")
        );
        Ok(())
    }

    /// The per-namespace sysctls are in effect inside the container.
    fn check_sysctls(&self) -> Result<()> {
        let values = self.ssh("sysctl -n net.core.somaxconn net.ipv4.tcp_max_syn_backlog")?;
        ensure!(
            values.split_whitespace().eq(["65535", "65535"]),
            "per-namespace sysctls not in effect: {values}"
        );
        println!("deploy-test: net.core.somaxconn and net.ipv4.tcp_max_syn_backlog = 65535");
        Ok(())
    }

    /// `systemctl reload bidder` applies a campaign edited on the host.
    fn check_reload(&self, price: f64) -> Result<()> {
        self.ssh(
            "sed -i 's/^base_cpm_micros = 2000000$/base_cpm_micros = 3000000/' \
             /etc/bidder/bidder.toml && systemctl reload bidder.service",
        )?;
        let until = Instant::now() + RESTART_TIMEOUT;
        loop {
            let now = bid_price()?;
            if let Some(raised) = now.filter(|p| *p > price) {
                println!("deploy-test: reload applied: price {price} -> {raised}");
                return Ok(());
            }
            ensure!(
                Instant::now() < until,
                "after `systemctl reload bidder` the price is still {now:?}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The admin listener refuses `POST /reload` without the token the role created,
    /// and `bidderctl reload` (agent → bidder with the token) is applied; the notice
    /// listener serves notices only.
    fn check_admin_token(&self) -> Result<()> {
        let admin: SocketAddr = format!("{GUEST_IP}:9090").parse()?;
        let (status, _) = testkit::http::exchange(admin, "POST", "/reload", "", b"")?;
        ensure!(
            status == 401,
            "POST /reload without a token: {status}, not 401"
        );
        let answer = self.ssh("/opt/bidder/current/bin/bidderctl reload")?;
        ensure!(
            answer.contains("reloaded"),
            "bidderctl reload with the token: {answer}"
        );
        let notices: SocketAddr = format!("{GUEST_IP}:9091").parse()?;
        let (status, _) = testkit::http::exchange(notices, "GET", "/metrics", "", b"")?;
        ensure!(
            status == 404,
            "GET /metrics on the notice listener: {status}, not 404"
        );
        let (status, _) = testkit::http::exchange(notices, "GET", "/notice/win?bid=x", "", b"")?;
        ensure!(status == 400, "an unsigned notice: {status}, not 400");
        println!("deploy-test: admin token: 401 without, bidderctl reload applied; notice listener apart");
        Ok(())
    }

    /// `kill -9` of the bidder: systemd starts a new one, which serves.
    fn check_restart_after_kill(&self) -> Result<()> {
        let pid = self.ssh("systemctl show -p MainPID --value bidder.service")?;
        let pid = pid.trim().to_owned();
        ensure!(pid != "0", "bidder has no main pid");
        self.ssh(&format!("kill -9 {pid}"))?;
        let killed = Instant::now();
        loop {
            let now = self
                .ssh("systemctl show -p MainPID --value bidder.service")
                .unwrap_or_default();
            let now = now.trim();
            if now != pid && now != "0" && bid_price().ok().flatten().is_some() {
                println!(
                    "deploy-test: kill -9 {pid}: systemd restarted it as {now}, bidding again \
                     after {:.1}s",
                    killed.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            ensure!(
                killed.elapsed() < RESTART_TIMEOUT,
                "no bidder serving {RESTART_TIMEOUT:?} after kill -9:\n{}",
                self.ssh("systemctl status bidder.service --no-pager; journalctl -u bidder --no-pager -n 30")
                    .unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// `systemd-analyze verify` of the installed units (must print nothing) and their
    /// security exposure.
    fn report_units(&self) -> Result<()> {
        let units = "/etc/systemd/system/bidder.target /etc/systemd/system/bidder.service \
                     /etc/systemd/system/bidder-agent.service /etc/systemd/system/bidder-bpffs.service";
        let verify = self.ssh(&format!("systemd-analyze verify --man=no {units} 2>&1"))?;
        ensure!(verify.trim().is_empty(), "systemd-analyze verify: {verify}");
        for unit in ["bidder.service", "bidder-agent.service"] {
            let security = self.ssh(&format!(
                "systemd-analyze security --no-pager {unit} | tail -n 1"
            ))?;
            println!("deploy-test: {}", security.trim());
        }
        Ok(())
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM asks nspawn to power the container off cleanly; then make sure.
        let _ = Command::new("kill")
            .args(["-TERM", &self.nspawn.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        let _ = stop_leftover(&self.dir, &self.bpffs);
    }
}

/// Removes what an earlier run left behind: its link, its bpffs and its copy.
fn stop_leftover(dir: &Path, bpffs: &Path) -> Result<()> {
    let _ = Command::new("ip")
        .args(["link", "del", HOST_LINK])
        .stderr(Stdio::null())
        .status();
    while Command::new("mountpoint")
        .arg("-q")
        .arg(bpffs)
        .status()
        .is_ok_and(|s| s.success())
    {
        command::output(Command::new("umount").arg(bpffs))?;
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// The test's inventory: the container as one bidder host, the release archive, and
/// what a container cannot do turned off (host-wide sysctls, checked in --check mode).
fn write_inventory(base: &Path, machine: &Machine, archive: &Path) -> Result<PathBuf> {
    let path = base.join("inventory.yml");
    let text = format!(
        r#"---
all:
  children:
    bidders:
      hosts:
        {MACHINE}:
          ansible_host: {GUEST_IP}
          ansible_user: root
          ansible_ssh_private_key_file: {key}
          ansible_ssh_common_args: "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
      vars:
        bidder_worker_cores: [1]
        host_tuning_housekeeping_cores: [0]
        host_tuning_host_sysctls: false
        bidder_interface: host0
        bidder_listen: "0.0.0.0:8080"
        bidder_admin_listen: "0.0.0.0:9090"
        agent_metrics_listen: "0.0.0.0:9097"
        bidder_notice_listen: "0.0.0.0:9091"
        bidder_notice_base_url: "http://{GUEST_IP}:9091/notice"
        bidder_notice_key: "deploy-test notice key, not a secret: 0123456789abcdef"
        bidder_dist_archive: {archive}
        bidder_partners:
          - name: exchange-a
            cidrs: ["10.231.0.0/30", "127.0.0.0/8"]
            qps_limit: 5000
            burst: 500
        bidder_campaigns:
          - id: acme-display
            advertiser: Acme Outdoor
            daily_budget_micros: 500000000
            max_bid_cpm_micros: 5000000
            base_cpm_micros: 2000000
            targeting:
              media: [banner]
              sizes: ["300x250"]
            creative:
              - id: acme-mrec
                format: banner
                w: 300
                h: 250
                adomain: [acme.example]
                adm: "<a href=\"https://acme.example/\"><img src=\"https://cdn.acme.example/m.png\"></a>"
"#,
        key = machine.key.display(),
        archive = archive.display(),
    );
    fs::write(&path, text)?;
    Ok(path)
}

/// Runs the playbook; the host's PLAY RECAP line (`ok=… changed=… failed=…`).
fn converge(machine: &Machine, inventory: &Path, extra: &[&str]) -> Result<String> {
    let root = paths::workspace_root();
    let mut play = Command::new("ansible-playbook");
    play.current_dir(root.join("ansible"))
        .arg("-i")
        .arg(inventory)
        .arg("site.yml")
        .args(extra)
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_NOCOLOR", "1");
    let out = play
        .stdin(Stdio::null())
        .output()
        .context("running ansible-playbook")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let journal = machine
            .ssh("journalctl --no-pager -n 60 -u bidder -u bidder-agent -u bidder-bpffs")
            .unwrap_or_else(|e| format!("(no journal: {e:#})"));
        bail!(
            "ansible-playbook {} failed ({}):\n{stdout}{}\nthe units' journal in the container:\n{journal}",
            extra.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let recap = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with(MACHINE) && l.contains("ok="))
        .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
        .with_context(|| format!("no PLAY RECAP in:\n{stdout}"))?;
    Ok(recap)
}

/// A one-banner bid request from outside the container, over the veth; the price of a
/// 200 answer, `None` for any other answer.
fn bid_price() -> Result<Option<f64>> {
    let addr: SocketAddr = format!("{GUEST_IP}:8080").parse()?;
    let body = br#"{"id":"dt","imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"news.example","page":"https://news.example/"},"device":{"ua":"Mozilla/5.0","ip":"203.0.113.9"},"tmax":120}"#;
    let Ok((status, text)) = testkit::http::exchange(
        addr,
        "POST",
        "/bid/exchange-a",
        "Content-Type: application/json\r\n",
        body,
    ) else {
        return Ok(None);
    };
    if status != 200 {
        return Ok(None);
    }
    let json: serde_json::Value = serde_json::from_str(&text).context("bid response")?;
    Ok(json["seatbid"][0]["bid"][0]["price"].as_f64())
}

/// Longest wait for a recording rule's first evaluation over complete windows: two of
/// the recording group's 15 s intervals.
const RECORDING_WAIT: Duration = Duration::from_secs(30);

/// A real Prometheus on this host scrapes the container's bidder every second with the
/// rules in `monitoring/` loaded, while bids flow over the veth; then every rule must be
/// healthy, every recording rule and every dashboard panel query must return data, and
/// every bidder metric an alert reads must exist.
fn check_monitoring(base: &Path) -> Result<()> {
    let monitoring = paths::workspace_root().join("monitoring");
    let dir = base.join("prometheus");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n\
             \x20 - job_name: bidder\n    static_configs:\n      - targets: ['{GUEST_IP}:9090']\n\
             \x20 - job_name: bidder-agent\n    static_configs:\n      - targets: ['{GUEST_IP}:9097']\n",
            monitoring.join("prometheus/bidder.rules.yml").display()
        ),
    )?;
    let log = fs::File::create(dir.join("prometheus.log"))?;
    let prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting prometheus (Debian package prometheus)")?;
    let _stop = KillOnDrop(prometheus);
    let api: SocketAddr = format!("127.0.0.1:{port}").parse()?;

    // Load: bids over the veth until Prometheus holds ten successful scrapes of the
    // bidder and of the agent (so every rate window has samples) and at least a few
    // seconds of traffic, bounded.
    let load_started = Instant::now();
    let mut bids = 0;
    loop {
        for _ in 0..50 {
            if bid_price()?.is_some() {
                bids += 1;
            }
        }
        let scraped = query_result(
            api,
            "sum_over_time(up{job=~\"bidder|bidder-agent\"}[1m]) >= 10",
        )?;
        if scraped.len() == 2 && load_started.elapsed() > Duration::from_secs(5) {
            break;
        }
        ensure!(
            load_started.elapsed() < BOOT_TIMEOUT,
            "Prometheus did not scrape the bidder and the agent ten times each in \
             {BOOT_TIMEOUT:?}: {}",
            prometheus_api(api, "/api/v1/targets", None)?["data"]["activeTargets"]
        );
    }
    // Two more rule rounds over the complete windows.
    thread::sleep(Duration::from_secs(2));
    ensure!(bids > 0, "no bid under load");

    // Every rule evaluated at least once (health leaves "unknown"), bounded.
    let until = Instant::now() + BOOT_TIMEOUT;
    let rules = loop {
        let rules = prometheus_api(api, "/api/v1/rules", None)?;
        let pending = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .any(|r| r["health"] == "unknown");
        if !pending || Instant::now() >= until {
            break rules;
        }
        thread::sleep(Duration::from_millis(500));
    };
    let mut checked_rules = 0;
    let mut alert_metrics = std::collections::BTreeSet::new();
    for group in rules["data"]["groups"].as_array().context("rule groups")? {
        for rule in group["rules"].as_array().context("rules")? {
            let name = rule["name"].as_str().unwrap_or("?");
            ensure!(
                rule["health"] == "ok",
                "rule {name} is unhealthy: {}",
                rule["lastError"]
            );
            let query = rule["query"].as_str().unwrap_or_default();
            if rule["type"] == "recording" {
                // A group evaluates on its own interval (15 s for the recording rules),
                // so its first evaluation over complete windows may still be ahead:
                // wait for it, bounded by two intervals.
                let until = Instant::now() + RECORDING_WAIT;
                while query_result(api, name)?.is_empty() {
                    ensure!(
                        Instant::now() < until,
                        "recording rule {name} has no data after {RECORDING_WAIT:?}; the \
                         scrape: {}",
                        prometheus_api(api, "/api/v1/targets", None)?["data"]["activeTargets"]
                    );
                    thread::sleep(Duration::from_millis(500));
                }
            } else {
                alert_metrics.extend(metric_names(query));
            }
            checked_rules += 1;
        }
    }
    for metric in &alert_metrics {
        ensure!(
            !query_result(api, metric)?.is_empty(),
            "an alert reads {metric}, which the bidder does not export"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(&fs::read_to_string(
        monitoring.join("grafana/bidder-overview.json"),
    )?)?;
    let mut checked_queries = 0;
    for panel in dashboard["panels"].as_array().context("panels")? {
        for target in panel["targets"].as_array().context("targets")? {
            let expr = target["expr"].as_str().context("expr")?;
            ensure!(
                !query_result(api, expr)?.is_empty(),
                "dashboard panel {:?}: `{expr}` returned no data",
                panel["title"]
            );
            checked_queries += 1;
        }
    }
    println!(
        "deploy-test: Prometheus scraped the bidder under load ({bids} bids) and the agent: \
         {checked_rules} rules healthy, {} metrics read by alerts exported, \
         {checked_queries} dashboard queries return data",
        alert_metrics.len()
    );
    Ok(())
}

/// Kills the child when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET of a Prometheus API path with optional `query=` (curl: the API answers chunked),
/// retried while Prometheus starts (bounded).
fn prometheus_api(api: SocketAddr, path: &str, query: Option<&str>) -> Result<serde_json::Value> {
    let until = Instant::now() + BOOT_TIMEOUT;
    loop {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--fail", "--max-time", "10", "--get"])
            .arg(format!("http://{api}{path}"));
        if let Some(promql) = query {
            curl.arg("--data-urlencode").arg(format!("query={promql}"));
        }
        match command::probe(&mut curl) {
            Some(body) => return Ok(serde_json::from_str(&body)?),
            None if Instant::now() >= until => bail!("prometheus {path} {query:?}: no answer"),
            None => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// An instant query's result vector (empty: no data).
fn query_result(api: SocketAddr, promql: &str) -> Result<Vec<serde_json::Value>> {
    let answer = prometheus_api(api, "/api/v1/query", Some(promql))?;
    ensure!(answer["status"] == "success", "query `{promql}`: {answer}");
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The `bidder_…` metric names a PromQL expression reads.
fn metric_names(promql: &str) -> Vec<String> {
    promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("bidder_"))
        .map(str::to_owned)
        .collect()
}
