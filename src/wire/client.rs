//! Client requests and responses: plain Rust values to and from `client.fbs` bodies.
//!
//! Decoding verifies the flatbuffer and checks the session fields. It does not enforce command
//! size limits below the frame limit: a too-large command is a normal client mistake that deserves
//! a [`ClientError::TooLarge`] answer from the node, not a closed connection.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use thiserror::Error;

use super::error::DecodeError;
use super::generated::client as fb;
use super::verified_root;
use crate::core::{Index, NodeId, Role, Term};

/// File identifier of `ClientRequest` buffers (`client.fbs`).
const CLIENT_REQUEST_IDENTIFIER: &str = "RRCQ";
/// File identifier of `ClientResponse` buffers.
const CLIENT_RESPONSE_IDENTIFIER: &str = "RRCR";

/// Version of the client protocol this build speaks, carried in every request. Version 2: a
/// request names its Raft group (version 1 had no version field, which reads as 0).
pub const CLIENT_PROTOCOL_VERSION: u32 = 2;

/// One client request with its session and correlation ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// The client session, never 0. With `sequence`, lets the state machine apply a retried
    /// command at most once.
    pub client_id: u64,
    /// Per-session sequence number of this command, starting at 1; required (non-zero) for
    /// commands that change state, ignored for reads.
    pub sequence: u64,
    /// Echoed in the response, so a client can pipeline many requests on one connection.
    pub request_id: u64,
    /// What is asked.
    pub request: Request,
    /// The Raft group asked: for a key, `kv::group_of(key, groups)`.
    pub group: u32,
    /// The sender's client protocol version ([`CLIENT_PROTOCOL_VERSION`] when encoded by this
    /// build; 0 from a version-1 client, which did not send one).
    pub protocol_version: u32,
    /// A write retried at the node a leader is handing leadership to
    /// ([`ClientError::NotLeader`]'s `handing_over`): a node that does not lead yet holds it
    /// (bounded) until it leads, rather than refusing it while the hand-over is on its way.
    pub await_leadership: bool,
}

impl ClientRequest {
    /// A request of this build's protocol for group `group`.
    pub fn new(
        client_id: u64,
        sequence: u64,
        request_id: u64,
        group: u32,
        request: Request,
    ) -> Self {
        ClientRequest {
            client_id,
            sequence,
            request_id,
            request,
            group,
            protocol_version: CLIENT_PROTOCOL_VERSION,
            await_leadership: false,
        }
    }

    /// The key the request is about, if any: it decides the request's group.
    pub fn key(&self) -> Option<&[u8]> {
        match &self.request {
            Request::Put { key, .. } | Request::Delete { key } | Request::Get { key, .. } => {
                Some(key)
            }
            _ => None,
        }
    }
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: Bytes,
        /// True: linearizable (ReadIndex). False: from the local state machine, possibly stale.
        linearizable: bool,
    },
    /// Replicate and commit an opaque payload without applying it to the map, for pure-consensus
    /// benchmarks.
    Propose {
        /// The payload.
        payload: Bytes,
    },
    /// The node's counters.
    Stats,
    /// Leader only: hand leadership to node `to` (thesis 3.10); answered with `Done` once this
    /// node has stepped down (or at once if `to` is this node and it leads).
    TransferLeader {
        /// The node that should lead.
        to: NodeId,
    },
    /// This node's view of the configuration (any node answers; match indexes from the leader).
    MemberList,
    /// Leader only: one membership change, answered with `Done` once it is complete.
    MemberChange(MemberChange),
}

/// A membership change a client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberChange {
    /// Which change.
    pub kind: MemberChangeKind,
    /// The member it is about.
    pub id: NodeId,
    /// AddLearner: the new member's addresses, `PEER_ADDR/CLIENT_ADDR` (checked by the node).
    pub context: Bytes,
}

/// The kinds of membership change (thesis 4.3, with learners).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChangeKind {
    /// A new non-voting member.
    AddLearner,
    /// A caught-up learner becomes a voter.
    Promote,
    /// A member leaves.
    Remove,
}

