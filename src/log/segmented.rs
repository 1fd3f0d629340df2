//! [`Log`]: the durable, segmented log of one node, with synchronous operations.
//!
//! It owns the segment files of one directory. A group of appends becomes one aligned write
//! (O_DIRECT where the filesystem allows it) that is durable when it completes (`O_DSYNC`):
//! [`Log::prepare_append`] lays the group out and [`PreparedAppend::fill`] copies its records
//! into the caller's aligned buffer, the caller writes it (the node on its executor's io_uring,
//! see `runtime::disk`), and [`Log::complete_append`] records it. That is the log's one write
//! path; [`Log::append_records`] runs the same three steps with a blocking write, for callers
//! without an executor.
//!
//! Truncation and purging only ever delete whole segment files, rename them away to a temporary
//! name (a purged segment kept for reuse), or replace one atomically (prepared under a temporary
//! name, then renamed), so a crash in the middle of either leaves a contiguous log: the old one
//! or the new one, or for a multi-file change something in between that still holds a
//! contiguous prefix-closed run of the old entries.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::core::{Entry, Index, Term};
use crate::log::error::StorageError;
use crate::log::io::{
    align_up, open_for_writes, sync_data, sync_dir, write_durable, AlignedBuf, BLOCK_BYTES,
};
use crate::log::record::{decode_batch, encode_records, EncodedRecord, RECORD_BYTES_MAX};
use crate::log::recovery::{scan_dir, TornTail};
use crate::log::segment::{
    create_segment, install_segment, prepare_file, recycle_segment, remove_segment, write_zeros,
    RecordLoc, SegmentInfo, TEMP_SUFFIX,
};

/// Smallest segment size accepted.
pub const SEGMENT_BYTES_MIN: u64 = 16 << 10;
/// Largest segment size accepted (recovery reads one whole segment into memory).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;

/// How a log is laid out and written.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Size of every segment file, a multiple of 4096 in
    /// [`SEGMENT_BYTES_MIN`, `SEGMENT_BYTES_MAX`]. Default 64 MiB.
    pub segment_bytes: u64,
    /// Keep one zeroed spare segment prepared by a helper thread, so that starting a new
    /// segment is a rename rather than a stall of the writer while 64 MiB of zeros are written.
    pub prepare_spare: bool,
    /// Most purged segments kept for reuse as later segments (see `segment`: a recycled file
    /// needs no zeroing and is never deleted, so ext4 neither discards nor reallocates its
    /// blocks). Purged segments beyond this are deleted. 0 turns recycling off. Default 4.
    pub recycled_segments_max: usize,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            segment_bytes: 64 << 20,
            prepare_spare: true,
            recycled_segments_max: 4,
        }
    }
}

impl LogOptions {
    fn validate(&self) -> Result<(), StorageError> {
        let s = self.segment_bytes;
        if !s.is_multiple_of(BLOCK_BYTES as u64)
            || !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&s)
        {
            return Err(StorageError::Options(format!(
                "segment_bytes {s} must be a multiple of {BLOCK_BYTES} in [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]"
            )));
        }
        Ok(())
    }

    /// Largest record this log stores: a record must fit in one segment after the marker block
    /// of a recycled segment.
    pub fn record_bytes_max(&self) -> usize {
        RECORD_BYTES_MAX.min(self.segment_bytes as usize - BLOCK_BYTES)
    }
}

/// What [`Log::open`] found and repaired.
#[derive(Clone, Debug)]
pub struct OpenReport {
    /// Segment files in use.
    pub segments: usize,
    /// First index held.
    pub first_index: Index,
    /// Last index held (`first_index - 1` when empty).
    pub last_index: Index,
    /// A torn write at the tail that was dropped, if any.
    pub torn_tail: Option<TornTail>,
    /// Temporary files of interrupted segment creations that were deleted.
    pub removed_temp_files: Vec<PathBuf>,
    /// Whether writes bypass the page cache (O_DIRECT).
    pub o_direct: bool,
}

