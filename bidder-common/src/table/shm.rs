//! Table files: create, open, map, lock. The only `unsafe` of the tables lives here,
//! at the edge where a file becomes memory.
//!
//! * A **writer** ([`Writer`]) takes an exclusive `flock` on `<table>.lock` first, so
//!   a second writer — another agent, a second bidder — fails at once with the pid of
//!   the holder instead of interleaving writes. The kernel drops the lock when the
//!   holder dies, so a restarted agent gets it back without cleanup.
//! * A new table is built under a temporary name and renamed into place, so a reader
//!   sees either no file or a complete one, never a half-initialised header.
//! * A **reader** ([`Table::open_read`]) maps the file read-only and checks the header
//!   against its own compiled layout before it looks at a row; it never takes a lock.
//! * Nobody else's file is trusted: a table or lock file writable by group or others is
//!   refused by everyone, and the writer refuses one it does not own, or a directory
//!   anyone may replace files in. Otherwise another local user could create the file
//!   first (in `/dev/shm`, say) and write strategy past every bound, or hold the lock.

extern crate std;

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use std::borrow::ToOwned;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::string::{String, ToString};

use super::cell::Payload;
use super::{
    init_header, sections, validate, Capacity, Header, KeyBuf, LayoutError, Row, Sections,
    TableSpec, MAX_ROWS,
};
use crate::clock::Clock;

/// Mode of a new table file: the writer writes, everyone may read (the contents are
/// strategy numbers and counters, not secrets; the control socket is what is guarded).
pub const TABLE_FILE_MODE: u32 = 0o644;

/// Why a table could not be opened or created. Each message says what to do.
#[derive(Debug)]
pub enum OpenError {
    /// No table at this path (the writer has not created it yet).
    Missing { path: PathBuf },
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// Another process holds the writer lock.
    Locked {
        lock_path: PathBuf,
        holder_pid: Option<u32>,
    },
    /// The file is not a table this program can read.
    Layout { path: PathBuf, error: LayoutError },
    /// The capacity asked for is zero or above [`MAX_ROWS`].
    Capacity { campaigns: u32, partners: u32 },
    /// The file or its directory could be written by someone other than the writer.
    Untrusted { path: PathBuf, problem: String },
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::Missing { path } => {
                write!(
                    f,
                    "{}: no table yet (its writer creates it)",
                    path.display()
                )
            }
            OpenError::Io { path, op, source } => {
                write!(
                    f,
                    "{}: {op}: {source} (check the path and permissions)",
                    path.display()
                )
            }
            OpenError::Locked {
                lock_path,
                holder_pid: Some(pid),
            } => write!(
                f,
                "{}: another writer (pid {pid}) holds the table; only one agent may run per table",
                lock_path.display()
            ),
            OpenError::Locked { lock_path, .. } => write!(
                f,
                "{}: another writer holds the table; only one agent may run per table",
                lock_path.display()
            ),
            OpenError::Layout { path, error } => write!(
                f,
                "{}: {error}; move the file away to let the writer create a new one",
                path.display()
            ),
            OpenError::Capacity {
                campaigns,
                partners,
            } => write!(
                f,
                "capacity {campaigns} campaigns / {partners} partners: each must be 1..={MAX_ROWS}"
            ),
            OpenError::Untrusted { path, problem } => write!(
                f,
                "{}: {problem}; a table must belong to its writer's user and be writable by \
                 no one else: remove it, and keep tables in a directory only the service \
                 can write (e.g. /run/bidder)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for OpenError {}

/// Why a row could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Every row of the section is used.
    Full {
        section: &'static str,
        capacity: u32,
    },
    /// Empty, or longer than [`super::MAX_KEY_BYTES`].
    BadKey { key: String },
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::Full { section, capacity } => write!(
                f,
                "all {capacity} {section} rows are used; raise the capacity in the configuration"
            ),
            WriteError::BadKey { key } => {
                write!(f, "key {key:?} must be 1..=64 bytes")
            }
        }
    }
}

impl std::error::Error for WriteError {}

