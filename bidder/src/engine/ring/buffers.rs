//! Memory the kernel reads or writes: the provided-buffer ring that receives fill, and
//! the pool of (registered) output buffers.
//!
//! All of it is allocated when a worker starts and freed when it ends, after every
//! operation that could touch it has completed. The kernel may write one buffer while we
//! read another, so buffers are reached through raw pointers and handed out as slices of
//! exactly one buffer, never as a slice of the whole region.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// Buffer group id of the receive ring; one group per worker ring.
pub(crate) const RECV_BUFFER_GROUP: u16 = 0;

/// A fixed number of equal, heap-allocated buffers, freed as a whole on drop.
struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

impl Region {
    fn zeroed(len: usize) -> Self {
        let boxed: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        let ptr = NonNull::from(Box::leak(boxed)).cast::<u8>();
        Region { ptr, len }
    }

    /// # Safety
    /// `offset + len <= self.len`, and no `&mut` to the same bytes is alive.
    unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        debug_assert!(offset + len <= self.len);
        // SAFETY: in bounds by the caller's contract; the region lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    /// # Safety
    /// `offset + len <= self.len`, and no other reference to the same bytes is alive,
    /// nor any kernel operation using them.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(offset + len <= self.len);
        // SAFETY: in bounds and unaliased by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: `ptr`/`len` came from `Box::leak` of a boxed slice of this length in
        // `zeroed`, and are dropped once, here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// Buffers lent to connections one at a time: the output buffers responses are
/// written from. (Partial requests live in each connection's own memory, `Conn::input`.)
pub(crate) struct Pool {
    region: Region,
    buf_bytes: usize,
    free: Vec<u32>,
    count: u32,
}

impl Pool {
    pub(crate) fn new(count: u32, buf_bytes: usize) -> Self {
        Pool {
            region: Region::zeroed(count as usize * buf_bytes),
            buf_bytes,
            free: (0..count).rev().collect(),
            count,
        }
    }

    pub(crate) fn take(&mut self) -> Option<u32> {
        self.free.pop()
    }

    pub(crate) fn give(&mut self, idx: u32) {
        assert!(idx < self.count, "buffer index out of range");
        debug_assert!(!self.free.contains(&idx), "buffer returned twice");
        self.free.push(idx);
    }

    /// Whether a buffer can be taken.
    pub(crate) fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Buffers lent out right now.
    pub(crate) fn lent(&self) -> usize {
        self.count as usize - self.free.len()
    }

    #[cfg(test)]
    pub(crate) fn get(&self, idx: u32, len: usize) -> &[u8] {
        assert!(idx < self.count && len <= self.buf_bytes);
        // SAFETY: in bounds (asserted); buffer `idx` is lent to exactly one connection,
        // whose owner asks for it only while no write from it is in flight.
        unsafe { self.region.slice(idx as usize * self.buf_bytes, len) }
    }

    pub(crate) fn get_mut(&mut self, idx: u32) -> &mut [u8] {
        assert!(idx < self.count);
        // SAFETY: in bounds (asserted); `&mut self` excludes other slices from this pool,
        // and callers never ask for a buffer that a kernel operation is using.
        unsafe {
            self.region
                .slice_mut(idx as usize * self.buf_bytes, self.buf_bytes)
        }
    }

    /// Bytes in each buffer.
    pub(crate) fn buf_bytes(&self) -> usize {
        self.buf_bytes
    }

    /// Copies the first `len` bytes of buffer `from` into buffer `to` at offset `at`.
    pub(crate) fn copy(&mut self, from: u32, len: usize, to: u32, at: usize) {
        assert!(from < self.count && to < self.count && from != to);
        assert!(len <= self.buf_bytes && at <= self.buf_bytes - len);
        let base = self.region.ptr.as_ptr();
        // SAFETY: both ranges lie inside the region (asserted) and in different buffers,
        // so they do not overlap; `&mut self` excludes other slices from this pool, and
        // callers copy only between buffers no kernel operation is using.
        unsafe {
            std::ptr::copy_nonoverlapping(
                base.add(from as usize * self.buf_bytes),
                base.add(to as usize * self.buf_bytes + at),
                len,
            );
        }
    }

    /// Start of buffer `idx`, for submitting operations on it.
    pub(crate) fn ptr(&self, idx: u32) -> *const u8 {
        assert!(idx < self.count);
        // SAFETY: the offset is inside the region (asserted).
        unsafe { self.region.ptr.as_ptr().add(idx as usize * self.buf_bytes) }
    }

