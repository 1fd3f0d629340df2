//! The runtime: the only room that uses glommio. It turns the sans-I/O core, the log and the
//! state machine into a server process.
//!
//! Placement (one process per node):
//! * the **Raft executor** (pinned with `raft_cpu`) runs the Raft loop ([`node::Driver`]), the
//!   peer transport, the client listener and the tick timer, all as tasks sharing nothing
//!   across threads;
//! * **disk writes** run one group at a time and in order (`disk_task`): while one group's
//!   write is in flight, the next group gathers, which is group commit. A group of appends up
//!   to 1 MiB is written on the Raft executor's own io_uring (one `O_DSYNC` write, no thread
//!   hop); larger groups, and anything else (term and vote, truncations, purges, installed
//!   snapshots), on glommio's blocking pool. The leader's own write runs in parallel with its
//!   AppendEntries (thesis 10.2.1). Snapshots the node takes are saved on a second blocking thread, beside
//!   the log writes rather than in front of them.

pub mod config;
mod net;
pub mod node;
mod server;
mod stats;
pub mod storage;
pub mod trace;
mod transport;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future::poll_once;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::{CpuSet, LocalExecutorBuilder, Placement, PoolPlacement};

pub use config::{parse_members, Address, Member, NodeConfig, NodeConfigError};
pub use stats::Counters;

use crate::core::RawNode;
use crate::kv::KvStore;
use crate::log::{PreparedAppend, StorageError};
use node::{Driver, Event};
use storage::{Storage, WriteJob};

/// Events queued for the Raft loop before producers wait (bounded backpressure).
const INBOX_EVENTS_MAX: usize = 8192;
/// Output jobs queued for the disk before the Raft loop waits.
const DISK_JOBS_MAX: usize = 1024;
/// Jobs gathered into one group commit.
const DISK_GROUP_JOBS_MAX: usize = 1024;
/// Largest group (entry bytes, as [`crate::core::Entry::size_bytes`] counts them) written on the
/// Raft executor itself rather than on the blocking pool (see `disk_task`). Measured on
/// `3node-1kb` (2-vCPU VM, six interleaved pairs, 2026-11-24): 64 KiB 53.6k writes/s on average,
/// 1 MiB 60.1k, higher in every pair: at 8 x 32 in flight a follower's groups are ~100 KiB, and
/// each hand-off to a pool thread and back waited for a CPU behind the other nodes. Above 1 MiB
/// (a follower catching up) the encoding and CRC would hold the Raft loop for over a
/// millisecond, so those still go to the pool.
const DIRECT_WRITE_BYTES_MAX: usize = 1 << 20;

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] NodeConfigError),
    /// The data directory could not be opened or recovered.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: glommio::GlommioError<()>,
    },
    /// A listen address did not resolve.
    #[error("cannot resolve the {what} listen address of node {id}: {source}")]
    Resolve {
        /// Which listener (peer or client).
        what: &'static str,
        /// This node.
        id: u64,
        /// Why.
        source: std::io::Error,
    },
    /// The executor could not start.
    #[error("executor: {0}")]
    Executor(String),
    /// The snapshot on disk does not restore.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The link emulation file is unreadable or invalid.
    #[error("{0}")]
    Emulation(String),
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_reload_signal(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

/// Runs a node until SIGTERM or SIGINT. Blocks the calling thread.
pub fn run_node(config: NodeConfig) -> Result<(), RuntimeError> {
    config.validate()?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_stop_signal as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGINT,
            on_stop_signal as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGHUP,
            on_reload_signal as *const () as libc::sighandler_t,
        );
    }
    let placement = config.raft_cpu.map_or(Placement::Unbound, Placement::Fixed);
    let mut builder = LocalExecutorBuilder::new(placement)
        .blocking_thread_pool_placement(blocking_threads(config.raft_cpu))
        .name("raft")
        .io_memory(config.io_memory_mib << 20);
    if config.spin_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(config.spin_us));
    }
    let handle = builder
        .spawn(move || async move { node_main(config).await })
        .map_err(|e| RuntimeError::Executor(e.to_string()))?;
    handle
        .join()
        .map_err(|e| RuntimeError::Executor(format!("{e:?}")))?
}

