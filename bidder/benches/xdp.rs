//! CPU per over-limit request: dropped by the XDP front versus answered 204 by the
//! bidder's user-space limiter. `cargo bench -p bidder --bench xdp` (root), or
//! `cargo xtask bench xdp`. Both sides are measured in one run.
//!
//! - **XDP**: the kernel runs the program `XDP_REPEAT` times on a frame holding a whole
//!   bid request from a partner whose limit is 0 (`BPF_PROG_TEST_RUN`, which reports
//!   the mean time per run). That is the cost the front adds to a packet; the NIC
//!   driver's receive cost comes before it and is paid by every packet on either path.
//! - **User space**: `bidder run` (release, one worker pinned to CPU 0) with the same
//!   partner limited to 0 requests/s in user space answers every request with a fast
//!   204. Clients on CPU 1 keep `CONNECTIONS` keep-alive connections busy, pipelining
//!   `PIPELINE_DEPTH` requests each. The cost per request is the bidder process's CPU
//!   time (user + system, from `/proc/<pid>/stat`) and, wider, the whole host's busy
//!   time (`/proc/stat`) less the clients' own CPU time: that includes the loopback
//!   TCP stack's softirq work on the bidder's behalf.
//!
//! The goal is a ratio (XDP / user space) of at most 0.1.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, MapData};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::EbpfLoader;
use bidder::xdp::bpffs;
use bidder::xdp::object::XDP_OBJECT;
use bidder_common::xdp::{
    PartnerLimit, Settings, LIMITS_MAP, LIMIT_ENABLED, LIMIT_IN_USE, PARTNERS_V4_MAP, PROGRAM_NAME,
    SETTINGS_MAP,
};

const XDP_REPEAT: u32 = 2_000_000;
const BID_PORT: u16 = 18_180;
const CONNECTIONS: usize = 4;
const PIPELINE_DEPTH: usize = 16;
const USER_SPACE_RUN: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(15);
const XDP_DROP: u32 = 1;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list.
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(manifest.join("examples/traffic/01-site-banner.json"))
        .expect("read the sample request");
    let request = http_request(&body);

    let xdp_ns = xdp_drop_ns(&request);
    println!("xdp: {xdp_ns:.1} ns per packet dropped (mean of {XDP_REPEAT} runs)");

    let user = user_space_204(manifest, &request);
    println!(
        "user space: {} requests answered 204 in {:.2} s ({:.0} req/s)",
        user.requests,
        user.seconds,
        user.requests as f64 / user.seconds
    );
    let bidder_ns = user.bidder_cpu_s * 1e9 / user.requests as f64;
    let host_ns = user.host_cpu_s * 1e9 / user.requests as f64;
    println!("user space: {bidder_ns:.0} ns bidder CPU per request, {host_ns:.0} ns host CPU (clients excluded) per request");
    println!();
    println!("| path | CPU per over-limit request | ratio to user space (bidder / host) |");
    println!("|---|---:|---:|");
    println!(
        "| XDP drop | {xdp_ns:.1} ns | {:.4} / {:.4} |",
        xdp_ns / bidder_ns,
        xdp_ns / host_ns
    );
    println!("| bidder 204 (process) | {bidder_ns:.0} ns | 1 |");
    println!("| bidder 204 (host, clients excluded) | {host_ns:.0} ns | |");
    let ratio = xdp_ns / bidder_ns;
    println!(
        "\nratio {ratio:.4} (goal ≤ 0.1): {}",
        if ratio <= 0.1 { "met" } else { "MISSED" }
    );
}

/// A keep-alive bid request from the partner `exchange-a`.
fn http_request(body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /bid/exchange-a HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Mean ns per run of the XDP program on a frame carrying `request` from a partner
/// limited to 0 packets/s, which the program drops.
fn xdp_drop_ns(request: &[u8]) -> f64 {
    bpffs::ensure_mounted(Path::new("/sys/fs/bpf")).expect("mount bpffs (run as root)");
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/bidder-bench-{}", std::process::id()));
    std::fs::create_dir_all(&pin_dir).expect("pin dir on bpffs");
    let _cleanup = RemoveDir(pin_dir.clone());
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&pin_dir)
        .load(XDP_OBJECT)
        .expect("load the XDP object");
    let mut settings: Array<&mut MapData, Settings> =
        Array::try_from(ebpf.map_mut(SETTINGS_MAP).unwrap()).unwrap();
    let s = Settings {
        ports: [BID_PORT, 0, 0, 0],
        ..Settings::default()
    };
    settings.set(0, s, 0).unwrap();
    let mut limits: Array<&mut MapData, PartnerLimit> =
        Array::try_from(ebpf.map_mut(LIMITS_MAP).unwrap()).unwrap();
    let mut limit = PartnerLimit {
        flags: LIMIT_IN_USE | LIMIT_ENABLED,
        ..PartnerLimit::default() // rate 0: shut off
    };
    limit.set_name("exchange-a");
    limits.set(0, limit, 0).unwrap();
    let mut partners: LpmTrie<&mut MapData, [u8; 4], u32> =
        LpmTrie::try_from(ebpf.map_mut(PARTNERS_V4_MAP).unwrap()).unwrap();
    partners.insert(&Key::new(8, [10, 0, 0, 0]), 0, 0).unwrap();
    let program: &mut Xdp = ebpf.program_mut(PROGRAM_NAME).unwrap().try_into().unwrap();
    program.load().expect("the verifier accepts the program");
    let frame = frame_v4_tcp([10, 1, 2, 3], BID_PORT, request);
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            repeat: XDP_REPEAT,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(result.return_value, XDP_DROP, "the frame must be dropped");
    // The kernel reports the mean duration of one run.
    result.duration.as_nanos() as f64
}

