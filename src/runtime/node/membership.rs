//! The Raft loop's side of membership changes: the peers and the member table follow the
//! configuration in force, and clients' `member` requests become configuration changes.
//!
//! The core decides everything about a change (one at a time, joint consensus for voters, a
//! removed leader stepping down); this file only turns requests into `ConfChange`s after the
//! checks the core cannot make (addresses, a learner close enough to promote), and answers each
//! request once its change is complete: committed and, for a voter change, out of the joint
//! configuration.

use std::time::{Duration, Instant};

use super::{error, Driver};
use crate::core::{ConfChange, ConfChangeError, Index, Role};
use crate::limits;
use crate::runtime::members::{encode_context, parse_context};
use crate::runtime::server::ReplyTo;
use crate::wire::{
    ClientError, ClientResponse, MemberChange, MemberChangeKind, MemberInfo, MemberListing,
    MemberRole, Reply,
};

/// A membership change a client asked for, waiting to complete.
pub struct PendingChange {
    /// Index of its configuration entry.
    index: Index,
    request_id: u64,
    reply: ReplyTo,
    deadline: Instant,
    /// What was asked, for the answer's message.
    what: String,
}

impl Driver {
    /// Brings the peer connections and the member table in line with the core's configuration:
    /// connects to members added, drops members removed, and says so when this node is no
    /// longer a member.
    pub(super) fn follow_membership(&mut self) {
        let membership = self.node.membership().clone();
        let me = self.config.id;
        let leader = self.node.leader();
        let announced = self.members.announced_generation();
        if membership != self.membership_seen || announced != self.announced_seen {
            self.announced_seen = announced;
            for warning in self.members.follow(&membership) {
                eprintln!("ringraft: node {me}: {warning}");
            }
        }
        self.members.set_leader(leader);
        let mut table = if membership.is_empty() {
            // Waiting to be added: the leader's first AppendEntries needs an answer before this
            // node knows any configuration, so it connects to every node of `--members` and to
            // every node that announced its addresses when it connected (the leader among them).
            let mut table = self.members.announced();
            table.extend(self.config.members.iter().map(|m| (m.id, m.clone())));
            table
        } else {
            self.members.all()
        };
        // A leader being removed leads until C_new commits (thesis 4.2.2): the others keep
        // talking to it, or it could never learn that the change is complete.
        if let Some((id, member)) = leader
            .filter(|l| !table.contains_key(l))
            .and_then(|l| self.connected.get(&l).map(|m| (l, m.clone())))
        {
            table.insert(id, member);
        }
        // Dropping a queue ends its sender task; a member whose address changed gets a new one.
        let before = std::mem::take(&mut self.peers);
        for (id, queue) in before {
            let same = table
                .get(&id)
                .zip(self.connected.get(&id))
                .is_some_and(|(a, b)| a == b);
            if same {
                self.peers.insert(id, queue);
            }
        }
        for (id, member) in table.iter().filter(|(id, _)| **id != me) {
            if !self.peers.contains_key(id) {
                let queue = self.outbound.connect(*id, member.peer_addr.clone());
                self.peers.insert(*id, queue);
            }
        }
        self.counters.metrics.set_peers(self.peers.keys().copied());
        if membership != self.membership_seen {
            self.say_membership(&membership);
        }
        self.leader_seen = leader;
        self.connected = table;
        self.membership_seen = membership;
    }

    /// One line in the node's log for each change of this node's own place in the cluster.
    fn say_membership(&self, membership: &crate::core::Membership) {
        let me = self.config.id;
        let index = self.node.membership_index();
        let was = &self.membership_seen;
        if membership.is_empty() {
            eprintln!(
                "ringraft: node {me}: no configuration yet (started with --join): waiting for a \
                 leader to add it (it can answer the nodes of --members); it does not campaign"
            );
        } else if !membership.is_member(me) && (was.is_member(me) || was.is_empty()) {
            eprintln!(
                "ringraft: node {me}: REMOVED from the cluster's configuration (entry {index}): \
                 it takes no further part (no votes, no campaigns, peers refuse it); stop it"
            );
        } else if membership.is_joint()
            && membership.outgoing.contains(&me)
            && !membership.voters.contains(&me)
        {
            eprintln!(
                "ringraft: node {me}: being removed from the cluster (joint configuration, \
                 entry {index}); once that completes it takes no further part"
            );
        } else if membership.learners.contains(&me) && !was.learners.contains(&me) {
            eprintln!(
                "ringraft: node {me}: a learner (entry {index}): receives the log, does not vote"
            );
        } else if membership.voters.contains(&me) && !was.voters.contains(&me) && !was.is_empty() {
            eprintln!("ringraft: node {me}: a voter (entry {index})");
        }
    }

