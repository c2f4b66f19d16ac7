//! The demo configuration compiled for tests that check prices and figures, not the
//! deadline (include with `#[path]`).

use std::path::Path;

use bidder::catalog::Catalog;
use bidder::config::Config;

/// `examples/demo.toml` with a 1 s deadline cap: a busy host may stall a debug build
/// past the demo's 8 ms, which would read as a no-bid.
pub fn demo_catalog() -> Catalog {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("deadline_cap_ms = 8", "deadline_cap_ms = 1000");
    Catalog::compile(&Config::from_text(&path, text).unwrap()).unwrap()
}