/// A member's place in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRole {
    /// Votes.
    Voter,
    /// Receives the log, does not vote.
    Learner,
    /// Votes in the new configuration only, while joint (being promoted).
    Joining,
    /// Votes in the old configuration only, while joint (being removed).
    Leaving,
}

impl std::fmt::Display for MemberRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::Joining => "voter (joining)",
            MemberRole::Leaving => "voter (leaving)",
        })
    }
}

/// One member as `MemberList` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its id.
    pub id: NodeId,
    /// Its role.
    pub role: MemberRole,
    /// Where peers reach it, if known.
    pub peer_addr: Option<String>,
    /// Where clients reach it, if known.
    pub client_addr: Option<String>,
    /// The leader's match index for it (the leader's own last index for itself); None when
    /// the answering node does not lead, or does not know it yet.
    pub match_index: Option<Index>,
}

/// A node's view of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberListing {
    /// The answering node.
    pub node_id: NodeId,
    /// The leader it knows of.
    pub leader_id: Option<NodeId>,
    /// Its last log index.
    pub last_log_index: Index,
    /// Its commit index.
    pub commit_index: Index,
    /// Index of the configuration's entry (or of the snapshot that holds it).
    pub configuration_index: Index,
    /// Every member, by id.
    pub members: Vec<MemberInfo>,
}

impl Request {
    /// Whether the request changes replicated state (and so needs a session sequence number).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Put { .. } | Request::Delete { .. } | Request::Propose { .. }
        )
    }
}

/// A node's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientResponse {
    /// The request's `request_id`.
    pub request_id: u64,
    /// The result, or why there is none.
    pub result: Result<Reply, ClientError>,
}

/// A successful result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A write was committed and applied.
    Done {
        /// The log index at which it was committed.
        log_index: Index,
    },
    /// The value of the key read.
    Value(Bytes),
    /// The key read does not exist.
    NotFound,
    /// The node's counters.
    Stats(NodeStats),
    /// The node's view of the configuration.
    Members(MemberListing),
}

/// Why a request failed. What the client should do is in each variant's doc.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ClientError {
    /// This node is not the leader: retry at the hinted leader, or another node.
    #[error("not the leader (leader hint: {leader_hint:?}, address: {leader_addr:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader_hint: Option<NodeId>,
        /// That leader's client address, if known.
        leader_addr: Option<String>,
        /// This node has just handed leadership to `leader_hint`, which may not lead yet:
        /// retry there at once with [`ClientRequest::await_leadership`] set.
        handing_over: bool,
    },
    /// The request was not committed in time; it may still commit. Retry with the same sequence.
    #[error("timed out; the request may still commit, retry with the same sequence number")]
    Timeout,
    /// The command is larger than the node accepts: do not retry as is.
    #[error("command of {size_bytes} bytes exceeds the {limit_bytes}-byte limit")]
    TooLarge {
        /// The command's size.
        size_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// The leader has too much uncommitted work: retry after a pause.
    #[error("leader is overloaded (backpressure); retry later")]
    Backpressure,
    /// Anything else; the message says what.
    #[error("internal error: {message}")]
    Internal {
        /// What went wrong.
        message: String,
    },
    /// The request is well formed but the node will not do it (an unknown node id, a transfer
    /// already under way, one that timed out): do not retry as is.
    #[error("{message}")]
    Refused {
        /// Why, and what to do instead.
        message: String,
    },
}

