//! The driver of each simulated node, following the contract in [`crate::core::Output`]:
//! persist (snapshot, entries, hard state) through the simulated disk, send `messages` at once
//! and `messages_after_persist` once the write is durable, restore and apply to the key-value
//! store, serve reads, take snapshots, compact.

use bytes::Bytes;

use super::disk::DiskOp;
use super::net::Fate;
use super::{Event, Micros, Simulation};
use crate::core::{
    Entry, EntryKind, Envelope, Message, Output, RawNode, Role, Snapshot, SnapshotMeta,
};
use crate::kv::{ApplyResult, KvStore};

/// Most outputs drained after one input before the driver calls it a livelock.
const DRAIN_ROUNDS_MAX: usize = 64;

impl Simulation {
    /// Boots (or reboots) a node from its durable state.
    pub(super) fn start_node(&mut self, node: usize) {
        let id = self.nodes[node].id;
        let restored = self.nodes[node].disk.restored();
        let mut kv = KvStore::new();
        let mut applied_term = 0;
        if let Some(snapshot) = &restored.snapshot {
            if let Err(error) = kv.restore(&snapshot.data) {
                self.fail(
                    "driver_contract",
                    format!("node {id}: durable snapshot does not restore: {error}"),
                );
                return;
            }
            applied_term = snapshot.meta.last_included_term;
        }
        let (hard_state, entries_len) = (restored.hard_state, restored.entries.len());
        let served_snapshot = restored.snapshot.clone();
        let raft = match RawNode::new(self.node_config(id), restored) {
            Ok(raft) => raft,
            Err(error) => {
                self.fail(
                    "driver_contract",
                    format!("node {id}: config rejected: {error}"),
                );
                return;
            }
        };
        let slot = &mut self.nodes[node];
        slot.raft = Some(raft);
        slot.kv = kv;
        slot.applied_term = applied_term;
        slot.served_snapshot = served_snapshot;
        slot.commit_seen = slot.kv.applied_index();
        self.trace_line(format_args!(
            "n{id} start term={} vote={:?} snapshot@{} entries={entries_len}",
            hard_state.current_term,
            hard_state.voted_for,
            self.nodes[node].kv.applied_index()
        ));
        self.drain(node);
    }

    /// Stops a node: its volatile state is gone, pending writes are lost, the one in flight may
    /// be torn. It restarts after `downtime_us`.
    pub(super) fn crash_node(&mut self, node: usize, downtime_us: Micros) {
        let tear = self.config.faults.torn_write_probability;
        let slot = &mut self.nodes[node];
        if slot.raft.is_none() {
            return;
        }
        if let Some(raft) = slot.raft.take() {
            slot.votes_withheld_before += raft.votes_withheld();
            slot.transfer_elections_before += raft.transfer_elections();
        }
        slot.epoch += 1;
        slot.pending_reads.clear();
        let had_lost_write = slot.disk.has_lost_write();
        let torn = slot.disk.crash(&mut self.rng, tear);
        let id = slot.id;
        self.report.crashes += 1;
        if torn.is_some() {
            self.report.torn_writes += 1;
        }
        self.trace_line(format_args!(
            "n{id} CRASH torn={torn:?} restart in {}ms",
            downtime_us / 1000
        ));
        if had_lost_write {
            let slot = &mut self.nodes[node];
            slot.lost_upto = Some(slot.disk.acked_index());
            let last = slot.disk.entry_range().map_or(0, |(_, last)| last);
            self.trace_line(format_args!(
                "n{id} DISK lost write shows: durable log ends at {last}"
            ));
        } else if self.rng.chance(self.config.faults.disk_damage_probability)
            && self.disk_fault_allowed(node)
        {
            self.damage_disk(node);
        }
        self.queue
            .schedule(self.queue.now_us() + downtime_us, Event::Restart { node });
        self.clients_on_crash(node);
    }

    /// Damages durable entries of a crashed node: its last records, or from a record in the
    /// middle on.
    fn damage_disk(&mut self, node: usize) {
        let Some((first, last)) = self.nodes[node].disk.entry_range() else {
            return;
        };
        let len = last - first + 1;
        let tail = self.rng.chance(0.5);
        let from = if tail {
            last + 1 - (1 + self.rng.below(len.min(8)))
        } else {
            first + self.rng.below(len)
        };
        let slot = &mut self.nodes[node];
        let lost = slot.disk.lose_from(from);
        slot.lost_upto = Some(slot.disk.acked_index());
        let (id, acked) = (slot.id, slot.disk.acked_index());
        if tail {
            self.report.damaged_tails += 1;
        } else {
            self.report.damaged_middles += 1;
        }
        self.note_disk_fault();
        let place = if tail { "tail" } else { "middle" };
        self.trace_line(format_args!(
            "n{id} DISK damaged {place}: {lost} entries from {from} lost (acked {acked})"
        ));
    }

