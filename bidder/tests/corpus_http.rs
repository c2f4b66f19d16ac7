//! The whole public OpenRTB corpus (`shared/fixtures/openrtb`, listed by its
//! `MANIFEST.json`) replayed over HTTP to each engine in front of the real bid service
//! on the demo configuration: every real bid request gets a bid or a no-bid (never a
//! 4xx or 5xx), every bid is a JSON response to that request's id, the invalid-JSON
//! negatives and the bodies that are not bid requests (responses, fragments) get 400,
//! and both engines give the same status for every file.
//!
//! The corpus path comes from `BIDDER_FIXTURES`, else `<manifest dir>/../../shared/
//! fixtures/openrtb`. A missing corpus fails the run rather than skip it.

#[path = "engines/harness.rs"]
mod harness;

use testkit::corpus_dir;

use bidder::http::HttpLimits;
use harness::{
    bidding, demo_text, edit, gunzip, post, Bidder, EngineKind, EngineSettings, JsonBody,
};
use serde_json::Value;

/// Fewer real requests than this means a truncated or wrong corpus.
const MIN_REQUESTS: usize = 150;

/// What a body must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A real bid request: 200 (a bid) or 204 (no bid).
    BidOrNoBid,
    /// Not a bid request (invalid JSON, a response, a fragment): 400.
    BadRequest,
}

/// One body to send, named after its file (and its place in a Prebid fixture).
struct Case {
    name: String,
    /// As sent: `.gz` files go out as they are, with `Content-Encoding: gzip`.
    wire: Vec<u8>,
    gzipped: bool,
    expect: Expect,
}

impl Case {
    /// The request's `id`, when the body is a JSON object that has one.
    fn request_id(&self) -> Option<String> {
        let plain = if self.gzipped {
            gunzip(&self.wire)
        } else {
            self.wire.clone()
        };
        let value: Value = serde_json::from_slice(&plain).ok()?;
        value["id"].as_str().map(str::to_owned)
    }
}

fn read(rel: &str) -> Vec<u8> {
    let path = corpus_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The OpenRTB requests inside a Prebid Server fixture: what PBS sends the bidder
/// (`httpCalls[].expectedRequest.body`), or when no call carries one, the request PBS
/// itself received (`mockBidRequest`).
fn prebid_bodies(rel: &str) -> Vec<Vec<u8>> {
    let fixture: Value = serde_json::from_slice(&read(rel)).expect("fixture is JSON");
    let calls = fixture["httpCalls"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let mut bodies: Vec<Vec<u8>> = calls
        .iter()
        .filter_map(|call| call["expectedRequest"].get("body"))
        .map(|body| serde_json::to_vec(body).expect("re-encode"))
        .collect();
    if bodies.is_empty() {
        let mock = fixture
            .get("mockBidRequest")
            .expect("fixture has a request");
        bodies.push(serde_json::to_vec(mock).expect("re-encode"));
    }
    bodies
}

fn cases() -> Vec<Case> {
    let manifest = corpus_dir().join("MANIFEST.json");
    let entries: Vec<Value> = serde_json::from_slice(&read("MANIFEST.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut cases = Vec::new();
    for entry in &entries {
        let path = entry["path"].as_str().expect("manifest entry has a path");
        let kind = entry["kind"].as_str().expect("manifest entry has a kind");
        let single = |expect| Case {
            name: path.to_owned(),
            wire: read(path),
            gzipped: path.ends_with(".gz"),
            expect,
        };
        match kind {
            "bidrequest" => cases.push(single(Expect::BidOrNoBid)),
            "negative-invalid-json" | "bidresponse" | "fragment" => {
                cases.push(single(Expect::BadRequest));
            }
            k if k.starts_with("pbs-fixture") => {
                for (i, body) in prebid_bodies(path).into_iter().enumerate() {
                    cases.push(Case {
                        name: format!("{path}#{i}"),
                        wire: body,
                        gzipped: false,
                        expect: Expect::BidOrNoBid,
                    });
                }
            }
            other => panic!("{path}: unknown kind {other:?} in the manifest"),
        }
    }
    let requests = cases
        .iter()
        .filter(|c| c.expect == Expect::BidOrNoBid)
        .count();
    assert!(
        requests >= MIN_REQUESTS,
        "only {requests} bid requests in {}",
        manifest.display()
    );
    cases
}

/// What one engine answered, per case, and its deadline misses.
struct Replay {
    statuses: Vec<u16>,
    deadline_missed: u64,
    problems: Vec<String>,
}

/// Sends every case on one keep-alive connection (a new one after any close).
fn replay(engine: EngineKind, cases: &[Case]) -> Replay {
    // No network allowance and a 1 s cap: even the smallest tmax in the corpus (45 ms)
    // leaves a debug build on a busy machine time to decide, so a status never depends
    // on load and the two engines can be compared file by file.
    let text = edit(
        &demo_text(),
        "network_allowance_ms = 40",
        "network_allowance_ms = 0",
    );
    let settings = EngineSettings {
        limits: HttpLimits::default(),
        ..EngineSettings::default()
    };
    let b = Bidder::start(engine, &settings, bidding(&text));
    let mut client = b.connect();
    let mut statuses = Vec::with_capacity(cases.len());
    let mut problems = Vec::new();
    for case in cases {
        let encoding = if case.gzipped {
            "Content-Encoding: gzip\r\n"
        } else {
            ""
        };
        let resp = client.request(&post("/bid/exchange-a", encoding, &case.wire));
        let fine = match case.expect {
            Expect::BidOrNoBid => matches!(resp.status, 200 | 204),
            Expect::BadRequest => resp.status == 400,
        };
        if !fine {
            problems.push(format!(
                "{}: {:?} got {}",
                case.name, case.expect, resp.status
            ));
        }
        if resp.status == 200 {
            let id = resp.json()["id"].as_str().map(str::to_owned);
            if id != case.request_id() {
                problems.push(format!("{}: a bid for {id:?}", case.name));
            }
        }
        if resp.closes() {
            client = b.connect();
        }
        statuses.push(resp.status);
    }
    let deadline_missed = b.decisions(|d| d.deadline_missed.get());
    b.shutdown().expect("clean shutdown");
    Replay {
        statuses,
        deadline_missed,
        problems,
    }
}

#[test]
fn the_public_corpus_gets_a_bid_or_a_no_bid_and_the_same_status_from_both_engines() {
    let cases = cases();
    let replays: Vec<(EngineKind, Replay)> = EngineKind::BOTH
        .iter()
        .map(|&engine| (engine, replay(engine, &cases)))
        .collect();
    let mut problems = Vec::new();
    for (engine, r) in &replays {
        let count = |code| r.statuses.iter().filter(|&&s| s == code).count();
        eprintln!(
            "{}: {} bodies: {} × 200, {} × 204, {} × 400 ({} deadline misses)",
            engine.label(),
            cases.len(),
            count(200),
            count(204),
            count(400),
            r.deadline_missed
        );
        assert!(count(200) > 0, "{}: not a single bid", engine.label());
        problems.extend(
            r.problems
                .iter()
                .map(|p| format!("{}: {p}", engine.label())),
        );
    }
    let (ring, tokio) = (&replays[0].1, &replays[1].1);
    for (i, case) in cases.iter().enumerate() {
        if ring.statuses[i] != tokio.statuses[i] {
            problems.push(format!(
                "{}: io_uring {} but tokio {} (deadline misses: {} / {})",
                case.name,
                ring.statuses[i],
                tokio.statuses[i],
                ring.deadline_missed,
                tokio.deadline_missed
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
