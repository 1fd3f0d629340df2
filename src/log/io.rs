//! Aligned buffers and the log's flush mode: every group write goes to a segment opened with
//! `O_DIRECT | O_DSYNC`, so that one write is durable when it completes (an `O_DSYNC` write is an
//! fdatasync of what it wrote: ext4 flushes the device cache before completing it) and no
//! separate fdatasync is issued. The node issues that write on its executor's io_uring (see
//! `runtime::disk`); [`write_durable`] is the same write done by a blocking call, for callers
//! without an executor (offline tools, tests of the log alone).
//!
//! This module owns the only `unsafe` of the log room: a 4096-aligned heap buffer (O_DIRECT needs
//! aligned memory).

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// Alignment and size unit of every log write (the O_DIRECT logical block size on the targets).
pub const BLOCK_BYTES: usize = 4096;

/// Rounds `n` up to a multiple of [`BLOCK_BYTES`].
pub fn align_up(n: u64) -> u64 {
    n.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64
}

/// A growable byte buffer whose memory starts on a [`BLOCK_BYTES`] boundary.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
}

// The buffer owns its memory exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer holding at least `capacity` bytes before it grows.
    pub fn with_capacity(capacity: usize) -> AlignedBuf {
        let capacity = align_up(capacity.max(BLOCK_BYTES) as u64) as usize;
        let layout = Layout::from_size_align(capacity, BLOCK_BYTES).expect("aligned layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf {
            ptr,
            len: 0,
            capacity,
        }
    }

    /// A buffer without memory (nothing allocated until it grows).
    pub fn empty() -> AlignedBuf {
        AlignedBuf {
            ptr: NonNull::dangling(),
            len: 0,
            capacity: 0,
        }
    }

    /// Bytes it holds before it must grow.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Makes room for `more` bytes after what it holds, growing to exactly that (rounded up to
    /// a block) rather than doubling: for buffers sized up front, like a snapshot's.
    pub fn reserve_exact(&mut self, more: usize) {
        if self.len + more <= self.capacity {
            return;
        }
        self.grow_to(self.len + more);
    }

    /// Empties the buffer, keeping its memory.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn reserve(&mut self, more: usize) {
        if self.len + more <= self.capacity {
            return;
        }
        self.grow_to((self.len + more).max(self.capacity * 2));
    }

    fn grow_to(&mut self, capacity: usize) {
        let mut grown = AlignedBuf::with_capacity(capacity);
        grown.as_mut_spare()[..self.len].copy_from_slice(self.as_slice());
        grown.len = self.len;
        std::mem::swap(self, &mut grown);
    }

    fn as_mut_spare(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid (dangling but aligned when capacity is 0) for `capacity` initialized (zeroed at allocation) bytes and
        // exclusively ours through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }

    /// Appends bytes.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        let len = self.len;
        self.as_mut_spare()[len..len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends zeros up to the next multiple of [`BLOCK_BYTES`].
    pub fn pad_to_block(&mut self) {
        let target = align_up(self.len as u64) as usize;
        self.reserve(target - self.len);
        let len = self.len;
        self.as_mut_spare()[len..target].fill(0);
        self.len = target;
    }

    /// Makes the buffer `len` bytes long, every byte zero, keeping its memory where it can.
    pub fn reset_zeroed(&mut self, len: usize) {
        self.len = 0;
        self.reserve(len);
        self.as_mut_spare()[..len].fill(0);
        self.len = len;
    }

    /// The bytes held, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.as_mut_spare()[..len]
    }

    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.capacity == 0 {
            return; // `empty()`: nothing was allocated.
        }
        let layout = Layout::from_size_align(self.capacity, BLOCK_BYTES).expect("aligned layout");
        // SAFETY: allocated in with_capacity with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// Starts writeback of `[offset, offset + len)` of `file` and waits for it: a pacing step for
/// bulk writes (zeroing a spare segment, saving a snapshot), not a durability point (it flushes
/// neither metadata nor the device cache; the caller's fdatasync does).
///
/// Why: a 64 MiB spare segment or a 100 MiB snapshot left dirty in the page cache reached the
/// device all at once at its final fdatasync, and every log fdatasync queued behind it for
/// 65-290 ms on all three nodes of `3node-1kb` (they share the disk): the run's p99.9. Written
/// back a chunk at a time, a log fdatasync waits at most for one chunk.
pub fn write_back(file: &File, offset: u64, len: u64) {
    // SAFETY: plain syscall on an open fd. A failure here is seen again by the fdatasync that
    // follows every bulk write, which is where it is reported.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        );
    }
}

/// fdatasync, fatal on failure.
pub(crate) fn sync_data(file: &File, path: &Path) {
    if let Err(e) = file.sync_data() {
        panic!(
            "fdatasync of {} failed: {e}; the log cannot know what reached the disk, stopping",
            path.display()
        );
    }
}

/// fsync of a directory (makes creates, renames and deletes durable), fatal on failure.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    if let Err(e) = d.sync_all() {
        panic!("fsync of directory {} failed: {e}; stopping", dir.display());
    }
    Ok(())
}

/// Opens `path` for the log's writes: `O_DIRECT | O_DSYNC`, or `O_DSYNC` alone where the
/// filesystem refuses O_DIRECT (tmpfs). Returns whether O_DIRECT is on.
pub(crate) fn open_for_writes(path: &Path) -> io::Result<(File, bool)> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
    {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DSYNC)
                .open(path)?,
            false,
        )),
        Err(e) => Err(e),
    }
}

/// Writes `buf` at `offset` of a file opened by [`open_for_writes`] and returns once it is
/// durable (the file's `O_DSYNC`), with a blocking call.
pub(crate) fn write_durable(file: &File, offset: u64, buf: &[u8]) -> io::Result<()> {
    file.write_all_at(buf, offset)
}