/// A group write prepared by [`Log::prepare_append`], to be written by the caller and then
/// handed back to [`Log::complete_append`].
#[derive(Debug)]
#[must_use = "a prepared append must be written and completed"]
pub struct PreparedAppend {
    /// The active segment's file.
    pub path: PathBuf,
    /// [`Log::active_file_generation`] when it was prepared.
    pub file_generation: u64,
    /// Where the bytes go in the file (block aligned).
    pub offset: u64,
    locs: Vec<RecordLoc>,
    /// The records' bytes, in order (shared, not copied: [`PreparedAppend::fill`] copies them
    /// once, into the caller's aligned buffer).
    records: Vec<Bytes>,
    /// Bytes of records and padding, without the zero block of a recycled segment.
    data_bytes: u64,
    /// Bytes of the whole write: `data_bytes`, plus one zero block in a recycled segment.
    write_bytes: usize,
}

impl PreparedAppend {
    /// Index of the last entry it writes.
    pub fn last_index(&self) -> Index {
        self.locs.last().map_or(0, RecordLoc::last_index)
    }

    /// How many of the records given to [`Log::prepare_append`] it writes (a prefix of them).
    pub fn record_count(&self) -> usize {
        self.locs.len()
    }

    /// Length of the write, a multiple of [`BLOCK_BYTES`].
    pub fn write_bytes(&self) -> usize {
        self.write_bytes
    }

    /// Copies the write's bytes into `out` (exactly [`PreparedAppend::write_bytes`] long,
    /// aligned for O_DIRECT by the caller): the records one after the other, zeros after them.
    /// This is the one copy of a record on its way to the disk.
    pub fn fill(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.write_bytes, "fill needs write_bytes()");
        let mut at = 0;
        for record in &self.records {
            out[at..at + record.len()].copy_from_slice(record);
            at += record.len();
        }
        out[at..].fill(0);
    }
}

struct Segment {
    info: SegmentInfo,
    read: File,
}

/// The durable log of one node. See the module documentation.
pub struct Log {
    dir: PathBuf,
    options: LogOptions,
    /// Contiguous, in index order, never empty.
    segments: Vec<Segment>,
    /// Write handle on the last segment.
    active: File,
    /// Bumped whenever `active` is replaced (see [`Log::active_file_generation`]).
    active_generation: u64,
    /// A prepared append is waiting for [`Log::complete_append`].
    prepared: bool,
    o_direct: bool,
    /// The aligned buffer of [`Log::append_records`], reused.
    buf: AlignedBuf,
    /// The spare segment being prepared, if any.
    spare: Option<JoinHandle<Result<PathBuf, StorageError>>>,
    /// Purged segments ready for reuse (marked, under temporary names), at most
    /// `options.recycled_segments_max`.
    recycled: Vec<PathBuf>,
    /// Counter for the temporary names of spare and recycled files.
    spares_started: u64,
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering from a crash: a torn write at the
    /// tail is zeroed and reported; corruption or a broken segment layout is an error naming the
    /// file and offset.
    pub fn open(dir: &Path, options: LogOptions) -> Result<(Log, OpenReport), StorageError> {
        options.validate()?;
        create_dir_durably(dir)?;
        let scan = scan_dir(dir)?;
        for tmp in &scan.temp_files {
            fs::remove_file(tmp)
                .map_err(|e| StorageError::io("removing temporary file", tmp, e))?;
        }
        if let Some(torn) = &scan.torn_tail {
            zero_torn_tail(torn)?;
        }
        let mut infos = scan.segments;
        if infos.is_empty() {
            let path = create_segment(dir, 1, options.segment_bytes, &[])?;
            infos.push(SegmentInfo {
                first_index: 1,
                path,
                records: Vec::new(),
                write_offset: 0,
                file_bytes: options.segment_bytes,
                recycled: false,
            });
        }
        if let Some(last) = infos.last_mut() {
            extend_to_size(last, options.segment_bytes)?;
        }
        let mut segments = Vec::with_capacity(infos.len());
        for info in infos {
            let read = File::open(&info.path)
                .map_err(|e| StorageError::io("opening segment", &info.path, e))?;
            segments.push(Segment { info, read });
        }
        let last_path = segments[segments.len() - 1].info.path.clone();
        let (active, o_direct) = open_for_writes(&last_path)
            .map_err(|e| StorageError::io("opening segment for writes", &last_path, e))?;
        let mut log = Log {
            dir: dir.to_path_buf(),
            options,
            segments,
            active,
            active_generation: 0,
            prepared: false,
            o_direct,
            buf: AlignedBuf::with_capacity(BLOCK_BYTES),
            spare: None,
            recycled: Vec::new(),
            spares_started: 0,
        };
        log.start_spare();
        let report = OpenReport {
            segments: log.segments.len(),
            first_index: log.first_index(),
            last_index: log.last_index(),
            torn_tail: scan.torn_tail,
            removed_temp_files: scan.temp_files,
            o_direct,
        };
        Ok((log, report))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    /// Whether writes bypass the page cache.
    pub fn o_direct(&self) -> bool {
        self.o_direct
    }

    /// First index held (the index the log starts at when it is empty).
    pub fn first_index(&self) -> Index {
        self.segments[0].info.first_index
    }

    /// Last index held, or `first_index() - 1` when empty.
    pub fn last_index(&self) -> Index {
        self.last().info.last_index()
    }

    /// Term of the last entry, or `None` when the log holds no entry.
    pub fn last_term(&self) -> Option<Term> {
        self.segments
            .iter()
            .rev()
            .find_map(|s| s.info.records.last())
            .map(|r| r.term)
    }

    /// Term of the entry at `index`, if the log holds it.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        let (s, r) = self.locate(index)?;
        Some(self.segments[s].info.records[r].term)
    }

