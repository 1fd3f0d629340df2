//! Segment files: naming, creation (preallocated and pre-zeroed), and the in-memory map of the
//! records each one holds.
//!
//! A segment is a fixed-size file named by the index of its first entry
//! (`00000000000000000001.seg`, 20 digits). It is created at full size and filled with zeros
//! before it is used, because on ext4 an fdatasync that overwrites written blocks is about twice
//! as fast as one that extends a file or converts unwritten extents, and O_DIRECT writes that
//! extend a file are serialized by the filesystem. Records are packed one after the other inside
//! one group write; every group write starts on a 4096-byte boundary and is padded with zeros to
//! the next one, so that it can be an O_DIRECT write.
//!
//! A segment never holds a gap: the first record's first index equals the name, and each record
//! continues the one before.
//!
//! A segment can also be *recycled*: a purged segment file is renamed to become a later segment
//! instead of being deleted and a fresh one zeroed (zeroing writes every byte twice, and on this
//! VM deleting a file makes ext4 discard its blocks, which the next write must reallocate on the
//! host). A recycled file is already fully written, so fdatasync still only overwrites, but it
//! holds the *stale* records of its earlier life. It says so in its first block, a
//! [`RECYCLED_MAGIC`] marker; its records start at [`BLOCK_BYTES`]. Two rules keep stale records
//! out of the log: a stale record's indexes are all below the file's name (only purged segments
//! are recycled, and a log never again holds indexes below its purge point), so recovery stops at
//! it; and every group write into a recycled segment is followed by one zero block (the next
//! group write overwrites it), so that the data always ends at a zero block there too and a bad
//! record at the end is a torn write, never the middle of a stale one.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::core::{Index, Term};
use crate::log::error::StorageError;
use crate::log::io::{
    align_up, open_for_writes, sync_data, sync_dir, write_back, AlignedBuf, BLOCK_BYTES,
};

/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of files being prepared; they are deleted at open.
pub const TEMP_SUFFIX: &str = ".tmp";
const ZERO_CHUNK_BYTES: usize = 1 << 20;
/// First four bytes of a recycled segment ("RRSG" read as little-endian bytes 'G','S','R','R').
/// It differs from the record magic, so a fresh segment's first record is never taken for it.
pub const RECYCLED_MAGIC: u32 = 0x5252_5347;
/// Version of the recycled-segment marker.
const RECYCLED_VERSION: u16 = 1;

/// The file name of the segment whose first entry is `first_index`.
pub fn segment_file_name(first_index: Index) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

/// The first index a segment file name encodes, or `None` if the name is not exactly 20 digits
/// followed by `.seg`.
pub fn parse_segment_name(name: &str) -> Option<Index> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&i| i >= 1)
}

/// Where one record lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLoc {
    /// Index of its first entry.
    pub first_index: Index,
    /// Entries in it.
    pub count: u32,
    /// Their term.
    pub term: Term,
    /// Byte offset in the segment file.
    pub offset: u64,
    /// Encoded length.
    pub bytes: u32,
}

impl RecordLoc {
    /// Index of its last entry.
    pub fn last_index(&self) -> Index {
        self.first_index + u64::from(self.count) - 1
    }
}

/// What a segment holds, as found by recovery or kept up to date by the writer.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// The index in the file name.
    pub first_index: Index,
    /// The file.
    pub path: PathBuf,
    /// Its records, in index order.
    pub records: Vec<RecordLoc>,
    /// Where the next group write goes (a multiple of 4096).
    pub write_offset: u64,
    /// The file's size.
    pub file_bytes: u64,
    /// Whether the file is a recycled segment (a marker block, then records; stale bytes after
    /// the data instead of zeros).
    pub recycled: bool,
}

impl SegmentInfo {
    /// Index of the last entry, or `first_index - 1` when empty.
    pub fn last_index(&self) -> Index {
        self.records
            .last()
            .map_or(self.first_index - 1, RecordLoc::last_index)
    }

    /// Finds the record holding `index`, if this segment holds it.
    pub fn record_of(&self, index: Index) -> Option<usize> {
        if index < self.first_index || index > self.last_index() {
            return None;
        }
        Some(self.records.partition_point(|r| r.last_index() < index))
    }
}

