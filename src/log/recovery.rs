//! Recovery: reading a log directory back and deciding what it holds.
//!
//! This module owns the rules that tell a torn write from corruption. It only reads; the
//! repairs it asks for (zeroing a torn tail, deleting temporary files) are done by
//! [`crate::log::Log::open`], so that `ringraft log verify` can run the same scan on a live or
//! damaged directory without changing it.
//!
//! The rules:
//! * Segment files must be named `<20-digit first index>.seg` and form one contiguous run of
//!   indexes: a gap (a missing file), an overlap (a duplicate) or a file whose first record does
//!   not hold the index of its name is an error that names the file.
//! * Inside a segment, records follow each other; zeros pad each group write to a 4096-byte
//!   boundary, and a zero header on a boundary ends the data.
//! * A bad record (or non-zero garbage) after which no valid record follows, in the *last*
//!   segment, is a torn write: the writer never reported it durable, so it is dropped (zeroed)
//!   and reported in [`TornTail`]. A group write in one segment is synced before any write to the
//!   next, which is why a torn write can only be in the last segment.
//! * A bad record followed by a valid one, or any bad record in an earlier segment, is
//!   corruption of data that may have been acknowledged: the log refuses to open and the error
//!   names the file and byte offset.
//! * A recycled segment (see `segment`) starts with a marker block and holds stale records of
//!   an earlier life after its data. Its data ends at a zero block (the writer leaves one after
//!   every group write) or at a stale record, one whose indexes all lie below the file's name;
//!   the bytes after that are not data and, unlike in a fresh segment, are not garbage either. The
//!   other rules are the same: a bad record at the end is a torn write in the last segment and
//!   corruption elsewhere, and a valid record *of this segment* (indexes at or above its name)
//!   after the end is corruption. A torn write in a recycled segment is dropped by zeroing up to
//!   the next block boundary and one block more, which restores the zero block at the end.
//! * An intact record (its CRC checks) of a record format version this build does not read
//!   means the log was written by another version of ringraft: the log refuses to open with a
//!   message naming both versions, rather than take it for a torn write or corruption.

use std::fs;
use std::path::{Path, PathBuf};

use crate::core::Index;
use crate::log::error::StorageError;
use crate::log::io::{align_up, BLOCK_BYTES};
use crate::log::record::{
    check_record, foreign_version, peek_header, RECORD_HEADER_BYTES, RECORD_MAGIC, RECORD_VERSION,
};
use crate::log::segment::{
    is_recycled, parse_segment_name, RecordLoc, SegmentInfo, SEGMENT_SUFFIX, TEMP_SUFFIX,
};

/// A torn write found at the tail of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Offset of the first byte that is not part of a valid record.
    pub offset: u64,
    /// End (exclusive, block aligned) of the non-zero bytes after `offset`.
    pub garbage_end: u64,
    /// What was found at `offset`.
    pub reason: String,
}

/// What a directory holds.
#[derive(Debug)]
pub struct Scan {
    /// Segments in index order, contiguous.
    pub segments: Vec<SegmentInfo>,
    /// A torn write at the tail of the last segment, to be zeroed.
    pub torn_tail: Option<TornTail>,
    /// Leftover temporary files, to be deleted.
    pub temp_files: Vec<PathBuf>,
}

/// Reads every segment in `dir` and checks the rules above. Does not modify anything.
pub fn scan_dir(dir: &Path) -> Result<Scan, StorageError> {
    let (named, temp_files) = list_dir(dir)?;
    let mut segments: Vec<SegmentInfo> = Vec::with_capacity(named.len());
    let mut torn_tail = None;
    for (position, (first_index, path)) in named.iter().enumerate() {
        if let Some(previous) = segments.last() {
            check_continues(previous, *first_index, path)?;
        }
        let is_last = position + 1 == named.len();
        let (info, torn) = scan_segment(path, *first_index, is_last)?;
        torn_tail = torn.or(torn_tail);
        segments.push(info);
    }
    Ok(Scan {
        segments,
        torn_tail,
        temp_files,
    })
}

