//! Recovery on real files: torn writes at every byte offset, flipped bits, zero tails, and broken
//! segment layouts (missing, renamed, duplicated files).

use std::fs;
use std::path::{Path, PathBuf};

use ringraft::core::Entry;
use ringraft::log::record::check_record;
use ringraft::log::{segment_file_name, Log, StorageError};

mod log_common;
use log_common::{batch, options, read_all};

/// Builds a log of `batches` appends of 3 entries each in one 64 KiB segment; returns the
/// expected entries and the path of the segment.
fn build(dir: &Path, batches: usize, payload_bytes: usize) -> (Vec<Entry>, PathBuf) {
    let (mut log, _) = Log::open(dir, options(64 << 10)).expect("open");
    let mut all = Vec::new();
    for b in 0..batches {
        let entries = batch(1 + 3 * b as u64, 3, 1 + b as u64 / 2, payload_bytes);
        log.append(&entries).expect("append");
        all.extend(entries);
    }
    assert_eq!(read_all(&log), all);
    (all, dir.join(segment_file_name(1)))
}

/// Offset and length of the last record: each append above is one group, starting on a
/// 4096-byte boundary; the record is header (40) + 3 * (5 + payload).
fn last_record(batches: usize, payload_bytes: usize) -> (usize, usize) {
    let len = 40 + 3 * (5 + payload_bytes);
    let per_group = len.div_ceil(4096) * 4096;
    ((batches - 1) * per_group, len)
}

fn check_reopen_after_damage(dir: &Path, expected_before: &[Entry], expect_torn: bool) {
    let (mut log, report) = Log::open(dir, options(64 << 10)).expect("reopen after a torn write");
    assert_eq!(
        report.torn_tail.is_some(),
        expect_torn,
        "report: {report:?}"
    );
    assert_eq!(read_all(&log), expected_before);
    let next = batch(log.last_index() + 1, 2, 9, 10);
    log.append(&next).expect("append after recovery");
    drop(log);
    let (log, report) = Log::open(dir, options(64 << 10)).expect("reopen after append");
    assert!(
        report.torn_tail.is_none(),
        "second open found a torn tail: {report:?}"
    );
    let mut want = expected_before.to_vec();
    want.extend(next);
    assert_eq!(read_all(&log), want);
}

#[test]
fn torn_write_at_every_offset_of_the_last_batch_zeroed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (batches, payload) = (4, 20);
    let (all, seg) = build(dir.path(), batches, payload);
    let pristine = fs::read(&seg).expect("read segment");
    let (start, len) = last_record(batches, payload);
    let before = &all[..all.len() - 3];
    for cut in start..start + len {
        let mut damaged = pristine.clone();
        damaged[cut..].fill(0);
        fs::write(&seg, &damaged).expect("write damaged");
        check_reopen_after_damage(dir.path(), before, cut > start);
    }
    fs::write(&seg, &pristine).expect("restore");
    let (log, report) = Log::open(dir.path(), options(64 << 10)).expect("open pristine");
    assert!(report.torn_tail.is_none());
    assert_eq!(read_all(&log), all);
}

#[test]
fn torn_write_at_every_offset_of_the_last_batch_file_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (batches, payload) = (3, 7);
    let (all, seg) = build(dir.path(), batches, payload);
    let pristine = fs::read(&seg).expect("read segment");
    let (start, len) = last_record(batches, payload);
    let before = &all[..all.len() - 3];
    for cut in start..start + len {
        fs::write(&seg, &pristine[..cut]).expect("write truncated");
        check_reopen_after_damage(dir.path(), before, cut > start);
    }
}

#[test]
fn flipped_bit_in_tail_batch_is_a_torn_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (all, seg) = build(dir.path(), 3, 30);
    let (start, len) = last_record(3, 30);
    let mut bytes = fs::read(&seg).expect("read");
    bytes[start + len - 7] ^= 0x10;
    fs::write(&seg, &bytes).expect("write");
    let (log, report) = Log::open(dir.path(), options(64 << 10)).expect("open");
    let torn = report.torn_tail.expect("torn tail reported");
    assert_eq!(torn.offset, start as u64);
    assert!(torn.reason.contains("CRC"), "{}", torn.reason);
    assert_eq!(read_all(&log), all[..6]);
}