/// Ethernet + IPv4 + TCP (ACK|PSH) frame from `src` carrying `payload`.
fn frame_v4_tcp(src: [u8; 4], dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend([0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend(total.to_be_bytes());
    ip.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
    ip.extend(src);
    ip.extend([10, 0, 0, 1]);
    frame.extend(ip);
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    frame.extend(tcp);
    frame.extend(payload);
    frame
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        // Unlinking a pin removes it; the objects go when nothing else holds them.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct UserSpace {
    requests: u64,
    seconds: f64,
    bidder_cpu_s: f64,
    host_cpu_s: f64,
}

/// Runs the bidder with `exchange-a` limited to 0 requests/s and measures the CPU it
/// takes to answer pipelined requests with 204.
fn user_space_204(manifest: &Path, request: &[u8]) -> UserSpace {
    let work = std::env::temp_dir().join(format!("bidder-bench-xdp-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let config = work.join("bidder.toml");
    std::fs::write(&config, user_space_config(manifest)).unwrap();
    let mut bidder = Server(
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(env!("CARGO_BIN_EXE_bidder"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the bidder"),
    );
    wait_listening(&mut bidder);
    pin_to_cpu(1);
    // Warm up, then measure.
    drive(request, Duration::from_millis(500));
    let (bidder_before, host_before) = (process_cpu_s(bidder.0.id()), host_busy_s());
    let clients_before = thread_cpu_s();
    let started = Instant::now();
    let requests = drive(request, USER_SPACE_RUN);
    let seconds = started.elapsed().as_secs_f64();
    let clients_cpu = thread_cpu_s() - clients_before;
    let bidder_cpu_s = process_cpu_s(bidder.0.id()) - bidder_before;
    let host_cpu_s = host_busy_s() - host_before - clients_cpu;
    drop(bidder);
    let _ = std::fs::remove_dir_all(&work);
    UserSpace {
        requests,
        seconds,
        bidder_cpu_s,
        host_cpu_s,
    }
}

/// The demo configuration with one worker on CPU 0, the bench port, and `exchange-a`
/// shut off in user space (no `[xdp]`).
fn user_space_config(manifest: &Path) -> String {
    let demo = std::fs::read_to_string(manifest.join("examples/demo.toml")).unwrap();
    let key = manifest.join("examples/demo-notice.key");
    demo.replace(
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"127.0.0.1:{BID_PORT}\""),
    )
    .replace(
        "admin_listen = \"127.0.0.1:9090\"",
        &format!("admin_listen = \"127.0.0.1:{}\"", BID_PORT + 1),
    )
    .replace(
        "listen = \"127.0.0.1:9091\"",
        &format!("listen = \"127.0.0.1:{}\"", BID_PORT + 2),
    )
    .replace("cores = [0, 1]", "cores = [0]")
    .replace("qps_limit = 50_000", "qps_limit = 0")
    .replace("burst = 5_000", "burst = 0")
    .replace(
        "hmac_key_file = \"demo-notice.key\"",
        &format!("hmac_key_file = \"{}\"", key.display()),
    )
}

/// Keeps `CONNECTIONS` connections busy (one thread, pipelined) for `run`; the number
/// of 204 answers read.
fn drive(request: &[u8], run: Duration) -> u64 {
    let batch: Vec<u8> = request.repeat(PIPELINE_DEPTH);
    let mut conns: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", BID_PORT)).expect("connect");
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let mut answered = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while started.elapsed() < run {
        for c in &mut conns {
            c.write_all(&batch).expect("send");
        }
        for c in &mut conns {
            let mut heads = 0;
            let mut pending: Vec<u8> = Vec::new();
            while heads < PIPELINE_DEPTH {
                let n = c.read(&mut buf).expect("read");
                assert!(n > 0, "the bidder closed the connection");
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = find(&pending, b"\r\n\r\n") {
                    assert!(
                        pending.starts_with(b"HTTP/1.1 204"),
                        "expected 204, got {:?}",
                        String::from_utf8_lossy(&pending[..end])
                    );
                    pending.drain(..end + 4);
                    heads += 1;
                }
            }
        }
        answered += (CONNECTIONS * PIPELINE_DEPTH) as u64;
    }
    answered
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(server: &mut Server) {
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("the bidder exited during start-up: {status}");
        }
        if TcpStream::connect(("127.0.0.1", BID_PORT)).is_ok() {
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the bidder did not listen within {START_TIMEOUT:?}");
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// User + system CPU seconds of process `pid` (all its threads).
fn process_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / clock_ticks_per_s()
}

/// Busy CPU seconds of the whole host (every CPU, all but idle and iowait).
fn host_busy_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let total: f64 = cpu.iter().take(8).sum();
    (total - cpu[3] - cpu[4]) / clock_ticks_per_s()
}

/// CPU seconds of the calling thread (the clients).
fn thread_cpu_s() -> f64 {
    // SAFETY: rusage is plain data filled by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set, filled by CPU_SET.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}