/// A node's counters, as the `Stats` request returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStats {
    /// The node's id.
    pub node_id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader_id: Option<NodeId>,
    /// Its commit index.
    pub commit_index: Index,
    /// Highest index applied to its state machine.
    pub applied_index: Index,
    /// Index of its last log entry.
    pub last_log_index: Index,
    /// Elections it has started.
    pub elections: u64,
    /// Proposals it has accepted as leader.
    pub proposals: u64,
    /// Snapshots it has taken or installed.
    pub snapshots: u64,
    /// Peer frames that failed validation (their connection was closed).
    pub invalid_peer_frames: u64,
    /// Client frames that failed validation (their connection was closed).
    pub invalid_client_frames: u64,
    /// Peer connections refused at the handshake (wrong cluster, unknown id, bad version).
    pub refused_handshakes: u64,
    /// Outgoing peer messages dropped (queue full or peer unreachable).
    pub dropped_peer_messages: u64,
    /// Bytes received from peers and clients.
    pub bytes_in: u64,
    /// Bytes sent to peers and clients.
    pub bytes_out: u64,
    /// Groups of log writes made durable.
    pub disk_syncs: u64,
    /// Output jobs made durable (batched into `disk_syncs` groups).
    pub disk_jobs: u64,
    /// Election timeouts that fired here (pre-vote campaigns, or elections without pre-vote).
    pub campaigns: u64,
    /// Outgoing peer messages dropped by link emulation.
    pub emulated_drops: u64,
    /// Votes and pre-votes refused while recovering entries its disk lost.
    pub votes_withheld: u64,
    /// While recovering lost entries: the index its log must reach before it votes again.
    pub recovering_to: Option<Index>,
    /// Elections it started because a leader handed leadership to it (not counted in
    /// `campaigns`, which are election timeouts).
    pub transfer_elections: u64,
    /// The group these figures are of.
    pub group: u32,
    /// How many groups the node hosts (0 from an older node: one).
    pub groups: u32,
    /// Writes a leader handing over sent here, held now until this node leads.
    pub awaiting_leadership: u64,
}

/// Encodes `request` into `fbb` (reset first) and returns the finished body, to be sent as a
/// `ClientRequest` frame.
pub fn encode_client_request<'b>(
    request: &ClientRequest,
    fbb: &'b mut FlatBufferBuilder<'_>,
) -> &'b [u8] {
    fbb.reset();
    let (body_type, body) = encode_request_body(&request.request, fbb);
    let args = fb::ClientRequestArgs {
        client_id: request.client_id,
        sequence: request.sequence,
        request_id: request.request_id,
        body_type,
        body: Some(body),
        protocol_version: request.protocol_version,
        group: request.group,
        await_leadership: request.await_leadership,
    };
    let root = fb::ClientRequest::create(fbb, &args);
    fbb.finish(root, Some(CLIENT_REQUEST_IDENTIFIER));
    fbb.finished_data()
}

/// Decodes and validates a `ClientRequest` body, copying keys and values out of `body`.
pub fn decode_client_request(body: &[u8]) -> Result<ClientRequest, DecodeError> {
    decode_request_with(body, &Bytes::copy_from_slice)
}

/// Like [`decode_client_request`], but keys and values are zero-copy slices of `body`.
pub fn decode_client_request_shared(body: &Bytes) -> Result<ClientRequest, DecodeError> {
    decode_request_with(body, &|part: &[u8]| body.slice_ref(part))
}

/// Encodes `response` into `fbb` (reset first) and returns the finished body, to be sent as a
/// `ClientResponse` frame.
pub fn encode_client_response<'b>(
    response: &ClientResponse,
    fbb: &'b mut FlatBufferBuilder<'_>,
) -> &'b [u8] {
    fbb.reset();
    let (body_type, body) = match &response.result {
        Ok(reply) => encode_reply(reply, fbb),
        Err(error) => encode_error(error, fbb),
    };
    let args = fb::ClientResponseArgs {
        request_id: response.request_id,
        body_type,
        body: Some(body),
    };
    let root = fb::ClientResponse::create(fbb, &args);
    fbb.finish(root, Some(CLIENT_RESPONSE_IDENTIFIER));
    fbb.finished_data()
}

