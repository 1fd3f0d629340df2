//! Closed-loop clients: each has one operation outstanding at a time, a put/delete with a unique
//! value (through a session, so retries apply once) or a linearizable read (ReadIndex, on the
//! node it believes leads or on a random follower). They record the history the linearizability
//! checker judges.
//!
//! A write is acknowledged only when the proposing node applies, at the index `propose`
//! returned, the very command proposed: a leader change may put another entry at that index.
//!
//! With several Raft groups, each operation goes to the group of its key
//! ([`crate::kv::group_of`]), and a client remembers a leader for each group.

use bytes::Bytes;

use super::history::OpKind;
use super::{Event, Micros, Phase, Simulation, TICK_US};
use crate::core::{Entry, ProposeError};
use crate::kv::{Command, Op};

/// How long a proposal may take before the client retries elsewhere.
const WRITE_ATTEMPT_TIMEOUT_US: Micros = 50 * TICK_US;
/// How long a client keeps retrying a write before recording it as indeterminate.
const WRITE_GIVE_UP_US: Micros = 300 * TICK_US;
/// How long a read may take before the client abandons it.
const READ_TIMEOUT_US: Micros = 100 * TICK_US;
/// Pause before retrying after a refusal.
const RETRY_US: Micros = TICK_US / 2;
/// Most think time between operations.
const THINK_US_MAX: Micros = 2 * TICK_US;

/// A write in progress.
pub(super) struct Write {
    history: usize,
    /// The group of its key.
    group: usize,
    data: Bytes,
    started_us: Micros,
    /// Where and when the current attempt was accepted: (node, index, node epoch).
    at: Option<(usize, u64, u64)>,
    deadline_us: Micros,
}

/// A read in progress.
pub(super) struct Read {
    history: usize,
    key: Vec<u8>,
    node: usize,
    group: usize,
    request_id: u64,
    deadline_us: Micros,
}

pub(super) enum ClientState {
    Idle,
    Writing(Write),
    Reading(Read),
}

/// One client.
pub(super) struct Client {
    id: u64,
    sequence: u64,
    /// The node it believes leads, for each group.
    target: Vec<usize>,
    state: ClientState,
    /// In the liveness phase: its last write is issued.
    final_write_issued: bool,
    /// In the liveness phase: done.
    pub(super) stopped: bool,
}

impl Client {
    pub(super) fn new(id: u64, nodes: usize, groups: usize) -> Client {
        Client {
            id,
            sequence: 0,
            target: (0..groups).map(|g| (id as usize + g) % nodes).collect(),
            state: ClientState::Idle,
            final_write_issued: false,
            stopped: false,
        }
    }

    pub(super) fn describe(&self) -> String {
        match &self.state {
            ClientState::Idle => format!("c{} idle stopped={}", self.id, self.stopped),
            ClientState::Writing(w) => {
                format!("c{} writing seq {} at {:?}", self.id, self.sequence, w.at)
            }
            ClientState::Reading(r) => format!(
                "c{} reading at node index {} group {} request {}",
                self.id, r.node, r.group, r.request_id
            ),
        }
    }
}

impl Simulation {
    fn wake_client(&mut self, client: usize, at_us: Micros) {
        self.queue.schedule(at_us, Event::ClientWake { client });
    }

    fn think_us(&mut self) -> Micros {
        self.rng.below(THINK_US_MAX)
    }

    pub(super) fn client_wake(&mut self, c: usize) {
        let now_us = self.queue.now_us();
        if self.clients[c].stopped {
            return;
        }
        match &mut self.clients[c].state {
            ClientState::Idle => self.start_operation(c),
            ClientState::Writing(w) => {
                if w.at.is_some() {
                    if now_us < w.deadline_us {
                        return; // Still waiting for the attempt; this wake is stale.
                    }
                    w.at = None;
                    let (n, group) = (self.nodes.len(), w.group);
                    let target = &mut self.clients[c].target[group];
                    *target = (*target + 1) % n;
                }
                let ClientState::Writing(w) = &self.clients[c].state else {
                    unreachable!()
                };
                if self.phase == Phase::Faulty && now_us - w.started_us >= WRITE_GIVE_UP_US {
                    // Fate unknown: the history keeps it open-ended.
                    let id = self.clients[c].id;
                    let seq = self.clients[c].sequence;
                    self.trace_line(format_args!("c{id} gives up seq {seq}"));
                    self.clients[c].state = ClientState::Idle;
                    let at = now_us + self.think_us();
                    self.wake_client(c, at);
                    return;
                }
                self.try_propose(c);
            }
            ClientState::Reading(r) => {
                if now_us >= r.deadline_us {
                    self.clients[c].state = ClientState::Idle;
                    let at = now_us + self.think_us();
                    self.wake_client(c, at);
                }
            }
        }
    }