/// A shared mapping of a whole file, unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes; every access to it
// goes through atomics (the table types are made of nothing else), so sharing the
// pointer between threads adds no race the atomics do not already handle.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` only ever yields `&` references to atomics.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn new(
        file: &File,
        len: usize,
        writable: bool,
        path: &Path,
    ) -> Result<Mapping, OpenError> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping (null hint) of `len` bytes of an open file descriptor
        // that outlives the call; the kernel picks the address, so no existing memory
        // is replaced. `len` is the file's size, checked non-zero by the callers.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io_error(path, "mmap", io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap never returns null on success");
        Ok(Mapping { ptr, len })
    }
}

impl Mapping {
    /// The first byte of the mapping.
    pub(crate) fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }
}

impl core::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Mapping({} bytes)", self.len)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, unmapped once, here; the
        // `Table` that owns this mapping hands out references bound to its own
        // lifetime, so none outlive it.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Identity of a table file: a writer that re-creates a table makes a new inode, and
/// a reader polling the path notices and maps the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// Identity of whatever file is at `path` now, or `None` if there is none.
pub fn file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// A mapped, validated table: the view readers and the writer share.
pub struct Table<S: TableSpec> {
    map: Mapping,
    cap: Capacity,
    sections: Sections,
    id: FileId,
    _spec: PhantomData<S>,
}

impl<S: TableSpec> Table<S> {
    /// Maps the table at `path` read-only and checks its layout. Never blocks on the
    /// writer; fails with [`OpenError::Missing`] when there is no table yet.
    pub fn open_read(path: &Path) -> Result<Table<S>, OpenError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OpenError::Missing { path: path.into() })
            }
            Err(e) => return Err(io_error(path, "open", e)),
        };
        Table::map(file, path, false)
    }

    fn map(file: File, path: &Path, writable: bool) -> Result<Table<S>, OpenError> {
        let meta = file.metadata().map_err(|e| io_error(path, "stat", e))?;
        check_trusted(path, &meta, writable)?;
        let file_bytes = meta.len();
        if file_bytes < size_of::<Header>() as u64 {
            let error = LayoutError::Truncated {
                file_bytes,
                needed_bytes: size_of::<Header>() as u64,
            };
            return Err(OpenError::Layout {
                path: path.into(),
                error,
            });
        }
        let map = Mapping::new(&file, file_bytes as usize, writable, path)?;
        // SAFETY: the mapping is at least a header long (checked above) and
        // page-aligned, which satisfies `Header`'s 64-byte alignment; `Header` is made
        // of atomics only, so any bytes are a valid value and concurrent writes by the
        // writer process are atomic accesses, not races. Atomic loads from a read-only
        // mapping are fine for lock-free, pointer-sized-or-smaller atomics, which are
        // the only kind here.
        let header = unsafe { &*map.ptr.as_ptr().cast::<Header>() };
        let cap = validate::<S>(header, file_bytes).map_err(|error| OpenError::Layout {
            path: path.into(),
            error,
        })?;
        Ok(Table {
            map,
            cap,
            sections: sections::<S>(cap),
            id: FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
            _spec: PhantomData,
        })
    }

    pub fn header(&self) -> &Header {
        // SAFETY: validated at open (see `map`): in bounds, aligned, atomics only.
        unsafe { &*self.map.ptr.as_ptr().cast::<Header>() }
    }

    /// The section between the header and the rows.
    pub fn prefix(&self) -> &S::Prefix {
        // SAFETY: `validate` checked the file holds every section of this capacity and
        // that the writer's prefix size equals `size_of::<S::Prefix>()`; the offset is
        // 64-byte aligned (`sections`), the prefix types are atomics only.
        unsafe {
            &*self
                .map
                .ptr
                .as_ptr()
                .add(self.sections.prefix)
                .cast::<S::Prefix>()
        }
    }

    /// The capacity the file was created with.
    pub fn capacity(&self) -> Capacity {
        self.cap
    }

    pub fn file_id(&self) -> FileId {
        self.id
    }

    /// Campaign rows published so far (the writer only appends).
    pub fn campaigns(&self) -> &[Row<S::Campaign>] {
        let used = self.header().campaigns_used.load(Ordering::Acquire);
        // SAFETY: `rows` bounds `used` by the validated capacity.
        unsafe { self.rows(self.sections.campaigns, used, self.cap.campaigns) }
    }

    /// Partner rows published so far.
    pub fn partners(&self) -> &[Row<S::Partner>] {
        let used = self.header().partners_used.load(Ordering::Acquire);
        // SAFETY: as for `campaigns`.
        unsafe { self.rows(self.sections.partners, used, self.cap.partners) }
    }

    /// Every campaign row of the section, used or not: for the writer, which fills
    /// unused rows before it publishes them.
    fn campaign_section(&self) -> &[Row<S::Campaign>] {
        // SAFETY: the campaign section of the validated capacity.
        unsafe {
            self.rows(
                self.sections.campaigns,
                self.cap.campaigns,
                self.cap.campaigns,
            )
        }
    }

    /// Every partner row of the section, used or not.
    fn partner_section(&self) -> &[Row<S::Partner>] {
        // SAFETY: the partner section of the validated capacity.
        unsafe { self.rows(self.sections.partners, self.cap.partners, self.cap.partners) }
    }

    /// # Safety
    /// `offset` must be the start of a section of `capacity` rows of `T` inside the
    /// validated mapping.
    unsafe fn rows<T>(&self, offset: usize, used: u32, capacity: u32) -> &[T] {
        // A corrupt or hostile `used` cannot reach past the section.
        let len = used.min(capacity) as usize;
        debug_assert!(offset + len * size_of::<T>() <= self.map.len);
        // SAFETY: per the contract, `offset` starts `capacity` rows of `T` within the
        // mapping (validated length), 64-byte aligned like `Row`; `len <= capacity`;
        // rows are atomics only, valid for any bytes and for concurrent access.
        unsafe { core::slice::from_raw_parts(self.map.ptr.as_ptr().add(offset).cast::<T>(), len) }
    }

    /// Position of the campaign row keyed `key`, by a scan (callers map keys to rows
    /// once per catalog, not per request).
    pub fn find_campaign(&self, key: &str) -> Option<usize> {
        self.campaigns()
            .iter()
            .position(|r| r.key.get().as_str() == key)
    }

    /// Position of the partner row keyed `key`.
    pub fn find_partner(&self, key: &str) -> Option<usize> {
        self.partners()
            .iter()
            .position(|r| r.key.get().as_str() == key)
    }

    /// `generation` of the header: changes after every write.
    pub fn generation(&self) -> u64 {
        self.header().generation.load(Ordering::Acquire)
    }
}

