//! The `bidder` command line as operators use it: `decide` prints a response or the
//! no-bid reasons and exits 0; a malformed request exits 2 with a clear line;
//! `check-config` exits 0 on the demo and 1 on a broken file.

use std::path::Path;
use std::process::Command;

fn bidder(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bidder"));
    cmd.args(args).current_dir(manifest);
    let output = match stdin {
        Some(text) => {
            use std::io::Write;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // The command may refuse its arguments and exit before reading its
            // input; a closed pipe then is part of the outcome, not a test failure.
            let written = child.stdin.take().unwrap().write_all(text.as_bytes());
            if let Err(e) = written {
                assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
            }
            child.wait_with_output().unwrap()
        }
        None => cmd.output().unwrap(),
    };
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const DEMO: &str = "examples/demo.toml";

#[test]
fn decide_prints_the_response_for_a_bid() {
    let (code, out, _) = bidder(
        &[
            "decide",
            "--config",
            DEMO,
            "examples/traffic/01-site-banner.json",
        ],
        None,
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON response");
    assert_eq!(v["id"], "demo-site-banner");
    assert_eq!(v["seatbid"][0]["bid"][0]["cid"], "acme-display");
}

#[test]
fn decide_prints_each_imps_reason_for_a_no_bid() {
    let (code, out, _) = bidder(
        &["decide", "--config", DEMO, "examples/traffic/05-coppa.json"],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.contains("no bid: coppa"), "{out}");
    assert!(out.contains("imp[0]: no bid: coppa"), "{out}");
}

#[test]
fn decide_reads_standard_input_and_refuses_malformed_requests_with_exit_2() {
    let (code, _, err) = bidder(
        &["decide", "--config", DEMO, "-"],
        Some("{\"id\": \"x\", \"imp\": ["),
    );
    assert_eq!(code, 2);
    assert!(err.contains("invalid bid request"), "{err}");
    let (code, _, err) = bidder(
        &["decide", "--config", DEMO, "--partner", "nobody", "-"],
        Some("{}"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("--partner nobody"), "{err}");
}

#[test]
fn check_config_accepts_the_demo_and_refuses_a_missing_file() {
    let (code, out, _) = bidder(&["check-config", "--config", DEMO], None);
    assert_eq!(code, 0);
    assert!(out.contains("ok: 2 partners, 6 campaigns"), "{out}");
    let (code, _, err) = bidder(&["check-config", "--config", "/nonexistent.toml"], None);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent.toml: cannot read"), "{err}");
}