#[test]
fn flipped_bit_in_middle_batch_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, seg) = build(dir.path(), 4, 30);
    let (start, _) = last_record(2, 30); // the second record
    let mut bytes = fs::read(&seg).expect("read");
    bytes[start + 50] ^= 0x01;
    fs::write(&seg, &bytes).expect("write");
    let err = Log::open(dir.path(), options(64 << 10))
        .err()
        .expect("open must refuse");
    match &err {
        StorageError::Corrupt { file, offset, .. } => {
            assert_eq!(file, &seg);
            assert_eq!(*offset, start as u64);
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&segment_file_name(1)) && message.contains(&format!("offset {start}")),
        "{message}"
    );
}

#[test]
fn zero_filled_tail_and_garbage_after_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (all, seg) = build(dir.path(), 3, 30);
    let (start, _) = last_record(3, 30);
    let mut bytes = fs::read(&seg).expect("read");
    bytes[start..].fill(0);
    fs::write(&seg, &bytes).expect("write");
    let (log, report) = Log::open(dir.path(), options(64 << 10)).expect("open");
    assert!(report.torn_tail.is_none());
    assert_eq!(read_all(&log), all[..6]);
    drop(log);
    // Non-zero garbage far after the end (a later block of a torn multi-block write).
    bytes[40_000..40_100].fill(0xAB);
    fs::write(&seg, &bytes).expect("write");
    let (log, report) = Log::open(dir.path(), options(64 << 10)).expect("open");
    assert!(report.torn_tail.is_some());
    assert_eq!(read_all(&log), all[..6]);
    drop(log);
    assert!(
        ringraft::log::verify(dir.path()).is_clean(),
        "the garbage was zeroed"
    );
}

/// Five or more segments of 16 KiB with 1 KiB entries.
fn build_multi(dir: &Path) -> (Vec<Entry>, Vec<PathBuf>) {
    let (mut log, _) = Log::open(dir, options(16 << 10)).expect("open");
    let mut all = Vec::new();
    for b in 0..30u64 {
        let entries = batch(1 + 2 * b, 2, 1, 1000);
        log.append(&entries).expect("append");
        all.extend(entries);
    }
    let mut segs: Vec<PathBuf> = fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 5, "{segs:?}");
    (all, segs)
}

fn expect_layout_error(dir: &Path, names: &str) -> String {
    let err = Log::open(dir, options(16 << 10))
        .err()
        .expect("open must refuse");
    let message = err.to_string();
    assert!(matches!(err, StorageError::Layout { .. }), "{message}");
    assert!(message.contains(names), "{message} should name {names}");
    message
}

fn name(p: &Path) -> String {
    p.file_name().expect("name").to_string_lossy().into_owned()
}

#[test]
fn multi_segment_log_reopens_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (all, _) = build_multi(dir.path());
    let (log, report) = Log::open(dir.path(), options(16 << 10)).expect("open");
    assert!(report.torn_tail.is_none());
    assert_eq!(read_all(&log), all);
}

#[test]
fn missing_middle_segment_is_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, segs) = build_multi(dir.path());
    fs::remove_file(&segs[2]).expect("rm");
    let message = expect_layout_error(dir.path(), &name(&segs[3]));
    assert!(message.contains("gap"), "{message}");
}

#[test]
fn renamed_segment_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, segs) = build_multi(dir.path());
    let renamed = dir.path().join("00000000000000000001.seg.old.seg");
    fs::rename(&segs[1], &renamed).expect("rename");
    expect_layout_error(dir.path(), &name(&renamed));
    // Renamed to a well-formed but wrong index: its first record does not match the name.
    let first = ringraft::log::parse_segment_name(&name(&segs[1])).expect("parse");
    let wrong = dir.path().join(segment_file_name(first + 1));
    fs::rename(&renamed, &wrong).expect("rename");
    let message = expect_layout_error(dir.path(), &name(&wrong));
    assert!(
        message.contains("misnamed") || message.contains("gap"),
        "{message}"
    );
}

