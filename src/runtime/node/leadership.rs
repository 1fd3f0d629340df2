//! Leadership hand-over (Raft thesis 3.10) on the Raft loop: transfers a client or the
//! leader spreading asks for, the graceful stop on SIGTERM, and the clients' writes meanwhile.
//!
//! The writes of a hand-over take the shortest path the protocol allows. The old leader holds
//! them while its transferee catches up (a leader in transfer proposes nothing, thesis 3.10),
//! and the moment it hands its vote over with the `TimeoutNow` it answers them `NotLeader`
//! naming the transferee, with `handing_over` set. The client retries there at once with
//! `await_leadership`, and the transferee holds those writes until it leads (then proposes them
//! with its first entries) or hears of another leader (then redirects them). So the clients'
//! writes wait at the new leader while the `TimeoutNow` travels, rather than the old leader
//! learning who leads half a round trip after the new leader started, and the clients arriving
//! after that.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{error, Driver};
use crate::core::{NodeId, Role, Term};
use crate::runtime::server::ReplyTo;
use crate::wire::{ClientError, ClientRequest, ClientResponse, Reply, Request};

/// Writes one leadership transfer holds back, at most; later ones are refused at once. The
/// same bound applies to the writes a transferee holds until it leads.
const TRANSFER_HELD_WRITES_MAX: usize = crate::limits::CLIENT_LINK_REQUESTS_MAX;

/// Bytes of keys, values and payloads a transferee holds until it leads, at most: past it, or
/// past [`TRANSFER_HELD_WRITES_MAX`] writes, it answers `Backpressure`.
const AWAITING_LEADERSHIP_BYTES_MAX: usize = 64 << 20;

/// Writes a leader handing over sent here (`await_leadership`), until this node leads.
#[derive(Default)]
pub(super) struct AwaitingLeadership {
    writes: VecDeque<AwaitingWrite>,
    bytes: usize,
}

impl AwaitingLeadership {
    /// How many writes wait.
    pub(super) fn len(&self) -> usize {
        self.writes.len()
    }
}

struct AwaitingWrite {
    request: ClientRequest,
    reply: ReplyTo,
    /// The term when it arrived. A leader of a later term that is not this node ends the wait:
    /// the hand-over went elsewhere.
    term: Term,
    deadline: Instant,
}

/// The bytes a held write keeps in memory (its key and value, or its payload).
fn held_bytes(request: &Request) -> usize {
    match request {
        Request::Put { key, value } => key.len() + value.len(),
        Request::Delete { key } => key.len(),
        Request::Propose { payload } => payload.len(),
        _ => 0,
    }
}

/// A leadership transfer this node started as leader (thesis 3.10), and who waits on it.
pub(super) struct PendingTransfer {
    pub(super) to: NodeId,
    /// The client that asked for it, if one did (SIGTERM starts one without a client).
    reply: Option<(u64, ReplyTo)>,
    started_at: Instant,
    /// Writes that arrived while the transferee caught up, which a leader must not propose
    /// (thesis 3.10). They are answered once the vote is handed over, naming the transferee
    /// (see the module doc), or when the transfer ends otherwise, naming the leader it ended
    /// with.
    held_writes: Vec<(u64, ReplyTo)>,
}

/// SIGTERM on a leader: it exits once it has heard, as a follower, that the new leader
/// committed a write after its no-op (or a short grace after the no-op, when no write comes),
/// or at `deadline`. Until then it still acknowledges: the writes it redirected to the new
/// leader commit with it, at its round trip, rather than wait on the farthest voter left.
pub(super) struct SteppingDown {
    led_term: Term,
    deadline: Instant,
    /// When the new leader's first commit (its no-op) was seen.
    noop_committed_at: Option<Instant>,
}

impl Driver {
    /// The longest a leader waits for a transfer, and for the new leader's first commit after
    /// SIGTERM: two election timeouts (the core itself aborts a transfer after one).
    pub(super) fn transfer_window(&self) -> Duration {
        let ticks = u64::from(self.node.config().election_timeout_ticks);
        Duration::from_millis(2 * ticks * self.config.tick_ms)
    }

