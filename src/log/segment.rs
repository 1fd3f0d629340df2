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

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::core::{Index, Term};
use crate::log::error::StorageError;
use crate::log::io::{sync_data, sync_dir};

/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of files being prepared; they are deleted at open.
pub const TEMP_SUFFIX: &str = ".tmp";
const ZERO_CHUNK_BYTES: usize = 1 << 20;

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
}

impl SegmentInfo {
    /// Index of the last entry, or `first_index - 1` when empty.
    pub fn last_index(&self) -> Index {
        self.records.last().map_or(self.first_index - 1, RecordLoc::last_index)
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
pub fn create_segment(dir: &Path, first_index: Index, size_bytes: u64, prefix: &[u8]) -> Result<PathBuf, StorageError> {
    let tmp = temp_path(dir, first_index);
    let path = dir.join(segment_file_name(first_index));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StorageError::io("creating segment", &tmp, e))?;
    // Reserve the blocks first (cheap, and ENOSPC shows up here rather than mid-append).
    // SAFETY: plain syscall on an open fd.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size_bytes as libc::off_t) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(StorageError::io("preallocating segment", &tmp, e));
        }
    }
    file.write_all_at(prefix, 0).map_err(|e| StorageError::io("writing segment", &tmp, e))?;
    write_zeros(&file, prefix.len() as u64, size_bytes, &tmp)?;
    sync_data(&file, &tmp);
    fs::rename(&tmp, &path).map_err(|e| StorageError::io("renaming segment into place", &path, e))?;
    sync_dir(dir).map_err(|e| StorageError::io("syncing directory", dir, e))?;
    Ok(path)
}

/// Writes zeros over `[from, to)` of `file` (not synced).
pub fn write_zeros(file: &File, from: u64, to: u64, path: &Path) -> Result<(), StorageError> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(|e| StorageError::io("zero-filling segment", path, e))?;
        at += n as u64;
    }
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
}
