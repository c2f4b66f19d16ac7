//! What the test suites of every crate share (a dev-dependency of `bidder`, `agent` and
//! `perf`; `xtask` reads what it records).
//!
//! **Skips.** libtest has no way to say "this test did not run": a test that returns
//! early reports `ok`. So a test that cannot run here (not root, or every timing
//! attempt voided by host stalls) calls [`skip`], which says why on stderr and, when
//! `cargo xtask ci` runs the suite, appends a line to the file named by
//! [`SKIP_LOG_ENV`]. `ci` counts those lines as skipped, not passed, and lists them.
//!
//! **HTTP.** [`http`]: one request on a fresh connection, status and body back.
//! [`promtool`]: a scrape checked by the Prometheus project's own linter.
//!
//! **The OpenRTB corpus.** [`corpus_dir`] and [`fixture`].
//!
//! **Temporary directories.** [`TempDir`] (tempfile underneath).
//!
//! **Allocations.** [`CountingAllocator`] and [`heap_calls`] count the heap calls of a
//! closure on the calling thread, for the "allocates nothing" tests.
//!
//! **Other crates' binaries.** [`workspace_binaries`]: cargo builds only a package's
//! own binaries for its tests; this builds (or finds up to date) the others a test runs.

mod alloc;
mod corpus;
pub mod http;
pub mod promtool;
pub mod tls;

pub use alloc::{counting_allocator_is_installed, heap_calls, CountingAllocator};
pub use corpus::{corpus_dir, fixture, FIXTURES_ENV};

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Builds the workspace binaries `bins` (`(package, binary)`) with the cargo running the
/// tests, into the target directory of `own_binary` (a `CARGO_BIN_EXE_*` path of the
/// calling package), and returns the folder they are in: the tests of one package then
/// run the real binaries of another, as fresh as the source.
pub fn workspace_binaries(own_binary: &str, bins: &[(&str, &str)]) -> PathBuf {
    let bin_dir = Path::new(own_binary)
        .parent()
        .expect("a binary path has a folder")
        .to_path_buf();
    let target = bin_dir.parent().expect("the profile folder has a parent");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet"]);
    for (package, bin) in bins {
        build.args(["-p", package, "--bin", bin]);
    }
    let status = build
        .arg("--target-dir")
        .arg(target)
        .current_dir(workspace)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {bins:?} failed");
    bin_dir
}

/// Monday 2026-11-23 10:30 UTC, ms since the Unix epoch: where tests that fix an
/// instant put their calendar (a `DrivenClock`), so dayparts and expiry decide the same
/// way on any date. Whatever such a test exercises must read that same calendar.
pub const MONDAY_10_30_MS: u64 = 1_795_429_800_000;

/// The environment variable naming the file skips are appended to (set by
/// `cargo xtask ci`; unset, a skip is only said on stderr).
pub const SKIP_LOG_ENV: &str = "BIDDER_TEST_SKIP_LOG";

/// Records that `test` did not run (or measured nothing), and why. Call it, then
/// return from the test.
pub fn skip(test: &str, why: &str) {
    let line = format!("{test}: {why}");
    eprintln!("SKIPPED {line}");
    let Some(path) = std::env::var_os(SKIP_LOG_ENV) else {
        return;
    };
    // One `write` of one line on an O_APPEND file: lines from test threads and
    // processes running at once do not interleave.
    let appended = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{}\n", line.replace('\n', " ")).as_bytes()));
    if let Err(e) = appended {
        // A skip that CI cannot count would read as a pass: fail instead.
        panic!("{}: recording a skip: {e}", Path::new(&path).display());
    }
}

/// True after a [`skip`] when this process is not root (`test` names the test, `why`
/// what needs root); the caller returns at once.
pub fn skip_unless_root(test: &str, why: &str) -> bool {
    if running_as_root() {
        return false;
    }
    skip(test, &format!("needs root: {why} (CI runs as root)"));
    true
}

/// Whether this process runs as root. `/proc/self` belongs to the process's effective
/// uid, so this needs no libc call.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// A fresh temporary directory, removed when dropped, also when an assertion fails.
/// `.0` is its path; the second field holds the directory (dropping it removes it).
pub struct TempDir(pub PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl TempDir {
    /// A new directory `<tmp>/<name>-<random>`.
    pub fn new(name: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary directory for {name}: {e}"));
        TempDir(dir.path().to_path_buf(), dir)
    }
}

/// Polls `cond` every few milliseconds until it holds; fails the test after `limit`.
/// The limit catches a hang, it is not a speed bound: give it the client timeout.
pub fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The skips recorded in `path`, one per line (none if the file does not exist).
pub fn read_skips(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_are_appended_one_line_each_and_read_back() {
        let dir = std::env::temp_dir().join(format!("testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips");
        let _ = std::fs::remove_file(&log);
        assert!(read_skips(&log).is_empty());
        // The variable is read per call; this test alone sets it in this binary.
        std::env::set_var(SKIP_LOG_ENV, &log);
        skip("a", "first");
        skip("b", "two\nlines");
        std::env::remove_var(SKIP_LOG_ENV);
        assert_eq!(read_skips(&log), ["a: first", "b: two lines"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
