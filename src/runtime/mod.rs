//! The runtime: the only room that uses glommio. It turns the sans-I/O core, the log and the
//! state machine into a server process.
//!
//! Placement (one process per node, one glommio executor per core it is given, [`placement`]):
//! * the **Raft executor** (thread `ringraft-raft`, the first core) runs the Raft loop
//!   ([`node::Driver`]), the peer transport, the tick timer and the disk task, as tasks sharing
//!   nothing across threads;
//! * each **client executor** (thread `ringraft-cli-N`, the other cores) accepts client
//!   connections on a socket of its own (SO_REUSEPORT), decodes and verifies requests, and
//!   encodes and writes responses; requests and responses cross to the Raft executor over a
//!   bounded shared channel each way ([`server::ClientLink`]); the first also serves `/metrics`.
//!   With one core there are no client executors: the Raft executor serves clients itself;
//! * **disk writes** run one group at a time and in order ([`disk`]): while one group's write
//!   is in flight, the next group gathers, which is group commit. A group's appends are one
//!   `O_DIRECT | O_DSYNC` write on the Raft executor's own io_uring (no thread hop); anything
//!   else (term and vote, truncations, purges, installed snapshots, starting a segment) runs on
//!   glommio's blocking pool in its place, on the client cores when pinned, never the Raft
//!   core. The leader's own write runs in parallel with its
//!   AppendEntries (thesis 10.2.1). Snapshots the node takes are saved on a second blocking
//!   thread, beside the log writes rather than in front of them.
//!
//! # The copies of a value
//!
//! A client's value is encoded once, by the leader, into the log record (with its CRC) that the
//! leader's log writes, the followers receive and their logs write as they are. Sockets are
//! read straight into the frame decoder's receive buffer ([`crate::wire::fill_decoder`]) and
//! frames are written in pieces with vectored `sendmsg` calls ([`write_parts`]), so from the
//! client's socket to a follower's disk a value is copied in user space at most three times:
//!
//! 1. leader: into its log record, once, with the command around it
//!    ([`crate::log::record::encode_single_with`] from `node`), from the request's value, which
//!    is a slice of the receive buffer the socket was read into
//!    ([`crate::wire::decode_client_request_shared`]). That record is the entry's
//!    [`crate::core::Entry::record`] from then on: an AppendEntries is sent as a small head
//!    (frame header and flatbuffer fields) followed by the entries' own record buffers
//!    ([`crate::wire::encode_peer_frame`]), and the records of every frame ready for a peer go
//!    to the socket in one vectored write (`transport`), with no copy;
//! 2. follower: into the aligned DMA buffer of its group write
//!    ([`crate::log::PreparedAppend::fill`]), the one copy on the way to any disk (the leader's
//!    own write is the same one copy from its record). The entries received are slices of the
//!    receive buffer, each record's CRC checked in place
//!    ([`crate::wire::decode_peer_message_shared`]);
//! 3. on either side, only for the frame at the end of a full receive buffer: its bytes read so
//!    far are moved to the start of the next buffer ([`crate::wire::FrameDecoder::read_space`]),
//!    at most one frame per [`crate::limits::PEER_RECEIVE_BUFFER_BYTES`] (peers) or
//!    [`crate::limits::CLIENT_RECEIVE_BUFFER_BYTES`] (clients) received, a small share of
//!    the bytes.
//!
//! `tests/record_path.rs` checks this by buffer identity, over a real socket: the client's value
//! and a follower's records lie where the socket's reads put them (beyond the moves of 3), the
//! pieces handed to the socket are the entries' own records, and the follower's log takes the
//! records as they are; a copy added on this path fails it.

pub mod config;
pub mod disk;
mod members;
pub mod metrics;
mod net;
pub mod node;
pub mod placement;
mod server;
mod snapshot_file;
mod stats;
pub mod storage;
pub mod trace;
mod transport;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalSender};
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::{CpuSet, LocalExecutorBuilder, Placement, PoolPlacement};

pub use config::{parse_members, Address, Member, NodeConfig, NodeConfigError};
pub use net::write_parts;
pub use placement::{Cpus, Plan};
pub use stats::{ClientCounters, Counters};

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
    /// `--join` with a data directory that is not empty.
    #[error("{0}")]
    Join(String),
    /// The configured group count differs from the data dir's, or cannot be recorded.
    #[error("groups: {0}")]
    Groups(String),
}

