//! What applying a committed write costs the state machine: 1 KiB puts with client sessions over
//! a key space of 100k 16-byte keys (the `3node-1kb` shape), applied in log order to a store
//! that already holds every key, so each put replaces a value in a map far larger than the
//! caches. Also the clone a snapshot takes on the Raft loop.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringraft::kv::{Command, KvStore, Op};

const KEYS: u64 = 100_000;
const BATCH: u64 = 1024;

fn put(sequence: u64, key: u64) -> Vec<u8> {
    Command {
        client_id: 1 + sequence % 8,
        sequence,
        op: Op::Put {
            key: format!("key-{key:012}").into_bytes(),
            value: vec![b'v'; 1024],
        },
    }
    .encode()
}

/// A store holding every key, and the index and sequence it reached.
fn full_store() -> (KvStore, u64) {
    let mut store = KvStore::new();
    for key in 0..KEYS {
        store.apply(key + 1, &put(key + 1, key));
    }
    (store, KEYS)
}

fn bench(c: &mut Criterion) {
    let (mut store, index) = full_store();
    let index = std::cell::Cell::new(index);
    // Keys spread over the space the way a uniform workload spreads them.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut group = c.benchmark_group("kv_apply");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("put_1kib_100k_keys", |b| {
        b.iter_batched(
            || {
                (0..BATCH)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        put(index.get() + 1 + i, x % KEYS)
                    })
                    .collect::<Vec<_>>()
            },
            |entries| {
                for data in &entries {
                    index.set(index.get() + 1);
                    store.apply(index.get(), data);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
    c.bench_function("kv_clone_100k_keys", |b| b.iter(|| store.clone()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