fn temp_path(dir: &Path, first_index: Index) -> PathBuf {
    dir.join(format!("{}{TEMP_SUFFIX}", segment_file_name(first_index)))
}

/// Creates `dir/<first_index>.seg` at `size_bytes`, zero-filled and durable, with `prefix` (block
/// aligned, may be empty) written at offset 0. The file is prepared under a temporary name and
/// renamed into place, so a crash leaves either no segment or a complete one, and an existing
/// file of that name is replaced atomically.
pub fn create_segment(
    dir: &Path,
    first_index: Index,
    size_bytes: u64,
    prefix: &[u8],
) -> Result<PathBuf, StorageError> {
    let tmp = temp_path(dir, first_index);
    prepare_file(&tmp, size_bytes, prefix)?;
    install_segment(dir, &tmp, first_index)
}

/// Writes a durable, preallocated file of `size_bytes`: `prefix` then zeros. Used for segments
/// and for spare segments prepared ahead of time (whose temporary names recovery deletes).
///
/// The zeros go through the page cache although that costs a CPU for a while: measured with
/// recycling off (batch 256, 64 appenders), zeroing the spare through O_DIRECT made the
/// appends slower (135-173k records/s against 173-217k, three interleaved rounds), because
/// the zero writes then compete with the group writes at the device at full speed.
pub fn prepare_file(tmp: &Path, size_bytes: u64, prefix: &[u8]) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| StorageError::io("creating segment", tmp, e))?;
    // Reserve the blocks first (cheap, and ENOSPC shows up here rather than mid-append).
    // SAFETY: plain syscall on an open fd.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size_bytes as libc::off_t) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(StorageError::io("preallocating segment", tmp, e));
        }
    }
    file.write_all_at(prefix, 0)
        .map_err(|e| StorageError::io("writing segment", tmp, e))?;
    write_zeros(&file, prefix.len() as u64, size_bytes, tmp)?;
    sync_data(&file, tmp);
    Ok(())
}

/// Renames a prepared file to the segment name for `first_index` and makes that durable.
pub fn install_segment(
    dir: &Path,
    tmp: &Path,
    first_index: Index,
) -> Result<PathBuf, StorageError> {
    let path = dir.join(segment_file_name(first_index));
    fs::rename(tmp, &path)
        .map_err(|e| StorageError::io("renaming segment into place", &path, e))?;
    sync_dir(dir).map_err(|e| StorageError::io("syncing directory", dir, e))?;
    Ok(path)
}

/// Writes zeros over `[from, to)` of `file`, not synced. The block-aligned middle goes
/// through O_DIRECT where the filesystem allows it: zeroing a 64 MiB spare through the page cache
/// cost a copy per byte (~4% of the machine on `3node-1kb`, in the spare thread and the kernel)
/// and left the whole file dirty for its fdatasync. Either way the device sees one chunk at a
/// time (O_DIRECT writes are synchronous; buffered chunks are written back one by one, see
/// [`write_back`]), so a log fdatasync never queues behind more than a chunk.
pub fn write_zeros(file: &File, from: u64, to: u64, path: &Path) -> Result<(), StorageError> {
    let direct_from = align_up(from).min(to);
    let direct_to = (to / BLOCK_BYTES as u64 * BLOCK_BYTES as u64).max(direct_from);
    let direct = if direct_to > direct_from {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    } else {
        None
    };
    match direct {
        Some(direct) => {
            write_zeros_buffered(file, from, direct_from, path)?;
            let mut zeros = AlignedBuf::with_capacity(ZERO_CHUNK_BYTES);
            zeros.extend_from_slice(&vec![0u8; ZERO_CHUNK_BYTES]);
            let mut at = direct_from;
            while at < direct_to {
                let n = (direct_to - at).min(ZERO_CHUNK_BYTES as u64) as usize;
                direct
                    .write_all_at(&zeros.as_slice()[..n], at)
                    .map_err(|e| StorageError::io("zero-filling segment", path, e))?;
                at += n as u64;
            }
            write_zeros_buffered(file, direct_to, to, path)
        }
        None => write_zeros_buffered(file, from, to, path),
    }
}

