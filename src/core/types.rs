//! Small shared types of the Raft core: identifiers, log entries, hard state, snapshots.

use bytes::Bytes;

use super::quorum::Membership;

/// A node's identifier within its cluster. Never 0: 0 means "no node" on the wire.
pub type NodeId = u64;
/// A Raft term (paper section 5.1).
pub type Term = u64;
/// A log index; the first entry has index 1, index 0 is the empty prefix.
pub type Index = u64;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A client command for the state machine.
    Normal,
    /// The empty entry a new leader appends at the start of its term, so that it can commit
    /// (and learn the commit index of) earlier terms' entries (paper section 8, thesis 6.4).
    Noop,
    /// A configuration (thesis 4.3): `data` is a [`super::Membership`] encoded with
    /// [`super::Membership::encode`]. A node uses the latest one in its log, committed or not.
    Config,
}

/// One log entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The term in which a leader created this entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: Index,
    /// What the entry carries.
    pub kind: EntryKind,
    /// The command, opaque to the core. `Bytes` so that fanning out to followers does not copy.
    pub data: Bytes,
    /// This entry encoded as a record batch of its own (the log's and the wire's format, CRC
    /// included), when the driver has it: the leader's runtime encodes a command once, at
    /// proposal, and a follower keeps the bytes it received, so that neither encodes it again
    /// for the disk or the wire. Opaque to the core, which only carries it along; not part of
    /// the entry's identity (equality ignores it). `None` means "encode when needed".
    pub record: Option<Bytes>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.term == other.term
            && self.index == other.index
            && self.kind == other.kind
            && self.data == other.data
    }
}

impl Eq for Entry {}

impl Entry {
    /// Bytes this entry counts for batching and flow-control bounds.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + 24
    }
}

/// The state that must be durable before any message that depends on it is sent
/// (paper Figure 2, "Persistent state on all servers").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Latest term this node has seen.
    pub current_term: Term,
    /// Candidate that received this node's vote in `current_term`, if any.
    pub voted_for: Option<NodeId>,
    /// The last index of this node's log as of its latest completed write, raised (never
    /// lowered) while the node is catching up after a loss. Written in the same `Output` as the
    /// entries it covers, so it is durable before any acknowledgement of them leaves and before
    /// the leader counts its own copy: every entry this node has ever acknowledged and still
    /// holds lies at or below it. A restart with a log that ends below it means the disk lost
    /// acknowledged entries (see the "Lost entries" rule in `src/core/raft/elections.rs`).
    pub acked_index: Index,
}

/// Which point in the log a snapshot replaces, and the configuration in force there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot includes.
    pub last_included_index: Index,
    /// Term of that entry.
    pub last_included_term: Term,
    /// The latest configuration at or before `last_included_index` (the compacted log no
    /// longer holds its entry). Empty from a driver that does not keep it: the node then uses
    /// its bootstrap configuration (`Config::voters`).
    pub membership: Membership,
}

/// A state machine snapshot with the log position it replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Its position in the log.
    pub meta: SnapshotMeta,
    /// The state machine's serialized state, opaque to the core.
    pub data: Bytes,
}

/// Everything a node had made durable before it stopped, handed back to the core at restart.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// Term and vote.
    pub hard_state: HardState,
    /// The latest durable snapshot, if any. `entries` follow it.
    pub snapshot: Option<Snapshot>,
    /// Durable entries after the snapshot, contiguous and in index order.
    pub entries: Vec<Entry>,
}

/// A node's role (paper Figure 4, plus the pre-candidate of thesis 9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader, or waits for one.
    Follower,
    /// Asking whether it could win an election, without disturbing anyone's term (pre-vote).
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Replicates the log.
    Leader,
}
