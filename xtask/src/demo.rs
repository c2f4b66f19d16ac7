//! `cargo xtask demo`: what the bidder decides for a handful of example bid requests,
//! from a fresh clone, with one command.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::{command, paths, setup};

/// Campaign config the demo decides against, relative to the workspace root.
const DEMO_CONFIG: &str = "bidder/examples/demo.toml";
/// Folder of example OpenRTB bid requests, one JSON file each.
const TRAFFIC_DIR: &str = "bidder/examples/traffic";

/// Ensures setup, builds the bidder (debug profile: the demo decides a few requests,
/// and the debug build is the one `ci` already keeps warm), then runs `bidder decide`
/// on each example in name order. Every file is tried; fails if any decision failed.
pub fn run() -> Result<()> {
    setup::run()?;
    let root = paths::workspace_root();
    println!("demo: building the bidder");
    command::stream(
        command::cargo()
            .args(["build", "--package", "bidder", "--bin", "bidder"])
            .current_dir(root),
    )?;
    let bidder = paths::target_dir().join("debug").join("bidder");

    let requests = example_requests(&root.join(TRAFFIC_DIR))?;
    let mut failed = Vec::new();
    for request in &requests {
        let name = request.file_name().unwrap_or_default().to_string_lossy();
        println!("demo: ── {name} ──");
        let mut decide = Command::new(&bidder);
        decide
            .args(["decide", "--config", DEMO_CONFIG])
            .arg(request)
            .current_dir(root);
        if let Err(err) = command::stream(&mut decide) {
            println!("demo: {name}: {err:#}");
            failed.push(name.into_owned());
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} requests failed: {}",
            failed.len(),
            requests.len(),
            failed.join(", ")
        );
    }
    println!("demo: decided {} requests", requests.len());
    Ok(())
}

/// The `*.json` files directly in `dir`, sorted so the demo reads the same every time.
fn example_requests(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut requests = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
            requests.push(path);
        }
    }
    if requests.is_empty() {
        bail!("no *.json example requests in {}", dir.display());
    }
    requests.sort();
    Ok(requests)
}