#[test]
fn duplicated_segment_is_an_overlap_or_misnamed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, segs) = build_multi(dir.path());
    let first = ringraft::log::parse_segment_name(&name(&segs[1])).expect("parse");
    let copy = dir.path().join(segment_file_name(first + 1));
    fs::copy(&segs[1], &copy).expect("copy");
    let message = expect_layout_error(dir.path(), &name(&copy));
    assert!(
        message.contains("overlap") || message.contains("misnamed"),
        "{message}"
    );
}

#[test]
fn corruption_in_an_earlier_segment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, segs) = build_multi(dir.path());
    let mut bytes = fs::read(&segs[1]).expect("read");
    bytes[100] ^= 0x04;
    fs::write(&segs[1], &bytes).expect("write");
    let err = Log::open(dir.path(), options(16 << 10))
        .err()
        .expect("refuse");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&name(&segs[1])), "{err}");
}

#[test]
fn leftover_temp_file_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (all, _) = build(dir.path(), 2, 10);
    let tmp = dir.path().join(format!("{}.tmp", segment_file_name(7)));
    fs::write(&tmp, [1u8; 100]).expect("write tmp");
    let (log, report) = Log::open(dir.path(), options(64 << 10)).expect("open");
    assert_eq!(report.removed_temp_files, vec![tmp.clone()]);
    assert!(!tmp.exists());
    assert_eq!(read_all(&log), all);
}

/// One append whose entries change term twice is three records packed into one group write;
/// a crash that persists only a prefix of that write keeps exactly the complete records.
#[test]
fn torn_write_inside_a_multi_record_group_keeps_complete_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = Log::open(dir.path(), options(64 << 10)).expect("open");
    let first = batch(1, 4, 1, 50);
    log.append(&first).expect("append");
    let mut group = batch(5, 2, 2, 40);
    group.extend(batch(7, 2, 3, 40));
    group.extend(batch(9, 2, 4, 40));
    log.append(&group).expect("append");
    drop(log);
    let seg = dir.path().join(segment_file_name(1));
    let pristine = fs::read(&seg).expect("read");
    let record_len = 40 + 2 * (5 + 40);
    let group_start = 4096;
    for cut in group_start..group_start + 3 * record_len {
        let mut damaged = pristine.clone();
        damaged[cut..].fill(0);
        fs::write(&seg, &damaged).expect("write");
        let complete = (cut - group_start) / record_len;
        let (log, report) =
            Log::open(dir.path(), options(64 << 10)).expect("open after torn group");
        let mut want = first.clone();
        want.extend_from_slice(&group[..2 * complete]);
        assert_eq!(read_all(&log), want, "cut at {cut}");
        let at_boundary = (cut - group_start) % record_len == 0;
        assert_eq!(
            report.torn_tail.is_some(),
            !at_boundary,
            "cut at {cut}: {report:?}"
        );
    }
    // A flipped bit in the middle record, with a valid record after it in the same write, is
    // corruption (the log cannot tell it from damage to acknowledged data).
    let mut damaged = pristine.clone();
    damaged[group_start + record_len + 60] ^= 0x02;
    fs::write(&seg, &damaged).expect("write");
    let err = Log::open(dir.path(), options(64 << 10))
        .err()
        .expect("refuse");
    assert!(
        err.to_string()
            .contains(&format!("offset {}", group_start + record_len)),
        "{err}"
    );
}

