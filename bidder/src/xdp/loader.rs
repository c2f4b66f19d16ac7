//! [`XdpFront`]: the XDP program loaded with its maps pinned, its maps filled, and
//! attached through a pinned bpf_link; then kept in step with the configuration.
//!
//! Lifecycle:
//! * **start**: bpffs mounted if needed; the pin folder made; pinned maps of another
//!   layout (an older build) removed; the object loaded (again while signals interrupt
//!   the verifier), reusing the pinned maps (once more after removing them if that
//!   fails); maps filled; the program attached, or
//!   put in place of the old one on a link a previous run left pinned (atomic, so a
//!   restart or a crash never leaves traffic unfiltered).
//! * **apply** (reload, agent partner rows): maps updated in place; never detaches.
//! * **detach** (clean shutdown): the link is detached and unpinned; the maps stay
//!   pinned, so counters and partner slots survive to the next start.
//! * Dropping an `XdpFront` without `detach` is what a crash does: the pinned link
//!   keeps the program filtering with the last rules until the next start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aya::programs::links::FdLink;
use aya::programs::{ProgramError, Xdp};
use aya::{Ebpf, EbpfLoader};
use bidder_common::xdp::{Settings, PROGRAM_NAME, SETTINGS_MAP};

use super::bpffs;
use super::drop_log::DropLog;
use super::link::{self, AttachedMode};
use super::maps::{Applied, FrontMaps};
use super::metrics::XdpMetrics;
use super::pins;
use super::rules::Rules;
use super::XdpError;
use crate::config::XdpConfig;
use crate::metrics::Collect;
use crate::xdp::object::XDP_OBJECT;

/// Where bpffs is mounted by convention (and by systemd).
const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Where and how the program is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    pub mode: AttachedMode,
    pub link_id: u32,
    pub program_id: u32,
    /// The program took over a link a previous run left pinned.
    pub replaced: bool,
}

/// The running XDP front. Maps are written only from control-side threads (start,
/// reload, the strategy mirror); the bid path never touches this.
pub struct XdpFront {
    maps: Mutex<FrontMaps>,
    /// Settings only the loader knows (interface, mode), merged into every apply.
    base_settings: Settings,
    attachment: Attachment,
    pin_dir: PathBuf,
    metrics: Arc<XdpMetrics>,
    /// The link, program and log thread; taken by `detach`.
    running: Mutex<Option<Running>>,
}

struct Running {
    _link: FdLink,
    _ebpf: Ebpf,
    _log: Option<DropLog>,
}

/// The object loaded and its maps filled, before the program is attached.
struct Loaded {
    ebpf: Ebpf,
    maps: FrontMaps,
    /// Partner → slot after the first fill.
    partners: Vec<(String, u32)>,
    program_id: u32,
}

impl XdpFront {
    /// Loads, fills and attaches the program as `config` says, enforcing `rules`.
    /// A failure after attaching detaches again: no program is left filtering for a
    /// bidder that did not start it.
    pub fn start(config: &XdpConfig, rules: &Rules) -> Result<XdpFront, XdpError> {
        let pin_dir = &config.pin_dir;
        prepare_pin_dir(pin_dir)?;
        let previous = previous_settings(pin_dir);
        let mut ebpf = load(pin_dir)?;
        let mut maps = FrontMaps::from_ebpf(&mut ebpf)?;
        // Filled before attaching: a fresh program never runs on empty maps. On a
        // replaced link the old program already shares these maps.
        let (partners, applied) = maps.apply(rules, previous)?;
        tracing::info!(pin_dir = %pin_dir.display(), "xdp maps filled: {applied}");
        let program = xdp_program(&mut ebpf)?;
        let attached = link::attach(
            program,
            pin_dir,
            &config.interface,
            config.attach_mode(),
            previous.attach_mode,
        )?;
        let program_id = program.info().map_err(XdpError::Program)?.id();
        let loaded = Loaded {
            ebpf,
            maps,
            partners,
            program_id,
        };
        Self::attached(config, rules, loaded, attached).inspect_err(|_| {
            if let Err(e) = link::detach(pin_dir) {
                tracing::error!("xdp link left attached after a failed start: {e}");
            }
        })
    }