/// Blocking threads: one for the log's writes (`disk_task` keeps at most one in flight) and
/// one for snapshots, so that saving a snapshot never waits for, or holds up, a log write.
/// Placed like the Raft executor, as glommio places a pool of one by default.
fn blocking_threads(raft_cpu: Option<usize>) -> PoolPlacement {
    const BLOCKING_THREADS: usize = 2;
    let on_cpu = |cpu: usize| CpuSet::online().map(|set| set.filter(|l| l.cpu == cpu));
    match raft_cpu.map(on_cpu) {
        Some(Ok(set)) => PoolPlacement::Custom(vec![set; BLOCKING_THREADS]),
        _ => PoolPlacement::Unbound(BLOCKING_THREADS),
    }
}

async fn node_main(config: NodeConfig) -> Result<(), RuntimeError> {
    let config = Rc::new(config);
    let (storage, restored, report) = Storage::open(&config.data_dir, config.segment_bytes)?;
    if let Some(torn) = &report.torn_tail {
        eprintln!(
            "ringraft: node {}: dropped a torn write at the log tail: {torn:?}",
            config.id
        );
    }
    let kv = match &restored.snapshot {
        Some(s) => {
            KvStore::decode_snapshot(&s.data).map_err(|e| RuntimeError::Snapshot(e.to_string()))?
        }
        None => KvStore::new(),
    };
    let node = RawNode::new(config.core_config(), restored).map_err(NodeConfigError::from)?;
    let me = config.member(config.id).expect("validated").clone();
    let id = config.id;
    let resolve_error = |what| move |source| RuntimeError::Resolve { what, id, source };
    let peer_listen = config.peer_listen().map_err(resolve_error("peer"))?;
    let client_listen = config.client_listen().map_err(resolve_error("client"))?;
    let peer_listener =
        glommio::net::TcpListener::bind(peer_listen).map_err(|source| RuntimeError::Bind {
            addr: peer_listen,
            source,
        })?;
    let client_listener =
        glommio::net::TcpListener::bind(client_listen).map_err(|source| RuntimeError::Bind {
            addr: client_listen,
            source,
        })?;

    let emulated = match &config.emulation_file {
        Some(file) => Some(Rc::new(
            transport::Emulated::load(config.id, file.clone()).map_err(RuntimeError::Emulation)?,
        )),
        None => None,
    };
    if let Some(e) = &emulated {
        eprintln!(
            "ringraft: node {}: EMULATED links from {} (largest RTT {:.1} ms)",
            config.id,
            config.emulation_file.as_ref().expect("loaded").display(),
            e.rtt_max_ms().unwrap_or(0.0)
        );
    }
    for warning in config.timing_warnings(emulated.as_ref().and_then(|e| e.rtt_max_ms())) {
        eprintln!("ringraft: node {}: WARNING: {warning}", config.id);
    }
    let counters = Rc::new(Counters::default());
    let (inbox_tx, inbox_rx) = local_channel::new_bounded(INBOX_EVENTS_MAX);
    let inbox_tx = Rc::new(inbox_tx);
    let (disk_tx, disk_rx) = local_channel::new_bounded(DISK_JOBS_MAX);
    let peers = transport::start_outbound(&config, counters.clone(), emulated.clone());
    let snapshot_file = storage.snapshot_file();
    glommio::spawn_local(disk_task(
        Arc::new(Mutex::new(storage)),
        disk_rx,
        inbox_tx.clone(),
        counters.clone(),
    ))
    .detach();
    glommio::spawn_local(ticker(
        Duration::from_millis(config.tick_ms),
        inbox_tx.clone(),
        emulated.clone(),
    ))
    .detach();
    glommio::spawn_local(transport::serve_inbound(
        peer_listener,
        config.clone(),
        inbox_tx.clone(),
        counters.clone(),
    ))
    .detach();
    let inflight = config.client_inflight_max;
    glommio::spawn_local(server::serve_clients(
        client_listener,
        inbox_tx.clone(),
        counters.clone(),
        inflight,
    ))
    .detach();
    eprintln!(
        "ringraft: node {} serving peers on {peer_listen} (advertised {}) and clients on {client_listen} (advertised {})",
        config.id, me.peer_addr, me.client_addr
    );
    Driver::new(
        config.clone(),
        node,
        kv,
        counters.clone(),
        peers,
        disk_tx,
        snapshot_file,
        inbox_tx.clone(),
    )
    .run(inbox_rx)
    .await;
    trace::flush();
    if emulated.is_some() {
        eprintln!(
            "ringraft: node {}: link emulation dropped {} messages (loss, partitions, full wire)",
            config.id,
            counters.emulated_drops.get()
        );
    }
    eprintln!("ringraft: node {} stopped", config.id);
    Ok(())
}

