//! The Raft state machine: roles, elections (with pre-vote and check-quorum), replication
//! (batched and pipelined, with fast backtracking), commitment, ReadIndex, leader transfer and
//! snapshots. Everything here is a function of (state, input); all effects leave through
//! [`Output`].
//!
//! # Lost entries
//!
//! Raft assumes that what a node acknowledged stays on its disk. A damaged tail, a flipped byte
//! repaired by dropping the log after it, or a write the disk acknowledged and never kept break
//! that, and a node that forgot an entry it acknowledged can then help elect a leader without
//! it: if it was part of that entry's commit majority, the entry is lost (Alagappan et al.,
//! "Protocol-Aware Recovery for Consensus-Based Storage", FAST 2018). The rule here:
//!
//! * Every write of entries carries [`HardState::acked_index`], the log's last index after the
//!   write, durable with it and before any acknowledgement of it (and before the leader counts
//!   its own copy, which `persisted` reports only once the whole write is durable).
//! * A node that restarts with a log ending below `acked_index` is *recovering*: it grants no
//!   vote and no pre-vote, does not campaign and ignores `TimeoutNow`, until its log matches a
//!   leader's through `acked_index` (entries or a snapshot from a leader of its term reaching
//!   that index). While recovering, `acked_index` only rises, so a second crash mid-way does
//!   not forget the loss.
//!
//! Why this keeps Leader Completeness, with faulty disks on at most a minority at once: let `e`
//! be committed, so durable on a majority M that acknowledged it. A later leader was elected by
//! a majority V, which meets M in some node n. n granted a vote, so it was not recovering: its
//! log reached at least its `acked_index`, which is at or above `e`'s index. n's copy of `e`
//! either survived, or was lost and refetched from a leader whose log already held `e` (by
//! induction over terms). So n held `e` when it voted, and the usual up-to-date check made the
//! candidate's log hold `e` too. A recovering node's own acknowledgements still count toward
//! commitment: it sends them only for entries it holds durably again and that match the leader,
//! so they are as true as anyone's; what it must not do is decide an election with the log it
//! lost. With `acked_index` lowered on a legitimate truncation (entries that conflict with the
//! leader's, hence not committed) a clean restart is never mistaken for a loss; the one false
//! alarm is a crash between a truncating write and its hard state, which costs that node a
//! catch-up, never safety.
//!
//! A leader learns that a follower lost entries when the follower reports a last index below
//! the leader's recorded match (a rejection whose `conflict_index` is at or below it, or the
//! report a follower sends on a heartbeat whose commit index it does not hold): the leader then
//! forgets the match and probes from the follower's real end.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::config::{Config, ConfigError};
use super::message::{Envelope, Message};
use super::output::{Output, ProposeError, ReadError, ReadState, SoftState};
use super::progress::{Progress, ProgressState};
use super::quorum::{ConfChange, ConfChangeError, Membership, VoteResult};
use super::raft_log::RaftLog;
use super::rng::SplitMix64;
use super::snapshot_stream::{SnapshotChunk, SnapshotInfo, SnapshotStream, StreamWindow};
use super::types::{
    Entry, EntryKind, HardState, Index, NodeId, Restored, Role, Snapshot, SnapshotMeta, Term,
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
    /// Leader: the commit index last sent to followers.
    commit_index_sent: Index,

    reads: ReadIndexState,
    out: Output,

    /// Set while this node's log ends below the `acked_index` it had made durable: it lost
    /// entries it had acknowledged, and does not decide elections until its log matches a
    /// leader's through this index (see "Lost entries" above).
    recovering_to: Option<Index>,
    /// Votes and pre-votes refused because this node was recovering.
    votes_withheld: u64,
    /// Elections started on a leader's `TimeoutNow` rather than by an election timeout.
    transfer_elections: u64,
}

/// Pending ReadIndex requests (thesis 6.4).
#[derive(Default)]
struct ReadIndexState {
    /// Leader: the latest heartbeat round number.
    round: u64,
    /// Leader: reads registered since the last round was broadcast.
    unsent: Vec<PendingRead>,
    /// Leader: reads waiting for a quorum to acknowledge their round, oldest first.
    waiting: Vec<(u64, PendingRead)>,
    /// Leader: highest round acknowledged by each peer.
    acked_round: BTreeMap<NodeId, u64>,
    /// Leader: reads received before this term's first commit (the read index is not known yet).
    before_first_commit: Vec<(NodeId, u64)>,
    /// Follower: reads forwarded to the leader, with their age in ticks.
    forwarded: BTreeMap<u64, u32>,
}

#[derive(Clone, Copy)]
struct PendingRead {
    /// The node whose client asked (this node for local reads).
    origin: NodeId,
    request_id: u64,
    read_index: Index,
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

    // ---------------------------------------------------------------- inspection

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
    /// The configuration in force: the latest in the log, committed or not.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// Index of the latest configuration entry in the log (the snapshot's index if the log
    /// holds none).
    pub fn membership_index(&self) -> Index {
        self.conf_entries
            .last()
            .map_or(self.log.snapshot_meta().last_included_index, |(i, _, _)| *i)
    }
    /// Whether this node's own vote alone wins an election (it is the only voter).
    fn alone_is_quorum(&self) -> bool {
        let own: BTreeMap<NodeId, bool> = [(self.config.id, true)].into();
        self.membership.vote_result(&own) == VoteResult::Won
    }
    /// Every member but this node, sorted: whom a leader replicates to.
    fn peers(&self) -> Vec<NodeId> {
        let mut peers = self.membership.members();
        peers.remove(&self.config.id);
        peers.into_iter().collect()
    }
    /// Every voter but this node, sorted: whom a candidate asks.
    fn voter_peers(&self) -> Vec<NodeId> {
        let mut voters = self.membership.all_voters();
        voters.remove(&self.config.id);
        voters.into_iter().collect()
    }

