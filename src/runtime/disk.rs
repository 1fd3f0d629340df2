//! The node's one log write path: group commit on the Raft executor's own io_uring.
//!
//! [`disk_task`] takes every job the Raft loop queued while the previous group was being written
//! (so a group grows with the load, up to [`GROUP_JOBS_MAX`] jobs and [`GROUP_BYTES_MAX`]
//! bytes), and writes all their records as one aligned `O_DIRECT | O_DSYNC` write on this
//! executor's ring: the log lays the group out ([`crate::log::Log::prepare_append`]), the
//! records are copied once into a DMA buffer ([`crate::log::PreparedAppend::fill`]), and the
//! write is durable when it completes (no separate fdatasync, no thread hop). The jobs complete
//! in order; the caller hears of it through its `persisted` callback.
//!
//! What is not an append (term and vote, truncating a conflicting suffix, installing a snapshot
//! from the leader, purging, starting the next segment) runs on glommio's blocking pool, in its
//! place in the order of the jobs: those are renames, deletes and directory syncs, rare and
//! slow, which must not stall the executor.
//!
//! [`DiskQueue`] gives the same path to callers outside a node (tests, `benches/log.rs`).
//!
//! A failed write or fsync is fatal: the node cannot know what is on disk any more (the lesson
//! of "fsyncgate").

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use futures_lite::future::poll_once;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::io::DmaFile;

use super::stats::Counters;
use super::storage::{Storage, WriteJob};
use super::trace;
use crate::core::{Entry, HardState, Index};
use crate::log::{EncodedRecord, HardStateStore, PreparedAppend, StorageError};

/// Jobs gathered into one group.
pub const GROUP_JOBS_MAX: usize = 1024;
/// Entry bytes (as [`Entry::size_bytes`] counts them) gathered into one group; a job that
/// crosses it still joins, so a group is at most this plus one batch.
pub const GROUP_BYTES_MAX: usize = 4 << 20;
/// Times a short write of a group is retried (same bytes, same place) before it is an error.
const SHORT_WRITE_RETRIES_MAX: usize = 3;

/// Makes queued jobs durable, in order, a group at a time, and calls `persisted(seq)` with the
/// sequence number of the last job of each group once all of it is durable. Stops when the
/// queue closes or `persisted` returns false.
///
/// Two stages, so that a group's hard state (its `acked_index`, see the core's "Lost entries")
/// is saved while the next group's records are written: this task lays out and writes records
/// (and the rare structural jobs), and [`mark_task`] saves each group's hard state after its
/// records and then reports the group persisted. A hard state never reaches the disk before
/// the records it describes (it is saved only once they are durable), and no acknowledgement
/// leaves before both are; what the overlap buys is that the two flushes of consecutive groups
/// run at once instead of one after the other.
pub async fn disk_task<F, Fut>(
    storage: Arc<Mutex<Storage>>,
    rx: LocalReceiver<(u64, WriteJob)>,
    counters: Rc<Counters>,
    persisted: F,
) where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    let (written_tx, written_rx) = local_channel::new_bounded(GROUPS_AWAITING_MARK_MAX);
    let marks = mark_task(
        lock(&storage).hard_state_store(),
        written_rx,
        counters.clone(),
        persisted,
    );
    futures_lite::future::zip(write_task(storage, rx, counters, written_tx), marks).await;
}

/// The first stage of [`disk_task`]: gathers and writes groups, and hands each to [`mark_task`].
async fn write_task(
    storage: Arc<Mutex<Storage>>,
    rx: LocalReceiver<(u64, WriteJob)>,
    counters: Rc<Counters>,
    written_tx: LocalSender<Written>,
) {
    let mut ring = RingFile::default();
    while let Some((mut last_seq, first)) = rx.recv().await {
        let mut bytes = job_bytes(&first);
        let mut jobs = vec![first];
        while jobs.len() < GROUP_JOBS_MAX && bytes < GROUP_BYTES_MAX {
            match poll_once(rx.recv()).await {
                Some(Some((seq, job))) => {
                    last_seq = seq;
                    bytes += job_bytes(&job);
                    jobs.push(job);
                }
                _ => break,
            }
        }
        Counters::add(&counters.disk_jobs, jobs.len() as u64);
        record_group_size(&counters.metrics, &jobs);
        let started = std::time::Instant::now();
        trace::event("disk_start", jobs.len() as u64);
        let hard_state = match write_group(&storage, &mut ring, jobs, &counters).await {
            Ok(hard_state) => hard_state,
            Err(e) => fatal(e),
        };
        let written = Written {
            last_seq,
            hard_state,
            started,
        };
        if written_tx.send(written).await.is_err() {
            return;
        }
    }
}

/// Most groups whose records are durable and whose hard state is not yet: one being saved and
/// one waiting, so a group's records are written while the one before's hard state is saved.
const GROUPS_AWAITING_MARK_MAX: usize = 1;

/// A group whose records are durable.
struct Written {
    /// Sequence number of its last job.
    last_seq: u64,
    /// The hard state to save after its records, if it changed.
    hard_state: Option<HardState>,
    /// When the group's write began.
    started: std::time::Instant,
}

