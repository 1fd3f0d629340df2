//! A node's simulated disk: a durable part (hard state, snapshot, entries) for each Raft group
//! the node hosts, and one queue of pending writes shared by every group, which complete in
//! order after a simulated latency (so a slow write of one group delays the others, as on one
//! real disk). A crash loses every write not yet complete and may tear the one in flight: a
//! prefix of its entries survives, which is safe because nothing in it was acknowledged.
//!
//! The disk can also break its promise, which Raft alone does not survive (see the core's "Lost
//! entries" rule): [`Disk::lose_from`] damages durable entries, and [`Disk::lose_write`] marks a
//! completed write as never persisted, lost (with everything after it) at the next crash.
//! Term, vote and `acked_index` are never damaged: they live in two CRC-checked slots apart
//! from the log.

use std::collections::VecDeque;

use super::clock::Micros;
use crate::core::{Entry, Envelope, HardState, Index, Restored, Snapshot, SplitMix64, Term};

/// What survives a crash.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    /// Term and vote.
    pub hard_state: HardState,
    /// The latest durable snapshot.
    pub snapshot: Option<Snapshot>,
    /// Durable entries, contiguous, all after the snapshot.
    pub entries: Vec<Entry>,
}

/// One queued disk operation.
pub enum DiskOp {
    /// An `Output`'s write: snapshot, then entries, then hard state.
    Write {
        /// A snapshot received from the leader.
        snapshot: Option<Snapshot>,
        /// Entries to append, replacing any stored suffix from the first one's index.
        entries: Vec<Entry>,
        /// Term and vote.
        hard_state: Option<HardState>,
        /// Messages to send once durable.
        after_persist: Vec<Envelope>,
        /// What to report to `RawNode::persisted` once durable.
        last_written: Option<(Index, Term)>,
    },
    /// A snapshot this node took of its own state machine; `snapshot_taken` follows completion.
    LocalSnapshot(Snapshot),
}

/// A driver-contract breach found while writing (the core asked for something impossible).
#[derive(Debug)]
pub struct ContractError(pub String);

/// One node's disk: a store per group behind one queue of pending operations.
pub struct Disk {
    stores: Vec<Store>,
    /// (completion time, group, operation), in completion order.
    pending: VecDeque<(Micros, usize, DiskOp)>,
    last_completion_us: Micros,
}

/// What one group keeps on a node's disk.
#[derive(Default)]
pub struct Store {
    /// What has been made durable.
    pub durable: Durable,
    /// First index of a completed write the disk never persisted: lost at the next crash.
    lost_from: Option<Index>,
}

impl Disk {
    /// An empty disk for a node hosting `groups` Raft groups.
    pub fn new(groups: usize) -> Disk {
        assert!(groups >= 1, "a node hosts at least one group");
        Disk {
            stores: (0..groups).map(|_| Store::default()).collect(),
            pending: VecDeque::new(),
            last_completion_us: 0,
        }
    }

    /// The durable state of `group`.
    pub fn store(&self, group: usize) -> &Store {
        &self.stores[group]
    }

    /// The durable state of `group`, to damage or compact it.
    pub fn store_mut(&mut self, group: usize) -> &mut Store {
        &mut self.stores[group]
    }

    /// Queues an operation of `group` that completes `latency_us` from now, but never before
    /// the one ahead of it, whichever group that one belongs to. Returns its completion time.
    pub fn enqueue(
        &mut self,
        group: usize,
        op: DiskOp,
        now_us: Micros,
        latency_us: Micros,
    ) -> Micros {
        let at = (now_us + latency_us).max(self.last_completion_us + 1);
        self.last_completion_us = at;
        self.pending.push_back((at, group, op));
        at
    }

    /// Writes queued and not complete, of every group.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Completes the oldest pending operation if it is due at `now_us`; returns its group too.
    pub fn complete_due(
        &mut self,
        now_us: Micros,
    ) -> Option<(usize, Result<DiskOp, ContractError>)> {
        if self.pending.front()?.0 > now_us {
            return None;
        }
        let (_, group, op) = self.pending.pop_front().expect("peeked");
        Some((group, self.stores[group].apply(&op, None).map(|()| op)))
    }

    /// Whether a lost write of any group waits for the next crash to show.
    pub fn has_lost_write(&self) -> bool {
        self.stores.iter().any(Store::has_lost_write)
    }

    /// Loses every pending write; tears the one in flight with probability `tear_probability`.
    /// Every group's lost write shows now. Returns the group and how many entries of a torn
    /// write survived, if one was torn.
    pub fn crash(&mut self, rng: &mut SplitMix64, tear_probability: f64) -> Option<(usize, usize)> {
        let first = self.pending.pop_front();
        self.pending.clear();
        self.last_completion_us = 0;
        let mut lost_write = false;
        for store in &mut self.stores {
            if let Some(from) = store.lost_from.take() {
                // The lost write and everything after it: what follows a hole is not trusted.
                store.lose_from(from);
                lost_write = true;
            }
        }
        if lost_write {
            return None;
        }
        let (_, group, op) = first?;
        let DiskOp::Write { entries, .. } = &op else {
            return None;
        };
        if entries.is_empty() || !rng.chance(tear_probability) {
            return None;
        }
        let survivors = rng.below(entries.len() as u64) as usize;
        self.stores[group]
            .apply(&op, Some(survivors))
            .expect("torn writes never fail");
        Some((group, survivors))
    }
}

