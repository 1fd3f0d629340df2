//! Peer transport: one outgoing connection per peer (with reconnect and backoff) carrying this
//! node's messages, and a listener whose connections carry peers' messages in. Each connection
//! starts with a handshake naming cluster and node; strangers are refused with a logged reason.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_lite::future::poll_once;
use futures_lite::io::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};

use super::config::NodeConfig;
use super::members::MemberTable;
use super::net::{connect_from, fill, write_parts, ConnError, WRITE_IOVECS_MAX};
use super::node::Event;
use super::stats::Counters;
use crate::core::NodeId;
use crate::netem::{Emulation, Shaper, Verdict, LINK_BUFFER_BYTES_MAX};
use crate::wire::{self, FrameDecoder, FrameType, PeerFrame, PeerHandshake};

/// Messages queued for one peer before new ones are dropped (Raft retransmits what is lost).
pub const PEER_QUEUE_MSGS_MAX: usize = 4096;
/// Bytes of queued frames gathered into one vectored socket write (more if one frame is larger).
const WRITE_GATHER_BYTES_MAX: usize = 1 << 20;
/// Inbound peer connections served at once; more are closed at accept.
const INBOUND_CONNECTIONS_MAX: usize = 64;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How long one connection attempt to a peer may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What every outgoing peer connection shares: the handshake, the source address, the link
/// emulation. The Raft loop asks it for a connection to each member of the configuration in
/// force, and drops the queue of a member that left, which ends its sender task.
pub struct Outbound {
    handshake: Bytes,
    source: Option<std::net::IpAddr>,
    counters: Rc<Counters>,
    emulated: Option<Rc<Emulated>>,
}

impl Outbound {
    /// Prepares the outgoing side of this node's transport; no connection is opened yet.
    pub fn new(
        config: &NodeConfig,
        counters: Rc<Counters>,
        emulated: Option<Rc<Emulated>>,
    ) -> Outbound {
        let handshake = PeerHandshake {
            cluster_id: config.cluster_id,
            node_id: config.id,
            protocol_version: wire::PROTOCOL_VERSION,
            group: config.group,
            groups: config.groups,
        };
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let mut frame = Vec::new();
        wire::write_frame(
            FrameType::PeerHandshake,
            wire::encode_handshake(&handshake, &mut fbb),
            &mut frame,
        )
        .expect("a handshake is far below the frame limit");
        // Leave from the listen IP when it names one, so that peers see this node's own address.
        let source = match config.peer_listen_addr {
            Some(listen) => Some(listen.ip()).filter(|ip| !ip.is_unspecified()),
            // Listening on the advertised address itself: an IP literal there is a local one.
            None => config
                .member(config.id)
                .and_then(|me| me.peer_addr.host().parse().ok()),
        };
        Outbound {
            handshake: Bytes::from(frame),
            source,
            counters,
            emulated,
        }
    }

    /// Starts the sender task of peer `id` at `addr`; returns the queue to it (encoded frames, in pieces).
    /// Dropping the queue ends the task.
    pub fn connect(&self, id: NodeId, addr: super::config::Address) -> LocalSender<PeerFrame> {
        let (tx, rx) = local_channel::new_bounded(PEER_QUEUE_MSGS_MAX);
        let counters = &self.counters;
        let feed = match &self.emulated {
            None => Feed::Direct(rx),
            Some(emulated) => {
                let (delayed_tx, delayed_rx) = local_channel::new_bounded(EMULATED_QUEUE_MSGS_MAX);
                let queued = Rc::new(Cell::new(0));
                glommio::spawn_local(shape(
                    id,
                    rx,
                    delayed_tx,
                    queued.clone(),
                    emulated.clone(),
                    counters.clone(),
                ))
                .detach();
                Feed::Shaped {
                    rx: delayed_rx,
                    held: RefCell::new(None),
                    queued,
                    emulated: emulated.clone(),
                    peer: id,
                    counters: counters.clone(),
                }
            }
        };
        let task = outbound(
            id,
            addr,
            self.source,
            feed,
            self.handshake.clone(),
            counters.clone(),
        );
        glommio::spawn_local(task).detach();
        tx
    }
}

