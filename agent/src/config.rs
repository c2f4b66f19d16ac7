//! The agent's configuration file (TOML). Every field has a default, so
//! `agent --config /dev/null` runs with the documented paths.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Longest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub socket: SocketConfig,
    pub tables: TablesConfig,
    /// Append-only JSON-lines audit log of every change.
    pub audit_log: PathBuf,
    /// The bidder's admin listener (`ip:port`) that `reload` posts to; empty: `reload`
    /// only re-reads this file.
    pub bidder_admin: String,
    /// The file holding the bidder's admin token (its `[server] admin_token_file`),
    /// sent as `Authorization: Bearer` with `reload` and `campaign resume`; read at
    /// each call. Unset: sent without one (the bidder then refuses them).
    pub bidder_admin_token_file: Option<PathBuf>,
    /// `ip:port` of the agent's Prometheus endpoint (`GET /metrics`); empty: none.
    pub metrics_listen: String,
    /// The LLM strategist (optional: without a key it is skipped).
    pub llm: LlmConfig,
    /// Simulation mode: the time of day from the auction simulator's clock file.
    /// Refused unless the agent is started with `--simulate`.
    pub simulation: Option<SimulationConfig>,
    /// The built-in shading and pacing controller (on by default).
    pub controller: crate::controller::ControllerConfig,
    /// Fleet mode: strategy changes replicated to every host through Redis.
    pub fleet: Option<crate::fleet::FleetConfig>,
}

/// `[simulation]`: the agent stamps audit lines and rows and runs its cycles on the
/// auction simulator's clock (the bidder's `[simulation]` reads the same file). Only
/// for `agent --simulate`; without the flag the agent refuses this section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationConfig {
    pub clock_file: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            socket: SocketConfig::default(),
            tables: TablesConfig::default(),
            audit_log: "/var/log/bidder/audit.jsonl".into(),
            bidder_admin: "127.0.0.1:9090".into(),
            bidder_admin_token_file: None,
            metrics_listen: "127.0.0.1:9097".into(),
            llm: LlmConfig::default(),
            simulation: None,
            controller: crate::controller::ControllerConfig::default(),
            fleet: None,
        }
    }
}

/// Which API the strategist speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Anthropic's Messages API (`POST {base_url}/v1/messages`).
    Anthropic,
    /// OpenAI chat completions, or any server that speaks it
    /// (`POST {base_url}/chat/completions`).
    Openai,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::Openai => "openai",
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::Anthropic => "https://api.anthropic.com",
            Provider::Openai => "https://api.openai.com/v1",
        }
    }

    pub fn default_key_env(self) -> &'static str {
        match self {
            Provider::Anthropic => "ANTHROPIC_API_KEY",
            Provider::Openai => "OPENAI_API_KEY",
        }
    }

    pub fn default_model(self) -> &'static str {
        match self {
            Provider::Anthropic => "claude-sonnet-4-5",
            Provider::Openai => "gpt-4.1-mini",
        }
    }
}

/// The LLM strategist: every few minutes a model reviews the campaigns and may move
/// margin and max CPM through typed tools, inside the hard bounds (`llm/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Off: no cycle runs even with a key (`bidderctl llm enable` turns it on).
    pub enabled: bool,
    pub provider: Provider,
    /// Empty: the provider's default model.
    pub model: String,
    /// Empty: the provider's public endpoint.
    pub base_url: String,
    /// The environment variable holding the key. Empty: `ANTHROPIC_API_KEY` or
    /// `OPENAI_API_KEY` by provider. The key itself never goes in this file.
    pub api_key_env: String,
    /// A file holding the key (first line); wins over the environment when set.
    pub api_key_file: Option<PathBuf>,
    /// Seconds between cycles.
    pub interval_s: u64,
    /// A cycle (every model call and tool round) that runs longer is abandoned and
    /// changes nothing more.
    pub cycle_timeout_s: u64,
    /// Model calls per cycle: a tool round and the answer take two.
    pub max_turns: usize,
    /// Output tokens a cycle may use, spread over its turns (each call asks for at
    /// most this divided by `max_turns`). Input is bounded by the context's size.
    pub max_output_tokens_per_cycle: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            enabled: true,
            provider: Provider::Anthropic,
            model: String::new(),
            base_url: String::new(),
            api_key_env: String::new(),
            api_key_file: None,
            interval_s: 300,
            cycle_timeout_s: 60,
            max_turns: 4,
            max_output_tokens_per_cycle: 4_096,
        }
    }
}

impl LlmConfig {
    pub fn model(&self) -> &str {
        if self.model.is_empty() {
            self.provider.default_model()
        } else {
            &self.model
        }
    }

    pub fn base_url(&self) -> &str {
        if self.base_url.is_empty() {
            self.provider.default_base_url()
        } else {
            self.base_url.trim_end_matches('/')
        }
    }

    pub fn key_env(&self) -> &str {
        if self.api_key_env.is_empty() {
            self.provider.default_key_env()
        } else {
            &self.api_key_env
        }
    }
}

/// The control socket and who may use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    pub path: PathBuf,
    /// Group the socket file is given (mode 0660): its members can connect. Empty:
    /// the agent's own group.
    pub group: String,
    /// Peer uids allowed to send commands.
    pub allowed_uids: Vec<u32>,
    /// Peer groups (primary or supplementary) allowed to send commands.
    pub allowed_gids: Vec<u32>,
    /// Longest request line, bytes; longer lines get `line_too_long`.
    pub max_line_bytes: usize,
    /// A client that sends nothing for this long is told so and disconnected.
    pub idle_timeout_ms: u64,
    /// Clients connected at once; past this a new one gets `busy`.
    pub max_clients: usize,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            path: "/run/bidder/control.sock".into(),
            group: String::new(),
            allowed_uids: vec![0],
            allowed_gids: Vec::new(),
            max_line_bytes: 64 * 1024,
            idle_timeout_ms: 30_000,
            max_clients: 64,
        }
    }
}