    /// What `ringraft member list` prints: this node's view of the configuration, with each
    /// member's match index when this node leads.
    pub(super) fn member_listing(&self) -> MemberListing {
        let membership = self.node.membership();
        let leading = self.node.role() == Role::Leader;
        let members = membership
            .members()
            .into_iter()
            .map(|id| {
                let role = if membership.learners.contains(&id) {
                    MemberRole::Learner
                } else if !membership.is_joint() {
                    MemberRole::Voter
                } else {
                    match (
                        membership.voters.contains(&id),
                        membership.outgoing.contains(&id),
                    ) {
                        (true, true) => MemberRole::Voter,
                        (true, false) => MemberRole::Joining,
                        _ => MemberRole::Leaving,
                    }
                };
                let addrs = self.members.get(id);
                let match_index = if id == self.config.id {
                    leading.then(|| self.node.log().last_index())
                } else if leading {
                    self.node.match_index(id)
                } else {
                    None
                };
                MemberInfo {
                    id,
                    role,
                    peer_addr: addrs.as_ref().map(|m| m.peer_addr.to_string()),
                    client_addr: addrs.as_ref().map(|m| m.client_addr.to_string()),
                    match_index,
                }
            })
            .collect();
        MemberListing {
            node_id: self.config.id,
            leader_id: self.node.leader(),
            last_log_index: self.node.log().last_index(),
            commit_index: self.node.log().commit_index(),
            configuration_index: self.node.membership_index(),
            members,
        }
    }

    /// `ringraft member add | promote | remove`: checks, proposes, and keeps the reply for
    /// [`Driver::check_member_change`].
    pub(super) fn handle_member_change(
        &mut self,
        request_id: u64,
        change: MemberChange,
        reply: ReplyTo,
    ) {
        match self.start_member_change(change) {
            Ok((index, what)) => {
                let deadline = Instant::now() + self.member_change_window();
                self.member_change = Some(PendingChange {
                    index,
                    request_id,
                    reply,
                    deadline,
                    what,
                });
            }
            Err(e) => reply.send(error(request_id, e)),
        }
    }

    /// A change waits for its entry to commit and, for a voter change, for the leader's C_new
    /// to commit too: at most a few rounds, but a slow or partitioned majority may take longer,
    /// so allow several election timeouts before telling the client to look for itself.
    fn member_change_window(&self) -> Duration {
        let ticks = u64::from(self.node.config().election_timeout_ticks);
        Duration::from_millis((4 * ticks * self.config.tick_ms).max(self.config.request_timeout_ms))
    }