async fn outbound(
    peer: NodeId,
    addr: super::config::Address,
    source: Option<std::net::IpAddr>,
    rx: Feed,
    handshake: Bytes,
    counters: Rc<Counters>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut parts = Vec::with_capacity(WRITE_IOVECS_MAX);
    loop {
        if let Ok(mut stream) = connect_from(addr.clone(), source, CONNECT_TIMEOUT).await {
            let _ = stream.set_nodelay(true);
            if stream.write_all(&handshake).await.is_ok() {
                backoff = BACKOFF_MIN;
                match send_loop(&mut stream, &rx, &mut parts, &counters).await {
                    Ok(()) => return, // The node is shutting down.
                    Err(e) => eprintln!("ringraft: connection to peer {peer} at {addr} lost: {e}"),
                }
            }
        }
        // Unreachable: what is queued is stale by the time we reconnect; Raft will resend.
        let (dropped, closed) = rx.drain().await;
        Counters::add(&counters.dropped_peer_messages, dropped);
        if closed {
            return; // The peer left the configuration, or the node is shutting down.
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Writes the queued frames as they come: every frame ready at once goes out in one vectored
/// write (bounded by bytes and buffers), its pieces as they are, so neither the records of an
/// AppendEntries nor small frames are copied into a send buffer.
async fn send_loop(
    stream: &mut TcpStream,
    rx: &Feed,
    parts: &mut Vec<Bytes>,
    counters: &Counters,
) -> Result<(), std::io::Error> {
    loop {
        let Some(frame) = rx.next().await else {
            return Ok(());
        };
        parts.clear();
        let mut bytes = frame.len();
        parts.extend(frame.into_parts());
        while bytes < WRITE_GATHER_BYTES_MAX && parts.len() < WRITE_IOVECS_MAX {
            match rx.ready().await {
                Some(frame) => {
                    bytes += frame.len();
                    parts.extend(frame.into_parts());
                }
                None => break,
            }
        }
        let written = write_parts(stream, parts).await;
        parts.clear(); // Let go of the records now, not when the next frame comes.
        written?;
        Counters::add(&counters.bytes_out, bytes as u64);
    }
}

/// A peer connection accepted by the node's listener (on group 0's executor) for another
/// group, on its way to that group's executor: the socket, the peer, and what was read past the
/// handshake.
pub struct Handoff {
    socket: std::os::fd::OwnedFd,
    node_id: NodeId,
    buffered: Vec<u8>,
}

/// Where the node's peer listener sends the connections of the other groups: the hand-off
/// queue of groups 1, 2, ... in order.
pub type Handoffs = Rc<Vec<glommio::channels::shared_channel::ConnectedSender<Handoff>>>;

/// Accepts peer connections and forwards their verified messages to the Raft loop; those that
/// name another group go to that group's executor through its hand-off queue.
pub async fn serve_inbound(
    listener: TcpListener,
    config: Rc<NodeConfig>,
    members: Rc<MemberTable>,
    inbox: Rc<LocalSender<Event>>,
    counters: Rc<Counters>,
    handoffs: Handoffs,
) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let Ok(stream) = listener.accept().await else {
            continue;
        };
        if open.get() >= INBOUND_CONNECTIONS_MAX {
            Counters::add(&counters.refused_handshakes, 1);
            continue; // Dropping the stream closes it.
        }
        open.set(open.get() + 1);
        let (config, members, inbox, counters, open, handoffs) = (
            config.clone(),
            members.clone(),
            inbox.clone(),
            counters.clone(),
            open.clone(),
            handoffs.clone(),
        );
        glommio::spawn_local(async move {
            let served = inbound(stream, &config, &members, &inbox, &counters, &handoffs).await;
            report_end(served, &counters);
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// A group's executor other than group 0's: serves the peer connections the node's listener
/// hands it, until the listener's side is gone.
pub async fn serve_handed_off(
    handoffs: glommio::channels::shared_channel::ConnectedReceiver<Handoff>,
    config: Rc<NodeConfig>,
    members: Rc<MemberTable>,
    inbox: Rc<LocalSender<Event>>,
    counters: Rc<Counters>,
) {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let open = Rc::new(std::cell::Cell::new(0usize));
    while let Some(handoff) = handoffs.recv().await {
        if open.get() >= INBOUND_CONNECTIONS_MAX {
            Counters::add(&counters.refused_handshakes, 1);
            continue; // Dropping the hand-off closes its socket.
        }
        open.set(open.get() + 1);
        // SAFETY: the descriptor is a connected TCP socket the hand-off owned alone.
        let stream = unsafe { TcpStream::from_raw_fd(handoff.socket.into_raw_fd()) };
        let mut decoder = FrameDecoder::new();
        decoder.extend_from_slice(&handoff.buffered);
        let (config, members, inbox, counters, open) = (
            config.clone(),
            members.clone(),
            inbox.clone(),
            counters.clone(),
            open.clone(),
        );
        glommio::spawn_local(async move {
            let served = carry(
                stream,
                decoder,
                handoff.node_id,
                &config,
                &members,
                &inbox,
                &counters,
            )
            .await;
            report_end(served, &counters);
            open.set(open.get() - 1);
        })
        .detach();
    }
}

fn report_end(served: Result<(), ConnError>, counters: &Counters) {
    match served {
        Err(e @ (ConnError::Invalid(_) | ConnError::Refused(_))) => {
            Counters::add(&counters.invalid_peer_frames, 1);
            eprintln!("ringraft: closed a peer connection: {e}");
        }
        Err(ConnError::Io(_) | ConnError::Closed) | Ok(()) => {}
    }
}

async fn inbound(
    mut stream: TcpStream,
    config: &NodeConfig,
    members: &MemberTable,
    inbox: &LocalSender<Event>,
    counters: &Counters,
    handoffs: &Handoffs,
) -> Result<(), ConnError> {
    let mut decoder = FrameDecoder::new();
    let handshake = loop {
        if let Some(frame) = decoder.next_frame()? {
            break wire::decode_handshake(frame.body_of(FrameType::PeerHandshake)?)?;
        }
        fill(&mut stream, &mut decoder).await?;
    };
    if let Err(reason) = check_handshake(&handshake, config, members) {
        Counters::add(&counters.refused_handshakes, 1);
        eprintln!(
            "ringraft: node {}: refused peer connection: {reason}",
            config.id
        );
        return Ok(());
    }
    if handshake.group != config.group {
        return hand_off(stream, decoder, &handshake, config, counters, handoffs);
    }
    carry(
        stream,
        decoder,
        handshake.node_id,
        config,
        members,
        inbox,
        counters,
    )
    .await
}

/// Sends a connection for another group to that group's executor.
fn hand_off(
    stream: TcpStream,
    mut decoder: FrameDecoder,
    handshake: &PeerHandshake,
    config: &NodeConfig,
    counters: &Counters,
    handoffs: &Handoffs,
) -> Result<(), ConnError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let Some(queue) = (handshake.group as usize)
        .checked_sub(1)
        .and_then(|n| handoffs.get(n))
    else {
        return Err(ConnError::Refused(format!(
            "group {} has no executor on node {}",
            handshake.group, config.id
        )));
    };
    // glommio's stream cannot give its descriptor up: hand over a duplicate, and let the
    // stream close the original.
    // SAFETY: dup of a descriptor the stream owns; the result is owned by nothing else.
    let copy = unsafe { libc::dup(stream.as_raw_fd()) };
    if copy < 0 {
        return Err(ConnError::Io(std::io::Error::last_os_error()));
    }
    // SAFETY: `copy` is a fresh descriptor owned by nothing else.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(copy) };
    drop(stream);
    let handoff = Handoff {
        socket,
        node_id: handshake.node_id,
        buffered: decoder.take_buffered(),
    };
    if queue.try_send(handoff).is_err() {
        // Full (or the group is stopping): the peer reconnects after its backoff.
        Counters::add(&counters.refused_handshakes, 1);
    }
    Ok(())
}

/// Steps the messages of one peer's connection into this group's Raft loop.
async fn carry(
    mut stream: TcpStream,
    mut decoder: FrameDecoder,
    from_node: NodeId,
    config: &NodeConfig,
    members: &MemberTable,
    inbox: &LocalSender<Event>,
    counters: &Counters,
) -> Result<(), ConnError> {
    // The multi-host bench checks from these lines which address each peer came from.
    let from = stream
        .peer_addr()
        .map_or_else(|e| format!("? ({e})"), |a| a.to_string());
    eprintln!(
        "ringraft: node {}: peer {from_node} connected from {from}{}",
        config.id,
        if config.groups > 1 {
            format!(" (group {})", config.group)
        } else {
            String::new()
        }
    );
    loop {
        while let Some(envelope) = next_envelope(&mut decoder, config, from_node)? {
            // A node removed from the configuration takes no further part: its connection
            // ends at its next message, and it is refused if it reconnects.
            if !members.accepts(from_node) {
                return Err(ConnError::Refused(format!(
                    "node {from_node} is no longer a member"
                )));
            }
            super::trace::event("peer_in", 0);
            if inbox.send(Event::Peer(envelope)).await.is_err() {
                return Ok(()); // Shutting down.
            }
        }
        let before = decoder.buffered_bytes();
        fill(&mut stream, &mut decoder).await?;
        Counters::add(
            &counters.bytes_in,
            (decoder.buffered_bytes() - before) as u64,
        );
    }
}

fn next_envelope(
    decoder: &mut FrameDecoder,
    config: &NodeConfig,
    from: NodeId,
) -> Result<Option<crate::core::Envelope>, ConnError> {
    // Shared, so that the entries of an AppendEntries are slices of the frame, not copies.
    let Some(body) = decoder.next_frame_shared(FrameType::PeerMessage)? else {
        return Ok(None);
    };
    let message = wire::decode_peer_message_shared(&body)?;
    message.check_cluster(Some(config.cluster_id))?;
    let envelope = message.envelope;
    if envelope.from != from || envelope.to != config.id {
        return Err(ConnError::Refused(format!(
            "message from {} to {} on the connection of node {from} to node {}",
            envelope.from, envelope.to, config.id
        )));
    }
    Ok(Some(envelope))
}

fn check_handshake(
    handshake: &PeerHandshake,
    config: &NodeConfig,
    members: &MemberTable,
) -> Result<(), String> {
    // The version first: an older peer's other fields may not mean what ours do.
    if handshake.protocol_version != wire::PROTOCOL_VERSION {
        return Err(format!(
            "node {} speaks peer protocol version {}, this node speaks {}: run one version \
             of ringraft on every node",
            handshake.node_id,
            handshake.protocol_version,
            wire::PROTOCOL_VERSION
        ));
    }
    if handshake.groups != config.groups {
        return Err(format!(
            "node {} hosts groups = {}, this node groups = {}: every node of a cluster must \
             have the same groups",
            handshake.node_id, handshake.groups, config.groups
        ));
    }
    if handshake.group >= config.groups {
        return Err(format!(
            "node {} names group {}, this node has groups 0..{}",
            handshake.node_id, handshake.group, config.groups
        ));
    }
    if handshake.cluster_id != config.cluster_id {
        return Err(format!(
            "cluster id {} is not ours ({})",
            handshake.cluster_id, config.cluster_id
        ));
    }
    if !members.accepts(handshake.node_id) {
        return Err(format!(
            "node id {} is not a member of node {}'s configuration",
            handshake.node_id, config.id
        ));
    }
    Ok(())
}

/// Frames waiting in an emulated link (in flight on the emulated wire) before new ones are
/// dropped; the byte bound is `netem::LINK_BUFFER_BYTES_MAX`.
const EMULATED_QUEUE_MSGS_MAX: usize = 4 * PEER_QUEUE_MSGS_MAX;

/// Link emulation of this node (`--emulation FILE`): the file's current contents, reloaded on
/// SIGHUP, and the state of each outgoing link.
pub struct Emulated {
    me: NodeId,
    file: PathBuf,
    current: RefCell<Emulation>,
    shapers: RefCell<BTreeMap<NodeId, Shaper>>,
    origin: Instant,
}

impl Emulated {
    /// Loads the emulation file of node `me`.
    pub fn load(me: NodeId, file: PathBuf) -> Result<Emulated, String> {
        let current = Emulation::from_file(&file)?;
        Ok(Emulated {
            me,
            file,
            current: RefCell::new(current),
            shapers: RefCell::new(BTreeMap::new()),
            origin: Instant::now(),
        })
    }

    /// Re-reads the file (SIGHUP). A bad file keeps the old emulation and says why.
    pub fn reload(&self) {
        match Emulation::from_file(&self.file) {
            Ok(e) => {
                eprintln!(
                    "ringraft: node {}: emulation reloaded from {} ({} links, {} partitions)",
                    self.me,
                    self.file.display(),
                    e.links.len(),
                    e.partitions.len()
                );
                *self.current.borrow_mut() = e;
            }
            Err(e) => eprintln!("ringraft: node {}: emulation NOT reloaded: {e}", self.me),
        }
    }

    /// The largest round trip the emulation implies, for the timing warning.
    pub fn rtt_max_ms(&self) -> Option<f64> {
        self.current.borrow().rtt_max_ms()
    }

    fn admit(&self, peer: NodeId, bytes: usize) -> Option<Instant> {
        let current = self.current.borrow();
        let Some(spec) = current.link(peer) else {
            return Some(Instant::now());
        };
        let mut shapers = self.shapers.borrow_mut();
        let shaper = shapers
            .entry(peer)
            .or_insert_with(|| Shaper::new(current.seed ^ (peer << 32) ^ self.me));
        let now = Instant::now();
        let now_us = now.duration_since(self.origin).as_micros() as u64;
        match shaper.admit(spec, now_us, bytes) {
            Verdict::Deliver { at_us } => Some(self.origin + Duration::from_micros(at_us)),
            Verdict::Lost => None,
        }
    }

    fn partitioned(&self, peer: NodeId) -> bool {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.current.borrow().partitioned(self.me, peer, now_ms)
    }
}

/// Moves frames from the Raft loop's queue for `peer` onto the emulated wire: each gets its
/// arrival time, or is lost; a full wire drops (tail drop), so memory stays bounded.
async fn shape(
    peer: NodeId,
    rx: LocalReceiver<PeerFrame>,
    wire: LocalSender<(Instant, PeerFrame)>,
    queued: Rc<Cell<usize>>,
    emulated: Rc<Emulated>,
    counters: Rc<Counters>,
) {
    while let Some(frame) = rx.recv().await {
        let Some(at) = emulated.admit(peer, frame.len()) else {
            Counters::add(&counters.emulated_drops, 1);
            continue;
        };
        if queued.get() + frame.len() > LINK_BUFFER_BYTES_MAX {
            Counters::add(&counters.emulated_drops, 1);
            continue;
        }
        let len = frame.len();
        if wire.try_send((at, frame)).is_err() {
            Counters::add(&counters.emulated_drops, 1);
            continue;
        }
        queued.set(queued.get() + len);
    }
}

/// Where a sender takes its frames from: the Raft loop's queue, or an emulated wire that hands
/// each frame over when it is due and drops what a partition cuts.
enum Feed {
    Direct(LocalReceiver<PeerFrame>),
    Shaped {
        rx: LocalReceiver<(Instant, PeerFrame)>,
        held: RefCell<Option<(Instant, PeerFrame)>>,
        queued: Rc<Cell<usize>>,
        emulated: Rc<Emulated>,
        peer: NodeId,
        counters: Rc<Counters>,
    },
}

impl Feed {
    /// The next frame to put on the socket, waiting for it to be due; None at shutdown.
    async fn next(&self) -> Option<PeerFrame> {
        match self {
            Feed::Direct(rx) => rx.recv().await,
            Feed::Shaped { rx, held, .. } => loop {
                let taken = held.borrow_mut().take();
                let head = match taken {
                    Some(head) => head,
                    None => rx.recv().await?,
                };
                let now = Instant::now();
                if head.0 > now {
                    glommio::timer::sleep(head.0 - now).await;
                }
                if let Some(frame) = self.arrive(head.1) {
                    return Some(frame);
                }
            },
        }
    }

    /// A frame that is due now, without waiting.
    async fn ready(&self) -> Option<PeerFrame> {
        match self {
            Feed::Direct(rx) => poll_once(rx.recv()).await.flatten(),
            Feed::Shaped { rx, held, .. } => loop {
                let taken = held.borrow_mut().take();
                let head = match taken {
                    Some(head) => head,
                    None => poll_once(rx.recv()).await.flatten()?,
                };
                if head.0 > Instant::now() {
                    *held.borrow_mut() = Some(head);
                    return None;
                }
                if let Some(frame) = self.arrive(head.1) {
                    return Some(frame);
                }
            },
        }
    }

    /// A frame leaves the emulated wire: it arrives unless a partition cuts the link now.
    fn arrive(&self, frame: PeerFrame) -> Option<PeerFrame> {
        let Feed::Shaped {
            queued,
            emulated,
            peer,
            counters,
            ..
        } = self
        else {
            return Some(frame);
        };
        queued.set(queued.get() - frame.len());
        if emulated.partitioned(*peer) {
            Counters::add(&counters.emulated_drops, 1);
            return None;
        }
        Some(frame)
    }

    /// Drops everything queued (the peer is unreachable; Raft resends); returns how many, and
    /// whether the queue is closed (the peer left the configuration).
    async fn drain(&self) -> (u64, bool) {
        match self {
            Feed::Direct(rx) => drain_queue(rx).await,
            Feed::Shaped {
                rx, held, queued, ..
            } => {
                let held = u64::from(held.borrow_mut().take().is_some());
                queued.set(0);
                let (n, closed) = drain_queue(rx).await;
                (n + held, closed)
            }
        }
    }
}

/// Empties `rx` without waiting; returns how many it held and whether its sender is gone.
async fn drain_queue<T>(rx: &LocalReceiver<T>) -> (u64, bool) {
    let mut n = 0;
    loop {
        match poll_once(rx.recv()).await {
            Some(Some(_)) => n += 1,
            Some(None) => return (n, true),
            None => return (n, false),
        }
    }
}
