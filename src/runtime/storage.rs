//! A node's durable state on disk: the segmented log, term and vote, and the latest snapshot.
//! Appends are prepared here and written by the runtime's disk task on its executor's io_uring
//! (`runtime::disk`); everything else here blocks, and the disk task calls it on glommio's
//! blocking pool, in order with the appends. Snapshots this node takes are saved apart from that
//! queue ([`SnapshotFile`]), so that tens of megabytes of state machine never sit in front of the
//! log's next write.
//!
//! Layout of `data_dir`: `log/` (segments, see `crate::log`), `hard_state` (two CRC slots),
//! `snapshot` (magic, index, term, length, CRC32, data; replaced atomically by rename).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::core::{Entry, HardState, Index, Membership, Restored, Snapshot, SnapshotMeta};
use crate::log::record::records_for;
use crate::log::{
    cut_at_corruption, EncodedRecord, HardStateStore, Log, LogOptions, OpenReport, PreparedAppend,
    Repair, StorageError,
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
        let snapshot_file = Arc::new(SnapshotFile {
            dir: dir.to_path_buf(),
            saved_index: Mutex::new(snapshot_index),
        });
        let storage = Storage {
            snapshot_file,
            log,
            hard_state: hard_state_store,
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

    /// Last index the log holds.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// Appends to `out` the records of `entries` (consecutive, continuing what `out` holds or
    /// the log).
    pub fn records_of(
        &self,
        entries: &[Entry],
        out: &mut Vec<EncodedRecord>,
    ) -> Result<(), StorageError> {
        // Entries that carry their record (a leader's proposals, what a follower received) are
        // written as they are; only the others are encoded here.
        records_for(entries, self.log.options().record_bytes_max(), out)?;
        Ok(())
    }

    /// See [`Log::prepare_append`].
    pub fn prepare_append(
        &mut self,
        records: &[EncodedRecord],
    ) -> Result<Option<PreparedAppend>, StorageError> {
        self.log.prepare_append(records)
    }

    /// See [`Log::complete_append`].
    pub fn complete_append(&mut self, prepared: PreparedAppend) {
        self.log.complete_append(prepared);
    }

    /// See [`Log::start_next_segment`].
    pub fn start_next_segment(&mut self) -> Result<(), StorageError> {
        self.log.start_next_segment()
    }

    /// Makes a snapshot received from the leader the node's snapshot and empties the log
    /// (the leader resends what follows it).
    pub fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.snapshot_file.save_installed(snapshot)?;
        if self.log.last_index() >= self.log.first_index() {
            self.log.truncate_suffix(self.log.first_index())?;
        }
        self.log.purge_prefix(snapshot.meta.last_included_index)
    }

    /// Deletes the log's entries from `from` on (a conflicting suffix); durable on return.
    pub fn truncate_suffix(&mut self, from: Index) -> Result<(), StorageError> {
        self.log.truncate_suffix(from)
    }

    /// Makes term and vote durable.
    pub fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.hard_state.save(hard_state)
    }

    /// Purges whole segments covered by a durable snapshot up to `upto`.
    pub fn purge(&mut self, upto: Index) -> Result<(), StorageError> {
        self.log.purge_prefix(upto.min(self.log.last_index()))
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
    // The configuration the snapshot carries, after the data: [membership][len u32][crc u32].
    // A file without it (written before membership changes) restores with the bootstrap
    // configuration.
    if !snapshot.meta.membership.is_empty() {
        let membership = snapshot.meta.membership.encode();
        let mut trailer = membership.clone();
        trailer.extend_from_slice(&(membership.len() as u32).to_le_bytes());
        trailer.extend_from_slice(&crc32fast::hash(&membership).to_le_bytes());
        file.write_all(&trailer)
            .map_err(io("writing snapshot", &tmp))?;
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
    let body = &bytes[SNAPSHOT_HEADER_BYTES..];
    if body.len() < len {
        return Err(bad(&format!("length {} but header says {len}", body.len())));
    }
    let (data, trailer) = body.split_at(len);
    let membership = read_membership_trailer(trailer).map_err(|reason| bad(&reason))?;
    if crc32fast::hash(data) != crc {
        return Err(bad("CRC mismatch"));
    }
    let meta = SnapshotMeta {
        last_included_index: index,
        last_included_term: term,
        membership,
    };
    Ok(Some(Snapshot {
        meta,
        data: Bytes::copy_from_slice(data),
    }))
}

/// The configuration after a snapshot's data (see `write_snapshot`); none in older files.
fn read_membership_trailer(trailer: &[u8]) -> Result<Membership, String> {
    if trailer.is_empty() {
        return Ok(Membership::default());
    }
    if trailer.len() < 8 {
        return Err(format!("{} stray bytes after the data", trailer.len()));
    }
    let (membership, tail) = trailer.split_at(trailer.len() - 8);
    let len = u32::from_le_bytes(tail[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(tail[4..8].try_into().expect("4 bytes"));
    if len != membership.len() {
        return Err(format!(
            "configuration of {} bytes but its length says {len}",
            membership.len()
        ));
    }
    if crc32fast::hash(membership) != crc {
        return Err("configuration CRC mismatch".into());
    }
    Membership::decode(membership).map_err(|e| format!("configuration: {e}"))
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
                record: None,
            })
            .collect()
    }

    #[test]
    fn mid_log_corruption_is_cut_off_or_refused_when_strict() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment_bytes = 1 << 20;
        let log_options = || LogOptions {
            segment_bytes,
            ..LogOptions::default()
        };
        let (mut log, _) = Log::open(&dir.path().join("log"), log_options()).expect("open");
        for k in 0..30 {
            // ~100 KiB per append: several segments of 1 MiB.
            log.append(&entries(1 + k * 1000, 1000, 1)).expect("append");
        }
        drop(log);
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
        assert!(
            kept >= 1 && kept < 30_000,
            "kept the valid prefix only: {kept}"
        );
        assert_eq!(restored.entries, entries(1, kept, 1));
        // Nothing was deleted: the damaged segment's copy and the later ones are in lost/.
        let lost = fs::read_dir(dir.path().join("log").join(crate::log::LOST_DIR))
            .unwrap()
            .count();
        assert_eq!(lost, segments.len());
        // The repaired log opens cleanly and strictly, and goes on from its end.
        let (storage, again, _, repairs) =
            Storage::open(dir.path(), segment_bytes, Recovery::Strict).expect("clean now");
        assert!(repairs.is_empty());
        assert_eq!(again.entries.len() as u64, kept);
        drop(storage);
        let (mut log, _) = Log::open(&dir.path().join("log"), log_options()).expect("reopen");
        log.append(&entries(kept + 1, 5, 2))
            .expect("append after repair");
        assert_eq!(log.last_index(), kept + 5);
    }
}

