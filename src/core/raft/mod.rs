//! The Raft state machine: roles, elections (with pre-vote and check-quorum), replication
//! (batched and pipelined, with fast backtracking), commitment, ReadIndex, leader transfer and
//! snapshots. Everything here is a function of (state, input); all effects leave through
//! [`Output`].
//!
//! This file holds the state, the inputs and the term checks every message goes through;
//! [`roles`] then dispatches a message on the role first. Each concern lives in its own file:
//! [`elections`] (with the rule for nodes that lost acknowledged entries), [`replication`],
//! [`snapshots`], [`read_index`] and [`membership`]. Quorum arithmetic is in `core::quorum`.

mod elections;
mod membership;
mod read_index;
mod replication;
mod roles;
mod snapshots;

use membership::config_entries;
use read_index::ReadIndexState;

use std::collections::BTreeMap;

use bytes::Bytes;

use super::config::{Config, ConfigError};
use super::message::{Envelope, Message};
use super::output::{Output, ProposeError, SoftState};
use super::progress::Progress;
use super::quorum::Membership;
use super::raft_log::RaftLog;
use super::rng::SplitMix64;
use super::snapshot_stream::SnapshotInfo;
use super::types::{
    EntryKind, HardState, Index, NodeId, Restored, Role, Snapshot, SnapshotMeta, Term,
};
use crate::limits;

/// Most committed entries handed out in one output, so one output stays bounded.
const APPLY_ENTRIES_MAX: usize = 4096;

/// One Raft node's protocol state. Drive it with `tick`, `step`, `propose`, `read_index`,
/// `persisted`, `snapshot_taken` and `transfer_leader`; after each call (or a batch of calls),
/// drain [`RawNode::take_output`] and act on it as [`Output`] describes.
pub struct RawNode {
    config: Config,
    rng: SplitMix64,
    /// The configuration in force: the latest in the log, committed or not (thesis 4.1).
    membership: Membership,
    /// The configuration entries in the log after the snapshot: (index, term, configuration),
    /// by index. The last one, or else the snapshot's, is `membership`.
    conf_entries: Vec<(Index, Term, Membership)>,

    hard_state: HardState,
    /// The hard state last handed to the driver; a difference means it must be written.
    written_hard_state: HardState,
    role: Role,
    leader: Option<NodeId>,
    last_soft_state: Option<SoftState>,

    log: RaftLog,
    /// The latest snapshot, streamed to followers behind the compacted prefix: its position
    /// and length only (the driver keeps the bytes and reads the chunks the core names).
    snapshot: Option<SnapshotInfo>,
    snapshot_requested: bool,
    /// Payload bytes of the entries applied since the last snapshot (for
    /// `Config::snapshot_log_factor`).
    applied_bytes_since_snapshot: u64,
    /// A follower's snapshot being received in chunks: (meta, bytes so far).
    incoming_snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// A snapshot installed from the leader, not yet handed to the driver.
    installed_snapshot: Option<Snapshot>,

    election_elapsed_ticks: u32,
    heartbeat_elapsed_ticks: u32,
    randomized_election_timeout_ticks: u32,

    /// Votes received as pre-candidate or candidate.
    votes: BTreeMap<NodeId, bool>,
    /// Leader only: one entry per peer.
    progress: BTreeMap<NodeId, Progress>,
    lead_transferee: Option<NodeId>,
    transfer_elapsed_ticks: u32,
    /// A former leader that handed its vote to its transferee with the `TimeoutNow`: whom, and
    /// in which term. While that term has no leader heard from, the `TimeoutNow` is sent again
    /// at each heartbeat interval (a lost one would otherwise cost an election timeout).
    vote_handed_to: Option<(NodeId, Term)>,
    /// A candidate that was handed a vote with a `TimeoutNow`: from whom, that leader's last
    /// index, and the term of the vote (`become_leader` uses it in that term only).
    handed_vote_from: Option<(NodeId, Index, Term)>,
    /// Leader: the commit index last sent to followers.
    commit_index_sent: Index,

    reads: ReadIndexState,
    out: Output,

    /// Set while this node's log ends below the `acked_index` it had made durable: it lost
    /// entries it had acknowledged, and does not decide elections until its log matches a
    /// leader's through this index (see "Lost entries" in `elections.rs`).
    recovering_to: Option<Index>,
    /// Votes and pre-votes refused because this node was recovering.
    votes_withheld: u64,
    /// Elections started on a leader's `TimeoutNow` rather than by an election timeout.
    transfer_elections: u64,
}