    fn last(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn locate(&self, index: Index) -> Option<(usize, usize)> {
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        let s = self
            .segments
            .partition_point(|seg| seg.info.first_index <= index)
            - 1;
        Some((s, self.segments[s].info.record_of(index)?))
    }

    /// Appends `entries` (consecutive indexes continuing the log; terms may change between
    /// entries) and returns once they are durable.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let records = encode_records(entries, self.options.record_bytes_max())?;
        self.append_records(&records)
    }

    /// Appends records that were already encoded (or verified, e.g. received from the leader)
    /// and returns once they are durable: the log's one write path ([`Log::prepare_append`],
    /// [`PreparedAppend::fill`], one `O_DSYNC` write per segment they land in,
    /// [`Log::complete_append`]) with a blocking write.
    pub fn append_records(&mut self, records: &[EncodedRecord]) -> Result<(), StorageError> {
        let mut next = 0;
        while next < records.len() {
            let Some(prepared) = self.prepare_append(&records[next..])? else {
                self.start_next_segment()?;
                continue;
            };
            let mut buf = std::mem::replace(&mut self.buf, AlignedBuf::with_capacity(0));
            buf.reset_zeroed(prepared.write_bytes());
            prepared.fill(buf.as_mut_slice());
            let written = write_durable(&self.active, prepared.offset, buf.as_slice());
            self.buf = buf;
            written.map_err(|e| StorageError::io("writing records to", &prepared.path, e))?;
            next += prepared.record_count();
            self.complete_append(prepared);
        }
        Ok(())
    }