/// What a writer does with an existing file it cannot use as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMismatch {
    /// Refuse (the strategy table: its rows are operator decisions and must not be
    /// dropped by an upgrade). A different capacity is still migrated, row by row.
    Refuse,
    /// Replace it with a fresh table (the stats table: counters are rebuilt anyway).
    Recreate,
}

/// The single writer of a table: holds the lock for as long as it lives.
pub struct Writer<S: TableSpec> {
    pub(super) table: Table<S>,
    /// Holding the file open holds the `flock`.
    _lock: File,
    campaign_rows: HashMap<String, usize>,
    partner_rows: HashMap<String, usize>,
    /// Stamps the header's creation time and heartbeats.
    clock: Clock,
}

impl<S: TableSpec> Writer<S> {
    /// Takes the writer lock of `path`, then opens the table there or creates it with
    /// `cap` rows. An existing table of another capacity is migrated (rows copied
    /// into a new file renamed over the old, which readers notice by its inode).
    /// `clock` stamps the header (creation, heartbeats).
    pub fn open(
        path: &Path,
        cap: Capacity,
        on_mismatch: OnMismatch,
        clock: Clock,
    ) -> Result<Writer<S>, OpenError> {
        if cap.campaigns == 0
            || cap.partners == 0
            || cap.campaigns > MAX_ROWS
            || cap.partners > MAX_ROWS
        {
            return Err(OpenError::Capacity {
                campaigns: cap.campaigns,
                partners: cap.partners,
            });
        }
        check_directory(path)?;
        let lock = take_lock(path)?;
        // Not through a symlink: the writer opens only a file at this very path.
        let existing = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(file) => Some(Table::<S>::map(file, path, true)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(path, "open", e)),
        };
        let now_unix_ms = clock.now_unix_ms();
        let table = match existing {
            None => create::<S>(path, cap, None, now_unix_ms)?,
            Some(Ok(old)) if old.cap == cap => old,
            Some(Ok(old)) => create::<S>(path, cap, Some(&old), now_unix_ms)?,
            Some(Err(e)) if on_mismatch == OnMismatch::Refuse => return Err(e),
            Some(Err(_)) => create::<S>(path, cap, None, now_unix_ms)?,
        };
        table
            .header()
            .writer_pid
            .store(std::process::id(), Ordering::Relaxed);
        let mut writer = Writer {
            table,
            _lock: lock,
            campaign_rows: HashMap::new(),
            partner_rows: HashMap::new(),
            clock,
        };
        writer.index_keys();
        writer.heartbeat();
        Ok(writer)
    }

    fn index_keys(&mut self) {
        self.campaign_rows = index(self.table.campaigns().iter().map(|r| r.key.get()));
        self.partner_rows = index(self.table.partners().iter().map(|r| r.key.get()));
    }

    /// The table, for reading (the writer reads its own rows lock-free too).
    pub fn table(&self) -> &Table<S> {
        &self.table
    }

    pub fn campaign_row(&self, key: &str) -> Option<usize> {
        self.campaign_rows.get(key).copied()
    }

    pub fn partner_row(&self, key: &str) -> Option<usize> {
        self.partner_rows.get(key).copied()
    }

    /// Writes the campaign row keyed `key`, adding the row if it is new.
    pub fn put_campaign(
        &mut self,
        key: &str,
        value: &<S::Campaign as Payload>::Value,
    ) -> Result<usize, WriteError> {
        let header = self.table.header();
        if let Some(&row) = self.campaign_rows.get(key) {
            self.table.campaigns()[row].cell.write(value);
            bump(header);
            return Ok(row);
        }
        let rows = self.table.campaign_section();
        let row = append(header, &header.campaigns_used, rows, key, "campaign", value)?;
        self.campaign_rows.insert(key.to_string(), row);
        Ok(row)
    }

    /// Writes the partner row keyed `key`, adding the row if it is new.
    pub fn put_partner(
        &mut self,
        key: &str,
        value: &<S::Partner as Payload>::Value,
    ) -> Result<usize, WriteError> {
        let header = self.table.header();
        if let Some(&row) = self.partner_rows.get(key) {
            self.table.partners()[row].cell.write(value);
            bump(header);
            return Ok(row);
        }
        let rows = self.table.partner_section();
        let row = append(header, &header.partners_used, rows, key, "partner", value)?;
        self.partner_rows.insert(key.to_string(), row);
        Ok(row)
    }

    /// Says the writer is alive (the agent calls this every second).
    pub fn heartbeat(&self) {
        self.table
            .header()
            .heartbeat_unix_ms
            .store(self.clock.now_unix_ms(), Ordering::Relaxed);
    }
}

