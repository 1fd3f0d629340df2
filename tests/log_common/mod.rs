//! Fixtures shared by the log's integration tests.
// Each test binary that includes these fixtures uses only some of them.
#![allow(dead_code)]

use bytes::Bytes;
use ringraft::core::{Entry, EntryKind};
use ringraft::log::{Log, LogOptions};

/// No spare segment thread: these tests reopen logs many times, and spares are covered by the
/// model test.
pub fn options(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        prepare_spare: false,
        ..LogOptions::default()
    }
}

/// `n` entries from `first` in `term`, every fifth a no-op, payloads filled with a byte that
/// depends on the index (so that a misplaced entry does not pass for the right one).
pub fn batch(first: u64, n: usize, term: u64, payload_bytes: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let index = first + i as u64;
            Entry {
                term,
                index,
                kind: if index.is_multiple_of(5) {
                    EntryKind::Noop
                } else {
                    EntryKind::Normal
                },
                data: Bytes::from(vec![(index % 251) as u8; payload_bytes]),
                record: None,
            }
        })
        .collect()
}

/// Every entry the log holds.
pub fn read_all(log: &Log) -> Vec<Entry> {
    log.read(log.first_index(), log.last_index() + 1, usize::MAX)
        .expect("read")
}
