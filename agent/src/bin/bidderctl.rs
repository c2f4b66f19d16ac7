//! `bidderctl`: the operator's command line for the agent's control socket.
//!
//! Prints a readable table by default and the agent's JSON answer with `--json`.
//! Multipliers are typed as decimals (`--margin 1.10`) and money in currency units
//! (`--max-cpm 2.50`); both are sent as exact integers (ppm, micros), never floats.
//!
//! Exit codes:
//!   0  done
//!   1  the agent refused the request (bad arguments, out of bounds, not found, …)
//!   2  the command line is invalid
//!   3  the agent cannot be reached (no socket, not running, timed out)
//!   4  the agent denied this user
//!   5  the agent's answer was not understood

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent::protocol::Verb;
use agent::units::{format_millionths, parse_millionths};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_DENIED: u8 = 4;
const EXIT_BAD_ANSWER: u8 = 5;
/// Longest answer read (a full `strategy list` of 4,096 campaigns fits).
const MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Parser)]
#[command(
    name = "bidderctl",
    version,
    about = "Control the bidder's strategy through the agent"
)]
struct Cli {
    /// The agent's control socket.
    #[arg(long, global = true, default_value = "/run/bidder/control.sock")]
    socket: PathBuf,
    /// Print the agent's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// How long to wait for the agent.
    #[arg(long, global = true, default_value_t = 5_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The agent's health, its tables and the bidder it sees.
    Status,
    /// Campaign strategy: margin, max CPM, pacing, shading.
    #[command(subcommand)]
    Strategy(StrategyCmd),
    /// Pause or resume a campaign.
    #[command(subcommand)]
    Campaign(CampaignCmd),
    /// Daily budgets.
    #[command(subcommand)]
    Budget(BudgetCmd),
    /// Partner (exchange) limits.
    #[command(subcommand)]
    Partner(PartnerCmd),
    /// The bidder's counters, all or one campaign or partner.
    Stats {
        #[arg(long)]
        campaign: Option<String>,
        #[arg(long)]
        partner: Option<String>,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Re-read the agent's configuration and ask the bidder to reload its own.
    Reload,
    /// The LLM strategist: its state, a cycle now, on and off.
    #[command(subcommand)]
    Llm(LlmCmd),
    /// The bidder's ads.txt and sellers.json files.
    #[command(subcommand)]
    Supply(SupplyCmd),
    /// The built-in shading and pacing controller.
    #[command(subcommand)]
    Controller(ControllerCmd),
}

#[derive(Subcommand)]
enum ControllerCmd {
    /// Per campaign: the bid it aims at, the market it learnt, its calibration.
    Status,
    /// One step now for every campaign (the timer's step, without waiting for it).
    Step,
}

#[derive(Subcommand)]
enum SupplyCmd {
    /// Every tracked file: source, age of the copy in use, entries, last error.
    Status,
}

#[derive(Subcommand)]
enum LlmCmd {
    /// Model, switch, last cycle, tokens used.
    Status,
    /// Start a cycle now (the answer does not wait for it).
    RunNow {
        #[arg(long, default_value = "run now")]
        why: String,
    },
    Enable {
        #[arg(long)]
        why: String,
    },
    Disable {
        #[arg(long)]
        why: String,
    },
}

#[derive(Subcommand)]
enum StrategyCmd {
    Get {
        campaign: String,
    },
    List,
    /// Change one or more fields; the rest stay.
    Set {
        campaign: String,
        /// Margin multiplier, e.g. 1.10 (bounds 0.90–1.50).
        #[arg(long)]
        margin: Option<String>,
        /// Max CPM in currency units, e.g. 2.50 (at most the campaign's ceiling).
        #[arg(long)]
        max_cpm: Option<String>,
        /// Share of eligible requests to bid on, 0–1.
        #[arg(long)]
        pacing: Option<String>,
        /// Bid shading multiplier, 0.10–1.00 (for every segment: clears the
        /// controller's per-segment shadings).
        #[arg(long)]
        shading: Option<String>,
        #[arg(long)]
        why: String,
    },
}

#[derive(Subcommand)]
enum CampaignCmd {
    Pause {
        campaign: String,
        #[arg(long)]
        why: String,
    },
    Resume {
        campaign: String,
        #[arg(long)]
        why: String,
    },
}

#[derive(Subcommand)]
enum BudgetCmd {
    Get {
        campaign: String,
    },
    /// Set the daily budget in currency units, or `configured` to drop the override.
    Set {
        campaign: String,
        amount: String,
        #[arg(long)]
        why: String,
    },
}

#[derive(Subcommand)]
enum PartnerCmd {
    List,
    SetLimit {
        partner: String,
        #[arg(long)]
        qps: i64,
        #[arg(long)]
        burst: i64,
        #[arg(long)]
        why: String,
    },
    Enable {
        partner: String,
        #[arg(long)]
        why: String,
    },
    Disable {
        partner: String,
        #[arg(long)]
        why: String,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
    },
}

/// A failure and the exit code it maps to.
struct Fail(u8, String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, message)) => {
            eprintln!("bidderctl: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Fail> {
    let (verb, args, why) = request(&cli.command)?;
    let mut req = json!({"v": agent::protocol::VERSION, "verb": verb.name(), "args": args});
    if let Some(why) = why {
        req["why"] = json!(why);
    }
    let answer = call(cli, &req)?;
    if answer["ok"] != json!(true) {
        let e = &answer["error"];
        let code = if e["code"] == "denied" {
            EXIT_DENIED
        } else {
            EXIT_REFUSED
        };
        if cli.json {
            println!("{answer}");
        }
        let hint = e["hint"].as_str().unwrap_or("");
        return Err(Fail(
            code,
            format!("{}: {} ({hint})", text(&e["code"]), text(&e["message"])),
        ));
    }
    if cli.json {
        println!("{answer}");
    } else {
        print!("{}", render(verb, &answer["result"]));
    }
    Ok(())
}

fn usage(message: String) -> Fail {
    Fail(EXIT_USAGE, message)
}

fn millionths(flag: &str, v: &Option<String>) -> Result<Option<i64>, Fail> {
    v.as_deref()
        .map(|t| parse_millionths(t).map_err(|e| usage(format!("{flag}: {e}"))))
        .transpose()
}

/// The verb, its arguments and the reason, from the command line.
fn request(cmd: &Command) -> Result<(Verb, Value, Option<&str>), Fail> {
    Ok(match cmd {
        Command::Status => (Verb::Status, json!({}), None),
        Command::Strategy(StrategyCmd::Get { campaign }) => {
            (Verb::StrategyGet, json!({"campaign": campaign}), None)
        }
        Command::Strategy(StrategyCmd::List) => (Verb::StrategyList, json!({}), None),
        Command::Strategy(StrategyCmd::Set {
            campaign,
            margin,
            max_cpm,
            pacing,
            shading,
            why,
        }) => {
            let mut args = json!({"campaign": campaign});
            for (key, flag, v) in [
                ("margin_ppm", "--margin", margin),
                ("max_cpm_micros", "--max-cpm", max_cpm),
                ("pacing_ppm", "--pacing", pacing),
                ("shading_ppm", "--shading", shading),
            ] {
                if let Some(n) = millionths(flag, v)? {
                    args[key] = json!(n);
                }
            }
            (Verb::StrategySet, args, Some(why.as_str()))
        }
        Command::Campaign(CampaignCmd::Pause { campaign, why }) => (
            Verb::CampaignPause,
            json!({"campaign": campaign}),
            Some(why.as_str()),
        ),
        Command::Campaign(CampaignCmd::Resume { campaign, why }) => (
            Verb::CampaignResume,
            json!({"campaign": campaign}),
            Some(why.as_str()),
        ),
        Command::Budget(BudgetCmd::Get { campaign }) => {
            (Verb::BudgetGet, json!({"campaign": campaign}), None)
        }
        Command::Budget(BudgetCmd::Set {
            campaign,
            amount,
            why,
        }) => {
            let micros = if amount == "configured" {
                Value::Null
            } else {
                json!(parse_millionths(amount).map_err(|e| usage(format!("amount: {e}")))?)
            };
            (
                Verb::BudgetSet,
                json!({"campaign": campaign, "daily_budget_micros": micros}),
                Some(why.as_str()),
            )
        }
        Command::Partner(PartnerCmd::List) => (Verb::PartnerList, json!({}), None),
        Command::Partner(PartnerCmd::SetLimit {
            partner,
            qps,
            burst,
            why,
        }) => (
            Verb::PartnerSetLimit,
            json!({"partner": partner, "qps_limit": qps, "burst": burst}),
            Some(why.as_str()),
        ),
        Command::Partner(PartnerCmd::Enable { partner, why }) => (
            Verb::PartnerEnable,
            json!({"partner": partner}),
            Some(why.as_str()),
        ),
        Command::Partner(PartnerCmd::Disable { partner, why }) => (
            Verb::PartnerDisable,
            json!({"partner": partner}),
            Some(why.as_str()),
        ),
        Command::Stats { campaign, partner } => {
            let mut args = json!({});
            if let Some(c) = campaign {
                args["campaign"] = json!(c);
            }
            if let Some(p) = partner {
                args["partner"] = json!(p);
            }
            (Verb::Stats, args, None)
        }
        Command::Audit(AuditCmd::Tail { lines }) => {
            (Verb::AuditTail, json!({"lines": lines}), None)
        }
        Command::Reload => (Verb::Reload, json!({}), None),
        Command::Llm(LlmCmd::Status) => (Verb::LlmStatus, json!({}), None),
        Command::Supply(SupplyCmd::Status) => (Verb::SupplyStatus, json!({}), None),
        Command::Controller(ControllerCmd::Status) => (Verb::ControllerStatus, json!({}), None),
        Command::Controller(ControllerCmd::Step) => (Verb::ControllerStep, json!({}), None),
        Command::Llm(LlmCmd::RunNow { why }) => (Verb::LlmRun, json!({}), Some(why.as_str())),
        Command::Llm(LlmCmd::Enable { why }) => (Verb::LlmEnable, json!({}), Some(why.as_str())),
        Command::Llm(LlmCmd::Disable { why }) => (Verb::LlmDisable, json!({}), Some(why.as_str())),
    })
}

/// Sends one request line and reads one answer line.
fn call(cli: &Cli, req: &Value) -> Result<Value, Fail> {
    let unreachable = |e: std::io::Error| {
        Fail(
            EXIT_UNREACHABLE,
            format!("{}: {e} (is the agent running?)", cli.socket.display()),
        )
    };
    let mut stream = UnixStream::connect(&cli.socket).map_err(unreachable)?;
    let timeout = Some(Duration::from_millis(cli.timeout_ms.max(1)));
    stream.set_read_timeout(timeout).map_err(unreachable)?;
    stream.set_write_timeout(timeout).map_err(unreachable)?;
    let mut line = req.to_string();
    line.push('\n');
    let sent = stream.write_all(line.as_bytes());
    let mut answer = String::new();
    let mut reader = BufReader::new(std::io::Read::take(&stream, MAX_ANSWER_BYTES));
    let read = reader.read_line(&mut answer);
    // An agent that refused us may have answered and hung up before reading the
    // request: its answer (why) is worth more than our write's broken pipe.
    if let Err(e) = sent {
        if answer.is_empty() {
            return Err(unreachable(e));
        }
    }
    read.map_err(unreachable)?;
    serde_json::from_str(&answer).map_err(|e| {
        Fail(
            EXIT_BAD_ANSWER,
            format!("unreadable answer from the agent ({e}): {answer:?}"),
        )
    })
}

/// A value for the terminal: strings with their control characters escaped (`why`
/// and names come from other people; an escape sequence must not reach the
/// operator's terminal as one).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().any(char::is_control) => s
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn ppm(v: &Value) -> String {
    v.as_i64().map_or_else(|| text(v), format_millionths)
}

/// A table: a header row and aligned columns.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|h| h.to_string()).collect(), &mut out);
    for row in rows {
        line(row, &mut out);
    }
    out
}