    /// One iovec per buffer, for `register_buffers` (buffer index = pool index).
    pub(crate) fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.count)
            .map(|i| libc::iovec {
                iov_base: self.ptr(i) as *mut libc::c_void,
                iov_len: self.buf_bytes,
            })
            .collect()
    }
}

/// Page-aligned, zeroed memory for the provided-buffer ring entries, as the kernel
/// requires.
struct RingMemory {
    ptr: NonNull<BufRingEntry>,
    len: usize,
}

impl RingMemory {
    fn map(len: usize) -> io::Result<Self> {
        // SAFETY: anonymous private mapping; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<BufRingEntry>()).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(RingMemory { ptr, len })
    }
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The provided-buffer ring multishot receives take buffers from. We own the tail: a
/// buffer goes back (`recycle`) as soon as its bytes were served or copied.
pub(crate) struct BufRing {
    ring: RingMemory,
    data: Region,
    entries: u16,
    buf_bytes: u32,
    tail: u16,
    /// Buffers completions handed us that we have not recycled yet.
    lent: u16,
}

impl BufRing {
    pub(crate) fn new(entries: u16, buf_bytes: u32) -> io::Result<Self> {
        assert!(entries.is_power_of_two());
        let ring_bytes = (usize::from(entries) * size_of::<BufRingEntry>()).max(page_bytes());
        let mut ring = BufRing {
            ring: RingMemory::map(ring_bytes)?,
            data: Region::zeroed(usize::from(entries) * buf_bytes as usize),
            entries,
            buf_bytes,
            tail: 0,
            lent: 0,
        };
        for bid in 0..entries {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Registers the ring with the kernel as [`RECV_BUFFER_GROUP`].
    pub(crate) fn register(&self, submitter: &io_uring::Submitter<'_>) -> io::Result<()> {
        // SAFETY: the ring memory is mapped for `entries` entries and lives in `self`,
        // which the worker drops only after the ring has no operation left that could
        // take a buffer (see `EventLoop::quiesce`).
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.ring.ptr.as_ptr() as u64,
                self.entries,
                RECV_BUFFER_GROUP,
                0,
            )
        }
    }

    /// Notes that a completion handed us buffer `bid`; it stays ours until recycled.
    pub(crate) fn taken(&mut self, bid: u16) {
        assert!(bid < self.entries && self.lent < self.entries);
        self.lent += 1;
    }

    /// Whether the kernel has (or is about to get back) a buffer to receive into: false
    /// only while we hold every buffer.
    pub(crate) fn has_free(&self) -> bool {
        self.lent < self.entries
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed us.
    pub(crate) fn filled(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.entries && len <= self.buf_bytes as usize);
        // SAFETY: in bounds (asserted); the kernel gave buffer `bid` to us with this
        // completion and will not touch it until we recycle it.
        unsafe {
            self.data
                .slice(usize::from(bid) * self.buf_bytes as usize, len)
        }
    }

    /// Gives buffer `bid` back to the kernel.
    pub(crate) fn recycle(&mut self, bid: u16) {
        assert!(bid < self.entries && self.lent > 0);
        self.lent -= 1;
        self.push(bid);
        self.publish();
    }

    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        let addr = self.data.ptr.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_bytes);
        // SAFETY: `slot < entries`, inside the mapping; the kernel reads entries only
        // between the head and the published tail, and this slot is past the tail.
        let entry = unsafe { &mut *self.ring.ptr.as_ptr().add(slot) };
        entry.set_addr(addr);
        entry.set_len(self.buf_bytes);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in entry 0 of our mapping, is 2-byte aligned, and
        // is written only by us; the kernel reads it, so the store is atomic and Release
        // (entries written before it become visible first).
        let tail = unsafe { &*BufRingEntry::tail(self.ring.ptr.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

fn page_bytes() -> usize {
    // SAFETY: sysconf with a valid name has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_lends_each_buffer_once() {
        let mut pool = Pool::new(3, 8);
        let taken: Vec<u32> = std::iter::from_fn(|| pool.take()).collect();
        assert_eq!(taken.len(), 3);
        assert_eq!(pool.lent(), 3);
        pool.get_mut(taken[1]).copy_from_slice(b"abcdefgh");
        assert_eq!(pool.get(taken[1], 3), b"abc");
        assert_eq!(pool.get(taken[0], 8), [0u8; 8]);
        pool.give(taken[1]);
        assert_eq!(pool.take(), Some(taken[1]));
    }
}