impl<S: TableSpec> Drop for Writer<S> {
    fn drop(&mut self) {
        self.table.header().writer_pid.store(0, Ordering::Relaxed);
    }
}

/// Adds a row: key and first value into the next free row of `rows` (the whole
/// section), then `used` is published.
fn append<P: Payload>(
    header: &Header,
    used: &core::sync::atomic::AtomicU32,
    rows: &[Row<P>],
    key: &str,
    section: &'static str,
    value: &P::Value,
) -> Result<usize, WriteError> {
    let key_buf = KeyBuf::new(key).ok_or_else(|| WriteError::BadKey { key: key.into() })?;
    // Relaxed: only the writer stores `used`.
    let next = used.load(Ordering::Relaxed) as usize;
    let Some(row) = rows.get(next) else {
        return Err(WriteError::Full {
            section,
            capacity: rows.len() as u32,
        });
    };
    row.key.set(&key_buf);
    row.cell.write(value);
    // Release: a reader that Acquires `used` past this row sees its key and value.
    used.store(next as u32 + 1, Ordering::Release);
    bump(header);
    Ok(next)
}

/// Tells pollers something changed (after the write it announces).
pub(super) fn bump(header: &Header) {
    let g = header.generation.load(Ordering::Relaxed);
    header.generation.store(g + 1, Ordering::Release);
}

fn index(keys: impl Iterator<Item = KeyBuf>) -> HashMap<String, usize> {
    keys.enumerate()
        .map(|(i, k)| (k.as_str().to_string(), i))
        .collect()
}