/// Segment files by first index, and temporary files.
type Listing = (Vec<(Index, PathBuf)>, Vec<PathBuf>);

fn list_dir(dir: &Path) -> Result<Listing, StorageError> {
    let mut named = Vec::new();
    let mut temp_files = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| StorageError::io("listing log directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("listing log directory", dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(TEMP_SUFFIX) {
            temp_files.push(path);
        } else if let Some(first_index) = parse_segment_name(&name) {
            named.push((first_index, path));
        } else if name.contains(SEGMENT_SUFFIX) {
            return Err(StorageError::Layout {
                file: path,
                reason: "misnamed segment file: segments are named <20-digit first index>.seg"
                    .into(),
            });
        }
    }
    named.sort();
    Ok((named, temp_files))
}

fn check_continues(
    previous: &SegmentInfo,
    first_index: Index,
    path: &Path,
) -> Result<(), StorageError> {
    let expected = previous.last_index() + 1;
    if first_index == expected {
        return Ok(());
    }
    let reason = if first_index > expected {
        format!(
            "gap: {} ends at index {}, so indexes {expected}..{} are missing (a segment file is missing or renamed)",
            previous.path.display(),
            previous.last_index(),
            first_index - 1
        )
    } else {
        format!(
            "overlap: starts at index {first_index} but {} already holds up to {} (duplicated or misnamed segment)",
            previous.path.display(),
            previous.last_index()
        )
    };
    Err(StorageError::Layout {
        file: path.to_path_buf(),
        reason,
    })
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Where the valid records of a segment end, and why.
enum End {
    /// Clean: end of file or a zero header on a block boundary.
    Clean,
    /// A record that does not check.
    Bad(String),
    /// A stale record of a recycled segment's earlier life.
    Stale,
}

fn scan_segment(
    path: &Path,
    first_index: Index,
    is_last: bool,
) -> Result<(SegmentInfo, Option<TornTail>), StorageError> {
    let buf = fs::read(path).map_err(|e| StorageError::io("reading segment", path, e))?;
    let recycled = is_recycled(&buf);
    let mut records: Vec<RecordLoc> = Vec::new();
    let mut expected = first_index;
    let mut pos = if recycled { BLOCK_BYTES } else { 0 };
    let end = loop {
        if pos >= buf.len() {
            break End::Clean;
        }
        let block_end = (align_up(pos as u64 + 1) as usize).min(buf.len());
        if !pos.is_multiple_of(BLOCK_BYTES) && all_zero(&buf[pos..block_end]) {
            pos = block_end; // padding after a group write
            continue;
        }
        if pos.is_multiple_of(BLOCK_BYTES)
            && all_zero(&buf[pos..(pos + RECORD_HEADER_BYTES).min(buf.len())])
        {
            break End::Clean;
        }
        match check_record(&buf[pos..]) {
            Ok(header) if recycled && header.last_index() < first_index => break End::Stale,
            Ok(header) => {
                if header.first_index != expected {
                    return Err(misplaced(
                        path,
                        pos,
                        first_index,
                        expected,
                        header.first_index,
                        records.is_empty(),
                    ));
                }
                records.push(RecordLoc {
                    first_index: header.first_index,
                    count: header.count,
                    term: header.term,
                    offset: pos as u64,
                    bytes: header.total_bytes,
                });
                expected = header.last_index() + 1;
                pos += header.total_bytes as usize;
            }
            Err(e) => {
                if let Some(found) = foreign_version(&buf[pos..]) {
                    return Err(StorageError::FormatVersion {
                        file: path.to_path_buf(),
                        offset: pos as u64,
                        found,
                        expected: RECORD_VERSION,
                    });
                }
                break End::Bad(e.to_string());
            }
        }
    };
    let write_offset = align_up(pos as u64);
    let info = SegmentInfo {
        first_index,
        path: path.to_path_buf(),
        records,
        write_offset,
        file_bytes: buf.len() as u64,
        recycled,
    };
    let tail = Tail {
        pos,
        end,
        first_index,
        recycled,
        is_last,
    };
    let torn = classify_tail(&buf, tail, path)?;
    Ok((info, torn))
}

fn misplaced(
    path: &Path,
    pos: usize,
    name_index: Index,
    expected: Index,
    found: Index,
    first: bool,
) -> StorageError {
    if first {
        StorageError::Layout {
            file: path.to_path_buf(),
            reason: format!("misnamed segment: its name says index {name_index} but its first record holds index {found}"),
        }
    } else {
        StorageError::Corrupt {
            file: path.to_path_buf(),
            offset: pos as u64,
            reason: format!("record holds index {found} where {expected} was expected"),
        }
    }
}

/// Where and how the valid records of one segment ended.
struct Tail {
    /// Offset of the first byte after the last valid record.
    pos: usize,
    end: End,
    /// The index in the file name.
    first_index: Index,
    recycled: bool,
    is_last: bool,
}

/// Decides what the bytes after the last valid record are.
fn classify_tail(buf: &[u8], tail: Tail, path: &Path) -> Result<Option<TornTail>, StorageError> {
    let pos = tail.pos;
    let stale_below = if tail.recycled { tail.first_index } else { 0 };
    let last_nonzero = buf.iter().rposition(|&b| b != 0);
    let garbage = matches!(last_nonzero, Some(at) if at >= pos);
    let reason = match tail.end {
        End::Bad(reason) => reason,
        End::Clean | End::Stale if !garbage => return Ok(None),
        // After the data of a recycled segment come stale bytes; only a record of this segment
        // there would mean lost data.
        End::Clean | End::Stale if tail.recycled => {
            return match valid_record_after(buf, pos, stale_below) {
                Some(valid_at) => Err(StorageError::Corrupt {
                    file: path.to_path_buf(),
                    offset: pos as u64,
                    reason: format!(
                        "the records end here but a valid record of this segment follows at offset {valid_at}"
                    ),
                }),
                None => Ok(None),
            };
        }
        End::Clean | End::Stale => "non-zero bytes after the end of the records".to_string(),
    };
    if let Some(valid_at) = valid_record_after(buf, pos, stale_below) {
        return Err(StorageError::Corrupt {
            file: path.to_path_buf(),
            offset: pos as u64,
            reason: format!("{reason}, followed by a valid record at offset {valid_at}"),
        });
    }
    if !tail.is_last {
        return Err(StorageError::Corrupt {
            file: path.to_path_buf(),
            offset: pos as u64,
            reason: format!("{reason}, in a segment that is not the last one"),
        });
    }
    let garbage_end = if tail.recycled {
        // Stale bytes follow; zero the torn record's first blocks and leave a zero block.
        (align_up(pos as u64) + BLOCK_BYTES as u64).min(buf.len() as u64)
    } else {
        last_nonzero.map_or(pos as u64, |at| align_up(at as u64 + 1))
    };
    Ok(Some(TornTail {
        file: path.to_path_buf(),
        offset: pos as u64,
        garbage_end,
        reason,
    }))
}

/// Offset of a valid record of this segment (one whose indexes are not all below `stale_below`:
/// the name of a recycled segment, 0 for a fresh one) after a bad
/// one at `pos`: right after it (if its length field is plausible), or at any later block
/// boundary (where every group write starts).
fn valid_record_after(buf: &[u8], pos: usize, stale_below: Index) -> Option<usize> {
    let of_this_segment =
        |at: usize| matches!(check_record(&buf[at..]), Ok(h) if h.last_index() >= stale_below);
    if let Ok(total) = peek_header(&buf[pos..]) {
        let next = pos + total as usize;
        if next < buf.len() && of_this_segment(next) {
            return Some(next);
        }
    }
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut at = align_up(pos as u64 + 1) as usize;
    while at + RECORD_HEADER_BYTES <= buf.len() {
        if buf[at..at + 4] == magic && of_this_segment(at) {
            return Some(at);
        }
        at += BLOCK_BYTES;
    }
    None
}
