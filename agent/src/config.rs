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
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            socket: SocketConfig::default(),
            tables: TablesConfig::default(),
            audit_log: "/var/log/bidder/audit.jsonl".into(),
            bidder_admin: "127.0.0.1:9090".into(),
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
            strategy_path: "/dev/shm/bidder-strategy".into(),
            stats_path: "/dev/shm/bidder-stats".into(),
            campaign_capacity: 4_096,
            partner_capacity: 256,
        }
    }
}

impl AgentConfig {
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
        let s = &self.socket;
        let t = &self.tables;
        let max_rows = u64::from(bidder_common::table::MAX_ROWS);
        let ranges: [(&str, u64, u64, u64); 5] = [
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
    }
}
