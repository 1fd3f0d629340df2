//! Durable append throughput of the log.
//!
//! Workload: entries of 1 KiB payload (Normal, one term), appended through the group-commit
//! [`LogWriter`] into 64 MiB preallocated segments, zeroed or recycled (the untimed purge after
//! each sample hands up to `recycled_segments_max` segments back for reuse, as compaction does
//! on a running node; `RINGRAFT_BENCH_RECYCLE=0` turns recycling off); every append is waited on until its
//! write *and* fdatasync completed (fsync on). Batch sizes 1, 16 and 256 from one appender, and
//! 64 concurrent appender threads each appending a batch of 1, 16 or 256 and waiting for it. Both write
//! paths are measured: io_uring (O_DIRECT write linked to fdatasync, one submit) and plain
//! `pwrite` + `fdatasync`. Beside them, a plain loop of 4 KiB `pwrite` + `fdatasync` overwriting a
//! preallocated, zeroed file, for reference. Throughput is in records (entries) per second;
//! MiB/s = records/s / 1024 for 1 KiB payloads (plus 5 bytes of framing per entry and 40 per
//! record, and zero padding to 4096 per group write).
//!
//! `batch_N_x1_pipelined` is one producer that queues appends without waiting for each (waiting
//! only when the bounded queue is full) and waits for the last one at the end of the sample.
//!
//! A second group compares the write primitive alone, one 256-entry record (~263 KiB, one
//! aligned write + one fdatasync per iteration): the log's io_uring path, its pwrite path, and
//! glommio's `DmaFile`.
//!
//! Files go under `RINGRAFT_BENCH_DIR` (default: this crate's `target/`), which must be a real
//! disk filesystem, not tmpfs. Segments written during a sample are purged after it (untimed).
//!
//! Run: `cargo bench --bench log -- --warm-up-time 1 --measurement-time 3`

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringraft::core::{Entry, EntryKind};
use ringraft::log::{EncodedRecord, IoMode, Log, LogOptions, LogWriter, LogWriterOptions};

const PAYLOAD_BYTES: usize = 1024;
const APPENDERS: usize = 64;

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

/// Segment size: 64 MiB unless `RINGRAFT_BENCH_SEGMENT_MIB` says otherwise.
fn segment_bytes() -> u64 {
    std::env::var("RINGRAFT_BENCH_SEGMENT_MIB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(64)
        << 20
}

/// The log's options: 64 MiB segments (or `RINGRAFT_BENCH_SEGMENT_MIB`), recycling on unless
/// `RINGRAFT_BENCH_RECYCLE=0`.
fn log_options(io_mode: IoMode) -> LogOptions {
    let recycle = std::env::var("RINGRAFT_BENCH_RECYCLE").map_or(true, |v| v != "0");
    let defaults = LogOptions::default();
    LogOptions {
        segment_bytes: segment_bytes(),
        io_mode,
        recycled_segments_max: if recycle {
            defaults.recycled_segments_max
        } else {
            0
        },
        ..defaults
    }
}

fn batch(first: u64, n: usize, payload: &Bytes) -> Vec<Entry> {
    (0..n as u64)
        .map(|i| Entry {
            term: 1,
            index: first + i,
            kind: EntryKind::Normal,
            data: payload.clone(),
        })
        .collect()
}

fn writer(dir: &std::path::Path, io_mode: IoMode) -> LogWriter {
    let (log, report) = Log::open(dir, log_options(io_mode)).expect("open log");
    assert!(
        report.o_direct,
        "bench directory does not support O_DIRECT (tmpfs?)"
    );
    if io_mode == IoMode::Uring {
        assert!(report.io_uring);
    }
    let mut options = LogWriterOptions::default();
    if let Some(mib) = std::env::var("RINGRAFT_BENCH_GROUP_MIB")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        options.group_bytes_max = mib << 20;
    }
    LogWriter::start(log, options).expect("start writer")
}

/// Untimed cleanup between samples so the disk does not fill up.
fn purge(w: &LogWriter) {
    let last = w.next_index() - 1;
    w.purge_prefix(last.saturating_sub(1)).expect("purge");
}

