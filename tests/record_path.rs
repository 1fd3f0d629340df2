//! The record batch is the unit everywhere: a command is encoded once, by the leader, into a
//! record with its CRC; those bytes travel in AppendEntries, are checked once by the follower
//! and written to its log as they are, and recovery reads them back. These tests follow one
//! batch along that path and check, by buffer identity, that no step copies or re-encodes a
//! record where the module docs say it does not (so a copy added on the hot path fails here);
//! and that a log of a record format version this build does not read is refused, naming it.

use std::fs;
use std::ops::Range;

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use ringraft::core::{Entry, EntryKind, Envelope, Message};
use ringraft::log::record::{encode_single_with, records_for, RECORD_BYTES_MAX};
use ringraft::log::{segment_file_name, Log, StorageError};
use ringraft::runtime::disk::DiskQueue;
use ringraft::runtime::storage::{Recovery, Storage, WriteJob};
use ringraft::wire::{decode_peer_message_shared, encode_peer};

mod log_common;
use log_common::{options, read_all};

/// Where `inner`'s bytes lie inside `outer`'s, if they do (same memory, not equal bytes).
fn within(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start..start + inner.len())
}

/// Entries as the leader's runtime proposes them: each command written once, straight into
/// its record.
fn proposals(first: u64, n: u64, term: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|index| {
            let value = vec![(index % 251) as u8; 1024];
            let (record, data) =
                encode_single_with(term, index, EntryKind::Normal, value.len(), |out| {
                    out.extend_from_slice(&value)
                })
                .expect("encode");
            Entry {
                term,
                index,
                kind: EntryKind::Normal,
                data,
                record: Some(record),
            }
        })
        .collect()
}

#[test]
fn a_leaders_records_reach_a_followers_disk_and_recovery_unchanged() {
    let leader = proposals(1, 40, 3);
    // Leader: the command is the record's payload, not a second buffer.
    for entry in &leader {
        let record = entry
            .record
            .as_ref()
            .expect("a proposal carries its record");
        assert!(
            within(record, &entry.data).is_some(),
            "entry {}: the command is a copy, not the record's payload",
            entry.index
        );
    }
    // The wire: one AppendEntries, its body as a follower receives it.
    let envelope = Envelope {
        from: 1,
        to: 2,
        message: Message::AppendEntries {
            term: 3,
            prev_log_index: 0,
            prev_log_term: 0,
            leader_commit: 0,
            entries: leader.clone(),
        },
    };
    let mut fbb = FlatBufferBuilder::new();
    let body = Bytes::copy_from_slice(encode_peer(&envelope, Some(7), &mut fbb));
    let received = decode_peer_message_shared(&body).expect("decode");
    let Message::AppendEntries { entries, .. } = received.envelope.message else {
        panic!("not an AppendEntries");
    };
    assert_eq!(entries, leader);
    // Follower: each record is checked in place, a slice of the received frame, byte for byte
    // the leader's record; the entry's data is a slice of it.
    for (got, sent) in entries.iter().zip(&leader) {
        let record = got
            .record
            .as_ref()
            .expect("a received entry keeps its record");
        assert!(
            within(&body, record).is_some(),
            "entry {}: the received record was copied out of the frame",
            got.index
        );
        assert_eq!(record, sent.record.as_ref().expect("sent"));
        assert!(within(record, &got.data).is_some());
    }
    // The disk: the follower's log takes the records as they are, not re-encoded...
    let mut records = Vec::new();
    records_for(&entries, RECORD_BYTES_MAX, &mut records).expect("records");
    assert_eq!(records.len(), entries.len());
    for (record, entry) in records.iter().zip(&entries) {
        assert_eq!(
            record.bytes().as_ptr(),
            entry.record.as_ref().expect("record").as_ptr(),
            "entry {}: re-encoded for the disk",
            entry.index
        );
    }
    // ...and writes them through the node's path, where they land as the same bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let to_write = entries.clone();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let storage = Storage::open(&path, 1 << 20, Recovery::Strict)
                .expect("open")
                .0;
            let queue = DiskQueue::start(storage);
            let seq = queue
                .submit(WriteJob {
                    entries: to_write,
                    ..WriteJob::default()
                })
                .await;
            queue.wait_durable(seq).await;
        })
        .expect("executor")
        .join()
        .expect("join");
    let segment = fs::read(dir.path().join("log").join(segment_file_name(1))).expect("segment");
    let sent: Vec<u8> = leader
        .iter()
        .flat_map(|e| e.record.as_ref().expect("record").to_vec())
        .collect();
    assert_eq!(
        &segment[..sent.len()],
        &sent[..],
        "the disk holds other bytes than the wire"
    );
    // Recovery: the same entries, each again carrying its record.
    let (log, report) = Log::open(&dir.path().join("log"), options(1 << 20)).expect("reopen");
    assert!(report.torn_tail.is_none());
    let recovered = read_all(&log);
    assert_eq!(recovered, leader);
    for (got, sent) in recovered.iter().zip(&leader) {
        assert_eq!(got.record, sent.record);
    }
}

#[test]
fn a_log_of_another_record_format_version_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut log, _) = Log::open(dir.path(), options(64 << 10)).expect("open");
        log.append(&proposals(1, 3, 1)).expect("append");
    }
    // Rewrite the first record as a build of format version 9 would have written it: the same
    // record with another version, its CRC made again (so it is intact, not damaged).
    let path = dir.path().join(segment_file_name(1));
    let mut bytes = fs::read(&path).expect("read");
    let total = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    bytes[8..10].copy_from_slice(&9u16.to_le_bytes());
    let crc = crc32fast::hash(&bytes[8..total]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).expect("write");
    let err = match Log::open(dir.path(), options(64 << 10)) {
        Ok(_) => panic!("a log of format version 9 was opened"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            StorageError::FormatVersion {
                found: 9,
                offset: 0,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("format version 9") && message.contains("reads version 1"),
        "{message}"
    );
    // The same bytes with a CRC that does not check are damage, not another format.
    bytes[4] ^= 1;
    fs::write(&path, &bytes).expect("write");
    assert!(!matches!(
        Log::open(dir.path(), options(64 << 10)),
        Err(StorageError::FormatVersion { .. })
    ));
}
