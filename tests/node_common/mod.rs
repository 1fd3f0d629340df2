//! Harness for tests that run real `ringraft node` processes on loopback.
//!
//! A [`Cluster`] owns the node processes and their data directories (under Cargo's per-target
//! temporary directory, which lives on the build disk, never on a tmpfs). It kills every child
//! with SIGKILL when dropped, also while a test panics, and then prints the tail of each node's
//! log so that a failure explains itself.
//!
//! Ports come from a range below Linux's ephemeral range (32768..), starting at an offset derived
//! from the test process's PID, and each one is checked by binding it before use; tests running in
//! parallel (threads of one binary, or several binaries) therefore do not collide.
//!
//! Waiting is polling with a deadline ([`wait_until`]), never a bare sleep.
//!
//! Set `RINGRAFT_TEST_KEEP=1` to keep the data directories and node logs after a test.
#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringraft::client::{Client, ClientOptions};
use ringraft::core::Role;
use ringraft::wire::NodeStats;

/// Core tick of test nodes.
pub const TICK_MS: u64 = 10;
/// Election timeout E in ticks; the core randomizes it in [E, 2E).
pub const ELECTION_TICKS: u64 = 20;
/// Heartbeat interval in ticks.
pub const HEARTBEAT_TICKS: u64 = 2;
/// The longest randomized election timeout of test nodes: 2E ticks.
pub const ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(2 * ELECTION_TICKS * TICK_MS);

/// Lowest port handed out; the range ends below the ephemeral ports (32768).
const PORT_BASE: u32 = 20_000;
const PORT_SPAN: u32 = 12_000;
static NEXT_PORT: AtomicU32 = AtomicU32::new(u32::MAX);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    // Spread test processes apart: PID-derived start, then sequential within the process.
    let _ = NEXT_PORT.compare_exchange(
        u32::MAX,
        (std::process::id() * 61) % PORT_SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..PORT_SPAN {
        let port = (PORT_BASE + NEXT_PORT.fetch_add(1, Ordering::SeqCst) % PORT_SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port in {PORT_BASE}..{}",
        PORT_BASE + PORT_SPAN
    );
}

/// The first of `count` consecutive loopback ports that nobody listens on right now (an etcd
/// cluster takes its client and peer ports from one base).
pub fn free_port_block(count: u16) -> u16 {
    let _ = NEXT_PORT.compare_exchange(
        u32::MAX,
        (std::process::id() * 61) % PORT_SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..PORT_SPAN {
        let first = NEXT_PORT.fetch_add(u32::from(count), Ordering::SeqCst) % PORT_SPAN;
        if first + u32::from(count) > PORT_SPAN {
            continue;
        }
        let base = (PORT_BASE + first) as u16;
        if (base..base + count).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return base;
        }
    }
    panic!(
        "no {count} consecutive free loopback ports in {PORT_BASE}..{}",
        PORT_BASE + PORT_SPAN
    );
}

/// Whether a test that needs a real etcd may run. Without etcd it reports itself skipped, except
/// under CI (the `CI` variable set, as `.ci/run` runs), where a missing etcd is a failure: CI must
/// run the etcd tests for real, never pass them by skipping.
pub fn etcd_available(test: &str) -> bool {
    if ringraft::bench::etcd::find_etcd().is_some() {
        return true;
    }
    let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !under_ci,
        "{test}: no etcd binary under CI; .ci/run installs it with scripts/install-etcd.sh"
    );
    eprintln!("SKIPPED {test}: no etcd binary (run scripts/install-etcd.sh)");
    false
}

