//! Replication: AppendEntries and heartbeats from the leader (batched, pipelined, with fast
//! backtracking), the follower's answers, and commitment.

use bytes::Bytes;

use crate::core::message::Message;
use crate::core::progress::{Progress, ProgressState};
use crate::core::quorum::Membership;
use crate::core::types::{Entry, EntryKind, Index, NodeId, Role, Term};

use super::membership::config_entries;
use super::RawNode;

impl RawNode {
    /// Every member but this node, sorted: whom a leader replicates to.
    pub(super) fn peers(&self) -> Vec<NodeId> {
        let mut peers = self.membership.members();
        peers.remove(&self.config.id);
        peers.into_iter().collect()
    }

    pub(super) fn append_entry(
        &mut self,
        kind: EntryKind,
        data: Bytes,
        record: Option<Bytes>,
    ) -> Index {
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

    /// Records in the hard state where the log ends once this output's write is durable (see
    /// "Lost entries"): the write's own last index, which may be lower than before after a
    /// conflict truncated the log, but never lower while recovering.
    pub(super) fn note_written_end(&mut self) {
        let end = self.log.last_index();
        let acked_index = match self.recovering_to {
            Some(_) => self.hard_state.acked_index.max(end),
            None => end,
        };
        self.hard_state.acked_index = acked_index;
        debug_assert!(self.hard_state.acked_index >= self.log.persisted_index());
    }

    pub(super) fn accept_leader(&mut self, from: NodeId) {
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(self.term(), Some(from));
        }
        self.election_elapsed_ticks = 0;
    }

    pub(super) fn handle_append_entries(
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

    /// Tells the leader where our log really ends, when it may believe it longer: after we lost
    /// entries, or when its heartbeat's commit index (capped at what it thinks we hold) lies
    /// beyond our log. `match_index` 0 marks it as a report, not the rejection of an
    /// AppendEntries (index 0 always matches, so no AppendEntries is ever rejected there).
    pub(super) fn report_log_end(&mut self, to: NodeId) {
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
    pub(super) fn send_append_success(&mut self, to: NodeId, match_index: Index) {
        let message = Message::AppendEntriesResponse {
            term: self.term(),
            success: true,
            match_index,
            conflict_index: 0,
            conflict_term: None,
        };
        self.send(to, message);
    }

    pub(super) fn tick_leader(&mut self) {
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
        }
        self.tick_snapshot_streams();
        self.broadcast_commit_index();
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
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
    pub(super) fn broadcast_append(&mut self) {
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
    pub(super) fn broadcast_commit_index(&mut self) {
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
    pub(super) fn send_append(&mut self, peer: NodeId) -> bool {
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

    /// Leader only: the progress of `from`, marked as heard from (check-quorum). `None` when
    /// this node no longer leads, so a late response changes nothing.
    pub(super) fn heard_from(&mut self, from: NodeId) -> Option<&mut Progress> {
        if self.role != Role::Leader {
            return None;
        }
        // None for a node no longer (or not yet) a member.
        let progress = self.progress.get_mut(&from)?;
        progress.recent_active = true;
        Some(progress)
    }

    pub(super) fn handle_append_response(
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

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64) {
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

    /// Commits the highest index a quorum holds durably, if it is of the current term
    /// (paper section 5.4.2: earlier terms' entries commit only indirectly, see Figure 8).
    pub(super) fn maybe_commit(&mut self) {
        debug_assert_eq!(self.role, Role::Leader, "only a leader decides commitment");
        let commit_before = self.log.commit_index();
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
            debug_assert!(self.log.commit_index() > commit_before);
            debug_assert!(
                self.config.bug_commit_previous_term || of_current_term,
                "commitment counts replicas of the current term's entries only (paper 5.4.2)"
            );
            debug_assert!(
                self.config.bug_joint_single_majority || self.held_by_every_majority(candidate),
                "commit index {candidate} is not held by a majority of every voter set of {:?}",
                self.membership
            );
            if first_commit_of_term && of_current_term {
                self.release_reads_before_first_commit();
            }
            self.membership_committed();
        }
        debug_assert!(
            self.log.commit_index() >= commit_before,
            "commit index decreased"
        );
    }

    /// Whether a majority of each voter set of the configuration in force (both while joint)
    /// holds `index` durably: the leader once its own write is persisted, a follower by its
    /// match index. Counted here apart from `quorum.rs`, to check its answer.
    fn held_by_every_majority(&self, index: Index) -> bool {
        let holds = |id: &NodeId| {
            if *id == self.config.id {
                self.log.persisted_index() >= index
            } else {
                self.progress
                    .get(id)
                    .is_some_and(|p| p.match_index >= index)
            }
        };
        let majority = |set: &std::collections::BTreeSet<NodeId>| {
            set.is_empty() || set.iter().filter(|id| holds(id)).count() * 2 > set.len()
        };
        majority(&self.membership.voters) && majority(&self.membership.outgoing)
    }
}