async fn ticker(
    tick: Duration,
    inbox: Rc<LocalSender<Event>>,
    emulated: Option<Rc<transport::Emulated>>,
) {
    loop {
        glommio::timer::sleep(tick).await;
        if RELOAD.swap(false, Ordering::SeqCst) {
            match &emulated {
                Some(e) => e.reload(),
                None => eprintln!("ringraft: SIGHUP ignored: this node has no --emulation file"),
            }
        }
        let event = if STOP.load(Ordering::SeqCst) {
            Event::Shutdown
        } else {
            Event::Tick
        };
        if inbox.send(event).await.is_err() {
            return;
        }
    }
}

/// Makes output jobs durable, in order, a group at a time. A failed write or fsync is fatal: the
/// node cannot know what is on disk any more (the lesson of "fsyncgate").
///
/// A group of plain appends of up to [`DIRECT_WRITE_BYTES_MAX`] (every group at the loads
/// measured, from one write at a time to `3node-1kb`) is encoded here and written on this
/// executor's own io_uring as one `O_DSYNC` write ([`DirectLog`]); everything else (snapshots,
/// term and vote, purges, truncations, a follower catching up by megabytes) goes to the
/// blocking pool. Handing a job to a blocking thread and back costs two thread wake-ups, which
/// on a small machine shared by three nodes are a large part of a write's latency; a very large
/// group's encoding and CRC, on the other hand, would hold the Raft loop.
async fn disk_task(
    storage: Arc<Mutex<Storage>>,
    rx: LocalReceiver<(u64, WriteJob)>,
    inbox: Rc<LocalSender<Event>>,
    counters: Rc<Counters>,
) {
    let mut direct = DirectLog::default();
    while let Some(first) = rx.recv().await {
        let mut last_seq = first.0;
        let mut jobs = vec![first.1];
        while jobs.len() < DISK_GROUP_JOBS_MAX {
            match poll_once(rx.recv()).await {
                Some(Some((seq, job))) => {
                    last_seq = seq;
                    jobs.push(job);
                }
                _ => break,
            }
        }
        Counters::add(&counters.disk_jobs, jobs.len() as u64);
        trace::event("disk_start", jobs.len() as u64);
        let prepared = lock(&storage).prepare_write(&jobs, DIRECT_WRITE_BYTES_MAX);
        let result = match prepared {
            Ok(Some(prepared)) => direct.write(&storage, prepared).await,
            Ok(None) => write_blocking(storage.clone(), jobs).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!(
                "ringraft: FATAL: a log write failed, stopping to protect acknowledged data: {e}"
            );
            std::process::abort();
        }
        trace::event("disk_done", last_seq);
        Counters::add(&counters.disk_syncs, 1);
        if inbox.send(Event::Persisted(last_seq)).await.is_err() {
            return;
        }
    }
}

