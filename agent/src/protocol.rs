//! The control protocol on the wire: one JSON object per line each way, versioned.
//! `docs/control-protocol.md` is the specification; its examples are replayed by
//! `agent/tests/protocol_doc.rs`.
//!
//! A request is `{"v":1,"id":…,"verb":"…","args":{…},"why":"…"}` (`id` optional and
//! echoed back, `args` optional when a verb takes none, `why` required for changes).
//! A response is `{"v":1,"id":…,"ok":true,"result":{…}}` or
//! `{"v":1,"id":…,"ok":false,"error":{"code":"…","message":"…","hint":"…"}}`.
//! An error never closes the connection, except `denied`, `idle_timeout` and `busy`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this agent speaks.
pub const VERSION: u64 = 1;

/// Every verb: the one list the agent dispatches on, `bidderctl` sends and the
/// protocol document is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Status,
    StrategyGet,
    StrategyList,
    StrategySet,
    CampaignPause,
    CampaignResume,
    BudgetGet,
    BudgetSet,
    PartnerList,
    PartnerSetLimit,
    PartnerEnable,
    PartnerDisable,
    Stats,
    AuditTail,
    Reload,
    LlmStatus,
    LlmRun,
    LlmEnable,
    LlmDisable,
    SupplyStatus,
    ControllerStatus,
    ControllerStep,
}

impl Verb {
    /// Every verb, in the order the documentation lists them.
    pub const ALL: [Verb; 22] = [
        Verb::Status,
        Verb::StrategyGet,
        Verb::StrategyList,
        Verb::StrategySet,
        Verb::CampaignPause,
        Verb::CampaignResume,
        Verb::BudgetGet,
        Verb::BudgetSet,
        Verb::PartnerList,
        Verb::PartnerSetLimit,
        Verb::PartnerEnable,
        Verb::PartnerDisable,
        Verb::Stats,
        Verb::AuditTail,
        Verb::Reload,
        Verb::LlmStatus,
        Verb::LlmRun,
        Verb::LlmEnable,
        Verb::LlmDisable,
        Verb::SupplyStatus,
        Verb::ControllerStatus,
        Verb::ControllerStep,
    ];

    /// The verb as spelled on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Status => "status",
            Verb::StrategyGet => "strategy.get",
            Verb::StrategyList => "strategy.list",
            Verb::StrategySet => "strategy.set",
            Verb::CampaignPause => "campaign.pause",
            Verb::CampaignResume => "campaign.resume",
            Verb::BudgetGet => "budget.get",
            Verb::BudgetSet => "budget.set",
            Verb::PartnerList => "partner.list",
            Verb::PartnerSetLimit => "partner.set_limit",
            Verb::PartnerEnable => "partner.enable",
            Verb::PartnerDisable => "partner.disable",
            Verb::Stats => "stats",
            Verb::AuditTail => "audit.tail",
            Verb::Reload => "reload",
            Verb::LlmStatus => "llm.status",
            Verb::LlmRun => "llm.run",
            Verb::LlmEnable => "llm.enable",
            Verb::LlmDisable => "llm.disable",
            Verb::SupplyStatus => "supply.status",
            Verb::ControllerStatus => "controller.status",
            Verb::ControllerStep => "controller.step",
        }
    }

    /// The verb spelled `name` on the wire.
    pub fn from_name(name: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Every verb's name, comma-separated (for hints).
    pub fn names() -> String {
        Verb::ALL.map(Verb::name).join(", ")
    }
}

/// A request as parsed from a line (before its `args` are checked against the verb).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub v: u64,
    #[serde(default)]
    pub id: Value,
    pub verb: String,
    #[serde(default)]
    pub args: Value,
    #[serde(default)]
    pub why: Option<String>,
}

/// Machine-readable error codes. Stable: scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The line is not a JSON object of the request shape.
    BadJson,
    UnsupportedVersion,
    UnknownVerb,
    /// Arguments missing, unknown or of the wrong type.
    BadArgs,
    /// A value outside the hard bounds.
    OutOfBounds,
    /// No such campaign or partner in the bidder's catalog.
    NotFound,
    /// The bidder's stats table is missing or unreadable (is the bidder running?).
    BidderUnavailable,
    /// Every row of the strategy table is in use.
    TableFull,
    LineTooLong,
    IdleTimeout,
    /// The peer's uid and groups are not allowed.
    Denied,
    /// Too many clients connected.
    Busy,
    /// The bidder refused or failed a reload.
    ReloadFailed,
    /// The LLM strategist has no key or is disabled.
    LlmUnavailable,
    /// Our own failure (audit log unwritable, …): nothing was changed.
    Internal,
}

/// A structured error: what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Error {
    pub code: Code,
    pub message: String,
    pub hint: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// A response line.
#[derive(Debug, Serialize)]
pub struct Response {
    pub v: u64,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub id: Value,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

impl Response {
    pub fn ok(id: Value, result: Value) -> Response {
        Response {
            v: VERSION,
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Value, error: Error) -> Response {
        Response {
            v: VERSION,
            id,
            ok: false,
            result: None,
            error: Some(error),
        }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"v":1,"ok":false,"error":{"code":"internal","message":"unserialisable response","hint":"report a bug"}}"#.to_vec()
        });
        line.push(b'\n');
        line
    }
}

/// Parses a request line; a bad line yields the error to answer with.
pub fn parse(line: &[u8]) -> Result<Request, Box<Response>> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        Box::new(Response::err(
            Value::Null,
            Error::new(
                Code::BadJson,
                format!("not JSON: {e}"),
                r#"send one JSON object per line, e.g. {"v":1,"verb":"status"}"#,
            ),
        ))
    })?;
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    if let Some(v) = value
        .get("v")
        .and_then(Value::as_u64)
        .filter(|v| *v != VERSION)
    {
        return Err(Box::new(Response::err(
            id,
            Error::new(
                Code::UnsupportedVersion,
                format!("protocol version {v} is not supported"),
                format!("this agent speaks version {VERSION}"),
            ),
        )));
    }
    serde_json::from_value(value).map_err(|e| {
        Box::new(Response::err(
            id,
            Error::new(
                Code::BadJson,
                format!("not a request: {e}"),
                r#"a request has "v", "verb" and optionally "id", "args", "why""#,
            ),
        ))
    })
}

/// Checks a verb's `args` against its shape `T` (unknown fields refused).
pub fn args<T: serde::de::DeserializeOwned>(verb: &str, args: &Value) -> Result<T, Error> {
    let args = if args.is_null() {
        Value::Object(Default::default())
    } else {
        args.clone()
    };
    serde_json::from_value(args).map_err(|e| {
        Error::new(
            Code::BadArgs,
            format!("{verb}: {e}"),
            format!("see docs/control-protocol.md for the arguments of {verb}"),
        )
    })
}