    /// The rest of `start` once the program is attached: settings naming the
    /// interface and mode, the metrics, the log thread.
    fn attached(
        config: &XdpConfig,
        rules: &Rules,
        mut loaded: Loaded,
        attached: link::Attached,
    ) -> Result<XdpFront, XdpError> {
        let pin_dir = config.pin_dir.clone();
        let link_id = link::inspect(&pins::link_path(&pin_dir))
            .ok()
            .flatten()
            .map_or(0, |s| s.link_id);
        let base_settings = Settings {
            ifindex: attached.ifindex,
            attach_mode: attached.mode.code(),
            ..Settings::default()
        };
        loaded.maps.apply(rules, base_settings)?;
        let metrics = XdpMetrics::open(&pin_dir, &config.interface, attached.mode.name())?;
        metrics.set_partners(loaded.partners);
        let log = DropLog::start(&mut loaded.ebpf)
            .inspect_err(|e| tracing::warn!("xdp drop records not forwarded to the log: {e}"))
            .ok();
        let attachment = Attachment {
            interface: config.interface.clone(),
            ifindex: attached.ifindex,
            mode: attached.mode,
            link_id,
            program_id: loaded.program_id,
            replaced: attached.replaced,
        };
        tracing::info!(
            interface = %attachment.interface,
            mode = attachment.mode.name(),
            link_id,
            program_id = attachment.program_id,
            replaced = attachment.replaced,
            "xdp front attached"
        );
        Ok(XdpFront {
            maps: Mutex::new(loaded.maps),
            base_settings,
            attachment,
            pin_dir,
            metrics: Arc::new(metrics),
            running: Mutex::new(Some(Running {
                _link: attached.link,
                _ebpf: loaded.ebpf,
                _log: log,
            })),
        })
    }

    /// Brings the maps in step with `rules` (reload, agent partner rows); the program
    /// and link stay as they are.
    pub fn apply(&self, rules: &Rules) -> Result<Applied, XdpError> {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        let (partners, applied) = maps.apply(rules, self.base_settings)?;
        self.metrics.set_partners(partners);
        Ok(applied)
    }

    /// Partner → slot as the maps hold them now.
    pub fn slots(&self) -> Result<Vec<(String, u32)>, XdpError> {
        let maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        Ok(maps
            .slots()?
            .into_iter()
            .map(|e| (e.limit.name_str().to_string(), e.slot))
            .collect())
    }

    /// Where and how the program is attached.
    pub fn attachment(&self) -> &Attachment {
        &self.attachment
    }

    /// The pin folder.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// What `/metrics` scrapes from the front.
    pub fn collector(&self) -> Arc<dyn Collect> {
        Arc::clone(&self.metrics) as Arc<dyn Collect>
    }

    /// Clean shutdown: detaches and unpins the link, stops the log thread. The maps
    /// stay pinned (counters and slots survive restarts). Detaching twice is fine.
    pub fn detach(&self) -> Result<(), XdpError> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if running.is_none() {
            return Ok(());
        }
        link::detach(&self.pin_dir)?;
        drop(running);
        tracing::info!(
            interface = %self.attachment.interface,
            pin_dir = %self.pin_dir.display(),
            "xdp front detached; maps stay pinned"
        );
        Ok(())
    }
}

/// Mounts bpffs where the convention puts it and makes the pin folder on it.
fn prepare_pin_dir(pin_dir: &Path) -> Result<(), XdpError> {
    let failed = |what: &'static str| {
        move |source| XdpError::PinDir {
            path: pin_dir.to_path_buf(),
            what,
            source,
        }
    };
    if pin_dir.starts_with(BPFFS_ROOT) {
        bpffs::ensure_mounted(Path::new(BPFFS_ROOT)).map_err(failed("mounting bpffs"))?;
    }
    std::fs::create_dir_all(pin_dir).map_err(failed("creating"))?;
    if !bpffs::is_bpffs(pin_dir).map_err(failed("checking"))? {
        return Err(XdpError::PinDir {
            path: pin_dir.to_path_buf(),
            what: "checking",
            source: std::io::Error::other("not on a bpffs mount (use a folder under /sys/fs/bpf)"),
        });
    }
    Ok(())
}

/// The settings a previous run left, read before anything is replaced: their attach
/// mode says whether a pinned link may be reused as is.
fn previous_settings(pin_dir: &Path) -> Settings {
    let settings_stale = pins::stale_maps(pin_dir)
        .iter()
        .any(|s| s.starts_with(SETTINGS_MAP));
    if settings_stale || !pins::map_path(pin_dir, SETTINGS_MAP).exists() {
        return Settings::default();
    }
    FrontMaps::open_pinned(pin_dir)
        .and_then(|m| m.settings())
        .unwrap_or_default()
}