    /// The voter that should lead this group when the node hosts several: voter (group mod
    /// voters) in id order, so that the groups' leaders are spread over the nodes.
    pub(super) fn preferred_leader(&self) -> Option<NodeId> {
        let voters: Vec<NodeId> = self.node.membership().all_voters().into_iter().collect();
        (!voters.is_empty()).then(|| voters[self.config.group as usize % voters.len()])
    }

    /// The first wait before a leader hands its group to the preferred voter: two election
    /// timeouts, time for a restarted preferred voter to connect and catch up.
    pub(super) fn spread_backoff_min(&self) -> Duration {
        self.transfer_window()
    }

    /// Leader spreading: a leader of a group whose preferred voter is another node hands
    /// leadership over once that voter holds every entry (no wait for a lagging one: the
    /// transfer would stall writes). Only toward the preferred voter, which itself never
    /// hands over for spreading, so leaders cannot ping-pong; each attempt doubles the wait
    /// before the next (up to 32 times the first), so a voter that keeps failing to take over
    /// costs a bounded number of transfers. With one group nothing changes.
    pub(super) fn check_spread(&mut self) {
        if self.config.groups <= 1
            || self.node.role() != Role::Leader
            || self.shutting_down
            || self.stepping_down.is_some()
            || self.transfer.is_some()
            || self.node.membership().is_joint()
        {
            return;
        }
        let Some(preferred) = self.preferred_leader() else {
            return;
        };
        let now = Instant::now();
        if preferred == self.config.id || now < self.spread_next_at {
            return;
        }
        let last_index = self.node.log().last_index();
        if self.node.match_index(preferred) != Some(last_index) {
            return;
        }
        if self.start_transfer(preferred).is_ok() {
            eprintln!(
                "ringraft: node {}: group {}: handing leadership to node {preferred}, the \
                 group's preferred leader",
                self.config.id, self.config.group
            );
            self.spread_next_at = now + self.spread_backoff;
            self.spread_backoff = (self.spread_backoff * 2).min(self.spread_backoff_min() * 32);
        }
    }

    /// Starts a transfer to `to`, or says why not.
    pub(super) fn start_transfer(&mut self, to: NodeId) -> Result<(), ClientError> {
        // First: a leader that handed its vote over has stepped down, and the transfer it
        // started is what a second request should hear about.
        if let Some(pending) = &self.transfer {
            return Err(ClientError::Refused {
                message: format!(
                    "a leadership transfer to node {} is already in progress; wait for it to \
                     finish, then ask again",
                    pending.to
                ),
            });
        }
        if self.node.role() != Role::Leader {
            return Err(self.not_leader(self.node.leader()));
        }
        let membership = self.node.membership();
        if !membership.is_member(to) {
            let members: Vec<String> = membership
                .members()
                .iter()
                .map(|id| id.to_string())
                .collect();
            return Err(ClientError::Refused {
                message: format!(
                    "unknown node id {to}: the members are {}",
                    members.join(", ")
                ),
            });
        }
        if !membership.is_voter(to) {
            return Err(ClientError::Refused {
                message: format!(
                    "node {to} is a learner: only a voter can lead (promote it first with \
                     `ringraft member promote`)"
                ),
            });
        }
        self.node.transfer_leader(to);
        self.transfer = Some(PendingTransfer {
            to,
            reply: None,
            started_at: Instant::now(),
            held_writes: Vec::new(),
        });
        Ok(())
    }

    pub(super) fn handle_transfer_request(&mut self, request_id: u64, to: NodeId, reply: ReplyTo) {
        if to == self.config.id && self.node.role() == Role::Leader && self.transfer.is_none() {
            return reply.send(ClientResponse {
                request_id,
                result: Ok(Reply::Done { log_index: 0 }),
            });
        }
        match self.start_transfer(to) {
            Ok(()) => {
                if let Some(pending) = &mut self.transfer {
                    pending.reply = Some((request_id, reply));
                }
            }
            Err(e) => reply.send(error(request_id, e)),
        }
    }