    // ---------------------------------------------------------------- inputs

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.age_forwarded_reads();
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed_ticks += 1;
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

    /// Proposes a membership change; returns the index of its configuration entry. One change
    /// at a time: refused while the previous one is uncommitted or joint. A change of the voter
    /// set goes through a joint configuration C_old,new; once that commits, the leader appends
    /// C_new itself (thesis 4.3), and a leader that is not in C_new steps down once C_new
    /// commits.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<Index, ConfChangeError> {
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.lead_transferee.is_some() {
            return Err(ConfChangeError::TransferInProgress);
        }
        if self.membership_index() > self.log.commit_index() || self.membership.is_joint() {
            return Err(ConfChangeError::ChangeInProgress);
        }
        // Until an entry of its term commits, a new leader may hold an uncommitted
        // configuration of an earlier leader it does not know of yet (the single-server change
        // bug Ongaro described in 2015; cheap to rule out here too).
        if self.log.term_at(self.log.commit_index()) != Some(self.term()) {
            return Err(ConfChangeError::LeaderNotReady);
        }
        let next = self.membership.apply(&change)?;
        Ok(self.append_config(next))
    }

    /// Starts a linearizable read (ReadIndex, thesis 6.4); the answer comes as a `ReadState`
    /// with this `request_id`, or in `reads_failed`. Works on followers too: they ask the leader.
    pub fn read_index(&mut self, request_id: u64) -> Result<(), ReadError> {
        match self.role {
            Role::Leader => {
                if self.pending_read_count() >= limits::READ_INDEX_PENDING_MAX {
                    return Err(ReadError::Backpressure);
                }
                self.leader_read_index(self.config.id, request_id);
                Ok(())
            }
            _ => {
                let leader = self.leader.ok_or(ReadError::NoLeader)?;
                if self.reads.forwarded.len() >= limits::READ_INDEX_PENDING_MAX {
                    return Err(ReadError::Backpressure);
                }
                self.reads.forwarded.insert(request_id, 0);
                let term = self.term();
                self.send(leader, Message::ReadIndexRequest { term, request_id });
                Ok(())
            }
        }
    }

    /// Reports that everything up to the entry (index, term) is durable locally.
    pub fn persisted(&mut self, index: Index, term: Term) {
        self.log.persisted_to(index, term);
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Hands over the snapshot asked for with `Output::snapshot_wanted`, already durable: the
    /// log prefix it covers is compacted and `Output::compact_upto` tells the driver to purge it.
    pub fn snapshot_taken(&mut self, snapshot: Snapshot) {
        self.snapshot_requested = false;
        let index = snapshot.meta.last_included_index;
        if index <= self.log.snapshot_meta().last_included_index || index > self.log.applied_index()
        {
            return; // Stale, or not yet applied here: ignore rather than corrupt the log.
        }
        assert_eq!(
            self.log.term_at(index),
            Some(snapshot.meta.last_included_term),
            "snapshot term mismatch at {index}"
        );
        // The core knows the configuration at `index`; the driver's is ignored.
        let membership = self.membership_at(index);
        let mut snapshot = snapshot;
        snapshot.meta.membership = membership.clone();
        self.log.compact(index, membership);
        self.conf_entries.retain(|(i, _, _)| *i > index);
        self.applied_bytes_since_snapshot = 0;
        self.snapshot = Some(SnapshotInfo::of(&snapshot));
        self.out.compact_upto = Some(index);
    }

    /// Starts a leadership transfer to `to` (thesis 3.10). Proposals are refused until it
    /// completes or times out (one election timeout).
    pub fn transfer_leader(&mut self, to: NodeId) {
        if self.role != Role::Leader
            || to == self.config.id
            || !self.progress.contains_key(&to)
            || !self.membership.is_voter(to)
        {
            return;
        }
        self.lead_transferee = Some(to);
        self.transfer_elapsed_ticks = 0;
        if self.progress[&to].match_index == self.log.last_index() {
            self.send_timeout_now(to);
        } else {
            self.send_append(to);
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

    // ---------------------------------------------------------------- output

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

    /// Whether enough has been applied since the last snapshot to take the next one: the entry
    /// threshold, and the log factor times the last snapshot's bytes (at most
    /// `snapshot_log_bytes_max`). All are stretched by
    /// 1/(2 x voters) per rank of this node among the voters (x1, x1.17, x1.33 with three), so
    /// that replicas applying the same log do not all serialize and write a snapshot at the
    /// same moment on a shared disk or while the leader waits for a quorum of them.
    fn snapshot_due(&self) -> bool {
        let members = self.membership.members();
        let voters = members.len().max(1) as u64;
        let rank = members.iter().filter(|&&v| v < self.config.id).count() as u64;
        let stretch = |n: u64| n.saturating_add(n.saturating_mul(rank) / (2 * voters));
        let entries = self.log.applied_index() - self.log.snapshot_meta().last_included_index;
        let snapshot_bytes = self.snapshot.as_ref().map_or(0, |s| s.data_bytes);
        let bytes_due = stretch(snapshot_bytes.saturating_mul(self.config.snapshot_log_factor))
            .min(stretch(self.config.snapshot_log_bytes_max));
        entries >= stretch(self.config.snapshot_threshold_entries)
            && self.applied_bytes_since_snapshot >= bytes_due
    }

    /// Records in the hard state where the log ends once this output's write is durable (see
    /// "Lost entries"): the write's own last index, which may be lower than before after a
    /// conflict truncated the log, but never lower while recovering.
    fn note_written_end(&mut self) {
        let end = self.log.last_index();
        let acked_index = match self.recovering_to {
            Some(_) => self.hard_state.acked_index.max(end),
            None => end,
        };
        self.hard_state.acked_index = acked_index;
        debug_assert!(self.hard_state.acked_index >= self.log.persisted_index());
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

    // ---------------------------------------------------------------- roles

    fn reset_election_timer(&mut self) {
        self.election_elapsed_ticks = 0;
        let e = self.config.election_timeout_ticks;
        self.randomized_election_timeout_ticks = e + self.rng.below(e as u64) as u32;
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term() {
            self.hard_state.current_term = term;
            self.hard_state.voted_for = None;
        }
        if self.role == Role::Leader || self.leader != leader {
            self.fail_pending_reads();
        }
        if self.leader != leader {
            // A stream from another leader is over; the next one starts from its beginning.
            self.incoming_snapshot = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.lead_transferee = None;
        self.votes.clear();
        self.reset_election_timer();
    }

    fn campaign(&mut self, leader_transfer: bool) {
        if self.config.pre_vote && !leader_transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate(leader_transfer);
        }
    }

    fn become_pre_candidate(&mut self) {
        self.fail_pending_reads();
        self.incoming_snapshot = None;
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.config.id, true);
        self.reset_election_timer();
        if self.alone_is_quorum() {
            return self.become_candidate(false);
        }
        let (term, last_log_index, last_log_term) =
            (self.term() + 1, self.log.last_index(), self.log.last_term());
        for peer in self.voter_peers() {
            self.send(
                peer,
                Message::PreVote {
                    term,
                    last_log_index,
                    last_log_term,
                },
            );
        }
    }

    fn become_candidate(&mut self, leader_transfer: bool) {
        self.fail_pending_reads();
        self.incoming_snapshot = None;
        assert!(
            self.recovering_to.is_none(),
            "a node that lost acknowledged entries must not campaign"
        );
        self.hard_state.current_term = self.term() + 1;
        self.hard_state.voted_for = Some(self.config.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.config.id, true);
        self.reset_election_timer();
        if self.alone_is_quorum() {
            return self.become_leader();
        }
        let (term, last_log_index, last_log_term) =
            (self.term(), self.log.last_index(), self.log.last_term());
        for peer in self.voter_peers() {
            self.send(
                peer,
                Message::RequestVote {
                    term,
                    last_log_index,
                    last_log_term,
                    leader_transfer,
                },
            );
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.votes.clear();
        self.lead_transferee = None;
        self.election_elapsed_ticks = 0;
        self.heartbeat_elapsed_ticks = 0;
        self.reads = ReadIndexState::default();
        let next = self.log.last_index() + 1;
        self.progress = self
            .peers()
            .into_iter()
            .map(|p| (p, Progress::new(next)))
            .collect();
        // The no-op of thesis 6.4: committing it commits every earlier entry, and tells the
        // leader its commit index, which ReadIndex needs.
        self.append_entry(EntryKind::Noop, Bytes::new(), None);
    }

    /// Leader: appends a configuration entry, in force from now on (thesis 4.1).
    fn append_config(&mut self, next: Membership) -> Index {
        let index = self.append_entry(EntryKind::Config, Bytes::from(next.encode()), None);
        self.conf_entries.push((index, self.term(), next));
        self.membership_changed();
        index
    }

    /// The configuration in force at `index` (the latest entry at or before it): what a
    /// snapshot taken at `index` carries in its [`SnapshotMeta`].
    pub fn membership_at(&self, index: Index) -> Membership {
        self.conf_entries
            .iter()
            .rev()
            .find(|(i, _, _)| *i <= index)
            .map_or(&self.log.snapshot_meta().membership, |(_, _, m)| m)
            .clone()
    }

    /// Brings `membership` in line with the log's latest configuration; a leader starts or
    /// stops replicating to members added or removed.
    fn membership_changed(&mut self) {
        self.membership = self
            .conf_entries
            .last()
            .map_or(&self.log.snapshot_meta().membership, |(_, _, m)| m)
            .clone();
        if self.role != Role::Leader {
            return;
        }
        let peers = self.peers();
        self.progress.retain(|p, _| peers.contains(p));
        self.reads.acked_round.retain(|p, _| peers.contains(p));
        let next = self.log.last_index() + 1;
        for peer in peers {
            self.progress
                .entry(peer)
                .or_insert_with(|| Progress::new(next));
        }
        if self
            .lead_transferee
            .is_some_and(|t| !self.membership.is_voter(t))
        {
            self.lead_transferee = None;
        }
    }

    fn append_entry(&mut self, kind: EntryKind, data: Bytes, record: Option<Bytes>) -> Index {
        let index = self.log.last_index() + 1;
        self.log.append(Entry {
            term: self.term(),
            index,
            kind,
            data,
            record,
        });
        index
    }

    // ---------------------------------------------------------------- terms

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
            | Message::TimeoutNow { term } => {
                self.become_follower(term, Some(from));
                true
            }
            _ => {
                self.become_follower(message.term(), None);
                true
            }
        }
    }

    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && self.leader.is_some()
            && self.election_elapsed_ticks < self.config.election_timeout_ticks
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

    fn step_current_term(&mut self, from: NodeId, message: Message) {
        match message {
            Message::PreVote {
                term,
                last_log_index,
                last_log_term,
            } => {
                let granted = term > self.term()
                    && self.may_vote()
                    && self.log.is_up_to_date(last_log_index, last_log_term);
                let term = if granted { term } else { self.term() };
                self.send(from, Message::PreVoteResponse { term, granted });
            }
            Message::RequestVote {
                last_log_index,
                last_log_term,
                ..
            } => self.handle_request_vote(from, last_log_index, last_log_term),
            Message::PreVoteResponse { term, granted } => {
                if self.role == Role::PreCandidate && term == self.term() + 1 {
                    self.record_vote(from, granted);
                } else if !granted && term > self.term() {
                    self.become_follower(term, None);
                }
            }
            Message::RequestVoteResponse { granted, .. } => {
                if self.role == Role::Candidate {
                    self.record_vote(from, granted);
                }
            }
            Message::AppendEntries {
                prev_log_index,
                prev_log_term,
                leader_commit,
                entries,
                ..
            } => {
                self.accept_leader(from);
                self.handle_append_entries(
                    from,
                    prev_log_index,
                    prev_log_term,
                    leader_commit,
                    entries,
                );
            }
            Message::Heartbeat {
                leader_commit,
                read_round,
                ..
            } => {
                self.accept_leader(from);
                self.log.commit_to(leader_commit.min(self.log.last_index()));
                if self.recovering_to.is_some() || leader_commit > self.log.last_index() {
                    self.report_log_end(from);
                }
                let term = self.term();
                self.send(from, Message::HeartbeatResponse { term, read_round });
            }
            Message::InstallSnapshot {
                last_included_index,
                last_included_term,
                membership,
                offset,
                data,
                done,
                ..
            } => {
                self.accept_leader(from);
                let meta = SnapshotMeta {
                    last_included_index,
                    last_included_term,
                    membership,
                };
                self.handle_install_snapshot(from, meta, offset, data, done);
            }
            Message::TimeoutNow { .. } => {
                if self.role != Role::Leader
                    && self.recovering_to.is_none()
                    && self.membership.is_voter(self.config.id)
                {
                    self.transfer_elections += 1;
                    self.become_candidate(true);
                }
            }
            Message::ReadIndexRequest { request_id, .. } => {
                self.handle_read_index_request(from, request_id)
            }
            Message::ReadIndexResponse {
                request_id,
                read_index,
                ..
            } => {
                if self.reads.forwarded.remove(&request_id).is_some() {
                    match read_index {
                        Some(read_index) => self.out.read_states.push(ReadState {
                            request_id,
                            read_index,
                        }),
                        None => self.out.reads_failed.push(request_id),
                    }
                }
            }
            Message::AppendEntriesResponse {
                success,
                match_index,
                conflict_index,
                conflict_term,
                ..
            } => self.handle_append_response(
                from,
                success,
                match_index,
                conflict_index,
                conflict_term,
            ),
            Message::HeartbeatResponse { read_round, .. } => {
                self.handle_heartbeat_response(from, read_round)
            }
            Message::InstallSnapshotResponse {
                last_included_index,
                next_offset,
                done,
                ..
            } => self.handle_snapshot_response(from, last_included_index, next_offset, done),
        }
    }

    // ---------------------------------------------------------------- elections

    /// Whether this node may grant a vote or a pre-vote at all: not while it is recovering lost
    /// entries (see "Lost entries"). Counts each refusal for that reason.
    fn may_vote(&mut self) -> bool {
        if self.recovering_to.is_some() {
            self.votes_withheld += 1;
            return false;
        }
        true
    }

    fn handle_request_vote(&mut self, from: NodeId, last_log_index: Index, last_log_term: Term) {
        let can_vote = self.hard_state.voted_for == Some(from)
            || (self.hard_state.voted_for.is_none() && self.leader.is_none());
        let granted =
            can_vote && self.may_vote() && self.log.is_up_to_date(last_log_index, last_log_term);
        if granted {
            assert!(
                self.recovering_to.is_none(),
                "a vote granted by a node that lost acknowledged entries"
            );
            self.hard_state.voted_for = Some(from);
            self.reset_election_timer();
        }
        let term = self.term();
        self.send(from, Message::RequestVoteResponse { term, granted });
    }

    fn record_vote(&mut self, from: NodeId, granted: bool) {
        if !self.membership.is_voter(from) {
            return; // Only our configuration's voters decide our election.
        }
        self.votes.insert(from, granted);
        match self.membership.vote_result(&self.votes) {
            VoteResult::Won => match self.role {
                Role::PreCandidate => self.become_candidate(false),
                Role::Candidate => self.become_leader(),
                _ => {}
            },
            VoteResult::Lost => self.become_follower(self.term(), None),
            VoteResult::Pending => {}
        }
    }

    // ---------------------------------------------------------------- follower side

    fn accept_leader(&mut self, from: NodeId) {
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(self.term(), Some(from));
        }
        self.election_elapsed_ticks = 0;
    }

    fn handle_append_entries(
        &mut self,
        from: NodeId,
        prev_log_index: Index,
        prev_log_term: Term,
        leader_commit: Index,
        entries: Vec<Entry>,
    ) {
        let term = self.term();
        if prev_log_index < self.log.commit_index() {
            // Everything through our commit index matches the leader's log already.
            return self.send_append_success(from, self.log.commit_index());
        }
        let received_configs = config_entries(&entries);
        match self.log.try_append(prev_log_index, prev_log_term, entries) {
            Some(last_new_index) => {
                self.note_received_configs(received_configs);
                self.log.commit_to(leader_commit.min(last_new_index));
                self.maybe_end_recovery(last_new_index);
                self.send_append_success(from, last_new_index);
            }
            None => {
                let (conflict_index, conflict_term) = match self.log.term_at(prev_log_index) {
                    None => (self.log.last_index() + 1, None),
                    Some(t) => (self.log.first_index_of_term_at(prev_log_index), Some(t)),
                };
                let message = Message::AppendEntriesResponse {
                    term,
                    success: false,
                    match_index: prev_log_index,
                    conflict_index,
                    conflict_term,
                };
                self.send(from, message);
            }
        }
    }

    /// After an append from the leader: drops configuration entries that a conflict replaced
    /// and records the new ones, so that `membership` is the log's latest (thesis 4.1: in
    /// force as soon as it is in the log, and the previous one again if it is truncated).
    fn note_received_configs(&mut self, received: Vec<(Index, Term, Membership)>) {
        let log = &self.log;
        self.conf_entries
            .retain(|(i, t, _)| log.term_at(*i) == Some(*t));
        for (index, term, membership) in received {
            let newer = self.conf_entries.last().is_none_or(|(i, _, _)| *i < index);
            if newer && index >= self.log.first_index() && self.log.term_at(index) == Some(term) {
                self.conf_entries.push((index, term, membership));
            }
        }
        if self.conf_entries.last().map(|(_, _, m)| m) != Some(&self.membership) {
            self.membership_changed();
        }
    }

    /// Our log now matches the current leader's through `matched`: if that reaches the index we
    /// had acknowledged before losing entries, we hold again everything we acknowledged (or
    /// its committed successor) and may decide elections again.
    fn maybe_end_recovery(&mut self, matched: Index) {
        if self.recovering_to.is_some_and(|to| matched >= to) {
            self.recovering_to = None;
        }
    }

    /// Tells the leader where our log really ends, when it may believe it longer: after we lost
    /// entries, or when its heartbeat's commit index (capped at what it thinks we hold) lies
    /// beyond our log. `match_index` 0 marks it as a report, not the rejection of an
    /// AppendEntries (index 0 always matches, so no AppendEntries is ever rejected there).
    fn report_log_end(&mut self, to: NodeId) {
        let message = Message::AppendEntriesResponse {
            term: self.term(),
            success: false,
            match_index: 0,
            conflict_index: self.log.last_index() + 1,
            conflict_term: None,
        };
        self.send(to, message);
    }

    /// Acknowledges that our log matches the leader's through `match_index` (sent only once
    /// our pending writes are durable; see `send`).
    fn send_append_success(&mut self, to: NodeId, match_index: Index) {
        let message = Message::AppendEntriesResponse {
            term: self.term(),
            success: true,
            match_index,
            conflict_index: 0,
            conflict_term: None,
        };
        self.send(to, message);
    }

    fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        let term = self.term();
        let index = meta.last_included_index;
        if index <= self.log.commit_index() {
            // We already hold (and have committed) everything it covers.
            return self.send_append_success(from, self.log.commit_index());
        }
        if self.log.term_at(index) == Some(meta.last_included_term) {
            // Paper Figure 13 step 6: our log already holds the entry the snapshot ends at, so
            // everything up to it matches the leader's. Keep our suffix: entries after it may
            // already be acknowledged, and discarding them would withdraw a vote toward a
            // commit. The answer waits for our pending writes, like any acknowledgement.
            self.incoming_snapshot = None;
            self.log.commit_to(index);
            let message = Message::InstallSnapshotResponse {
                term,
                last_included_index: index,
                next_offset: offset,
                done: true,
            };
            return self.send(from, message);
        }
        if offset == 0 {
            self.incoming_snapshot = Some((meta.clone(), Vec::new()));
        }
        let next_offset = match &mut self.incoming_snapshot {
            Some((m, buf)) if *m == meta && buf.len() as u64 == offset => {
                if buf.len() + data.len() > limits::SNAPSHOT_BYTES_MAX {
                    self.incoming_snapshot = None;
                    return; // Refuse to buffer beyond the bound; the leader will retry from 0.
                }
                buf.extend_from_slice(&data);
                buf.len() as u64
            }
            Some((m, buf)) if *m == meta => buf.len() as u64,
            _ => 0,
        };
        if done && next_offset == offset + data.len() as u64 {
            let (meta, buf) = self
                .incoming_snapshot
                .take()
                .expect("snapshot buffer present");
            self.install_snapshot(Snapshot {
                meta,
                data: Bytes::from(buf),
            });
            let message = Message::InstallSnapshotResponse {
                term,
                last_included_index: index,
                next_offset,
                done: true,
            };
            return self.send(from, message);
        }
        let message = Message::InstallSnapshotResponse {
            term,
            last_included_index: index,
            next_offset,
            done: false,
        };
        self.out.messages.push(Envelope {
            from: self.config.id,
            to: from,
            message,
        });
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let mut meta = snapshot.meta.clone();
        if meta.membership.is_empty() {
            meta.membership = self.membership.clone();
        }
        let index = meta.last_included_index;
        self.log.restore(meta);
        self.conf_entries.clear();
        self.membership_changed();
        self.maybe_end_recovery(index);
        self.applied_bytes_since_snapshot = 0;
        self.snapshot = Some(SnapshotInfo::of(&snapshot));
        self.installed_snapshot = Some(snapshot);
        self.snapshot_requested = false;
    }

    // ---------------------------------------------------------------- leader side

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed_ticks += 1;
        self.election_elapsed_ticks += 1;
        if self.election_elapsed_ticks >= self.config.election_timeout_ticks {
            self.election_elapsed_ticks = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                // Thesis 6.2: a leader that cannot hear a quorum steps down, so clients stop
                // waiting on it and its stale reads cannot be served.
                return self.become_follower(self.term(), None);
            }
        }
        if self.lead_transferee.is_some() {
            // Thesis 3.10: abort a transfer that has not completed within an election timeout
            // of its start (not of the leader's election timer, which may be about to expire),
            // and take proposals again.
            self.transfer_elapsed_ticks += 1;
            if self.transfer_elapsed_ticks >= self.config.election_timeout_ticks {
                self.lead_transferee = None;
            }
        }
        if self.heartbeat_elapsed_ticks >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed_ticks = 0;
            self.broadcast_heartbeat();
            // A TimeoutNow is sent once when the transferee catches up; if the network lost
            // it, the transfer would only time out. Sending it again is harmless: a transferee
            // that already campaigned is in a higher term and ignores this one.
            if let Some(to) = self.lead_transferee {
                if self.progress.get(&to).map(|p| p.match_index) == Some(self.log.last_index()) {
                    self.send_timeout_now(to);
                }
            }
        }
        self.tick_snapshot_streams();
        self.broadcast_commit_index();
    }

    /// Restarts snapshot streams that heard nothing for half an election timeout from their
    /// acknowledged offset: what was in flight is lost. Half an election timeout is several
    /// round trips (10 RTTs make an election timeout), so a stream whose window merely waits
    /// on a slow link is not sent twice.
    fn tick_snapshot_streams(&mut self) {
        let timeout_ticks = self.config.election_timeout_ticks / 2;
        let mut restarted = Vec::new();
        for (&peer, progress) in self.progress.iter_mut() {
            if let ProgressState::Snapshot(stream) = &mut progress.state {
                if stream.tick(timeout_ticks) {
                    restarted.push(peer);
                }
            }
        }
        for peer in restarted {
            self.send_snapshot_chunks(peer);
        }
    }

    fn quorum_recently_active(&mut self) -> bool {
        let mut active: BTreeMap<NodeId, bool> = [(self.config.id, true)].into();
        for (&peer, progress) in self.progress.iter_mut() {
            active.insert(peer, progress.recent_active);
            progress.recent_active = false;
        }
        self.membership.vote_result(&active) == VoteResult::Won
    }

    fn broadcast_heartbeat(&mut self) {
        let term = self.term();
        for peer in self.peers() {
            let progress = self
                .progress
                .get_mut(&peer)
                .expect("leader has progress for every peer");
            progress.paused = false; // Let a probe be retried.
            progress.match_index_at_heartbeat = progress.match_index;
            if std::mem::take(&mut progress.sent_since_heartbeat) {
                continue; // Traffic flows; the AppendEntries did the heartbeat's job.
            }
            if let ProgressState::Snapshot(_) = progress.state {
                continue; // The stream resends on its own timeout (`tick_snapshot_streams`).
            }
            let leader_commit = progress.match_index.min(self.log.commit_index());
            self.send(
                peer,
                Message::Heartbeat {
                    term,
                    leader_commit,
                    read_round: 0,
                },
            );
        }
    }

    /// Sends every follower what it lacks. Each AppendEntries carries the commit index; when
    /// every follower in Replicate got one, they have all heard it.
    fn broadcast_append(&mut self) {
        let mut everyone_heard = true;
        for peer in self.peers() {
            let sent = self.send_append(peer);
            if !sent && self.progress[&peer].state == ProgressState::Replicate {
                everyone_heard = false;
            }
        }
        if everyone_heard {
            self.commit_index_sent = self.log.commit_index();
        }
    }

    /// On a leader tick: if some follower has not heard the latest commit index, every follower
    /// in Replicate gets an empty AppendEntries carrying it, so that followers apply (and serve
    /// follower reads) within a tick rather than a heartbeat interval.
    ///
    /// Not at once, as it used to be: while writes flow the next AppendEntries carries the
    /// commit index anyway, and with one request in flight the empty AppendEntries and its
    /// answer cost each follower a receive, a send and a wake-up per write, on the CPUs the next
    /// write needs, for nothing the writer waits on.
    fn broadcast_commit_index(&mut self) {
        if self.log.commit_index() <= self.commit_index_sent {
            return;
        }
        for peer in self.peers() {
            let progress = &self.progress[&peer];
            if progress.state != ProgressState::Replicate {
                continue;
            }
            let prev_log_index = progress.next_index - 1;
            if let Some(prev_log_term) = self.log.term_at(prev_log_index) {
                let (term, leader_commit) = (self.term(), self.log.commit_index());
                let message = Message::AppendEntries {
                    term,
                    prev_log_index,
                    prev_log_term,
                    leader_commit,
                    entries: Vec::new(),
                };
                self.send(peer, message);
            }
        }
        self.commit_index_sent = self.log.commit_index();
    }

    /// Sends AppendEntries to `peer` while its window allows and there is something to send.
    /// Returns whether anything was sent.
    fn send_append(&mut self, peer: NodeId) -> bool {
        let mut sent = false;
        loop {
            let progress = &self.progress[&peer];
            if !progress.can_send(
                self.config.inflight_msgs_max,
                self.config.inflight_bytes_max,
            ) {
                return sent;
            }
            let next = progress.next_index;
            let is_probe = progress.state == ProgressState::Probe;
            if next > self.log.last_index() && !is_probe {
                return sent;
            }
            let prev_log_index = next - 1;
            let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
                self.start_snapshot(peer);
                return true;
            };
            if next > self.log.last_index() && progress.match_index == self.log.last_index() {
                return sent; // A probe with nothing to carry and nothing to learn.
            }
            let entries = if next <= self.log.last_index() {
                self.log.entries_from(
                    next,
                    self.config.batch_entries_max,
                    self.config.batch_bytes_max,
                )
            } else {
                Vec::new()
            };
            let last = entries.last().map_or(prev_log_index, |e| e.index);
            let bytes: usize = entries.iter().map(Entry::size_bytes).sum();
            let leader_commit = self.log.commit_index();
            let term = self.term();
            self.progress
                .get_mut(&peer)
                .expect("progress")
                .on_sent(last, bytes);
            self.send(
                peer,
                Message::AppendEntries {
                    term,
                    prev_log_index,
                    prev_log_term,
                    leader_commit,
                    entries,
                },
            );
            sent = true;
            if is_probe {
                return sent;
            }
        }
    }

    fn start_snapshot(&mut self, peer: NodeId) {
        let Some(snapshot) = &self.snapshot else {
            panic!("peer {peer} needs compacted entries but there is no snapshot");
        };
        let stream = SnapshotStream::new(snapshot);
        self.progress
            .get_mut(&peer)
            .expect("progress")
            .become_snapshot(stream);
        self.send_snapshot_chunks(peer);
    }

    /// Names the chunks of the snapshot stream to `peer` that its window allows (see
    /// `snapshot_stream`); the driver reads and sends them.
    fn send_snapshot_chunks(&mut self, peer: NodeId) {
        let snapshot = self
            .snapshot
            .as_ref()
            .expect("snapshot state implies a snapshot");
        let window = StreamWindow {
            chunk_bytes: self.config.snapshot_chunk_bytes,
            chunks_max: self.config.snapshot_inflight_chunks_max,
            bytes_max: self.config.inflight_bytes_max,
        };
        let term = self.term();
        let progress = self.progress.get_mut(&peer).expect("progress");
        let ProgressState::Snapshot(stream) = &mut progress.state else {
            return;
        };
        if stream.snapshot_index != snapshot.meta.last_included_index {
            // A newer snapshot replaced the one being sent: start over with it.
            *stream = SnapshotStream::new(snapshot);
        }
        while let Some((offset, len, done)) = stream.next_chunk(window) {
            progress.sent_since_heartbeat = true;
            self.out.snapshot_chunks.push(SnapshotChunk {
                to: peer,
                term,
                last_included_index: snapshot.meta.last_included_index,
                last_included_term: snapshot.meta.last_included_term,
                membership: snapshot.meta.membership.clone(),
                offset,
                len,
                done,
            });
        }
    }

    /// Leader only: the progress of `from`, marked as heard from (check-quorum). `None` when
    /// this node no longer leads, so a late response changes nothing.
    fn heard_from(&mut self, from: NodeId) -> Option<&mut Progress> {
        if self.role != Role::Leader {
            return None;
        }
        // None for a node no longer (or not yet) a member.
        let progress = self.progress.get_mut(&from)?;
        progress.recent_active = true;
        Some(progress)
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        match_index: Index,
        conflict_index: Index,
        conflict_term: Option<Term>,
    ) {
        let Some(progress) = self.heard_from(from) else {
            return;
        };
        if success {
            if let ProgressState::Snapshot { .. } = progress.state {
                progress.become_probe();
            }
            if progress.on_success(match_index) {
                self.maybe_commit();
            }
            if self.lead_transferee == Some(from)
                && self.progress[&from].match_index == self.log.last_index()
            {
                self.send_timeout_now(from);
            }
        } else if conflict_term.is_none() && conflict_index <= progress.match_index {
            // The follower's log ends below what it acknowledged: it lost entries (a damaged
            // disk, see "Lost entries"). Its old match is void; probe from its real end. A
            // reordered rejection from before it caught up looks the same and costs one probe.
            progress.on_lost_entries(conflict_index - 1);
            self.send_append(from);
        } else if match_index == 0 {
            // A report of the follower's log end that tells nothing new.
        } else {
            // Fast backtracking (paper section 5.3, the optimization at its end).
            let next = match conflict_term {
                Some(t) => self
                    .log
                    .last_index_of_term(t, match_index)
                    .map_or(conflict_index, |i| i + 1),
                None => conflict_index,
            };
            let next = next.max(1);
            if self
                .progress
                .get_mut(&from)
                .expect("progress")
                .on_reject(match_index, next)
            {
                self.send_append(from);
            }
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64) {
        let (msgs_max, bytes_max) = (
            self.config.inflight_msgs_max,
            self.config.inflight_bytes_max,
        );
        let last_index = self.log.last_index();
        let Some(progress) = self.heard_from(from) else {
            return;
        };
        progress.paused = false;
        progress.free_one_if_full(msgs_max, bytes_max);
        // Heartbeats go out only when no AppendEntries did for a whole interval. A follower
        // that answers one while still behind, having acknowledged nothing new since the
        // previous heartbeat, lost (or got reordered) the AppendEntries in flight: nothing
        // else would ever resend them on an idle leader. Probe it again from its match point.
        if progress.state == ProgressState::Replicate
            && progress.match_index < last_index
            && progress.match_index == progress.match_index_at_heartbeat
        {
            progress.become_probe();
            progress.next_index = progress.match_index + 1;
            self.send_append(from);
        }
        if read_round > 0 {
            self.ack_read_round(from, read_round);
        }
    }

    fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        last_included_index: Index,
        next_offset: u64,
        done: bool,
    ) {
        let Some(progress) = self.heard_from(from) else {
            return;
        };
        let ProgressState::Snapshot(stream) = &mut progress.state else {
            return;
        };
        if stream.snapshot_index != last_included_index {
            return;
        }
        if done {
            progress.become_probe();
            progress.on_success(last_included_index);
            self.maybe_commit();
        } else if stream.on_ack(next_offset) {
            self.send_snapshot_chunks(from);
        }
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        let term = self.term();
        self.send(to, Message::TimeoutNow { term });
    }

    /// Commits the highest index a quorum holds durably, if it is of the current term
    /// (paper section 5.4.2: earlier terms' entries commit only indirectly, see Figure 8).
    fn maybe_commit(&mut self) {
        let persisted = self.log.persisted_index();
        let matched = |id: NodeId| {
            if id == self.config.id {
                Some(persisted)
            } else {
                self.progress.get(&id).map(|p| p.match_index)
            }
        };
        let candidate = if self.config.bug_joint_single_majority && self.membership.is_joint() {
            Membership::from_voters(self.membership.outgoing.iter().copied()).quorum_value(matched)
        } else {
            self.membership.quorum_value(matched)
        };
        if candidate <= self.log.commit_index() {
            return;
        }
        let of_current_term = self.log.term_at(candidate) == Some(self.term());
        if of_current_term || self.config.bug_commit_previous_term {
            let first_commit_of_term =
                self.log.term_at(self.log.commit_index()) != Some(self.term());
            self.log.commit_to(candidate);
            if first_commit_of_term && of_current_term {
                self.release_reads_before_first_commit();
            }
            self.membership_committed();
        }
    }

    /// Leader, after its commit index moved: a committed joint configuration is followed by
    /// C_new; a committed configuration that leaves this node out ends its leadership
    /// (thesis 4.2.2: until then it manages the cluster without counting itself).
    fn membership_committed(&mut self) {
        if self.role != Role::Leader || self.membership_index() > self.log.commit_index() {
            return;
        }
        if self.membership.is_joint() {
            let next = self.membership.leave_joint();
            self.append_config(next);
            if self.alone_is_quorum() {
                self.maybe_commit();
            }
        } else if !self.membership.is_voter(self.config.id) {
            // The thesis (4.2.2) leaves the next leader to an election timeout. Handing over to
            // the most caught-up voter of C_new instead (it holds C_new, which just committed,
            // so it can win) lets clients wait one round of messages rather than a timeout.
            let commit_index = self.log.commit_index();
            let successor = self
                .membership
                .voters
                .iter()
                .filter_map(|&v| self.progress.get(&v).map(|p| (p.match_index, v)))
                .filter(|&(match_index, _)| match_index >= commit_index)
                .max_by_key(|&(match_index, v)| (match_index, std::cmp::Reverse(v)));
            if let Some((_, to)) = successor {
                self.send_timeout_now(to);
            }
            self.become_follower(self.term(), None);
        }
    }

    // ---------------------------------------------------------------- ReadIndex

    fn pending_read_count(&self) -> usize {
        self.reads.unsent.len() + self.reads.waiting.len() + self.reads.before_first_commit.len()
    }

    fn leader_read_index(&mut self, origin: NodeId, request_id: u64) {
        if self.log.term_at(self.log.commit_index()) != Some(self.term()) {
            // Thesis 6.4 step 1: until an entry of this term commits, the leader does not know
            // the commit index. Hold the read until the no-op commits.
            self.reads.before_first_commit.push((origin, request_id));
            return;
        }
        let read_index = self.log.commit_index();
        if self.alone_is_quorum() {
            return self.answer_read(PendingRead {
                origin,
                request_id,
                read_index,
            });
        }
        self.reads.unsent.push(PendingRead {
            origin,
            request_id,
            read_index,
        });
    }

    fn release_reads_before_first_commit(&mut self) {
        for (origin, request_id) in std::mem::take(&mut self.reads.before_first_commit) {
            self.leader_read_index(origin, request_id);
        }
    }

    fn handle_read_index_request(&mut self, from: NodeId, request_id: u64) {
        if self.role != Role::Leader || self.pending_read_count() >= limits::READ_INDEX_PENDING_MAX
        {
            let term = self.term();
            return self.send(
                from,
                Message::ReadIndexResponse {
                    term,
                    request_id,
                    read_index: None,
                },
            );
        }
        self.leader_read_index(from, request_id);
    }

    /// One heartbeat round confirms leadership for every read registered before it.
    fn broadcast_read_round(&mut self) {
        if self.reads.unsent.is_empty() {
            return;
        }
        self.reads.round += 1;
        let round = self.reads.round;
        for read in std::mem::take(&mut self.reads.unsent) {
            self.reads.waiting.push((round, read));
        }
        let term = self.term();
        for peer in self.peers() {
            let leader_commit = self.progress[&peer]
                .match_index
                .min(self.log.commit_index());
            self.send(
                peer,
                Message::Heartbeat {
                    term,
                    leader_commit,
                    read_round: round,
                },
            );
        }
    }

    fn ack_read_round(&mut self, from: NodeId, round: u64) {
        let acked = self.reads.acked_round.entry(from).or_insert(0);
        *acked = (*acked).max(round);
        // The highest round a quorum (this node included) has acknowledged.
        let id = self.config.id;
        let acked = &self.reads.acked_round;
        let confirmed = self.membership.quorum_value(|p| {
            if p == id {
                Some(u64::MAX)
            } else {
                acked.get(&p).copied()
            }
        });
        let ready = self
            .reads
            .waiting
            .iter()
            .take_while(|(r, _)| *r <= confirmed)
            .count();
        let released: Vec<PendingRead> = self
            .reads
            .waiting
            .drain(..ready)
            .map(|(_, read)| read)
            .collect();
        for read in released {
            self.answer_read(read);
        }
    }

    fn answer_read(&mut self, read: PendingRead) {
        if read.origin == self.config.id {
            self.out.read_states.push(ReadState {
                request_id: read.request_id,
                read_index: read.read_index,
            });
        } else {
            let term = self.term();
            let message = Message::ReadIndexResponse {
                term,
                request_id: read.request_id,
                read_index: Some(read.read_index),
            };
            self.send(read.origin, message);
        }
    }

    fn age_forwarded_reads(&mut self) {
        let limit = 2 * self.config.election_timeout_ticks;
        let mut expired = Vec::new();
        for (&request_id, age) in self.reads.forwarded.iter_mut() {
            *age += 1;
            if *age > limit {
                expired.push(request_id);
            }
        }
        for request_id in expired {
            self.reads.forwarded.remove(&request_id);
            self.out.reads_failed.push(request_id);
        }
    }

    /// Leadership (or the leader) changed: no pending read can be confirmed any more.
    fn fail_pending_reads(&mut self) {
        let reads = std::mem::take(&mut self.reads);
        let term = self.term();
        let leader_reads = reads
            .unsent
            .into_iter()
            .chain(reads.waiting.into_iter().map(|(_, r)| r));
        let leader_reads = leader_reads
            .map(|r| (r.origin, r.request_id))
            .chain(reads.before_first_commit);
        for (origin, request_id) in leader_reads {
            if origin == self.config.id {
                self.out.reads_failed.push(request_id);
            } else {
                self.out.messages.push(Envelope {
                    from: self.config.id,
                    to: origin,
                    message: Message::ReadIndexResponse {
                        term,
                        request_id,
                        read_index: None,
                    },
                });
            }
        }
        self.out.reads_failed.extend(reads.forwarded.keys());
    }
}

/// The configuration entries among `entries`, decoded. An entry that does not decode is a
/// corrupt log or a peer bug; it is skipped rather than trusted (and the node keeps the
/// configuration it had).
fn config_entries(entries: &[Entry]) -> Vec<(Index, Term, Membership)> {
    entries
        .iter()
        .filter(|e| e.kind == EntryKind::Config)
        .filter_map(|e| {
            Membership::decode(&e.data)
                .ok()
                .map(|m| (e.index, e.term, m))
        })
        .collect()
}