struct NodeProc {
    id: u64,
    peer_addr: SocketAddr,
    client_addr: SocketAddr,
    metrics_addr: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

/// Real node processes on loopback. Every method takes `&self`, so a test can share the cluster
/// (`Arc<Cluster>`) with the glommio executor that drives clients.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// The bootstrap members (`--members` of nodes 1..=bootstrap_n).
    members: String,
    bootstrap_n: u64,
    extra_args: Vec<String>,
    nodes: Mutex<Vec<NodeProc>>,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) with the test timing plus `extra_args`.
    pub fn start(n: u64, extra_args: &[&str]) -> Cluster {
        let cluster = Cluster::new(n, extra_args);
        for id in 1..=n {
            cluster.start_node(id);
        }
        cluster
    }

    /// Allocates ports and directories for `n` nodes without starting them.
    pub fn new(n: u64, extra_args: &[&str]) -> Cluster {
        Cluster::with_spares(n, 0, extra_args)
    }

    /// Like [`Cluster::new`], plus `spares` more nodes (ids n+1..) that are not bootstrap
    /// members: start them with [`Cluster::start_joining`] and add them with membership changes.
    pub fn with_spares(n: u64, spares: u64, extra_args: &[&str]) -> Cluster {
        let bootstrap_n = n;
        let n = n + spares;
        let dir = tempfile::Builder::new()
            .prefix("ringraft-node-test-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create a data directory under CARGO_TARGET_TMPDIR");
        assert_on_disk(dir.path());
        let nodes: Vec<NodeProc> = (1..=n)
            .map(|id| NodeProc {
                id,
                peer_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                client_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                metrics_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                data_dir: dir.path().join(format!("node{id}")),
                log_path: dir.path().join(format!("node{id}.log")),
                child: None,
            })
            .collect();
        let member_list = |upto: u64| {
            nodes
                .iter()
                .filter(|p| p.id <= upto)
                .map(|p| format!("{}={}/{}", p.id, p.peer_addr, p.client_addr))
                .collect::<Vec<_>>()
                .join(",")
        };
        let members = member_list(bootstrap_n);
        Cluster {
            dir,
            members,
            bootstrap_n,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            nodes: Mutex::new(nodes),
        }
    }

    /// Starts (or restarts) node `id` on its data directory. Its output is appended to its log.
    pub fn start_node(&self, id: u64) {
        self.start_node_with(id, &[]);
    }

    /// Starts spare node `id` with `--join` (an empty data directory, no configuration): it
    /// waits until a leader adds it. Restart it later with [`Cluster::start_node`].
    pub fn start_joining(&self, id: u64) {
        assert!(id > self.bootstrap_n, "node {id} is a bootstrap member");
        self.start_node_with(id, &["--join"]);
    }

    /// The addresses of node `id` as `member add` takes them: PEER_ADDR/CLIENT_ADDR.
    pub fn member_context(&self, id: u64) -> String {
        format!("{}/{}", self.peer_addr(id), self.client_addr(id))
    }

    /// Starts (or restarts) node `id` with `more_args` after the cluster's own.
    pub fn start_node_with(&self, id: u64, more_args: &[&str]) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let node = &mut nodes[(id - 1) as usize];
        assert!(node.child.is_none(), "node {id} is already running");
        // A spare knows only its own addresses, as an operator adding a node would start it:
        // it learns the leader's from the leader's connection, the others' from the
        // configuration or (the bootstrap members, whose entry carries none) from theirs.
        let own = format!("{id}={}/{}", node.peer_addr, node.client_addr);
        let members = if id > self.bootstrap_n {
            &own
        } else {
            &self.members
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open node log");
        let child = Command::new(env!("CARGO_BIN_EXE_ringraft"))
            .arg("node")
            .args(["--id", &id.to_string(), "--members", members])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--tick-ms", &TICK_MS.to_string()])
            .args(["--election-timeout-ticks", &ELECTION_TICKS.to_string()])
            .args(["--heartbeat-interval-ticks", &HEARTBEAT_TICKS.to_string()])
            .args(["--metrics-addr", &node.metrics_addr.to_string()])
            .args(&self.extra_args)
            .args(more_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn ringraft node");
        node.child = Some(child);
    }

    /// SIGKILL: the node dies at once, without flushing anything.
    pub fn kill(&self, id: u64) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = nodes[(id - 1) as usize].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the node freezes (timers, sockets and all) without knowing it; its peers see a
    /// silent node. Undone by [`Cluster::resume`]. Returns once every thread of it is stopped:
    /// the stop is not immediate for a process of several threads (the thread that takes the
    /// signal stops the others once it runs), and on a loaded machine its Raft thread was seen
    /// to acknowledge an entry sent after `kill` had returned.
    pub fn pause(&self, id: u64) {
        self.signal(id, libc::SIGSTOP);
        let pid = self
            .pid(id)
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !all_threads_stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "node {id} (pid {pid}) did not stop within 30 s of SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGCONT: a paused node runs on from where it stopped, as if no time had passed for it.
    pub fn resume(&self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    /// SIGTERM without waiting: poll [`Cluster::exit_status`] for the outcome.
    pub fn sigterm(&self, id: u64) {
        self.signal(id, libc::SIGTERM);
    }

    fn signal(&self, id: u64, signal: libc::c_int) {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let child = nodes[(id - 1) as usize]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "signal {signal} to node {id}");
    }

    /// SIGTERM, then wait up to `grace` for a clean exit (SIGKILL after that). Returns whether the
    /// node exited by itself with success.
    pub fn terminate(&self, id: u64, grace: Duration) -> bool {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut child) = nodes[(id - 1) as usize].child.take() else {
            return false;
        };
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Node `id`'s exit status if it has exited by itself (it is then marked stopped); None
    /// while it runs or when it was not started. Poll it with [`wait_until`].
    pub fn exit_status(&self, id: u64) -> Option<std::process::ExitStatus> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let node = &mut nodes[(id - 1) as usize];
        let status = node.child.as_mut()?.try_wait().ok().flatten()?;
        node.child = None;
        Some(status)
    }

    /// Everything node `id` has written to its log file so far (all its runs).
    pub fn log_text(&self, id: u64) -> String {
        let path = self.nodes.lock().unwrap_or_else(|p| p.into_inner())[(id - 1) as usize]
            .log_path
            .clone();
        std::fs::read_to_string(&path).unwrap_or_default()
    }

    /// Whether node `id`'s process is alive (it has not exited).
    pub fn is_running(&self, id: u64) -> bool {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes[(id - 1) as usize]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id of node `id`, if it is running.
    pub fn pid(&self, id: u64) -> Option<u32> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes[(id - 1) as usize].child.as_ref().map(Child::id)
    }

    /// Client addresses of every node, in id order.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|n| n.client_addr)
            .collect()
    }

    /// Client address of node `id`.
    pub fn client_addr(&self, id: u64) -> SocketAddr {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())[(id - 1) as usize].client_addr
    }

    /// Where node `id` serves `/metrics`.
    pub fn metrics_addr(&self, id: u64) -> SocketAddr {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes[(id - 1) as usize].metrics_addr
    }

    /// Peer address of node `id`.
    pub fn peer_addr(&self, id: u64) -> SocketAddr {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())[(id - 1) as usize].peer_addr
    }

    /// Data directory of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())[(id - 1) as usize]
            .data_dir
            .clone()
    }

    /// Node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|n| n.id)
            .collect()
    }

    /// The root of the cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let nodes = self.nodes.get_mut().unwrap_or_else(|p| p.into_inner());
        for node in nodes.iter_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for node in nodes.iter() {
                eprintln!(
                    "---- tail of node {} log ({}) ----\n{}",
                    node.id,
                    node.log_path.display(),
                    tail(&node.log_path, 4096)
                );
            }
        }
        if std::env::var_os("RINGRAFT_TEST_KEEP").is_some() {
            let dir =
                std::mem::replace(&mut self.dir, tempfile::tempdir().expect("placeholder dir"));
            eprintln!("keeping {}", dir.keep().display());
        }
    }
}