    /// Lays out as many of `records` (continuing the log) as fit in the active segment, at
    /// least the first, as one group write, without writing it: the caller writes it where it
    /// is cheapest (the node on its executor's io_uring). Returns `None`, and changes nothing,
    /// if not even the first record fits: call [`Log::start_next_segment`], then again.
    ///
    /// Until [`Log::complete_append`] is called with the result, the log must not be changed
    /// otherwise (appending, truncating, purging panic: a broken invariant of the caller).
    ///
    /// # Correctness
    ///
    /// The caller writes the bytes of [`PreparedAppend::fill`] at [`PreparedAppend::offset`] of
    /// the file named by [`PreparedAppend::path`] *while* [`Log::active_file_generation`] still
    /// equals [`PreparedAppend::file_generation`] (a file opened earlier under that path may be
    /// a replaced one), makes them durable (an `O_DSYNC` write, or an fdatasync after it), and
    /// only then calls [`Log::complete_append`]. Nothing may treat the records as durable
    /// before; a failed write or sync is fatal, as everywhere in the log.
    pub fn prepare_append(
        &mut self,
        records: &[EncodedRecord],
    ) -> Result<Option<PreparedAppend>, StorageError> {
        self.assert_nothing_prepared("prepare_append");
        self.check_continues(records)?;
        if records.is_empty() {
            return Ok(None);
        }
        let prepared = self.layout_in_active(records);
        self.prepared = prepared.is_some();
        Ok(prepared)
    }

    /// Identifies the file the active segment is written through; it changes whenever that
    /// file is replaced or another segment becomes active.
    pub fn active_file_generation(&self) -> u64 {
        self.active_generation
    }

    /// Records a prepared write as done: its records are durable (see
    /// [`Log::prepare_append`]) and the log now holds them.
    pub fn complete_append(&mut self, prepared: PreparedAppend) {
        assert!(self.prepared, "complete_append without a prepared append");
        assert_eq!(
            prepared.file_generation, self.active_generation,
            "a prepared append completed after the active segment changed"
        );
        self.prepared = false;
        self.record_written(prepared);
    }

    fn assert_nothing_prepared(&self, what: &str) {
        assert!(
            !self.prepared,
            "{what} while a prepared append is not completed"
        );
    }

    /// Checks that `records` continue the log and each fits in a segment.
    fn check_continues(&self, records: &[EncodedRecord]) -> Result<(), StorageError> {
        let mut expected = self.last_index() + 1;
        for record in records {
            let header = record.header();
            if header.first_index != expected {
                return Err(StorageError::NotContiguous {
                    expected,
                    found: header.first_index,
                });
            }
            if header.total_bytes as usize > self.options.record_bytes_max() {
                return Err(StorageError::Options(format!(
                    "record of {} bytes does not fit in a segment of {} bytes",
                    header.total_bytes, self.options.segment_bytes
                )));
            }
            expected = header.last_index() + 1;
        }
        Ok(())
    }

    /// Lays out as many of `records` as fit in the active segment as one group write; `None`
    /// if not even the first fits.
    fn layout_in_active(&self, records: &[EncodedRecord]) -> Option<PreparedAppend> {
        let info = &self.last().info;
        let start = info.write_offset;
        let capacity = info.file_bytes;
        let mut locs = Vec::with_capacity(records.len());
        let mut shared = Vec::with_capacity(records.len());
        let mut len = 0u64;
        for record in records {
            let bytes = record.bytes();
            if start + align_up(len + bytes.len() as u64) > capacity {
                break;
            }
            let h = record.header();
            locs.push(RecordLoc {
                first_index: h.first_index,
                count: h.count,
                term: h.term,
                offset: start + len,
                bytes: h.total_bytes,
            });
            shared.push(bytes.clone());
            len += bytes.len() as u64;
        }
        if locs.is_empty() {
            return None;
        }
        let data_bytes = align_up(len);
        let mut write_bytes = data_bytes;
        if info.recycled && start + data_bytes + BLOCK_BYTES as u64 <= capacity {
            // Stale bytes follow in a recycled segment: end the data with a zero block, which
            // the next group write overwrites (see `segment`).
            write_bytes += BLOCK_BYTES as u64;
        }
        Some(PreparedAppend {
            path: info.path.clone(),
            file_generation: self.active_generation,
            offset: start,
            locs,
            records: shared,
            data_bytes,
            write_bytes: write_bytes as usize,
        })
    }