    /// Answers a finished transfer: done once this node no longer leads; failed once the core
    /// gave up (it aborts after an election timeout) or the window passed.
    pub(super) fn check_transfer(&mut self) {
        let has_held = self
            .transfer
            .as_ref()
            .is_some_and(|t| !t.held_writes.is_empty());
        if has_held && self.node.handed_vote_to().is_some() {
            // The TimeoutNow is on its way: send the held writes after it (see the module doc).
            let answer = self.not_leader(None);
            let held = self
                .transfer
                .as_mut()
                .map(|t| std::mem::take(&mut t.held_writes));
            for (request_id, reply) in held.into_iter().flatten() {
                reply.send(error(request_id, answer.clone()));
            }
        }
        let Some(pending) = &self.transfer else {
            return;
        };
        let result = if self.node.role() != Role::Leader {
            // Done only once the transferee is known to lead: a leader can also step down for
            // another reason meanwhile (it lost contact with a majority), and then someone
            // else may win the election that follows.
            let term = self.node.hard_state().current_term;
            match self.node.leader() {
                Some(leader) if leader == pending.to => Ok(Reply::Done { log_index: 0 }),
                Some(other) => Err(ClientError::Refused {
                    message: format!(
                        "leadership transfer to node {} failed: node {} stepped down and node \
                         {other} was elected in term {term}",
                        pending.to, self.config.id
                    ),
                }),
                None if pending.started_at.elapsed() > self.transfer_window() => {
                    Err(ClientError::Refused {
                        message: format!(
                            "leadership transfer to node {}: node {} stepped down, but no leader \
                             of term {term} was heard from within {} ms",
                            pending.to,
                            self.config.id,
                            pending.started_at.elapsed().as_millis()
                        ),
                    })
                }
                None => return,
            }
        } else if !self.node.transfer_in_progress()
            || pending.started_at.elapsed() > self.transfer_window()
        {
            Err(ClientError::Refused {
                message: format!(
                    "leadership transfer to node {} timed out after {} ms: node {} still leads \
                     term {} (is node {} running and caught up?)",
                    pending.to,
                    pending.started_at.elapsed().as_millis(),
                    self.config.id,
                    self.node.hard_state().current_term,
                    pending.to
                ),
            })
        } else {
            return;
        };
        let pending = self.transfer.take().expect("checked");
        if let Err(e) = &result {
            eprintln!("ringraft: node {}: {e}", self.config.id);
        }
        // The held writes go where the transfer ended: here if this node still leads.
        let leader = match self.node.role() {
            Role::Leader => Some(self.config.id),
            _ => self.node.leader(),
        };
        for (request_id, reply) in pending.held_writes {
            reply.send(error(request_id, self.not_leader(leader)));
        }
        if let Some((request_id, reply)) = pending.reply {
            reply.send(ClientResponse { request_id, result });
        }
    }

    /// SIGTERM. A leader of several nodes hands leadership to the follower with the highest
    /// match index (the one that needs the least to be sent, so it can campaign soonest) and
    /// exits once the new leader's first commit is known here: clients then wait about one
    /// round of messages instead of an election timeout. Anything else stops at once.
    pub(super) fn begin_shutdown(&mut self) {
        if self.shutting_down || self.stepping_down.is_some() {
            return;
        }
        let most_caught_up = self
            .peers
            .keys()
            .filter_map(|&peer| self.node.match_index(peer).map(|m| (m, peer)))
            .max_by_key(|&(match_index, peer)| (match_index, std::cmp::Reverse(peer)));
        let Some((_, to)) = most_caught_up.filter(|_| self.node.role() == Role::Leader) else {
            self.shutting_down = true;
            return;
        };
        let started = match &self.transfer {
            Some(_) => Ok(()), // A transfer asked for by a client is under way: wait for it.
            None => self.start_transfer(to),
        };
        if started.is_err() {
            self.shutting_down = true;
            return;
        }
        eprintln!(
            "ringraft: node {}: stopping; handing leadership to node {}",
            self.config.id,
            self.transfer.as_ref().map_or(to, |t| t.to)
        );
        self.stepping_down = Some(SteppingDown {
            led_term: self.node.hard_state().current_term,
            deadline: Instant::now() + self.transfer_window(),
            noop_committed_at: None,
        });
    }

