//! Raft messages between nodes: [`Envelope`] to and from `raft.fbs` `PeerMessage` bodies, and
//! the `PeerHandshake` that opens every peer connection.
//!
//! Decoding verifies the flatbuffer, then checks what the verifier cannot: non-zero node ids,
//! snapshot chunk bounds, and that AppendEntries entries follow `prev_log_index` contiguously with
//! terms between `prev_log_term` and the message's term.
//!
//! The entries of an AppendEntries travel as the log's record batches (`crate::log::record`),
//! one after the other in the `batch: [ubyte]` vector: the same bytes as on disk, CRC included.
//! A node sends the records as they are, without copying them: [`encode_peer_frame`] makes a
//! [`PeerFrame`] whose pieces are a small head (frame header and the flatbuffer up to the
//! batch's length) and each entry's own record buffer (a leader's proposals carry the record
//! they were encoded into, see [`crate::core::Entry::record`]), for one vectored write. That
//! works because a flatbuffer is built back to front: the batch vector, created first, is the
//! last thing in the buffer. The receiver checks each record's CRC once, here, and its entries
//! keep their records, so that its log writes the received bytes.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};

use super::error::{DecodeError, EncodeError};
use super::frame::{frame_header, FrameType, FRAME_HEADER_BYTES};
use super::generated::raft as fb;
use super::verified_root;
use crate::core::{Entry, Envelope, Membership, Message, NodeId};
use crate::limits::{BATCH_ENTRIES_MAX, SNAPSHOT_BYTES_MAX, SNAPSHOT_CHUNK_BYTES_MAX};
use crate::log::record::{decode_records, encode_records_into, records_for, RECORD_BYTES_MAX};

/// Version of the peer protocol this build speaks, exchanged in [`PeerHandshake`]. Bump it on any
/// change to `raft.fbs` or to the batch encoding that an older node could misread. Version 2:
/// the batch is the log's record batches with their CRCs (version 1 sent an interim encoding
/// without CRC). Version 3: the handshake names the connection's Raft group and the sender's
/// group count.
pub const PROTOCOL_VERSION: u32 = 3;

/// Generous bound on what a `PeerMessage` with an AppendEntries body adds around its batch: root
/// offset, file identifier, two tables with their vtables, the vector length, alignment.
const APPEND_ENTRIES_ENVELOPE_BYTES_MAX: usize = 1024;

// A full batch (every entry in a record of its own), wrapped in its flatbuffer and frame
// header, must fit in a frame, or a leader following the limits would send frames every
// receiver refuses.
const _: () = assert!(
    crate::limits::BATCH_BYTES_MAX
        + BATCH_ENTRIES_MAX
            * (crate::log::record::RECORD_HEADER_BYTES + crate::log::record::ENTRY_HEADER_BYTES)
        + APPEND_ENTRIES_ENVELOPE_BYTES_MAX
        + super::FRAME_HEADER_BYTES
        <= crate::limits::FRAME_BYTES_MAX
);

/// File identifier of `PeerMessage` buffers (`raft.fbs`).
const PEER_MESSAGE_IDENTIFIER: &str = "RRPM";
/// File identifier of `PeerHandshake` buffers.
const PEER_HANDSHAKE_IDENTIFIER: &str = "RRHS";

/// A decoded peer message: the envelope and the cluster it was addressed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerMessage {
    /// The sender's cluster, if it names one.
    pub cluster_id: Option<u64>,
    /// Sender, receiver and message.
    pub envelope: Envelope,
}

impl PeerMessage {
    /// Refuses a message for another cluster (or an unnamed one when this node is named, and vice
    /// versa): a misconfigured node must not vote or replicate across clusters.
    pub fn check_cluster(&self, expected: Option<u64>) -> Result<(), DecodeError> {
        match expected {
            Some(id) if self.cluster_id != Some(id) => Err(DecodeError::ClusterMismatch {
                expected: id,
                got: self.cluster_id,
            }),
            None if self.cluster_id.is_some() => Err(DecodeError::ClusterMismatch {
                expected: 0,
                got: self.cluster_id,
            }),
            _ => Ok(()),
        }
    }
}