/// Decodes and validates a `ClientResponse` body.
pub fn decode_client_response(body: &[u8]) -> Result<ClientResponse, DecodeError> {
    let root =
        verified_root::<fb::ClientResponse>(body, "ClientResponse", CLIENT_RESPONSE_IDENTIFIER)?;
    let unknown = || DecodeError::UnknownBody {
        table: "ClientResponse",
        body_type: root.body_type().0,
    };
    let result = match root.body_type() {
        fb::Reply::Done => Ok(Reply::Done {
            log_index: root.body_as_done().ok_or_else(unknown)?.log_index(),
        }),
        fb::Reply::Value => {
            let value = root.body_as_value().ok_or_else(unknown)?.value().bytes();
            Ok(Reply::Value(Bytes::copy_from_slice(value)))
        }
        fb::Reply::NotFound => Ok(Reply::NotFound),
        fb::Reply::MemberListReply => Ok(Reply::Members(decode_members(
            root.body_as_member_list_reply().ok_or_else(unknown)?,
        )?)),
        fb::Reply::StatsReply => Ok(Reply::Stats(decode_stats(
            root.body_as_stats_reply().ok_or_else(unknown)?,
        )?)),
        fb::Reply::NotLeader => {
            let t = root.body_as_not_leader().ok_or_else(unknown)?;
            Err(ClientError::NotLeader {
                leader_hint: non_zero(t.leader_hint()),
                leader_addr: t.leader_addr().map(str::to_string),
                handing_over: t.handing_over(),
            })
        }
        fb::Reply::Timeout => Err(ClientError::Timeout),
        fb::Reply::TooLarge => {
            let t = root.body_as_too_large().ok_or_else(unknown)?;
            Err(ClientError::TooLarge {
                size_bytes: t.size_bytes(),
                limit_bytes: t.limit_bytes(),
            })
        }
        fb::Reply::Backpressure => Err(ClientError::Backpressure),
        fb::Reply::Internal => {
            let t = root.body_as_internal().ok_or_else(unknown)?;
            Err(ClientError::Internal {
                message: t.message().unwrap_or_default().to_string(),
            })
        }
        fb::Reply::Refused => {
            let t = root.body_as_refused().ok_or_else(unknown)?;
            Err(ClientError::Refused {
                message: t.message().unwrap_or_default().to_string(),
            })
        }
        _ => return Err(unknown()),
    };
    Ok(ClientResponse {
        request_id: root.request_id(),
        result,
    })
}

fn encode_request_body(
    request: &Request,
    fbb: &mut FlatBufferBuilder<'_>,
) -> (fb::Request, WIPOffset<UnionWIPOffset>) {
    match request {
        Request::Put { key, value } => {
            let key = fbb.create_vector(key);
            let value = fbb.create_vector(value);
            let put = fb::Put::create(
                fbb,
                &fb::PutArgs {
                    key: Some(key),
                    value: Some(value),
                },
            );
            (fb::Request::Put, put.as_union_value())
        }
        Request::Delete { key } => {
            let key = fbb.create_vector(key);
            (
                fb::Request::Delete,
                fb::Delete::create(fbb, &fb::DeleteArgs { key: Some(key) }).as_union_value(),
            )
        }
        Request::Get { key, linearizable } => {
            let key = fbb.create_vector(key);
            let get = fb::Get::create(
                fbb,
                &fb::GetArgs {
                    key: Some(key),
                    linearizable: *linearizable,
                },
            );
            (fb::Request::Get, get.as_union_value())
        }
        Request::Propose { payload } => {
            let payload = fbb.create_vector(payload);
            let propose = fb::Propose::create(
                fbb,
                &fb::ProposeArgs {
                    payload: Some(payload),
                },
            );
            (fb::Request::Propose, propose.as_union_value())
        }
        Request::Stats => (
            fb::Request::Stats,
            fb::Stats::create(fbb, &fb::StatsArgs {}).as_union_value(),
        ),
        Request::TransferLeader { to } => (
            fb::Request::TransferLeader,
            fb::TransferLeader::create(fbb, &fb::TransferLeaderArgs { to: *to }).as_union_value(),
        ),
        Request::MemberList => (
            fb::Request::MemberList,
            fb::MemberList::create(fbb, &fb::MemberListArgs {}).as_union_value(),
        ),
        Request::MemberChange(change) => {
            let context = fbb.create_vector(&change.context);
            let kind = match change.kind {
                MemberChangeKind::AddLearner => fb::MemberChangeKind::AddLearner,
                MemberChangeKind::Promote => fb::MemberChangeKind::Promote,
                MemberChangeKind::Remove => fb::MemberChangeKind::Remove,
            };
            let args = fb::MemberChangeArgs {
                kind,
                id: change.id,
                context: Some(context),
            };
            (
                fb::Request::MemberChange,
                fb::MemberChange::create(fbb, &args).as_union_value(),
            )
        }
    }
}

