//! Replays every example of `docs/control-protocol.md` against a real agent: the
//! document is the specification, and this keeps it true.

mod common;

use common::{config, fake_bidder, Client, Running, TempDir};
use serde_json::Value;

const DOC: &str = include_str!("../../docs/control-protocol.md");

/// `(request line, expected answer)` pairs of every ```replay block, in order.
fn examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending: Option<String> = None;
    for line in DOC.lines() {
        if line.starts_with("```") {
            in_block = line == "```replay";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(req) = line.strip_prefix("> ") {
            assert!(pending.is_none(), "two requests in a row: {req}");
            pending = Some(req.to_string());
        } else if let Some(ans) = line.strip_prefix("< ") {
            let req = pending.take().expect("an answer without a request");
            let want =
                serde_json::from_str(ans).unwrap_or_else(|e| panic!("bad example {ans}: {e}"));
            out.push((req, want));
        }
    }
    assert!(pending.is_none());
    out
}

/// Whether `got` has every key of `want` with the same value; `"…"` matches anything.
fn matches(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::String(s), _) if s == "…" => true,
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| matches(v, gv))),
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| matches(a, b))
        }
        _ => want == got,
    }
}

#[test]
fn the_matcher_can_fail() {
    let want: Value = serde_json::from_str(r#"{"a":1,"b":"…","c":[{"d":2}]}"#).unwrap();
    assert!(matches(
        &want,
        &serde_json::from_str(r#"{"a":1,"b":5,"c":[{"d":2,"e":3}],"x":0}"#).unwrap()
    ));
    assert!(!matches(
        &want,
        &serde_json::from_str(r#"{"a":2,"b":5,"c":[{"d":2}]}"#).unwrap()
    ));
    assert!(!matches(
        &want,
        &serde_json::from_str(r#"{"a":1,"c":[{"d":2}]}"#).unwrap()
    ));
    assert!(!matches(
        &want,
        &serde_json::from_str(r#"{"a":1,"b":1,"c":[]}"#).unwrap()
    ));
}

#[test]
fn every_example_in_the_protocol_document_holds() {
    let examples = examples();
    assert!(
        examples.len() >= 20,
        "only {} examples found",
        examples.len()
    );
    let verbs: std::collections::HashSet<String> = examples
        .iter()
        .filter_map(|(req, _)| serde_json::from_str::<Value>(req).ok())
        .filter_map(|v| v["verb"].as_str().map(str::to_string))
        .collect();
    for verb in agent::protocol::Verb::ALL.map(agent::protocol::Verb::name) {
        let documented = DOC.contains(&format!("`{verb}`"));
        assert!(documented, "{verb} is not documented");
    }
    assert!(verbs.len() >= 12, "examples cover only {verbs:?}");

    let dir = TempDir::new("protocol-doc");
    let _bidder = fake_bidder(&dir.0.join("stats"));
    let agent = Running::start(config(&dir.0));
    let mut c = Client::connect(&agent.socket);
    for (req, want) in examples {
        let got = c.call(&req);
        assert!(
            matches(&want, &got),
            "request {req}\nexpected {want}\n     got {got}"
        );
    }
}