/// The first frame each side sends on a peer connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHandshake {
    /// The cluster the sender belongs to (0: unnamed).
    pub cluster_id: u64,
    /// The sender's node id, never 0.
    pub node_id: NodeId,
    /// The sender's [`PROTOCOL_VERSION`]; the receiver decides whether it can talk to it.
    pub protocol_version: u32,
    /// The Raft group whose messages the connection carries.
    pub group: u32,
    /// How many groups the sender hosts (0 from a sender older than version 3).
    pub groups: u32,
    /// The sender's advertised addresses, `PEER_ADDR/CLIENT_ADDR`, if it knows them: a node
    /// waiting to be added answers the leader there before it knows any configuration.
    /// At most `MEMBER_CONTEXT_BYTES_MAX` bytes; the runtime checks the form.
    pub addresses: Option<String>,
}

/// Encodes `envelope` as one contiguous `PeerMessage` body into `fbb` (which is reset first) and
/// returns the finished bytes, to be sent as a [`FrameType::PeerMessage`] frame. An
/// AppendEntries' records are copied twice on the way (into a scratch buffer, then into the
/// builder): a node sends [`encode_peer_frame`] instead, and this is the reference its pieces
/// are checked against (tests, benchmarks and tools that need the body in one piece).
///
/// # Panics
///
/// If an AppendEntries breaks the core's own limits (more than
/// [`crate::limits::BATCH_ENTRIES_MAX`] entries, or one larger than
/// [`crate::limits::ENTRY_BYTES_MAX`]): a bug in the sender, which every receiver would refuse.
pub fn encode_peer<'b>(
    envelope: &Envelope,
    cluster_id: Option<u64>,
    fbb: &'b mut FlatBufferBuilder<'_>,
) -> &'b [u8] {
    let mut batch = Vec::new();
    if let Message::AppendEntries { entries, .. } = &envelope.message {
        check_batch_entries(entries);
        if let Err(e) = encode_records_into(entries, &mut batch) {
            panic!("AppendEntries breaks the core's own limits: {e}");
        }
    }
    encode_peer_with_batch(envelope, cluster_id, &batch, fbb)
}

/// A `PeerMessage` frame in pieces, for one vectored write with no copy of the records:
/// concatenated, [`PeerFrame::parts`] are byte for byte the frame [`encode_peer`] and
/// [`super::write_frame`] make.
#[derive(Clone, Debug, Default)]
pub struct PeerFrame {
    parts: Vec<Bytes>,
    frame_bytes: usize,
}

impl PeerFrame {
    /// A frame that is already whole, in one piece.
    pub fn whole(frame: Bytes) -> PeerFrame {
        PeerFrame {
            frame_bytes: frame.len(),
            parts: vec![frame],
        }
    }

    /// The pieces, in order: the frame header and the flatbuffer up to the batch's length, then
    /// (for an AppendEntries) each record as its entry holds it, then the batch's padding.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Bytes of the whole frame.
    pub fn len(&self) -> usize {
        self.frame_bytes
    }

    /// Whether the frame has no bytes (only a default one).
    pub fn is_empty(&self) -> bool {
        self.frame_bytes == 0
    }

    /// The pieces, to be handed to the socket.
    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// The whole frame in one buffer (a copy: for tests and tools, not for sending).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.frame_bytes);
        for part in &self.parts {
            out.extend_from_slice(part);
        }
        out
    }
}

/// Zero bytes: the flatbuffer padding after a batch, and the stand-in batch of the head.
static ZEROS: [u8; 8] = [0; 8];

