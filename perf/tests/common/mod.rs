//! Test fixtures: a real HTTP/1.1 server on loopback whose answers and delays a test
//! scripts, and a runner for the `loadgen` binary with a deadline.
//!
//! The server is deliberately plain (a thread per connection, blocking sockets,
//! `thread::sleep` for injected delays) so that what it does is obvious from the test.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One request as the test server read it.
pub struct Request {
    /// Order of arrival across all connections, from 0.
    pub seq: u64,
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What the server does with a request.
pub struct Reply {
    /// Send the response no earlier than this.
    pub not_before: Instant,
    pub bytes: Vec<u8>,
    /// Close the connection after the response.
    pub close: bool,
}

impl Reply {
    pub fn no_content_after(delay: Duration) -> Reply {
        Reply {
            not_before: Instant::now() + delay,
            bytes: b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            close: false,
        }
    }

    pub fn no_content_at(at: Instant) -> Reply {
        Reply {
            not_before: at,
            ..Reply::no_content_after(Duration::ZERO)
        }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A loopback server that answers with `handler`; stops accepting when dropped
/// (connection threads end when the client closes).
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// Longest request head the test server reads.
const MAX_TEST_HEAD_BYTES: usize = 64 * 1024;

impl TestServer {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let seq = Arc::new(AtomicU64::new(0));
        let stopping = stop.clone();
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (handler, seq) = (handler.clone(), seq.clone());
                thread::spawn(move || serve(stream, &*handler, &seq));
            }
        });
        TestServer {
            addr,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, seq: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader, seq) else {
            return;
        };
        let reply = handler(&request);
        let now = Instant::now();
        if reply.not_before > now {
            thread::sleep(reply.not_before - now);
        }
        if writer.write_all(&reply.bytes).is_err() || reply.close {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>, seq: &AtomicU64) -> Option<Request> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || head.len() > MAX_TEST_HEAD_BYTES {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            let mut request = Request {
                seq: 0,
                head,
                body: Vec::new(),
            };
            let len: usize = request
                .header("content-length")
                .map_or(Some(0), |v| v.parse().ok())?;
            request.body = vec![0; len];
            reader.read_exact(&mut request.body).ok()?;
            request.seq = seq.fetch_add(1, Ordering::SeqCst);
            return Some(request);
        }
    }
}

/// What one `loadgen` invocation produced.
pub struct LoadgenOutput {
    pub code: i32,
    pub json: serde_json::Value,
    pub stderr: String,
}

