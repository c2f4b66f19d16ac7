//! Where the workspace and its build output are, whatever directory cargo ran us from.

use std::{
    env,
    path::{Path, PathBuf},
};

/// The workspace root: xtask's manifest lives one level below it.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
}

/// Cargo's target directory for this workspace: `CARGO_TARGET_DIR` when set (the
/// developers share one), else `target/` at the root.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}
