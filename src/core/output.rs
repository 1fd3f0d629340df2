//! What the core asks its driver to do. The fields encode the ordering rules, so that a driver
//! cannot send a vote before the vote is durable by mistake.

use std::collections::VecDeque;

use super::message::Envelope;
use super::snapshot_stream::SnapshotChunk;
use super::types::{Entry, HardState, Index, NodeId, Role, Snapshot, Term};

/// Work for the driver, drained by [`super::RawNode::take_output`]. The driver must:
///
/// 1. start persisting, in this order, `snapshot`, then `entries` (truncating any stored suffix
///    from `entries[0].index` first), then `hard_state`;
/// 2. send `messages` at once, in parallel with that write (thesis 10.2.1), and the
///    `snapshot_chunks`, each read from the snapshot it names (one that cannot be read any
///    more, because a newer snapshot replaced it, is dropped: the core sends it again);
/// 3. when this write *and every earlier output's write* is durable (writes complete in order;
///    an output with nothing to write completes when the writes before it do), send
///    `messages_after_persist` and call
///    [`super::RawNode::persisted`] with the last entry (or snapshot) written;
/// 4. restore the state machine from `snapshot` if there is one, then apply
///    `committed_entries` in order, then serve `read_states` once applied reaches their index;
/// 5. when `snapshot_wanted` is set, take a snapshot of the state machine at the applied index
///    and hand it to [`super::RawNode::snapshot_taken`];
/// 6. free the entries in `released` whenever it suits (the core holds them no more).
#[derive(Debug, Default)]
pub struct Output {
    /// Role, leader or term changed since the last output.
    pub soft_state: Option<SoftState>,
    /// Term and vote to make durable before any of `messages_after_persist` leaves.
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader: make it durable, discard the *whole* stored log
    /// (entries before and after it; the leader resends what follows) and restore the state
    /// machine from it.
    pub snapshot: Option<Snapshot>,
    /// Entries to append. When the first index is at or below the stored last index, the stored
    /// suffix from there is replaced (a conflict, paper Figure 2 AppendEntries step 3).
    pub entries: Vec<Entry>,
    /// Messages that may leave now.
    pub messages: Vec<Envelope>,
    /// Chunks of this node's latest snapshot to read and send as `InstallSnapshot` now, in
    /// order (a stream to each follower that needs the snapshot).
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// Messages that may leave only once `hard_state`, `snapshot` and `entries` are durable:
    /// votes, and acknowledgements of appended entries.
    pub messages_after_persist: Vec<Envelope>,
    /// Entries known committed (durable on a majority, not necessarily here yet), to apply in
    /// order.
    pub committed_entries: Vec<Entry>,
    /// Linearizable reads whose read index is known.
    pub read_states: Vec<ReadState>,
    /// Reads that could not be served (no leader, leadership lost); the client should retry.
    pub reads_failed: Vec<u64>,
    /// The core wants a snapshot of the state machine once `committed_entries` are applied.
    pub snapshot_wanted: bool,
    /// Log entries up to and including this index are covered by a snapshot and may be purged.
    pub compact_upto: Option<Index>,
    /// The entries the core let go of (compacted, or replaced by an installed snapshot): the
    /// driver frees them, as it likes.
    pub released: Released,
}

/// Entries the core no longer holds, handed to the driver to free.
///
/// Freeing is work: a leader compacting after a snapshot let go of some 400k entries at once,
/// each one or two buffers to free, and its Raft loop stalled for 57 ms doing it (perf, sampled
/// timestamps, `3node-1kb`), which was that run's worst latency. The core only hands them over,
/// so that a driver can free them a slice at a time between its other work.
#[derive(Default)]
pub struct Released(pub VecDeque<Entry>);

impl Released {
    /// Adds `entries` (after any already held).
    pub fn add(&mut self, mut entries: VecDeque<Entry>) {
        if self.0.is_empty() {
            self.0 = entries;
        } else {
            self.0.append(&mut entries);
        }
    }

    /// Frees up to `max` entries, oldest first; returns how many are left. The queue's own
    /// buffer stays (see [`Released::take_buffer`]).
    pub fn free_some(&mut self, max: usize) -> usize {
        let n = self.0.len().min(max);
        self.0.drain(..n);
        self.0.len()
    }

    /// The queue's buffer once every entry is freed (the log's own, after a compaction: tens of
    /// megabytes), for the driver to free where it likes; None while entries are left.
    pub fn take_buffer(&mut self) -> Option<VecDeque<Entry>> {
        (self.0.is_empty() && self.0.capacity() > 0).then(|| std::mem::take(&mut self.0))
    }
}

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Released({} entries)", self.0.len())
    }
}

impl Output {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.snapshot_chunks.is_empty()
            && self.messages_after_persist.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.reads_failed.is_empty()
            && !self.snapshot_wanted
            && self.compact_upto.is_none()
    }

    /// True when this output has something to make durable.
    pub fn needs_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }

    /// The last (index, term) this output writes: what to report to `persisted` once durable.
    pub fn last_written(&self) -> Option<(Index, Term)> {
        if let Some(e) = self.entries.last() {
            return Some((e.index, e.term));
        }
        self.snapshot
            .as_ref()
            .map(|s| (s.meta.last_included_index, s.meta.last_included_term))
    }
}

/// Volatile state worth reporting when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// This node's role.
    pub role: Role,
    /// The leader this node knows of in `term`.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: Term,
}

/// A linearizable read may be served once the state machine has applied `read_index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's request id, as given to [`super::RawNode::read_index`].
    pub request_id: u64,
    /// Apply at least this far, then read.
    pub read_index: Index,
}

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes proposals; retry at `leader` if known.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is under way; retry shortly at the new leader.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// Too many uncommitted entries; slow down.
    #[error("too many uncommitted entries; retry later")]
    Backpressure,
    /// The command is larger than `limits::ENTRY_BYTES_MAX`.
    #[error("command of {size_bytes} bytes exceeds the limit of {limit_bytes}")]
    TooLarge {
        /// Its size.
        size_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
}

/// Why a read could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No leader is known; retry later.
    #[error("no leader known")]
    NoLeader,
    /// Too many reads pending.
    #[error("too many pending reads")]
    Backpressure,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;

    fn entries(from: Index, to: Index) -> VecDeque<Entry> {
        (from..=to)
            .map(|index| Entry {
                term: 1,
                index,
                kind: EntryKind::Normal,
                data: bytes::Bytes::new(),
                record: None,
            })
            .collect()
    }

    #[test]
    fn released_entries_are_freed_a_slice_at_a_time_oldest_first() {
        let mut released = Released::default();
        released.add(entries(1, 2500));
        released.add(entries(2501, 2600));
        assert_eq!(released.free_some(1024), 1576);
        assert_eq!(released.0.front().map(|e| e.index), Some(1025));
        assert_eq!(released.free_some(1024), 552);
        assert_eq!(released.free_some(1024), 0);
        let buffer = released
            .take_buffer()
            .expect("the queue's buffer, once empty");
        assert!(buffer.is_empty() && buffer.capacity() >= 2600);
        assert_eq!(released.0.capacity(), 0);
        assert!(released.take_buffer().is_none());
        assert_eq!(format!("{released:?}"), "Released(0 entries)");
    }
}