/// Longest a single loadgen invocation may take in a test before it is killed.
const LOADGEN_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the `loadgen` binary with `args` and `--json --quiet`, killing it if it
/// overruns, and parses its report.
pub fn loadgen(args: &[&str]) -> LoadgenOutput {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args(["--json", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let began = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if began.elapsed() > LOADGEN_DEADLINE {
            let _ = child.kill();
            panic!("loadgen overran {LOADGEN_DEADLINE:?}: {args:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    LoadgenOutput {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A field of the report in milliseconds (the report holds µs).
pub fn ms(report: &serde_json::Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report:#}"))
        / 1_000.0
}

/// A count field of the report.
pub fn count(report: &serde_json::Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report:#}"))
}

/// How late the host woke a thread that asked to sleep 1 ms at a time, during a run.
///
/// A shared VM can deschedule every thread for tens or hundreds of milliseconds; such a
/// stall adds to every latency measured across it, and no generator can take it back
/// out. A timing test runs a probe alongside its measurement and widens its *upper*
/// tolerance by what the probe saw, so a quiet host is held to the stated tolerance and
/// a stalled one to that plus the measured stall. Lower bounds stay strict: a stall can
/// only make answers later.
pub struct StallProbe {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<HostStalls>>,
}

/// A wake-up later than this is recorded as a stall, in µs. Plain `sleep` on an idle
/// host overshoots by tens of µs.
const STALL_NOTED_US: u64 = 1_000;
const PROBE_TICK: Duration = Duration::from_millis(1);

impl StallProbe {
    pub fn start() -> StallProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let began = Instant::now();
            let mut stalls = HostStalls::default();
            while !stopping.load(Ordering::Relaxed) {
                let asked = Instant::now();
                thread::sleep(PROBE_TICK);
                let late = asked.elapsed().saturating_sub(PROBE_TICK);
                if late.as_micros() as u64 > STALL_NOTED_US {
                    let at_ms = began.elapsed().as_secs_f64() * 1e3;
                    stalls.late.push((at_ms, late.as_secs_f64() * 1e3));
                }
            }
            stalls
        });
        StallProbe {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the probe and returns what it saw.
    pub fn finish(mut self) -> HostStalls {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for StallProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The stalls a [`StallProbe`] saw.
#[derive(Default, Debug)]
pub struct HostStalls {
    /// (ms since the probe started, ms late) of each late wake-up, in time order.
    late: Vec<(f64, f64)>,
}

impl HostStalls {
    /// The longest single stall, ms.
    pub fn max_ms(&self) -> f64 {
        self.late.iter().map(|&(_, ms)| ms).fold(0.0, f64::max)
    }

    /// The most stall time that fell within any `window_ms` span: the most the host can
    /// have delayed one request that lived that long.
    pub fn worst_window_ms(&self, window_ms: f64) -> f64 {
        let (mut worst, mut sum, mut first) = (0.0_f64, 0.0, 0);
        for &(at, ms) in &self.late {
            sum += ms;
            while self.late[first].0 < at - window_ms {
                sum -= self.late[first].1;
                first += 1;
            }
            worst = worst.max(sum);
        }
        worst
    }

    /// One line for a failure message.
    pub fn summary(&self, window_ms: f64) -> String {
        format!(
            "host stalls seen by the probe: {} over {STALL_NOTED_US} µs, longest {:.1} ms, most in {window_ms} ms {:.1} ms",
            self.late.len(),
            self.max_ms(),
            self.worst_window_ms(window_ms)
        )
    }
}

/// Why one attempt at a timing-based check did not pass.
pub enum Miss {
    /// The measurement was off on a host that ran normally: a failure.
    Wrong(String),
    /// A [`StallProbe`] saw the host stall long enough to void the accuracy check, and
    /// every check that holds under any stall passed.
    HostStalled(String),
}

impl Miss {
    /// `why` as a [`Miss::HostStalled`] when the host stalled enough to void the check,
    /// else as a [`Miss::Wrong`].
    pub fn judged(host_stalled: bool, why: String) -> Miss {
        if host_stalled {
            Miss::HostStalled(why)
        } else {
            Miss::Wrong(why)
        }
    }
}

impl From<String> for Miss {
    fn from(why: String) -> Miss {
        Miss::Wrong(why)
    }
}

/// Runs a timing-based check up to `attempts` times until one passes, retrying only
/// attempts a host stall voided. A shared 2-core host can stall the whole VM for
/// hundreds of milliseconds, in bad spells that last seconds; so each retry waits
/// longer ([`FIRST_RETRY_PAUSE`], doubling) to let a bad spell pass.
///
/// - An attempt that passes: the test passes.
/// - A [`Miss::Wrong`] (the measurement was off on a host that ran normally): the test
///   fails at once. A later lucky attempt cannot turn a wrong measurement into a pass.
/// - Every attempt [`Miss::HostStalled`]: the accuracy was not measured on this host
///   at this time, so the test is recorded as skipped (with every reason) through
///   [`testkit::skip`], never as passed; `cargo xtask ci` counts it so.
pub fn within_attempts(test: &str, attempts: usize, mut attempt: impl FnMut() -> Result<(), Miss>) {
    let mut stalled = Vec::new();
    let mut pause = FIRST_RETRY_PAUSE;
    for n in 1..=attempts {
        match attempt() {
            Ok(()) => return,
            Err(Miss::Wrong(why)) => {
                panic!("attempt {n} of {attempts} measured wrong on a host that ran normally:\n{why}\n---\nearlier attempts voided by host stalls:\n{}", stalled.join("\n---\n"))
            }
            Err(Miss::HostStalled(why)) => {
                let first_line = why.lines().next().unwrap_or_default().to_owned();
                eprintln!("attempt {n} of {attempts} voided by a host stall: {first_line}");
                stalled.push(why);
            }
        }
        if n < attempts {
            thread::sleep(pause);
            pause *= 2;
        }
    }
    eprintln!("{}", stalled.join("\n---\n"));
    let last = stalled
        .last()
        .and_then(|w| w.lines().next())
        .unwrap_or_default();
    testkit::skip(
        test,
        &format!(
            "accuracy not measured: the host stalled in all {attempts} attempts (last: {last})"
        ),
    );
}

/// Wait before the second attempt of [`within_attempts`]; doubles after each.
const FIRST_RETRY_PAUSE: Duration = Duration::from_secs(2);