    fn start_operation(&mut self, c: usize) {
        if self.phase == Phase::Liveness {
            if self.clients[c].final_write_issued {
                self.clients[c].stopped = true;
                return;
            }
            self.clients[c].final_write_issued = true;
            return self.start_write(c);
        }
        if self.rng.chance(0.6) {
            self.start_write(c)
        } else {
            self.start_read(c)
        }
    }

    fn random_key(&mut self) -> Vec<u8> {
        format!("k{}", self.rng.below(self.config.keys as u64)).into_bytes()
    }

    /// The group that owns `key`.
    fn group_of(&self, key: &[u8]) -> usize {
        crate::kv::group_of(key, self.config.groups as u32) as usize
    }

    fn start_write(&mut self, c: usize) {
        let key = self.random_key();
        let group = self.group_of(&key);
        let client = &mut self.clients[c];
        client.sequence += 1;
        let (id, sequence) = (client.id, client.sequence);
        let value = if self.rng.chance(0.05) {
            None
        } else {
            Some(format!("c{id}s{sequence}").into_bytes())
        };
        let op = match &value {
            Some(value) => Op::Put {
                key: key.clone(),
                value: value.clone(),
            },
            None => Op::Delete { key: key.clone() },
        };
        let data = Bytes::from(
            Command {
                client_id: id,
                sequence,
                op,
            }
            .encode(),
        );
        let history = self.history.invoke(id, key, OpKind::Write(value));
        let now_us = self.queue.now_us();
        self.clients[c].state = ClientState::Writing(Write {
            history,
            group,
            data,
            started_us: now_us,
            at: None,
            deadline_us: now_us,
        });
        self.try_propose(c);
    }

    fn try_propose(&mut self, c: usize) {
        let now_us = self.queue.now_us();
        let ClientState::Writing(w) = &self.clients[c].state else {
            return;
        };
        let (data, group) = (w.data.clone(), w.group);
        let node = self.clients[c].target[group];
        let n = self.nodes.len();
        let epoch = self.nodes[node].epoch;
        let tag = self.group_tag(group);
        let Some(raft) = self.nodes[node].replicas[group].raft.as_mut() else {
            self.clients[c].target[group] = (node + 1) % n;
            return self.wake_client(c, now_us + RETRY_US);
        };
        // A former leader that handed its vote over names the node taking over as the leader to
        // ask (the node's `NotLeader` with `handing_over`).
        let proposed = match (raft.propose(data), raft.handed_vote_to()) {
            (Err(ProposeError::NotLeader { leader: None }), Some(to)) => {
                Err(ProposeError::NotLeader { leader: Some(to) })
            }
            (proposed, _) => proposed,
        };
        match proposed {
            Ok(index) => {
                let deadline_us = now_us + WRITE_ATTEMPT_TIMEOUT_US;
                if let ClientState::Writing(w) = &mut self.clients[c].state {
                    w.at = Some((node, index, epoch));
                    w.deadline_us = deadline_us;
                }
                let (id, seq) = (self.clients[c].id, self.clients[c].sequence);
                self.trace_line(format_args!(
                    "c{id} propose seq {seq} at n{} {tag}-> index {index}",
                    node + 1
                ));
                self.wake_client(c, deadline_us);
                self.drain(node, group);
            }
            Err(ProposeError::NotLeader {
                leader: Some(leader),
            }) if leader as usize - 1 != node => {
                self.clients[c].target[group] = leader as usize - 1;
                self.wake_client(c, now_us + RETRY_US / 5);
            }
            Err(ProposeError::NotLeader { .. }) => {
                self.clients[c].target[group] = self.rng.below(n as u64) as usize;
                self.wake_client(c, now_us + RETRY_US);
            }
            Err(_) => self.wake_client(c, now_us + RETRY_US),
        }
    }

