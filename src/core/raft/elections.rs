//! Elections: the election timer, pre-vote and votes, role changes, check-quorum, leadership
//! transfer (thesis 3.10), and the rule that keeps a node that lost entries from deciding
//! elections.
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

use crate::core::message::Message;
use crate::core::progress::Progress;
use crate::core::quorum::VoteResult;
use crate::core::types::{EntryKind, Index, NodeId, Role, Term};

use super::read_index::ReadIndexState;
use super::RawNode;

impl RawNode {
    /// Whether this node's own vote alone wins an election (it is the only voter).
    pub(super) fn alone_is_quorum(&self) -> bool {
        let own: BTreeMap<NodeId, bool> = [(self.config.id, true)].into();
        self.membership.vote_result(&own) == VoteResult::Won
    }

    /// Every voter but this node, sorted: whom a candidate asks.
    pub(super) fn voter_peers(&self) -> Vec<NodeId> {
        let mut voters = self.membership.all_voters();
        voters.remove(&self.config.id);
        voters.into_iter().collect()
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

    pub(super) fn reset_election_timer(&mut self) {
        self.election_elapsed_ticks = 0;
        let e = self.config.election_timeout_ticks;
        self.randomized_election_timeout_ticks = e + self.rng.below(e as u64) as u32;
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
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

    pub(super) fn campaign(&mut self, leader_transfer: bool) {
        if self.config.pre_vote && !leader_transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate(leader_transfer);
        }
    }

    pub(super) fn become_pre_candidate(&mut self) {
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

    pub(super) fn become_candidate(&mut self, leader_transfer: bool) {
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

    pub(super) fn become_leader(&mut self) {
        debug_assert_eq!(self.role, Role::Candidate);
        debug_assert_eq!(self.hard_state.voted_for, Some(self.config.id));
        debug_assert!(self.recovering_to.is_none());
        debug_assert_eq!(
            self.membership.vote_result(&self.votes),
            VoteResult::Won,
            "leader without a majority of every voter set"
        );
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
        // The leader that handed us its vote holds our log through its last index: replicate
        // to it at once rather than probe first (a probe would hold the first client writes
        // back a round trip to it, while clients wait on the hand-over).
        if let Some((from, last_index, term)) = self.handed_vote_from.take() {
            if term == self.term() && last_index <= self.log.last_index() {
                if let Some(progress) = self.progress.get_mut(&from) {
                    progress.on_success(last_index);
                }
            }
        }
        // The no-op of thesis 6.4: committing it commits every earlier entry, and tells the
        // leader its commit index, which ReadIndex needs.
        self.append_entry(EntryKind::Noop, Bytes::new(), None);
    }

    pub(super) fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && self.leader.is_some()
            && self.election_elapsed_ticks < self.config.election_timeout_ticks
    }

    /// Whether this node may grant a vote or a pre-vote at all: not while it is recovering lost
    /// entries (see "Lost entries"). Counts each refusal for that reason.
    pub(super) fn may_vote(&mut self) -> bool {
        if self.recovering_to.is_some() {
            self.votes_withheld += 1;
            return false;
        }
        true
    }

    pub(super) fn handle_request_vote(
        &mut self,
        from: NodeId,
        last_log_index: Index,
        last_log_term: Term,
    ) {
        let can_vote = self.hard_state.voted_for == Some(from)
            || (self.hard_state.voted_for.is_none() && self.leader.is_none());
        let granted =
            can_vote && self.may_vote() && self.log.is_up_to_date(last_log_index, last_log_term);
        if granted {
            assert!(
                self.recovering_to.is_none(),
                "a vote granted by a node that lost acknowledged entries"
            );
            debug_assert!(
                self.hard_state.voted_for.is_none() || self.hard_state.voted_for == Some(from),
                "a second vote in term {}",
                self.term()
            );
            debug_assert_ne!(self.role, Role::Leader, "a leader votes for nobody else");
            // Paper 5.4.1, restated apart from `is_up_to_date`: the candidate's last term is
            // later, or the same with a log at least as long.
            debug_assert!(
                last_log_term > self.log.last_term()
                    || (last_log_term == self.log.last_term()
                        && last_log_index >= self.log.last_index()),
                "a vote for a log less up to date than ours"
            );
            self.hard_state.voted_for = Some(from);
            self.reset_election_timer();
        }
        let term = self.term();
        self.send(from, Message::RequestVoteResponse { term, granted });
    }

    pub(super) fn record_vote(&mut self, from: NodeId, granted: bool) {
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

    /// Our log now matches the current leader's through `matched`: if that reaches the index we
    /// had acknowledged before losing entries, we hold again everything we acknowledged (or
    /// its committed successor) and may decide elections again.
    pub(super) fn maybe_end_recovery(&mut self, matched: Index) {
        if self.recovering_to.is_some_and(|to| matched >= to) {
            self.recovering_to = None;
        }
    }

    pub(super) fn quorum_recently_active(&mut self) -> bool {
        let mut active: BTreeMap<NodeId, bool> = [(self.config.id, true)].into();
        for (&peer, progress) in self.progress.iter_mut() {
            active.insert(peer, progress.recent_active);
            progress.recent_active = false;
        }
        self.membership.vote_result(&active) == VoteResult::Won
    }

    /// The last step of a transfer: `to` holds every entry of our log, so we vote for it in
    /// the next term and tell it to campaign, in one message.
    ///
    /// Thesis 3.10 has the transferee ask every voter, this leader included, for its vote: a
    /// round trip between them after the `TimeoutNow`'s one way, while clients see no commit.
    /// The vote is the same one we would grant then, given now: `to`'s log matches ours
    /// through our last index and we append nothing more (proposals are refused during a
    /// transfer, and we stop leading here), so `to` is at least as up to date as we are; and
    /// the vote is durable before the message leaves (`send` holds it behind the new term and
    /// vote), so we cannot vote for anyone else in that term. The transferee counts the vote
    /// only in exactly `term + 1`; in a three-voter group it wins on arrival.
    ///
    /// Stepping down at once costs nothing: a leader in transfer takes no proposals, and its
    /// term is over either way. If `to` cannot campaign after all (it lost entries), the
    /// group waits an election timeout, as it would for a leader that crashed.
    pub(super) fn send_timeout_now(&mut self, to: NodeId) {
        let led_term = self.term();
        debug_assert_eq!(self.role, Role::Leader);
        debug_assert_eq!(
            self.progress.get(&to).map(|p| p.match_index),
            Some(self.log.last_index()),
            "a TimeoutNow with our vote to a node that lacks entries we hold"
        );
        let last_index = self.log.last_index();
        self.become_follower(led_term + 1, None);
        self.hard_state.voted_for = Some(to);
        self.vote_handed_to = Some((to, led_term + 1));
        self.send(
            to,
            Message::TimeoutNow {
                term: led_term,
                vote: true,
                last_index,
            },
        );
    }

    /// A former leader whose `TimeoutNow` may have been lost sends it again each heartbeat
    /// interval, until a leader of the term it voted in is heard from. A transferee that
    /// already campaigned is in that term and drops it as stale.
    pub(super) fn resend_handed_vote(&mut self) {
        if self.vote_handed_to.is_none() {
            return;
        }
        let Some(to) = self.handed_vote_to() else {
            self.vote_handed_to = None;
            return;
        };
        let voted_term = self.term();
        if self
            .election_elapsed_ticks
            .is_multiple_of(self.config.heartbeat_interval_ticks.max(1))
        {
            let last_index = self.log.last_index();
            self.send(
                to,
                Message::TimeoutNow {
                    term: voted_term - 1,
                    vote: true,
                    last_index,
                },
            );
        }
    }
}