#[cfg(test)]
mod snapshot_membership_tests {
    use super::*;
    use crate::core::ConfChange;

    fn snapshot(membership: Membership) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                last_included_index: 42,
                last_included_term: 3,
                membership,
            },
            data: Bytes::from_static(b"state machine bytes"),
        }
    }

    #[test]
    fn a_snapshot_file_keeps_its_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let membership = Membership::from_voters([1, 2, 3])
            .apply(&ConfChange::AddLearner {
                id: 4,
                context: Bytes::from_static(b"127.0.0.1:1/127.0.0.1:2"),
            })
            .unwrap();
        let written = snapshot(membership);
        write_snapshot(dir.path(), &written).unwrap();
        let read = read_snapshot(&dir.path().join("snapshot")).unwrap();
        assert_eq!(read, Some(written));
    }

    #[test]
    fn a_snapshot_file_without_configuration_reads_as_empty_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = snapshot(Membership::default());
        write_snapshot(dir.path(), &written).unwrap();
        let path = dir.path().join("snapshot");
        assert_eq!(read_snapshot(&path).unwrap(), Some(written));
        write_snapshot(dir.path(), &snapshot(Membership::from_voters([1, 2, 3]))).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 9; // Inside the configuration.
        bytes[at] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let error = read_snapshot(&path).unwrap_err().to_string();
        assert!(error.contains("configuration CRC mismatch"), "{error}");
    }
}