fn decode_request_with(
    body: &[u8],
    to_bytes: &dyn Fn(&[u8]) -> Bytes,
) -> Result<ClientRequest, DecodeError> {
    let root =
        verified_root::<fb::ClientRequest>(body, "ClientRequest", CLIENT_REQUEST_IDENTIFIER)?;
    let unknown = || DecodeError::UnknownBody {
        table: "ClientRequest",
        body_type: root.body_type().0,
    };
    // Required vectors (key, value, payload) are guaranteed present by the verifier.
    let request = match root.body_type() {
        fb::Request::Put => {
            let t = root.body_as_put().ok_or_else(unknown)?;
            Request::Put {
                key: to_bytes(t.key().bytes()),
                value: to_bytes(t.value().bytes()),
            }
        }
        fb::Request::Delete => Request::Delete {
            key: to_bytes(root.body_as_delete().ok_or_else(unknown)?.key().bytes()),
        },
        fb::Request::Get => {
            let t = root.body_as_get().ok_or_else(unknown)?;
            Request::Get {
                key: to_bytes(t.key().bytes()),
                linearizable: t.linearizable(),
            }
        }
        fb::Request::Propose => Request::Propose {
            payload: to_bytes(
                root.body_as_propose()
                    .ok_or_else(unknown)?
                    .payload()
                    .bytes(),
            ),
        },
        fb::Request::Stats => Request::Stats,
        fb::Request::TransferLeader => Request::TransferLeader {
            to: root.body_as_transfer_leader().ok_or_else(unknown)?.to(),
        },
        fb::Request::MemberList => Request::MemberList,
        fb::Request::MemberChange => {
            let t = root.body_as_member_change().ok_or_else(unknown)?;
            let kind = match t.kind() {
                fb::MemberChangeKind::AddLearner => MemberChangeKind::AddLearner,
                fb::MemberChangeKind::Promote => MemberChangeKind::Promote,
                fb::MemberChangeKind::Remove => MemberChangeKind::Remove,
                other => {
                    return Err(DecodeError::OutOfRange {
                        field: "MemberChange.kind",
                        value: u64::from(other.0),
                        limit: 2,
                    })
                }
            };
            let context = t.context().map_or(&[][..], |c| c.bytes());
            if context.len() > crate::core::MEMBER_CONTEXT_BYTES_MAX {
                return Err(DecodeError::OutOfRange {
                    field: "MemberChange.context",
                    value: context.len() as u64,
                    limit: crate::core::MEMBER_CONTEXT_BYTES_MAX as u64,
                });
            }
            Request::MemberChange(MemberChange {
                kind,
                id: t.id(),
                context: Bytes::copy_from_slice(context),
            })
        }
        _ => return Err(unknown()),
    };
    if root.client_id() == 0 {
        return Err(DecodeError::MissingField {
            field: "ClientRequest.client_id",
        });
    }
    if request.is_write() && root.sequence() == 0 {
        return Err(DecodeError::MissingField {
            field: "ClientRequest.sequence",
        });
    }
    Ok(ClientRequest {
        client_id: root.client_id(),
        sequence: root.sequence(),
        request_id: root.request_id(),
        request,
        group: root.group(),
        protocol_version: root.protocol_version(),
        await_leadership: root.await_leadership(),
    })
}

fn encode_reply(
    reply: &Reply,
    fbb: &mut FlatBufferBuilder<'_>,
) -> (fb::Reply, WIPOffset<UnionWIPOffset>) {
    match reply {
        Reply::Done { log_index } => (
            fb::Reply::Done,
            fb::Done::create(
                fbb,
                &fb::DoneArgs {
                    log_index: *log_index,
                },
            )
            .as_union_value(),
        ),
        Reply::Value(value) => {
            let value = fbb.create_vector(value);
            (
                fb::Reply::Value,
                fb::Value::create(fbb, &fb::ValueArgs { value: Some(value) }).as_union_value(),
            )
        }
        Reply::NotFound => (
            fb::Reply::NotFound,
            fb::NotFound::create(fbb, &fb::NotFoundArgs {}).as_union_value(),
        ),
        Reply::Stats(stats) => (fb::Reply::StatsReply, encode_stats(stats, fbb)),
        Reply::Members(listing) => (fb::Reply::MemberListReply, encode_members(listing, fbb)),
    }
}