fn lock(storage: &Mutex<Storage>) -> std::sync::MutexGuard<'_, Storage> {
    // A panic while holding it is a failed fsync, which stops the node anyway.
    storage
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes a group of jobs on the blocking pool (see [`Storage::write`]).
async fn write_blocking(
    storage: Arc<Mutex<Storage>>,
    mut jobs: Vec<WriteJob>,
) -> Result<(), StorageError> {
    glommio::executor()
        .spawn_blocking(move || {
            trace::event("blk_begin", 0);
            let r = lock(&storage).write(&mut jobs);
            trace::event("blk_end", 0);
            r
        })
        .await
}

/// The log's active segment opened on the Raft executor's io_uring with `O_DSYNC`, so that
/// one write is durable when it completes (an `O_DSYNC` write is an fdatasync of what it
/// wrote: ext4 flushes the device cache before completing it) and the executor never waits.
#[derive(Default)]
struct DirectLog {
    /// The open file and the [`crate::log::Log::active_file_generation`] it was opened at.
    file: Option<(u64, glommio::io::DmaFile)>,
    /// Set when the file cannot be opened this way (then every group uses the blocking pool).
    unavailable: bool,
}

impl DirectLog {
    /// Writes a prepared group and completes it. Falls back to the blocking pool if the file
    /// cannot be opened here, or to rewrite the group if the write came back short.
    async fn write(
        &mut self,
        storage: &Arc<Mutex<Storage>>,
        prepared: PreparedAppend,
    ) -> Result<(), StorageError> {
        if let Some(file) = self.file_for(&prepared).await {
            let buf = {
                let storage = lock(storage);
                assert!(
                    storage.is_current(&prepared),
                    "the log changed under a write"
                );
                // glommio writes only from its own DMA buffers, so the encoded group (at most
                // DIRECT_WRITE_BYTES_MAX) is copied once more here; encoding straight into one
                // would need the log to lend out a buffer it does not own.
                let bytes = storage.prepared_bytes();
                let mut buf = file.alloc_dma_buffer(bytes.len());
                buf.as_bytes_mut().copy_from_slice(bytes);
                buf
            };
            let len = buf.len();
            trace::event("blk_begin", 1);
            let written = file.write_at(buf, prepared.offset).await;
            trace::event("blk_end", 1);
            match written {
                Ok(n) if n == len => {
                    lock(storage).complete_prepared(prepared);
                    return Ok(());
                }
                // A short write: rewrite the whole group below (same bytes, same place).
                Ok(_) => {}
                Err(e) => {
                    return Err(StorageError::io(
                        "writing records to",
                        &prepared.path,
                        e.into(),
                    ))
                }
            }
        }
        let storage = storage.clone();
        glommio::executor()
            .spawn_blocking(move || {
                let mut storage = lock(&storage);
                storage.write_prepared(&prepared)?;
                storage.complete_prepared(prepared);
                Ok(())
            })
            .await
    }

    /// The active segment's file, (re)opened if the log moved to another one since.
    async fn file_for(&mut self, prepared: &PreparedAppend) -> Option<&glommio::io::DmaFile> {
        if self.unavailable {
            return None;
        }
        if self.file.as_ref().map(|(g, _)| *g) != Some(prepared.file_generation) {
            if let Some((_, old)) = self.file.take() {
                let _ = old.close().await;
            }
            let opened = glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DSYNC)
                .dma_open(&prepared.path)
                .await;
            match opened {
                Ok(file) => self.file = Some((prepared.file_generation, file)),
                Err(e) => {
                    eprintln!(
                        "ringraft: log writes go through the blocking pool only: cannot open {} on the executor's ring: {e}",
                        prepared.path.display()
                    );
                    self.unavailable = true;
                    return None;
                }
            }
        }
        self.file.as_ref().map(|(_, file)| file)
    }
}
