//! Every bound in ringraft, in one place. Relationships between them are checked at compile time,
//! so that a change to one that breaks another fails the build rather than a production node.
//!
//! Names carry their unit last (`_bytes`, `_ticks`, `_entries`).

/// Largest payload of one client command, in bytes.
pub const ENTRY_BYTES_MAX: usize = 1 << 20;

/// Most entries the leader puts in one AppendEntries message (one record batch).
pub const BATCH_ENTRIES_MAX: usize = 4096;

/// Most payload bytes the leader puts in one AppendEntries message (one record batch).
pub const BATCH_BYTES_MAX: usize = 4 << 20;

/// Most AppendEntries messages in flight to one follower (pipelining window, in messages).
pub const INFLIGHT_MSGS_MAX: usize = 256;

/// Most payload bytes in flight to one follower (pipelining window, in bytes). Sized for the
/// bandwidth-delay product of a fast link; cross-region configs may lower or raise it up to this.
pub const INFLIGHT_BYTES_MAX: usize = 256 << 20;

/// Largest chunk of a snapshot sent in one InstallSnapshot message.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1 << 20;

/// Most snapshot chunks in flight to one follower (`snapshot_inflight_chunks_max`).
pub const SNAPSHOT_INFLIGHT_CHUNKS_MAX: usize = 4096;

/// Largest snapshot a follower will assemble in memory, and largest state a node serializes.
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 30;

/// Snapshot serialization buffers a node keeps between snapshots (`runtime::snapshot_file`): one
/// still held while the latest snapshot is being restored or handed over, one to serialize the
/// next into. More would only hold memory.
pub const SNAPSHOT_BUFFERS_MAX: usize = 2;

/// Most pending ReadIndex requests a node holds before refusing new ones.
pub const READ_INDEX_PENDING_MAX: usize = 65_536;

/// Most proposals the leader holds in its log beyond what a quorum has persisted. New proposals
/// are refused with `ProposeError::Backpressure` above this, which bounds leader memory when
/// followers or the local disk fall behind.
pub const UNCOMMITTED_ENTRIES_MAX: usize = 1 << 20;

/// Largest frame accepted on any TCP connection (peer or client), in bytes: a full batch with
/// each entry in a record of its own (48 bytes of record and entry header each, rounded up),
/// plus room for the message around it.
pub const FRAME_BYTES_MAX: usize = BATCH_BYTES_MAX + (BATCH_ENTRIES_MAX * 48) + (64 << 10);

/// Receive buffer of a peer connection, in bytes. The socket is read straight into it, asking
/// for all its room at once (many frames per system call under load), and the entries of an
/// AppendEntries stay slices of it. A frame that does not fit in what is left of it is moved to
/// the start of the next one: at least a whole batch fits in one, so that this moves a small
/// part of the bytes received (a frame larger than this gets a buffer of its own size).
pub const PEER_RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// Receive buffer of a client connection (the node's side and the client library's), in bytes:
/// smaller than a peer's, because a node serves many clients and their frames are small.
pub const CLIENT_RECEIVE_BUFFER_BYTES: usize = 64 << 10;

/// Responses each client session remembers in the state machine, by sequence (`kv::store`). A
/// client pipelines many writes on one session and may retry them after a leader change in any
/// order, so the state machine keeps the responses of the session's latest this-many applied
/// sequences; a lower one is forgotten, and its retry refused as stale (never applied twice).
/// The client library keeps every sequence it has in flight within this window (it does not take
/// sequence `s` while `s - SESSION_RESPONSES_MAX` or lower is unanswered), which guarantees that a
/// retry always finds its first answer or applies for the first time.
pub const SESSION_RESPONSES_MAX: usize = 256;

/// Largest cluster the core supports; the quorum arithmetic uses fixed-size arrays up to this.
pub const CLUSTER_NODES_MAX: usize = 9;

/// How far behind the leader's last index a learner may be when it is promoted. A voter that
/// joins further behind holds up commitment while it catches up (thesis 4.2.1), and a learner
/// under a steady write load is never exactly caught up, so "close" is this many entries.
pub const PROMOTE_LAG_ENTRIES_MAX: u64 = 1024;

const _: () = assert!(ENTRY_BYTES_MAX <= BATCH_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= INFLIGHT_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MAX < FRAME_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX < FRAME_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MAX <= SNAPSHOT_BYTES_MAX);
const _: () = assert!(SNAPSHOT_BUFFERS_MAX >= 1);
const _: () = assert!(CLUSTER_NODES_MAX % 2 == 1);
const _: () = assert!(CLIENT_RECEIVE_BUFFER_BYTES <= PEER_RECEIVE_BUFFER_BYTES);
const _: () = assert!(PEER_RECEIVE_BUFFER_BYTES >= BATCH_BYTES_MAX);

/// Requests one client executor may have at the Raft executor at once (the bound of each of its
/// link's two channels: requests out, answers back). When they are all out, its connections stop
/// reading, which pushes back on the clients through TCP.
pub const CLIENT_LINK_REQUESTS_MAX: usize = 8192;

/// Scrapes of `/metrics` waiting at once for the Raft executor to render the figures, when the
/// metrics server runs on another executor.
pub const METRICS_RENDERS_MAX: usize = 1;

const _: () = assert!(CLIENT_LINK_REQUESTS_MAX >= 1 && METRICS_RENDERS_MAX >= 1);

/// Peer connections the node's peer listener (on group 0's executor) may have waiting in the
/// hand-off queue of one other group's executor; past that it closes new ones for that group,
/// and the peer reconnects after its backoff.
pub const PEER_HANDOFF_CONNECTIONS_MAX: usize = 16;

const _: () = assert!(PEER_HANDOFF_CONNECTIONS_MAX >= 1);