fn encode_error(
    error: &ClientError,
    fbb: &mut FlatBufferBuilder<'_>,
) -> (fb::Reply, WIPOffset<UnionWIPOffset>) {
    match error {
        ClientError::NotLeader {
            leader_hint,
            leader_addr,
            handing_over,
        } => {
            let leader_addr = leader_addr.as_deref().map(|addr| fbb.create_string(addr));
            let args = fb::NotLeaderArgs {
                leader_hint: leader_hint.unwrap_or(0),
                leader_addr,
                handing_over: *handing_over,
            };
            (
                fb::Reply::NotLeader,
                fb::NotLeader::create(fbb, &args).as_union_value(),
            )
        }
        ClientError::Timeout => (
            fb::Reply::Timeout,
            fb::Timeout::create(fbb, &fb::TimeoutArgs {}).as_union_value(),
        ),
        ClientError::TooLarge {
            size_bytes,
            limit_bytes,
        } => {
            let args = fb::TooLargeArgs {
                size_bytes: *size_bytes,
                limit_bytes: *limit_bytes,
            };
            (
                fb::Reply::TooLarge,
                fb::TooLarge::create(fbb, &args).as_union_value(),
            )
        }
        ClientError::Backpressure => (
            fb::Reply::Backpressure,
            fb::Backpressure::create(fbb, &fb::BackpressureArgs {}).as_union_value(),
        ),
        ClientError::Internal { message } => {
            let message = fbb.create_string(message);
            let args = fb::InternalArgs {
                message: Some(message),
            };
            (
                fb::Reply::Internal,
                fb::Internal::create(fbb, &args).as_union_value(),
            )
        }
        ClientError::Refused { message } => {
            let message = fbb.create_string(message);
            let args = fb::RefusedArgs {
                message: Some(message),
            };
            (
                fb::Reply::Refused,
                fb::Refused::create(fbb, &args).as_union_value(),
            )
        }
    }
}

fn encode_stats(stats: &NodeStats, fbb: &mut FlatBufferBuilder<'_>) -> WIPOffset<UnionWIPOffset> {
    let args = fb::StatsReplyArgs {
        node_id: stats.node_id,
        role: role_to_fb(stats.role),
        term: stats.term,
        leader_id: stats.leader_id.unwrap_or(0),
        commit_index: stats.commit_index,
        applied_index: stats.applied_index,
        last_log_index: stats.last_log_index,
        elections: stats.elections,
        proposals: stats.proposals,
        snapshots: stats.snapshots,
        invalid_peer_frames: stats.invalid_peer_frames,
        invalid_client_frames: stats.invalid_client_frames,
        refused_handshakes: stats.refused_handshakes,
        dropped_peer_messages: stats.dropped_peer_messages,
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
        disk_syncs: stats.disk_syncs,
        disk_jobs: stats.disk_jobs,
        campaigns: stats.campaigns,
        emulated_drops: stats.emulated_drops,
        votes_withheld: stats.votes_withheld,
        recovering_to: stats.recovering_to.unwrap_or(0),
        transfer_elections: stats.transfer_elections,
        group: stats.group,
        groups: stats.groups,
        awaiting_leadership: stats.awaiting_leadership,
    };
    fb::StatsReply::create(fbb, &args).as_union_value()
}

fn decode_stats(t: fb::StatsReply<'_>) -> Result<NodeStats, DecodeError> {
    Ok(NodeStats {
        node_id: t.node_id(),
        role: role_from_fb(t.role())?,
        term: t.term(),
        leader_id: non_zero(t.leader_id()),
        commit_index: t.commit_index(),
        applied_index: t.applied_index(),
        last_log_index: t.last_log_index(),
        elections: t.elections(),
        proposals: t.proposals(),
        snapshots: t.snapshots(),
        invalid_peer_frames: t.invalid_peer_frames(),
        invalid_client_frames: t.invalid_client_frames(),
        refused_handshakes: t.refused_handshakes(),
        dropped_peer_messages: t.dropped_peer_messages(),
        bytes_in: t.bytes_in(),
        bytes_out: t.bytes_out(),
        disk_syncs: t.disk_syncs(),
        disk_jobs: t.disk_jobs(),
        campaigns: t.campaigns(),
        emulated_drops: t.emulated_drops(),
        votes_withheld: t.votes_withheld(),
        recovering_to: non_zero(t.recovering_to()),
        transfer_elections: t.transfer_elections(),
        group: t.group(),
        groups: t.groups(),
        awaiting_leadership: t.awaiting_leadership(),
    })
}