impl RawNode {
    /// A node starting from what it had made durable (`Restored::default()` for a new node).
    pub fn new(config: Config, restored: Restored) -> Result<RawNode, ConfigError> {
        config.validate()?;
        let mut snapshot_meta = restored
            .snapshot
            .as_ref()
            .map(|s| s.meta.clone())
            .unwrap_or_default();
        if snapshot_meta.membership.is_empty() {
            snapshot_meta.membership = Membership::from_voters(config.voters.iter().copied());
        }
        let conf_entries = config_entries(&restored.entries);
        let log = RaftLog::restored(snapshot_meta, restored.entries);
        let membership = conf_entries
            .last()
            .map_or(&log.snapshot_meta().membership, |(_, _, m)| m)
            .clone();
        // A single voter is the whole majority: nobody can give back what it lost, so it goes on
        // with what remains (the driver reports the loss as unrecoverable).
        let recovering_to = (log.last_index() < restored.hard_state.acked_index
            && membership.all_voters().len() > 1
            && !config.bug_no_abstain)
            .then_some(restored.hard_state.acked_index);
        let mut node = RawNode {
            rng: SplitMix64::new(config.seed ^ config.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            membership,
            conf_entries,
            hard_state: restored.hard_state,
            written_hard_state: restored.hard_state,
            role: Role::Follower,
            leader: None,
            last_soft_state: None,
            log,
            snapshot: restored.snapshot.as_ref().map(SnapshotInfo::of),
            snapshot_requested: false,
            applied_bytes_since_snapshot: 0,
            incoming_snapshot: None,
            installed_snapshot: None,
            election_elapsed_ticks: 0,
            heartbeat_elapsed_ticks: 0,
            randomized_election_timeout_ticks: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            lead_transferee: None,
            vote_handed_to: None,
            handed_vote_from: None,
            transfer_elapsed_ticks: 0,
            commit_index_sent: 0,
            reads: ReadIndexState::default(),
            out: Output::default(),
            recovering_to,
            votes_withheld: 0,
            transfer_elections: 0,
            config,
        };
        node.reset_election_timer();
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }
    /// This node's role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    /// Current term and vote.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }
    /// The in-memory log, for inspection (invariant checks, stats).
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// Leader only: the match index of a peer, for inspection and tests.
    pub fn match_index(&self, peer: NodeId) -> Option<Index> {
        self.progress.get(&peer).map(|p| p.match_index)
    }
    /// True while a leadership transfer is under way.
    pub fn transfer_in_progress(&self) -> bool {
        self.lead_transferee.is_some()
    }
    /// The node this former leader handed its vote and leadership to (its `TimeoutNow`), while
    /// no leader of the term it voted in has been heard from: where its clients should go.
    pub fn handed_vote_to(&self) -> Option<NodeId> {
        let (to, voted_term) = self.vote_handed_to?;
        let still_waiting = self.role == Role::Follower
            && self.leader.is_none()
            && self.term() == voted_term
            && self.hard_state.voted_for == Some(to);
        still_waiting.then_some(to)
    }
    /// While this node lost acknowledged entries and is being caught up: the index its log must
    /// reach, matching a leader's, before it votes or campaigns again.
    pub fn recovering_to(&self) -> Option<Index> {
        self.recovering_to
    }
    /// Votes and pre-votes refused because this node was recovering lost entries.
    pub fn votes_withheld(&self) -> u64 {
        self.votes_withheld
    }
    /// Elections this node started because a leader handed leadership to it (`TimeoutNow`),
    /// without waiting for an election timeout.
    pub fn transfer_elections(&self) -> u64 {
        self.transfer_elections
    }

    fn term(&self) -> Term {
        self.hard_state.current_term
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.age_forwarded_reads();
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed_ticks += 1;
            self.resend_handed_vote();
            if self.election_elapsed_ticks >= self.randomized_election_timeout_ticks {
                if self.recovering_to.is_some() {
                    // It might win with a log that lacks what it lost: wait for a leader.
                    self.reset_election_timer();
                } else if !self.membership.is_voter(self.config.id) {
                    // Learners, removed nodes and nodes waiting to be added never campaign.
                    self.reset_election_timer();
                } else {
                    self.campaign(false);
                }
            }
        }
    }

    /// Proposes a command; returns the index it will have if it commits.
    pub fn propose(&mut self, data: Bytes) -> Result<Index, ProposeError> {
        self.propose_encoded(data, None)
    }

    /// The index and term the next accepted proposal gets: what a driver encodes into the
    /// record it hands to [`RawNode::propose_encoded`].
    pub fn next_proposal(&self) -> (Index, Term) {
        (self.log.last_index() + 1, self.term())
    }