fn single_appender(c: &mut Criterion, io_name: &str, io_mode: IoMode) {
    let payload = Bytes::from(vec![0x5Au8; PAYLOAD_BYTES]);
    let mut group = c.benchmark_group(format!("log_append_{io_name}"));
    for size in [1usize, 16, 256] {
        let dir = bench_dir();
        let w = writer(dir.path(), io_mode);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("batch_{size}_x1_appender"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let ticket = w
                        .append(&batch(w.next_index(), size, &payload))
                        .expect("append");
                    w.wait_durable(ticket).expect("durable");
                }
                let took = start.elapsed();
                purge(&w);
                took
            })
        });
    }
    for size in [1usize, 256] {
        let dir = bench_dir();
        let w = writer(dir.path(), io_mode);
        group.throughput(Throughput::Elements(size as u64));
        // One producer that does not wait for each append (as a Raft leader does): it queues
        // (waiting only when the bounded queue is full) and waits for the last ticket at the end.
        group.bench_function(format!("batch_{size}_x1_pipelined"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut last = None;
                for _ in 0..iters {
                    last = Some(
                        w.append(&batch(w.next_index(), size, &payload))
                            .expect("append"),
                    );
                }
                if let Some(ticket) = last {
                    w.wait_durable(ticket).expect("durable");
                }
                let took = start.elapsed();
                purge(&w);
                took
            })
        });
    }
    for size in [1usize, 16, 256] {
        let dir = bench_dir();
        let w = writer(dir.path(), io_mode);
        let order = Mutex::new(());
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("batch_{size}_x{APPENDERS}_appenders"), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(APPENDERS as u64);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..APPENDERS {
                        s.spawn(|| {
                            for _ in 0..per_thread {
                                let ticket = {
                                    let _turn = order.lock().expect("lock");
                                    w.append(&batch(w.next_index(), size, &payload))
                                        .expect("append")
                                };
                                w.wait_durable(ticket).expect("durable");
                            }
                        });
                    }
                });
                let took = start.elapsed();
                purge(&w);
                // Report time per requested iteration (threads did per_thread * 64 >= iters).
                took.mul_f64(iters as f64 / (per_thread * APPENDERS as u64) as f64)
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

/// Creates a zeroed, durable file of `bytes` (so later writes overwrite, as in a segment).
fn zeroed_file(path: &std::path::Path, bytes: u64) {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create");
    let zeros = vec![0u8; 1 << 20];
    for at in (0..bytes).step_by(zeros.len()) {
        file.write_all_at(&zeros, at).expect("zero");
    }
    file.sync_all().expect("sync");
}

/// The I/O primitive alone, one 256-entry record per write + fdatasync: the log's own path
/// (`Log::append_records`, no writer thread; io_uring or pwrite) against glommio's `DmaFile`
/// (`write_at` + `fdatasync` of the same aligned size on a zeroed 64 MiB file, cycled).
fn primitive_256(c: &mut Criterion) {
    let payload = Bytes::from(vec![0x5Au8; PAYLOAD_BYTES]);
    let record_bytes = EncodedRecord::encode(&batch(1, 256, &payload))
        .expect("encode")
        .bytes()
        .len();
    let write_bytes = record_bytes.div_ceil(4096) * 4096;
    let mut group = c.benchmark_group("primitive_record_256");
    group.throughput(Throughput::Elements(256));
    for (name, io_mode) in [("log_uring", IoMode::Uring), ("log_pwrite", IoMode::Pwrite)] {
        let dir = bench_dir();
        let (mut log, _) = Log::open(dir.path(), log_options(io_mode)).expect("open");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let record = EncodedRecord::encode(&batch(log.last_index() + 1, 256, &payload))
                        .expect("encode");
                    let start = Instant::now();
                    log.append_records(std::slice::from_ref(&record))
                        .expect("append");
                    took += start.elapsed();
                }
                let last = log.last_index();
                log.purge_prefix(last.saturating_sub(1)).expect("purge");
                took
            })
        });
    }
    let dir = bench_dir();
    let path = dir.path().join("glommio");
    const FILE_BYTES: u64 = 64 << 20;
    zeroed_file(&path, FILE_BYTES);
    group.bench_function("glommio_dma_file", |b| {
        b.iter_custom(|iters| {
            // 2 MiB of registered I/O memory per ring: the default 10 MiB on each of 3 rings is
            // above the 8 MiB memlock limit of non-root users here.
            let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(2 << 20)
                .make()
                .expect("glommio executor");
            let path = path.clone();
            executor.run(async move {
                // The file is non-empty, so glommio's polled-I/O probe is right (its probe reads
                // at offset 0 and only misjudges empty files; and we never read).
                let file = glommio::io::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .dma_open(&path)
                    .await
                    .expect("dma_open");
                let mut offset = 0u64;
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let mut buf = file.alloc_dma_buffer(write_bytes);
                    buf.as_bytes_mut().fill(0xA5);
                    let start = Instant::now();
                    file.write_at(buf, offset).await.expect("write_at");
                    file.fdatasync().await.expect("fdatasync");
                    took += start.elapsed();
                    offset = (offset + write_bytes as u64) % (FILE_BYTES - write_bytes as u64);
                    offset -= offset % 4096;
                }
                file.close().await.expect("close");
                took
            })
        })
    });
    group.finish();
}

fn all(c: &mut Criterion) {
    plain_write_fdatasync(c);
    primitive_256(c);
    single_appender(c, "uring", IoMode::Uring);
    single_appender(c, "pwrite", IoMode::Pwrite);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = all
}
criterion_main!(benches);
