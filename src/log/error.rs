//! The log room's error values. Every message says what went wrong and where (file, offset).

use std::path::PathBuf;

use crate::core::Index;
use crate::log::record::{DecodeError, EncodeError};

/// An operating error of the durable log. Broken invariants panic instead, and a failed fsync is
/// fatal (it panics: after a failed fsync the page cache and the disk may disagree, and no retry
/// can tell which pages were lost).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("I/O error while {what} {path}: {source}")]
    Io {
        /// What the log was doing.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record before the tail of the log is damaged: acknowledged data may be lost, so the log
    /// refuses to open rather than drop it. Restore this node from a peer or a backup.
    #[error("corrupt log: {file} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the first bad byte seen.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// Segment files do not form one contiguous run of indexes (missing, overlapping, misnamed or
    /// duplicated files).
    #[error("bad segment layout: {file}: {reason}")]
    Layout {
        /// The offending file.
        file: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Entries given to append cannot be encoded.
    #[error("cannot encode entries: {0}")]
    Encode(#[from] EncodeError),
    /// A record read back failed its check (the disk changed under a running node).
    #[error("record read back from {file} at offset {offset} is invalid: {source}")]
    Decode {
        /// The segment file.
        file: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// Why it is invalid.
        source: DecodeError,
    },
    /// An append does not continue the log.
    #[error("append starts at index {found}, the log continues at {expected}")]
    NotContiguous {
        /// The index the log expects next.
        expected: Index,
        /// The index given.
        found: Index,
    },
    /// A read or truncation asked for indexes the log does not hold.
    #[error("index range [{from}, {to}) is outside the log [{first}, {next})")]
    OutOfRange {
        /// Requested start.
        from: Index,
        /// Requested end (exclusive).
        to: Index,
        /// First index held.
        first: Index,
        /// One past the last index held.
        next: Index,
    },
    /// Options are inconsistent.
    #[error("invalid log options: {0}")]
    Options(String),
    /// The snapshot file is damaged, or a snapshot is larger than its bound; the message names
    /// the file or the bound, and what to do.
    #[error("{0}")]
    Snapshot(String),
    /// A segment holds a record, intact (its CRC checks), in a record format version this build
    /// does not read: the log was written by another version of ringraft. Nothing is dropped.
    #[error("log format: {file} at byte offset {offset} holds a record of format version {found}; this build reads version {expected} only. Run the ringraft version that wrote this log, or start this node with an empty data directory and let it catch up from the cluster")]
    FormatVersion {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// The version found.
        found: u16,
        /// The version this build reads.
        expected: u16,
    },
    /// The hard state file is damaged in both slots.
    #[error("hard state {file} is corrupt in both slots: {reason}")]
    HardStateCorrupt {
        /// The file.
        file: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl StorageError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> StorageError {
        StorageError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