    fn start_read(&mut self, c: usize) {
        let now_us = self.queue.now_us();
        let key = self.random_key();
        let group = self.group_of(&key);
        let n = self.nodes.len();
        let node = if self.rng.chance(0.3) {
            self.rng.below(n as u64) as usize
        } else {
            self.clients[c].target[group]
        };
        let tag = self.group_tag(group);
        let Some(raft) = self.nodes[node].replicas[group].raft.as_mut() else {
            self.clients[c].target[group] = (node + 1) % n;
            return self.wake_client(c, now_us + RETRY_US);
        };
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        match raft.read_index(request_id) {
            Ok(()) => {
                let id = self.clients[c].id;
                let history = self.history.invoke(id, key.clone(), OpKind::Read(None));
                let deadline_us = now_us + READ_TIMEOUT_US;
                self.clients[c].state = ClientState::Reading(Read {
                    history,
                    key,
                    node,
                    group,
                    request_id,
                    deadline_us,
                });
                self.trace_line(format_args!(
                    "c{id} read {request_id} at {tag}n{}",
                    node + 1
                ));
                self.wake_client(c, deadline_us);
                self.drain(node, group);
            }
            Err(_) => {
                self.clients[c].target[group] = self.rng.below(n as u64) as usize;
                self.wake_client(c, now_us + RETRY_US);
            }
        }
    }

    /// A node applied `entry` of `group`: acknowledge the write waiting for exactly that
    /// entry there.
    pub(super) fn clients_on_apply(&mut self, node: usize, group: usize, entry: &Entry) {
        let now_us = self.queue.now_us();
        let epoch = self.nodes[node].epoch;
        let tag = self.group_tag(group);
        for c in 0..self.clients.len() {
            let ClientState::Writing(w) = &mut self.clients[c].state else {
                continue;
            };
            if w.group != group || w.at != Some((node, entry.index, epoch)) {
                continue;
            }
            if w.data == entry.data {
                let history = w.history;
                self.history.complete_write(history);
                self.clients[c].state = ClientState::Idle;
                let id = self.clients[c].id;
                self.trace_line(format_args!(
                    "c{id} write acked at n{} {tag}index {}",
                    node + 1,
                    entry.index
                ));
                let at = now_us + self.think_us();
                self.wake_client(c, at);
            } else {
                // Another leader's entry took that index: our attempt is lost; retry.
                w.at = None;
                self.wake_client(c, now_us);
            }
        }
    }

    /// A node crashed, every group of it: its clients' attempts there are lost.
    pub(super) fn clients_on_crash(&mut self, node: usize) {
        let now_us = self.queue.now_us();
        let n = self.nodes.len();
        for c in 0..self.clients.len() {
            let retry = match &mut self.clients[c].state {
                ClientState::Writing(w) if w.at.is_some_and(|(at, _, _)| at == node) => {
                    w.at = None;
                    Some(w.group)
                }
                ClientState::Reading(r) if r.node == node => {
                    let group = r.group;
                    self.clients[c].state = ClientState::Idle;
                    Some(group)
                }
                _ => None,
            };
            if let Some(group) = retry {
                self.clients[c].target[group] = (node + 1) % n;
                self.wake_client(c, now_us + RETRY_US);
            }
        }
    }

    /// A read's index is applied at `node`: answer it from the state machine.
    pub(super) fn client_read_ready(&mut self, node: usize, group: usize, request_id: u64) {
        let Some(c) = self.reader(node, group, request_id) else {
            return;
        };
        let ClientState::Reading(r) = &self.clients[c].state else {
            unreachable!()
        };
        let value = self.nodes[node].replicas[group]
            .kv
            .get(&r.key)
            .map(<[u8]>::to_vec);
        let history = r.history;
        let id = self.clients[c].id;
        let tag = self.group_tag(group);
        self.trace_line(format_args!(
            "c{id} read {request_id} at n{} {tag}= {:?}",
            node + 1,
            value.as_deref().map(String::from_utf8_lossy)
        ));
        self.history.complete_read(history, value);
        self.clients[c].state = ClientState::Idle;
        let at = self.queue.now_us() + self.think_us();
        self.wake_client(c, at);
    }

    /// A read could not be served: the client drops it (a failed read has no effect).
    pub(super) fn client_read_failed(&mut self, node: usize, group: usize, request_id: u64) {
        let Some(c) = self.reader(node, group, request_id) else {
            return;
        };
        self.clients[c].state = ClientState::Idle;
        let n = self.nodes.len() as u64;
        self.clients[c].target[group] = self.rng.below(n) as usize;
        let at = self.queue.now_us() + RETRY_US;
        self.wake_client(c, at);
    }

    fn reader(&self, node: usize, group: usize, request_id: u64) -> Option<usize> {
        self.clients.iter().position(|client| {
            matches!(&client.state, ClientState::Reading(r)
                if r.node == node && r.group == group && r.request_id == request_id)
        })
    }

    /// True when every client has finished (liveness phase).
    pub(super) fn clients_done(&self) -> bool {
        self.clients.iter().all(|c| c.stopped)
    }
}