/// The second stage of [`disk_task`]: saves each written group's hard state, in order, then
/// reports the group persisted. The save is a write and an fdatasync on the blocking pool:
/// writing it on the ring instead, `O_DIRECT | O_DSYNC` into its own file, was measured slower
/// (3node-1kb on the 2-core VM went from 23.8k to 14.9k writes/s, the leader's Raft thread from
/// 16 to 39 us of CPU per write and system time from 21% to 50%).
async fn mark_task<F, Fut>(
    store: Arc<Mutex<HardStateStore>>,
    rx: LocalReceiver<Written>,
    counters: Rc<Counters>,
    mut persisted: F,
) where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    while let Some(written) = rx.recv().await {
        if let Some(hard_state) = written.hard_state {
            let store = store.clone();
            let saved = glommio::executor()
                .spawn_blocking(move || {
                    trace::event("blk_begin", 0);
                    let result = lock(&store).save(&hard_state);
                    trace::event("blk_end", 0);
                    result
                })
                .await;
            if let Err(e) = saved {
                fatal(e);
            }
            Counters::add(&counters.disk_syncs, 1);
        }
        trace::event("disk_done", written.last_seq);
        counters
            .metrics
            .log_write_latency
            .record_duration(written.started.elapsed());
        if !persisted(written.last_seq).await {
            return;
        }
    }
}

fn fatal(e: StorageError) -> ! {
    eprintln!("ringraft: FATAL: a log write failed, stopping to protect acknowledged data: {e}");
    std::process::abort();
}

fn job_bytes(job: &WriteJob) -> usize {
    job.entries.iter().map(Entry::size_bytes).sum()
}

/// Records a group's size in entries and entry bytes (groups that only write term and vote or
/// purge count as zero entries).
fn record_group_size(metrics: &super::metrics::Metrics, jobs: &[WriteJob]) {
    let entries: usize = jobs.iter().map(|j| j.entries.len()).sum();
    let bytes: usize = jobs.iter().map(job_bytes).sum();
    metrics.log_group_entries.record(entries as u64);
    metrics.log_group_bytes.record(bytes as u64);
}

/// Writes one group of jobs in order: appends on the ring, everything else on the pool. Returns
/// the group's newest hard state, for [`mark_task`] to save once the records are durable.
async fn write_group(
    storage: &Arc<Mutex<Storage>>,
    ring: &mut RingFile,
    jobs: Vec<WriteJob>,
    counters: &Counters,
) -> Result<Option<HardState>, StorageError> {
    let mut next_index = lock(storage).last_index() + 1;
    let mut records: Vec<EncodedRecord> = Vec::new();
    let mut hard_state = None;
    let mut purges: Vec<Index> = Vec::new();
    for mut job in jobs {
        if let Some(snapshot) = job.installed_snapshot.take() {
            write_records(storage, ring, &mut records, counters).await?;
            next_index = snapshot.meta.last_included_index + 1;
            on_pool(storage, move |s| s.install_snapshot(&snapshot)).await?;
        }
        if let (Some(first), Some(last)) = (job.entries.first(), job.entries.last()) {
            if first.index < next_index {
                // A conflicting suffix (paper Figure 2, AppendEntries step 3): what came
                // before in this group reaches the disk first, then the suffix goes.
                write_records(storage, ring, &mut records, counters).await?;
                let from = first.index;
                on_pool(storage, move |s| s.truncate_suffix(from)).await?;
            }
            next_index = last.index + 1;
            lock(storage).records_of(&job.entries, &mut records)?;
        }
        if job.hard_state.is_some() {
            hard_state = job.hard_state;
        }
        purges.extend(job.purge_upto);
    }
    write_records(storage, ring, &mut records, counters).await?;
    if !purges.is_empty() {
        on_pool(storage, move |s| {
            purges.into_iter().try_for_each(|upto| s.purge(upto))
        })
        .await?;
        Counters::add(&counters.disk_syncs, 1);
    }
    Ok(hard_state)
}

/// Appends `records` (then empties it) with as few ring writes as the segments allow: one,
/// unless the active segment fills up.
async fn write_records(
    storage: &Arc<Mutex<Storage>>,
    ring: &mut RingFile,
    records: &mut Vec<EncodedRecord>,
    counters: &Counters,
) -> Result<(), StorageError> {
    let mut next = 0;
    while next < records.len() {
        let prepared = lock(storage).prepare_append(&records[next..])?;
        let Some(prepared) = prepared else {
            on_pool(storage, |s| s.start_next_segment()).await?;
            continue;
        };
        let written = ring.write(&prepared).await;
        if let Err(e) = written {
            return Err(StorageError::io("writing records to", &prepared.path, e));
        }
        Counters::add(&counters.disk_syncs, 1);
        next += prepared.record_count();
        lock(storage).complete_append(prepared);
    }
    records.clear();
    Ok(())
}

