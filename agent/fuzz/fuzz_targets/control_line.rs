//! Fuzzes the control socket's line reader: any line must become a request or an
//! error answer, never a panic; and every error answer must be one line of valid JSON
//! (a client reads answers line by line, so an embedded newline would desync it).

#![no_main]

use agent::protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(answer) = protocol::parse(data) {
        let line = answer.to_line();
        let (last, body) = line.split_last().expect("an answer is never empty");
        assert_eq!(*last, b'\n');
        assert!(!body.contains(&b'\n'), "one answer, one line");
        let value: serde_json::Value = serde_json::from_slice(body).expect("answers are JSON");
        assert!(value.get("error").is_some(), "a refusal says why: {value}");
    }
});