/// Encodes `envelope` as a whole `PeerMessage` frame in pieces (see [`PeerFrame`]): the records
/// of an AppendEntries are not copied but referred to, each entry's own record buffer (entries
/// without one, such as a new leader's no-op, are encoded here). Fails if the frame would
/// exceed [`crate::limits::FRAME_BYTES_MAX`].
///
/// # Panics
///
/// As [`encode_peer`].
pub fn encode_peer_frame(
    envelope: &Envelope,
    cluster_id: Option<u64>,
    fbb: &mut FlatBufferBuilder<'_>,
) -> Result<PeerFrame, EncodeError> {
    let Message::AppendEntries { entries, .. } = &envelope.message else {
        return whole_frame(encode_peer_with_batch(envelope, cluster_id, &[], fbb));
    };
    check_batch_entries(entries);
    let mut records = Vec::new();
    if let Err(e) = records_for(entries, RECORD_BYTES_MAX, &mut records) {
        panic!("AppendEntries breaks the core's own limits: {e}");
    }
    let batch_bytes: usize = records.iter().map(|r| r.bytes().len()).sum();
    // A stand-in batch of the same length modulo 8 (the largest alignment in the schema) gives
    // the builder the same padding decisions, so the flatbuffer in front of the batch comes out
    // the same but for the batch's length, which is patched in.
    let stand_in = batch_bytes % 8;
    let body = encode_peer_with_batch(envelope, cluster_id, &ZEROS[..stand_in], fbb);
    let padding = (4 - batch_bytes % 4) % 4;
    let length_at = body
        .len()
        .checked_sub(padding + stand_in + 4)
        .expect("a PeerMessage body holds its batch");
    assert!(
        body[length_at..length_at + 4] == (stand_in as u32).to_le_bytes()
            && body[length_at + 4..].iter().all(|&b| b == 0),
        "the flatbuffers builder did not put the batch vector at the end of the buffer"
    );
    let body_bytes = length_at + 4 + batch_bytes + padding;
    let header = frame_header(FrameType::PeerMessage, body_bytes)?;
    let mut head = Vec::with_capacity(FRAME_HEADER_BYTES + length_at + 4);
    head.extend_from_slice(&header);
    head.extend_from_slice(&body[..length_at]);
    // Fits: frame_header has checked the frame against FRAME_BYTES_MAX < u32::MAX.
    head.extend_from_slice(&(batch_bytes as u32).to_le_bytes());
    let mut parts = Vec::with_capacity(records.len() + 2);
    parts.push(Bytes::from(head));
    parts.extend(records.into_iter().map(|r| r.bytes().clone()));
    if padding > 0 {
        parts.push(Bytes::from_static(&ZEROS[..padding]));
    }
    Ok(PeerFrame {
        parts,
        frame_bytes: FRAME_HEADER_BYTES + body_bytes,
    })
}

fn whole_frame(body: &[u8]) -> Result<PeerFrame, EncodeError> {
    let header = frame_header(FrameType::PeerMessage, body.len())?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    Ok(PeerFrame::whole(Bytes::from(frame)))
}

fn check_batch_entries(entries: &[Entry]) {
    assert!(
        entries.len() <= BATCH_ENTRIES_MAX,
        "batch of {} entries exceeds BATCH_ENTRIES_MAX",
        entries.len()
    );
}

/// The `PeerMessage` body of `envelope`, with `batch` as the bytes of an AppendEntries' batch
/// (ignored for other messages). The batch vector is created first, so it ends the buffer.
fn encode_peer_with_batch<'b>(
    envelope: &Envelope,
    cluster_id: Option<u64>,
    batch: &[u8],
    fbb: &'b mut FlatBufferBuilder<'_>,
) -> &'b [u8] {
    fbb.reset();
    let (body_type, body) = encode_body(&envelope.message, batch, fbb);
    let root = fb::PeerMessage::create(
        fbb,
        &fb::PeerMessageArgs {
            from: envelope.from,
            to: envelope.to,
            cluster_id,
            body_type,
            body: Some(body),
        },
    );
    fbb.finish(root, Some(PEER_MESSAGE_IDENTIFIER));
    fbb.finished_data()
}

