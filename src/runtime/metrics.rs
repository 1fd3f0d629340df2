//! What a running node shows an operator: histograms and gauges recorded by the Raft loop and
//! the disk task, and a small HTTP server that renders them, with the counters of `ringraft
//! stats`, in Prometheus' text exposition format (version 0.0.4) on `GET /metrics`.
//!
//! Why the figures are rendered on the Raft executor rather than read from another thread:
//! every recorder (the Raft loop, the disk task, the transport) runs on that one executor, so
//! the figures are plain `Cell`s that cost a load and a store to update, with no atomic, lock or
//! allocation on the write path. A node with one executor serves `/metrics` there, in a
//! low-share task queue so that a scrape (a few kilobytes of text, every few seconds at most)
//! yields to the Raft loop. A node with client executors serves it on the first of them and
//! asks the Raft executor only for the text, over a bounded channel, to a task in that same
//! low-share queue. Either way the figures are read without going through the Raft loop's
//! inbox: a node whose loop is stalled still answers, and its stale gauges show it.
//!
//! Why no crate: `prometheus-client` keeps every metric behind `Arc` and atomics (the cost this
//! module avoids) and the format is four kinds of line; the HTTP side needs only a request
//! line, so a request parser crate would parse headers nobody reads. Both are small and tested
//! here, and `bench::scrape` parses the output strictly.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{
    ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::sync::Semaphore;

use super::stats::Counters;
use crate::core::{NodeId, Role};

/// Bytes of an HTTP request (request line and headers) a scraper may send before the server
/// gives up on it.
pub const REQUEST_BYTES_MAX: usize = 8 << 10;
/// Scrape connections served at once; more are closed unanswered.
pub const CONNECTIONS_MAX: usize = 8;
/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Latency buckets' upper bounds in nanoseconds: 10 us to 10 s, three per decade.
const LATENCY_BOUNDS_NS: &[u64] = &[
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// Entries per group or message: powers of two up to [`crate::limits::BATCH_ENTRIES_MAX`].
const ENTRIES_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
/// Bytes per group: 256 B to 16 MiB, by fours.
const BYTES_BOUNDS: &[u64] = &[
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
];

/// A histogram with fixed buckets, written by one executor. Recording is a short scan and
/// three `Cell` updates; buckets are kept per bucket and summed into Prometheus' cumulative
/// form only when rendered.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound, plus the overflow bucket (`+Inf`).
    buckets: Box<[Cell<u64>]>,
    sum: Cell<u64>,
    count: Cell<u64>,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| Cell::new(0)).collect(),
            sum: Cell::new(0),
            count: Cell::new(0),
        }
    }

    /// Records one value (in the histogram's integer unit).
    pub fn record(&self, value: u64) {
        let i = self.bounds.partition_point(|&bound| bound < value);
        let bucket = &self.buckets[i];
        bucket.set(bucket.get() + 1);
        self.sum.set(self.sum.get().saturating_add(value));
        self.count.set(self.count.get() + 1);
    }

    /// Records a duration (for histograms in nanoseconds).
    pub fn record_duration(&self, elapsed: Duration) {
        self.record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.get()
    }
}

/// A follower's replication as the leader sees it.
#[derive(Debug)]
struct FollowerGauge {
    id: NodeId,
    /// Highest index known to be on the follower (0 while unknown or when not leader).
    match_index: Cell<u64>,
    /// When a message from it last arrived.
    last_contact: Cell<Option<Instant>>,
}

