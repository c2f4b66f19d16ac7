//! The LLM strategist against a protocol-faithful fake of the Anthropic and OpenAI
//! APIs: each case scripts what the model says, runs one cycle through the real agent
//! (`llm.run` on its control socket) and asserts through the strategy table, the
//! audit log and `llm.status` — never through the strategist's internals.

mod common;

use std::time::{Duration, Instant};

use agent::config::{AgentConfig, Provider};
use common::fake_llm::{
    anthropic_overloaded, anthropic_text, anthropic_tool, openai_text, openai_tool, FakeLlm, Reply,
};
use common::{code, config, fake_bidder, Client, Running, TempDir};
use serde_json::{json, Value};

const KEY: &str = "sk-test-key";

struct Rig {
    _dir: TempDir,
    _bidder: bidder_common::table::shm::Writer<bidder_common::table::stats::StatsTable>,
    fake: FakeLlm,
    agent: Running,
    client: Client,
}

/// An agent whose strategist talks to a fresh fake, with the key in a file.
fn rig(name: &str, provider: Provider, tune: impl FnOnce(&mut AgentConfig)) -> Rig {
    let dir = TempDir::new(name);
    let bidder = fake_bidder(&dir.0.join("stats"));
    let fake = FakeLlm::start();
    let mut c = config(&dir.0);
    std::fs::write(dir.0.join("llm.key"), format!("{KEY}\n")).unwrap();
    c.llm.provider = provider;
    c.llm.model = match provider {
        Provider::Anthropic => "claude-fake".into(),
        Provider::Openai => "gpt-fake".into(),
    };
    c.llm.base_url = match provider {
        Provider::Anthropic => fake.base_url.clone(),
        Provider::Openai => format!("{}/v1", fake.base_url),
    };
    c.llm.api_key_file = Some(dir.0.join("llm.key"));
    c.llm.interval_s = 3_600; // cycles run when a test asks
    c.llm.cycle_timeout_s = 10;
    c.llm.max_turns = 6;
    tune(&mut c);
    let agent = Running::start(c);
    let client = Client::connect(&agent.socket);
    Rig {
        _dir: dir,
        _bidder: bidder,
        fake,
        agent,
        client,
    }
}

impl Rig {
    fn call(&mut self, verb: &str, args: Value, why: Option<&str>) -> Value {
        let mut req = json!({"v": 1, "verb": verb, "args": args});
        if let Some(why) = why {
            req["why"] = json!(why);
        }
        self.client.call(&req.to_string())
    }

    fn status(&mut self) -> Value {
        let answer = self.call("llm.status", json!({}), None);
        assert_eq!(code(&answer), "ok", "{answer}");
        answer["result"].clone()
    }

    /// Starts a cycle and waits (up to 20 s) for it to be recorded; returns its report.
    fn cycle(&mut self) -> Value {
        let before = self.cycles();
        let answer = self.call("llm.run", json!({}), Some("test"));
        assert_eq!(code(&answer), "ok", "{answer}");
        self.cycle_after(before)
    }

