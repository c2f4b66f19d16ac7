//! Where the public OpenRTB corpus lives, for every test and benchmark that reads it
//! (include with `#[path]`).

use std::path::PathBuf;

/// Overrides the corpus folder.
pub const FIXTURES_ENV: &str = "BIDDER_FIXTURES";

/// `$BIDDER_FIXTURES`, else `shared/fixtures/openrtb` beside the repository. Panics
/// when it holds no `MANIFEST.json`: a missing corpus fails the test, never skips it.
pub fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os(FIXTURES_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/openrtb"),
    };
    assert!(
        dir.join("MANIFEST.json").is_file(),
        "OpenRTB corpus not found: {} has no MANIFEST.json; set {FIXTURES_ENV} to the \
         fixtures/openrtb folder",
        dir.display()
    );
    dir
}
