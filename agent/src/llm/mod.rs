//! The LLM strategist: every `llm.interval_s` a model reads the campaigns (a compact
//! context from the stats table, the strategy rows and the audit log) and may call
//! typed tools — three that read, one that moves margin and max CPM inside the hard
//! bounds ([`crate::verbs`]'s `llm.rs` says who owns what). It is never needed: without
//! a key it is skipped with one log line and everything else works.
//!
//! The cycle runs on the agent's runtime beside the control socket and never holds
//! the agent's lock across a wait: each tool call takes it briefly, like a socket
//! request. A cycle is bounded in time (`cycle_timeout_s`, the whole run abandoned
//! past it), in model calls (`max_turns`) and in output tokens; a failed cycle
//! changes nothing more and the next one runs on schedule.

mod cycle;
mod tools;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::audit::rfc3339;
use crate::config::LlmConfig;
use crate::verbs::Agent;

pub use cycle::PREAMBLE_VERSION;

/// Campaigns shown to the model in one cycle's context (the biggest spenders); the
/// rest are counted. Bounds the prompt's size, so its input tokens.
pub const MAX_CONTEXT_CAMPAIGNS: usize = 50;
/// Longest final answer kept for `llm.status`, bytes.
const MAX_ANSWER_BYTES: usize = 1_000;

/// What the strategist is doing, for `llm.status`; owned by the [`Agent`].
#[derive(Debug)]
pub struct LlmState {
    pub config: LlmConfig,
    /// Why cycles cannot run whatever an operator does (no key), if so.
    pub unavailable: Option<String>,
    /// Operators' switch (`llm.enable` / `llm.disable`), from `llm.enabled` at start.
    pub enabled: bool,
    pub running: bool,
    pub cycles_ok: u64,
    /// Failed cycles, those abandoned at the timeout included.
    pub cycles_failed: u64,
    /// Of `cycles_failed`, those abandoned at `cycle_timeout_s`.
    pub cycles_timed_out: u64,
    /// When the last `ok` cycle ended, from the agent's clock.
    pub last_ok_unix_ms: Option<u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub changes: u64,
    pub last: Option<CycleReport>,
    /// Wakes the cycle loop (`llm.run`, `llm.enable`).
    pub wake: Arc<Notify>,
    /// The key, read once at start; never shown.
    key: Option<Key>,
}

/// A key that does not print.
struct Key(String);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

/// How one cycle went.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    pub started_unix_ms: u64,
    pub elapsed_ms: u64,
    /// `ok`, `failed` or `timeout`.
    pub outcome: &'static str,
    pub error: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub tool_calls: u64,
    pub changes: u64,
    /// The model's last words, cut.
    pub answer: String,
}

impl LlmState {
    /// Reads the key once; without one, cycles are unavailable and say why.
    pub fn new(config: LlmConfig) -> LlmState {
        let key = read_key(&config);
        LlmState {
            enabled: config.enabled,
            unavailable: key.as_ref().err().cloned(),
            key: key.ok().map(Key),
            config,
            running: false,
            cycles_ok: 0,
            cycles_failed: 0,
            cycles_timed_out: 0,
            last_ok_unix_ms: None,
            input_tokens: 0,
            output_tokens: 0,
            changes: 0,
            last: None,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Why a cycle would not run now, if so.
    pub fn why_not(&self) -> Option<String> {
        if let Some(why) = &self.unavailable {
            return Some(why.clone());
        }
        (!self.enabled).then(|| "disabled (`bidderctl llm enable` turns it on)".to_string())
    }

    pub fn view(&self) -> Value {
        let c = &self.config;
        json!({
            "provider": c.provider.name(),
            "model": c.model(),
            "base_url": c.base_url(),
            "preamble_version": PREAMBLE_VERSION,
            "enabled": self.enabled,
            "available": self.unavailable.is_none(),
            "why_not": self.why_not(),
            "running": self.running,
            "interval_s": c.interval_s,
            "cycle_timeout_s": c.cycle_timeout_s,
            "max_turns": c.max_turns,
            "max_output_tokens_per_cycle": c.max_output_tokens_per_cycle,
            "cycles_ok": self.cycles_ok,
            "cycles_failed": self.cycles_failed,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "changes": self.changes,
            "last": self.last.as_ref().map(|r| json!({
                "started": rfc3339(r.started_unix_ms),
                "elapsed_ms": r.elapsed_ms,
                "outcome": r.outcome,
                "error": r.error,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "tool_calls": r.tool_calls,
                "changes": r.changes,
                "answer": r.answer,
            })),
        })
    }

    fn record(&mut self, report: CycleReport) {
        match report.outcome {
            "ok" => {
                self.cycles_ok += 1;
                self.last_ok_unix_ms = Some(report.started_unix_ms + report.elapsed_ms);
            }
            "timeout" => {
                self.cycles_failed += 1;
                self.cycles_timed_out += 1;
            }
            _ => self.cycles_failed += 1,
        }
        self.input_tokens += report.input_tokens;
        self.output_tokens += report.output_tokens;
        self.changes += report.changes;
        self.running = false;
        self.last = Some(report);
    }
}

/// The key from `llm.api_key_file` (its first line) or else the environment variable,
/// or why there is none.
fn read_key(config: &LlmConfig) -> Result<String, String> {
    let key = match &config.api_key_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| {
                format!(
                    "llm.api_key_file {}: {e}; fix the file or remove the setting",
                    path.display()
                )
            })?
            .lines()
            .next()
            .map(str::to_string),
        None => std::env::var(config.key_env()).ok(),
    };
    key.map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            format!(
                "no API key: set {} in the agent's environment, or llm.api_key_file",
                config.key_env()
            )
        })
}

fn lock(agent: &Mutex<Agent>) -> std::sync::MutexGuard<'_, Agent> {
    agent.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs cycles every `interval_s` (the first one interval after start) and whenever
/// an operator asks; never returns.
pub async fn run(agent: Arc<Mutex<Agent>>) {
    let (interval, wake) = {
        let a = lock(&agent);
        if let Some(why) = &a.llm.unavailable {
            tracing::info!("LLM strategist off: {why}");
        }
        (
            Duration::from_secs(a.llm.config.interval_s),
            Arc::clone(&a.llm.wake),
        )
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = wake.notified() => {}
        }
        let plan = {
            let mut a = lock(&agent);
            let key = a.llm.key.as_ref().map(|k| k.0.clone());
            match (a.llm.why_not(), key) {
                (None, Some(key)) => {
                    a.llm.running = true;
                    Some((a.llm.config.clone(), key))
                }
                _ => None,
            }
        };
        let Some((config, key)) = plan else {
            continue;
        };
        let report = cycle::run(&agent, &config, &key).await;
        match report.outcome {
            "ok" => tracing::info!(
                changes = report.changes,
                tool_calls = report.tool_calls,
                input_tokens = report.input_tokens,
                output_tokens = report.output_tokens,
                elapsed_ms = report.elapsed_ms,
                "LLM cycle done"
            ),
            outcome => tracing::warn!(
                outcome,
                error = report.error.as_deref().unwrap_or(""),
                changes = report.changes,
                elapsed_ms = report.elapsed_ms,
                "LLM cycle failed; strategy stays as it is, the next cycle runs on schedule"
            ),
        }
        lock(&agent).llm.record(report);
    }
}

/// Cuts the model's answer for the status view.
fn cut_answer(text: &str) -> String {
    crate::bounds::cut_reasoning(text, MAX_ANSWER_BYTES)
}