    pub(super) fn restart_node(&mut self, node: usize) {
        if self.nodes[node].raft.is_none() {
            self.report.restarts += 1;
            self.start_node(node);
        }
    }

    /// Drains the node's outputs until it has nothing more to say.
    pub(super) fn drain(&mut self, node: usize) {
        for _ in 0..DRAIN_ROUNDS_MAX {
            let Some(raft) = self.nodes[node].raft.as_mut() else {
                return;
            };
            let output = raft.take_output();
            if output.is_empty() {
                return;
            }
            self.handle_output(node, output);
            self.check_node(node);
        }
        let id = self.nodes[node].id;
        self.fail(
            "driver_contract",
            format!("node {id}: output never became empty after {DRAIN_ROUNDS_MAX} rounds"),
        );
    }

    fn handle_output(&mut self, node: usize, output: Output) {
        let id = self.nodes[node].id;
        let Output {
            soft_state,
            hard_state,
            snapshot,
            entries,
            messages,
            snapshot_chunks,
            messages_after_persist,
            committed_entries,
            read_states,
            reads_failed,
            snapshot_wanted,
            compact_upto,
        } = output;
        if let Some(soft) = soft_state {
            self.trace_line(format_args!(
                "n{id} {:?} term={} leader={:?}",
                soft.role, soft.term, soft.leader
            ));
            if soft.role == Role::Leader {
                self.report.elections += 1;
                self.on_leader(node, soft.term);
            }
        }
        if !entries.is_empty() {
            let raft = self.nodes[node].raft.as_ref().expect("running");
            if let Err((property, detail)) =
                self.checker.log_matching_appended(id, &entries, raft.log())
            {
                self.fail(property, detail);
            }
        }
        let last_written = entries.last().map(|e| (e.index, e.term)).or_else(|| {
            snapshot
                .as_ref()
                .map(|s| (s.meta.last_included_index, s.meta.last_included_term))
        });
        if hard_state.is_some()
            || snapshot.is_some()
            || !entries.is_empty()
            || !messages_after_persist.is_empty()
        {
            let op = DiskOp::Write {
                snapshot: snapshot.clone(),
                entries,
                hard_state,
                after_persist: messages_after_persist,
                last_written,
            };
            self.enqueue_disk(node, op);
        }
        for envelope in messages {
            self.send(envelope);
        }
        for chunk in snapshot_chunks {
            let served = self.nodes[node].served_snapshot.as_ref();
            // A chunk of a snapshot replaced meanwhile is not sent; the core resends.
            if let Some(envelope) = served.and_then(|s| chunk.read_from(id, s)) {
                self.send(envelope);
            }
        }
        if let Some(snapshot) = snapshot {
            self.serve_snapshot(node, &snapshot);
            self.install_snapshot(node, &snapshot);
        }
        for entry in committed_entries {
            self.apply(node, entry);
        }
        for (request_id, read_index) in read_states
            .into_iter()
            .map(|r| (r.request_id, r.read_index))
        {
            self.nodes[node]
                .pending_reads
                .push((request_id, read_index));
        }
        self.serve_reads(node);
        for request_id in reads_failed {
            self.client_read_failed(node, request_id);
        }
        if snapshot_wanted {
            self.take_snapshot(node);
        }
        if let Some(upto) = compact_upto {
            self.nodes[node].disk.compact(upto);
            self.trace_line(format_args!("n{id} compact upto {upto}"));
        }
    }

    /// Keeps `snapshot` to stream to followers if it is newer than the one kept, as the core
    /// keeps the newer of the two.
    fn serve_snapshot(&mut self, node: usize, snapshot: &Snapshot) {
        let slot = &mut self.nodes[node];
        let kept = slot
            .served_snapshot
            .as_ref()
            .map_or(0, |s| s.meta.last_included_index);
        if snapshot.meta.last_included_index > kept {
            slot.served_snapshot = Some(snapshot.clone());
        }
    }

    fn on_leader(&mut self, node: usize, term: u64) {
        let id = self.nodes[node].id;
        if let Err((property, detail)) = self.checker.election_safety(term, id) {
            self.fail(property, detail);
            return;
        }
        let raft = self.nodes[node].raft.as_ref().expect("running");
        let commit = raft.log().commit_index();
        if let Err((property, detail)) = self.checker.leader_completeness(id, term, raft.log()) {
            self.fail(property, detail);
        }
        let slot = &mut self.nodes[node];
        slot.acks = (term, Default::default());
        slot.leader_commit_checked = (term, commit);
    }

