//! The program's bpf_link, pinned at `<pin_dir>/link`: attaching, replacing the program
//! on a link a previous run left (so traffic is never unfiltered across a restart or a
//! crash), detaching, and what a link is attached to.
//!
//! aya has no accessor for a link's interface nor a forced detach, so those two are
//! raw `bpf(2)` calls here: `BPF_OBJ_GET` + `BPF_OBJ_GET_INFO_BY_FD` read the link's
//! interface index, and `BPF_LINK_DETACH` detaches it even while another process (a
//! running bidder) still holds the link open.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use bidder_common::xdp::{MODE_GENERIC, MODE_NATIVE};

use super::pins::link_path;
use super::XdpError;
use crate::config::AttachMode;

/// `bpf(2)` commands used here (`enum bpf_cmd` in `linux/bpf.h`).
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_DETACH: libc::c_long = 34;

/// How the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    /// In the driver.
    Native,
    /// In the kernel stack (skb).
    Generic,
}

impl AttachedMode {
    /// Label value on `/metrics` and word in `bidder xdp status`.
    pub fn name(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        }
    }

    /// The `Settings::attach_mode` value recording it.
    pub fn code(self) -> u32 {
        match self {
            AttachedMode::Native => MODE_NATIVE,
            AttachedMode::Generic => MODE_GENERIC,
        }
    }

    /// The mode a `Settings::attach_mode` value records, if any.
    pub fn from_code(code: u32) -> Option<AttachedMode> {
        match code {
            MODE_NATIVE => Some(AttachedMode::Native),
            MODE_GENERIC => Some(AttachedMode::Generic),
            _ => None,
        }
    }

    fn flags(self) -> XdpMode {
        match self {
            AttachedMode::Native => XdpMode::Driver,
            AttachedMode::Generic => XdpMode::Skb,
        }
    }
}

/// A pinned link as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub link_id: u32,
    pub program_id: u32,
    /// 0 once the interface is gone (the kernel detached the link).
    pub ifindex: u32,
}

/// The program attached through a pinned link.
#[derive(Debug)]
pub struct Attached {
    /// Kept open for the daemon's life; the pin keeps the link after a crash.
    pub link: FdLink,
    pub mode: AttachedMode,
    pub ifindex: u32,
    /// The program replaced another one on a link a previous run pinned.
    pub replaced: bool,
}

/// The interface's index in this network namespace.
pub fn interface_index(name: &str) -> Option<u32> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: `c_name` is NUL-terminated and outlives the call, which only reads it.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The interface's name, if it still exists.
pub fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, the most the call writes (name and NUL).
    let ret = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if ret.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// Attaches `program` to `interface` through a link pinned in `pin_dir`, replacing the
/// program on an already pinned link when that link is on the same interface in a
/// mode `mode` accepts (`previous_mode`: `Settings::attach_mode` of the previous run).
pub(crate) fn attach(
    program: &mut Xdp,
    pin_dir: &Path,
    interface: &str,
    mode: AttachMode,
    previous_mode: u32,
) -> Result<Attached, XdpError> {
    let refuse = |reason: String| XdpError::Attach {
        interface: interface.to_string(),
        mode,
        reason,
    };
    let ifindex = interface_index(interface)
        .ok_or_else(|| refuse("no such interface in this network namespace".into()))?;
    if let Some(attached) = replace_pinned(program, pin_dir, ifindex, mode, previous_mode)
        .map_err(|e| refuse(format!("replacing the program on the pinned link: {e}")))?
    {
        return Ok(attached);
    }
    let (link_id, attached_mode) = match mode {
        AttachMode::Native => (
            attach_in(program, ifindex, AttachedMode::Native).map_err(refuse)?,
            AttachedMode::Native,
        ),
        AttachMode::Generic => (
            attach_in(program, ifindex, AttachedMode::Generic).map_err(refuse)?,
            AttachedMode::Generic,
        ),
        AttachMode::Auto => match attach_in(program, ifindex, AttachedMode::Native) {
            Ok(id) => (id, AttachedMode::Native),
            Err(native) => {
                tracing::info!(
                    interface,
                    "native XDP refused ({native}); attaching in generic mode"
                );
                let id = attach_in(program, ifindex, AttachedMode::Generic)
                    .map_err(|generic| refuse(format!("native: {native}; generic: {generic}")))?;
                (id, AttachedMode::Generic)
            }
        },
    };
    let link: FdLink = program
        .take_link(link_id)
        .map_err(|e| refuse(e.to_string()))?
        .try_into()
        .map_err(|_| {
            refuse(
                "the kernel attached without a bpf_link, which pinning needs (Linux ≥ 5.9)".into(),
            )
        })?;
    let pinned = link.pin(link_path(pin_dir)).map_err(|e| {
        refuse(format!(
            "pinning the link at {}: {e}",
            link_path(pin_dir).display()
        ))
    })?;
    Ok(Attached {
        link: pinned.into(),
        mode: attached_mode,
        ifindex,
        replaced: false,
    })
}

