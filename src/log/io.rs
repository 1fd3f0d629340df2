//! Aligned buffers and the two write paths of the log: io_uring (a write linked to an
//! fdatasync, submitted with one system call) and plain `pwrite` + `fdatasync`.
//!
//! This module owns the only `unsafe` of the log room: a 4096-aligned heap buffer (O_DIRECT needs
//! aligned memory) and handing its pointer to the kernel through io_uring, which is sound because
//! the submitting call waits for both completions before the buffer can be touched again.

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

    /// Empties the buffer, keeping its memory.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    fn reserve(&mut self, more: usize) {
        if self.len + more <= self.capacity {
            return;
        }
        let mut grown = AlignedBuf::with_capacity((self.len + more).max(self.capacity * 2));
        grown.as_mut_spare()[..self.len].copy_from_slice(self.as_slice());
        grown.len = self.len;
        std::mem::swap(self, &mut grown);
    }

    fn as_mut_spare(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for `capacity` initialized (zeroed at allocation) bytes and
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

    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, BLOCK_BYTES).expect("aligned layout");
        // SAFETY: allocated in with_capacity with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// Which system calls the log writes with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring if it can be set up, otherwise `pwrite` (the default).
    #[default]
    Auto,
    /// io_uring only: opening fails with [`crate::log::StorageError::IoUringSetup`] if the
    /// kernel refuses a ring.
    Uring,
    /// `pwrite` + `fdatasync`.
    Pwrite,
}

/// The chosen write path, owned by the single writer of a log.
pub(crate) enum Writer {
    Uring(Box<io_uring::IoUring>),
    Pwrite,
}

impl Writer {
    pub(crate) fn new(mode: IoMode) -> Result<Writer, io::Error> {
        match mode {
            IoMode::Pwrite => Ok(Writer::Pwrite),
            IoMode::Uring => Ok(Writer::Uring(Box::new(io_uring::IoUring::new(8)?))),
            IoMode::Auto => Ok(io_uring::IoUring::new(8)
                .map(|r| Writer::Uring(Box::new(r)))
                .unwrap_or(Writer::Pwrite)),
        }
    }

    pub(crate) fn is_uring(&self) -> bool {
        matches!(self, Writer::Uring(_))
    }

    /// Writes `buf` at `offset` and makes it durable with one fdatasync. A failed fdatasync
    /// panics: see [`crate::log::StorageError`].
    pub(crate) fn write_durable(
        &mut self,
        file: &File,
        offset: u64,
        buf: &[u8],
        path: &Path,
    ) -> io::Result<()> {
        match self {
            Writer::Pwrite => {
                file.write_all_at(buf, offset)?;
                sync_data(file, path);
                Ok(())
            }
            Writer::Uring(ring) => uring_write_sync(ring, file, offset, buf, path),
        }
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

fn uring_write_sync(
    ring: &mut io_uring::IoUring,
    file: &File,
    offset: u64,
    buf: &[u8],
    path: &Path,
) -> io::Result<()> {
    use io_uring::{opcode, squeue, types};
    const WRITE: u64 = 1;
    const SYNC: u64 = 2;
    let fd = types::Fd(file.as_raw_fd());
    let len = u32::try_from(buf.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "write above 4 GiB"))?;
    let write = opcode::Write::new(fd, buf.as_ptr(), len)
        .offset(offset)
        .build()
        .flags(squeue::Flags::IO_LINK)
        .user_data(WRITE);
    let sync = opcode::Fsync::new(fd)
        .flags(types::FsyncFlags::DATASYNC)
        .build()
        .user_data(SYNC);
    // SAFETY: `buf` outlives the operations because we wait for both completions below before
    // returning; the fd stays open for the same reason.
    unsafe {
        let mut sq = ring.submission();
        sq.push(&write)
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        sq.push(&sync)
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    }
    let mut done = 0;
    let mut written: i32 = 0;
    let mut synced: i32 = 0;
    while done < 2 {
        ring.submit_and_wait(2 - done)?;
        for cqe in ring.completion() {
            match cqe.user_data() {
                WRITE => written = cqe.result(),
                _ => synced = cqe.result(),
            }
            done += 1;
        }
    }
    if written < 0 {
        return Err(io::Error::from_raw_os_error(-written));
    }
    if written as usize != buf.len() {
        // A short write: the linked fsync still ran, so finish with the plain path.
        file.write_all_at(&buf[written as usize..], offset + written as u64)?;
        sync_data(file, path);
        return Ok(());
    }
    if synced < 0 {
        panic!(
            "fdatasync of {} failed: {}; the log cannot know what reached the disk, stopping",
            path.display(),
            io::Error::from_raw_os_error(-synced)
        );
    }
    Ok(())
}

/// Opens `path` for O_DIRECT writes, or for ordinary writes where the filesystem refuses
/// O_DIRECT (tmpfs). Returns whether O_DIRECT is on.
pub(crate) fn open_for_writes(path: &Path) -> io::Result<(File, bool)> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Ok((OpenOptions::new().write(true).open(path)?, false))
        }
        Err(e) => Err(e),
    }
}