    /// The report of the next cycle recorded once `before` cycles were.
    fn cycle_after(&mut self, before: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.cycles() == before {
            assert!(Instant::now() < deadline, "no cycle was recorded");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.status()["last"].clone()
    }

    fn cycles(&mut self) -> u64 {
        let s = self.status();
        s["cycles_ok"].as_u64().unwrap() + s["cycles_failed"].as_u64().unwrap()
    }

    fn strategy(&mut self, campaign: &str) -> Value {
        let answer = self.call("strategy.get", json!({"campaign": campaign}), None);
        assert_eq!(code(&answer), "ok", "{answer}");
        answer["result"].clone()
    }

    fn last_audit(&mut self) -> Value {
        let answer = self.call("audit.tail", json!({"lines": 1}), None);
        answer["result"]["entries"][0].clone()
    }
}

fn set(campaign: &str, margin: Value, max_cpm: Value, reasoning: &str) -> Value {
    json!({"campaign": campaign, "margin": margin, "max_cpm": max_cpm, "reasoning": reasoning})
}

/// The text of the tool result the model got back in `seen`'s last message.
fn anthropic_tool_result(seen: &common::fake_llm::Seen) -> (String, bool) {
    let block = &seen.last_message()["content"][0];
    assert_eq!(block["type"], "tool_result", "{}", seen.last_message());
    let text = block["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (text, block["is_error"] == json!(true))
}

#[test]
fn each_tool_is_called_and_a_change_is_applied_and_audited_as_the_model() {
    let mut r = rig("llm-tools", Provider::Anthropic, |_| {});
    r.fake.script([
        anthropic_tool(
            "t1",
            "get_bid_performance",
            json!({"campaign": "acme-display"}),
        ),
        anthropic_tool("t2", "check_budget", json!({"campaign": "acme-display"})),
        anthropic_tool("t3", "get_ssp_inventory", json!({"category": "IAB1"})),
        anthropic_tool(
            "t4",
            "set_bid_strategy",
            set(
                "acme-display",
                json!(1.2),
                json!(2.5),
                "Win rate is low at an even pace.",
            ),
        ),
        anthropic_text("Raised acme-display's margin. Nothing else needed."),
    ]);
    let last = r.cycle();
    assert_eq!(last["outcome"], "ok", "{last}");
    assert_eq!(last["tool_calls"], 4);
    assert_eq!(last["changes"], 1);
    assert_eq!(last["input_tokens"], 4 * 100 + 150);
    assert_eq!(last["output_tokens"], 4 * 20 + 10);
    assert!(last["answer"].as_str().unwrap().contains("Raised"));

    let seen = r.fake.seen();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|s| s.path == "/v1/messages"));
    // What a cycle costs in input: the bytes sent per call (about 4 per token).
    let bytes: Vec<usize> = seen.iter().map(|s| s.body.to_string().len()).collect();
    println!(
        "request bytes per model call {bytes:?}, total {} (~{} input tokens)",
        bytes.iter().sum::<usize>(),
        bytes.iter().sum::<usize>() / 4
    );
    assert!(
        bytes[0] < 16_384,
        "the first prompt is bounded: {} bytes",
        bytes[0]
    );
    assert_eq!(seen[0].header("x-api-key"), Some(KEY));
    assert!(seen[0].header("anthropic-version").is_some());
    // The first prompt carries the context; each later one the previous tool's result.
    let prompt = seen[0].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(prompt.contains("acme-display") && prompt.contains("zephyr-video"));
    assert!(seen[0].body["system"][0]["text"]
        .as_str()
        .unwrap()
        .contains("instructions v1"));
    let tools: Vec<&str> = seen[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools.len(),
        4,
        "get_bid_performance, check_budget, get_ssp_inventory, set_bid_strategy: {tools:?}"
    );
    let results: Vec<(String, bool)> = seen[1..].iter().map(anthropic_tool_result).collect();
    assert!(results.iter().all(|(_, error)| !error), "{results:?}");
    assert!(results[0].0.contains("win_rate"), "{}", results[0].0);
    assert!(results[1].0.contains("day_elapsed_pct"), "{}", results[1].0);
    assert!(results[2].0.contains("exchange-a") && results[2].0.contains("category"));
    assert!(results[3].0.contains("1200000"), "{}", results[3].0);

    let s = r.strategy("acme-display");
    assert_eq!(s["margin_ppm"], 1_200_000);
    assert_eq!(s["max_cpm_micros"], 2_500_000);
    assert_eq!(s["why"], "Win rate is low at an even pace.");
    // Pacing and shading are not the model's: as they were.
    assert_eq!(s["pacing_ppm"], 1_000_000);
    assert_eq!(s["shading_ppm"], 900_000);
    let audit = r.last_audit();
    assert_eq!(audit["verb"], "llm.set_bid_strategy");
    assert_eq!(audit["who"]["actor"], "llm:claude-fake");
    assert_eq!(audit["new"]["margin_ppm"], 1_200_000);
    assert_eq!(audit["old"]["margin_ppm"], 1_000_000);
}

#[test]
fn out_of_bounds_values_are_clamped_and_the_audit_shows_asked_and_applied() {
    let mut r = rig("llm-clamp", Provider::Anthropic, |_| {});
    let long: String = "Clearing prices rose sharply this hour. ".repeat(50);
    assert!(long.len() >= 2_000);
    r.fake.script([
        anthropic_tool(
            "t1",
            "set_bid_strategy",
            set("acme-display", json!(9.0), json!(99.0), &long),
        ),
        anthropic_text("Done."),
    ]);
    assert_eq!(r.cycle()["outcome"], "ok");
    let s = r.strategy("acme-display");
    assert_eq!(s["margin_ppm"], 1_500_000, "9.0 is applied as 1.50");
    assert_eq!(s["max_cpm_micros"], 5_000_000, "99 is cut to the ceiling");
    let why = s["why"].as_str().unwrap();
    assert!(why.len() <= 280, "{} bytes", why.len());
    assert!(why.ends_with("this hour."), "cut at a sentence: {why:?}");
    let audit = r.last_audit();
    assert_eq!(audit["asked"], json!({"margin": 9.0, "max_cpm": 99.0}));
    assert_eq!(audit["new"]["margin_ppm"], 1_500_000);
    assert_eq!(audit["why"], why);
}