/// 16 KiB segments of 4 one-block appends (2 entries of 1000 bytes); 12 appends fill segments
/// 1, 9 and 17, a purge at 16 recycles the first two, and `more` appends roll into a recycled
/// segment 25 (a marker block, then 3 blocks of data). Its old life was segment 9, so before the
/// new appends its blocks 1..3 hold the stale records 11..12, 13..14 and 15..16. Returns the
/// entries the log holds and the recycled segment's path.
fn recycled_setup(dir: &Path, more: u64) -> (Vec<Entry>, PathBuf) {
    let (mut log, _) = Log::open(dir, options(16 << 10)).expect("open");
    let mut all = Vec::new();
    for b in 0..12 + more {
        let entries = batch(1 + 2 * b, 2, 1, 1000);
        log.append(&entries).expect("append");
        all.extend(entries);
        if b == 11 {
            log.purge_prefix(16).expect("purge");
        }
    }
    assert_eq!(log.first_index(), 17);
    let seg = dir.join(segment_file_name(25));
    let bytes = fs::read(&seg).expect("read recycled segment");
    assert_eq!(
        bytes[..4],
        [0x47, 0x53, 0x52, 0x52],
        "segment 25 is a recycled one"
    );
    (all.split_off(16), seg)
}

const BLOCK: usize = 4096;

#[test]
fn recycled_segment_with_stale_records_after_the_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (all, seg) = recycled_setup(dir.path(), 1);
    let mut bytes = fs::read(&seg).expect("read");
    // Block 1 holds 25..26, block 2 the zero block that ends the data, block 3 a stale record.
    assert!(bytes[2 * BLOCK..3 * BLOCK].iter().all(|&b| b == 0));
    let stale = check_record(&bytes[3 * BLOCK..]).expect("a stale record after the tail");
    assert_eq!((stale.first_index, stale.last_index()), (15, 16));
    let (log, report) = Log::open(dir.path(), options(16 << 10)).expect("open");
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert_eq!(read_all(&log), all);
    drop(log);
    assert!(ringraft::log::verify(dir.path()).is_clean());

    // A stale record right where the data ends (no zero block in between) also ends the data:
    // its indexes lie below the segment's name, so it cannot be the next record.
    let stale_bytes = bytes[3 * BLOCK..4 * BLOCK].to_vec();
    bytes[2 * BLOCK..3 * BLOCK].copy_from_slice(&stale_bytes);
    fs::write(&seg, &bytes).expect("write");
    let (mut log, report) = Log::open(dir.path(), options(16 << 10)).expect("open");
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert_eq!(read_all(&log), all);

    // Appending over stale bytes and reopening keeps exactly the log's entries.
    let more = batch(27, 2, 2, 1000);
    log.append(&more).expect("append");
    drop(log);
    let (log, report) = Log::open(dir.path(), options(16 << 10)).expect("open");
    assert!(report.torn_tail.is_none(), "{report:?}");
    let mut want = all.clone();
    want.extend(more);
    assert_eq!(read_all(&log), want);
}

#[test]
fn torn_write_in_a_recycled_segment_is_dropped_and_corruption_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (all, seg) = recycled_setup(dir.path(), 2);
    let pristine = fs::read(&seg).expect("read");

    // The last record (27..28, block 2) torn: dropped, reported once.
    let mut damaged = pristine.clone();
    damaged[2 * BLOCK + 700] ^= 0x10;
    fs::write(&seg, &damaged).expect("write");
    let (log, report) = Log::open(dir.path(), options(16 << 10)).expect("open");
    let torn = report.torn_tail.expect("torn tail");
    assert_eq!(torn.offset, 2 * BLOCK as u64);
    assert_eq!(read_all(&log), all[..all.len() - 2]);
    drop(log);
    let (log, report) = Log::open(dir.path(), options(16 << 10)).expect("reopen");
    assert!(
        report.torn_tail.is_none(),
        "the torn write was zeroed: {report:?}"
    );
    assert_eq!(read_all(&log), all[..all.len() - 2]);
    drop(log);
    assert!(ringraft::log::verify(dir.path()).is_clean());

    // The record before it (25..26, block 1) damaged while 27..28 is valid: corruption.
    let mut damaged = pristine.clone();
    damaged[BLOCK + 700] ^= 0x10;
    fs::write(&seg, &damaged).expect("write");
    let err = Log::open(dir.path(), options(16 << 10))
        .err()
        .expect("refuse");
    assert!(
        matches!(err, StorageError::Corrupt { offset, .. } if offset == BLOCK as u64),
        "{err}"
    );
}