/// Decodes and validates a `PeerMessage` body into an [`Envelope`], ignoring its cluster id
/// (use [`decode_peer_message`] and [`PeerMessage::check_cluster`] to check it).
pub fn decode_peer(body: &[u8]) -> Result<Envelope, DecodeError> {
    decode_peer_message(body).map(|message| message.envelope)
}

/// Decodes and validates a `PeerMessage` body; entry and snapshot bytes are copied out of `body`.
pub fn decode_peer_message(body: &[u8]) -> Result<PeerMessage, DecodeError> {
    decode_with(body, &Bytes::copy_from_slice)
}

/// Like [`decode_peer_message`], but entry and snapshot bytes are zero-copy slices of `body`
/// (which they keep alive).
pub fn decode_peer_message_shared(body: &Bytes) -> Result<PeerMessage, DecodeError> {
    decode_with(body, &|part: &[u8]| body.slice_ref(part))
}

/// Encodes a handshake body into `fbb` (reset first) and returns the finished bytes, to be sent
/// as a [`FrameType::PeerHandshake`] frame.
pub fn encode_handshake<'b>(
    handshake: &PeerHandshake,
    fbb: &'b mut FlatBufferBuilder<'_>,
) -> &'b [u8] {
    fbb.reset();
    let addresses = handshake.addresses.as_deref().map(|a| fbb.create_string(a));
    let root = fb::PeerHandshake::create(
        fbb,
        &fb::PeerHandshakeArgs {
            cluster_id: handshake.cluster_id,
            node_id: handshake.node_id,
            protocol_version: handshake.protocol_version,
            group: handshake.group,
            groups: handshake.groups,
            addresses,
        },
    );
    fbb.finish(root, Some(PEER_HANDSHAKE_IDENTIFIER));
    fbb.finished_data()
}

/// Decodes and validates a `PeerHandshake` body.
pub fn decode_handshake(body: &[u8]) -> Result<PeerHandshake, DecodeError> {
    let table =
        verified_root::<fb::PeerHandshake>(body, "PeerHandshake", PEER_HANDSHAKE_IDENTIFIER)?;
    let handshake = PeerHandshake {
        cluster_id: table.cluster_id(),
        node_id: table.node_id(),
        protocol_version: table.protocol_version(),
        group: table.group(),
        groups: table.groups(),
        addresses: table.addresses().map(str::to_owned),
    };
    if handshake.node_id == 0 {
        return Err(DecodeError::MissingField {
            field: "PeerHandshake.node_id",
        });
    }
    if let Some(addresses) = &handshake.addresses {
        if addresses.len() > crate::core::MEMBER_CONTEXT_BYTES_MAX {
            return Err(DecodeError::OutOfRange {
                field: "PeerHandshake.addresses (bytes)",
                value: addresses.len() as u64,
                limit: crate::core::MEMBER_CONTEXT_BYTES_MAX as u64,
            });
        }
    }
    Ok(handshake)
}

