//! `promtool check metrics` for tests that scrape a `/metrics` endpoint (the bidder's
//! admin port, the agent's exporter).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where Debian's `prometheus` package puts promtool (`cargo xtask setup` installs it).
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// Runs `promtool check metrics` on `text`; panics with its output on any finding, and
/// when promtool is missing (a test must fail, not skip).
pub fn promtool_check(text: &str) {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install Debian's `prometheus` package (`cargo xtask setup` does)"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics failed ({}):\n{}{}\n--- scrape ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
