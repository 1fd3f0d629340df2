//! Membership: the configuration in force (the latest in the log), joint consensus
//! (thesis 4.3) and learners.

use bytes::Bytes;

use crate::core::message::Message;
use crate::core::progress::Progress;
use crate::core::quorum::{ConfChange, ConfChangeError, Membership};
use crate::core::types::{Entry, EntryKind, Index, Role, Term};

use super::RawNode;

impl RawNode {
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

    /// Leader: appends a configuration entry, in force from now on (thesis 4.1).
    pub(super) fn append_config(&mut self, next: Membership) -> Index {
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
    pub(super) fn membership_changed(&mut self) {
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

    /// After an append from the leader: drops configuration entries that a conflict replaced
    /// and records the new ones, so that `membership` is the log's latest (thesis 4.1: in
    /// force as soon as it is in the log, and the previous one again if it is truncated).
    pub(super) fn note_received_configs(&mut self, received: Vec<(Index, Term, Membership)>) {
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

    /// Leader, after its commit index moved: a committed joint configuration is followed by
    /// C_new; a committed configuration that leaves this node out ends its leadership
    /// (thesis 4.2.2: until then it manages the cluster without counting itself).
    pub(super) fn membership_committed(&mut self) {
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
                // Without our vote: we are no voter of C_new, so it would not count.
                let term = self.term();
                self.send(
                    to,
                    Message::TimeoutNow {
                        term,
                        vote: false,
                        last_index: self.log.last_index(),
                    },
                );
            }
            self.become_follower(self.term(), None);
        }
    }
}

/// The configuration entries among `entries`, decoded. An entry that does not decode is a
/// corrupt log or a peer bug; it is skipped rather than trusted (and the node keeps the
/// configuration it had).
pub(super) fn config_entries(entries: &[Entry]) -> Vec<(Index, Term, Membership)> {
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