/// Durability tests mean nothing on a tmpfs (and O_DIRECT may not work there): refuse one.
fn assert_on_disk(path: &Path) {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
    // SAFETY: statfs(2) writes into a zeroed struct we own; the path is NUL-terminated.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut fs) };
    assert_eq!(rc, 0, "statfs {}", path.display());
    assert_ne!(
        fs.f_type as i64,
        TMPFS_MAGIC,
        "{} is on a tmpfs; node tests need a disk filesystem",
        path.display()
    );
}

fn tail(path: &Path, bytes: u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text
}

/// Runs `f` on a fresh glommio executor (small I/O memory: non-root memlock limits are small) and
/// returns its result; a panic inside re-panics here.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .expect("start a glommio executor")
        .join()
        .unwrap_or_else(|e| panic!("client executor failed: {e:?}"))
}

/// Client ids must be unique in a cluster; tests of one process share this counter.
static NEXT_CLIENT_ID: AtomicU32 = AtomicU32::new(1);

/// A client session for `members` with test-friendly retry settings.
pub fn client(members: Vec<SocketAddr>) -> Client {
    let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::SeqCst) as u64
        | (u64::from(std::process::id()) << 20);
    // Bare addresses: the client learns each node's id from the leader hints that name it.
    let mut options = ClientOptions::new(members.into_iter().map(Into::into).collect(), id);
    options.attempt_timeout = Duration::from_secs(2);
    options.attempts_max = 40;
    Client::new(options)
}

