//! The agent's Prometheus endpoint: `GET /metrics` on `metrics_listen` (loopback by
//! default), so an operator's alerting sees strategist cycles fail and the control
//! socket refuse requests, not only the bidder.
//!
//! Deliberately small and hand-written: one request per connection, a bounded head, a
//! read timeout and a cap on connections at once; the scrape takes the agent's lock
//! only to copy a handful of counters. Every family is exported from the start (at
//! zero), so `increase()` in a rule sees the first failure.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::verbs::Agent;

/// Longest request head read; a scraper's is a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// A connection that has not sent its head by then is closed.
pub const READ_TIMEOUT_MS: u64 = 5_000;
/// Scrapes served at once; more connections are closed at once.
pub const MAX_CONNECTIONS: usize = 8;

/// Binds `metrics_listen`'s address; the error names the setting and the fix.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        format!("metrics_listen {addr}: bind: {e}; pick a free port, or \"\" to turn it off")
    })
}

/// Serves scrapes until the listener fails.
pub async fn serve(listener: TcpListener, agent: Arc<Mutex<Agent>>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::AcqRel);
            continue; // dropped: closed at once
        }
        let agent = Arc::clone(&agent);
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            let _ = answer(stream, &agent).await;
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Reads one request head and answers it; the connection then closes.
async fn answer(mut stream: TcpStream, agent: &Mutex<Agent>) -> std::io::Result<()> {
    let mut head = [0u8; MAX_HEAD_BYTES];
    let mut len = 0;
    let read = async {
        loop {
            if head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(len);
            }
            if len == head.len() {
                return None;
            }
            match stream.read(&mut head[len..]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => len += n,
            }
        }
    };
    let Ok(Some(len)) = tokio::time::timeout(Duration::from_millis(READ_TIMEOUT_MS), read).await
    else {
        return Ok(());
    };
    let (status, body) = route(&head[..len], agent);
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status.starts_with("200") {
            "text/plain; version=0.0.4; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        },
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// The status line's tail and the body for one request head.
fn route(head: &[u8], agent: &Mutex<Agent>) -> (&'static str, String) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return ("400 Bad Request", "bad request\n".into()),
    }
    let path = req.path.unwrap_or("");
    if path != "/metrics" && !path.starts_with("/metrics?") {
        return ("404 Not Found", "only /metrics is served here\n".into());
    }
    if req.method != Some("GET") {
        return ("405 Method Not Allowed", "GET /metrics\n".into());
    }
    let text = render(&agent.lock().unwrap_or_else(|p| p.into_inner()));
    ("200 OK", text)
}

/// The agent's metrics in the Prometheus text format (0.0.4).
pub fn render(agent: &Agent) -> String {
    let llm = &agent.llm;
    let mut out = String::with_capacity(2048);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    family(
        "bidder_agent_info",
        "gauge",
        "The agent's version.",
        &[(&version, 1.0)],
    );
    family(
        "bidder_agent_simulated_clock",
        "gauge",
        "1: the time of day comes from an auction simulator's clock file (agent --simulate), never in production; 0: the host clock.",
        &[("", if agent.clock().is_simulated() { 1.0 } else { 0.0 })],
    );
    family(
        "bidder_agent_requests_total",
        "counter",
        "Control-socket requests answered, by outcome (error: refused or invalid).",
        &[
            ("{outcome=\"ok\"}", (agent.served - agent.failed) as f64),
            ("{outcome=\"error\"}", agent.failed as f64),
        ],
    );
    let failed = llm.cycles_failed - llm.cycles_timed_out;
    family(
        "bidder_agent_cycles_total",
        "counter",
        "Strategist cycles by outcome: ok, failed (changes nothing more), timeout (abandoned).",
        &[
            ("{strategist=\"llm\",outcome=\"ok\"}", llm.cycles_ok as f64),
            ("{strategist=\"llm\",outcome=\"failed\"}", failed as f64),
            (
                "{strategist=\"llm\",outcome=\"timeout\"}",
                llm.cycles_timed_out as f64,
            ),
        ],
    );
    family(
        "bidder_agent_strategist_active",
        "gauge",
        "1 when the strategist's cycles run (enabled and, for the LLM, a key is present).",
        &[(
            "{strategist=\"llm\"}",
            f64::from(u8::from(llm.why_not().is_none())),
        )],
    );
    family(
        "bidder_agent_strategy_changes_total",
        "counter",
        "Strategy rows a strategist changed.",
        &[("{strategist=\"llm\"}", llm.changes as f64)],
    );
    family(
        "bidder_agent_llm_tokens_total",
        "counter",
        "Tokens the LLM provider billed, by direction.",
        &[
            ("{direction=\"input\"}", llm.input_tokens as f64),
            ("{direction=\"output\"}", llm.output_tokens as f64),
        ],
    );
    if let Some(r) = agent.replication() {
        family(
            "bidder_agent_fleet_changes_total",
            "counter",
            "Strategy changes replicated through the fleet's Redis: published by this host, applied from the stream (rows that differed), dropped from a full queue.",
            &[
                ("{direction=\"published\"}", r.published as f64),
                ("{direction=\"applied\"}", r.applied as f64),
                ("{direction=\"dropped\"}", r.dropped as f64),
            ],
        );
        family(
            "bidder_agent_fleet_queued",
            "gauge",
            "Changes made here and not yet published (Redis unreachable if it grows).",
            &[("", r.outbox.len() as f64)],
        );
        family(
            "bidder_agent_fleet_failures_total",
            "counter",
            "Replication rounds that failed (Redis unreachable or slow).",
            &[("", r.failures as f64)],
        );
    }
    if let Some(at) = llm.last_ok_unix_ms {
        family(
            "bidder_agent_last_ok_cycle_timestamp_seconds",
            "gauge",
            "When the strategist's last ok cycle ended (Unix seconds); absent before the first.",
            &[("{strategist=\"llm\"}", at as f64 / 1000.0)],
        );
    }
    out
}