fn encode_body(
    message: &Message,
    batch: &[u8],
    fbb: &mut FlatBufferBuilder<'_>,
) -> (fb::Body, WIPOffset<UnionWIPOffset>) {
    match message {
        &Message::PreVote {
            term,
            last_log_index,
            last_log_term,
        } => (
            fb::Body::PreVote,
            fb::PreVote::create(
                fbb,
                &fb::PreVoteArgs {
                    term,
                    last_log_index,
                    last_log_term,
                },
            )
            .as_union_value(),
        ),
        &Message::PreVoteResponse { term, granted } => (
            fb::Body::PreVoteResponse,
            fb::PreVoteResponse::create(fbb, &fb::PreVoteResponseArgs { term, granted })
                .as_union_value(),
        ),
        &Message::RequestVote {
            term,
            last_log_index,
            last_log_term,
            leader_transfer,
        } => (
            fb::Body::RequestVote,
            fb::RequestVote::create(
                fbb,
                &fb::RequestVoteArgs {
                    term,
                    last_log_index,
                    last_log_term,
                    leader_transfer,
                },
            )
            .as_union_value(),
        ),
        &Message::RequestVoteResponse { term, granted } => (
            fb::Body::RequestVoteResponse,
            fb::RequestVoteResponse::create(fbb, &fb::RequestVoteResponseArgs { term, granted })
                .as_union_value(),
        ),
        &Message::AppendEntries {
            term,
            prev_log_index,
            prev_log_term,
            leader_commit,
            ..
        } => {
            let batch = fbb.create_vector(batch);
            let args = fb::AppendEntriesArgs {
                term,
                prev_log_index,
                prev_log_term,
                leader_commit,
                batch: Some(batch),
            };
            (
                fb::Body::AppendEntries,
                fb::AppendEntries::create(fbb, &args).as_union_value(),
            )
        }
        &Message::AppendEntriesResponse {
            term,
            success,
            match_index,
            conflict_index,
            conflict_term,
        } => (
            fb::Body::AppendEntriesResponse,
            fb::AppendEntriesResponse::create(
                fbb,
                &fb::AppendEntriesResponseArgs {
                    term,
                    success,
                    match_index,
                    conflict_index,
                    conflict_term,
                },
            )
            .as_union_value(),
        ),
        &Message::Heartbeat {
            term,
            leader_commit,
            read_round,
        } => (
            fb::Body::Heartbeat,
            fb::Heartbeat::create(
                fbb,
                &fb::HeartbeatArgs {
                    term,
                    leader_commit,
                    read_round,
                },
            )
            .as_union_value(),
        ),
        &Message::HeartbeatResponse { term, read_round } => (
            fb::Body::HeartbeatResponse,
            fb::HeartbeatResponse::create(fbb, &fb::HeartbeatResponseArgs { term, read_round })
                .as_union_value(),
        ),
        Message::InstallSnapshot {
            term,
            last_included_index,
            last_included_term,
            membership,
            offset,
            data,
            done,
        } => {
            let data = fbb.create_vector(data);
            let membership =
                (!membership.is_empty()).then(|| fbb.create_vector(&membership.encode()));
            let args = fb::InstallSnapshotArgs {
                term: *term,
                last_included_index: *last_included_index,
                last_included_term: *last_included_term,
                offset: *offset,
                data: Some(data),
                done: *done,
                membership,
            };
            (
                fb::Body::InstallSnapshot,
                fb::InstallSnapshot::create(fbb, &args).as_union_value(),
            )
        }
        &Message::InstallSnapshotResponse {
            term,
            last_included_index,
            next_offset,
            done,
        } => (
            fb::Body::InstallSnapshotResponse,
            fb::InstallSnapshotResponse::create(
                fbb,
                &fb::InstallSnapshotResponseArgs {
                    term,
                    last_included_index,
                    next_offset,
                    done,
                },
            )
            .as_union_value(),
        ),
        &Message::TimeoutNow {
            term,
            vote,
            last_index,
        } => (
            fb::Body::TimeoutNow,
            fb::TimeoutNow::create(
                fbb,
                &fb::TimeoutNowArgs {
                    term,
                    vote,
                    last_index,
                },
            )
            .as_union_value(),
        ),
        &Message::ReadIndexRequest { term, request_id } => (
            fb::Body::ReadIndexRequest,
            fb::ReadIndexRequest::create(fbb, &fb::ReadIndexRequestArgs { term, request_id })
                .as_union_value(),
        ),
        &Message::ReadIndexResponse {
            term,
            request_id,
            read_index,
        } => (
            fb::Body::ReadIndexResponse,
            fb::ReadIndexResponse::create(
                fbb,
                &fb::ReadIndexResponseArgs {
                    term,
                    request_id,
                    read_index,
                },
            )
            .as_union_value(),
        ),
    }
}

