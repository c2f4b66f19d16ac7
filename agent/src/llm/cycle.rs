//! One cycle: the context, the model with its tools, bounded in time, turns and
//! tokens; what happened, as a [`CycleReport`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rig_agent::AgentBuilder;
use rig_core::operation::Completion;
use rig_core::providers::anthropic::AnthropicConfig;
use rig_core::providers::openai::OpenAIConfig;
use rig_core::DynModel;
use rig_reqwest::ReqwestClient;

use super::tools::{Bench, CheckBudget, GetBidPerformance, GetSspInventory, SetBidStrategy, Tally};
use super::{cut_answer, lock, CycleReport};
use crate::config::{LlmConfig, Provider};
use crate::verbs::Agent;

/// Bumped whenever [`PREAMBLE`] changes, so audit lines and status say which one
/// the model was given.
pub const PREAMBLE_VERSION: u32 = 1;

/// The standing instructions: the job, the bounds, what is not the model's.
const PREAMBLE: &str = "You are the bid strategist of a real-time-bidding bidder (instructions v1). \
Every few minutes you get each campaign's figures as JSON: budget and pace, participation and win \
rates, budget refusals, average clearing CPM, its margin and max CPM and the reasoning of its last \
change, and the latest audited changes. You may call get_bid_performance, check_budget and \
get_ssp_inventory for more, and set_bid_strategy to change a campaign's margin (a multiplier on its \
value, 0.90 to 1.50) and max CPM (currency units, at most the campaign's ceiling_cpm). Values outside \
these bounds are clamped. Pacing, bid shading, pauses and budgets are not yours: a controller and the \
operators own them. Change a campaign only when its figures justify it, at most once per cycle, and \
give a reasoning of at most 280 characters that an operator can check against the figures. A \
campaign under-spending (pace well below 1.0) with a low win rate may need a higher margin or max \
CPM; one over-spending (pace above 1.2) a lower one. When nothing needs to change, change nothing. \
End with a two-sentence summary.";

/// Connecting to the provider's endpoint may take at most this long.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// The HTTP client's own timeout is a backstop this much after the cycle's, which is
/// the one that governs (it covers every call and tool round of the run).
const HTTP_BACKSTOP_S: u64 = 5;

/// Runs one cycle and says how it went; never panics on the provider's account.
pub async fn run(agent: &Arc<Mutex<Agent>>, config: &LlmConfig, key: &str) -> CycleReport {
    let started = Instant::now();
    let (started_unix_ms, context) = {
        let a = lock(agent);
        (a.now_unix_ms(), a.llm_context())
    };
    let mut report = CycleReport {
        started_unix_ms,
        outcome: "failed",
        ..CycleReport::default()
    };
    let tally = Arc::new(Tally::default());
    let result = match context {
        Ok(context) => {
            let timeout = Duration::from_secs(config.cycle_timeout_s);
            let context = context.to_string();
            let run = prompt(agent, config, key, &tally, &context);
            match tokio::time::timeout(timeout, run).await {
                Ok(result) => result,
                Err(_) => {
                    report.outcome = "timeout";
                    Err(format!(
                        "no answer within llm.cycle_timeout_s ({} s); the cycle was abandoned",
                        config.cycle_timeout_s
                    ))
                }
            }
        }
        Err(e) => Err(format!("building the context: {}; {}", e.message, e.hint)),
    };
    match result {
        Ok(done) => {
            report.outcome = "ok";
            report.input_tokens = done.input_tokens;
            report.output_tokens = done.output_tokens;
            report.answer = cut_answer(&done.answer);
        }
        Err(e) => report.error = Some(cut_answer(&e)),
    }
    report.tool_calls = tally.calls.load(Ordering::Relaxed);
    report.changes = tally.changes.load(Ordering::Relaxed);
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report
}

struct Done {
    input_tokens: u64,
    output_tokens: u64,
    answer: String,
}

async fn prompt(
    agent: &Arc<Mutex<Agent>>,
    config: &LlmConfig,
    key: &str,
    tally: &Arc<Tally>,
    context: &str,
) -> Result<Done, String> {
    let model = model(config, key)?;
    let bench = Bench {
        agent: Arc::clone(agent),
        model: config.model().to_string(),
        tally: Arc::clone(tally),
    };
    let per_call_tokens = config.max_output_tokens_per_cycle / config.max_turns as u64;
    let strategist = AgentBuilder::new(model)
        .preamble(PREAMBLE)
        .max_tokens(per_call_tokens)
        .default_max_turns(config.max_turns)
        .tool(GetBidPerformance(bench.clone()))
        .tool(CheckBudget(bench.clone()))
        .tool(GetSspInventory(bench.clone()))
        .tool(SetBidStrategy(bench))
        .build();
    let text =
        format!("The campaigns now (JSON):\n{context}\n\nReview them and act within your bounds.");
    let response = strategist
        .prompt(text)
        .max_turns(config.max_turns)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Done {
        input_tokens: response.usage.input_tokens.unwrap_or(0),
        output_tokens: response.usage.output_tokens.unwrap_or(0),
        answer: response.output().to_string(),
    })
}

/// The provider's chat model over a reqwest client with our timeouts (rig has none).
fn model(config: &LlmConfig, key: &str) -> Result<DynModel<Completion>, String> {
    let base_url = config.base_url();
    let mut http = rig_reqwest::reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .timeout(Duration::from_secs(
            config.cycle_timeout_s + HTTP_BACKSTOP_S,
        ));
    if is_loopback(base_url) {
        // A local endpoint is never reached through a proxy from the environment.
        http = http.no_proxy();
    }
    let http = http
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    let transport = ReqwestClient::from(http);
    Ok(match config.provider {
        Provider::Anthropic => AnthropicConfig::new(key)
            .with_base_url(base_url)
            .connect(transport)
            .completion(config.model())
            .into(),
        Provider::Openai => OpenAIConfig::new(key)
            .with_base_url(base_url)
            .connect(transport)
            .chat(config.model())
            .into(),
    })
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    matches!(host, "127.0.0.1" | "localhost") || rest.starts_with("[::1]")
}
