//! The control socket against bad input and bad clients: each gets the right
//! structured error or denial, nothing changes, and the agent serves the next client.

mod common;

use std::time::{Duration, Instant};

use bidder_common::clock::{Clock, DrivenClock};
use bidder_common::table::shm::{OpenError, Table, Writer};
use bidder_common::table::strategy::StrategyTable;
use common::{code, config, fake_bidder, Client, Running, TempDir};
use testkit::MONDAY_10_30_MS;

const SET: &str = r#"{"v":1,"id":7,"verb":"strategy.set","args":{"campaign":"acme-display","margin_ppm":1100000},"why":"test"}"#;

/// The strategy table's generation and the audit log's line count: what "nothing
/// changed" means.
fn state(dir: &TempDir) -> (u64, usize) {
    let generation = Table::<StrategyTable>::open_read(&dir.0.join("strategy"))
        .map(|t| t.generation())
        .unwrap_or(0);
    let audit = std::fs::read_to_string(dir.0.join("audit.jsonl")).unwrap_or_default();
    (generation, audit.lines().count())
}

#[test]
fn a_change_is_bounded_audited_and_written() {
    let dir = TempDir::new("change");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let calendar = DrivenClock::at(MONDAY_10_30_MS);
    let agent = Running::start_with_clock(config(&dir.0), calendar.clock());
    let mut c = Client::connect(&agent.socket);
    let answer = c.call(SET);
    assert_eq!(code(&answer), "ok", "{answer}");
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["result"]["old"]["margin_ppm"], 1_000_000);
    assert_eq!(answer["result"]["new"]["margin_ppm"], 1_100_000);
    assert_eq!(
        answer["result"]["new"]["shading_ppm"], 900_000,
        "new rows start from the configuration"
    );
    let table = Table::<StrategyTable>::open_read(&dir.0.join("strategy")).unwrap();
    let row = table.campaigns()[table.find_campaign("acme-display").unwrap()]
        .load()
        .unwrap();
    assert_eq!(row.margin_ppm, 1_100_000);
    assert_eq!(row.reasoning(), "test");
    assert_eq!(row.updated_by, common::current_uid());
    assert_eq!(
        row.updated_at_unix_ms, MONDAY_10_30_MS,
        "stamped by the agent's clock"
    );
    let audit = std::fs::read_to_string(dir.0.join("audit.jsonl")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(entry["verb"], "strategy.set");
    assert_eq!(entry["target"], "acme-display");
    assert_eq!(entry["who"]["uid"], common::current_uid());
    assert_eq!(entry["old"]["margin_ppm"], 1_000_000);
    assert_eq!(entry["new"]["margin_ppm"], 1_100_000);
    assert_eq!(entry["why"], "test");
    assert_eq!(entry["at_unix_ms"], MONDAY_10_30_MS);
    assert_eq!(entry["at"], "2026-11-23T10:30:00.000Z");
    let tail = c.call(r#"{"v":1,"verb":"audit.tail","args":{"lines":5}}"#);
    assert_eq!(tail["result"]["entries"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_requests_get_structured_errors_change_nothing_and_keep_the_connection() {
    let dir = TempDir::new("bad");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let agent = Running::start(config(&dir.0));
    let mut c = Client::connect(&agent.socket);
    let before = state(&dir);
    let cases: [(&str, &str, &str); 14] = [
        ("malformed JSON", r#"{"v":1,"verb":"status""#, "bad_json"),
        ("not an object", "[1,2,3]", "bad_json"),
        (
            "unknown verb",
            r#"{"v":1,"verb":"strategy.delete"}"#,
            "unknown_verb",
        ),
        (
            "unsupported version",
            r#"{"v":2,"verb":"status"}"#,
            "unsupported_version",
        ),
        (
            "wrong type",
            r#"{"v":1,"verb":"strategy.set","args":{"campaign":"acme-display","margin_ppm":"high"},"why":"x"}"#,
            "bad_args",
        ),
        (
            "unknown argument",
            r#"{"v":1,"verb":"strategy.get","args":{"campaign":"acme-display","x":1}}"#,
            "bad_args",
        ),
        (
            "missing argument",
            r#"{"v":1,"verb":"strategy.get"}"#,
            "bad_args",
        ),
        (
            "no reason",
            r#"{"v":1,"verb":"campaign.pause","args":{"campaign":"acme-display"}}"#,
            "bad_args",
        ),
        (
            "margin over 1.50",
            r#"{"v":1,"verb":"strategy.set","args":{"campaign":"acme-display","margin_ppm":1500001},"why":"x"}"#,
            "out_of_bounds",
        ),
        (
            "margin under 0.90",
            r#"{"v":1,"verb":"strategy.set","args":{"campaign":"acme-display","margin_ppm":899999},"why":"x"}"#,
            "out_of_bounds",
        ),
        (
            "max CPM over the ceiling",
            r#"{"v":1,"verb":"strategy.set","args":{"campaign":"acme-display","max_cpm_micros":5000001},"why":"x"}"#,
            "out_of_bounds",
        ),
        (
            "negative limit",
            r#"{"v":1,"verb":"partner.set_limit","args":{"partner":"ssp-b","qps_limit":-1,"burst":0},"why":"x"}"#,
            "out_of_bounds",
        ),
        (
            "budget raise over 10x",
            r#"{"v":1,"verb":"budget.set","args":{"campaign":"acme-display","daily_budget_micros":5000000001},"why":"x"}"#,
            "out_of_bounds",
        ),
        (
            "unknown campaign",
            r#"{"v":1,"verb":"campaign.pause","args":{"campaign":"nope"},"why":"x"}"#,
            "not_found",
        ),
    ];
    for (what, line, want) in cases {
        let answer = c.call(line);
        assert_eq!(code(&answer), want, "{what}: {answer}");
        assert!(
            !answer["error"]["message"].as_str().unwrap().is_empty(),
            "{what}"
        );
        assert!(
            !answer["error"]["hint"].as_str().unwrap().is_empty(),
            "{what}"
        );
    }
    let ceiling = c.call(r#"{"v":1,"verb":"strategy.set","args":{"campaign":"acme-display","max_cpm_micros":9000000},"why":"x"}"#);
    assert!(
        ceiling["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("5000000"),
        "{ceiling}"
    );
    assert_eq!(state(&dir), before, "nothing was written or audited");
    assert_eq!(
        code(&c.call(r#"{"v":1,"verb":"status"}"#)),
        "ok",
        "the connection stays usable"
    );
}

#[test]
fn a_one_mebibyte_line_is_refused_and_the_connection_stays_usable() {
    let dir = TempDir::new("long");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let agent = Running::start(config(&dir.0));
    let mut c = Client::connect(&agent.socket);
    let before = state(&dir);
    let mut line = br#"{"v":1,"verb":"status","id":""#.to_vec();
    line.resize(1024 * 1024, b'x');
    line.extend_from_slice(b"\"}\n");
    c.send_raw(&line);
    let answer = c.answer().unwrap();
    assert_eq!(code(&answer), "line_too_long", "{answer}");
    assert_eq!(code(&c.call(SET)), "ok", "the next line is served");
    assert_eq!(state(&dir).1, before.1 + 1);
}

#[test]
fn a_silent_client_is_timed_out_while_others_are_served() {
    let dir = TempDir::new("idle");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let mut cfg = config(&dir.0);
    cfg.socket.idle_timeout_ms = 300;
    let agent = Running::start(cfg);
    let started = Instant::now();
    let mut silent = Client::connect(&agent.socket);
    let mut busy = Client::connect(&agent.socket);
    assert_eq!(code(&busy.call(r#"{"v":1,"verb":"status"}"#)), "ok");
    let answer = silent.answer().expect("a timeout error before the close");
    assert_eq!(code(&answer), "idle_timeout", "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(silent.answer().is_none(), "closed after the timeout");
    let mut next = Client::connect(&agent.socket);
    assert_eq!(code(&next.call(r#"{"v":1,"verb":"status"}"#)), "ok");
}

#[test]
fn a_uid_not_allowed_is_denied_and_nothing_changes() {
    let dir = TempDir::new("denied");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let mut cfg = config(&dir.0);
    cfg.socket.allowed_uids = vec![common::current_uid().wrapping_add(4242)];
    cfg.socket.allowed_gids = vec![4242];
    let agent = Running::start(cfg);
    let before = state(&dir);
    let mut c = Client::connect(&agent.socket);
    c.send_raw(format!("{SET}\n").as_bytes());
    let answer = c.answer().unwrap();
    assert_eq!(code(&answer), "denied", "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("may not use"));
    assert!(c.answer().is_none(), "denied clients are disconnected");
    assert_eq!(state(&dir), before);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&agent.socket).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o660);
    // Still up for the next client (denied too, but answered).
    assert_eq!(
        code(&Client::connect(&agent.socket).answer().unwrap()),
        "denied"
    );
}

#[test]
fn clients_past_the_limit_are_told_busy() {
    let dir = TempDir::new("busy");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let mut cfg = config(&dir.0);
    cfg.socket.max_clients = 1;
    let agent = Running::start(cfg);
    let mut first = Client::connect(&agent.socket);
    assert_eq!(code(&first.call(r#"{"v":1,"verb":"status"}"#)), "ok");
    let mut second = Client::connect(&agent.socket);
    assert_eq!(code(&second.answer().unwrap()), "busy");
    // A refused client is held (at most a second) so that a request it sends gets the
    // refusal to read rather than a closed socket; it leaves when it hangs up.
    drop(second);
    drop(first);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        code(&Client::connect(&agent.socket).call(r#"{"v":1,"verb":"status"}"#)),
        "ok"
    );
}

#[test]
fn without_the_bidder_changes_are_refused_and_a_second_agent_fails_clearly() {
    let dir = TempDir::new("nobidder");
    let agent = Running::start(config(&dir.0));
    let mut c = Client::connect(&agent.socket);
    let answer = c.call(SET);
    assert_eq!(code(&answer), "bidder_unavailable", "{answer}");
    assert_eq!(code(&c.call(r#"{"v":1,"verb":"status"}"#)), "ok");
    let second = Writer::<StrategyTable>::open(
        &dir.0.join("strategy"),
        bidder_common::table::Capacity {
            campaigns: 16,
            partners: 4,
        },
        bidder_common::table::shm::OnMismatch::Refuse,
        Clock::system(),
    );
    assert!(matches!(second, Err(OpenError::Locked { .. })));
    let mut cfg = config(&dir.0);
    cfg.socket.path = dir.0.join("second.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(agent::run_until(cfg, None, Clock::system(), async {}))
        .unwrap_err();
    assert!(err.contains("another writer"), "{err}");
    assert!(
        !dir.0.join("second.sock").exists(),
        "the second agent did not bind"
    );
}

#[test]
fn pause_resume_budget_and_partner_verbs_round_trip() {
    let dir = TempDir::new("verbs");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let agent = Running::start(config(&dir.0));
    let mut c = Client::connect(&agent.socket);
    let ok = |c: &mut Client, line: &str| {
        let a = c.call(line);
        assert_eq!(code(&a), "ok", "{line}: {a}");
        a["result"].clone()
    };
    ok(
        &mut c,
        r#"{"v":1,"verb":"campaign.pause","args":{"campaign":"zephyr-video"},"why":"creative review"}"#,
    );
    let got = ok(
        &mut c,
        r#"{"v":1,"verb":"strategy.get","args":{"campaign":"zephyr-video"}}"#,
    );
    assert_eq!(got["paused"], true);
    assert_eq!(got["source"], "table");
    let resumed = ok(
        &mut c,
        r#"{"v":1,"verb":"campaign.resume","args":{"campaign":"zephyr-video"},"why":"approved"}"#,
    );
    // Without bidder_admin the bidder's spend-rate breaker cannot be asked; it says so.
    assert!(
        resumed["breaker"].as_str().unwrap().contains("not asked"),
        "{resumed}"
    );
    let list = ok(&mut c, r#"{"v":1,"verb":"strategy.list"}"#);
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 2);
    let set = ok(
        &mut c,
        r#"{"v":1,"verb":"budget.set","args":{"campaign":"acme-display","daily_budget_micros":750000000},"why":"push"}"#,
    );
    assert_eq!(set["new"]["daily_budget_micros"], 750_000_000);
    let budget = ok(
        &mut c,
        r#"{"v":1,"verb":"budget.get","args":{"campaign":"acme-display"}}"#,
    );
    assert_eq!(budget["override_micros"], 750_000_000);
    ok(
        &mut c,
        r#"{"v":1,"verb":"partner.set_limit","args":{"partner":"ssp-b","qps_limit":10,"burst":1},"why":"abuse"}"#,
    );
    ok(
        &mut c,
        r#"{"v":1,"verb":"partner.disable","args":{"partner":"exchange-a"},"why":"outage"}"#,
    );
    let partners = ok(&mut c, r#"{"v":1,"verb":"partner.list"}"#);
    let ssp = partners["partners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partner"] == "ssp-b")
        .unwrap();
    assert_eq!(ssp["override"]["qps_limit"], 10);
    let stats = ok(
        &mut c,
        r#"{"v":1,"verb":"stats","args":{"campaign":"acme-display"}}"#,
    );
    assert_eq!(stats["campaigns"].as_array().unwrap().len(), 1);
    assert_eq!(stats["partners"].as_array().unwrap().len(), 0);
    let tail = ok(
        &mut c,
        r#"{"v":1,"verb":"audit.tail","args":{"lines":100}}"#,
    );
    assert_eq!(tail["entries"].as_array().unwrap().len(), 5);
    let reload = ok(&mut c, r#"{"v":1,"verb":"reload"}"#);
    assert!(reload["bidder"]
        .as_str()
        .unwrap()
        .contains("not configured"));
}

/// `status` sent by a client process running with primary group `gid` and the one
/// supplementary group `group` (setpriv, then socat); its answer line.
fn status_as(socket: &std::path::Path, gid: u32, group: u32) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--regid",
            &gid.to_string(),
            "--groups",
            &group.to_string(),
            "--",
        ])
        .args([
            "socat",
            "-t",
            "5",
            "-",
            &format!("UNIX-CONNECT:{}", socket.display()),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv and socat (util-linux, Debian socat)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"v\":1,\"verb\":\"status\"}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_else(|| {
        panic!(
            "no answer ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap()
}

#[test]
fn a_client_is_allowed_by_a_supplementary_group_the_kernel_reports() {
    if testkit::skip_unless_root(
        "a_client_is_allowed_by_a_supplementary_group_the_kernel_reports",
        "runs clients with other groups",
    ) {
        return;
    }
    let dir = TempDir::new("groups");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let mut cfg = config(&dir.0);
    cfg.socket.allowed_uids = vec![common::current_uid().wrapping_add(4242)];
    cfg.socket.allowed_gids = vec![4321];
    let agent = Running::start(cfg);
    // Primary group 1234 is not allowed; the supplementary 4321 is (SO_PEERGROUPS).
    let allowed = status_as(&agent.socket, 1234, 4321);
    assert_eq!(code(&allowed), "ok", "{allowed}");
    let denied = status_as(&agent.socket, 1234, 4322);
    assert_eq!(code(&denied), "denied", "{denied}");
}

#[test]
fn an_empty_line_gets_an_answer() {
    let dir = TempDir::new("empty-line");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let agent = Running::start(config(&dir.0));
    let mut c = Client::connect(&agent.socket);
    let answer = c.call("");
    assert_eq!(code(&answer), "bad_json", "{answer}");
    assert_eq!(code(&c.call(r#"{"v":1,"verb":"status"}"#)), "ok");
}