    /// Leader: records a follower's acknowledgement that its log matches through `index`.
    fn note_ack(&mut self, node: usize, from: crate::core::NodeId, term: u64, index: u64) {
        let slot = &mut self.nodes[node];
        if slot.acks.0 == term {
            let acked = slot.acks.1.entry(from).or_insert(0);
            *acked = (*acked).max(index);
        }
    }

    /// Leader: a commit index that moved must be held by a majority of every voter set of the
    /// configuration in force (both while joint), by the simulator's own count of the
    /// acknowledgements this leader received in its term (thesis 4.3).
    fn check_leader_commit(&mut self, node: usize) {
        let slot = &self.nodes[node];
        let Some(raft) = &slot.raft else { return };
        if raft.role() != Role::Leader {
            return;
        }
        let term = raft.hard_state().current_term;
        let commit = raft.log().commit_index();
        if slot.leader_commit_checked.0 != term || commit <= slot.leader_commit_checked.1 {
            return;
        }
        let membership = raft.membership().clone();
        let result = super::invariants::commit_quorum(
            slot.id,
            raft.log().persisted_index(),
            &slot.acks.1,
            &membership,
            commit,
        );
        self.nodes[node].leader_commit_checked.1 = commit;
        if membership.is_joint() {
            self.report.joint_commits += 1;
        }
        if let Err((property, detail)) = result {
            self.fail(property, detail);
        }
    }

    /// After each output: record what this node now knows committed.
    fn check_node(&mut self, node: usize) {
        self.check_leader_commit(node);
        let slot = &self.nodes[node];
        let Some(raft) = &slot.raft else { return };
        let commit = raft.log().commit_index();
        if commit > slot.commit_seen {
            let from = slot.commit_seen + 1;
            let result = self
                .checker
                .note_committed(slot.id, raft.log(), from, commit);
            self.nodes[node].commit_seen = commit;
            if let Err((property, detail)) = result {
                self.fail(property, detail);
            }
        }
    }

    fn enqueue_disk(&mut self, node: usize, op: DiskOp) {
        let leader = self.nodes[node]
            .raft
            .as_ref()
            .is_some_and(|r| r.role() == Role::Leader);
        let latency_us = if let (Some(slow_us), true) = (self.slow_leader_writes_us, leader) {
            slow_us
        } else if self.rng.chance(self.config.faults.slow_disk_probability) {
            2_000 + self.rng.below(28_000)
        } else {
            50 + self.rng.below(950)
        };
        let now_us = self.queue.now_us();
        let slot = &mut self.nodes[node];
        let at = slot.disk.enqueue(op, now_us, latency_us);
        let epoch = slot.epoch;
        self.queue.schedule(at, Event::DiskDone { node, epoch });
    }

    pub(super) fn disk_done(&mut self, node: usize, epoch: u64) {
        let now_us = self.queue.now_us();
        let slot = &mut self.nodes[node];
        if slot.epoch != epoch || slot.raft.is_none() {
            return;
        }
        let id = slot.id;
        let Some(done) = slot.disk.complete_due(now_us) else {
            return;
        };
        match done {
            Err(error) => self.fail("driver_contract", format!("node {id}: {}", error.0)),
            Ok(DiskOp::Write {
                after_persist,
                last_written,
                entries,
                ..
            }) => {
                if let Some(first) = entries.first() {
                    if self.rng.chance(self.config.faults.lost_write_probability)
                        && self.disk_fault_allowed(node)
                    {
                        let first = first.index;
                        self.nodes[node].disk.lose_write(first);
                        self.report.lost_writes += 1;
                        self.note_disk_fault();
                        self.trace_line(format_args!(
                            "n{id} DISK write of {first}..={} acknowledged, never persisted",
                            entries.last().map_or(first, |e| e.index)
                        ));
                    }
                }
                for envelope in after_persist {
                    self.send(envelope);
                }
                if let Some((index, term)) = last_written {
                    self.nodes[node]
                        .raft
                        .as_mut()
                        .expect("running")
                        .persisted(index, term);
                }
                self.drain(node);
            }
            Ok(DiskOp::LocalSnapshot(snapshot)) => {
                let index = snapshot.meta.last_included_index;
                self.trace_line(format_args!("n{id} snapshot@{index} durable"));
                self.serve_snapshot(node, &snapshot);
                self.nodes[node]
                    .raft
                    .as_mut()
                    .expect("running")
                    .snapshot_taken(snapshot);
                self.drain(node);
            }
        }
    }

