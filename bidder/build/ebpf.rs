//! Builds the XDP program (`bidder-ebpf`) for `bpfel-unknown-none` and leaves the object
//! in `OUT_DIR/bidder-xdp`, where `src/xdp/object.rs` embeds it.
//!
//! The program needs three things a plain Rust install lacks: `bpf-linker` (which in turn
//! needs LLVM's shared library), and the standard library's source to build `core` for
//! the BPF target. All three come from `cargo xtask setup`; when one is missing this step
//! says so in one line instead of failing deep inside a nested cargo.
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

/// The eBPF crate, relative to this crate's manifest directory.
const EBPF_CRATE_DIR: &str = "../bidder-ebpf";
/// Shared kernel/user types the eBPF crate depends on: a change there changes the object.
const COMMON_CRATE_DIR: &str = "../bidder-common";
const EBPF_PACKAGE: &str = "bidder-ebpf";
/// Toolchain used when cargo was not started through rustup (no `RUSTUP_TOOLCHAIN`).
const FALLBACK_TOOLCHAIN: &str = "stable";
const SETUP_HINT: &str = "run `cargo xtask setup` (as root, or with sudo)";

/// Target triple of the XDP program (x86_64 and arm64 hosts are little-endian).
const BPF_TARGET: &str = "bpfel-unknown-none";
/// The binary `bidder-ebpf` builds, and the file name `src/xdp/object.rs` embeds.
const OBJECT_NAME: &str = "bidder-xdp";
/// Lines of the nested build's output shown when it fails.
const FAILURE_TAIL_LINES: usize = 40;

pub fn build() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let ebpf_dir = manifest_dir.join(EBPF_CRATE_DIR);
    let common_dir = manifest_dir.join(COMMON_CRATE_DIR);
    // Naming paths at all stops cargo from rerunning this script on every change to
    // the host crate.
    println!("cargo::rerun-if-changed={}", ebpf_dir.display());
    println!("cargo::rerun-if-changed={}", common_dir.display());
    println!("cargo::rerun-if-env-changed=RUSTUP_TOOLCHAIN");

    if let Err(missing) = check_tools() {
        println!("cargo::error=cannot build the XDP object: {missing}; {SETUP_HINT}");
        return;
    }
    let toolchain = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| FALLBACK_TOOLCHAIN.into());
    if let Err(failure) = build_object(&ebpf_dir, &out_dir, &toolchain) {
        for line in failure.lines() {
            println!("cargo::error={line}");
        }
    }
}

/// Runs the nested `cargo build` of the eBPF crate and copies the object into
/// `OUT_DIR`. Its output is kept and shown only if it fails: a successful build says
/// nothing, so real warnings of the host build stay visible.
fn build_object(ebpf_dir: &Path, out_dir: &Path, toolchain: &str) -> Result<(), String> {
    let target_dir = out_dir.join("ebpf-target");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    // CARGO_ENCODED_RUSTFLAGS separates flags with 0x1f. BTF lets the kernel check the
    // maps' types; the cfg tells aya-ebpf which architecture's context layout to use;
    // BPF ISA v3 has the compare-and-swap the rate limits need (kernel ≥ 5.12).
    let rustflags = format!(
        "--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Ctarget-cpu=v3"
    );
    let mut cargo = match find_on_path("rustup") {
        Some(rustup) => {
            let mut c = Command::new(rustup);
            c.args(["run", toolchain, "cargo"]);
            c
        }
        None => Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into())),
    };
    cargo
        .args([
            "build",
            "--package",
            EBPF_PACKAGE,
            "--bins",
            "--release",
            "--target",
            BPF_TARGET,
        ])
        .args(["-Z", "build-std=core", "--target-dir"])
        .arg(&target_dir)
        // The eBPF crate is excluded from this workspace: the nested cargo starts in it.
        .current_dir(ebpf_dir)
        // `-Z build-std` is unstable; this keeps nightly off the list of things a fresh
        // machine has to download. Set for the nested build only.
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // The outer build's compiler settings are for the host, not the BPF target.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS");
    let output = cargo
        .output()
        .map_err(|e| format!("cannot start cargo for the XDP object: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(FAILURE_TAIL_LINES)..].join("\n");
        return Err(format!(
            "building the XDP object failed ({}):\n{tail}",
            output.status
        ));
    }
    let built = target_dir
        .join(BPF_TARGET)
        .join("release")
        .join(OBJECT_NAME);
    std::fs::copy(&built, out_dir.join(OBJECT_NAME))
        .map(|_| ())
        .map_err(|e| format!("cannot copy {}: {e}", built.display()))
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
/// the nested cargo runs with.
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