/// The histograms and gauges of one node (and, once a node hosts several, of one group).
#[derive(Debug)]
pub struct Metrics {
    /// Proposal to commit of this leader's own proposals, in nanoseconds.
    pub commit_latency: Histogram,
    /// Applying one batch of committed entries to the state machine, in nanoseconds.
    pub apply_latency: Histogram,
    /// Writing one group of log jobs until it is durable (write and flush), in nanoseconds.
    pub log_write_latency: Histogram,
    /// Entries made durable per group.
    pub log_group_entries: Histogram,
    /// Entry bytes made durable per group.
    pub log_group_bytes: Histogram,
    /// Entries per AppendEntries sent (empty heartbeats not counted).
    pub append_entries_entries: Histogram,
    role: Cell<Role>,
    term: Cell<u64>,
    leader_id: Cell<u64>,
    commit_index: Cell<u64>,
    applied_index: Cell<u64>,
    last_log_index: Cell<u64>,
    followers: RefCell<Vec<FollowerGauge>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            commit_latency: Histogram::new(LATENCY_BOUNDS_NS),
            apply_latency: Histogram::new(LATENCY_BOUNDS_NS),
            log_write_latency: Histogram::new(LATENCY_BOUNDS_NS),
            log_group_entries: Histogram::new(ENTRIES_BOUNDS),
            log_group_bytes: Histogram::new(BYTES_BOUNDS),
            append_entries_entries: Histogram::new(ENTRIES_BOUNDS),
            role: Cell::new(Role::Follower),
            term: Cell::new(0),
            leader_id: Cell::new(0),
            commit_index: Cell::new(0),
            applied_index: Cell::new(0),
            last_log_index: Cell::new(0),
            followers: RefCell::new(Vec::new()),
        }
    }
}

/// What the Raft loop publishes after each round of work.
#[derive(Clone, Copy, Debug)]
pub struct RaftState {
    /// Role.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// Known leader (0 for none).
    pub leader_id: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Last index in the log.
    pub last_log_index: u64,
}

impl Metrics {
    /// Sets the peers whose lag is shown (once, at start: no allocation afterwards).
    pub fn set_peers(&self, peers: impl IntoIterator<Item = NodeId>) {
        *self.followers.borrow_mut() = peers
            .into_iter()
            .map(|id| FollowerGauge {
                id,
                match_index: Cell::new(0),
                last_contact: Cell::new(None),
            })
            .collect();
    }

    /// Publishes the Raft loop's state; `match_index` gives each peer's match index while
    /// leader.
    pub fn publish(&self, state: RaftState, match_index: impl Fn(NodeId) -> Option<u64>) {
        self.role.set(state.role);
        self.term.set(state.term);
        self.leader_id.set(state.leader_id);
        self.commit_index.set(state.commit_index);
        self.applied_index.set(state.applied_index);
        self.last_log_index.set(state.last_log_index);
        for follower in self.followers.borrow().iter() {
            follower
                .match_index
                .set(match_index(follower.id).unwrap_or(0));
        }
    }

    /// Notes that a message from `peer` arrived at `now`.
    pub fn contact(&self, peer: NodeId, now: Instant) {
        if let Some(f) = self.followers.borrow().iter().find(|f| f.id == peer) {
            f.last_contact.set(Some(now));
        }
    }
}

/// The labels every series of one Raft group carries: `node`, and `group` when the node hosts
/// several.
#[derive(Clone, Debug)]
pub struct Labels(String);

impl Labels {
    /// The labels of a node with one group.
    pub fn node(node: NodeId) -> Labels {
        Labels(format!("node=\"{node}\""))
    }

    /// The labels of the group a config's executor runs.
    pub fn of(config: &super::NodeConfig) -> Labels {
        if config.groups > 1 {
            Labels(format!("node=\"{}\",group=\"{}\"", config.id, config.group))
        } else {
            Labels::node(config.id)
        }
    }
}

/// Renders every counter, histogram and gauge of a node as Prometheus text exposition.
pub fn render(node: NodeId, counters: &Counters, now: Instant) -> String {
    render_labelled(&Labels::node(node), counters, now)
}

