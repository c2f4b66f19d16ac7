//! The strategist's tools, as rig sees them: typed arguments (their JSON schemas are
//! derived from the types), each call a short visit to the [`Agent`] under its lock.
//! What they read and the one thing they write live in `verbs/llm.rs`, beside the
//! operators' verbs, so the model and `bidderctl` share one set of bounds and audit.
//!
//! A tool's error goes back to the model as the tool's result (`is_error`) with our
//! message, so it can correct itself; arguments that do not fit the schema never reach
//! the agent (rig answers the model with the parse error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rig_core::tool::{Tool, ToolContext, ToolExecutionError};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::lock;
use crate::protocol::Error;
use crate::verbs::Agent;

/// What every tool holds: the agent, who is acting, and the cycle's counts.
#[derive(Clone)]
pub struct Bench {
    pub agent: Arc<Mutex<Agent>>,
    pub model: String,
    pub tally: Arc<Tally>,
}

/// Tool calls and applied changes in one cycle.
#[derive(Debug, Default)]
pub struct Tally {
    pub calls: AtomicU64,
    pub changes: AtomicU64,
}

/// A tool's failure, in the words of the agent's error (message and hint).
#[derive(Debug)]
pub struct ToolError(String);

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolError {}

impl From<Error> for ToolError {
    fn from(e: Error) -> ToolError {
        ToolError(format!("{}; {}", e.message, e.hint))
    }
}

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

impl Bench {
    fn read(&self, f: impl FnOnce(&Agent) -> Result<Value, Error>) -> Result<Value, ToolError> {
        self.tally.calls.fetch_add(1, Ordering::Relaxed);
        Ok(f(&lock(&self.agent))?)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignArgs {
    /// The campaign id, as listed in the context.
    pub campaign: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryArgs {
    /// An IAB content category such as IAB1 (optional).
    #[serde(default)]
    pub category: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyArgs {
    /// The campaign id, as listed in the context.
    pub campaign: String,
    /// Multiplier on the campaign's value, 0.90 to 1.50 (clamped into that range).
    pub margin: f64,
    /// Highest CPM to bid, in currency units, at most the campaign's ceiling_cpm.
    pub max_cpm: f64,
    /// Why, in at most 280 characters: it is kept with the change and shown to
    /// operators.
    pub reasoning: String,
}

/// `get_bid_performance(campaign)`.
#[derive(Clone)]
pub struct GetBidPerformance(pub Bench);
/// `check_budget(campaign)`.
#[derive(Clone)]
pub struct CheckBudget(pub Bench);
/// `get_ssp_inventory(category?)`.
#[derive(Clone)]
pub struct GetSspInventory(pub Bench);
/// `set_bid_strategy(campaign, margin, max_cpm, reasoning)`.
#[derive(Clone)]
pub struct SetBidStrategy(pub Bench);

/// Our messages reach the model (rig's default would hide them behind "the tool
/// failed").
fn to_model(e: ToolError) -> ToolExecutionError {
    ToolExecutionError::invalid_args(e.to_string())
}

/// The three tools that only read: a name, what the model is told, the arguments,
/// and the agent's method that answers.
macro_rules! read_tool {
    ($tool:ident, $name:literal, $args:ty, $description:literal, |$a:ident, $x:ident| $read:expr) => {
        impl Tool for $tool {
            const NAME: &'static str = $name;
            type Args = $args;
            type Output = Value;
            type Error = ToolError;

            fn description(&self) -> String {
                $description.into()
            }

            fn parameters(&self) -> Value {
                schema::<$args>()
            }

            fn map_error(&self, e: ToolError) -> ToolExecutionError {
                to_model(e)
            }

            async fn call(&self, _: &mut ToolContext, $x: $args) -> Result<Value, ToolError> {
                self.0.read(|$a| $read)
            }
        }
    };
}

read_tool!(
    GetBidPerformance,
    "get_bid_performance",
    CampaignArgs,
    "A campaign's requests, bids, wins, participation and win rates, budget refusals, \
     average clearing CPM and current margin and max CPM.",
    |a, args| a.llm_bid_performance(&args.campaign)
);

read_tool!(
    CheckBudget,
    "check_budget",
    CampaignArgs,
    "A campaign's daily budget, spent and available, and its pace: spent share of the \
     budget over elapsed share of the day (1.0 is even).",
    |a, args| a.llm_check_budget(&args.campaign)
);

read_tool!(
    GetSspInventory,
    "get_ssp_inventory",
    InventoryArgs,
    "Per supply partner: requests, bids, no-bids and its QPS limit.",
    |a, args| a.llm_ssp_inventory(args.category.as_deref())
);

impl Tool for SetBidStrategy {
    const NAME: &'static str = "set_bid_strategy";
    type Args = StrategyArgs;
    type Output = Value;
    type Error = ToolError;

    fn description(&self) -> String {
        "Sets a campaign's margin and max CPM. Values outside the bounds are clamped (the \
         answer shows what was applied). Pacing, shading, pauses and budgets are not yours \
         to change."
            .into()
    }

    fn parameters(&self) -> Value {
        schema::<StrategyArgs>()
    }

    fn map_error(&self, e: ToolError) -> ToolExecutionError {
        to_model(e)
    }

    async fn call(&self, _: &mut ToolContext, args: StrategyArgs) -> Result<Value, ToolError> {
        let bench = &self.0;
        bench.tally.calls.fetch_add(1, Ordering::Relaxed);
        let done = lock(&bench.agent).llm_set_strategy(
            &bench.model,
            &args.campaign,
            args.margin,
            args.max_cpm,
            &args.reasoning,
        )?;
        bench.tally.changes.fetch_add(1, Ordering::Relaxed);
        Ok(done)
    }
}