    /// Like [`RawNode::propose`], with the entry's record already encoded by the driver for
    /// [`RawNode::next_proposal`] (see [`Entry::record`]); the core carries it along unread.
    pub fn propose_encoded(
        &mut self,
        data: Bytes,
        record: Option<Bytes>,
    ) -> Result<Index, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.lead_transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        if data.len() > limits::ENTRY_BYTES_MAX {
            return Err(ProposeError::TooLarge {
                size_bytes: data.len(),
                limit_bytes: limits::ENTRY_BYTES_MAX,
            });
        }
        if (self.log.last_index() - self.log.commit_index()) as usize
            >= self.config.uncommitted_entries_max
        {
            return Err(ProposeError::Backpressure);
        }
        Ok(self.append_entry(EntryKind::Normal, data, record))
    }

    /// Reports that everything up to the entry (index, term) is durable locally.
    pub fn persisted(&mut self, index: Index, term: Term) {
        self.log.persisted_to(index, term);
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, envelope: Envelope) {
        let Envelope { from, to, message } = envelope;
        if to != self.config.id || from == self.config.id || from == 0 {
            return; // Not for us, or from nobody: a driver bug, never trusted.
        }
        // Messages from nodes outside our configuration are handled: a leader may know of a
        // newer configuration than ours (a node being added hears from it before it has any
        // configuration entry), and a candidate's votes are counted only by the candidate,
        // against its own configuration.
        let term = message.term();
        if term > self.term() && !self.handle_higher_term(from, &message) {
            return;
        }
        if term < self.term() {
            self.handle_lower_term(from, &message);
            return;
        }
        self.step_current_term(from, message);
    }

    /// Drains the work accumulated since the last call. Proposals made since the previous call
    /// leave together: this is where batching happens.
    pub fn take_output(&mut self) -> Output {
        if self.role == Role::Leader {
            self.broadcast_append();
            self.broadcast_read_round();
        }
        let soft = SoftState {
            role: self.role,
            leader: self.leader,
            term: self.term(),
        };
        if self.last_soft_state != Some(soft) {
            self.last_soft_state = Some(soft);
            self.out.soft_state = Some(soft);
        }
        self.out.snapshot = self.installed_snapshot.take();
        self.out.entries = self.log.take_unwritten();
        if self.out.snapshot.is_some() || !self.out.entries.is_empty() {
            self.note_written_end();
        }
        if self.hard_state != self.written_hard_state {
            self.written_hard_state = self.hard_state;
            self.out.hard_state = Some(self.hard_state);
        }
        self.out.committed_entries = self.log.take_committed(APPLY_ENTRIES_MAX);
        self.applied_bytes_since_snapshot += self
            .out
            .committed_entries
            .iter()
            .map(|e| e.data.len() as u64)
            .sum::<u64>();
        if self.config.snapshot_threshold_entries > 0
            && !self.snapshot_requested
            && self.snapshot_due()
        {
            self.snapshot_requested = true;
            self.out.snapshot_wanted = true;
        }
        std::mem::take(&mut self.out)
    }

    /// Sends a message: at once, or after the pending write when it depends on durable state.
    fn send(&mut self, to: NodeId, message: Message) {
        let envelope = Envelope {
            from: self.config.id,
            to,
            message,
        };
        // Anything said after a term or vote change must wait until that change is durable;
        // so must acknowledgements of appended entries and installed snapshots. A change of
        // `acked_index` alone holds nothing back: it rides with the entries it describes, and
        // the leader's AppendEntries must leave in parallel with its own write.
        let written = self.written_hard_state;
        let term_or_vote_unwritten = self.hard_state.current_term != written.current_term
            || self.hard_state.voted_for != written.voted_for;
        let after_persist = term_or_vote_unwritten
            || matches!(
                envelope.message,
                Message::RequestVote { .. }
                    | Message::RequestVoteResponse { granted: true, .. }
                    | Message::AppendEntriesResponse { success: true, .. }
                    | Message::InstallSnapshotResponse { .. }
            );
        if after_persist {
            self.out.messages_after_persist.push(envelope);
        } else {
            self.out.messages.push(envelope);
        }
    }

    /// A message from a higher term. Returns whether to go on handling it.
    fn handle_higher_term(&mut self, from: NodeId, message: &Message) -> bool {
        match *message {
            Message::PreVote { .. }
            | Message::RequestVote {
                leader_transfer: false,
                ..
            } if self.in_leader_lease() => {
                // Thesis 6.2 / 4.2.3: we heard from a leader recently, so this candidate is
                // disruptive (e.g. just back from a partition). Ignore it.
                false
            }
            // A pre-vote changes nobody's term; neither does a granted pre-vote response.
            Message::PreVote { .. } => true,
            Message::PreVoteResponse { granted: true, .. } => true,
            Message::AppendEntries { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::TimeoutNow { term, .. } => {
                self.become_follower(term, Some(from));
                true
            }
            _ => {
                self.become_follower(message.term(), None);
                true
            }
        }
    }

    fn handle_lower_term(&mut self, from: NodeId, message: &Message) {
        let term = self.term();
        match message {
            // A stale leader learns our term and steps down. Without this, a node that raised
            // its term behind a partition (pre-vote off) could never rejoin; with pre-vote,
            // it lets a deposed leader find out.
            Message::AppendEntries { .. }
            | Message::Heartbeat { .. }
            | Message::InstallSnapshot { .. } => {
                self.send(
                    from,
                    Message::HeartbeatResponse {
                        term,
                        read_round: 0,
                    },
                );
            }
            Message::PreVote { .. } => {
                self.send(
                    from,
                    Message::PreVoteResponse {
                        term,
                        granted: false,
                    },
                );
            }
            _ => {}
        }
    }
}
