//! Fuzzes the configuration loader: any text must load or fail with errors that name
//! a line, never panic. (Files it names are resolved beside a path that does not
//! exist, so they fail to read like a missing file would.)

#![no_main]

use std::path::Path;

use bidder::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = Config::from_text(Path::new("/nonexistent/fuzz/bidder.toml"), text.into())
    {
        assert!(!errors.is_empty(), "a refusal names at least one problem");
        for e in &errors {
            assert!(!e.to_string().is_empty());
        }
    }
});