#[test]
fn an_unknown_tool_fails_the_cycle_and_changes_nothing() {
    let mut r = rig("llm-unknown", Provider::Anthropic, |_| {});
    r.fake.script([
        anthropic_tool("t1", "raise_budget", json!({"campaign": "acme-display"})),
        anthropic_text("never reached"),
    ]);
    let last = r.cycle();
    assert_eq!(last["outcome"], "failed", "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("raise_budget"),
        "{last}"
    );
    assert_eq!(r.strategy("acme-display")["source"], "configuration");
    assert_eq!(r.status()["cycles_failed"], 1);
}

#[test]
fn malformed_tool_input_goes_back_to_the_model_and_changes_nothing() {
    let mut r = rig("llm-malformed", Provider::Anthropic, |_| {});
    r.fake.script([
        // A string for a number, and a field the model may not set.
        anthropic_tool(
            "t1",
            "set_bid_strategy",
            set("acme-display", json!("high"), json!(2.0), "x"),
        ),
        anthropic_tool(
            "t2",
            "set_bid_strategy",
            json!({"campaign": "acme-display", "margin": 1.1, "max_cpm": 2.0,
                   "reasoning": "x", "shading": 0.5}),
        ),
        // A campaign the bidder does not have: our own error message reaches the model.
        anthropic_tool(
            "t3",
            "set_bid_strategy",
            set("no-such-campaign", json!(1.1), json!(2.0), "x"),
        ),
        anthropic_text("I could not change anything."),
    ]);
    let last = r.cycle();
    assert_eq!(last["outcome"], "ok", "{last}");
    assert_eq!(last["changes"], 0);
    let seen = r.fake.seen();
    assert_eq!(seen.len(), 4);
    for (i, needle) in [
        (1, "high"),
        (2, "shading"),
        (3, "not in the bidder's catalog"),
    ] {
        let (text, is_error) = anthropic_tool_result(&seen[i]);
        assert!(is_error && text.contains(needle), "{i}: {text}");
    }
    assert_eq!(r.strategy("acme-display")["source"], "configuration");
}

#[test]
fn an_overloaded_provider_fails_the_cycle_and_the_next_one_runs() {
    let mut r = rig("llm-529", Provider::Anthropic, |_| {});
    r.fake.script([anthropic_overloaded()]);
    let last = r.cycle();
    assert_eq!(last["outcome"], "failed", "{last}");
    assert!(last["error"].as_str().unwrap().contains("529"), "{last}");
    assert_eq!(r.strategy("acme-display")["source"], "configuration");
    r.fake.script([
        anthropic_tool(
            "t1",
            "set_bid_strategy",
            set("acme-display", json!(1.1), json!(3.0), "Recovered."),
        ),
        anthropic_text("Done."),
    ]);
    assert_eq!(r.cycle()["outcome"], "ok");
    assert_eq!(r.strategy("acme-display")["margin_ppm"], 1_100_000);
    let s = r.status();
    assert_eq!(
        (s["cycles_ok"].as_u64(), s["cycles_failed"].as_u64()),
        (Some(1), Some(1))
    );
    // What an operator's alert reads: one failed, one ok, the strategist active.
    let text = common::scrape(&mut r.client);
    for (series, want) in [
        (
            "bidder_agent_cycles_total{strategist=\"llm\",outcome=\"ok\"}",
            1.0,
        ),
        (
            "bidder_agent_cycles_total{strategist=\"llm\",outcome=\"failed\"}",
            1.0,
        ),
        (
            "bidder_agent_cycles_total{strategist=\"llm\",outcome=\"timeout\"}",
            0.0,
        ),
        ("bidder_agent_strategist_active{strategist=\"llm\"}", 1.0),
        (
            "bidder_agent_strategy_changes_total{strategist=\"llm\"}",
            1.0,
        ),
    ] {
        assert_eq!(
            common::sample(&text, series),
            Some(want),
            "{series}\n{text}"
        );
    }
    let last_ok = common::sample(
        &text,
        "bidder_agent_last_ok_cycle_timestamp_seconds{strategist=\"llm\"}",
    )
    .expect("an ok cycle sets the timestamp");
    // It is when that cycle ended: its start plus its length, on the agent's clock.
    let ended_ms = (last_ok * 1000.0).round() as u64;
    let elapsed_ms = s["last"]["elapsed_ms"].as_u64().unwrap();
    assert_eq!(
        agent::audit::rfc3339(ended_ms - elapsed_ms),
        s["last"]["started"].as_str().unwrap(),
        "{text}"
    );
}

