//! Where the public OpenRTB corpus lives, for every test and benchmark that reads it.

use std::path::{Path, PathBuf};

/// Overrides the corpus folder.
pub const FIXTURES_ENV: &str = "BIDDER_FIXTURES";

/// `$BIDDER_FIXTURES`, else `shared/fixtures/openrtb` beside the repository. Panics
/// when it holds no `MANIFEST.json`: a missing corpus fails the test, never skips it.
pub fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os(FIXTURES_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/openrtb"),
    };
    assert!(
        dir.join("MANIFEST.json").is_file(),
        "OpenRTB corpus not found: {} has no MANIFEST.json; set {FIXTURES_ENV} to the \
         fixtures/openrtb folder",
        dir.display()
    );
    dir
}

/// The bytes of the corpus file at `rel` (a path from the corpus folder).
pub fn fixture(rel: &str) -> Vec<u8> {
    let path = corpus_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
