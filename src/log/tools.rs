//! Offline tools behind `ringraft log verify` and `ringraft log dump`. They only read: a
//! directory can be inspected without the repairs [`crate::log::Log::open`] would make.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use crate::core::{EntryKind, Index};
use crate::log::error::StorageError;
use crate::log::record::decode_batch;
use crate::log::recovery::{scan_dir, TornTail};

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Segment files.
    pub segments: usize,
    /// Valid records.
    pub records: usize,
    /// Entries in them.
    pub entries: u64,
    /// First and last index held, if any entry is.
    pub index_range: Option<(Index, Index)>,
    /// A torn write at the tail, which opening the log would drop.
    pub torn_tail: Option<TornTail>,
    /// The first problem that would stop the log from opening (names the file and offset).
    pub problem: Option<String>,
}

impl VerifyReport {
    /// True when the log would open without dropping or refusing anything.
    pub fn is_clean(&self) -> bool {
        self.problem.is_none() && self.torn_tail.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segments: {}, records: {}, entries: {}",
            self.segments, self.records, self.entries
        )?;
        match self.index_range {
            Some((first, last)) => write!(f, ", indexes {first}..={last}")?,
            None => write!(f, ", no entries")?,
        }
        if let Some(torn) = &self.torn_tail {
            write!(
                f,
                "\ntorn write at {} offset {}: {} (opening the log drops it)",
                torn.file.display(),
                torn.offset,
                torn.reason
            )?;
        }
        if let Some(problem) = &self.problem {
            write!(f, "\nPROBLEM: {problem}")?;
        }
        Ok(())
    }
}

/// Checks every segment and record in `dir` without changing anything.
pub fn verify(dir: &Path) -> VerifyReport {
    let scan = match scan_dir(dir) {
        Ok(scan) => scan,
        Err(e) => {
            return VerifyReport {
                problem: Some(e.to_string()),
                ..VerifyReport::default()
            }
        }
    };
    let records = scan.segments.iter().map(|s| s.records.len()).sum();
    let entries = scan
        .segments
        .iter()
        .flat_map(|s| &s.records)
        .map(|r| u64::from(r.count))
        .sum();
    let first = scan
        .segments
        .iter()
        .flat_map(|s| s.records.first())
        .next()
        .map(|r| r.first_index);
    let last = scan
        .segments
        .iter()
        .rev()
        .flat_map(|s| s.records.last())
        .next()
        .map(|r| r.last_index());
    VerifyReport {
        segments: scan.segments.len(),
        records,
        entries,
        index_range: first.zip(last),
        torn_tail: scan.torn_tail,
        problem: None,
    }
}

/// Writes entries `[from, to)` of the log in `dir` to `out`, one line each: index, term, kind,
/// payload length and the first bytes in hex.
pub fn dump(dir: &Path, from: Index, to: Index, out: &mut dyn Write) -> Result<(), StorageError> {
    let scan = scan_dir(dir)?;
    let write_err = |e| StorageError::io("writing dump output", "<output>", e);
    for segment in &scan.segments {
        let file = File::open(&segment.path)
            .map_err(|e| StorageError::io("opening segment", &segment.path, e))?;
        for loc in segment
            .records
            .iter()
            .filter(|r| r.last_index() >= from && r.first_index < to)
        {
            let mut raw = vec![0u8; loc.bytes as usize];
            file.read_exact_at(&mut raw, loc.offset)
                .map_err(|e| StorageError::io("reading record from", &segment.path, e))?;
            let (_, entries) =
                decode_batch(&Bytes::from(raw)).map_err(|source| StorageError::Decode {
                    file: segment.path.clone(),
                    offset: loc.offset,
                    source,
                })?;
            for entry in entries.iter().filter(|e| e.index >= from && e.index < to) {
                let kind = match entry.kind {
                    EntryKind::Normal => "normal",
                    EntryKind::Noop => "noop",
                    EntryKind::Config => "config",
                };
                let head: String = entry
                    .data
                    .iter()
                    .take(16)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                writeln!(
                    out,
                    "{} term={} {kind} len={} data={head}",
                    entry.index,
                    entry.term,
                    entry.data.len()
                )
                .map_err(write_err)?;
            }
        }
    }
    Ok(())
}

/// Where one valid record of a log directory lies, as [`records`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSpan {
    /// The segment file.
    pub file: std::path::PathBuf,
    /// Byte offset of the record in it.
    pub offset: u64,
    /// Encoded length of the record.
    pub bytes: u32,
    /// Index of its first entry.
    pub first_index: Index,
    /// Index of its last entry.
    pub last_index: Index,
}

/// Every valid record of the log in `dir`, in index order, found by the same scan that opening
/// the log does (a torn tail ends the list). Only reads; for tools and tests that need to point
/// at a record on disk (for example to damage it on purpose).
pub fn records(dir: &Path) -> Result<Vec<RecordSpan>, StorageError> {
    let scan = scan_dir(dir)?;
    Ok(scan
        .segments
        .iter()
        .flat_map(|segment| {
            segment.records.iter().map(|r| RecordSpan {
                file: segment.path.clone(),
                offset: r.offset,
                bytes: r.bytes,
                first_index: r.first_index,
                last_index: r.last_index(),
            })
        })
        .collect())
}
