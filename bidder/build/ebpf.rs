//! Builds the XDP program (`bidder-ebpf`) for `bpfel-unknown-none` and leaves the object
//! in `OUT_DIR/bidder-xdp`, where `src/xdp_object.rs` embeds it.
//!
//! The program needs three things a plain Rust install lacks: `bpf-linker` (which in turn
//! needs LLVM's shared library), and the standard library's source to build `core` for
//! the BPF target. All three come from `cargo xtask setup`; when one is missing this step
//! says so in one line instead of letting aya-build fail deep inside a nested cargo.
//!
//! Toolchain: the eBPF crate builds with the same rustup toolchain as the host crates
//! (`RUSTUP_TOOLCHAIN`, which rustup sets for everything cargo runs), normally stable.
//! `-Z build-std=core` is unstable, so `RUSTC_BOOTSTRAP=1` is set for the nested build
//! only; that keeps nightly off the list of things a fresh machine has to download.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use aya_build::{Package, Toolchain};

/// The eBPF crate, relative to this crate's manifest directory.
const EBPF_CRATE_DIR: &str = "../bidder-ebpf";
/// Shared kernel/user types the eBPF crate depends on: a change there changes the object.
const COMMON_CRATE_DIR: &str = "../bidder-common";
const EBPF_PACKAGE: &str = "bidder-ebpf";
/// Toolchain used when cargo was not started through rustup (no `RUSTUP_TOOLCHAIN`).
const FALLBACK_TOOLCHAIN: &str = "stable";
const SETUP_HINT: &str = "run `cargo xtask setup` (as root, or with sudo)";

pub fn build() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let ebpf_dir = manifest_dir.join(EBPF_CRATE_DIR);
    let common_dir = manifest_dir.join(COMMON_CRATE_DIR);
    // aya-build adds the eBPF crate's directory itself. Naming paths at all stops cargo
    // from rerunning this script on every change to the host crate.
    println!("cargo::rerun-if-changed={}", common_dir.display());
    println!("cargo::rerun-if-env-changed=RUSTUP_TOOLCHAIN");

    if let Err(missing) = check_tools() {
        println!("cargo::error=cannot build the XDP object: {missing}; {SETUP_HINT}");
        return;
    }

    let toolchain = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| FALLBACK_TOOLCHAIN.into());
    // aya-build runs `cargo build --package bidder-ebpf` in the current directory, and the
    // eBPF crate is excluded from this workspace, so the nested cargo must start inside it.
    env::set_current_dir(&ebpf_dir).expect("bidder-ebpf sits beside bidder");
    // Read by aya-build to add `-Z build-std=core` and inherited by the nested cargo. A
    // build script is a single-threaded process of its own, so nothing races this write.
    env::set_var("RUSTC_BOOTSTRAP", "1");

    let root_dir = ebpf_dir.to_str().expect("the checkout path is UTF-8");
    let package = Package {
        name: EBPF_PACKAGE,
        root_dir,
        ..Default::default()
    };
    if let Err(err) = aya_build::build_ebpf([package], Toolchain::Custom(&toolchain)) {
        let one_line = format!("{err:#}").replace('\n', " ");
        println!("cargo::error=building the XDP object failed: {one_line}");
    }
}

/// Checks, cheapest first, that bpf-linker runs (which also proves LLVM's shared library
/// loads) and that the toolchain has `rust-src`. Returns what is missing.
fn check_tools() -> Result<(), String> {
    let linker = find_on_path("bpf-linker").ok_or("bpf-linker is not on PATH")?;
    match Command::new(&linker).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or("no message");
            return Err(format!(
                "{} does not run (LLVM 22 missing?): {first}",
                linker.display()
            ));
        }
        Err(err) => return Err(format!("{} does not start: {err}", linker.display())),
    }
    let sysroot = rustc_sysroot()?;
    let core_src = sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if !core_src.is_file() {
        return Err(format!(
            "the rust-src component is missing from {}",
            sysroot.display()
        ));
    }
    Ok(())
}

/// Sysroot of the compiler cargo runs this build with, which is also the toolchain
/// aya-build hands the nested cargo.
fn rustc_sysroot() -> Result<PathBuf, String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|err| format!("cannot run {}: {err}", Path::new(&rustc).display()))?;
    if !out.status.success() {
        return Err("`rustc --print sysroot` failed".into());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
