//! A node's durable state on disk: the segmented log, term and vote, and the latest snapshot.
//! Everything here blocks; the runtime calls it from glommio's blocking pool, one group of
//! writes at a time and in order, which is what makes it group commit. The exception is a
//! prepared write ([`Storage::prepare_write`]): a group of appends (up to the runtime's bound)
//! that the runtime encodes here and then writes and syncs on its own executor. Snapshots this node
//! takes are saved apart from that queue ([`SnapshotFile`]), so that tens of megabytes of state
//! machine never sit in front of the log's next fdatasync.
//!
//! Layout of `data_dir`: `log/` (segments, see `crate::log`), `hard_state` (two CRC slots),
//! `snapshot` (magic, index, term, length, CRC32, data; replaced atomically by rename).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::core::{Entry, HardState, Index, Restored, Snapshot, SnapshotMeta};
use crate::log::record::encode_records;
use crate::log::{
    cut_at_corruption, HardStateStore, Log, LogOptions, OpenReport, PreparedAppend, Repair,
    StorageError,
};

const SNAPSHOT_MAGIC: u32 = 0x5352_4e50; // "SRNP"
const SNAPSHOT_HEADER_BYTES: usize = 4 + 8 + 8 + 8 + 4;
/// Bytes of a snapshot written between two writeback waits.
const SNAPSHOT_WRITEBACK_BYTES: usize = 1 << 20;
/// The pace of snapshot writes: a sixth of what the development VM's disk takes sequentially
/// (~770 MiB/s), so that three nodes sharing it in a benchmark leave the log most of it. A
/// 100 MiB snapshot takes under a second; with `snapshot_log_factor` 4 the next one is due
/// after 400 MiB of log.
const SNAPSHOT_WRITE_BYTES_PER_S: f64 = 128.0 * 1024.0 * 1024.0;
/// Most corruptions cut from the log at one start: each cut moves at least one segment's tail
/// aside, so a log that needs more is damaged beyond what repairing from peers is meant for.
const REPAIRS_AT_OPEN_MAX: usize = 64;

/// How `Storage::open` treats a damaged record before the tail of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Keep the valid prefix before the damage, set the rest aside in `log/lost/`, and let the
    /// core fetch it back from the cluster (it abstains from elections meanwhile).
    Repair,
    /// Refuse to start, naming the file and offset: an operator decides.
    Strict,
}

/// One output's worth of durable work, in the order the core's `Output` contract requires.
#[derive(Debug, Default)]
pub struct WriteJob {
    /// A snapshot installed from the leader: save it and empty the log.
    pub installed_snapshot: Option<Snapshot>,
    /// Entries to append (replacing any stored suffix from the first one's index).
    pub entries: Vec<Entry>,
    /// Term and vote.
    pub hard_state: Option<HardState>,
    /// Purge whole log segments up to this index (covered by a durable snapshot).
    pub purge_upto: Option<Index>,
}

/// The snapshot file, shared by the disk queue (snapshots installed from the leader, ordered
/// with the log writes around them) and the snapshot writer (snapshots this node takes, which
/// need no such order once the entries they cover are durable).
pub struct SnapshotFile {
    dir: PathBuf,
    /// Last included index of the snapshot on disk (0: none). Held while writing, so that two
    /// saves never interleave on `snapshot.tmp`.
    saved_index: Mutex<Index>,
}

impl SnapshotFile {
    /// Makes `snapshot` the node's snapshot, atomically (see `write_snapshot`).
    pub fn save_installed(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let mut saved_index = self.lock();
        write_snapshot(&self.dir, snapshot)?;
        *saved_index = snapshot.meta.last_included_index;
        Ok(())
    }