    /// Adds a durable group write to the active segment's record map.
    fn record_written(&mut self, prepared: PreparedAppend) {
        let info = &mut self.segments.last_mut().expect("never empty").info;
        debug_assert_eq!(info.write_offset, prepared.offset);
        info.write_offset = prepared.offset + prepared.data_bytes;
        info.records.extend(prepared.locs);
    }

    /// Starts a new segment at the next index (when [`Log::prepare_append`] found the active
    /// one full). The previous one is already durable.
    pub fn start_next_segment(&mut self) -> Result<(), StorageError> {
        self.assert_nothing_prepared("start_next_segment");
        let first_index = self.last_index() + 1;
        if let Some(tmp) = self.recycled.pop() {
            let path = install_segment(&self.dir, &tmp, first_index)?;
            // The last recycled file is in use: prepare a zeroed spare so that the next roll
            // does not zero 64 MiB inline if no purge refills the pool before it.
            self.start_spare();
            return self.push_segment(recycled_info(first_index, path, &self.options));
        }
        let spare = self.spare.take().map(|h| h.join());
        let path = match spare {
            Some(Ok(Ok(tmp))) => install_segment(&self.dir, &tmp, first_index)?,
            Some(Ok(Err(e))) => return Err(e),
            // The helper panicked (a failed fsync): stop as it would have.
            Some(Err(_)) => panic!("the spare segment thread panicked; see its message"),
            None => create_segment(&self.dir, first_index, self.options.segment_bytes, &[])?,
        };
        self.start_spare();
        let info = SegmentInfo {
            first_index,
            path,
            records: Vec::new(),
            write_offset: 0,
            file_bytes: self.options.segment_bytes,
            recycled: false,
        };
        self.push_segment(info)
    }

    /// Starts preparing the next spare segment in a helper thread.
    fn start_spare(&mut self) {
        if !self.options.prepare_spare || self.spare.is_some() || !self.recycled.is_empty() {
            return;
        }
        let tmp = self.spare_name();
        let size = self.options.segment_bytes;
        // If the thread cannot be spawned, the next roll creates its segment inline.
        self.spare = std::thread::Builder::new()
            .name("log-spare".into())
            .spawn(move || prepare_file(&tmp, size, &[]).map(|()| tmp))
            .ok();
    }

    fn spare_name(&mut self) -> PathBuf {
        self.spares_started += 1;
        self.dir
            .join(format!("spare-{}{TEMP_SUFFIX}", self.spares_started))
    }

    /// Takes a purged segment out of the log: keeps it for reuse if there is room and it has
    /// the current size, else deletes it (the caller syncs the directory after a delete).
    /// Only purged segments may come here: a segment cut off by `truncate_suffix` holds
    /// indexes that the log will hold again, so its stale records could pass for new ones.
    fn retire(&mut self, segment: Segment) -> Result<(), StorageError> {
        let path = segment.info.path.clone();
        let fits = segment.info.file_bytes == self.options.segment_bytes;
        drop(segment);
        if self.recycled.len() < self.options.recycled_segments_max && fits {
            let tmp = self.spare_name();
            recycle_segment(&self.dir, &path, &tmp)?;
            self.recycled.push(tmp);
            return Ok(());
        }
        remove_segment(&path)
    }

    fn push_segment(&mut self, info: SegmentInfo) -> Result<(), StorageError> {
        let read = File::open(&info.path)
            .map_err(|e| StorageError::io("opening segment", &info.path, e))?;
        let (active, o_direct) = open_for_writes(&info.path)
            .map_err(|e| StorageError::io("opening segment for writes", &info.path, e))?;
        self.active = active;
        self.active_generation += 1;
        self.o_direct = o_direct;
        self.segments.push(Segment { info, read });
        Ok(())
    }