/// Builds a table under a temporary name (copying `from`'s rows when migrating) and
/// renames it over `path`.
fn create<S: TableSpec>(
    path: &Path,
    cap: Capacity,
    from: Option<&Table<S>>,
    now_unix_ms: u64,
) -> Result<Table<S>, OpenError> {
    let tmp = temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(TABLE_FILE_MODE)
        .open(&tmp)
        .map_err(|e| io_error(&tmp, "create", e))?;
    let total = sections::<S>(cap).total_bytes as u64;
    file.set_len(total).map_err(|e| io_error(&tmp, "size", e))?;
    let map = Mapping::new(&file, total as usize, true, &tmp)?;
    // SAFETY: a fresh, zeroed, page-aligned mapping of `total >= 128` bytes; `Header`
    // is atomics only. Nobody else can have it mapped: it has a private name.
    let header = unsafe { &*map.ptr.as_ptr().cast::<Header>() };
    init_header::<S>(header, cap, now_unix_ms, std::process::id());
    drop(map);
    let table = Table::<S>::map(file, &tmp, true)?;
    if let Some(old) = from {
        copy_rows(old, &table);
    }
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, "rename", e))?;
    Ok(table)
}

/// Copies every readable row `from` has (up to `to`'s capacity) into an unpublished
/// table. A row is unreadable only if a writer rewrote it while we copied, and the
/// caller holds the writer lock, so in practice every row is copied.
fn copy_rows<S: TableSpec>(from: &Table<S>, to: &Table<S>) {
    let header = to.header();
    let used = copy_section(from.campaigns(), to.campaign_section());
    header.campaigns_used.store(used, Ordering::Release);
    let used = copy_section(from.partners(), to.partner_section());
    header.partners_used.store(used, Ordering::Release);
}

fn copy_section<P: Payload>(from: &[Row<P>], to: &[Row<P>]) -> u32 {
    let mut used = 0;
    for src in from {
        let (Ok(value), Some(dst)) = (src.load(), to.get(used)) else {
            continue;
        };
        dst.key.set(&src.key.get());
        dst.cell.write(&value);
        used += 1;
    }
    used as u32
}

fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(std::format!(".new-{}", std::process::id()));
    PathBuf::from(s)
}

/// The lock file of a table.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Takes the exclusive, non-blocking `flock` on `<path>.lock` and writes our pid in it.
fn take_lock(path: &Path) -> Result<File, OpenError> {
    let lock_path = lock_path(path);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(|e| io_error(&lock_path, "open lock", e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_error(&lock_path, "stat lock", e))?;
    check_trusted(&lock_path, &meta, true)?;
    // SAFETY: flock on a descriptor we own and keep open; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(OpenError::Locked {
                lock_path,
                holder_pid: text.trim().parse().ok(),
            });
        }
        return Err(io_error(&lock_path, "flock", err));
    }
    let pid = std::process::id().to_string();
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()));
    written.map_err(|e| io_error(&lock_path, "write lock", e))?;
    Ok(file)
}

/// Refuses a file anyone but its owner may write, and for the writer (`own`) one it
/// does not own: opened through a path, it may be a file another user made first.
fn check_trusted(path: &Path, meta: &std::fs::Metadata, own: bool) -> Result<(), OpenError> {
    let mode = meta.mode() & 0o7777;
    let problem = if mode & 0o022 != 0 {
        std::format!("mode {mode:04o} lets others write it")
    } else if own && meta.uid() != effective_uid() {
        std::format!(
            "owned by uid {}, not by this process's uid {}",
            meta.uid(),
            effective_uid()
        )
    } else {
        return Ok(());
    };
    Err(OpenError::Untrusted {
        path: path.into(),
        problem,
    })
}

