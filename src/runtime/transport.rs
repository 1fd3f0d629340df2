//! Peer transport: one outgoing connection per peer (with reconnect and backoff) carrying this
//! node's messages, and a listener whose connections carry peers' messages in. Each connection
//! starts with a handshake naming cluster and node; strangers are refused with a logged reason.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::poll_once;
use futures_lite::io::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};

use super::config::NodeConfig;
use super::net::{fill, ConnError};
use super::node::Event;
use super::stats::Counters;
use crate::core::NodeId;
use crate::wire::READ_CHUNK_BYTES;
use crate::wire::{self, FrameDecoder, FrameType, PeerHandshake};

/// Messages queued for one peer before new ones are dropped (Raft retransmits what is lost).
pub const PEER_QUEUE_MSGS_MAX: usize = 4096;
/// Bytes coalesced into one socket write.
const WRITE_COALESCE_BYTES: usize = 1 << 20;
/// Inbound peer connections served at once; more are closed at accept.
const INBOUND_CONNECTIONS_MAX: usize = 64;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Starts one sender task per peer; returns the queues to them (encoded frames).
pub fn start_outbound(
    config: &NodeConfig,
    counters: Rc<Counters>,
) -> BTreeMap<NodeId, LocalSender<Bytes>> {
    let handshake = PeerHandshake {
        cluster_id: config.cluster_id,
        node_id: config.id,
        protocol_version: wire::PROTOCOL_VERSION,
    };
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut frame = Vec::new();
    wire::write_frame(
        FrameType::PeerHandshake,
        wire::encode_handshake(&handshake, &mut fbb),
        &mut frame,
    )
    .expect("a handshake is far below the frame limit");
    let frame = Bytes::from(frame);
    let mut queues = BTreeMap::new();
    for member in config.members.iter().filter(|m| m.id != config.id) {
        let (tx, rx) = local_channel::new_bounded(PEER_QUEUE_MSGS_MAX);
        let task = outbound(
            member.id,
            member.peer_addr,
            rx,
            frame.clone(),
            counters.clone(),
        );
        glommio::spawn_local(task).detach();
        queues.insert(member.id, tx);
    }
    queues
}

async fn outbound(
    peer: NodeId,
    addr: std::net::SocketAddr,
    rx: LocalReceiver<Bytes>,
    handshake: Bytes,
    counters: Rc<Counters>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut batch = Vec::with_capacity(WRITE_COALESCE_BYTES);
    loop {
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let _ = stream.set_nodelay(true);
            if stream.write_all(&handshake).await.is_ok() {
                backoff = BACKOFF_MIN;
                match send_loop(&mut stream, &rx, &mut batch, &counters).await {
                    Ok(()) => return, // The node is shutting down.
                    Err(e) => eprintln!("ringraft: connection to peer {peer} at {addr} lost: {e}"),
                }
            }
        }
        // Unreachable: what is queued is stale by the time we reconnect; Raft will resend.
        while let Some(Some(_)) = poll_once(rx.recv()).await {
            Counters::add(&counters.dropped_peer_messages, 1);
        }
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn send_loop(
    stream: &mut TcpStream,
    rx: &LocalReceiver<Bytes>,
    batch: &mut Vec<u8>,
    counters: &Counters,
) -> Result<(), std::io::Error> {
    loop {
        let Some(frame) = rx.recv().await else {
            return Ok(());
        };
        batch.clear();
        batch.extend_from_slice(&frame);
        while batch.len() < WRITE_COALESCE_BYTES {
            match poll_once(rx.recv()).await {
                Some(Some(frame)) => batch.extend_from_slice(&frame),
                _ => break,
            }
        }
        stream.write_all(batch).await?;
        Counters::add(&counters.bytes_out, batch.len() as u64);
    }
}

/// Accepts peer connections and forwards their verified messages to the Raft loop.
pub async fn serve_inbound(
    listener: TcpListener,
    config: Rc<NodeConfig>,
    inbox: Rc<LocalSender<Event>>,
    counters: Rc<Counters>,
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
        let (config, inbox, counters, open) = (
            config.clone(),
            inbox.clone(),
            counters.clone(),
            open.clone(),
        );
        glommio::spawn_local(async move {
            match inbound(stream, &config, &inbox, &counters).await {
                Err(e @ (ConnError::Invalid(_) | ConnError::Refused(_))) => {
                    Counters::add(&counters.invalid_peer_frames, 1);
                    eprintln!("ringraft: closed a peer connection: {e}");
                }
                Err(ConnError::Io(_) | ConnError::Closed) | Ok(()) => {}
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

async fn inbound(
    mut stream: TcpStream,
    config: &NodeConfig,
    inbox: &LocalSender<Event>,
    counters: &Counters,
) -> Result<(), ConnError> {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let handshake = loop {
        if let Some(frame) = decoder.next_frame()? {
            break wire::decode_handshake(frame.body_of(FrameType::PeerHandshake)?)?;
        }
        fill(&mut stream, &mut decoder, &mut buf).await?;
    };
    if let Err(reason) = check_handshake(&handshake, config) {
        Counters::add(&counters.refused_handshakes, 1);
        eprintln!("ringraft: refused peer connection: {reason}");
        return Ok(());
    }
    loop {
        while let Some(envelope) = next_envelope(&mut decoder, config, handshake.node_id)? {
            if inbox.send(Event::Peer(envelope)).await.is_err() {
                return Ok(()); // Shutting down.
            }
        }
        let before = decoder.buffered_bytes();
        fill(&mut stream, &mut decoder, &mut buf).await?;
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
    let Some(frame) = decoder.next_frame()? else {
        return Ok(None);
    };
    let message = wire::decode_peer_message(frame.body_of(FrameType::PeerMessage)?)?;
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

fn check_handshake(handshake: &PeerHandshake, config: &NodeConfig) -> Result<(), String> {
    if handshake.cluster_id != config.cluster_id {
        return Err(format!(
            "cluster id {} is not ours ({})",
            handshake.cluster_id, config.cluster_id
        ));
    }
    if handshake.node_id == config.id || config.member(handshake.node_id).is_none() {
        return Err(format!(
            "node id {} is not a peer of node {}",
            handshake.node_id, config.id
        ));
    }
    if handshake.protocol_version != wire::PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} (we speak {})",
            handshake.protocol_version,
            wire::PROTOCOL_VERSION
        ));
    }
    Ok(())
}