impl Store {
    fn apply(&mut self, op: &DiskOp, torn_entries: Option<usize>) -> Result<(), ContractError> {
        match op {
            DiskOp::Write {
                snapshot,
                entries,
                hard_state,
                ..
            } => {
                if let Some(snapshot) = snapshot {
                    self.install_snapshot(snapshot.clone());
                    if self.last_index() <= snapshot.meta.last_included_index {
                        self.lost_from = None; // The log it was part of is gone anyway.
                    }
                }
                match torn_entries {
                    None => {
                        self.append(entries)?;
                        if let Some(hard_state) = hard_state {
                            self.durable.hard_state = *hard_state;
                        }
                    }
                    Some(survivors) => self.append_torn(&entries[..survivors]),
                }
            }
            DiskOp::LocalSnapshot(snapshot) => self.install_snapshot(snapshot.clone()),
        }
        Ok(())
    }

    /// A snapshot replaces the log it covers; entries after it survive only if the log agrees
    /// with it at its index.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.meta.clone();
        if self
            .durable
            .snapshot
            .as_ref()
            .is_some_and(|s| s.meta.last_included_index >= meta.last_included_index)
        {
            return;
        }
        let agrees = self
            .durable
            .entries
            .iter()
            .any(|e| e.index == meta.last_included_index && e.term == meta.last_included_term);
        if agrees {
            self.durable
                .entries
                .retain(|e| e.index > meta.last_included_index);
        } else {
            self.durable.entries.clear();
        }
        self.durable.snapshot = Some(snapshot);
    }

    fn snapshot_index(&self) -> Index {
        self.durable
            .snapshot
            .as_ref()
            .map_or(0, |s| s.meta.last_included_index)
    }

    fn last_index(&self) -> Index {
        self.durable
            .entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    /// The full write: truncate from the first new index, then append contiguously.
    fn append(&mut self, entries: &[Entry]) -> Result<(), ContractError> {
        let floor = self.snapshot_index();
        let entries: Vec<&Entry> = entries.iter().filter(|e| e.index > floor).collect();
        let Some(first) = entries.first() else {
            return Ok(());
        };
        self.durable.entries.retain(|e| e.index < first.index);
        if first.index != self.last_index() + 1 {
            return Err(ContractError(format!(
                "write of entries from {} leaves a gap after durable last index {}",
                first.index,
                self.last_index()
            )));
        }
        for (k, entry) in entries.iter().enumerate() {
            if entry.index != first.index + k as u64 {
                return Err(ContractError(format!(
                    "entries in one write are not contiguous at {}",
                    entry.index
                )));
            }
            self.durable.entries.push((*entry).clone());
        }
        Ok(())
    }

    /// A torn write: each surviving entry replaces a durable one only where they conflict,
    /// which is what the log on disk holds after a crash part way through.
    fn append_torn(&mut self, entries: &[Entry]) {
        for entry in entries {
            if entry.index <= self.snapshot_index() {
                continue;
            }
            if let Some(pos) = self
                .durable
                .entries
                .iter()
                .position(|e| e.index == entry.index)
            {
                if self.durable.entries[pos].term == entry.term {
                    continue;
                }
                self.durable.entries.truncate(pos);
            }
            if entry.index != self.last_index() + 1 {
                return; // Cannot happen for writes that were accepted whole; stop tearing here.
            }
            self.durable.entries.push(entry.clone());
        }
    }

    /// Damage: every durable entry from `from` on is gone (a damaged record, and the records
    /// after it that recovery cannot trust). Returns how many entries were lost.
    pub fn lose_from(&mut self, from: Index) -> usize {
        let before = self.durable.entries.len();
        self.durable.entries.retain(|e| e.index < from);
        before - self.durable.entries.len()
    }

    /// The entries of the write that just completed (from `first`) were never persisted,
    /// although the node was told they were.
    pub fn lose_write(&mut self, first: Index) {
        self.lost_from = Some(self.lost_from.map_or(first, |f| f.min(first)));
    }

    /// The durable `acked_index` (how far the node claimed its log durable).
    pub fn acked_index(&self) -> Index {
        self.durable.hard_state.acked_index
    }

    /// Whether the durable log ends below the durable `acked_index`: acknowledged entries lost.
    pub fn lost_acknowledged(&self) -> bool {
        self.last_index() < self.durable.hard_state.acked_index
    }

    /// Whether a lost write waits for the next crash to show.
    pub fn has_lost_write(&self) -> bool {
        self.lost_from.is_some()
    }

    /// Durable entries, as (first, last) indexes above the snapshot, if any.
    pub fn entry_range(&self) -> Option<(Index, Index)> {
        let first = self.durable.entries.first()?.index;
        Some((first, self.last_index()))
    }

    /// Drops durable entries through `upto`, when a durable snapshot covers them.
    pub fn compact(&mut self, upto: Index) {
        let upto = upto.min(self.snapshot_index());
        self.durable.entries.retain(|e| e.index > upto);
    }

    /// What a restarting node gets back.
    pub fn restored(&self) -> Restored {
        let floor = self.snapshot_index();
        Restored {
            hard_state: self.durable.hard_state,
            snapshot: self.durable.snapshot.clone(),
            entries: self
                .durable
                .entries
                .iter()
                .filter(|e| e.index > floor)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;
    use bytes::Bytes;

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: Bytes::new(),
            record: None,
        }
    }

    fn write(entries: Vec<Entry>) -> DiskOp {
        DiskOp::Write {
            snapshot: None,
            entries,
            hard_state: None,
            after_persist: vec![],
            last_written: None,
        }
    }

    #[test]
    fn writes_complete_in_order_and_truncate_conflicts() {
        let mut disk = Disk::new(1);
        disk.enqueue(0, write(vec![entry(1, 1), entry(2, 1), entry(3, 1)]), 0, 50);
        disk.enqueue(0, write(vec![entry(2, 2)]), 0, 10);
        assert!(
            disk.complete_due(10).is_none(),
            "the second write waits for the first"
        );
        assert!(disk.complete_due(50).unwrap().1.is_ok());
        assert!(disk.complete_due(51).unwrap().1.is_ok());
        let terms: Vec<_> = disk
            .store(0)
            .durable
            .entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        assert_eq!(terms, vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn groups_share_one_queue_and_a_crash_shows_every_lost_write() {
        let mut disk = Disk::new(2);
        let slow = disk.enqueue(0, write(vec![entry(1, 1)]), 0, 500);
        let quick = disk.enqueue(1, write(vec![entry(1, 1)]), 0, 10);
        assert!(quick > slow, "group 1's write waits behind group 0's");
        assert!(disk.complete_due(slow - 1).is_none());
        assert_eq!(
            disk.complete_due(slow).map(|(g, r)| (g, r.is_ok())),
            Some((0, true))
        );
        assert_eq!(
            disk.complete_due(quick).map(|(g, r)| (g, r.is_ok())),
            Some((1, true))
        );
        disk.enqueue(0, write(vec![entry(2, 1)]), quick, 1);
        disk.enqueue(1, write(vec![entry(2, 1)]), quick, 1);
        disk.complete_due(quick + 1).unwrap().1.unwrap();
        disk.complete_due(quick + 2).unwrap().1.unwrap();
        disk.store_mut(0).lose_write(2);
        disk.store_mut(1).lose_write(2);
        assert!(disk.has_lost_write());
        let mut rng = SplitMix64::new(1);
        assert_eq!(disk.crash(&mut rng, 1.0), None);
        for group in 0..2 {
            assert_eq!(
                disk.store(group).entry_range(),
                Some((1, 1)),
                "group {group}"
            );
        }
        assert!(!disk.has_lost_write());
    }

    #[test]
    fn gap_is_a_contract_error() {
        let mut disk = Disk::new(1);
        disk.enqueue(0, write(vec![entry(3, 1)]), 0, 1);
        assert!(disk.complete_due(1).unwrap().1.is_err());
    }

    #[test]
    fn crash_loses_pending_and_torn_write_keeps_a_prefix() {
        let mut disk = Disk::new(1);
        disk.enqueue(0, write(vec![entry(1, 1)]), 0, 1);
        disk.complete_due(1).unwrap().1.unwrap();
        disk.enqueue(0, write((2..=9).map(|i| entry(i, 1)).collect()), 1, 5);
        disk.enqueue(0, write(vec![entry(10, 1)]), 1, 5);
        let mut rng = SplitMix64::new(3);
        let (group, survivors) = disk.crash(&mut rng, 1.0).expect("torn");
        assert_eq!(group, 0);
        assert_eq!(disk.store(0).durable.entries.len(), 1 + survivors);
        assert!(survivors < 8);
        assert_eq!(disk.pending_len(), 0);
    }

    #[test]
    fn snapshot_then_compaction_restores_contiguously() {
        let mut disk = Disk::new(1);
        disk.enqueue(0, write((1..=5).map(|i| entry(i, 1)).collect()), 0, 1);
        let meta = crate::core::SnapshotMeta {
            last_included_index: 3,
            last_included_term: 1,
            membership: Default::default(),
        };
        disk.enqueue(
            0,
            DiskOp::LocalSnapshot(Snapshot {
                meta,
                data: Bytes::new(),
            }),
            0,
            1,
        );
        disk.complete_due(10).unwrap().1.unwrap();
        disk.complete_due(10).unwrap().1.unwrap();
        disk.store_mut(0).compact(3);
        let restored = disk.store(0).restored();
        assert_eq!(restored.snapshot.unwrap().meta.last_included_index, 3);
        assert_eq!(
            restored.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![4, 5]
        );
    }
}