/// Runs a blocking storage operation on glommio's blocking pool.
async fn on_pool<T, Op>(storage: &Arc<Mutex<Storage>>, op: Op) -> Result<T, StorageError>
where
    T: Send + 'static,
    Op: FnOnce(&mut Storage) -> Result<T, StorageError> + Send + 'static,
{
    let storage = storage.clone();
    glommio::executor()
        .spawn_blocking(move || {
            trace::event("blk_begin", 0);
            let result = op(&mut lock(&storage));
            trace::event("blk_end", 0);
            result
        })
        .await
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it is a failed fsync, which stops the node anyway.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The log's active segment opened on this executor's io_uring with `O_DSYNC` (glommio adds
/// `O_DIRECT` where the filesystem has it), so that one write is durable when it completes.
#[derive(Default)]
struct RingFile {
    /// The open file and the [`crate::log::Log::active_file_generation`] it was opened at.
    file: Option<(u64, DmaFile)>,
}

impl RingFile {
    /// Writes a prepared group, durably.
    async fn write(&mut self, prepared: &PreparedAppend) -> std::io::Result<()> {
        let file = self.file_for(prepared).await?;
        let len = prepared.write_bytes();
        let mut buf = file.alloc_dma_buffer(len);
        prepared.fill(buf.as_bytes_mut());
        let buf = Rc::new(buf);
        for _ in 0..=SHORT_WRITE_RETRIES_MAX {
            trace::event("blk_begin", 1);
            let written = file.write_rc_at(buf.clone(), prepared.offset).await;
            trace::event("blk_end", 1);
            match written {
                Ok(n) if n == len => return Ok(()),
                // A short write: write the whole group again (same bytes, same place).
                Ok(_) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(std::io::Error::other(format!(
            "{} short writes in a row at offset {}",
            SHORT_WRITE_RETRIES_MAX + 1,
            prepared.offset
        )))
    }

    /// The active segment's file, (re)opened if the log moved to another one since.
    async fn file_for(&mut self, prepared: &PreparedAppend) -> std::io::Result<&DmaFile> {
        if self.file.as_ref().map(|(g, _)| *g) != Some(prepared.file_generation) {
            if let Some((_, old)) = self.file.take() {
                let _ = old.close().await;
            }
            let file = glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DSYNC)
                .dma_open(&prepared.path)
                .await?;
            self.file = Some((prepared.file_generation, file));
        }
        match &self.file {
            Some((_, file)) => Ok(file),
            None => unreachable!("opened above"),
        }
    }
}

/// The node's write path for callers outside a node (tests, benches): a [`disk_task`] on the
/// current glommio executor and a way to wait for a job to be durable. Many tasks may append at
/// once; their jobs are grouped exactly as a node's are. Dropping it ends the task, which then
/// drops the storage.
pub struct DiskQueue {
    tx: LocalSender<(u64, WriteJob)>,
    counters: Rc<Counters>,
    next_seq: Cell<u64>,
    durable: Rc<Durable>,
}

#[derive(Default)]
struct Durable {
    upto_seq: Cell<u64>,
    waiters: RefCell<Vec<(u64, LocalSender<()>)>>,
}

/// Jobs queued for the disk before [`DiskQueue::submit`] waits: the node's bound.
pub const DISK_JOBS_MAX: usize = 1024;

impl DiskQueue {
    /// Starts the write path on the current glommio executor.
    pub fn start(storage: Storage) -> DiskQueue {
        let (tx, rx) = local_channel::new_bounded(DISK_JOBS_MAX);
        let durable = Rc::new(Durable::default());
        let sink = durable.clone();
        let counters = Rc::new(Counters::default());
        glommio::spawn_local(disk_task(
            Arc::new(Mutex::new(storage)),
            rx,
            counters.clone(),
            move |seq| {
                sink.upto_seq.set(seq);
                sink.waiters.borrow_mut().retain(|(waiting, tx)| {
                    let done = *waiting <= seq;
                    if done {
                        let _ = tx.try_send(());
                    }
                    !done
                });
                async { true }
            },
        ))
        .detach();
        DiskQueue {
            tx,
            counters,
            next_seq: Cell::new(0),
            durable,
        }
    }

    /// The node's disk counters for this queue: `disk_jobs` (jobs made durable) and
    /// `disk_syncs` (durable writes: ring writes plus blocking operations).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Queues a job (waiting for room in the bounded queue) and returns its sequence number.
    pub async fn submit(&self, job: WriteJob) -> u64 {
        let seq = self.next_seq.get() + 1;
        self.next_seq.set(seq);
        if self.tx.send((seq, job)).await.is_err() {
            panic!("the disk task stopped");
        }
        seq
    }

    /// Waits until job `seq` and every one before it is durable.
    pub async fn wait_durable(&self, seq: u64) {
        if self.durable.upto_seq.get() >= seq {
            return;
        }
        let (tx, rx) = local_channel::new_bounded(1);
        self.durable.waiters.borrow_mut().push((seq, tx));
        let _ = rx.recv().await;
    }

    /// Appends `entries` and waits until they are durable.
    pub async fn append(&self, entries: Vec<Entry>) {
        let seq = self
            .submit(WriteJob {
                entries,
                ..WriteJob::default()
            })
            .await;
        self.wait_durable(seq).await;
    }
}
