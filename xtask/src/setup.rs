//! `cargo xtask setup`: everything the build, demo and tests need on a fresh Debian 12,
//! installed only when missing so that a second run takes seconds.
//!
//! Three steps, each printing one line: apt packages, rustup components, bpf-linker.
//! Installer output goes to `<target>/xtask-setup.log` and is shown only on failure.

use std::{
    env,
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::{command, paths};

/// A Debian package and the part of the project that needs it.
pub struct AptPackage {
    pub name: &'static str,
    pub needed_by: &'static str,
}

/// Every Debian package the project needs beyond the base image. The only place the
/// list lives: setup checks and installs it, the README mirrors it.
///
/// bpf-linker links LLVM dynamically (`-lLLVM`), so `llvm-22-dev` (libLLVM.so, headers,
/// llvm-config-22) is all it needs; Polly, zlib and zstd dev packages only matter for a
/// static LLVM link, which we do not do.
pub const APT_PACKAGES: &[AptPackage] = &[
    AptPackage {
        name: "llvm-22-dev",
        needed_by: "bpf-linker: builds and runs against libLLVM 22, the BPF backend",
    },
    AptPackage {
        name: "redis-server",
        needed_by: "fleet-mode tests: budget leases, frequency caps, strategy replication",
    },
    AptPackage {
        name: "wrk",
        needed_by: "perf/: HTTP load generation for benchmarks",
    },
    AptPackage {
        name: "nginx-light",
        needed_by: "perf/: fixed-response HTTP server, the latency baseline",
    },
    AptPackage {
        name: "prometheus",
        needed_by: "tests: `promtool check metrics` validates /metrics",
    },
    AptPackage {
        name: "linux-perf",
        needed_by: "profiling: `perf stat` / `perf record` in perf/ and xtask",
    },
    AptPackage {
        name: "flatbuffers-compiler",
        needed_by: "bidder/build: `flatc` generates the FlatBuffers response code",
    },
    AptPackage {
        name: "python3-flatbuffers",
        needed_by: "tests: a Python reader (code from `flatc --python`) decodes served FlatBuffers",
    },
    AptPackage {
        name: "iproute2",
        needed_by: "XDP tests: `ip netns` and veth pairs to attach programs to",
    },
    AptPackage {
        name: "socat",
        needed_by: "tests and operators: talk to the agent's unix control socket",
    },
    AptPackage {
        name: "debootstrap",
        needed_by: "deploy-test: the Debian 12 root file system the playbook converges",
    },
    AptPackage {
        name: "systemd-container",
        needed_by: "deploy-test: systemd-nspawn boots that root with systemd as PID 1",
    },
    AptPackage {
        name: "ansible",
        needed_by: "ansible/: the playbook (ansible-core 2.14 with ansible.posix)",
    },
    AptPackage {
        name: "ansible-lint",
        needed_by: "ci: ansible-lint --profile production over ansible/",
    },
    AptPackage {
        name: "curl",
        needed_by: "deploy-test: queries the Prometheus API (answers are chunked)",
    },
    AptPackage {
        name: "openssl",
        needed_by: "fleet-mode tests: a self-signed certificate for a TLS-only redis-server",
    },
    AptPackage {
        name: "faketime",
        needed_by: "ci: the tests run again with the wall clock 400 days ahead (date bombs)",
    },
];

/// Components of the active toolchain: `rust-src` lets the eBPF build compile `core`
/// for `bpfel-unknown-none`; clippy and rustfmt are CI steps.
const RUST_COMPONENTS: &[&str] = &["rust-src", "clippy", "rustfmt"];

/// bpf-linker release and LLVM it is built against; the version is pinned so that
/// `--locked` gives the same dependency tree (and LLVM bindings) on every machine.
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Runs the three steps in order: packages first, because bpf-linker builds against
/// the LLVM they bring.
pub fn run() -> Result<()> {
    let started = Instant::now();
    let log = SetupLog::create()?;
    let mut installed_anything = apt_packages(&log)?;
    installed_anything |= rust_components(&log)?;
    installed_anything |= bpf_linker(&log)?;
    installed_anything |= fuzz_toolchain(&log)?;
    println!(
        "setup: done in {:.1}s{}",
        started.elapsed().as_secs_f64(),
        if installed_anything {
            ""
        } else {
            " (nothing to install)"
        }
    );
    Ok(())
}

/// Installs missing apt packages. Returns whether it installed any.
fn apt_packages(log: &SetupLog) -> Result<bool> {
    let names: Vec<&str> = APT_PACKAGES.iter().map(|package| package.name).collect();
    let missing = missing_apt_packages(&names)?;
    if missing.is_empty() {
        println!("setup: apt packages: all {} installed", names.len());
        return Ok(false);
    }
    if !running_as_root() {
        bail!(
            "apt packages missing: {list}. Installing them needs root: run \
             `sudo apt-get install -y --no-install-recommends {list}` (or run this \
             command as root), then `cargo xtask setup` again",
            list = missing.join(" ")
        );
    }
    for package in APT_PACKAGES.iter().filter(|p| missing.contains(&p.name)) {
        println!(
            "setup: apt packages: installing {} ({})",
            package.name, package.needed_by
        );
    }
    let started = Instant::now();
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    log.run(&mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    log.run(install.args(&missing))?;
    let still_missing = missing_apt_packages(&names)?;
    if !still_missing.is_empty() {
        bail!(
            "apt-get reported success but {} is still not installed",
            still_missing.join(" ")
        );
    }
    println!(
        "setup: apt packages: installed {} in {:.0}s",
        missing.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// The packages among `names` that dpkg does not report as installed, in one query.
fn missing_apt_packages<'a>(names: &[&'a str]) -> Result<Vec<&'a str>> {
    // dpkg-query exits 1 when some name is unknown to it; its stdout still lists the
    // known ones, which is all we read.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(names)
        .stderr(Stdio::null())
        .output()
        .context("cannot run dpkg-query: setup supports Debian and its derivatives only")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listing
        .lines()
        .filter(|line| line.ends_with(" install ok installed"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    Ok(names
        .iter()
        .copied()
        .filter(|name| !installed.contains(name))
        .collect())
}

/// Adds missing rustup components to the toolchain cargo runs with. Returns whether it
/// added any.
fn rust_components(log: &SetupLog) -> Result<bool> {
    let Some(toolchain) = active_toolchain() else {
        println!(
            "setup: rust components: rustup not found; the toolchain must provide {}",
            RUST_COMPONENTS.join(", ")
        );
        return Ok(false);
    };
    let listing = command::probe(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        &toolchain,
    ]))
    .with_context(|| format!("`rustup component list` failed for {toolchain}"))?;
    let missing: Vec<&str> = RUST_COMPONENTS
        .iter()
        .copied()
        .filter(|component| !has_component(&listing, component))
        .collect();
    if missing.is_empty() {
        println!(
            "setup: rust components: {} already in {toolchain}",
            RUST_COMPONENTS.join(", ")
        );
        return Ok(false);
    }
    println!(
        "setup: rust components: adding {} to {toolchain}",
        missing.join(", ")
    );
    log.run(
        Command::new("rustup")
            .args(["component", "add", "--toolchain", &toolchain])
            .args(&missing),
    )?;
    Ok(true)
}

/// Whether `rustup component list --installed` output names `component`; host
/// components carry the target triple as a suffix (`clippy-x86_64-unknown-linux-gnu`).
fn has_component(listing: &str, component: &str) -> bool {
    listing.lines().any(|line| {
        line == component
            || line
                .strip_prefix(component)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// The toolchain this cargo belongs to. rustup exports `RUSTUP_TOOLCHAIN` to everything
/// it runs, and the eBPF build script reads the same variable, so both agree.
fn active_toolchain() -> Option<String> {
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        return Some(toolchain);
    }
    let shown = command::probe(Command::new("rustup").args(["show", "active-toolchain"]))?;
    shown.split_whitespace().next().map(str::to_owned)
}

/// Builds bpf-linker against the system LLVM 22 unless a working one is on PATH.
/// Returns whether it built one.
fn bpf_linker(log: &SetupLog) -> Result<bool> {
    if let Some(version) = command::probe(Command::new("bpf-linker").arg("--version")) {
        println!("setup: bpf-linker: {} already installed", version.trim());
        return Ok(false);
    }
    println!(
        "setup: bpf-linker: building {BPF_LINKER_VERSION} against LLVM 22 \
         (takes a minute or two)"
    );
    let started = Instant::now();
    log.run(
        command::cargo()
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--locked", "--force", "--no-default-features"])
            .args(["--features", BPF_LINKER_LLVM_FEATURE])
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )?;
    let Some(version) = command::probe(Command::new("bpf-linker").arg("--version")) else {
        bail!(
            "bpf-linker was installed into {} but does not run from PATH; add that \
             directory to PATH (e.g. `source $HOME/.cargo/env`)",
            cargo_bin_dir().display()
        );
    };
    println!(
        "setup: bpf-linker: installed {} in {:.0}s",
        version.trim(),
        started.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// cargo-fuzz release; pinned so every machine fuzzes with the same driver.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The nightly toolchain cargo-fuzz needs (`-Zsanitizer`), with rust-src (the bidder's
/// build script compiles the eBPF object with the toolchain it runs under), and
/// cargo-fuzz itself. Installs the nightly only when none is present: an installed one
/// is kept, not updated, so setup stays fast and offline-safe once done. Returns
/// whether it installed anything.
fn fuzz_toolchain(log: &SetupLog) -> Result<bool> {
    let nightly = crate::fuzz::NIGHTLY;
    let mut installed = false;
    let toolchains = command::probe(Command::new("rustup").args(["toolchain", "list"]));
    let Some(toolchains) = toolchains else {
        println!("setup: fuzzing: rustup not found; `cargo xtask fuzz` needs rustup's {nightly}");
        return Ok(false);
    };
    let has_nightly = toolchains
        .lines()
        .any(|line| line.starts_with(&format!("{nightly}-")));
    if !has_nightly {
        println!("setup: fuzzing: installing the {nightly} toolchain (minimal, with rust-src)");
        log.run(Command::new("rustup").args([
            "toolchain",
            "install",
            nightly,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        installed = true;
    } else {
        let listing = command::probe(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            nightly,
        ]))
        .unwrap_or_default();
        if !has_component(&listing, "rust-src") {
            println!("setup: fuzzing: adding rust-src to {nightly}");
            log.run(Command::new("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                nightly,
            ]))?;
            installed = true;
        }
    }
    let version = command::probe(command::cargo().args(["fuzz", "--version"]));
    if version
        .as_deref()
        .is_some_and(|v| v.contains(CARGO_FUZZ_VERSION))
    {
        println!("setup: fuzzing: {nightly} and cargo-fuzz {CARGO_FUZZ_VERSION} installed");
        return Ok(installed);
    }
    println!("setup: fuzzing: building cargo-fuzz {CARGO_FUZZ_VERSION} (under a minute)");
    log.run(command::cargo().args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
        "--force",
    ]))?;
    Ok(true)
}

/// Where `cargo install` puts binaries.
fn cargo_bin_dir() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .unwrap_or_default()
        .join("bin")
}

/// `/proc/self` belongs to the process's effective uid, so this needs no libc call.
pub(crate) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Collects installer output in one file, shown (its tail) only when a step fails: the
/// steps print hundreds of lines nobody needs on success.
struct SetupLog {
    path: PathBuf,
}

/// Lines of the log shown when an installer fails.
const FAILURE_TAIL_LINES: usize = 40;

impl SetupLog {
    fn create() -> Result<SetupLog> {
        let dir = paths::target_dir();
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("xtask-setup.log");
        File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(SetupLog { path })
    }

    /// Runs `cmd` with its output appended to the log; on failure prints the log's
    /// tail and fails naming the command and the log.
    fn run(&self, cmd: &mut Command) -> Result<()> {
        let shown = command::describe(cmd);
        let file = File::options().append(true).open(&self.path)?;
        let status = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .status()
            .with_context(|| format!("cannot start `{shown}`"))?;
        if status.success() {
            return Ok(());
        }
        self.print_tail();
        bail!(
            "`{shown}` failed ({status}); full output in {}",
            self.path.display()
        )
    }

    fn print_tail(&self) {
        let Ok(file) = File::open(&self.path) else {
            return;
        };
        let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        for line in &lines[lines.len().saturating_sub(FAILURE_TAIL_LINES)..] {
            eprintln!("  | {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{has_component, APT_PACKAGES};

    #[test]
    fn components_match_with_or_without_target_suffix() {
        let listing = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\n\
                       rust-src\nrust-std-x86_64-unknown-linux-gnu\n";
        assert!(has_component(listing, "rust-src"));
        assert!(has_component(listing, "clippy"));
        assert!(!has_component(listing, "rustfmt"));
    }

    #[test]
    fn rust_std_does_not_count_as_rust_src() {
        assert!(!has_component(
            "rust-std-x86_64-unknown-linux-gnu\n",
            "rust-src"
        ));
    }

    #[test]
    fn package_list_has_no_duplicates_and_says_why() {
        for (i, package) in APT_PACKAGES.iter().enumerate() {
            assert!(
                !package.needed_by.is_empty(),
                "{} lacks a reason",
                package.name
            );
            assert!(
                APT_PACKAGES[i + 1..].iter().all(|p| p.name != package.name),
                "{} listed twice",
                package.name
            );
        }
    }
}