    pub(super) fn send(&mut self, envelope: Envelope) {
        self.report.messages += 1;
        let now_us = self.queue.now_us();
        match self.net.send(&mut self.rng, now_us) {
            Fate::Dropped => self.report.drops += 1,
            Fate::Deliver(first, second) => {
                if let Some(second) = second {
                    self.report.duplicates += 1;
                    self.queue.schedule(
                        second,
                        Event::Deliver {
                            envelope: envelope.clone(),
                        },
                    );
                }
                self.queue.schedule(first, Event::Deliver { envelope });
            }
        }
    }

    pub(super) fn deliver(&mut self, envelope: Envelope) {
        if !self.net.arrive(envelope.from, envelope.to) {
            self.report.drops += 1;
            return;
        }
        let node = (envelope.to - 1) as usize;
        let Some(raft) = self.nodes[node].raft.as_mut() else {
            return;
        };
        self.trace.line(
            self.queue.now_us(),
            format_args!(
                "n{}->n{} {}",
                envelope.from,
                envelope.to,
                super::trace::describe(&envelope.message)
            ),
        );
        let ack = match envelope.message {
            Message::AppendEntriesResponse {
                term,
                success: true,
                match_index,
                ..
            } => Some((term, match_index)),
            Message::InstallSnapshotResponse {
                term,
                last_included_index,
                done: true,
                ..
            } => Some((term, last_included_index)),
            _ => None,
        };
        let from = envelope.from;
        raft.step(envelope);
        if let Some((term, index)) = ack {
            self.note_ack(node, from, term, index);
        }
        self.drain(node);
    }

    fn install_snapshot(&mut self, node: usize, snapshot: &Snapshot) {
        let id = self.nodes[node].id;
        let meta = snapshot.meta.clone();
        if let Err(error) = self.nodes[node].kv.restore(&snapshot.data) {
            self.fail(
                "driver_contract",
                format!("node {id}: snapshot from the leader does not restore: {error}"),
            );
            return;
        }
        if self.nodes[node].kv.applied_index() != meta.last_included_index {
            self.fail(
                "driver_contract",
                format!(
                    "node {id}: snapshot meta says index {} but its state machine is at {}",
                    meta.last_included_index,
                    self.nodes[node].kv.applied_index()
                ),
            );
        }
        self.nodes[node].applied_term = meta.last_included_term;
        self.report.snapshots_installed += 1;
        self.trace_line(format_args!(
            "n{id} install snapshot@{} t{}",
            meta.last_included_index, meta.last_included_term
        ));
    }

    fn apply(&mut self, node: usize, entry: Entry) {
        let id = self.nodes[node].id;
        let expected = self.nodes[node].kv.applied_index() + 1;
        if entry.index != expected {
            self.fail(
                "driver_contract",
                format!(
                    "node {id}: committed entry {} handed out, expected {expected}",
                    entry.index
                ),
            );
            return;
        }
        if let Err((property, detail)) = self.checker.state_machine_safety(id, &entry) {
            self.fail(property, detail);
        }
        self.nodes[node].applied_term = entry.term;
        match entry.kind {
            EntryKind::Noop | EntryKind::Config => self.nodes[node].kv.apply_empty(entry.index),
            EntryKind::Normal => {
                let result = self.nodes[node].kv.apply(entry.index, &entry.data);
                match result {
                    ApplyResult::Invalid(error) => self.fail(
                        "driver_contract",
                        format!(
                            "node {id}: committed entry {} is not a command: {error}",
                            entry.index
                        ),
                    ),
                    ApplyResult::Duplicate { .. } | ApplyResult::Stale { .. } => {
                        self.report.session_duplicates += 1
                    }
                    ApplyResult::Applied(_) => {}
                }
                self.clients_on_apply(node, &entry);
            }
        }
    }

    fn serve_reads(&mut self, node: usize) {
        let applied = self.nodes[node].kv.applied_index();
        let mut ready = Vec::new();
        self.nodes[node]
            .pending_reads
            .retain(|&(request_id, read_index)| {
                if read_index <= applied {
                    ready.push(request_id);
                    false
                } else {
                    true
                }
            });
        for request_id in ready {
            self.client_read_ready(node, request_id);
        }
    }

    fn take_snapshot(&mut self, node: usize) {
        let slot = &self.nodes[node];
        let index = slot.kv.applied_index();
        let term = slot.applied_term;
        let data = Bytes::from(slot.kv.snapshot());
        let id = slot.id;
        let membership = slot
            .raft
            .as_ref()
            .map(|r| r.membership_at(index))
            .unwrap_or_default();
        self.report.snapshots_taken += 1;
        self.trace_line(format_args!(
            "n{id} take snapshot@{index} t{term} ({} bytes)",
            data.len()
        ));
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_included_index: index,
                last_included_term: term,
                membership,
            },
            data,
        };
        self.enqueue_disk(node, DiskOp::LocalSnapshot(snapshot));
    }
}