/// Renders the figures of one group, its series labelled with `labels`.
pub fn render_labelled(labels: &Labels, counters: &Counters, now: Instant) -> String {
    let mut out = String::with_capacity(16 << 10);
    let labels = labels.0.as_str();
    let m = &counters.metrics;
    let counter_rows: [(&str, &str, u64); 13] = [
        (
            "ringraft_elections_total",
            "Elections this node started (became candidate).",
            counters.elections.get(),
        ),
        (
            "ringraft_campaigns_total",
            "Election timeouts that fired here (pre-candidate or candidate).",
            counters.campaigns.get(),
        ),
        (
            "ringraft_proposals_total",
            "Proposals accepted as leader.",
            counters.proposals.get(),
        ),
        (
            "ringraft_snapshots_total",
            "Snapshots taken or installed.",
            counters.snapshots.get(),
        ),
        (
            "ringraft_invalid_peer_frames_total",
            "Peer frames that failed validation.",
            counters.invalid_peer_frames.get(),
        ),
        (
            "ringraft_invalid_client_frames_total",
            "Client frames that failed validation.",
            counters.invalid_client_frames(),
        ),
        (
            "ringraft_refused_handshakes_total",
            "Peer connections refused at the handshake.",
            counters.refused_handshakes.get(),
        ),
        (
            "ringraft_dropped_peer_messages_total",
            "Outgoing peer messages dropped (queue full or peer unreachable).",
            counters.dropped_peer_messages.get(),
        ),
        (
            "ringraft_received_bytes_total",
            "Bytes received from peers and clients.",
            counters.bytes_in_total(),
        ),
        (
            "ringraft_sent_bytes_total",
            "Bytes sent to peers and clients.",
            counters.bytes_out_total(),
        ),
        (
            "ringraft_emulated_drops_total",
            "Peer messages dropped by link emulation.",
            counters.emulated_drops.get(),
        ),
        (
            "ringraft_disk_syncs_total",
            "Groups of log writes made durable.",
            counters.disk_syncs.get(),
        ),
        (
            "ringraft_disk_jobs_total",
            "Output jobs made durable.",
            counters.disk_jobs.get(),
        ),
    ];
    for (name, help, value) in counter_rows {
        header(&mut out, name, help, "counter");
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
    let histograms: [(&str, &str, &Histogram, f64); 6] = [
        (
            "ringraft_commit_latency_seconds",
            "Proposal to commit of the leader's own proposals.",
            &m.commit_latency,
            1e-9,
        ),
        (
            "ringraft_apply_latency_seconds",
            "Applying one batch of committed entries to the state machine.",
            &m.apply_latency,
            1e-9,
        ),
        (
            "ringraft_log_write_latency_seconds",
            "Writing one group of log jobs until durable (write and flush).",
            &m.log_write_latency,
            1e-9,
        ),
        (
            "ringraft_log_group_entries",
            "Entries made durable per group.",
            &m.log_group_entries,
            1.0,
        ),
        (
            "ringraft_log_group_bytes",
            "Entry bytes made durable per group.",
            &m.log_group_bytes,
            1.0,
        ),
        (
            "ringraft_append_entries_entries",
            "Entries per AppendEntries sent (heartbeats not counted).",
            &m.append_entries_entries,
            1.0,
        ),
    ];
    for (name, help, histogram, scale) in histograms {
        header(&mut out, name, help, "histogram");
        render_histogram(&mut out, name, labels, histogram, scale);
    }
    header(
        &mut out,
        "ringraft_role",
        "1 for the role this node is in, 0 for the others.",
        "gauge",
    );
    for (role, name) in [
        (Role::Follower, "follower"),
        (Role::PreCandidate, "pre_candidate"),
        (Role::Candidate, "candidate"),
        (Role::Leader, "leader"),
    ] {
        let on = u8::from(m.role.get() == role);
        let _ = writeln!(out, "ringraft_role{{{labels},role=\"{name}\"}} {on}");
    }
    let gauges = [
        ("ringraft_term", "Current term.", m.term.get()),
        (
            "ringraft_leader_id",
            "The leader this node knows of (0 for none).",
            m.leader_id.get(),
        ),
        (
            "ringraft_commit_index",
            "Highest log index known to be committed.",
            m.commit_index.get(),
        ),
        (
            "ringraft_applied_index",
            "Highest log index applied to the state machine.",
            m.applied_index.get(),
        ),
        (
            "ringraft_last_log_index",
            "Last index in this node's log.",
            m.last_log_index.get(),
        ),
    ];
    for (name, help, value) in gauges {
        header(&mut out, name, help, "gauge");
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
    render_followers(&mut out, labels, m, now);
    out
}

fn render_followers(out: &mut String, labels: &str, m: &Metrics, now: Instant) {
    let leader = m.role.get() == Role::Leader;
    let last = m.last_log_index.get();
    let followers = m.followers.borrow();
    header(
        out,
        "ringraft_follower_match_lag_entries",
        "Leader's last index minus the follower's match index (leader only).",
        "gauge",
    );
    for f in followers.iter().filter(|_| leader) {
        let lag = last.saturating_sub(f.match_index.get());
        let _ = writeln!(
            out,
            "ringraft_follower_match_lag_entries{{{labels},peer=\"{}\"}} {lag}",
            f.id
        );
    }
    header(
        out,
        "ringraft_peer_last_contact_seconds",
        "Time since a message from the peer last arrived (absent before the first).",
        "gauge",
    );
    for f in followers.iter() {
        if let Some(at) = f.last_contact.get() {
            let _ = writeln!(
                out,
                "ringraft_peer_last_contact_seconds{{{labels},peer=\"{}\"}} {}",
                f.id,
                now.saturating_duration_since(at).as_secs_f64()
            );
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram, scale: f64) {
    let mut cumulative = 0;
    for (i, bound) in h.bounds.iter().enumerate() {
        cumulative += h.buckets[i].get();
        let le = *bound as f64 * scale;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    cumulative += h.buckets[h.bounds.len()].get();
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum.get() as f64 * scale);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count.get());
}

/// What a scraper asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics`.
    Metrics,
    /// A GET of another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP request line.
    Malformed,
}

/// Reads the request line of an HTTP/1.x request (headers are ignored: nothing in them
/// changes the answer).
pub fn parse_request(head: &[u8]) -> Request {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Request::Malformed;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Malformed;
    }
    if method != "GET" {
        return Request::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or("");
    if path == "/metrics" {
        Request::Metrics
    } else {
        Request::NotFound
    }
}

/// Where a scrape's figures come from.
#[derive(Clone)]
pub enum Figures {
    /// This executor's counters: the metrics server runs on the Raft executor.
    Local(Rc<Counters>, Labels),
    /// Each group's Raft executor's, rendered there on request: the metrics server runs on a
    /// client executor, so that parsing requests and writing responses costs the Raft cores
    /// nothing.
    Remote(Rc<Vec<Rc<RemoteFigures>>>),
}

/// A metrics server's link to the Raft executor: one render asked for, one text back.
pub struct RemoteFigures {
    ask: ConnectedSender<()>,
    text: ConnectedReceiver<String>,
    /// One scrape at a time on the link, so that each gets the text it asked for.
    turn: Semaphore,
}

impl RemoteFigures {
    /// Connects the metrics server's ends; waits for the Raft executor to connect its own (see
    /// [`render_on_request`]).
    pub async fn connect(ask: SharedSender<()>, text: SharedReceiver<String>) -> RemoteFigures {
        RemoteFigures {
            ask: super::server::connected(ask.connect()).await,
            text: super::server::connected(text.connect()).await,
            turn: Semaphore::new(1),
        }
    }

    async fn render(&self) -> Option<String> {
        let _turn = self.turn.acquire_permit(1).await.ok()?;
        self.ask.send(()).await.ok()?;
        self.text.recv().await
    }
}

impl Figures {
    /// The text of `/metrics`; `None` when a Raft executor is gone.
    async fn render(&self) -> Option<String> {
        match self {
            Figures::Local(counters, labels) => {
                Some(render_labelled(labels, counters, Instant::now()))
            }
            Figures::Remote(groups) => {
                let mut texts = Vec::with_capacity(groups.len());
                for group in groups.iter() {
                    texts.push(group.render().await?);
                }
                Some(merge_families(&texts))
            }
        }
    }
}

/// Joins the texts of several groups into one exposition in which each metric family (its
/// `# HELP` and `# TYPE` lines, then its samples) appears once, as the text format asks: the
/// samples of every group under the family's first header, families in order of first
/// appearance.
pub fn merge_families(texts: &[String]) -> String {
    if texts.len() == 1 {
        return texts[0].clone();
    }
    let mut order: Vec<&str> = Vec::new();
    let mut families: std::collections::HashMap<&str, (Vec<&str>, Vec<&str>)> =
        std::collections::HashMap::new();
    for text in texts {
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                current = rest.split(' ').next().unwrap_or("");
                let family = families.entry(current).or_insert_with(|| {
                    order.push(current);
                    (Vec::new(), Vec::new())
                });
                if family.0.len() < 2 && !family.0.contains(&line) {
                    family.0.push(line);
                }
            } else if !line.is_empty() {
                let family = families.entry(current).or_insert_with(|| {
                    order.push(current);
                    (Vec::new(), Vec::new())
                });
                family.1.push(line);
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let (heads, samples) = &families[name];
        for line in heads.iter().chain(samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Raft executor: renders the figures each time the metrics server asks, until it is gone.
pub async fn render_on_request(
    ask: ConnectedReceiver<()>,
    text: ConnectedSender<String>,
    labels: Labels,
    counters: Rc<Counters>,
) {
    while ask.recv().await.is_some() {
        if text
            .send(render_labelled(&labels, &counters, Instant::now()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Serves `GET /metrics` until the listener fails. Runs in its own task queue with a small
/// share of the executor so that scrapes yield to the Raft loop.
pub async fn serve(listener: glommio::net::TcpListener, node: NodeId, figures: Figures) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("ringraft: node {node}: metrics listener stopped: {e}");
                return;
            }
        };
        if open.get() >= CONNECTIONS_MAX {
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let (open, figures) = (open.clone(), figures.clone());
        glommio::spawn_local(async move {
            let _ = answer(stream, &figures).await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}

async fn answer(mut stream: glommio::net::TcpStream, figures: &Figures) -> std::io::Result<()> {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= REQUEST_BYTES_MAX {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "request too large\n",
            )
            .await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let response = match parse_request(&head) {
        Request::Metrics => {
            let Some(body) = figures.render().await else {
                return respond(&mut stream, "503 Service Unavailable", "node stopping\n").await;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            return stream.close().await;
        }
        Request::NotFound => ("404 Not Found", "only /metrics is served here\n"),
        Request::MethodNotAllowed => ("405 Method Not Allowed", "use GET /metrics\n"),
        Request::Malformed => ("400 Bad Request", "not an HTTP/1.x request line\n"),
    };
    respond(&mut stream, response.0, response.1).await
}

async fn respond(
    stream: &mut glommio::net::TcpStream,
    status: &str,
    body: &str,
) -> std::io::Result<()> {
    use futures_lite::AsyncWriteExt;
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await?;
    stream.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_merge_into_one_family_each() {
        let counters = Counters::default();
        let now = Instant::now();
        let text = |group: u32| {
            render_labelled(
                &Labels(format!("node=\"1\",group=\"{group}\"")),
                &counters,
                now,
            )
        };
        let merged = merge_families(&[text(0), text(1)]);
        let parsed = crate::bench::scrape::parse(&merged).expect("parses");
        for group in ["0", "1"] {
            assert!(
                crate::bench::scrape::value(
                    &parsed,
                    "ringraft_commit_index",
                    &[("node", "1"), ("group", group)]
                )
                .is_some(),
                "{merged}"
            );
        }
        // Each family's header once, its samples of both groups right under it.
        let types = merged
            .lines()
            .filter(|l| *l == "# TYPE ringraft_commit_index gauge")
            .count();
        assert_eq!(types, 1, "{merged}");
        let lines: Vec<&str> = merged.lines().collect();
        let at = lines
            .iter()
            .position(|l| *l == "# TYPE ringraft_commit_index gauge")
            .expect("header");
        assert!(lines[at + 1].starts_with("ringraft_commit_index{node=\"1\",group=\"0\"}"));
        assert!(lines[at + 2].starts_with("ringraft_commit_index{node=\"1\",group=\"1\"}"));
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(
            parse_request(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        assert_eq!(parse_request(b"hello\r\n\r\n"), Request::Malformed);
        assert_eq!(
            parse_request(b"GET /metrics SPDY\r\n\r\n"),
            Request::Malformed
        );
        assert_eq!(parse_request(&[0xff, 0xfe, b'\n']), Request::Malformed);
    }

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::new(ENTRIES_BOUNDS);
        for v in [1, 2, 3, 4096, 5000] {
            h.record(v);
        }
        let counts: Vec<u64> = h.buckets.iter().map(Cell::get).collect();
        assert_eq!(counts[0], 1); // le 1
        assert_eq!(counts[1], 1); // le 2
        assert_eq!(counts[2], 1); // le 4
        assert_eq!(counts[ENTRIES_BOUNDS.len() - 1], 1); // le 4096
        assert_eq!(counts[ENTRIES_BOUNDS.len()], 1); // +Inf
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum.get(), 1 + 2 + 3 + 4096 + 5000);
    }
}
