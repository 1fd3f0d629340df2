//! ReadIndex (thesis 6.4): linearizable reads confirmed by a heartbeat round, on the leader
//! and forwarded from followers.

use std::collections::BTreeMap;

use crate::core::message::{Envelope, Message};
use crate::core::output::{ReadError, ReadState};
use crate::core::types::{Index, NodeId, Role};
use crate::limits;

use super::RawNode;

/// Pending ReadIndex requests (thesis 6.4).
#[derive(Default)]
pub(super) struct ReadIndexState {
    /// Leader: the latest heartbeat round number.
    pub(super) round: u64,
    /// Leader: reads registered since the last round was broadcast.
    pub(super) unsent: Vec<PendingRead>,
    /// Leader: reads waiting for a quorum to acknowledge their round, oldest first.
    pub(super) waiting: Vec<(u64, PendingRead)>,
    /// Leader: highest round acknowledged by each peer.
    pub(super) acked_round: BTreeMap<NodeId, u64>,
    /// Leader: reads received before this term's first commit (the read index is not known yet).
    pub(super) before_first_commit: Vec<(NodeId, u64)>,
    /// Follower: reads forwarded to the leader, with their age in ticks.
    pub(super) forwarded: BTreeMap<u64, u32>,
}

#[derive(Clone, Copy)]
pub(super) struct PendingRead {
    /// The node whose client asked (this node for local reads).
    pub(super) origin: NodeId,
    pub(super) request_id: u64,
    pub(super) read_index: Index,
}

impl RawNode {
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

    pub(super) fn pending_read_count(&self) -> usize {
        self.reads.unsent.len() + self.reads.waiting.len() + self.reads.before_first_commit.len()
    }

    pub(super) fn leader_read_index(&mut self, origin: NodeId, request_id: u64) {
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

    pub(super) fn release_reads_before_first_commit(&mut self) {
        for (origin, request_id) in std::mem::take(&mut self.reads.before_first_commit) {
            self.leader_read_index(origin, request_id);
        }
    }

    pub(super) fn handle_read_index_request(&mut self, from: NodeId, request_id: u64) {
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
    pub(super) fn broadcast_read_round(&mut self) {
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

    pub(super) fn ack_read_round(&mut self, from: NodeId, round: u64) {
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

    pub(super) fn answer_read(&mut self, read: PendingRead) {
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

    pub(super) fn age_forwarded_reads(&mut self) {
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
    pub(super) fn fail_pending_reads(&mut self) {
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
