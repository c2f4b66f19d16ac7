//! The BPF filesystem the pinned maps and link live on.

use std::io;
use std::path::Path;

/// `f_type` of a bpffs mount (`BPF_FS_MAGIC` in `linux/magic.h`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `path` is on a mounted bpffs.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    // SAFETY: statfs is plain data, filled by the kernel; `c_path` is NUL-terminated and
    // outlives the call.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

/// Mounts bpffs at `root` (normally `/sys/fs/bpf`) unless one is mounted there
/// already, as systemd does at boot; hosts without systemd (containers, minimal VMs)
/// leave it to us. Needs root.
pub fn ensure_mounted(root: &Path) -> io::Result<()> {
    if is_bpffs(root)? {
        return Ok(());
    }
    let target = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; bpffs
    // takes no mount data.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // Another process may have mounted it meanwhile.
        if is_bpffs(root).unwrap_or(false) {
            return Ok(());
        }
        return Err(io::Error::new(
            e.kind(),
            format!("mount bpffs at {}: {e} (needs root)", root.display()),
        ));
    }
    Ok(())
}