    /// Makes `snapshot`, taken of this node's state machine, the node's snapshot unless the one
    /// on disk is as new or newer: a snapshot installed from the leader while this one was being
    /// written has already replaced the log prefix it covers, and must not be rolled back.
    /// Returns whether it was written.
    pub fn save_taken(&self, snapshot: &Snapshot) -> Result<bool, StorageError> {
        let mut saved_index = self.lock();
        if snapshot.meta.last_included_index <= *saved_index {
            return Ok(false);
        }
        write_snapshot(&self.dir, snapshot)?;
        *saved_index = snapshot.meta.last_included_index;
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while writing is a failed fsync, which aborts the node; the index stays right.
        self.saved_index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The node's files.
pub struct Storage {
    snapshot_file: Arc<SnapshotFile>,
    log: Log,
    hard_state: HardStateStore,
    /// Last index written to the log by this process (the log's own view, including `pending`).
    last_index: Index,
}

impl Storage {
    /// Opens (creating) `dir` and returns what the core needs to restart, the log's recovery
    /// report and the repairs made. A damaged record before the tail is cut off with what
    /// follows ([`Recovery::Repair`]) or refused, naming the file ([`Recovery::Strict`]).
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        recovery: Recovery,
    ) -> Result<(Storage, Restored, OpenReport, Vec<Repair>), StorageError> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io("creating data directory", dir, e))?;
        let snapshot = read_snapshot(&dir.join("snapshot"))?;
        let (hard_state_store, hard_state) = HardStateStore::open(dir)?;
        let options = LogOptions {
            segment_bytes,
            ..LogOptions::default()
        };
        let log_dir = dir.join("log");
        let mut repairs = Vec::new();
        let (mut log, report) = loop {
            match Log::open(&log_dir, options.clone()) {
                Err(StorageError::Corrupt {
                    file,
                    offset,
                    reason,
                }) if recovery == Recovery::Repair && repairs.len() < REPAIRS_AT_OPEN_MAX => {
                    repairs.push(cut_at_corruption(&log_dir, &file, offset, reason)?);
                }
                result => break result?,
            }
        };
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.meta.last_included_index);
        // A crash during a purge can leave segments below the snapshot; the snapshot rules.
        log.purge_prefix(snapshot_index)?;
        if log.first_index() > snapshot_index + 1 {
            return Err(StorageError::Options(format!(
                "log in {} starts at index {} but the snapshot ends at {}: entries are missing",
                dir.display(),
                log.first_index(),
                snapshot_index
            )));
        }
        let from = snapshot_index + 1;
        let entries = if log.last_index() >= from {
            log.read(from, log.last_index() + 1, usize::MAX)?
        } else {
            Vec::new()
        };
        let last_index = log.last_index();
        let snapshot_file = Arc::new(SnapshotFile {
            dir: dir.to_path_buf(),
            saved_index: Mutex::new(snapshot_index),
        });
        let storage = Storage {
            snapshot_file,
            log,
            hard_state: hard_state_store,
            last_index,
        };
        Ok((
            storage,
            Restored {
                hard_state,
                snapshot,
                entries,
            },
            report,
            repairs,
        ))
    }

    /// The snapshot file, for saving snapshots this node takes.
    pub fn snapshot_file(&self) -> Arc<SnapshotFile> {
        self.snapshot_file.clone()
    }

    /// Makes a group of jobs durable: one log append (one aligned write + one fdatasync per
    /// segment touched) for all their entries, then the newest hard state, then purges.
    pub fn write(&mut self, jobs: &mut [WriteJob]) -> Result<(), StorageError> {
        let mut pending: Vec<Entry> = Vec::new();
        let mut hard_state = None;
        for job in jobs.iter_mut() {
            if let Some(snapshot) = job.installed_snapshot.take() {
                self.flush(&mut pending)?;
                self.snapshot_file.save_installed(&snapshot)?;
                if self.log.last_index() >= self.log.first_index() {
                    self.log.truncate_suffix(self.log.first_index())?;
                }
                self.log.purge_prefix(snapshot.meta.last_included_index)?;
                self.last_index = snapshot.meta.last_included_index;
            }
            if let Some(first) = job.entries.first().map(|e| e.index) {
                if first <= self.last_index {
                    match pending.first().map(|e| e.index) {
                        Some(p) if first >= p => pending.truncate((first - p) as usize),
                        _ => {
                            self.flush(&mut pending)?;
                            self.log.truncate_suffix(first)?;
                        }
                    }
                }
                self.last_index = job.entries.last().map_or(self.last_index, |e| e.index);
                pending.append(&mut job.entries);
            }
            if job.hard_state.is_some() {
                hard_state = job.hard_state;
            }
        }
        self.flush(&mut pending)?;
        if let Some(hs) = hard_state {
            self.hard_state.save(&hs)?;
        }
        for job in jobs.iter() {
            if let Some(upto) = job.purge_upto {
                self.log.purge_prefix(upto.min(self.log.last_index()))?;
            }
        }
        Ok(())
    }

    /// Prepares a group of jobs as one write for the caller to do (see
    /// [`Log::prepare_append`]) if it is nothing but new entries continuing the log, of at most
    /// `entry_bytes_max` bytes (counted by [`Entry::size_bytes`]), fitting in the active
    /// segment. Otherwise returns `None` and changes nothing: use [`Storage::write`].
    /// The jobs' entries are left in place; after [`Storage::complete_prepared`] the jobs are
    /// done.
    pub fn prepare_write(
        &mut self,
        jobs: &[WriteJob],
        entry_bytes_max: usize,
    ) -> Result<Option<PreparedAppend>, StorageError> {
        let mut next = self.last_index + 1;
        let mut bytes = 0;
        for job in jobs {
            let plain = job.installed_snapshot.is_none()
                && job.hard_state.is_none()
                && job.purge_upto.is_none();
            if !plain || job.entries.first().is_some_and(|e| e.index != next) {
                return Ok(None);
            }
            next += job.entries.len() as u64;
            bytes += job.entries.iter().map(Entry::size_bytes).sum::<usize>();
        }
        if bytes == 0 || bytes > entry_bytes_max {
            return Ok(None);
        }
        // Each job's entries are encoded as they stand (one or more records per job, all in the
        // one group write): no gathering of every entry into another vector first.
        let record_bytes_max = self.log.options().record_bytes_max();
        let mut records = Vec::new();
        for job in jobs.iter().filter(|j| !j.entries.is_empty()) {
            records.extend(encode_records(&job.entries, record_bytes_max)?);
        }
        self.log.prepare_append(&records)
    }

    /// The bytes of the prepared write.
    pub fn prepared_bytes(&self) -> &[u8] {
        self.log.prepared_bytes()
    }

    /// Whether `prepared` still names the file the log writes through (see
    /// [`Log::prepare_append`]).
    pub fn is_current(&self, prepared: &PreparedAppend) -> bool {
        prepared.file_generation == self.log.active_file_generation()
    }

    /// Writes a prepared group with the log's own write + fdatasync (blocking).
    pub fn write_prepared(&mut self, prepared: &PreparedAppend) -> Result<(), StorageError> {
        self.log.write_prepared(prepared)
    }

    /// Marks a prepared group durable: its bytes were written and synced by the caller.
    pub fn complete_prepared(&mut self, prepared: PreparedAppend) {
        self.last_index = prepared.last_index();
        self.log.complete_append(prepared);
    }

    fn flush(&mut self, pending: &mut Vec<Entry>) -> Result<(), StorageError> {
        if !pending.is_empty() {
            self.log.append(pending)?;
            pending.clear();
        }
        Ok(())
    }
}

