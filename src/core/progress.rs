//! The leader's view of one follower: how far its log matches, what to send next, and how much
//! is in flight (thesis 10.2.2 pipelining; etcd-raft's probe/replicate/snapshot states).

use std::collections::VecDeque;

use super::snapshot_stream::SnapshotStream;
use super::types::Index;

/// How the leader is replicating to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The match point is unknown: one AppendEntries at a time until one succeeds.
    Probe,
    /// The match point is known: AppendEntries are pipelined up to the in-flight window.
    Replicate,
    /// The follower needs entries that were compacted: a snapshot streams to it, a window
    /// of chunks in flight.
    Snapshot(SnapshotStream),
}

/// Replication progress of one follower.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be durably replicated on the follower (paper's `matchIndex`).
    pub match_index: Index,
    /// Index of the next entry to send (paper's `nextIndex`).
    pub next_index: Index,
    /// How replication proceeds.
    pub state: ProgressState,
    /// In probe state: a message is outstanding, wait for an answer or a heartbeat.
    pub paused: bool,
    /// The follower answered something since the last check-quorum round.
    pub recent_active: bool,
    /// An AppendEntries went out since the last heartbeat interval (heartbeat not needed).
    pub sent_since_heartbeat: bool,
    /// `match_index` when the last heartbeat went out: unchanged when its answer comes back
    /// means the follower is stuck.
    pub match_index_at_heartbeat: Index,
    /// Last index and payload bytes of each AppendEntries in flight, oldest first.
    inflight: VecDeque<(Index, usize)>,
    inflight_bytes: usize,
}

impl Progress {
    /// Progress of a follower about which nothing is known yet.
    pub fn new(next_index: Index) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            paused: false,
            recent_active: false,
            sent_since_heartbeat: false,
            match_index_at_heartbeat: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
        }
    }

    /// Whether another AppendEntries may be sent now.
    pub fn can_send(&self, msgs_max: usize, bytes_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => !self.paused,
            ProgressState::Replicate => {
                self.inflight.len() < msgs_max && self.inflight_bytes < bytes_max
            }
            ProgressState::Snapshot { .. } => false,
        }
    }

    /// Records an AppendEntries carrying entries through `last_index`.
    pub fn on_sent(&mut self, last_index: Index, bytes: usize) {
        self.sent_since_heartbeat = true;
        match self.state {
            ProgressState::Probe => self.paused = true,
            ProgressState::Replicate => {
                if last_index >= self.next_index {
                    self.next_index = last_index + 1;
                    self.inflight.push_back((last_index, bytes));
                    self.inflight_bytes += bytes;
                }
            }
            ProgressState::Snapshot { .. } => {
                unreachable!("appends are not sent while sending a snapshot")
            }
        }
    }

    /// A successful response: the follower holds everything through `match_index`. Returns
    /// false if it told nothing new (a stale or duplicate response).
    pub fn on_success(&mut self, match_index: Index) -> bool {
        self.paused = false;
        if match_index <= self.match_index {
            return false;
        }
        self.match_index = match_index;
        self.next_index = self.next_index.max(match_index + 1);
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > match_index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        if self.state == ProgressState::Probe {
            self.become_replicate();
        }
        true
    }

    /// A rejection of the AppendEntries whose `prev_log_index` was `rejected`; `next` is where
    /// the fast-backtracking hint says to try. Returns whether to send again now: not when the
    /// rejection is stale, nor when it moves nothing (the follower refuses what it should hold,
    /// e.g. entries it had acknowledged): then the probe waits for the next heartbeat instead of
    /// looping.
    pub fn on_reject(&mut self, rejected: Index, next: Index) -> bool {
        match self.state {
            ProgressState::Replicate if rejected <= self.match_index => false,
            ProgressState::Probe if rejected != self.next_index - 1 => false,
            ProgressState::Snapshot { .. } => false,
            _ => {
                let next_before = self.next_index;
                self.become_probe();
                self.next_index = next.min(rejected).max(self.match_index + 1);
                self.paused = self.next_index == next_before;
                !self.paused
            }
        }
    }

    /// The follower reported a log ending at `last_index`, below `match_index`: it lost entries
    /// it had acknowledged. Nothing it acknowledged can be counted any more; probe from its end.
    pub fn on_lost_entries(&mut self, last_index: Index) {
        debug_assert!(last_index < self.match_index);
        self.become_probe();
        self.match_index = 0;
        self.match_index_at_heartbeat = 0;
        self.next_index = last_index + 1;
    }

    /// Starts replicating optimistically from just past the match point.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.clear_inflight();
    }

    /// Goes back to probing, one message at a time.
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.paused = false;
        self.clear_inflight();
    }

    /// Starts streaming a snapshot.
    pub fn become_snapshot(&mut self, stream: SnapshotStream) {
        self.state = ProgressState::Snapshot(stream);
        self.paused = false;
        self.clear_inflight();
    }

    /// Frees one slot of a full window: used on a heartbeat response, so that lost
    /// AppendEntries do not stall replication forever (the next one will be rejected and
    /// the follower probed).
    pub fn free_one_if_full(&mut self, msgs_max: usize, bytes_max: usize) {
        if self.state == ProgressState::Replicate && !self.can_send(msgs_max, bytes_max) {
            if let Some((_, bytes)) = self.inflight.pop_front() {
                self.inflight_bytes -= bytes;
            }
        }
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
    }
}
