//! Durable append throughput of the node's log write path.
//!
//! What is measured is the path a node takes (`ringraft::runtime::disk`): appends queued by
//! concurrent tasks on one glommio executor are gathered by the disk task into groups, each
//! group is laid out by the log, copied once into a DMA buffer and written as one
//! `O_DIRECT | O_DSYNC` write on the executor's io_uring; an append counts once its group's
//! write completed (fsync on: the write is durable when it completes). Segments are 64 MiB,
//! preallocated and zeroed, or recycled after the untimed purge between samples, as compaction
//! does on a running node.
//!
//! Workload: entries of 1 KiB payload (Normal, one term), each appender task appending a batch
//! of `B` entries and waiting for it to be durable before the next, `A` appender tasks at once:
//! `append_B_xA`. Throughput is in records (entries) per second; MiB/s = records/s / 1024 for
//! 1 KiB payloads (plus 45 bytes of record framing per entry, and zero padding to 4096 per
//! group write). Beside it, for reference, a plain loop of 4 KiB `pwrite` + `fdatasync`
//! overwriting a preallocated, zeroed file.
//!
//! Files go under `RINGRAFT_BENCH_DIR` (default: this crate's `target/`), which must be a real
//! disk filesystem, not tmpfs.
//!
//! Run: `cargo bench --bench log -- --warm-up-time 1 --measurement-time 3`

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringraft::core::{Entry, EntryKind};
use ringraft::runtime::disk::DiskQueue;
use ringraft::runtime::storage::{Recovery, Storage, WriteJob};

const PAYLOAD_BYTES: usize = 1024;
const SEGMENT_BYTES: u64 = 64 << 20;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var("RINGRAFT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::Builder::new()
        .prefix("log-bench")
        .tempdir_in(base)
        .expect("tempdir")
}

fn batch(first: u64, n: usize, payload: &Bytes) -> Vec<Entry> {
    (0..n as u64)
        .map(|i| Entry {
            term: 1,
            index: first + i,
            kind: EntryKind::Normal,
            data: payload.clone(),
            record: None,
        })
        .collect()
}

/// One measurement: `appenders` tasks, each appending `iterations` batches of `batch` entries.
struct Run {
    appenders: usize,
    batch: usize,
    iterations: u64,
}

/// A glommio executor thread that owns a node's storage and its disk task, and runs
/// measurements on request (the executor waits for a request only when nothing is in flight).
struct Writer {
    requests: mpsc::Sender<Run>,
    took: mpsc::Receiver<Duration>,
}

impl Writer {
    fn start(dir: PathBuf) -> Writer {
        let (requests, request_rx) = mpsc::channel::<Run>();
        let (took_tx, took) = mpsc::channel();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(4 << 20)
            .name("log-bench")
            .spawn(move || async move {
                let (storage, _, report, _) =
                    Storage::open(&dir, SEGMENT_BYTES, Recovery::Strict).expect("open storage");
                assert!(
                    report.o_direct,
                    "bench directory does not support O_DIRECT (tmpfs?)"
                );
                let queue = Rc::new(DiskQueue::start(storage));
                let next_index = Rc::new(Cell::new(1u64));
                let payload = Bytes::from(vec![0x5Au8; PAYLOAD_BYTES]);
                while let Ok(run) = request_rx.recv() {
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for _ in 0..run.appenders {
                        let (queue, next_index, payload) =
                            (queue.clone(), next_index.clone(), payload.clone());
                        tasks.push(glommio::spawn_local(async move {
                            for _ in 0..run.iterations {
                                let first = next_index.get();
                                next_index.set(first + run.batch as u64);
                                let job = WriteJob {
                                    entries: batch(first, run.batch, &payload),
                                    ..WriteJob::default()
                                };
                                let seq = queue.submit(job).await;
                                queue.wait_durable(seq).await;
                            }
                        }));
                    }
                    for task in tasks {
                        task.await;
                    }
                    let took = start.elapsed();
                    // Untimed: hand whole segments back for reuse, as compaction does.
                    let seq = queue
                        .submit(WriteJob {
                            purge_upto: Some(next_index.get().saturating_sub(2)),
                            ..WriteJob::default()
                        })
                        .await;
                    queue.wait_durable(seq).await;
                    if took_tx.send(took).is_err() {
                        break;
                    }
                }
            })
            .expect("executor");
        Writer { requests, took }
    }

    fn measure(&self, run: Run) -> Duration {
        self.requests.send(run).expect("bench executor stopped");
        self.took.recv().expect("bench executor stopped")
    }
}

fn node_path(c: &mut Criterion) {
    let dir = bench_dir();
    let writer = Writer::start(dir.path().to_path_buf());
    let mut group = c.benchmark_group("log_append_node_path");
    for (batch, appenders) in [(1usize, 1usize), (1, 64), (1, 256), (16, 64), (256, 4)] {
        group.throughput(Throughput::Elements((batch * appenders) as u64));
        group.bench_function(format!("append_{batch}_x{appenders}"), |b| {
            b.iter_custom(|iters| {
                writer.measure(Run {
                    appenders,
                    batch,
                    iterations: iters,
                })
            })
        });
    }
    group.finish();
}

fn plain_write_fdatasync(c: &mut Criterion) {
    const FILE_BYTES: u64 = 64 << 20;
    let dir = bench_dir();
    let path = dir.path().join("plain");
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("create");
    let zeros = vec![0u8; 1 << 20];
    for at in (0..FILE_BYTES).step_by(zeros.len()) {
        file.write_all_at(&zeros, at).expect("zero");
    }
    file.sync_all().expect("sync");
    let block = vec![0xA5u8; 4096];
    let mut offset = 0u64;
    let mut group = c.benchmark_group("plain");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pwrite_4k_fdatasync_overwrite", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                file.write_all_at(&block, offset).expect("write");
                file.sync_data().expect("fdatasync");
                offset = (offset + 4096) % FILE_BYTES;
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn all(c: &mut Criterion) {
    plain_write_fdatasync(c);
    node_path(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = all
}
criterion_main!(benches);
