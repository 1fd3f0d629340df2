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
    /// Boots (or reboots) a node from its durable state: every group it hosts.
    pub(super) fn start_node(&mut self, node: usize) {
        self.nodes[node].up = true;
        for group in 0..self.config.groups {
            self.start_replica(node, group);
        }
    }

    fn start_replica(&mut self, node: usize, group: usize) {
        let id = self.nodes[node].id;
        let restored = self.nodes[node].disk.store(group).restored();
        let mut kv = KvStore::new();
        let mut applied_term = 0;
        if let Some(snapshot) = &restored.snapshot {
            if let Err(error) = kv.restore(&snapshot.data) {
                self.fail(
                    group,
                    "driver_contract",
                    format!("node {id}: durable snapshot does not restore: {error}"),
                );
                return;
            }
            applied_term = snapshot.meta.last_included_term;
        }
        let (hard_state, entries_len) = (restored.hard_state, restored.entries.len());
        let served_snapshot = restored.snapshot.clone();
        let raft = match RawNode::new(self.node_config(id, group), restored) {
            Ok(raft) => raft,
            Err(error) => {
                self.fail(
                    group,
                    "driver_contract",
                    format!("node {id}: config rejected: {error}"),
                );
                return;
            }
        };
        let slot = self.replica_mut(node, group);
        slot.raft = Some(raft);
        slot.kv = kv;
        slot.applied_term = applied_term;
        slot.served_snapshot = served_snapshot;
        slot.commit_seen = slot.kv.applied_index();
        let tag = self.group_tag(group);
        self.trace_line(format_args!(
            "n{id} {tag}start term={} vote={:?} snapshot@{} entries={entries_len}",
            hard_state.current_term,
            hard_state.voted_for,
            self.replica(node, group).kv.applied_index()
        ));
        self.drain(node, group);
    }

    /// Stops a node, every group of it at once: their volatile state is gone, pending writes
    /// are lost, the one in flight may be torn. It restarts after `downtime_us`.
    pub(super) fn crash_node(&mut self, node: usize, downtime_us: Micros) {
        let tear = self.config.faults.torn_write_probability;
        let slot = &mut self.nodes[node];
        if !slot.up {
            return;
        }
        slot.up = false;
        for replica in &mut slot.replicas {
            if let Some(raft) = replica.raft.take() {
                replica.votes_withheld_before += raft.votes_withheld();
                replica.transfer_elections_before += raft.transfer_elections();
            }
            replica.pending_reads.clear();
        }
        slot.epoch += 1;
        let lost_writes: Vec<usize> = (0..self.config.groups)
            .filter(|&g| slot.disk.store(g).has_lost_write())
            .collect();
        let torn = slot.disk.crash(&mut self.rng, tear);
        let id = slot.id;
        self.report.crashes += 1;
        if torn.is_some() {
            self.report.torn_writes += 1;
        }
        // With one group the trace shows the survivors alone, as it always has.
        let torn_shown = match torn {
            Some((group, survivors)) if self.config.groups > 1 => {
                format!("Some(g{group}: {survivors})")
            }
            other => format!("{:?}", other.map(|(_, survivors)| survivors)),
        };
        self.trace_line(format_args!(
            "n{id} CRASH torn={torn_shown} restart in {}ms",
            downtime_us / 1000
        ));
        if !lost_writes.is_empty() {
            for group in lost_writes {
                let store = self.nodes[node].disk.store(group);
                let (acked, last) = (
                    store.acked_index(),
                    store.entry_range().map_or(0, |(_, last)| last),
                );
                self.replica_mut(node, group).lost_upto = Some(acked);
                let tag = self.group_tag(group);
                self.trace_line(format_args!(
                    "n{id} {tag}DISK lost write shows: durable log ends at {last}"
                ));
            }
        } else if self.rng.chance(self.config.faults.disk_damage_probability)
            && self.disk_fault_allowed(node)
        {
            let group = self.random_group();
            self.damage_disk(node, group);
        }
        self.queue
            .schedule(self.queue.now_us() + downtime_us, Event::Restart { node });
        self.clients_on_crash(node);
    }

    /// Damages durable entries of one group of a crashed node: its last records, or from a
    /// record in the middle on.
    fn damage_disk(&mut self, node: usize, group: usize) {
        let Some((first, last)) = self.nodes[node].disk.store(group).entry_range() else {
            return;
        };
        let len = last - first + 1;
        let tail = self.rng.chance(0.5);
        let from = if tail {
            last + 1 - (1 + self.rng.below(len.min(8)))
        } else {
            first + self.rng.below(len)
        };
        let id = self.nodes[node].id;
        let store = self.nodes[node].disk.store_mut(group);
        let lost = store.lose_from(from);
        let acked = store.acked_index();
        self.replica_mut(node, group).lost_upto = Some(acked);
        if tail {
            self.report.damaged_tails += 1;
        } else {
            self.report.damaged_middles += 1;
        }
        self.note_disk_fault();
        let place = if tail { "tail" } else { "middle" };
        let tag = self.group_tag(group);
        self.trace_line(format_args!(
            "n{id} {tag}DISK damaged {place}: {lost} entries from {from} lost (acked {acked})"
        ));
    }

    pub(super) fn restart_node(&mut self, node: usize) {
        if !self.nodes[node].up {
            self.report.restarts += 1;
            self.start_node(node);
        }
    }

    /// Drains the outputs of one group's core on the node until it has nothing more to say.
    pub(super) fn drain(&mut self, node: usize, group: usize) {
        for _ in 0..DRAIN_ROUNDS_MAX {
            let Some(raft) = self.replica_mut(node, group).raft.as_mut() else {
                return;
            };
            let output = raft.take_output();
            if output.is_empty() {
                return;
            }
            self.handle_output(node, group, output);
            self.check_node(node, group);
        }
        let id = self.nodes[node].id;
        self.fail(
            group,
            "driver_contract",
            format!("node {id}: output never became empty after {DRAIN_ROUNDS_MAX} rounds"),
        );
    }

    fn handle_output(&mut self, node: usize, group: usize, output: Output) {
        let id = self.nodes[node].id;
        let tag = self.group_tag(group);
        // A write also carries messages that only wait for earlier writes (a vote granted
        // again, with nothing new to save).
        let write_needed = output.needs_persist() || !output.messages_after_persist.is_empty();
        let last_written = output.last_written();
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
            // Freed here at once: simulated time does not run while the driver works.
            released: _,
        } = output;
        if let Some(soft) = soft_state {
            self.trace_line(format_args!(
                "n{id} {tag}{:?} term={} leader={:?}",
                soft.role, soft.term, soft.leader
            ));
            if soft.role == Role::Leader {
                self.report.elections += 1;
                self.on_leader(node, group, soft.term);
            }
        }
        if !entries.is_empty() {
            let raft = self.nodes[node].replicas[group]
                .raft
                .as_ref()
                .expect("running");
            if let Err((property, detail)) =
                self.checkers[group].log_matching_appended(id, &entries, raft.log())
            {
                self.fail(group, property, detail);
            }
        }
        if write_needed {
            let op = DiskOp::Write {
                snapshot: snapshot.clone(),
                entries,
                hard_state,
                after_persist: messages_after_persist,
                last_written,
            };
            self.enqueue_disk(node, group, op);
        }
        for envelope in messages {
            self.send(group, envelope);
        }
        for chunk in snapshot_chunks {
            let served = self.replica(node, group).served_snapshot.as_ref();
            // A chunk of a snapshot replaced meanwhile is not sent; the core resends.
            if let Some(envelope) = served.and_then(|s| chunk.read_from(id, s)) {
                self.send(group, envelope);
            }
        }
        if let Some(snapshot) = snapshot {
            self.serve_snapshot(node, group, &snapshot);
            self.install_snapshot(node, group, &snapshot);
        }
        for entry in committed_entries {
            self.apply(node, group, entry);
        }
        for (request_id, read_index) in read_states
            .into_iter()
            .map(|r| (r.request_id, r.read_index))
        {
            self.replica_mut(node, group)
                .pending_reads
                .push((request_id, read_index));
        }
        self.serve_reads(node, group);
        for request_id in reads_failed {
            self.client_read_failed(node, group, request_id);
        }
        if snapshot_wanted {
            self.take_snapshot(node, group);
        }
        if let Some(upto) = compact_upto {
            self.nodes[node].disk.store_mut(group).compact(upto);
            self.trace_line(format_args!("n{id} {tag}compact upto {upto}"));
        }
    }

    /// Keeps `snapshot` to stream to followers if it is newer than the one kept, as the core
    /// keeps the newer of the two.
    fn serve_snapshot(&mut self, node: usize, group: usize, snapshot: &Snapshot) {
        let slot = self.replica_mut(node, group);
        let kept = slot
            .served_snapshot
            .as_ref()
            .map_or(0, |s| s.meta.last_included_index);
        if snapshot.meta.last_included_index > kept {
            slot.served_snapshot = Some(snapshot.clone());
        }
    }

    fn on_leader(&mut self, node: usize, group: usize, term: u64) {
        let id = self.nodes[node].id;
        if let Err((property, detail)) = self.checkers[group].election_safety(term, id) {
            self.fail(group, property, detail);
            return;
        }
        let raft = self.raft(node, group).expect("running");
        let commit = raft.log().commit_index();
        if let Err((property, detail)) =
            self.checkers[group].leader_completeness(id, term, raft.log())
        {
            self.fail(group, property, detail);
        }
        let slot = self.replica_mut(node, group);
        slot.acks = (term, Default::default());
        slot.leader_commit_checked = (term, commit);
    }

    /// Leader: records a follower's acknowledgement that its log matches through `index`.
    fn note_ack(
        &mut self,
        node: usize,
        group: usize,
        from: crate::core::NodeId,
        term: u64,
        index: u64,
    ) {
        let slot = self.replica_mut(node, group);
        if slot.acks.0 == term {
            let acked = slot.acks.1.entry(from).or_insert(0);
            *acked = (*acked).max(index);
        }
    }

    /// Leader: a commit index that moved must be held by a majority of every voter set of the
    /// configuration in force (both while joint), by the simulator's own count of the
    /// acknowledgements this leader received in its term (thesis 4.3).
    fn check_leader_commit(&mut self, node: usize, group: usize) {
        let id = self.nodes[node].id;
        let slot = self.replica(node, group);
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
            id,
            raft.log().persisted_index(),
            &slot.acks.1,
            &membership,
            commit,
        );
        self.replica_mut(node, group).leader_commit_checked.1 = commit;
        if membership.is_joint() {
            self.report.joint_commits += 1;
        }
        if let Err((property, detail)) = result {
            self.fail(group, property, detail);
        }
    }

    /// After each output: record what this replica now knows committed.
    fn check_node(&mut self, node: usize, group: usize) {
        self.check_leader_commit(node, group);
        let id = self.nodes[node].id;
        let slot = &self.nodes[node].replicas[group];
        let Some(raft) = &slot.raft else { return };
        let commit = raft.log().commit_index();
        if commit > slot.commit_seen {
            let from = slot.commit_seen + 1;
            let result = self.checkers[group].note_committed(id, raft.log(), from, commit);
            self.replica_mut(node, group).commit_seen = commit;
            if let Err((property, detail)) = result {
                self.fail(group, property, detail);
            }
        }
    }

    /// Queues a write of `group` on the node's one disk, behind every group's earlier writes.
    fn enqueue_disk(&mut self, node: usize, group: usize, op: DiskOp) {
        let latency_us = if self.rng.chance(self.config.faults.slow_disk_probability) {
            2_000 + self.rng.below(28_000)
        } else {
            50 + self.rng.below(950)
        };
        let now_us = self.queue.now_us();
        let slot = &mut self.nodes[node];
        let at = slot.disk.enqueue(group, op, now_us, latency_us);
        let epoch = slot.epoch;
        self.queue.schedule(at, Event::DiskDone { node, epoch });
    }

    pub(super) fn disk_done(&mut self, node: usize, epoch: u64) {
        let now_us = self.queue.now_us();
        let slot = &mut self.nodes[node];
        if slot.epoch != epoch || !slot.up {
            return;
        }
        let id = slot.id;
        let Some((group, done)) = slot.disk.complete_due(now_us) else {
            return;
        };
        let tag = self.group_tag(group);
        match done {
            Err(error) => self.fail(group, "driver_contract", format!("node {id}: {}", error.0)),
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
                        self.nodes[node].disk.store_mut(group).lose_write(first);
                        self.report.lost_writes += 1;
                        self.note_disk_fault();
                        self.trace_line(format_args!(
                            "n{id} {tag}DISK write of {first}..={} acknowledged, never persisted",
                            entries.last().map_or(first, |e| e.index)
                        ));
                    }
                }
                for envelope in after_persist {
                    self.send(group, envelope);
                }
                if let Some((index, term)) = last_written {
                    self.replica_mut(node, group)
                        .raft
                        .as_mut()
                        .expect("running")
                        .persisted(index, term);
                }
                self.drain(node, group);
            }
            Ok(DiskOp::LocalSnapshot(snapshot)) => {
                let index = snapshot.meta.last_included_index;
                self.trace_line(format_args!("n{id} {tag}snapshot@{index} durable"));
                self.serve_snapshot(node, group, &snapshot);
                self.replica_mut(node, group)
                    .raft
                    .as_mut()
                    .expect("running")
                    .snapshot_taken(snapshot);
                self.drain(node, group);
            }
        }
    }

    /// Sends a message of `group` over the link its nodes' groups share.
    pub(super) fn send(&mut self, group: usize, envelope: Envelope) {
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
                            group,
                            envelope: envelope.clone(),
                        },
                    );
                }
                self.queue
                    .schedule(first, Event::Deliver { group, envelope });
            }
        }
    }

    pub(super) fn deliver(&mut self, group: usize, envelope: Envelope) {
        if !self.net.arrive(envelope.from, envelope.to) {
            self.report.drops += 1;
            return;
        }
        let node = (envelope.to - 1) as usize;
        let tag = self.group_tag(group);
        let Some(raft) = self.nodes[node].replicas[group].raft.as_mut() else {
            return;
        };
        self.trace.line(
            self.queue.now_us(),
            format_args!(
                "n{}->n{} {tag}{}",
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
            self.note_ack(node, group, from, term, index);
        }
        self.drain(node, group);
    }

    fn install_snapshot(&mut self, node: usize, group: usize, snapshot: &Snapshot) {
        let id = self.nodes[node].id;
        let meta = snapshot.meta.clone();
        if let Err(error) = self.replica_mut(node, group).kv.restore(&snapshot.data) {
            self.fail(
                group,
                "driver_contract",
                format!("node {id}: snapshot from the leader does not restore: {error}"),
            );
            return;
        }
        let applied = self.replica(node, group).kv.applied_index();
        if applied != meta.last_included_index {
            self.fail(
                group,
                "driver_contract",
                format!(
                    "node {id}: snapshot meta says index {} but its state machine is at {applied}",
                    meta.last_included_index,
                ),
            );
        }
        self.replica_mut(node, group).applied_term = meta.last_included_term;
        self.report.snapshots_installed += 1;
        let tag = self.group_tag(group);
        self.trace_line(format_args!(
            "n{id} {tag}install snapshot@{} t{}",
            meta.last_included_index, meta.last_included_term
        ));
    }

    fn apply(&mut self, node: usize, group: usize, entry: Entry) {
        let id = self.nodes[node].id;
        let expected = self.replica(node, group).kv.applied_index() + 1;
        if entry.index != expected {
            self.fail(
                group,
                "driver_contract",
                format!(
                    "node {id}: committed entry {} handed out, expected {expected}",
                    entry.index
                ),
            );
            return;
        }
        if let Err((property, detail)) = self.checkers[group].state_machine_safety(id, &entry) {
            self.fail(group, property, detail);
        }
        let replica = self.replica_mut(node, group);
        replica.applied_term = entry.term;
        match entry.kind {
            EntryKind::Noop | EntryKind::Config => replica.kv.apply_empty(entry.index),
            EntryKind::Normal => {
                let result = replica.kv.apply(entry.index, &entry.data);
                match result {
                    ApplyResult::Invalid(error) => self.fail(
                        group,
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
                self.clients_on_apply(node, group, &entry);
            }
        }
    }

    fn serve_reads(&mut self, node: usize, group: usize) {
        let applied = self.replica(node, group).kv.applied_index();
        let mut ready = Vec::new();
        self.replica_mut(node, group)
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
            self.client_read_ready(node, group, request_id);
        }
    }

    fn take_snapshot(&mut self, node: usize, group: usize) {
        let id = self.nodes[node].id;
        let tag = self.group_tag(group);
        let slot = self.replica(node, group);
        let index = slot.kv.applied_index();
        let term = slot.applied_term;
        let data = Bytes::from(slot.kv.snapshot());
        let membership = slot
            .raft
            .as_ref()
            .map(|r| r.membership_at(index))
            .unwrap_or_default();
        self.report.snapshots_taken += 1;
        self.trace_line(format_args!(
            "n{id} {tag}take snapshot@{index} t{term} ({} bytes)",
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
        self.enqueue_disk(node, group, DiskOp::LocalSnapshot(snapshot));
    }
}