fn decode_with(body: &[u8], to_bytes: &dyn Fn(&[u8]) -> Bytes) -> Result<PeerMessage, DecodeError> {
    let root = verified_root::<fb::PeerMessage>(body, "PeerMessage", PEER_MESSAGE_IDENTIFIER)?;
    if root.from() == 0 {
        return Err(DecodeError::MissingField {
            field: "PeerMessage.from",
        });
    }
    if root.to() == 0 {
        return Err(DecodeError::MissingField {
            field: "PeerMessage.to",
        });
    }
    let message = decode_body(&root, to_bytes)?;
    Ok(PeerMessage {
        cluster_id: root.cluster_id(),
        envelope: Envelope {
            from: root.from(),
            to: root.to(),
            message,
        },
    })
}

fn unknown_body(root: &fb::PeerMessage<'_>) -> DecodeError {
    DecodeError::UnknownBody {
        table: "PeerMessage",
        body_type: root.body_type().0,
    }
}

fn decode_body(
    root: &fb::PeerMessage<'_>,
    to_bytes: &dyn Fn(&[u8]) -> Bytes,
) -> Result<Message, DecodeError> {
    let missing = || unknown_body(root);
    let message = match root.body_type() {
        fb::Body::PreVote => {
            let t = root.body_as_pre_vote().ok_or_else(missing)?;
            Message::PreVote {
                term: t.term(),
                last_log_index: t.last_log_index(),
                last_log_term: t.last_log_term(),
            }
        }
        fb::Body::PreVoteResponse => {
            let t = root.body_as_pre_vote_response().ok_or_else(missing)?;
            Message::PreVoteResponse {
                term: t.term(),
                granted: t.granted(),
            }
        }
        fb::Body::RequestVote => {
            let t = root.body_as_request_vote().ok_or_else(missing)?;
            Message::RequestVote {
                term: t.term(),
                last_log_index: t.last_log_index(),
                last_log_term: t.last_log_term(),
                leader_transfer: t.leader_transfer(),
            }
        }
        fb::Body::RequestVoteResponse => {
            let t = root.body_as_request_vote_response().ok_or_else(missing)?;
            Message::RequestVoteResponse {
                term: t.term(),
                granted: t.granted(),
            }
        }
        fb::Body::AppendEntries => {
            decode_append_entries(root.body_as_append_entries().ok_or_else(missing)?, to_bytes)?
        }
        fb::Body::AppendEntriesResponse => {
            let t = root.body_as_append_entries_response().ok_or_else(missing)?;
            Message::AppendEntriesResponse {
                term: t.term(),
                success: t.success(),
                match_index: t.match_index(),
                conflict_index: t.conflict_index(),
                conflict_term: t.conflict_term(),
            }
        }
        fb::Body::Heartbeat => {
            let t = root.body_as_heartbeat().ok_or_else(missing)?;
            Message::Heartbeat {
                term: t.term(),
                leader_commit: t.leader_commit(),
                read_round: t.read_round(),
            }
        }
        fb::Body::HeartbeatResponse => {
            let t = root.body_as_heartbeat_response().ok_or_else(missing)?;
            Message::HeartbeatResponse {
                term: t.term(),
                read_round: t.read_round(),
            }
        }
        fb::Body::InstallSnapshot => decode_install_snapshot(
            root.body_as_install_snapshot().ok_or_else(missing)?,
            to_bytes,
        )?,
        fb::Body::InstallSnapshotResponse => {
            let t = root
                .body_as_install_snapshot_response()
                .ok_or_else(missing)?;
            check_at_most(
                "InstallSnapshotResponse.next_offset",
                t.next_offset(),
                SNAPSHOT_BYTES_MAX,
            )?;
            Message::InstallSnapshotResponse {
                term: t.term(),
                last_included_index: t.last_included_index(),
                next_offset: t.next_offset(),
                done: t.done(),
            }
        }
        fb::Body::TimeoutNow => {
            let t = root.body_as_timeout_now().ok_or_else(missing)?;
            Message::TimeoutNow {
                term: t.term(),
                vote: t.vote(),
                last_index: t.last_index(),
            }
        }
        fb::Body::ReadIndexRequest => {
            let t = root.body_as_read_index_request().ok_or_else(missing)?;
            Message::ReadIndexRequest {
                term: t.term(),
                request_id: t.request_id(),
            }
        }
        fb::Body::ReadIndexResponse => {
            let t = root.body_as_read_index_response().ok_or_else(missing)?;
            Message::ReadIndexResponse {
                term: t.term(),
                request_id: t.request_id(),
                read_index: t.read_index(),
            }
        }
        _ => return Err(missing()),
    };
    Ok(message)
}