    fn start_member_change(
        &mut self,
        change: MemberChange,
    ) -> Result<(Index, String), ClientError> {
        if self.node.role() != Role::Leader {
            return Err(self.not_leader(self.node.leader()));
        }
        if let Some(pending) = &self.member_change {
            return Err(refused(format!(
                "a membership change is in progress ({}, entry {}); retry once it completes",
                pending.what, pending.index
            )));
        }
        let id = change.id;
        let (conf_change, what) = match change.kind {
            MemberChangeKind::AddLearner => {
                let (peer, client) = parse_context(&change.context)
                    .map_err(|e| refused(format!("bad address for node {id}: {e}")))?;
                if let Some((other, _)) = self.members.all().into_iter().find(|(_, m)| {
                    [&m.peer_addr, &m.client_addr]
                        .iter()
                        .any(|a| **a == peer || **a == client)
                }) {
                    return Err(refused(format!(
                        "bad address for node {id}: {peer}/{client} is already used by member {other}"
                    )));
                }
                let context = encode_context(&peer, &client);
                let what = format!("add node {id} at {peer}/{client} as a learner");
                (ConfChange::AddLearner { id, context }, what)
            }
            MemberChangeKind::Promote => {
                let membership = self.node.membership();
                if membership.learners.contains(&id) {
                    self.check_caught_up(id)?;
                }
                (
                    ConfChange::Promote(id),
                    format!("promote node {id} to voter"),
                )
            }
            MemberChangeKind::Remove => (ConfChange::Remove(id), format!("remove node {id}")),
        };
        match self.node.propose_conf_change(conf_change) {
            Ok(index) => {
                eprintln!(
                    "ringraft: node {}: proposed to {what} (entry {index})",
                    self.config.id
                );
                Ok((index, what))
            }
            Err(ConfChangeError::NotLeader { leader }) => Err(self.not_leader(leader)),
            Err(e @ ConfChangeError::LeaderNotReady) => Err(ClientError::Internal {
                message: e.to_string(),
            }),
            Err(e) => Err(refused(format!("cannot {what}: {e}"))),
        }
    }

    /// A learner is promoted only once it holds the entry that added it (so it has answered
    /// the leader at all) and is within `limits::PROMOTE_LAG_ENTRIES_MAX` of the leader's log:
    /// a voter further behind would hold up commitment while it catches up.
    fn check_caught_up(&self, id: crate::core::NodeId) -> Result<(), ClientError> {
        let last_index = self.node.log().last_index();
        let added_at = self.node.membership_index();
        match self.node.match_index(id) {
            Some(m)
                if m >= added_at
                    && last_index.saturating_sub(m) <= limits::PROMOTE_LAG_ENTRIES_MAX =>
            {
                Ok(())
            }
            known => Err(refused(format!(
                "node {id} is not caught up: it holds the log up to {} of {last_index} (at most \
                 {} behind may be promoted); wait for it to catch up (ringraft member list \
                 shows its lag), then retry",
                known
                    .filter(|m| *m > 0)
                    .map_or("nothing yet".to_string(), |m| format!("index {m}")),
                limits::PROMOTE_LAG_ENTRIES_MAX
            ))),
        }
    }

    /// Answers the pending change once it is complete, once this node lost the leadership
    /// before that (the change may still complete: `member list` tells), or at its deadline.
    pub(super) fn check_member_change(&mut self) {
        let Some(pending) = &self.member_change else {
            return;
        };
        let commit_index = self.node.log().commit_index();
        let membership = self.node.membership();
        let complete = commit_index >= pending.index
            && !membership.is_joint()
            && self.node.membership_index() <= commit_index;
        let result = if complete {
            Ok(Reply::Done {
                log_index: self.node.membership_index(),
            })
        } else if self.node.role() != Role::Leader {
            Err(ClientError::Internal {
                message: format!(
                    "node {} lost the leadership before the change ({}, entry {}) completed \
                     (commit index {commit_index}, configuration at entry {}{}); it may still \
                     complete: check with `ringraft member list`",
                    self.config.id,
                    pending.what,
                    pending.index,
                    self.node.membership_index(),
                    if membership.is_joint() { ", joint" } else { "" }
                ),
            })
        } else if Instant::now() > pending.deadline {
            Err(ClientError::Internal {
                message: format!(
                    "the change ({}) did not complete within {} ms (is a majority of the voters \
                     up?); it may still complete: check with `ringraft member list`",
                    pending.what,
                    self.member_change_window().as_millis()
                ),
            })
        } else {
            return;
        };
        let pending = self.member_change.take().expect("checked");
        match &result {
            Ok(_) => eprintln!(
                "ringraft: node {}: membership change done: {}",
                self.config.id, pending.what
            ),
            Err(e) => eprintln!("ringraft: node {}: {e}", self.config.id),
        }
        pending.reply.send(ClientResponse {
            request_id: pending.request_id,
            result,
        });
    }
}

fn refused(message: String) -> ClientError {
    ClientError::Refused { message }
}