static STOP: AtomicBool = AtomicBool::new(false);
/// SIGHUPs received so far: each group's ticker reloads its link emulation when it sees the
/// count move (a flag one ticker cleared would leave the other groups unreloaded).
static RELOAD: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_reload_signal(_: libc::c_int) {
    RELOAD.fetch_add(1, Ordering::SeqCst);
}

/// Runs a node until SIGTERM or SIGINT. Blocks the calling thread.
pub fn run_node(config: NodeConfig) -> Result<(), RuntimeError> {
    config.validate()?;
    check_groups_recorded(&config)?;
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
    let plan = Plan::new(config.cpus.as_ref(), &placement::allowed_cores());
    let layout = Layout::new(&plan, config.groups as usize);
    let id = config.id;
    let client_listen = config
        .client_listen()
        .map_err(|source| RuntimeError::Resolve {
            what: "client",
            id,
            source,
        })?;
    // Every client executor accepts on a socket of its own (SO_REUSEPORT: the kernel spreads
    // the connections), bound here so that a taken port fails the start with its address.
    let client_listeners = (0..layout.clients.len().max(1))
        .map(|_| listen(client_listen))
        .collect::<Result<Vec<_>, _>>()?;
    let metrics_listener = config.metrics_addr.map(listen).transpose()?;
    eprintln!(
        "ringraft: node {id}: {} group(s), {} executor(s), {}",
        config.groups,
        layout.raft.len() + layout.clients.len(),
        if layout.pinned() {
            format!(
                "pinned on cores {:?}",
                plan.executors.iter().flatten().collect::<Vec<_>>()
            )
        } else {
            "unpinned".to_string()
        }
    );
    let client_counters = Arc::new(ClientCounters::default());
    let mut sides: Vec<RaftSide> = (0..config.groups)
        .map(|_| RaftSide {
            client_listener: None,
            metrics_listener: None,
            links: Vec::new(),
            metrics_link: None,
            client_counters: client_counters.clone(),
            handoff_out: Vec::new(),
            handoff_in: None,
        })
        .collect();
    let mut handoff_out = Vec::new();
    for side in sides.iter_mut().skip(1) {
        let (tx, rx) = shared_channel::new_bounded(crate::limits::PEER_HANDOFF_CONNECTIONS_MAX);
        side.handoff_in = Some(rx);
        handoff_out.push(tx);
    }
    sides[0].handoff_out = handoff_out;
    if layout.clients.is_empty() {
        let mut side = sides.pop().expect("one group");
        side.client_listener = client_listeners.into_iter().next();
        side.metrics_listener = metrics_listener;
        return spawn_raft(&config, &layout, 0, side)?
            .join()
            .map_err(|e| RuntimeError::Executor(format!("{e:?}")))?;
    }
    let mut clients = Vec::new();
    let mut metrics_listener = metrics_listener;
    for (n, listener) in client_listeners.into_iter().enumerate() {
        let mut links = Vec::new();
        for side in sides.iter_mut() {
            let ends = server::LinkEnds::new(crate::limits::CLIENT_LINK_REQUESTS_MAX);
            side.links.push((ends.requests_rx, ends.answers_tx));
            links.push((ends.requests_tx, ends.answers_rx));
        }
        let metrics = metrics_listener.take().map(|listener| {
            let mut asks = Vec::new();
            for side in sides.iter_mut() {
                let (ask_tx, ask_rx) =
                    shared_channel::new_bounded(crate::limits::METRICS_RENDERS_MAX);
                let (text_tx, text_rx) =
                    shared_channel::new_bounded(crate::limits::METRICS_RENDERS_MAX);
                side.metrics_link = Some((ask_rx, text_tx));
                asks.push((ask_tx, text_rx));
            }
            (listener, asks)
        });
        let client = ClientExecutor {
            number: n + 1,
            listener,
            links,
            metrics,
            counters: client_counters.clone(),
            inflight_max: config.client_inflight_max,
            groups: config.groups,
            id,
        };
        match spawn_client(&config, layout.clients[n], client) {
            Ok(handle) => clients.push(handle),
            Err(e) => {
                // The Raft side's ends go unconnected: the started client executors stop.
                drop(sides);
                for handle in clients {
                    let _ = handle.join();
                }
                return Err(e);
            }
        }
    }
    let mut rafts = Vec::new();
    let mut result = Ok(());
    for (group, side) in sides.into_iter().enumerate() {
        match spawn_raft(&config, &layout, group, side) {
            Ok(handle) => rafts.push(handle),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    for handle in rafts {
        let joined = handle
            .join()
            .map_err(|e| RuntimeError::Executor(format!("{e:?}")))
            .and_then(|r| r);
        if result.is_ok() {
            result = joined;
        }
    }
    for handle in clients {
        let _ = handle.join();
    }
    result
}

/// Which executors run which job: one Raft executor per group, then the client executors.
struct Layout {
    /// Group g's Raft executor's core (or unpinned).
    raft: Vec<Option<usize>>,
    /// The client executors' cores (or unpinned); none when one executor does everything.
    clients: Vec<Option<usize>>,
}

impl Layout {
    fn new(plan: &Plan, groups: usize) -> Layout {
        if groups <= 1 {
            return Layout {
                raft: vec![plan.executors[0]],
                clients: plan.executors[1..].to_vec(),
            };
        }
        if plan.pinned() && plan.executors.len() > groups {
            return Layout {
                raft: plan.executors[..groups].to_vec(),
                clients: plan.executors[groups..].to_vec(),
            };
        }
        // Fewer cores than groups plus one: every executor shares the cores, unpinned, and
        // clients get at least one executor of their own (each group's executor serves no
        // client connection directly, as the requests name their group).
        Layout {
            raft: vec![None; groups],
            clients: vec![None; plan.executors.len().saturating_sub(groups).max(1)],
        }
    }

    fn pinned(&self) -> bool {
        self.raft.first().is_some_and(Option::is_some)
    }

    fn client_cores(&self) -> Vec<usize> {
        self.clients.iter().flatten().copied().collect()
    }
}

/// The file in a data dir that records how many groups its node hosts, written when a node
/// with several groups starts on an empty one. A data dir without it holds one group (the
/// layout of a node before groups) or nothing yet.
pub const GROUPS_FILE: &str = "GROUPS";

/// Refuses to start with a group count other than the one the data dir was made with: keys
/// would hash to other groups, and each group's log would be read as another's.
fn check_groups_recorded(config: &NodeConfig) -> Result<(), RuntimeError> {
    let dir = &config.data_dir;
    let file = dir.join(GROUPS_FILE);
    let recorded = match std::fs::read_to_string(&file) {
        Ok(text) => Some(text.trim().parse::<u32>().map_err(|_| {
            RuntimeError::Groups(format!(
                "{} holds `{}`, not a group count",
                file.display(),
                text.trim()
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let holds_one = ["hard_state", "log"]
                .iter()
                .any(|name| dir.join(name).exists());
            holds_one.then_some(1)
        }
        Err(e) => {
            return Err(RuntimeError::Groups(format!(
                "cannot read {}: {e}",
                file.display()
            )))
        }
    };
    match recorded {
        Some(n) if n != config.groups => Err(RuntimeError::Groups(format!(
            "data dir {} was made with groups = {n}, and this node is configured with groups = \
             {}: the group count is fixed when a cluster is created (keys hash to groups); \
             start with groups = {n}, or give the node an empty data dir",
            dir.display(),
            config.groups
        ))),
        Some(_) => Ok(()),
        None if config.groups > 1 => {
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(dir)?;
                let temp = dir.join(format!("{GROUPS_FILE}.tmp"));
                std::fs::write(&temp, format!("{}\n", config.groups))?;
                std::fs::File::open(&temp)?.sync_all()?;
                std::fs::rename(&temp, &file)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write()
                .map_err(|e| RuntimeError::Groups(format!("cannot write {}: {e}", file.display())))
        }
        None => Ok(()),
    }
}

/// A listening socket for `addr`, with SO_REUSEPORT so that several executors may each have one.
fn listen(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, RuntimeError> {
    use socket2::{Domain, Socket, Type};
    let bind = || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    bind().map_err(|source| RuntimeError::Bind {
        addr,
        source: source.into(),
    })
}

/// A listener bound by the launcher, handed to the executor that serves it.
fn on_this_executor(listener: std::net::TcpListener) -> glommio::net::TcpListener {
    use std::os::unix::io::{FromRawFd, IntoRawFd};
    // SAFETY: the descriptor is a bound, listening TCP socket that nothing else owns.
    unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) }
}

/// What a group's Raft executor is given besides the config.
struct RaftSide {
    /// Group 0: the hand-off queues of groups 1, 2, ... (peer connections naming them).
    handoff_out: Vec<SharedSender<transport::Handoff>>,
    /// Groups after 0: the queue of peer connections handed over by group 0's listener.
    handoff_in: Option<SharedReceiver<transport::Handoff>>,
    /// The client listener, when this executor serves clients itself (one executor).
    client_listener: Option<std::net::TcpListener>,
    /// The metrics listener, when this executor serves metrics itself (one executor).
    metrics_listener: Option<std::net::TcpListener>,
    /// The Raft executor's ends of each client executor's link.
    links: Vec<(
        SharedReceiver<server::ForwardedBatch>,
        SharedSender<server::Answers>,
    )>,
    /// The Raft executor's ends of the metrics server's link (render requests in, text out).
    metrics_link: Option<(SharedReceiver<()>, SharedSender<String>)>,
    client_counters: Arc<ClientCounters>,
}

/// The metrics server's link to one group's Raft executor: a render asked, the text back.
type RenderLink = (SharedSender<()>, SharedReceiver<String>);

/// What a client executor is given.
struct ClientExecutor {
    /// 1 for the first client executor.
    number: usize,
    listener: std::net::TcpListener,
    /// Its link to each group's Raft executor, in group order: requests out, answers in.
    links: Vec<(
        SharedSender<server::ForwardedBatch>,
        SharedReceiver<server::Answers>,
    )>,
    /// The metrics listener and its links to each group (render asked, text back), on the
    /// first client executor.
    metrics: Option<(std::net::TcpListener, Vec<RenderLink>)>,
    counters: Arc<ClientCounters>,
    inflight_max: usize,
    groups: u32,
    id: crate::core::NodeId,
}

/// An executor on `core` (or unpinned); its blocking threads on `pool`.
fn executor(config: &NodeConfig, core: Option<usize>, pool: PoolPlacement) -> LocalExecutorBuilder {
    let placement = core.map_or(Placement::Unbound, Placement::Fixed);
    // glommio names the thread `<name>-<executor id>` before anything runs on it, and its
    // blocking threads inherit that; the executor renames itself once running.
    let mut builder = LocalExecutorBuilder::new(placement)
        .blocking_thread_pool_placement(pool)
        .name("ringraft-pool")
        .io_memory(config.io_memory_mib << 20);
    if config.spin_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(config.spin_us));
    }
    builder
}

/// Names the calling thread (its `comm`, at most 15 bytes), so that per-thread CPU tables say
/// which executor a thread is.
fn name_thread(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().take(15).collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

fn spawn_raft(
    config: &NodeConfig,
    layout: &Layout,
    group: usize,
    side: RaftSide,
) -> Result<glommio::ExecutorJoinHandle<Result<(), RuntimeError>>, RuntimeError> {
    let pool = blocking_threads(layout);
    let mut config = config.clone();
    config.group = group as u32;
    config.data_dir = config.group_dir(group as u32);
    let name = if config.groups > 1 {
        format!("ringraft-g{group}")
    } else {
        "ringraft-raft".to_string()
    };
    executor(&config, layout.raft[group], pool)
        .spawn(move || async move {
            name_thread(&name);
            node_main(config, side).await
        })
        .map_err(|e| RuntimeError::Executor(e.to_string()))
}

fn spawn_client(
    config: &NodeConfig,
    core: Option<usize>,
    client: ClientExecutor,
) -> Result<glommio::ExecutorJoinHandle<()>, RuntimeError> {
    // One blocking thread, idle: client connections do no blocking work.
    let pool = match core.map(|c| cores_set(&[c])) {
        Some(Ok(set)) => PoolPlacement::Custom(vec![set]),
        _ => PoolPlacement::Unbound(1),
    };
    executor(config, core, pool)
        .spawn(move || async move {
            name_thread(&format!("ringraft-cli-{}", client.number));
            serve_clients_remote(client).await
        })
        .map_err(|e| RuntimeError::Executor(e.to_string()))
}

/// A client executor: serves its connections (and `/metrics` on the first) until the Raft
/// executor is gone.
async fn serve_clients_remote(client: ClientExecutor) {
    let mut links = Vec::new();
    let mut deliveries = Vec::new();
    for (requests, answers) in client.links {
        let (link, answers) =
            server::ClientLink::connect(requests, answers, crate::limits::CLIENT_LINK_REQUESTS_MAX)
                .await;
        links.push(link.clone());
        deliveries.push(glommio::spawn_local(async move {
            link.deliver_answers(answers).await
        }));
    }
    let metrics = match client.metrics {
        Some((listener, asks)) => {
            let mut groups = Vec::new();
            for (ask, text) in asks {
                groups.push(Rc::new(metrics::RemoteFigures::connect(ask, text).await));
            }
            let figures = metrics::Figures::Remote(Rc::new(groups));
            eprintln!(
                "ringraft: node {} serving metrics on http://{}/metrics",
                client.id,
                listener.local_addr().map_or("?".into(), |a| a.to_string())
            );
            let listener = on_this_executor(listener);
            Some(glommio::spawn_local(metrics::serve(
                listener, client.id, figures,
            )))
        }
        None => None,
    };
    let accept = glommio::spawn_local(server::serve_clients(
        on_this_executor(client.listener),
        server::Upstream::Remote(Rc::new(links)),
        client.counters,
        client.inflight_max,
        client.groups,
    ));
    for delivery in deliveries {
        delivery.await;
    }
    drop(accept);
    drop(metrics);
}

/// Blocking threads of the Raft executor: one for the log's writes (`disk_task` keeps at most
/// one in flight) and one for snapshots, so that saving a snapshot never waits for, or holds
/// up, a log write. When the executors are pinned they run on the client executors' cores,
/// never on the Raft core.
fn blocking_threads(layout: &Layout) -> PoolPlacement {
    const BLOCKING_THREADS: usize = 2;
    match cores_set(&layout.client_cores()) {
        Ok(set) if layout.pinned() && !set.is_empty() => {
            PoolPlacement::Custom(vec![set; BLOCKING_THREADS])
        }
        _ => PoolPlacement::Unbound(BLOCKING_THREADS),
    }
}

/// The online cores among `cores`.
fn cores_set(cores: &[usize]) -> glommio::Result<CpuSet, ()> {
    CpuSet::online().map(|set| set.filter(|l| cores.contains(&l.cpu)))
}

/// Marks a data directory whose node joined a running cluster: on every later start its
/// configuration comes from its log and snapshot only, never from `--members` (which for such a
/// node names itself, and would make it a cluster of one).
const JOINED_MARKER: &str = "JOINED";

/// `--join`: refuses a data directory with anything in it, and marks the new one as joined.
/// Returns whether this node joined (now or at an earlier start).
fn prepare_join(config: &NodeConfig) -> Result<bool, RuntimeError> {
    let dir = &config.data_dir;
    let marker = dir.join(JOINED_MARKER);
    if !config.join {
        return Ok(marker.exists());
    }
    let held: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(RuntimeError::Join(format!(
                "--join: cannot read data dir {}: {e}",
                dir.display()
            )))
        }
    };
    if !held.is_empty() {
        return Err(RuntimeError::Join(format!(
            "--join needs an empty data dir, and {} already holds state ({}): to restart a node \
             that joined or was a member, start it without --join; to add a fresh node, give it \
             an empty directory",
            dir.display(),
            held.join(", ")
        )));
    }
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&marker, b"joined a running cluster\n")?;
        std::fs::File::open(&marker)?.sync_all()?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        RuntimeError::Join(format!("--join: cannot write {}: {e}", marker.display()))
    })?;
    Ok(true)
}

