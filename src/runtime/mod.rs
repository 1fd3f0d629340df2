//! The runtime: the only room that uses glommio. It turns the sans-I/O core, the log and the
//! state machine into a server process.
//!
//! Placement (one process per node):
//! * the **Raft executor** (pinned with `raft_cpu`) runs the Raft loop ([`node::Driver`]), the
//!   peer transport, the client listener and the tick timer, all as tasks sharing nothing
//!   across threads;
//! * **disk writes** run one group at a time and in order ([`disk`]): while one group's write
//!   is in flight, the next group gathers, which is group commit. A group's appends are one
//!   `O_DIRECT | O_DSYNC` write on the Raft executor's own io_uring (no thread hop); anything
//!   else (term and vote, truncations, purges, installed snapshots, starting a segment) runs on
//!   glommio's blocking pool in its place. The leader's own write runs in parallel with its
//!   AppendEntries (thesis 10.2.1). Snapshots the node takes are saved on a second blocking
//!   thread, beside the log writes rather than in front of them.
//!
//! # The copies of a value
//!
//! A client's value is encoded once, by the leader, into the log record (with its CRC) that the
//! leader's log writes, the followers receive and their logs write as they are. From the client's
//! socket to a follower's disk it is copied in user space seven times:
//!
//! 1. leader: the socket's read buffer into the connection's frame decoder
//!    ([`crate::wire::fill_decoder`]); the request's key and value stay slices of the frame;
//! 2. leader: into its log record, once, with the command around it
//!    ([`crate::log::record::encode_single_with`] from `node`); that record is the entry's
//!    [`crate::core::Entry::record`] from then on;
//! 3. leader, per follower: the records of an AppendEntries into one scratch buffer
//!    ([`crate::log::record::encode_records_into`]),
//! 4. then into the flatbuffers builder's `[ubyte]` vector ([`crate::wire::encode_peer`]),
//! 5. then into the frame ([`crate::wire::write_frame`]); a frame of 16 KiB or more goes to the
//!    socket as it is (no coalescing copy, `transport`);
//! 6. follower: the socket's read buffer into the frame decoder; each record is then checked
//!    (CRC) in place and the entries keep slices of the frame ([`crate::wire::decode_peer_message_shared`]);
//! 7. follower: into the aligned DMA buffer of its group write
//!    ([`crate::log::PreparedAppend::fill`]), the one copy on the way to any disk (the leader's
//!    own write is the same one copy from its record).
//!
//! `tests/record_path.rs` checks by buffer identity that 2, 6 and the disk path copy no more
//! than this (no re-encoding, no copy out of the frame). Copies 3 to 5 would go with a frame
//! built around the records and written with vectored writes, 1 and 6 with reads straight into
//! the decoder's buffer.

pub mod config;
pub mod disk;
pub mod metrics;
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

use glommio::channels::local_channel::{self, LocalSender};
use glommio::{CpuSet, LocalExecutorBuilder, Placement, PoolPlacement};

pub use config::{parse_members, Address, Member, NodeConfig, NodeConfigError};
pub use stats::Counters;

use crate::core::RawNode;
use crate::kv::KvStore;
use crate::log::StorageError;
use node::{Driver, Event};
use storage::{Recovery, Storage};