#[test]
fn a_hung_provider_is_abandoned_at_the_cycle_timeout_and_the_next_cycle_runs() {
    let mut r = rig("llm-hang", Provider::Anthropic, |c| {
        c.llm.cycle_timeout_s = 1
    });
    r.fake.script([Reply::Hang]);
    let started = Instant::now();
    let last = r.cycle();
    assert_eq!(last["outcome"], "timeout", "{last}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The socket answered while the cycle waited (status was polled), and the next
    // cycle runs.
    r.fake.script([anthropic_text("Nothing to change.")]);
    assert_eq!(r.cycle()["outcome"], "ok");
    assert_eq!(r.strategy("acme-display")["source"], "configuration");
    let text = common::scrape(&mut r.client);
    for (outcome, want) in [("ok", 1.0), ("failed", 0.0), ("timeout", 1.0)] {
        let series =
            format!("bidder_agent_cycles_total{{strategist=\"llm\",outcome=\"{outcome}\"}}");
        assert_eq!(
            common::sample(&text, &series),
            Some(want),
            "{series}\n{text}"
        );
    }
}

#[test]
fn a_cycle_past_its_turn_budget_fails() {
    let mut r = rig("llm-turns", Provider::Anthropic, |c| c.llm.max_turns = 2);
    let look = || {
        anthropic_tool(
            "t",
            "get_bid_performance",
            json!({"campaign": "acme-display"}),
        )
    };
    r.fake.script([look(), look(), look()]);
    let last = r.cycle();
    assert_eq!(last["outcome"], "failed", "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("max turns"),
        "{last}"
    );
    assert_eq!(r.fake.seen().len(), 2, "two model calls, no third");
}

#[test]
fn the_openai_dialect_sets_a_strategy_too() {
    let mut r = rig("llm-openai", Provider::Openai, |_| {});
    r.fake.script([
        openai_tool(
            "call_1",
            "set_bid_strategy",
            set(
                "zephyr-video",
                json!(0.95),
                json!(12.5),
                "Over-pacing; ease off.",
            ),
        ),
        openai_text("Eased zephyr-video."),
    ]);
    let last = r.cycle();
    assert_eq!(last["outcome"], "ok", "{last}");
    assert_eq!(last["input_tokens"], 90 + 140);
    let seen = r.fake.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let tool_message = seen[1].last_message();
    assert_eq!(tool_message["role"], "tool");
    assert_eq!(tool_message["tool_call_id"], "call_1");
    let s = r.strategy("zephyr-video");
    assert_eq!(
        (s["margin_ppm"].as_i64(), s["max_cpm_micros"].as_i64()),
        (Some(950_000), Some(12_500_000))
    );
    assert_eq!(r.last_audit()["who"]["actor"], "llm:gpt-fake");
}

#[test]
fn without_a_key_the_agent_works_and_says_why_the_strategist_is_off() {
    let mut r = rig("llm-nokey", Provider::Anthropic, |c| {
        c.llm.api_key_file = None;
        c.llm.api_key_env = "BIDDER_TEST_NO_SUCH_KEY_VARIABLE".into();
    });
    let s = r.status();
    assert_eq!(s["available"], false);
    let why = s["why_not"].as_str().unwrap();
    assert!(why.contains("BIDDER_TEST_NO_SUCH_KEY_VARIABLE"), "{why}");
    let answer = r.call("llm.run", json!({}), Some("test"));
    assert_eq!(code(&answer), "llm_unavailable", "{answer}");
    let status = r.call("status", json!({}), None);
    assert_eq!(status["result"]["llm"]["why_not"], why);
    // Everything else works.
    let answer = r.call(
        "strategy.set",
        json!({"campaign": "acme-display", "margin_ppm": 1_100_000}),
        Some("operator"),
    );
    assert_eq!(code(&answer), "ok", "{answer}");
    assert!(r.fake.seen().is_empty(), "no request without a key");
}

#[test]
fn operators_disable_and_enable_the_strategist_and_both_are_audited() {
    let mut r = rig("llm-switch", Provider::Anthropic, |_| {});
    let answer = r.call("llm.disable", json!({}), None);
    assert_eq!(code(&answer), "bad_args", "a switch needs a reason");
    let answer = r.call("llm.disable", json!({}), Some("budget review"));
    assert_eq!(code(&answer), "ok", "{answer}");
    assert_eq!(r.last_audit()["verb"], "llm.disable");
    let answer = r.call("llm.run", json!({}), Some("test"));
    assert_eq!(code(&answer), "llm_unavailable", "{answer}");
    // Enabling wakes the strategist at once: its cycle is the one the fake is
    // scripted for (scripting after the enable raced that cycle on a loaded machine).
    r.fake.script([anthropic_text("Nothing to change.")]);
    let before = r.cycles();
    let answer = r.call("llm.enable", json!({}), Some("review done"));
    assert_eq!(code(&answer), "ok", "{answer}");
    assert_eq!(r.last_audit()["new"]["enabled"], true);
    assert_eq!(r.cycle_after(before)["outcome"], "ok");
    let _ = &r.agent;
}