fn key_values(v: &Value, prefix: &str, out: &mut String) {
    if let Value::Object(map) = v {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_object() {
                key_values(v, &key, out);
            } else {
                out.push_str(&format!("{key:<32} {}\n", text(v)));
            }
        }
    }
}

fn strategy_rows(campaigns: &[Value]) -> String {
    let rows = campaigns
        .iter()
        .map(|c| {
            vec![
                text(&c["campaign"]),
                ppm(&c["margin_ppm"]),
                ppm(&c["max_cpm_micros"]),
                ppm(&c["ceiling_cpm_micros"]),
                ppm(&c["pacing_ppm"]),
                ppm(&c["shading_ppm"]),
                if c["paused"] == json!(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                text(&c["source"]),
                text(&c["updated_by"]),
                text(&c["why"]),
            ]
        })
        .collect();
    table(
        &[
            "CAMPAIGN", "MARGIN", "MAX CPM", "CEILING", "PACING", "SHADING", "PAUSED", "SOURCE",
            "BY", "WHY",
        ],
        rows,
    )
}

fn partner_rows(partners: &[Value]) -> String {
    let rows = partners
        .iter()
        .map(|p| {
            let conf = &p["configured"];
            vec![
                text(&p["partner"]),
                if p["enabled"] == json!(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                text(&p["qps_limit"]),
                text(&p["burst"]),
                format!("{}/{}", text(&conf["qps_limit"]), text(&conf["burst"])),
                if p["override"].is_null() {
                    "-".into()
                } else {
                    "yes".into()
                },
                text(&p["requests"]),
                text(&p["bids"]),
                text(&p["no_bids"]),
            ]
        })
        .collect();
    table(
        &[
            "PARTNER",
            "ENABLED",
            "QPS",
            "BURST",
            "CONFIGURED",
            "OVERRIDE",
            "REQUESTS",
            "BIDS",
            "NO BIDS",
        ],
        rows,
    )
}

/// Per campaign: its outcomes (the average clearing CPM of its wins in currency
/// units), its budget, and its no-bids by reason, most frequent first.
fn campaign_stats_rows(campaigns: &[Value]) -> String {
    let rows = campaigns
        .iter()
        .map(|c| {
            let wins = c["wins"].as_i64().unwrap_or(0);
            let clearing_cpm = match (c["clearing_micros"].as_i64(), wins) {
                (Some(sum), w) if w > 0 => format_millionths(sum.saturating_mul(1_000) / w),
                _ => "-".into(),
            };
            let mut reasons: Vec<(String, u64)> = c["no_bids"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let reasons: Vec<String> = reasons.iter().map(|(k, n)| format!("{k} {n}")).collect();
            vec![
                text(&c["campaign"]),
                text(&c["requests"]),
                text(&c["bids"]),
                text(&c["outbid"]),
                text(&c["wins"]),
                clearing_cpm,
                ppm(&c["spent_micros"]),
                ppm(&c["daily_budget_micros"]),
                ppm(&c["reserved_micros"]),
                text(&c["budget_refusals"]),
                if reasons.is_empty() {
                    "-".into()
                } else {
                    reasons.join(", ")
                },
            ]
        })
        .collect();
    table(
        &[
            "CAMPAIGN",
            "REQUESTS",
            "BIDS",
            "OUTBID",
            "WINS",
            "AVG CLEARING CPM",
            "SPENT",
            "DAILY",
            "RESERVED",
            "REFUSED",
            "NO BIDS",
        ],
        rows,
    )
}

/// "field: old → new" for every field a change moved.
fn change(result: &Value) -> String {
    let target = text(result.get("campaign").unwrap_or(&result["partner"]));
    let (old, new) = (&result["old"], &result["new"]);
    let mut out = String::new();
    if let Value::Object(map) = new {
        for (k, v) in map {
            if old.get(k) != Some(v)
                && !matches!(k.as_str(), "updated_at" | "updated_by" | "why" | "source")
            {
                let show = |x: &Value| {
                    if k.ends_with("_ppm") || k.ends_with("_micros") {
                        ppm(x)
                    } else {
                        text(x)
                    }
                };
                out.push_str(&format!(
                    "{target}: {k}: {} -> {}\n",
                    show(&old[k]),
                    show(v)
                ));
            }
        }
    }
    if out.is_empty() {
        out = format!("{target}: unchanged\n");
    }
    out
}

fn render(verb: Verb, r: &Value) -> String {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    match verb {
        Verb::StrategyGet => strategy_rows(std::slice::from_ref(r)),
        Verb::StrategyList => strategy_rows(&list(&r["campaigns"])),
        Verb::PartnerList => partner_rows(&list(&r["partners"])),
        Verb::Stats => {
            let mut out = String::new();
            key_values(&r["totals"], "", &mut out);
            out.push('\n');
            out.push_str(&campaign_stats_rows(&list(&r["campaigns"])));
            out.push('\n');
            out.push_str(&partner_rows(&list(&r["partners"])));
            out
        }
        Verb::SupplyStatus => {
            let rows = list(&r["files"])
                .iter()
                .map(|f| {
                    vec![
                        text(&f["kind"]),
                        text(&f["domain"]),
                        f["age_s"]
                            .as_u64()
                            .map_or("none".into(), |a| format!("{a}s")),
                        text(&f["entries"]),
                        format!("{}s", text(&f["next_fetch_in_s"])),
                        if f["last_error"].is_null() {
                            String::new()
                        } else {
                            text(&f["last_error"])
                        },
                        text(&f["source"]),
                    ]
                })
                .collect();
            table(
                &[
                    "KIND",
                    "DOMAIN",
                    "AGE",
                    "ENTRIES",
                    "NEXT",
                    "LAST ERROR",
                    "SOURCE",
                ],
                rows,
            )
        }
        Verb::AuditTail => {
            let rows = list(&r["entries"])
                .iter()
                .map(|e| {
                    vec![
                        text(&e["at"]),
                        e["who"]["actor"]
                            .as_str()
                            .map_or_else(|| text(&e["who"]["uid"]), str::to_string),
                        text(&e["verb"]),
                        text(&e["target"]),
                        text(&e["why"]),
                    ]
                })
                .collect();
            table(&["AT", "WHO", "VERB", "TARGET", "WHY"], rows)
        }
        Verb::StrategySet
        | Verb::CampaignPause
        | Verb::CampaignResume
        | Verb::BudgetSet
        | Verb::PartnerSetLimit
        | Verb::PartnerEnable
        | Verb::PartnerDisable => change(r),
        Verb::ControllerStatus
        | Verb::ControllerStep
        | Verb::Status
        | Verb::BudgetGet
        | Verb::Reload
        | Verb::LlmStatus
        | Verb::LlmRun
        | Verb::LlmEnable
        | Verb::LlmDisable => {
            let mut out = String::new();
            key_values(r, "", &mut out);
            out
        }
    }
}
