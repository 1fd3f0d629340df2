//! A node's durable state on disk: the segmented log, term and vote, and the latest snapshot.
//! Appends are prepared here and written by the runtime's disk task on its executor's io_uring
//! (`runtime::disk`); everything else here blocks, and the disk task calls it on glommio's
//! blocking pool, in order with the appends. Snapshots this node takes are saved apart from that
//! queue ([`SnapshotFile`]), so that tens of megabytes of state machine never sit in front of the
//! log's next write.
//!
//! Layout of `data_dir`: `log/` (segments, see `crate::log`), `hard_state` (two CRC slots),
//! `snapshot` (see [`SnapshotFile`]).

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use super::snapshot_file::SnapshotFile;
use crate::core::{Entry, HardState, Index, Restored, Snapshot};
use crate::log::record::records_for;
use crate::log::{
    cut_at_corruption, EncodedRecord, HardStateStore, Log, LogOptions, OpenReport, PreparedAppend,
    Repair, StorageError,
};

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

/// The node's files.
pub struct Storage {
    snapshot_file: Arc<SnapshotFile>,
    log: Log,
    /// Apart from the rest, so that saving it (a write and an fdatasync on the blocking pool)
    /// never holds the lock the executor takes to lay out the next group of records.
    hard_state: Arc<Mutex<HardStateStore>>,
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
        let (snapshot_file, snapshot) = SnapshotFile::open(dir)?;
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
        let storage = Storage {
            snapshot_file: Arc::new(snapshot_file),
            log,
            hard_state: Arc::new(Mutex::new(hard_state_store)),
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

    /// The hard state's file, saved on its own (see [`crate::runtime::disk`]).
    pub fn hard_state_store(&self) -> Arc<Mutex<HardStateStore>> {
        self.hard_state.clone()
    }

    /// Purges whole segments covered by a durable snapshot up to `upto`.
    pub fn purge(&mut self, upto: Index) -> Result<(), StorageError> {
        self.log.purge_prefix(upto.min(self.log.last_index()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;
    use bytes::Bytes;

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
            (1..30_000).contains(&kept),
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
