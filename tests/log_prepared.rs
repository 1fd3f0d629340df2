//! Prepared appends ([`Log::prepare_append`]): the caller does the write and the sync (as the
//! runtime does on its executor's io_uring), and the log keeps its recovery rules: what the
//! caller wrote reopens intact, in fresh and recycled segments; a torn prepared write is
//! dropped at the next open; a group that does not fit is refused without changing anything.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use ringraft::core::Entry;
use ringraft::log::record::{encode_records, RECORD_BYTES_MAX};
use ringraft::log::{segment_file_name, Log, PreparedAppend};

mod log_common;
use log_common::{batch, options, read_all};

/// Prepares `entries`; `None` if they do not fit in the active segment.
fn prepare(log: &mut Log, entries: &[Entry]) -> Option<PreparedAppend> {
    let records = encode_records(entries, RECORD_BYTES_MAX).expect("encode");
    log.prepare_append(&records).expect("prepare")
}

/// Writes the first `len` prepared bytes with an `O_DSYNC` write of its own, as a caller that
/// does the I/O must.
fn write_prepared_bytes(log: &Log, prepared: &PreparedAppend, len: usize) {
    assert_eq!(log.active_file_generation(), prepared.file_generation);
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .open(&prepared.path)
        .expect("open segment");
    let mut bytes = vec![0xEEu8; prepared.write_bytes()];
    prepared.fill(&mut bytes);
    file.write_all_at(&bytes[..len], prepared.offset)
        .expect("write");
}

fn append_by_caller(log: &mut Log, entries: &[Entry]) {
    let prepared = prepare(log, entries).expect("fits");
    let len = prepared.write_bytes();
    assert_eq!(len % 4096, 0, "a prepared write is whole blocks");
    write_prepared_bytes(log, &prepared, len);
    log.complete_append(prepared);
}

#[test]
fn appends_written_by_the_caller_reopen_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), options(64 << 10)).expect("open");
    let mut all = Vec::new();
    for b in 0..6u64 {
        let entries = batch(1 + 3 * b, 3, 1 + b / 3, 300);
        if b % 2 == 0 {
            append_by_caller(&mut log, &entries);
        } else {
            log.append(&entries).expect("append");
        }
        all.extend(entries);
        assert_eq!(read_all(&log), all);
    }
    drop(log);
    let (log, report) = Log::open(dir.path(), options(64 << 10)).expect("reopen");
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert_eq!(read_all(&log), all);
    drop(log);
    assert!(ringraft::log::verify(dir.path()).is_clean());
}

#[test]
fn appends_written_by_the_caller_into_a_recycled_segment_reopen_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), options(16 << 10)).expect("open");
    let mut all = Vec::new();
    // One group a block, four blocks a 16 KiB segment: segment 1 (indexes 1..8) is purged and
    // comes back as segment 17, a recycled one, which the last three groups go into.
    for b in 0..11u64 {
        let entries = batch(1 + 2 * b, 2, 1, 1000);
        match prepare(&mut log, &entries) {
            Some(prepared) => {
                let len = prepared.write_bytes();
                write_prepared_bytes(&log, &prepared, len);
                log.complete_append(prepared);
            }
            None => log.append(&entries).expect("append rolls"),
        }
        all.extend(entries);
        if b == 5 {
            log.purge_prefix(8).expect("purge");
        }
    }
    assert_eq!(log.first_index(), 9);
    let recycled = fs::read(dir.path().join(segment_file_name(17))).expect("read segment 17");
    assert_eq!(
        recycled[..4],
        [0x47, 0x53, 0x52, 0x52],
        "a recycled segment"
    );
    let first = log.first_index();
    drop(log);
    let (log, report) = Log::open(dir.path(), options(16 << 10)).expect("reopen");
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert_eq!(read_all(&log), all[(first - 1) as usize..]);
}

#[test]
fn a_torn_prepared_write_is_dropped_at_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), options(64 << 10)).expect("open");
    let kept = batch(1, 3, 1, 500);
    append_by_caller(&mut log, &kept);
    let torn = batch(4, 3, 1, 500);
    let prepared = prepare(&mut log, &torn).expect("fits");
    // The crash comes after part of the write reached the disk, before it was completed.
    write_prepared_bytes(&log, &prepared, 1000);
    drop(prepared);
    drop(log);
    let (mut log, report) = Log::open(dir.path(), options(64 << 10)).expect("reopen");
    assert!(report.torn_tail.is_some(), "{report:?}");
    assert_eq!(read_all(&log), kept);
    append_by_caller(&mut log, &torn);
    drop(log);
    let (log, report) = Log::open(dir.path(), options(64 << 10)).expect("reopen");
    assert!(report.torn_tail.is_none(), "{report:?}");
    let mut all = kept;
    all.extend(torn);
    assert_eq!(read_all(&log), all);
}

#[test]
fn a_group_that_does_not_fit_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), options(16 << 10)).expect("open");
    let first = batch(1, 3, 1, 3000);
    append_by_caller(&mut log, &first);
    let generation = log.active_file_generation();
    let big = batch(4, 4, 1, 3000);
    assert!(prepare(&mut log, &big).is_none());
    assert_eq!(read_all(&log), first);
    // The log is not left waiting for a completion: a plain append rolls to a new segment.
    log.append(&big).expect("append");
    assert_ne!(log.active_file_generation(), generation);
    let mut all = first;
    all.extend(big);
    assert_eq!(read_all(&log), all);
}

#[test]
fn prepare_refuses_records_that_do_not_continue_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), options(64 << 10)).expect("open");
    let records = encode_records(&batch(5, 2, 1, 10), RECORD_BYTES_MAX).expect("encode");
    assert!(log.prepare_append(&records).is_err());
    append_by_caller(&mut log, &batch(1, 2, 1, 10));
}

#[test]
#[should_panic(expected = "while a prepared append is not completed")]
fn changing_the_log_before_completing_a_prepared_append_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), options(64 << 10)).expect("open");
    log.append(&batch(1, 2, 1, 10)).expect("append");
    let _prepared = prepare(&mut log, &batch(3, 2, 1, 10)).expect("fits");
    let _ = log.truncate_suffix(2);
}