/// Creates the table's directory if missing (mode 0755), and refuses one where anyone
/// may replace files: writable by all without the sticky bit (`/dev/shm` and `/tmp`
/// have it, so others can add names there but not remove or rename ours).
fn check_directory(path: &Path) -> Result<(), OpenError> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| io_error(dir, "create directory", e))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| io_error(dir, "stat directory", e))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(OpenError::Untrusted {
            path: dir.into(),
            problem: std::format!("directory mode {mode:04o} lets anyone replace its files"),
        });
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn io_error(path: &Path, op: &'static str, source: io::Error) -> OpenError {
    OpenError::Io {
        path: path.into(),
        op,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::stats::{StatsTable, TotalsValue};
    use crate::table::stats_file::{campaign_reason_names, reason_names};
    use crate::table::strategy::{PartnerLimitValue, StrategyTable, PARTNER_ENABLED};

    use testkit::TempDir;

    const CAP: Capacity = Capacity {
        campaigns: 8,
        partners: 4,
    };

    fn limit(qps: u32) -> PartnerLimitValue {
        PartnerLimitValue {
            qps_limit: qps,
            burst: qps / 10,
            flags: PARTNER_ENABLED,
            ..PartnerLimitValue::default()
        }
        .sealed()
    }

    #[test]
    fn a_reader_sees_rows_the_writer_published() {
        let dir = TempDir::new("publish");
        let path = dir.0.join("strategy");
        let mut w =
            Writer::<StrategyTable>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
        assert_eq!(w.put_partner("exchange-a", &limit(100)).unwrap(), 0);
        let r = Table::<StrategyTable>::open_read(&path).unwrap();
        assert_eq!(r.capacity(), CAP);
        assert_eq!(r.find_partner("exchange-a"), Some(0));
        assert_eq!(r.partners()[0].load().unwrap(), limit(100));
        let g = r.generation();
        w.put_partner("exchange-a", &limit(200)).unwrap();
        assert!(r.generation() > g);
        assert_eq!(r.partners()[0].load().unwrap().qps_limit, 200);
        assert_eq!(
            r.header().writer_pid.load(Ordering::Relaxed),
            std::process::id()
        );
    }

    #[test]
    fn the_header_is_stamped_by_the_writers_clock() {
        let dir = TempDir::new("stamps");
        let path = dir.0.join("strategy");
        const AT: u64 = testkit::MONDAY_10_30_MS;
        let calendar = crate::clock::DrivenClock::at(AT);
        let w = Writer::<StrategyTable>::open(&path, CAP, OnMismatch::Refuse, calendar.clock())
            .unwrap();
        let header = w.table().header();
        let stamps = || {
            (
                header.created_unix_ms.load(Ordering::Relaxed),
                header.heartbeat_unix_ms.load(Ordering::Relaxed),
            )
        };
        assert_eq!(stamps(), (AT, AT));
        calendar.advance_ms(1_500);
        w.heartbeat();
        assert_eq!(stamps(), (AT, AT + 1_500));
    }

    #[test]
    fn a_second_writer_fails_clearly_and_a_restarted_one_keeps_the_rows() {
        let dir = TempDir::new("lock");
        let path = dir.0.join("strategy");
        let mut w =
            Writer::<StrategyTable>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
        w.put_partner("p", &limit(7)).unwrap();
        let second = Writer::<StrategyTable>::open(&path, CAP, OnMismatch::Refuse, Clock::system());
        let Err(err @ OpenError::Locked { holder_pid, .. }) = second else {
            panic!("second writer was not refused");
        };
        assert_eq!(holder_pid, Some(std::process::id()));
        assert!(err.to_string().contains("another writer"), "{err}");
        drop(w);
        let w =
            Writer::<StrategyTable>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
        assert_eq!(w.partner_row("p"), Some(0));
        assert_eq!(w.table().partners()[0].load().unwrap().qps_limit, 7);
    }

    fn open_writer(path: &Path) -> Result<Writer<StrategyTable>, OpenError> {
        Writer::<StrategyTable>::open(path, CAP, OnMismatch::Refuse, Clock::system())
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn untrusted(result: Result<impl Sized, OpenError>) -> String {
        match result {
            Err(err @ OpenError::Untrusted { .. }) => err.to_string(),
            Err(other) => panic!("refused, but not as untrusted: {other}"),
            Ok(_) => panic!("an untrusted file was accepted"),
        }
    }

    /// Another user's file at the table's path, made before the agent started (e.g. in
    /// `/dev/shm`): adopting it would let that user write strategy past every bound.
    #[test]
    fn a_table_another_user_made_is_refused_by_the_writer() {
        if testkit::skip_unless_root(
            "a_table_another_user_made_is_refused_by_the_writer",
            "chown to another user",
        ) {
            return;
        }
        let dir = TempDir::new("foreign");
        let path = dir.0.join("strategy");
        drop(open_writer(&path).unwrap());
        const NOBODY: u32 = 65_534;
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        let message = untrusted(open_writer(&path));
        assert!(message.contains("owned by uid 65534"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        // Readers take it: it is not writable by anyone but its owner.
        assert!(Table::<StrategyTable>::open_read(&path).is_ok());

        // A lock file another user holds (or merely owns) is refused as clearly.
        std::fs::remove_file(&path).unwrap();
        let lock = lock_path(&path);
        std::os::unix::fs::chown(&lock, Some(NOBODY), Some(NOBODY)).unwrap();
        let message = untrusted(open_writer(&path));
        assert!(message.contains(".lock"), "{message}");
        std::fs::remove_file(&lock).unwrap();
        assert!(open_writer(&path).is_ok(), "a clean directory works again");
    }

    #[test]
    fn a_table_others_may_write_is_refused_by_readers_and_the_writer() {
        let dir = TempDir::new("writable");
        let path = dir.0.join("strategy");
        drop(open_writer(&path).unwrap());
        set_mode(&path, 0o666);
        let message = untrusted(Table::<StrategyTable>::open_read(&path));
        assert!(message.contains("mode 0666"), "{message}");
        assert!(
            message.contains("/run/bidder"),
            "says where tables belong: {message}"
        );
        untrusted(open_writer(&path));
        set_mode(&path, 0o644);
        assert!(Table::<StrategyTable>::open_read(&path).is_ok());
    }

    #[test]
    fn a_directory_anyone_may_replace_files_in_is_refused_and_a_missing_one_is_made() {
        let dir = TempDir::new("dirs");
        let open = dir.0.join("open");
        std::fs::create_dir(&open).unwrap();
        set_mode(&open, 0o777);
        let message = untrusted(open_writer(&open.join("strategy")));
        assert!(message.contains("directory mode 0777"), "{message}");
        // With the sticky bit (like /dev/shm) others cannot remove or rename our files.
        set_mode(&open, 0o1777);
        assert!(open_writer(&open.join("strategy")).is_ok());
        let fresh = dir.0.join("run/bidder");
        assert!(open_writer(&fresh.join("strategy")).is_ok());
        let mode = std::fs::metadata(&fresh).unwrap().mode() & 0o7777;
        assert_eq!(mode & 0o022, 0, "made without write for others: {mode:o}");
    }

    #[test]
    fn a_missing_table_is_reported_as_missing() {
        let dir = TempDir::new("missing");
        let err = Table::<StrategyTable>::open_read(&dir.0.join("nope"));
        assert!(matches!(err, Err(OpenError::Missing { .. })));
    }

    #[test]
    fn a_table_of_another_kind_or_version_is_refused() {
        let dir = TempDir::new("mismatch");
        let path = dir.0.join("stats");
        let w =
            Writer::<StatsTable>::open(&path, CAP, OnMismatch::Recreate, Clock::system()).unwrap();
        let err = Table::<StrategyTable>::open_read(&path).err().unwrap();
        assert!(
            matches!(
                err,
                OpenError::Layout {
                    error: LayoutError::Magic { .. },
                    ..
                }
            ),
            "{err}"
        );
        w.table()
            .header()
            .layout_version
            .store(99, Ordering::Relaxed);
        let err = Table::<StatsTable>::open_read(&path).err().unwrap();
        assert!(err.to_string().contains("layout version 99"), "{err}");
        drop(w);
        // The stats writer replaces what it cannot read; the strategy writer refuses.
        let w =
            Writer::<StatsTable>::open(&path, CAP, OnMismatch::Recreate, Clock::system()).unwrap();
        drop(w);
        let strategy = dir.0.join("strategy");
        std::fs::copy(&path, &strategy).unwrap();
        let err =
            Writer::<StrategyTable>::open(&strategy, CAP, OnMismatch::Refuse, Clock::system())
                .err();
        assert!(matches!(err, Some(OpenError::Layout { .. })));
    }

    #[test]
    fn a_stats_table_of_the_previous_layout_is_refused_by_readers_and_replaced_by_the_bidder() {
        let dir = TempDir::new("stats-v5");
        let path = dir.0.join("stats");
        let w =
            Writer::<StatsTable>::open(&path, CAP, OnMismatch::Recreate, Clock::system()).unwrap();
        let header = w.table().header();
        assert_eq!(header.layout_version.load(Ordering::Relaxed), 6);
        // What a bidder from before budget_unavailable left behind.
        header.layout_version.store(5, Ordering::Relaxed);
        drop(w);
        let err = Table::<StatsTable>::open_read(&path).err().unwrap();
        assert!(
            err.to_string().contains(
                "layout version 5, this program reads version 6 (upgrade the older of agent and bidder)"
            ),
            "{err}"
        );
        let w =
            Writer::<StatsTable>::open(&path, CAP, OnMismatch::Recreate, Clock::system()).unwrap();
        assert_eq!(w.table().header().layout_version.load(Ordering::Relaxed), 6);
        // The strategy table keeps its own version (the agent carries its rows across
        // a change of it: agent/src/upgrade.rs).
        let strategy = dir.0.join("strategy");
        let w = Writer::<StrategyTable>::open(&strategy, CAP, OnMismatch::Refuse, Clock::system())
            .unwrap();
        assert_eq!(w.table().header().layout_version.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = TempDir::new("truncated");
        let path = dir.0.join("strategy");
        let w =
            Writer::<StrategyTable>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
        drop(w);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(4096).unwrap();
        let err = Table::<StrategyTable>::open_read(&path).err().unwrap();
        assert!(matches!(
            err,
            OpenError::Layout {
                error: LayoutError::Truncated { .. },
                ..
            }
        ));
    }

    #[test]
    fn a_new_capacity_migrates_rows_into_a_new_file() {
        let dir = TempDir::new("migrate");
        let path = dir.0.join("strategy");
        let mut w =
            Writer::<StrategyTable>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
        w.put_partner("a", &limit(1)).unwrap();
        w.put_partner("b", &limit(2)).unwrap();
        let old_id = w.table().file_id();
        drop(w);
        let bigger = Capacity {
            campaigns: 16,
            partners: 16,
        };
        let w = Writer::<StrategyTable>::open(&path, bigger, OnMismatch::Refuse, Clock::system())
            .unwrap();
        assert_ne!(w.table().file_id(), old_id);
        assert_eq!(w.table().capacity(), bigger);
        assert_eq!(w.partner_row("b"), Some(1));
        assert_eq!(w.table().partners()[1].load().unwrap(), limit(2));
    }

    #[test]
    fn a_full_section_and_a_bad_key_are_errors_not_panics() {
        let dir = TempDir::new("full");
        let path = dir.0.join("strategy");
        let mut w =
            Writer::<StrategyTable>::open(&path, CAP, OnMismatch::Refuse, Clock::system()).unwrap();
        for i in 0..CAP.partners {
            w.put_partner(&std::format!("p{i}"), &limit(i)).unwrap();
        }
        assert_eq!(
            w.put_partner("one-more", &limit(1)),
            Err(WriteError::Full {
                section: "partner",
                capacity: CAP.partners
            })
        );
        let long = std::string::String::from_utf8(std::vec![b'x'; 65]).unwrap();
        assert!(matches!(
            w.put_partner(&long, &limit(1)),
            Err(WriteError::BadKey { .. })
        ));
        assert!(matches!(
            w.put_partner("", &limit(1)),
            Err(WriteError::BadKey { .. })
        ));
    }

    #[test]
    fn stats_reason_names_round_trip() {
        let dir = TempDir::new("reasons");
        let path = dir.0.join("stats");
        let mut w =
            Writer::<StatsTable>::open(&path, CAP, OnMismatch::Recreate, Clock::system()).unwrap();
        w.put_reason_names(["invalid_request", "partner_refused"]);
        w.put_campaign_reason_names(["paused", "paced", "below_floor"]);
        let totals = TotalsValue {
            requests: 5,
            ..TotalsValue::default()
        }
        .sealed();
        w.put_totals(&totals);
        let r = Table::<StatsTable>::open_read(&path).unwrap();
        assert_eq!(reason_names(&r), ["invalid_request", "partner_refused"]);
        assert_eq!(
            campaign_reason_names(&r),
            ["paused", "paced", "below_floor"]
        );
        assert_eq!(r.prefix().totals.load().unwrap(), totals);
    }
}