/// The stats of the node at `addr`, or None if it does not answer within a second.
pub async fn stats(addr: SocketAddr) -> Option<NodeStats> {
    let mut options = ClientOptions::new(vec![addr.into()], u64::MAX);
    options.attempt_timeout = Duration::from_secs(1);
    options.attempts_max = 1;
    Client::new(options).stats().await.ok()
}

/// Polls `check` every 20 ms until it returns Some, or panics with `what` after `timeout`.
pub async fn wait_until<T, Fut: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader's stats once exactly one node among `addrs` is leader of the highest term seen and
/// every other answering node follows it in that term.
pub async fn leader_among(addrs: &[SocketAddr]) -> Option<NodeStats> {
    let mut all = Vec::new();
    for addr in addrs {
        if let Some(s) = stats(*addr).await {
            all.push(s);
        }
    }
    let term = all.iter().map(|s| s.term).max()?;
    let leaders: Vec<&NodeStats> = all
        .iter()
        .filter(|s| s.role == Role::Leader && s.term == term)
        .collect();
    if leaders.len() != 1 || all.len() * 2 <= addrs.len() {
        return None;
    }
    let leader = leaders[0].clone();
    all.iter()
        .all(|s| {
            s.term == term && (s.node_id == leader.node_id || s.leader_id == Some(leader.node_id))
        })
        .then_some(leader)
}

/// Waits up to `timeout` for a leader among `addrs` (see [`leader_among`]).
pub async fn wait_for_leader(addrs: &[SocketAddr], timeout: Duration) -> NodeStats {
    let addrs = addrs.to_vec();
    wait_until("a leader", timeout, || leader_among(&addrs)).await
}

/// Acknowledged writes: key -> value. Writers insert only after `put` returned Ok.
pub type Acked =
    std::rc::Rc<std::cell::RefCell<std::collections::BTreeMap<bytes::Bytes, bytes::Bytes>>>;

