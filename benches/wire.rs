//! Wire codec benchmarks. In-process, no TCP, no fsync: measures only encoding a core
//! `AppendEntries` of 256 entries x 1 KiB payload (256 KiB) into a `PeerMessage` body, and
//! verifying + decoding it back, with the INTERIM entry batch encoding of `wire/entries.rs`
//! (copies every payload; the record-batch codec will replace it).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flatbuffers::FlatBufferBuilder;
use ringraft::core::{Entry, EntryKind, Envelope, Message};
use ringraft::wire::{decode_peer, decode_peer_message_shared, encode_peer};

const ENTRIES: u64 = 256;
const PAYLOAD_BYTES: usize = 1024;

fn append_entries() -> Envelope {
    let entries = (1..=ENTRIES)
        .map(|index| Entry {
            term: 3,
            index: 1000 + index,
            kind: EntryKind::Normal,
            data: Bytes::from(vec![index as u8; PAYLOAD_BYTES]),
            record: None,
        })
        .collect();
    Envelope {
        from: 1,
        to: 2,
        message: Message::AppendEntries {
            term: 3,
            prev_log_index: 1000,
            prev_log_term: 3,
            leader_commit: 990,
            entries,
        },
    }
}

fn wire(c: &mut Criterion) {
    let envelope = append_entries();
    let mut fbb = FlatBufferBuilder::with_capacity(ENTRIES as usize * (PAYLOAD_BYTES + 64));
    let body = Bytes::from(encode_peer(&envelope, Some(7), &mut fbb).to_vec());

    let mut group = c.benchmark_group("wire/append_entries_256x1KiB");
    group.throughput(Throughput::Bytes(ENTRIES * PAYLOAD_BYTES as u64));
    group.bench_function("encode", |b| {
        b.iter(|| black_box(encode_peer(black_box(&envelope), Some(7), &mut fbb).len()))
    });
    group.bench_function("decode_copy", |b| {
        b.iter(|| black_box(decode_peer(black_box(&body)).is_ok()))
    });
    group.bench_function("decode_shared", |b| {
        b.iter(|| black_box(decode_peer_message_shared(black_box(&body)).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, wire);
criterion_main!(benches);