fn attach_in(
    program: &mut Xdp,
    ifindex: u32,
    mode: AttachedMode,
) -> Result<aya::programs::xdp::XdpLinkId, String> {
    program
        .attach_to_if_index(ifindex, mode.flags())
        .map_err(|e| error_chain(&e))
}

/// The program on the pinned link replaced, or `None` when there is no usable pinned
/// link (none, defunct, or on another interface or mode: then it is detached first).
fn replace_pinned(
    program: &mut Xdp,
    pin_dir: &Path,
    ifindex: u32,
    mode: AttachMode,
    previous_mode: u32,
) -> Result<Option<Attached>, String> {
    let path = link_path(pin_dir);
    let Some(state) = inspect(&path).map_err(|e| format!("reading {}: {e}", path.display()))?
    else {
        return Ok(None);
    };
    let old_mode = AttachedMode::from_code(previous_mode);
    let fits = state.ifindex == ifindex
        && matches!(
            (mode, old_mode),
            (AttachMode::Auto, Some(_))
                | (AttachMode::Native, Some(AttachedMode::Native))
                | (AttachMode::Generic, Some(AttachedMode::Generic))
        );
    let Some(old_mode) = old_mode.filter(|_| fits) else {
        tracing::warn!(
            link = %path.display(),
            pinned_ifindex = state.ifindex,
            pinned_mode = old_mode.map_or("unknown", AttachedMode::name),
            "the pinned link is not on the configured interface in the configured mode: detaching it and attaching anew"
        );
        detach(pin_dir).map_err(|e| e.to_string())?;
        return Ok(None);
    };
    let fd_link: FdLink = PinnedLink::from_pin(&path)
        .map_err(|e| error_chain(&e))?
        .into();
    let xdp_link = XdpLink::try_from(fd_link).map_err(|e| error_chain(&e))?;
    let id = program
        .attach_to_link(xdp_link)
        .map_err(|e| error_chain(&e))?;
    let link: FdLink = program
        .take_link(id)
        .map_err(|e| error_chain(&e))?
        .try_into()
        .map_err(|e: aya::programs::links::LinkError| error_chain(&e))?;
    tracing::info!(link = %path.display(), link_id = state.link_id, old_program_id = state.program_id, "replaced the program on the link a previous run pinned");
    Ok(Some(Attached {
        link,
        mode: old_mode,
        ifindex,
        replaced: true,
    }))
}

/// Detaches the pinned link, whoever holds it open, and removes the pin. Returns what
/// was attached, or `None` when nothing was pinned (detaching twice is fine).
pub fn detach(pin_dir: &Path) -> Result<Option<LinkState>, XdpError> {
    let path = link_path(pin_dir);
    let failed = |what: &'static str| {
        let path = path.clone();
        move |source: io::Error| XdpError::Link { path, what, source }
    };
    let Some(fd) = open_pinned(&path).map_err(failed("opening"))? else {
        return Ok(None);
    };
    let state = link_info(&fd).map_err(failed("reading"))?;
    // A link whose interface is gone is already detached; the call would say EINVAL.
    if state.ifindex != 0 {
        force_detach(&fd).map_err(failed("detaching"))?;
    }
    std::fs::remove_file(&path).map_err(failed("unpinning"))?;
    Ok(Some(state))
}

/// The pinned link at `path`, or `None` when nothing is pinned there.
pub fn inspect(path: &Path) -> io::Result<Option<LinkState>> {
    match open_pinned(path)? {
        Some(fd) => link_info(&fd).map(Some),
        None => Ok(None),
    }
}

/// `ProgramError`s put the kernel's reason in their source; show the whole chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// `union bpf_attr` for `BPF_OBJ_GET`.
#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `union bpf_attr` for `BPF_LINK_DETACH`.
#[repr(C)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// The head of `struct bpf_link_info` with its `xdp` union member: type, id, prog_id,
/// then (8-aligned) `ifindex`. Padded so the kernel may copy any union member in.
#[repr(C, align(8))]
struct XdpLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    ifindex: u32,
    _rest: [u32; 11],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a `#[repr(C)]` prefix of `union bpf_attr` for `cmd`, fully
    // initialised, and its size is passed so the kernel reads no further; the kernel
    // writes only inside it (or, for GET_INFO, into the buffer it points at, which
    // the caller keeps alive across the call).
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

fn open_pinned(path: &Path) -> io::Result<Option<OwnedFd>> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    let mut attr = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    match bpf(BPF_OBJ_GET, &mut attr) {
        // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
        Ok(fd) => Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn link_info(fd: &OwnedFd) -> io::Result<LinkState> {
    let mut info = XdpLinkInfo {
        link_type: 0,
        id: 0,
        prog_id: 0,
        _pad: 0,
        ifindex: 0,
        _rest: [0; 11],
    };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<XdpLinkInfo>() as u32,
        info: &mut info as *mut XdpLinkInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(LinkState {
        link_id: info.id,
        program_id: info.prog_id,
        ifindex: info.ifindex,
    })
}

fn force_detach(fd: &OwnedFd) -> io::Result<()> {
    let mut attr = LinkDetachAttr {
        link_fd: fd.as_raw_fd() as u32,
    };
    bpf(BPF_LINK_DETACH, &mut attr).map(|_| ())
}