fn write_zeros_buffered(file: &File, from: u64, to: u64, path: &Path) -> Result<(), StorageError> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min((to.saturating_sub(from)) as usize)];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| StorageError::io("zero-filling segment", path, e))?;
        write_back(file, at, n as u64);
        at += n as u64;
    }
    Ok(())
}

/// The first block of a recycled segment: magic, CRC32 of bytes `[8, BLOCK_BYTES)`, version,
/// zeros.
fn recycled_marker() -> AlignedBuf {
    let mut block = [0u8; BLOCK_BYTES];
    block[0..4].copy_from_slice(&RECYCLED_MAGIC.to_le_bytes());
    block[8..10].copy_from_slice(&RECYCLED_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&block[8..]);
    block[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut buf = AlignedBuf::with_capacity(BLOCK_BYTES);
    buf.extend_from_slice(&block);
    buf
}

/// Whether `file_start` (a segment's first bytes) is a valid recycled-segment marker.
pub fn is_recycled(file_start: &[u8]) -> bool {
    file_start.len() >= BLOCK_BYTES && file_start[..BLOCK_BYTES] == *recycled_marker().as_slice()
}

/// Turns a purged segment into a recycled spare: renames it to `spare` (a temporary name, so a
/// crash from here on only leaves a file that the next open deletes), makes that durable, then
/// writes the marker block and one zero block after it (the end of its still empty data).
/// Renaming first matters: a marker written under the segment's own
/// name would, after a crash, hide that segment's first record.
pub fn recycle_segment(dir: &Path, path: &Path, spare: &Path) -> Result<(), StorageError> {
    fs::rename(path, spare).map_err(|e| StorageError::io("renaming segment for reuse", path, e))?;
    sync_dir(dir).map_err(|e| StorageError::io("syncing directory", dir, e))?;
    let (file, _) =
        open_for_writes(spare).map_err(|e| StorageError::io("opening spare segment", spare, e))?;
    let mut head = recycled_marker();
    head.extend_from_slice(&[0u8; BLOCK_BYTES]);
    file.write_all_at(head.as_slice(), 0)
        .map_err(|e| StorageError::io("marking recycled segment", spare, e))?;
    sync_data(&file, spare);
    Ok(())
}

/// Deletes a segment file (the caller syncs the directory).
pub fn remove_segment(path: &Path) -> Result<(), StorageError> {
    fs::remove_file(path).map_err(|e| StorageError::io("deleting segment", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_lookalikes() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_name("00000000000000000001.seg"), Some(1));
        assert_eq!(parse_segment_name("0000000000000000001.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000000.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000001.seg.tmp"), None);
    }

    #[test]
    fn recycled_marker_is_recognized_and_not_a_record() {
        let marker = recycled_marker();
        assert!(is_recycled(marker.as_slice()));
        let mut damaged = marker.as_slice().to_vec();
        damaged[100] ^= 1;
        assert!(!is_recycled(&damaged));
        assert!(!is_recycled(&[0u8; BLOCK_BYTES]));
        assert_ne!(RECYCLED_MAGIC, crate::log::record::RECORD_MAGIC);
    }

    #[test]
    fn write_zeros_clears_exactly_the_range_aligned_or_not() {
        // Unaligned ends take the buffered path, the middle O_DIRECT (on filesystems that have
        // it): every byte of the range becomes zero and nothing outside it changes.
        let dir = std::env::temp_dir().join(format!("ringraft-zeros-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let size = 3 * ZERO_CHUNK_BYTES + 5000;
        for (from, to) in [
            (100u64, size as u64 - 700),
            (0, 8192),
            (4096, 4096),
            (10, 20),
        ] {
            fs::write(&path, vec![0xAB; size]).unwrap();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            write_zeros(&file, from, to, &path).unwrap();
            let bytes = fs::read(&path).unwrap();
            assert_eq!(bytes.len(), size);
            for (i, b) in bytes.iter().enumerate() {
                let inside = (from..to).contains(&(i as u64));
                assert_eq!(
                    *b,
                    if inside { 0 } else { 0xAB },
                    "byte {i} of [{from}, {to})"
                );
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