async fn node_main(config: NodeConfig, side: RaftSide) -> Result<(), RuntimeError> {
    // Connected first, so that a failed start below disconnects them and the client executors
    // stop, rather than wait for a Raft executor that never comes.
    let mut links = Vec::new();
    for (requests, answers) in side.links {
        let requests = server::connected(requests.connect()).await;
        let answers = server::connected(answers.connect()).await;
        links.push((requests, Rc::new(server::AnswerLink::new(answers))));
    }
    let answer_senders: Vec<_> = links.iter().map(|(_, answers)| answers.clone()).collect();
    let metrics_link = match side.metrics_link {
        Some((ask, text)) => Some((
            server::connected(ask.connect()).await,
            server::connected(text.connect()).await,
        )),
        None => None,
    };
    let joined = config.group == 0 && prepare_join(&config)?;
    let handoffs = {
        let mut connected = Vec::new();
        for queue in side.handoff_out {
            connected.push(server::connected(queue.connect()).await);
        }
        Rc::new(connected)
    };
    let handoff_in = match side.handoff_in {
        Some(queue) => Some(server::connected(queue.connect()).await),
        None => None,
    };
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
    let mut core_config = config.core_config();
    if joined {
        core_config.voters.clear();
    }
    let node = RawNode::new(core_config, restored).map_err(NodeConfigError::from)?;
    let members = Rc::new(members::MemberTable::new(config.id, config.members.clone()));
    let me = config.member(config.id).expect("validated").clone();
    let id = config.id;
    let resolve_error = |what| move |source| RuntimeError::Resolve { what, id, source };
    let peer_listen = config.peer_listen().map_err(resolve_error("peer"))?;
    // The node's one peer listener is group 0's; the other groups get their connections from it.
    let peer_listener = if config.group == 0 {
        Some(
            glommio::net::TcpListener::bind(peer_listen).map_err(|source| RuntimeError::Bind {
                addr: peer_listen,
                source,
            })?,
        )
    } else {
        None
    };

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
    let counters = Rc::new(Counters {
        clients: side.client_counters,
        ..Counters::default()
    });
    let (inbox_tx, inbox_rx) = local_channel::new_bounded(INBOX_EVENTS_MAX);
    let inbox_tx = Rc::new(inbox_tx);
    let (disk_tx, disk_rx) = local_channel::new_bounded(disk::DISK_JOBS_MAX);
    let outbound = transport::Outbound::new(&config, counters.clone(), emulated.clone());
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
    if let Some(listener) = peer_listener {
        glommio::spawn_local(transport::serve_inbound(
            listener,
            config.clone(),
            members.clone(),
            inbox_tx.clone(),
            counters.clone(),
            handoffs,
        ))
        .detach();
    }
    if let Some(queue) = handoff_in {
        glommio::spawn_local(transport::serve_handed_off(
            queue,
            config.clone(),
            members.clone(),
            inbox_tx.clone(),
            counters.clone(),
        ))
        .detach();
    }
    if let Some(listener) = side.metrics_listener {
        let figures = metrics::Figures::Local(counters.clone(), metrics::Labels::of(&config));
        spawn_metrics(metrics::serve(on_this_executor(listener), id, figures))?;
        eprintln!(
            "ringraft: node {id} serving metrics on http://{}/metrics",
            config.metrics_addr.expect("listening")
        );
    }
    if let Some((ask, text)) = metrics_link {
        spawn_metrics(metrics::render_on_request(
            ask,
            text,
            metrics::Labels::of(&config),
            counters.clone(),
        ))?;
    }
    match side.client_listener {
        Some(listener) => {
            glommio::spawn_local(server::serve_clients(
                on_this_executor(listener),
                server::Upstream::Local(inbox_tx.clone()),
                counters.clients.clone(),
                config.client_inflight_max,
                config.groups,
            ))
            .detach();
        }
        None => {
            for (requests, answers) in links {
                glommio::spawn_local(server::forward_requests(
                    requests,
                    answers,
                    inbox_tx.clone(),
                ))
                .detach();
            }
        }
    }
    eprintln!(
        "ringraft: node {} serving peers on {peer_listen} (advertised {}) and clients on {} (advertised {})",
        config.id,
        me.peer_addr,
        config.client_listen().map_or("?".into(), |a| a.to_string()),
        me.client_addr
    );
    Driver::new(
        config.clone(),
        node,
        kv,
        counters.clone(),
        outbound,
        members,
        disk_tx,
        snapshot_file,
        inbox_tx.clone(),
    )
    .run(inbox_rx)
    .await;
    // The client executors stop once their answers end (tasks left on this executor may
    // outlive this function, and with them the senders).
    for answers in answer_senders {
        answers.close();
    }
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

/// Runs a metrics task in a task queue of its own with a small share of the Raft executor, so
/// that a scrape never delays the Raft loop by more than a slice.
fn spawn_metrics(
    task: impl std::future::Future<Output = ()> + 'static,
) -> Result<(), RuntimeError> {
    const METRICS_SHARES: usize = 10;
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(METRICS_SHARES),
        glommio::Latency::NotImportant,
        "metrics",
    );
    glommio::spawn_local_into(task, queue)
        .map_err(|e| RuntimeError::Executor(e.to_string()))?
        .detach();
    Ok(())
}

async fn ticker(
    tick: Duration,
    inbox: Rc<LocalSender<Event>>,
    emulated: Option<Rc<transport::Emulated>>,
) {
    let mut stop_sent = false;
    let mut reloads_seen = 0;
    loop {
        glommio::timer::sleep(tick).await;
        let reloads = RELOAD.load(Ordering::SeqCst);
        if reloads != reloads_seen {
            reloads_seen = reloads;
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