/// Events queued for the Raft loop before producers wait (bounded backpressure).
const INBOX_EVENTS_MAX: usize = 8192;
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
    let recovery = if config.strict_recovery {
        Recovery::Strict
    } else {
        Recovery::Repair
    };
    let (storage, restored, report, repairs) =
        Storage::open(&config.data_dir, config.segment_bytes, recovery)?;
    if let Some(torn) = &report.torn_tail {
        eprintln!(
            "ringraft: node {}: dropped a damaged record at the log tail (a torn write, or \
             acknowledged entries lost if the hard state says so): {torn:?}",
            config.id
        );
    }
    for repair in &repairs {
        eprintln!(
            "ringraft: node {}: corrupt log {} at byte offset {}: {}; kept the records before \
             it, set the rest aside in {} ({} later segments), will fetch them from the cluster \
             (--strict-recovery refuses instead)",
            config.id,
            repair.file.display(),
            repair.offset,
            repair.reason,
            config
                .data_dir
                .join("log")
                .join(crate::log::LOST_DIR)
                .display(),
            repair.moved.len()
        );
    }
    report_lost_entries(&config, &restored);
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
    let (disk_tx, disk_rx) = local_channel::new_bounded(disk::DISK_JOBS_MAX);
    let peers = transport::start_outbound(&config, counters.clone(), emulated.clone());
    let snapshot_file = storage.snapshot_file();
    let persisted_to = inbox_tx.clone();
    glommio::spawn_local(disk::disk_task(
        Arc::new(Mutex::new(storage)),
        disk_rx,
        counters.clone(),
        move |seq| {
            let inbox = persisted_to.clone();
            async move { inbox.send(Event::Persisted(seq)).await.is_ok() }
        },
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
    if let Some(addr) = config.metrics_addr {
        serve_metrics(addr, config.id, counters.clone())?;
    }
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

/// Starts the `/metrics` server in a task queue of its own with a small share of the executor,
/// so that a scrape never delays the Raft loop by more than a slice.
fn serve_metrics(
    addr: std::net::SocketAddr,
    id: crate::core::NodeId,
    counters: Rc<Counters>,
) -> Result<(), RuntimeError> {
    const METRICS_SHARES: usize = 10;
    let listener = glommio::net::TcpListener::bind(addr)
        .map_err(|source| RuntimeError::Bind { addr, source })?;
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(METRICS_SHARES),
        glommio::Latency::NotImportant,
        "metrics",
    );
    glommio::spawn_local_into(metrics::serve(listener, id, counters), queue)
        .map_err(|e| RuntimeError::Executor(e.to_string()))?
        .detach();
    eprintln!("ringraft: node {id} serving metrics on http://{addr}/metrics");
    Ok(())
}

async fn ticker(
    tick: Duration,
    inbox: Rc<LocalSender<Event>>,
    emulated: Option<Rc<transport::Emulated>>,
) {
    let mut stop_sent = false;
    loop {
        glommio::timer::sleep(tick).await;
        if RELOAD.swap(false, Ordering::SeqCst) {
            match &emulated {
                Some(e) => e.reload(),
                None => eprintln!("ringraft: SIGHUP ignored: this node has no --emulation file"),
            }
        }
        if !stop_sent && STOP.load(Ordering::SeqCst) {
            stop_sent = true;
            if inbox.send(Event::Shutdown).await.is_err() {
                return;
            }
        }
        // Ticks go on after SIGTERM: a leader handing over its leadership still needs them.
        if inbox.send(Event::Tick).await.is_err() {
            return;
        }
    }
}

/// Says at start whether the log ends below what this node had acknowledged: it will not vote
/// until a leader has given the entries back. If a majority of nodes say this at once, no
/// leader can be elected and the entries are unrecoverable from the cluster; the nodes keep
/// what remains and wait for an operator.
fn report_lost_entries(config: &NodeConfig, restored: &crate::core::Restored) {
    let snapshot_index = restored
        .snapshot
        .as_ref()
        .map_or(0, |s| s.meta.last_included_index);
    let last_index = restored.entries.last().map_or(snapshot_index, |e| e.index);
    let acked_index = restored.hard_state.acked_index;
    if last_index < acked_index {
        eprintln!(
            "ringraft: node {}: the log ends at index {last_index} but this node had \
             acknowledged up to {acked_index}: entries were lost on disk. Withholding votes \
             until a leader has sent them back; if a majority of the nodes report this, the \
             lost entries cannot be recovered from the cluster",
            config.id
        );
    }
}
