//! A temporary directory removed when dropped, also when an assertion fails (include
//! with `#[path]`).

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::path::PathBuf;

pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh `<tmp>/<name>-<pid>`: emptied first if a crashed run left it behind.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