/// Loads the object reusing the pinned maps: pins of another layout are removed
/// first; if loading still fails with pins present, they are removed and loading is
/// tried once more (both logged) — unless signals kept interrupting the verifier,
/// which says nothing about the pins.
fn load(pin_dir: &Path) -> Result<Ebpf, XdpError> {
    let stale = pins::stale_maps(pin_dir);
    if !stale.is_empty() {
        tracing::warn!(
            pin_dir = %pin_dir.display(),
            "pinned maps from a build with other layouts ({}): replacing them (counters and slots start over)",
            stale.join("; ")
        );
        remove_pins(pin_dir)?;
    }
    match load_once(pin_dir) {
        Ok(ebpf) => Ok(ebpf),
        Err(first) if pins::any_map_pinned(pin_dir) && !interrupted(&first) => {
            tracing::warn!(
                pin_dir = %pin_dir.display(),
                "loading with the pinned maps failed ({first}); removing them and trying once more"
            );
            remove_pins(pin_dir)?;
            load_once(pin_dir)
        }
        Err(e) => Err(e),
    }
}

fn remove_pins(pin_dir: &Path) -> Result<(), XdpError> {
    pins::remove_map_pins(pin_dir)
        .map(|_| ())
        .map_err(|source| XdpError::PinDir {
            path: pin_dir.to_path_buf(),
            what: "removing stale map pins from",
            source,
        })
}

fn load_once(pin_dir: &Path) -> Result<Ebpf, XdpError> {
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .load(XDP_OBJECT)
        .map_err(XdpError::Load)?;
    let program = xdp_program(&mut ebpf)?;
    retry_interrupted(
        LOAD_ATTEMPTS,
        || program.load(),
        |e| matches!(e, ProgramError::LoadError { io_error, .. } if is_eagain(io_error)),
    )
    .map_err(XdpError::Program)?;
    Ok(ebpf)
}

/// How many times `BPF_PROG_LOAD` is tried while signals interrupt it (libbpf: 5).
const LOAD_ATTEMPTS: usize = 5;

/// The verifier gives up with `EAGAIN` when a signal is pending for the loading
/// thread (`signal_pending` in its main loop): any signal, and also the fake signal
/// that freezes a task (a frozen cgroup, suspend, a descheduled VM's agent). Nothing
/// is wrong with the program or the maps; loading again is the remedy.
fn is_eagain(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN)
}

fn interrupted(e: &XdpError) -> bool {
    matches!(e, XdpError::Program(ProgramError::LoadError { io_error, .. }) if is_eagain(io_error))
}

/// Runs `op` up to `attempts` times while it fails in a way `retry` accepts (each
/// retry logged); any other outcome, or the last attempt's, is returned.
fn retry_interrupted<T, E>(
    attempts: usize,
    mut op: impl FnMut() -> Result<T, E>,
    retry: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut attempt = 1;
    loop {
        match op() {
            Err(e) if attempt < attempts && retry(&e) => {
                tracing::warn!(
                    attempt,
                    "loading the XDP program was interrupted (a signal stopped the verifier: EAGAIN); loading it again"
                );
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or(XdpError::MissingProgram)?
        .try_into()
        .map_err(XdpError::Program)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn eagain() -> io::Error {
        io::Error::from_raw_os_error(libc::EAGAIN)
    }

    #[test]
    fn an_interrupted_load_is_tried_again_up_to_the_attempts() {
        let mut calls = 0;
        let outcome = retry_interrupted(
            LOAD_ATTEMPTS,
            || {
                calls += 1;
                if calls < LOAD_ATTEMPTS {
                    Err(eagain())
                } else {
                    Ok(calls)
                }
            },
            is_eagain,
        );
        assert_eq!(outcome.unwrap(), LOAD_ATTEMPTS);

        let mut calls = 0;
        let outcome: Result<(), _> = retry_interrupted(
            LOAD_ATTEMPTS,
            || {
                calls += 1;
                Err(eagain())
            },
            is_eagain,
        );
        assert!(is_eagain(&outcome.unwrap_err()));
        assert_eq!(calls, LOAD_ATTEMPTS, "gives up after the last attempt");
    }

    #[test]
    fn other_load_failures_are_not_retried() {
        let mut calls = 0;
        let outcome: Result<(), _> = retry_interrupted(
            LOAD_ATTEMPTS,
            || {
                calls += 1;
                Err(io::Error::from_raw_os_error(libc::EACCES))
            },
            is_eagain,
        );
        assert_eq!(outcome.unwrap_err().raw_os_error(), Some(libc::EACCES));
        assert_eq!(calls, 1);
    }
}