/// Writes `dir/snapshot` atomically: a temporary file, fsync, rename, fsync of the directory.
fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<(), StorageError> {
    let tmp = dir.join("snapshot.tmp");
    let path = dir.join("snapshot");
    let mut header = Vec::with_capacity(SNAPSHOT_HEADER_BYTES);
    header.extend_from_slice(&SNAPSHOT_MAGIC.to_le_bytes());
    header.extend_from_slice(&snapshot.meta.last_included_index.to_le_bytes());
    header.extend_from_slice(&snapshot.meta.last_included_term.to_le_bytes());
    header.extend_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(&snapshot.data).to_le_bytes());
    fn io<'p>(what: &'static str, p: &'p Path) -> impl FnOnce(std::io::Error) -> StorageError + 'p {
        move |e| StorageError::io(what, p, e)
    }
    let mut file = fs::File::create(&tmp).map_err(io("creating snapshot", &tmp))?;
    file.write_all(&header)
        .map_err(io("writing snapshot", &tmp))?;
    // A chunk at a time, each written back before the next, at most SNAPSHOT_WRITE_BYTES_PER_S:
    // left dirty, a snapshot of 100 MiB reached the disk all at once at sync_all and held up
    // every log fdatasync behind it; written back at the device's full speed, it still made
    // each log fdatasync flush the device cache of everything written since the last one
    // (15-30 ms instead of ~1 ms on `3node-1kb` while three nodes saved snapshots).
    let started = std::time::Instant::now();
    let mut at = header.len() as u64;
    for chunk in snapshot.data.chunks(SNAPSHOT_WRITEBACK_BYTES) {
        file.write_all(chunk)
            .map_err(io("writing snapshot", &tmp))?;
        crate::log::write_back(&file, at, chunk.len() as u64);
        at += chunk.len() as u64;
        let due = std::time::Duration::from_secs_f64(at as f64 / SNAPSHOT_WRITE_BYTES_PER_S);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
    file.sync_all().map_err(io("syncing snapshot", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("renaming snapshot", &path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing data directory", dir))?;
    Ok(())
}

/// Reads `path` if it exists; a damaged snapshot is an error naming the file, never ignored.
fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, StorageError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("reading snapshot", path, e)),
    };
    let bad = |reason: &str| {
        StorageError::Options(format!(
            "snapshot file {} is damaged: {reason}",
            path.display()
        ))
    };
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(bad("shorter than its header"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) != SNAPSHOT_MAGIC {
        return Err(bad("bad magic"));
    }
    let (index, term, len) = (u64_at(4), u64_at(12), u64_at(20) as usize);
    let crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
    let data = &bytes[SNAPSHOT_HEADER_BYTES..];
    if data.len() != len {
        return Err(bad(&format!("length {} but header says {len}", data.len())));
    }
    if crc32fast::hash(data) != crc {
        return Err(bad("CRC mismatch"));
    }
    let meta = SnapshotMeta {
        last_included_index: index,
        last_included_term: term,
    };
    Ok(Some(Snapshot {
        meta,
        data: Bytes::copy_from_slice(data),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;

    fn entries(first: Index, n: u64, term: u64) -> Vec<Entry> {
        (first..first + n)
            .map(|index| Entry {
                term,
                index,
                kind: EntryKind::Normal,
                data: Bytes::from(vec![index as u8; 100]),
            })
            .collect()
    }

    fn append(entries: Vec<Entry>) -> WriteJob {
        WriteJob {
            entries,
            ..WriteJob::default()
        }
    }

    /// Writes a prepared group as the runtime's executor does: its own O_DSYNC write.
    fn write_as_the_executor(storage: &mut Storage, prepared: PreparedAppend) {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        assert!(storage.is_current(&prepared));
        let file = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .open(&prepared.path)
            .expect("open segment");
        file.write_all_at(storage.prepared_bytes(), prepared.offset)
            .expect("write");
        storage.complete_prepared(prepared);
    }

    #[test]
    fn prepared_groups_of_appends_are_durable_and_restored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut storage, _, _, _) = Storage::open(dir.path(), 1 << 20, Recovery::Strict).expect("open");
        let jobs = [append(entries(1, 3, 1)), append(entries(4, 2, 1))];
        let prepared = storage.prepare_write(&jobs, 1 << 20).expect("prepare");
        write_as_the_executor(&mut storage, prepared.expect("plain appends"));
        // The blocking path continues the log the executor wrote.
        storage
            .write(&mut [append(entries(6, 2, 2))])
            .expect("write");
        let jobs = [append(entries(8, 1, 2))];
        let prepared = storage.prepare_write(&jobs, 1 << 20).expect("prepare");
        let prepared = prepared.expect("plain append");
        storage
            .write_prepared(&prepared)
            .expect("write on the pool");
        storage.complete_prepared(prepared);
        drop(storage);
        let (_, restored, report, _) = Storage::open(dir.path(), 1 << 20, Recovery::Strict).expect("reopen");
        assert!(report.torn_tail.is_none());
        assert_eq!(restored.entries, {
            let mut all = entries(1, 5, 1);
            all.extend(entries(6, 3, 2));
            all
        });
    }

    #[test]
    fn only_small_groups_of_new_appends_are_prepared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut storage, _, _, _) = Storage::open(dir.path(), 1 << 20, Recovery::Strict).expect("open");
        storage
            .write(&mut [append(entries(1, 3, 1))])
            .expect("write");
        let mut with_vote = append(entries(4, 1, 2));
        with_vote.hard_state = Some(HardState {
            current_term: 2,
            voted_for: Some(1),
            acked_index: 3,
        });
        let with_purge = WriteJob {
            purge_upto: Some(1),
            ..append(entries(4, 1, 1))
        };
        let refused: [&[WriteJob]; 5] = [
            &[with_vote],
            &[with_purge],
            &[append(entries(3, 2, 2))], // overwrites index 3: a truncation
            &[append(entries(5, 1, 1))], // a gap
            &[append(entries(4, 1, 1)), append(entries(6, 1, 1))],
        ];
        for jobs in refused {
            assert!(storage
                .prepare_write(jobs, 1 << 20)
                .expect("prepare")
                .is_none());
        }
        let big = [append(entries(4, 10, 1))];
        assert!(storage
            .prepare_write(&big, 1000)
            .expect("prepare")
            .is_none());
        let prepared = storage.prepare_write(&big, 2000).expect("prepare");
        write_as_the_executor(&mut storage, prepared.expect("within the bound"));
        drop(storage);
        let (_, restored, _, _) = Storage::open(dir.path(), 1 << 20, Recovery::Strict).expect("reopen");
        assert_eq!(restored.entries.len(), 13);
    }

    #[test]
    fn mid_log_corruption_is_cut_off_or_refused_when_strict() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment_bytes = 1 << 20;
        let (mut storage, _, _, _) =
            Storage::open(dir.path(), segment_bytes, Recovery::Strict).expect("open");
        for k in 0..30 {
            // ~100 KiB per write: several segments of 1 MiB.
            storage
                .write(&mut [append(entries(1 + k * 1000, 1000, 1))])
                .expect("write");
        }
        drop(storage);
        let mut segments: Vec<_> = fs::read_dir(dir.path().join("log"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segments.sort();
        assert!(segments.len() >= 3, "{segments:?}");
        // Flip a byte in the oldest segment, past its first records (about 130 KiB each).
        let oldest = &segments[0];
        let mut bytes = fs::read(oldest).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(oldest, &bytes).unwrap();
        let refused = Storage::open(dir.path(), segment_bytes, Recovery::Strict);
        assert!(
            matches!(refused, Err(StorageError::Corrupt { ref file, .. }) if file == oldest),
            "strict recovery refuses, naming the file"
        );
        let verified = crate::log::verify(&dir.path().join("log"));
        assert!(verified.problem.is_some(), "verify reports what it found");
        let (_, restored, _, repairs) =
            Storage::open(dir.path(), segment_bytes, Recovery::Repair).expect("repaired");
        assert_eq!(repairs.len(), 1);
        assert_eq!(&repairs[0].file, oldest);
        assert_eq!(repairs[0].moved.len(), segments.len() - 1);
        let kept = restored.entries.len() as u64;
        assert!(kept >= 1 && kept < 30_000, "kept the valid prefix only: {kept}");
        assert_eq!(restored.entries, entries(1, kept, 1));
        // Nothing was deleted: the damaged segment's copy and the later ones are in lost/.
        let lost = fs::read_dir(dir.path().join("log").join(crate::log::LOST_DIR))
            .unwrap()
            .count();
        assert_eq!(lost, segments.len());
        // The repaired log opens cleanly and strictly, and goes on from its end.
        let (mut storage, again, _, repairs) =
            Storage::open(dir.path(), segment_bytes, Recovery::Strict).expect("clean now");
        assert!(repairs.is_empty());
        assert_eq!(again.entries.len() as u64, kept);
        storage
            .write(&mut [append(entries(kept + 1, 5, 2))])
            .expect("write after repair");
    }
}
