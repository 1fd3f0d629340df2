//! The Raft state machine: roles, elections, replication, commitment, reads, transfer, snapshots.

use bytes::Bytes;

use super::config::{Config, ConfigError};
use super::message::Envelope;
use super::output::{Output, ProposeError, ReadError};
use super::raft_log::RaftLog;
use super::types::{HardState, Index, NodeId, Restored, Role, Snapshot, Term};

/// One Raft node's protocol state. Drive it with `tick`, `step`, `propose`, `read_index`,
/// `persisted`, `snapshot_taken` and `transfer_leader`; after each call (or a batch of calls),
/// drain [`RawNode::take_output`] and act on it as [`Output`] describes.
pub struct RawNode {
    _private: (),
}

impl RawNode {
    /// A node starting from what it had made durable (`Restored::default()` for a new node).
    pub fn new(config: Config, restored: Restored) -> Result<RawNode, ConfigError> {
        let _ = (config, restored);
        todo!()
    }
    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        todo!()
    }
    /// Handles a message from a peer.
    pub fn step(&mut self, envelope: Envelope) {
        let _ = envelope;
        todo!()
    }
    /// Proposes a command; returns the index it will have if it commits.
    pub fn propose(&mut self, data: Bytes) -> Result<Index, ProposeError> {
        let _ = data;
        todo!()
    }
    /// Starts a linearizable read (ReadIndex, thesis 6.4); the answer comes as a `ReadState`
    /// with this `request_id`, or in `reads_failed`.
    pub fn read_index(&mut self, request_id: u64) -> Result<(), ReadError> {
        let _ = request_id;
        todo!()
    }
    /// Reports that everything up to the entry (index, term) is durable locally.
    pub fn persisted(&mut self, index: Index, term: Term) {
        let _ = (index, term);
        todo!()
    }
    /// Hands over the snapshot asked for with `Output::snapshot_wanted`.
    pub fn snapshot_taken(&mut self, snapshot: Snapshot) {
        let _ = snapshot;
        todo!()
    }
    /// Starts a leadership transfer to `to` (thesis 3.10).
    pub fn transfer_leader(&mut self, to: NodeId) {
        let _ = to;
        todo!()
    }
    /// Drains the work accumulated since the last call.
    pub fn take_output(&mut self) -> Output {
        todo!()
    }
    /// This node's id.
    pub fn id(&self) -> NodeId {
        todo!()
    }
    /// This node's role.
    pub fn role(&self) -> Role {
        todo!()
    }
    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        todo!()
    }
    /// Current term and vote.
    pub fn hard_state(&self) -> HardState {
        todo!()
    }
    /// The in-memory log, for inspection (invariant checks, stats).
    pub fn log(&self) -> &RaftLog {
        todo!()
    }
}