    pub(super) fn check_stepping_down(&mut self) {
        let grace = Duration::from_millis(
            2 * u64::from(self.node.config().heartbeat_interval_ticks) * self.config.tick_ms,
        );
        let Some(stepping) = &mut self.stepping_down else {
            return;
        };
        let log = self.node.log();
        let term = self.node.hard_state().current_term;
        let commit = log.commit_index();
        let noop_committed = self.node.role() == Role::Follower
            && term > stepping.led_term
            && log.term_at(commit) == Some(term);
        if noop_committed && stepping.noop_committed_at.is_none() {
            stepping.noop_committed_at = Some(Instant::now());
        }
        let write_committed = noop_committed && log.first_index_of_term_at(commit) < commit;
        let new_leader_committed = write_committed
            || stepping
                .noop_committed_at
                .is_some_and(|at| at.elapsed() > grace);
        let gave_up = self.node.role() == Role::Leader && self.transfer.is_none();
        if new_leader_committed {
            eprintln!(
                "ringraft: node {}: node {:?} leads term {term} and has committed; exiting",
                self.config.id,
                self.node.leader()
            );
        } else if gave_up || Instant::now() > stepping.deadline {
            eprintln!(
                "ringraft: node {}: no new leader's commit seen in time; exiting anyway",
                self.config.id
            );
        } else {
            return;
        }
        self.stepping_down = None;
        self.shutting_down = true;
    }

    /// A write this node may not propose while it hands leadership over: a leader in transfer
    /// proposes nothing (thesis 3.10), and once it stepped down no leader may be known yet.
    /// Held until the vote is handed over or the transfer ends; the reply comes back when there
    /// is no transfer to hold it for, the vote is already handed over (the caller then names
    /// the transferee), or the bound is reached.
    pub(super) fn hold_during_transfer(
        &mut self,
        request_id: u64,
        reply: ReplyTo,
    ) -> Result<(), ReplyTo> {
        if self.node.handed_vote_to().is_some() {
            return Err(reply);
        }
        match &mut self.transfer {
            Some(t) if t.held_writes.len() < TRANSFER_HELD_WRITES_MAX => {
                t.held_writes.push((request_id, reply));
                Ok(())
            }
            _ => Err(reply),
        }
    }

    /// A write sent here by a leader handing leadership over, while this node does not lead:
    /// held until it does (see the module doc), within bounds.
    pub(super) fn await_leadership(&mut self, request: ClientRequest, reply: ReplyTo) {
        let bytes = held_bytes(&request.request);
        let term = self.node.hard_state().current_term;
        let deadline = Instant::now() + self.transfer_window();
        let held = &mut self.awaiting_leadership;
        if held.writes.len() >= TRANSFER_HELD_WRITES_MAX
            || held.bytes + bytes > AWAITING_LEADERSHIP_BYTES_MAX
        {
            return reply.send(error(request.request_id, ClientError::Backpressure));
        }
        held.bytes += bytes;
        held.writes.push_back(AwaitingWrite {
            request,
            reply,
            term,
            deadline,
        });
    }

    /// Proposes the held writes once this node leads (called before the core's output is
    /// taken, so they leave with the new leader's first entries); redirects those whose wait
    /// is over: another node leads a later term, or the transfer window passed.
    pub(super) fn release_awaiting_leadership(&mut self) {
        if self.awaiting_leadership.writes.is_empty() {
            return;
        }
        if self.node.role() == Role::Leader {
            let held = std::mem::take(&mut self.awaiting_leadership);
            for write in held.writes {
                self.handle_client(write.request, write.reply);
            }
            return;
        }
        // Writes arrive in order of term and of deadline, so those whose wait is over come
        // first.
        let now = Instant::now();
        let term = self.node.hard_state().current_term;
        let leader = self.node.leader();
        let over = |write: &AwaitingWrite| {
            (leader.is_some() && term > write.term) || now >= write.deadline
        };
        if !self.awaiting_leadership.writes.front().is_some_and(over) {
            return;
        }
        let answer = self.not_leader(leader);
        let held = &mut self.awaiting_leadership;
        while let Some(write) = held.writes.pop_front() {
            if !over(&write) {
                held.writes.push_front(write);
                break;
            }
            held.bytes -= held_bytes(&write.request.request);
            write
                .reply
                .send(error(write.request.request_id, answer.clone()));
        }
    }
}