fn encode_members(
    listing: &MemberListing,
    fbb: &mut FlatBufferBuilder<'_>,
) -> WIPOffset<UnionWIPOffset> {
    let members: Vec<_> = listing
        .members
        .iter()
        .map(|m| {
            let peer_addr = m.peer_addr.as_deref().map(|a| fbb.create_string(a));
            let client_addr = m.client_addr.as_deref().map(|a| fbb.create_string(a));
            let role = match m.role {
                MemberRole::Voter => fb::MemberRole::Voter,
                MemberRole::Learner => fb::MemberRole::Learner,
                MemberRole::Joining => fb::MemberRole::Joining,
                MemberRole::Leaving => fb::MemberRole::Leaving,
            };
            let args = fb::MemberInfoArgs {
                id: m.id,
                role,
                peer_addr,
                client_addr,
                match_index: m.match_index.unwrap_or(0),
            };
            fb::MemberInfo::create(fbb, &args)
        })
        .collect();
    let members = fbb.create_vector(&members);
    let args = fb::MemberListReplyArgs {
        node_id: listing.node_id,
        leader_id: listing.leader_id.unwrap_or(0),
        last_log_index: listing.last_log_index,
        commit_index: listing.commit_index,
        configuration_index: listing.configuration_index,
        members: Some(members),
    };
    fb::MemberListReply::create(fbb, &args).as_union_value()
}

fn decode_members(t: fb::MemberListReply<'_>) -> Result<MemberListing, DecodeError> {
    let list = t.members().unwrap_or_default();
    // A configuration holds at most one more member than the limit while a change is joint.
    let members_max = crate::limits::CLUSTER_NODES_MAX + 1;
    if list.len() > members_max {
        return Err(DecodeError::OutOfRange {
            field: "MemberListReply.members",
            value: list.len() as u64,
            limit: members_max as u64,
        });
    }
    let mut members = Vec::with_capacity(list.len());
    for m in list {
        let role = match m.role() {
            fb::MemberRole::Voter => MemberRole::Voter,
            fb::MemberRole::Learner => MemberRole::Learner,
            fb::MemberRole::Joining => MemberRole::Joining,
            fb::MemberRole::Leaving => MemberRole::Leaving,
            other => {
                return Err(DecodeError::OutOfRange {
                    field: "MemberInfo.role",
                    value: u64::from(other.0),
                    limit: 3,
                })
            }
        };
        members.push(MemberInfo {
            id: m.id(),
            role,
            peer_addr: m.peer_addr().map(str::to_string),
            client_addr: m.client_addr().map(str::to_string),
            match_index: non_zero(m.match_index()),
        });
    }
    Ok(MemberListing {
        node_id: t.node_id(),
        leader_id: non_zero(t.leader_id()),
        last_log_index: t.last_log_index(),
        commit_index: t.commit_index(),
        configuration_index: t.configuration_index(),
        members,
    })
}

fn role_to_fb(role: Role) -> fb::Role {
    match role {
        Role::Follower => fb::Role::Follower,
        Role::PreCandidate => fb::Role::PreCandidate,
        Role::Candidate => fb::Role::Candidate,
        Role::Leader => fb::Role::Leader,
    }
}

fn role_from_fb(role: fb::Role) -> Result<Role, DecodeError> {
    match role {
        fb::Role::Follower => Ok(Role::Follower),
        fb::Role::PreCandidate => Ok(Role::PreCandidate),
        fb::Role::Candidate => Ok(Role::Candidate),
        fb::Role::Leader => Ok(Role::Leader),
        other => Err(DecodeError::OutOfRange {
            field: "StatsReply.role",
            value: u64::from(other.0),
            limit: 3,
        }),
    }
}

fn non_zero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}