/// Where the tables live and how many rows the strategy table has.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    pub strategy_path: PathBuf,
    pub stats_path: PathBuf,
    pub campaign_capacity: u32,
    pub partner_capacity: u32,
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            strategy_path: "/run/bidder/strategy".into(),
            stats_path: "/run/bidder/stats".into(),
            campaign_capacity: 4_096,
            partner_capacity: 256,
        }
    }
}

impl AgentConfig {
    /// Where `GET /metrics` is served: `None` when `metrics_listen` is empty.
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let listen = self.metrics_listen.as_str();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            format!(
                "metrics_listen: `{listen}` is not ip:port; e.g. 127.0.0.1:9097, or \"\" for none"
            )
        })
    }

    /// Reads and checks a configuration file; the error is one line naming the file.
    pub fn load(path: &Path) -> Result<AgentConfig, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(format!(
                "{}: {} bytes is over the {MAX_CONFIG_BYTES}-byte limit",
                path.display(),
                meta.len()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: AgentConfig = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.message().trim()))?;
        config
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Bounds of every number.
    pub fn check(&self) -> Result<(), String> {
        self.controller.check()?;
        let s = &self.socket;
        let t = &self.tables;
        let max_rows = u64::from(bidder_common::table::MAX_ROWS);
        let l = &self.llm;
        let ranges: [(&str, u64, u64, u64); 9] = [
            ("llm.interval_s", l.interval_s, 1, 86_400),
            ("llm.cycle_timeout_s", l.cycle_timeout_s, 1, 3_600),
            ("llm.max_turns", l.max_turns as u64, 2, 16),
            (
                "llm.max_output_tokens_per_cycle",
                l.max_output_tokens_per_cycle,
                256,
                200_000,
            ),
            (
                "socket.max_line_bytes",
                s.max_line_bytes as u64,
                256,
                16 << 20,
            ),
            ("socket.idle_timeout_ms", s.idle_timeout_ms, 10, 3_600_000),
            ("socket.max_clients", s.max_clients as u64, 1, 4_096),
            (
                "tables.campaign_capacity",
                u64::from(t.campaign_capacity),
                1,
                max_rows,
            ),
            (
                "tables.partner_capacity",
                u64::from(t.partner_capacity),
                1,
                max_rows,
            ),
        ];
        for (key, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{key}: {v} is outside {lo}..={hi}"));
            }
        }
        if l.cycle_timeout_s > l.interval_s {
            return Err(format!(
                "llm.cycle_timeout_s: {} is longer than llm.interval_s ({}): cycles would overlap",
                l.cycle_timeout_s, l.interval_s
            ));
        }
        let url_ok = l.base_url.is_empty()
            || l.base_url.starts_with("http://")
            || l.base_url.starts_with("https://");
        if !url_ok {
            return Err(format!(
                "llm.base_url: `{}` is not an http:// or https:// URL",
                l.base_url
            ));
        }
        self.metrics_addr()?;
        if let Some(fleet) = &self.fleet {
            fleet.check()?;
        }
        if s.allowed_uids.is_empty() && s.allowed_gids.is_empty() {
            return Err(
                "socket: allowed_uids and allowed_gids are both empty: nobody could use the agent"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent.toml");
        let example = AgentConfig::load(&path).unwrap();
        let default = AgentConfig::default();
        assert_eq!(format!("{example:?}"), format!("{default:?}"));
    }

    #[test]
    fn numbers_out_of_bounds_and_an_empty_allow_list_are_refused() {
        let mut c = AgentConfig::default();
        c.socket.idle_timeout_ms = 0;
        assert!(c.check().unwrap_err().contains("socket.idle_timeout_ms"));
        let mut c = AgentConfig::default();
        c.socket.allowed_uids.clear();
        assert!(c.check().unwrap_err().contains("nobody"));
        let mut c = AgentConfig {
            metrics_listen: "localhost".into(),
            ..AgentConfig::default()
        };
        assert!(c.check().unwrap_err().contains("metrics_listen"));
        c.metrics_listen = String::new();
        c.check().unwrap();
    }

    #[test]
    fn llm_settings_that_cannot_work_are_refused_by_name() {
        let mut c = AgentConfig::default();
        c.llm.max_turns = 1;
        assert!(c.check().unwrap_err().contains("llm.max_turns"));
        let mut c = AgentConfig::default();
        c.llm.cycle_timeout_s = c.llm.interval_s + 1;
        assert!(c.check().unwrap_err().contains("overlap"));
        let mut c = AgentConfig::default();
        c.llm.base_url = "api.example.com".into();
        assert!(c.check().unwrap_err().contains("llm.base_url"));
        c.llm.base_url = "https://api.example.com/v1/".into();
        c.check().unwrap();
        assert_eq!(c.llm.base_url(), "https://api.example.com/v1");
        let toml = "[llm]\nprovider = \"openai\"\napi_key = \"sk-in-the-file\"\n";
        let err = toml::from_str::<AgentConfig>(toml).unwrap_err().to_string();
        assert!(
            err.contains("api_key"),
            "a key in the file is refused: {err}"
        );
    }
}
