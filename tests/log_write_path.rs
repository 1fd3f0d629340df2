//! The node's one log write path (`runtime::disk`: group commit on the executor's io_uring, one
//! `O_DIRECT | O_DSYNC` write per group), driven as a node drives it: concurrent appenders are
//! grouped and all durable in order; truncations, term and vote, and purges keep their place
//! among the appends; a log written this way and torn at any byte of its last group reopens as
//! a prefix holding every earlier group.

use std::cell::Cell;
use std::fs;
use std::path::Path;
use std::rc::Rc;

use ringraft::core::{Entry, HardState};
use ringraft::log::{segment_file_name, Log};
use ringraft::runtime::disk::DiskQueue;
use ringraft::runtime::storage::{Recovery, Storage, WriteJob};

mod log_common;
use log_common::{batch, options, read_all};

/// Runs `f` on a glommio executor with a small I/O memory (the 8 MiB memlock limit of
/// non-root users).
fn on_executor<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { f().await })
        .expect("executor")
        .join()
        .expect("join")
}

fn open_storage(dir: &Path, segment_bytes: u64) -> Storage {
    Storage::open(dir, segment_bytes, Recovery::Strict)
        .expect("open storage")
        .0
}

fn restored(dir: &Path, segment_bytes: u64) -> Vec<Entry> {
    Storage::open(dir, segment_bytes, Recovery::Strict)
        .expect("reopen storage")
        .1
        .entries
}

#[test]
fn concurrent_appenders_are_grouped_and_all_durable_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    const APPENDERS: u64 = 16;
    const ROUNDS: u64 = 20;
    let (jobs, writes) = on_executor(async move || {
        let queue = Rc::new(DiskQueue::start(open_storage(&path, 64 << 10)));
        let next_index = Rc::new(Cell::new(1u64));
        let mut tasks = Vec::new();
        for t in 0..APPENDERS {
            let (queue, next_index) = (queue.clone(), next_index.clone());
            tasks.push(glommio::spawn_local(async move {
                for _ in 0..ROUNDS {
                    // Indexes are taken and the job queued without an await in between, so
                    // the queue sees them in order, as it sees a Raft loop's outputs.
                    let first = next_index.get();
                    let n = 1 + (t as usize % 3);
                    next_index.set(first + n as u64);
                    let job = WriteJob {
                        entries: batch(first, n, 1 + t / 8, 700),
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
        (
            queue.counters().disk_jobs.get(),
            queue.counters().disk_syncs.get(),
        )
    });
    assert_eq!(jobs, APPENDERS * ROUNDS);
    assert!(
        writes < jobs,
        "{jobs} appends took {writes} writes: nothing was grouped"
    );
    let entries = restored(dir.path(), 64 << 10);
    let indexes: Vec<u64> = entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, (1..=indexes.len() as u64).collect::<Vec<_>>());
    let expected: u64 = (0..APPENDERS).map(|t| ROUNDS * (1 + t % 3)).sum();
    assert_eq!(entries.len() as u64, expected);
}

#[test]
fn truncations_votes_and_purges_keep_their_place_among_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    on_executor(async move || {
        let queue = DiskQueue::start(open_storage(&path, 16 << 10));
        // Queued back to back so that they land in one group.
        let mut last = 0;
        for job in [
            WriteJob {
                entries: batch(1, 6, 1, 900),
                ..WriteJob::default()
            },
            WriteJob {
                entries: batch(4, 2, 2, 900), // replaces 4..6 with term 2
                hard_state: Some(HardState {
                    current_term: 2,
                    voted_for: Some(3),
                    acked_index: 5,
                }),
                ..WriteJob::default()
            },
            WriteJob {
                entries: batch(6, 20, 2, 900), // rolls over several 16 KiB segments
                ..WriteJob::default()
            },
            WriteJob {
                purge_upto: Some(10),
                ..WriteJob::default()
            },
        ] {
            last = queue.submit(job).await;
        }
        queue.wait_durable(last).await;
    });
    // No snapshot covers the purge here, so read the log and the hard state directly (a node
    // purges only below a durable snapshot, and would refuse to start otherwise).
    let (_, hard_state) = ringraft::log::HardStateStore::open(dir.path()).expect("hard state");
    assert_eq!(
        hard_state,
        HardState {
            current_term: 2,
            voted_for: Some(3),
            acked_index: 5,
        }
    );
    let (log, _) = Log::open(&dir.path().join("log"), options(16 << 10)).expect("reopen");
    let terms: Vec<(u64, u64)> = read_all(&log).iter().map(|e| (e.index, e.term)).collect();
    let first = terms.first().expect("entries").0;
    assert!(
        first > 1 && first <= 11,
        "purged up to 10: starts at {first}"
    );
    let mut expected: Vec<(u64, u64)> = (1..=3).map(|i| (i, 1)).collect();
    expected.extend((4..=25).map(|i| (i, 2)));
    assert_eq!(terms, expected[(first - 1) as usize..]);
}

/// Writes a few groups through the node's path, then tears the last group at every byte: each
/// reopen holds every earlier group, then a prefix of the last group's entries that grows with
/// the tear offset, all of it once the whole group is there; the repaired log checks clean.
#[test]
fn a_log_torn_at_every_offset_of_its_last_group_reopens_as_a_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let early = batch(1, 4, 1, 300);
    let last_group = [batch(5, 1, 1, 200), batch(6, 3, 1, 90), batch(9, 2, 2, 400)];
    let (early_jobs, last_jobs) = (early.clone(), last_group.clone());
    on_executor(async move || {
        let queue = DiskQueue::start(open_storage(&path, 64 << 10));
        queue.append(early_jobs).await;
        let mut seq = 0;
        for entries in last_jobs {
            seq = queue
                .submit(WriteJob {
                    entries,
                    ..WriteJob::default()
                })
                .await;
        }
        queue.wait_durable(seq).await;
    });
    let log_dir = dir.path().join("log");
    let segment = log_dir.join(segment_file_name(1));
    let image = fs::read(&segment).expect("read segment");
    // The last group starts at the first block after the early group's write.
    let group_start = 4096;
    let group_end = image[group_start..]
        .chunks(4096)
        .position(|block| block.iter().all(|&b| b == 0))
        .map_or(image.len(), |blocks| group_start + blocks * 4096);
    let data_end = group_start
        + image[group_start..group_end]
            .iter()
            .rposition(|&b| b != 0)
            .expect("the group wrote something")
        + 1;
    let all: Vec<Entry> = early
        .iter()
        .chain(last_group.iter().flatten())
        .cloned()
        .collect();
    let mut kept_before = early.len();
    for tear in group_start..=data_end {
        let mut torn = image.clone();
        torn[tear..group_end].fill(0);
        fs::write(&segment, &torn).expect("write torn image");
        let (log, _) = Log::open(&log_dir, options(64 << 10)).expect("reopen torn");
        let entries = read_all(&log);
        drop(log);
        assert!(
            entries.len() >= kept_before && all.starts_with(&entries),
            "torn at {tear}: {} entries, {kept_before} before",
            entries.len()
        );
        assert!(
            ringraft::log::verify(&log_dir).is_clean(),
            "torn at {tear}: the repaired log does not verify"
        );
        kept_before = entries.len();
    }
    assert_eq!(kept_before, all.len(), "the whole group was kept untorn");
}