    /// Reads entries `[from, to)`, stopping early once `max_bytes` (counted by
    /// [`Entry::size_bytes`]) are reached; at least one entry is returned when the range is not
    /// empty. Every record read is checked again (CRC) before it is trusted.
    pub fn read(
        &self,
        from: Index,
        to: Index,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let next = self.last_index() + 1;
        if from < self.first_index() || to > next || from > to {
            return Err(StorageError::OutOfRange {
                from,
                to,
                first: self.first_index(),
                next,
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut index = from;
        while index < to {
            let Some((s, r)) = self.locate(index) else {
                break;
            };
            let segment = &self.segments[s];
            let loc = segment.info.records[r];
            for entry in read_record(segment, &loc)? {
                if entry.index < index || entry.index >= to {
                    continue;
                }
                if !out.is_empty() && bytes + entry.size_bytes() > max_bytes {
                    return Ok(out);
                }
                bytes += entry.size_bytes();
                out.push(entry);
            }
            index = loc.last_index() + 1;
        }
        Ok(out)
    }

    /// Deletes entries `from..` (a conflicting suffix). Durable when it returns. Truncating at
    /// or past the end is a no-op; truncating below `first_index()` is an error.
    pub fn truncate_suffix(&mut self, from: Index) -> Result<(), StorageError> {
        self.assert_nothing_prepared("truncate_suffix");
        let next = self.last_index() + 1;
        if from >= next {
            return Ok(());
        }
        if from < self.first_index() {
            return Err(StorageError::OutOfRange {
                from,
                to: next,
                first: self.first_index(),
                next,
            });
        }
        // The segment that will be last: the latest one starting before `from`, else the first.
        let keep = self
            .segments
            .partition_point(|s| s.info.first_index < from)
            .max(1);
        // Delete later segments newest first, so a crash leaves a contiguous prefix.
        while self.segments.len() > keep {
            if let Some(segment) = self.segments.pop() {
                remove_segment(&segment.info.path)?;
            }
        }
        sync_dir(&self.dir).map_err(|e| StorageError::io("syncing directory", &self.dir, e))?;
        if self.last_index() >= from {
            self.rewrite_last(from)?;
        } else {
            let path = self.last().info.path.clone();
            let (active, o_direct) = open_for_writes(&path)
                .map_err(|e| StorageError::io("opening segment for writes", &path, e))?;
            self.active = active;
            self.active_generation += 1;
            self.o_direct = o_direct;
        }
        Ok(())
    }

    /// Replaces the last segment, atomically, by one holding only its entries before `from`.
    fn rewrite_last(&mut self, from: Index) -> Result<(), StorageError> {
        let Some(segment) = self.segments.pop() else {
            unreachable!("the log always has a segment")
        };
        let mut kept: Vec<Entry> = Vec::new();
        let mut image: Vec<u8> = Vec::new();
        let mut locs = Vec::new();
        for loc in segment
            .info
            .records
            .iter()
            .take_while(|r| r.first_index < from)
        {
            let entries: Vec<Entry> = read_record(&segment, loc)?
                .into_iter()
                .filter(|e| e.index < from)
                .collect();
            kept.clear();
            kept.extend(entries);
            for record in encode_records(&kept, self.options.record_bytes_max())? {
                let h = record.header();
                locs.push(RecordLoc {
                    first_index: h.first_index,
                    count: h.count,
                    term: h.term,
                    offset: image.len() as u64,
                    bytes: h.total_bytes,
                });
                image.extend_from_slice(record.bytes());
            }
        }
        let write_offset = align_up(image.len() as u64);
        image.resize(write_offset as usize, 0);
        let size = segment.info.file_bytes.max(self.options.segment_bytes);
        let first_index = segment.info.first_index;
        drop(segment);
        let path = create_segment(&self.dir, first_index, size, &image)?;
        self.push_segment(SegmentInfo {
            first_index,
            path,
            records: locs,
            write_offset,
            file_bytes: size,
            recycled: false,
        })
    }

    /// Deletes whole segments whose entries are all at or below `upto` (covered by a snapshot).
    /// Entries after `upto` are kept, and so may some at or below it (those sharing a segment
    /// with later ones). If `upto` is at or past the last index, the log becomes empty and
    /// continues at `upto + 1`.
    ///
    /// A crash during a purge past the end can leave an empty log starting at 1: the runtime,
    /// which owns the snapshot, calls `purge_prefix(snapshot_index)` again after every open.
    pub fn purge_prefix(&mut self, upto: Index) -> Result<(), StorageError> {
        self.assert_nothing_prepared("purge_prefix");
        if upto < self.first_index() {
            return Ok(());
        }
        if upto >= self.last_index() {
            if self.segments.len() == 1
                && self.last().info.records.is_empty()
                && self.first_index() == upto + 1
            {
                return Ok(());
            }
            // Oldest first, so that a crash leaves a contiguous suffix.
            for segment in std::mem::take(&mut self.segments) {
                self.retire(segment)?;
            }
            sync_dir(&self.dir).map_err(|e| StorageError::io("syncing directory", &self.dir, e))?;
            let first_index = upto + 1;
            let info = match self.recycled.pop() {
                Some(tmp) => {
                    let path = install_segment(&self.dir, &tmp, first_index)?;
                    recycled_info(first_index, path, &self.options)
                }
                None => SegmentInfo {
                    first_index,
                    path: create_segment(&self.dir, first_index, self.options.segment_bytes, &[])?,
                    records: Vec::new(),
                    write_offset: 0,
                    file_bytes: self.options.segment_bytes,
                    recycled: false,
                },
            };
            return self.push_segment(info);
        }
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[0].info.last_index() <= upto {
            let segment = self.segments.remove(0);
            self.retire(segment)?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir).map_err(|e| StorageError::io("syncing directory", &self.dir, e))?;
        }
        Ok(())
    }
}

impl Drop for Log {
    /// Waits for the spare segment thread and removes its file and the recycled spares, so that
    /// nothing writes into the directory after the log is gone (the next open would delete
    /// these temporary files anyway).
    fn drop(&mut self) {
        if let Some(Ok(Ok(tmp))) = self.spare.take().map(|h| h.join()) {
            let _ = fs::remove_file(tmp);
        }
        for tmp in self.recycled.drain(..) {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// The description of a just installed, empty recycled segment.
fn recycled_info(first_index: Index, path: PathBuf, options: &LogOptions) -> SegmentInfo {
    SegmentInfo {
        first_index,
        path,
        records: Vec::new(),
        write_offset: BLOCK_BYTES as u64,
        file_bytes: options.segment_bytes,
        recycled: true,
    }
}

fn read_record(segment: &Segment, loc: &RecordLoc) -> Result<Vec<Entry>, StorageError> {
    let mut raw = vec![0u8; loc.bytes as usize];
    segment
        .read
        .read_exact_at(&mut raw, loc.offset)
        .map_err(|e| StorageError::io("reading record from", &segment.info.path, e))?;
    let (_, entries) = decode_batch(&Bytes::from(raw)).map_err(|source| StorageError::Decode {
        file: segment.info.path.clone(),
        offset: loc.offset,
        source,
    })?;
    Ok(entries)
}

/// Creates `dir` if needed and makes its entry in the parent durable.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| StorageError::io("creating log directory", dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(|e| StorageError::io("syncing directory", parent, e))?;
    }
    Ok(())
}

fn zero_torn_tail(torn: &TornTail) -> Result<(), StorageError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&torn.file)
        .map_err(|e| StorageError::io("opening segment to drop a torn write", &torn.file, e))?;
    write_zeros(
        &file,
        torn.offset,
        torn.garbage_end.max(torn.offset),
        &torn.file,
    )?;
    sync_data(&file, &torn.file);
    Ok(())
}

fn extend_to_size(info: &mut SegmentInfo, segment_bytes: u64) -> Result<(), StorageError> {
    if info.file_bytes >= segment_bytes {
        return Ok(());
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&info.path)
        .map_err(|e| StorageError::io("opening segment to extend it", &info.path, e))?;
    write_zeros(&file, info.file_bytes, segment_bytes, &info.path)?;
    sync_data(&file, &info.path);
    info.file_bytes = segment_bytes;
    Ok(())
}