/// Writers of distinct keys until stopped: the load of every "under load" test. Each task
/// writes `{prefix}{task:02}-{i:06}` through its session and records each acknowledged write,
/// the time of each success and each failure (a write the client gave up on: its outcome is
/// unknown, so it is not checked, but a test asserts there were none).
pub struct Load {
    /// Every acknowledged write so far.
    pub acked: Acked,
    /// When each write was acknowledged, in order.
    pub successes: std::rc::Rc<std::cell::RefCell<Vec<Instant>>>,
    failed: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    stop: std::rc::Rc<std::cell::Cell<bool>>,
    tasks: Vec<glommio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `tasks_per_session` writers on each of `sessions`, on the calling executor.
    pub fn start(sessions: Vec<Client>, tasks_per_session: u64, prefix: &'static str) -> Load {
        let load = Load {
            acked: Default::default(),
            successes: Default::default(),
            failed: Default::default(),
            stop: Default::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for (s, session) in sessions.into_iter().enumerate() {
            let session = std::rc::Rc::new(session);
            for t in 0..tasks_per_session {
                let task = s as u64 * tasks_per_session + t;
                let (session, acked, successes, failed, stop) = (
                    session.clone(),
                    load.acked.clone(),
                    load.successes.clone(),
                    load.failed.clone(),
                    load.stop.clone(),
                );
                let writer = glommio::spawn_local(async move {
                    let mut i = 0u64;
                    while !stop.get() {
                        let key = bytes::Bytes::from(format!("{prefix}{task:02}-{i:06}"));
                        let value = bytes::Bytes::from(format!("value-{task}-{i}"));
                        match session.put(key.clone(), value.clone()).await {
                            Ok(_) => {
                                acked.borrow_mut().insert(key, value);
                                successes.borrow_mut().push(Instant::now());
                            }
                            Err(e) => failed.borrow_mut().push(format!("{key:?}: {e}")),
                        }
                        i += 1;
                    }
                });
                tasks.push(writer.detach());
            }
        }
        Load { tasks, ..load }
    }

    /// Acknowledged writes so far.
    pub fn acked_len(&self) -> usize {
        self.acked.borrow().len()
    }

    /// Waits (up to `deadline`) until at least `n` writes are acknowledged in all.
    pub async fn wait_for_acked(&self, n: usize, what: &str, deadline: Duration) {
        let acked = self.acked.clone();
        wait_until(what, deadline, || {
            let have = acked.borrow().len();
            async move { (have >= n).then_some(()) }
        })
        .await;
    }

    /// Waits (up to a minute) for `more` writes acknowledged from now.
    pub async fn wait_for_more(&self, more: usize, what: &str) {
        let n = self.acked_len() + more;
        self.wait_for_acked(n, what, Duration::from_secs(60)).await;
    }

    /// Stops the writers, asserts that no write failed for good, and returns the acknowledged
    /// writes and the time of each acknowledgement.
    pub async fn stop(
        self,
    ) -> (
        std::collections::BTreeMap<bytes::Bytes, bytes::Bytes>,
        Vec<Instant>,
    ) {
        self.stop.set(true);
        for task in self.tasks {
            task.await;
        }
        assert!(
            self.failed.borrow().is_empty(),
            "writes failed for good: {:?}",
            self.failed.borrow().iter().take(5).collect::<Vec<_>>()
        );
        let acked = self.acked.borrow().clone();
        let successes = self.successes.borrow().clone();
        (acked, successes)
    }
}

/// `count` puts of 1 KiB values, 32 in flight on one session; all must succeed.
pub async fn write_batch(session: &std::rc::Rc<Client>, acked: &Acked, round: u64, count: u64) {
    const IN_FLIGHT: u64 = 32;
    let mut tasks = Vec::new();
    for t in 0..IN_FLIGHT {
        let (session, acked) = (session.clone(), acked.clone());
        tasks.push(glommio::spawn_local(async move {
            for i in (t..count).step_by(IN_FLIGHT as usize) {
                let key = bytes::Bytes::from(format!("r{round}-{i:06}"));
                let mut value = format!("r{round}-{i}-").into_bytes();
                value.resize(1024, b'x');
                let value = bytes::Bytes::from(value);
                session
                    .put(key.clone(), value.clone())
                    .await
                    .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
                acked.borrow_mut().insert(key, value);
            }
        }));
    }
    for task in tasks {
        task.await;
    }
}

/// Checks the state machine of the node at `addr` itself (local, non-linearizable reads)
/// against the acknowledged writes.
pub async fn assert_local_state(
    addr: SocketAddr,
    acked: &std::collections::BTreeMap<bytes::Bytes, bytes::Bytes>,
) {
    let local = client(vec![addr]);
    for (key, value) in acked {
        let reply = local
            .call(ringraft::wire::Request::Get {
                key: key.clone(),
                linearizable: false,
            })
            .await
            .expect("local get");
        assert_eq!(
            reply,
            ringraft::wire::Reply::Value(value.clone()),
            "node at {addr}, key {key:?}"
        );
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc/PID/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}