fn decode_append_entries(
    t: fb::AppendEntries<'_>,
    to_bytes: &dyn Fn(&[u8]) -> Bytes,
) -> Result<Message, DecodeError> {
    let batch = t.batch().ok_or(DecodeError::MissingField {
        field: "AppendEntries.batch",
    })?;
    let entries = decode_records(&to_bytes(batch.bytes()), BATCH_ENTRIES_MAX)
        .map_err(|e| DecodeError::Batch(format!("record batch refused: {e}")))?;
    check_entries_follow(&entries, t.term(), t.prev_log_index(), t.prev_log_term())?;
    Ok(Message::AppendEntries {
        term: t.term(),
        prev_log_index: t.prev_log_index(),
        prev_log_term: t.prev_log_term(),
        leader_commit: t.leader_commit(),
        entries,
    })
}

/// The batch must continue the log right after `prev_log_index`, with terms no older than
/// `prev_log_term` and no newer than the leader's `term` (Log Matching; leaders only create
/// entries in their own term), each entry right after the one before, terms never decreasing.
fn check_entries_follow(
    entries: &[Entry],
    term: u64,
    prev_log_index: u64,
    prev_log_term: u64,
) -> Result<(), DecodeError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(());
    };
    if prev_log_index.checked_add(1) != Some(first.index) {
        return Err(DecodeError::Batch(format!(
            "first entry has index {} but prev_log_index is {prev_log_index}",
            first.index
        )));
    }
    for (position, pair) in entries.windows(2).enumerate() {
        if pair[0].index.checked_add(1) != Some(pair[1].index) || pair[1].term < pair[0].term {
            return Err(DecodeError::Batch(format!(
                "entry {} (index {}, term {}) does not follow index {} term {}",
                position + 1,
                pair[1].index,
                pair[1].term,
                pair[0].index,
                pair[0].term
            )));
        }
    }
    if first.term < prev_log_term || last.term > term {
        return Err(DecodeError::Batch(format!(
            "entry terms {}..={} outside prev_log_term {prev_log_term} ..= term {term}",
            first.term, last.term
        )));
    }
    Ok(())
}

fn decode_install_snapshot(
    t: fb::InstallSnapshot<'_>,
    to_bytes: &dyn Fn(&[u8]) -> Bytes,
) -> Result<Message, DecodeError> {
    let data = t
        .data()
        .ok_or(DecodeError::MissingField {
            field: "InstallSnapshot.data",
        })?
        .bytes();
    check_at_most(
        "InstallSnapshot.data.len",
        data.len() as u64,
        SNAPSHOT_CHUNK_BYTES_MAX,
    )?;
    let end = t.offset().saturating_add(data.len() as u64);
    check_at_most("InstallSnapshot.offset + data.len", end, SNAPSHOT_BYTES_MAX)?;
    let membership = match t.membership() {
        None => Membership::default(),
        Some(bytes) => {
            Membership::decode(bytes.bytes()).map_err(|reason| DecodeError::Membership {
                field: "InstallSnapshot.membership",
                reason,
            })?
        }
    };
    Ok(Message::InstallSnapshot {
        term: t.term(),
        last_included_index: t.last_included_index(),
        last_included_term: t.last_included_term(),
        membership,
        offset: t.offset(),
        data: to_bytes(data),
        done: t.done(),
    })
}

fn check_at_most(field: &'static str, value: u64, limit: usize) -> Result<(), DecodeError> {
    if value > limit as u64 {
        return Err(DecodeError::OutOfRange {
            field,
            value,
            limit: limit as u64,
        });
    }
    Ok(())
}
