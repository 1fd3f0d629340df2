//! What each role does with a message of its own term, once the term checks common to every
//! role (in `step`) have passed. A learner is a follower whose configuration gives it no vote;
//! the rules that tell them apart live in the handlers (`may_vote`, `is_voter`), not here.
//!
//! Each role names the kinds it acts on and the kinds it drops; whatever any role answers the
//! same way (votes asked of it, a leader's messages, forwarded reads) is in `step_any_role`.

use crate::core::message::Message;
use crate::core::output::ReadState;
use crate::core::types::{Index, NodeId, Role, SnapshotMeta};

use super::RawNode;

impl RawNode {
    /// A message of the current term: dispatched on the role first, then on the kind.
    pub(super) fn step_current_term(&mut self, from: NodeId, message: Message) {
        match self.role {
            Role::Leader => self.step_leader(from, message),
            Role::Candidate | Role::PreCandidate => self.step_candidate(from, message),
            Role::Follower => self.step_follower(from, message),
        }
    }

    fn step_leader(&mut self, from: NodeId, message: Message) {
        match message {
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
            // Votes that arrive after the election was won, and a transfer aimed at a node that
            // already leads this term, change nothing.
            Message::RequestVoteResponse { .. } | Message::TimeoutNow { .. } => {}
            other => self.step_any_role(from, other),
        }
    }

    /// Candidates and pre-candidates: each counts only the answers to its own kind of request.
    fn step_candidate(&mut self, from: NodeId, message: Message) {
        match message {
            // A granted pre-vote is answered in the term we would campaign in.
            Message::PreVoteResponse { term, granted }
                if self.role == Role::PreCandidate && term == self.term() + 1 =>
            {
                self.record_vote(from, granted)
            }
            Message::RequestVoteResponse { granted, .. } => {
                if self.role == Role::Candidate {
                    self.record_vote(from, granted);
                }
            }
            Message::TimeoutNow {
                vote, last_index, ..
            } => self.handle_timeout_now(from, vote, last_index),
            // Answers to a leader's messages reach only a leader.
            Message::AppendEntriesResponse { .. }
            | Message::HeartbeatResponse { .. }
            | Message::InstallSnapshotResponse { .. } => {}
            other => self.step_any_role(from, other),
        }
    }

    fn step_follower(&mut self, from: NodeId, message: Message) {
        match message {
            Message::TimeoutNow {
                vote, last_index, ..
            } => self.handle_timeout_now(from, vote, last_index),
            // Vote counts and answers to a leader's messages reach only those who asked.
            Message::RequestVoteResponse { .. }
            | Message::AppendEntriesResponse { .. }
            | Message::HeartbeatResponse { .. }
            | Message::InstallSnapshotResponse { .. } => {}
            other => self.step_any_role(from, other),
        }
    }

    /// Kinds every role handles alike. A leader's messages in its own term make any role (a
    /// leader too, should two ever share a term) follow the sender.
    fn step_any_role(&mut self, from: NodeId, message: Message) {
        match message {
            Message::PreVote {
                term,
                last_log_index,
                last_log_term,
            } => {
                let granted = term > self.term()
                    && self.may_vote()
                    && self.log.is_up_to_date(last_log_index, last_log_term);
                debug_assert!(!granted || self.recovering_to.is_none());
                let term = if granted { term } else { self.term() };
                self.send(from, Message::PreVoteResponse { term, granted });
            }
            Message::RequestVote {
                last_log_index,
                last_log_term,
                ..
            } => self.handle_request_vote(from, last_log_index, last_log_term),
            // A rejection from a higher term: someone there has a log we must catch up with.
            Message::PreVoteResponse { term, granted } => {
                if !granted && term > self.term() {
                    self.become_follower(term, None);
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
            // The handler answers "not the leader" on other roles.
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
            // Role-specific kinds, dropped by the roles they do not concern before coming here.
            Message::RequestVoteResponse { .. }
            | Message::TimeoutNow { .. }
            | Message::AppendEntriesResponse { .. }
            | Message::HeartbeatResponse { .. }
            | Message::InstallSnapshotResponse { .. } => {
                unreachable!("role-specific message reached step_any_role")
            }
        }
    }

    /// A leader asks us to campaign at once (thesis 3.10); never a node that may have lost
    /// acknowledged entries, nor one without a vote.
    /// With `vote`, the sender voted for us in the term after this one (see
    /// `send_timeout_now`), which is the term `become_candidate` moves to: the vote counts as
    /// if it had answered our RequestVote.
    fn handle_timeout_now(&mut self, from: NodeId, vote: bool, last_index: Index) {
        if self.recovering_to.is_none() && self.membership.is_voter(self.config.id) {
            self.transfer_elections += 1;
            self.become_candidate(true);
            if vote && self.role == Role::Candidate {
                self.handed_vote_from = Some((from, last_index, self.term()));
                self.record_vote(from, true);
            }
        }
    }
}
