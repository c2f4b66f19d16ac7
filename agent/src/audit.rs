//! The audit log: one JSON line per change — when, who, verb, target, old → new, why —
//! appended and synced before the change is applied, so there is never a change
//! without its line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Most lines `audit tail` returns.
pub const MAX_TAIL_LINES: usize = 1_000;
/// Bytes read from the end of the log to find the last lines: enough for
/// [`MAX_TAIL_LINES`] of typical entries, and a bound on a request's cost.
const TAIL_WINDOW_BYTES: u64 = 1024 * 1024;

/// Who made a change: the peer of the control socket, or the agent itself (then
/// `actor` names which part, e.g. `llm:claude-sonnet-4-5`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Who {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl Who {
    /// The agent acting on its own, as `actor`.
    pub fn agent(actor: String) -> Who {
        Who {
            uid: bidder_common::table::strategy::UPDATED_BY_AGENT,
            gid: 0,
            pid: None,
            actor: Some(actor),
        }
    }
}

/// One change.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub at_unix_ms: u64,
    pub at: String,
    pub who: Who,
    pub verb: &'a str,
    pub target: &'a str,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
    /// What the agent was asked for when it applied something else (an LLM's value
    /// clamped to the bounds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asked: Option<serde_json::Value>,
    pub why: &'a str,
}

/// The append-only log file.
pub struct AuditLog {
    path: PathBuf,
    file: File,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and syncs it to disk.
    pub fn append(&mut self, entry: &Entry<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }

    /// The last `n` (≤ [`MAX_TAIL_LINES`]) entries, oldest first.
    pub fn tail(&self, n: usize) -> std::io::Result<Vec<serde_json::Value>> {
        let mut f = File::open(&self.path)?;
        let len = f.metadata()?.len();
        let start = len.saturating_sub(TAIL_WINDOW_BYTES);
        f.seek(SeekFrom::Start(start))?;
        let mut text = String::new();
        f.take(TAIL_WINDOW_BYTES).read_to_string(&mut text)?;
        let mut lines: Vec<&str> = text.lines().collect();
        if start > 0 && !lines.is_empty() {
            lines.remove(0); // cut mid-line by the window
        }
        let n = n.min(MAX_TAIL_LINES);
        let skip = lines.len().saturating_sub(n);
        Ok(lines[skip..]
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

/// `unix_ms` as RFC 3339 UTC with milliseconds (`2026-05-04T17:03:09.123Z`).
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_429_800_000), "2026-11-23T10:30:00.000Z");
    }

    #[test]
    fn tail_returns_the_last_entries_in_order() {
        let dir = std::env::temp_dir().join(format!("audit-tail-{}", std::process::id()));
        let path = dir.join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        let who = Who {
            uid: 1,
            gid: 1,
            pid: None,
            actor: None,
        };
        for i in 0..5 {
            let target = format!("c{i}");
            log.append(&Entry {
                at_unix_ms: i,
                at: rfc3339(i),
                who: who.clone(),
                verb: "campaign.pause",
                target: &target,
                old: serde_json::json!({"paused": false}),
                new: serde_json::json!({"paused": true}),
                asked: None,
                why: "test",
            })
            .unwrap();
        }
        let tail = log.tail(2).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0]["target"], "c3");
        assert_eq!(tail[1]["target"], "c4");
    }
}
