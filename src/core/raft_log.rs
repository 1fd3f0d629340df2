//! The core's view of the log: the entries after the last snapshot, and the commit, applied and
//! persisted indexes. Pure bookkeeping; the durable copy is the driver's (`crate::log`).
//!
//! Invariant: `entries[k].index == snapshot.last_included_index + 1 + k`, and
//! `applied_index <= commit_index`.

use std::collections::VecDeque;

use super::quorum::Membership;
use super::types::{Entry, Index, SnapshotMeta, Term};

/// The in-memory log of one node.
#[derive(Debug, Default)]
pub struct RaftLog {
    snapshot: SnapshotMeta,
    entries: VecDeque<Entry>,
    commit_index: Index,
    applied_index: Index,
    persisted_index: Index,
    /// Lowest index appended or replaced since entries were last handed to the driver.
    unwritten_from: Option<Index>,
}

impl RaftLog {
    /// A log holding what the node had made durable.
    pub fn restored(snapshot: SnapshotMeta, entries: Vec<Entry>) -> RaftLog {
        for (expected, entry) in (snapshot.last_included_index + 1..).zip(&entries) {
            assert_eq!(
                entry.index, expected,
                "restored entries must follow the snapshot contiguously"
            );
        }
        let last = snapshot.last_included_index + entries.len() as u64;
        let snapshot_index = snapshot.last_included_index;
        RaftLog {
            snapshot,
            entries: entries.into(),
            commit_index: snapshot_index,
            applied_index: snapshot_index,
            persisted_index: last,
            unwritten_from: None,
        }
    }

    /// The snapshot the log starts after.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }
    /// Index of the first entry held in memory (one past the snapshot).
    pub fn first_index(&self) -> Index {
        self.snapshot.last_included_index + 1
    }
    /// Index of the last entry (the snapshot's index when the log is empty).
    pub fn last_index(&self) -> Index {
        self.snapshot.last_included_index + self.entries.len() as u64
    }
    /// Term of the last entry.
    pub fn last_term(&self) -> Term {
        self.entries
            .back()
            .map_or(self.snapshot.last_included_term, |e| e.term)
    }
    /// Highest index known committed.
    pub fn commit_index(&self) -> Index {
        self.commit_index
    }
    /// Highest index handed to the driver to apply.
    pub fn applied_index(&self) -> Index {
        self.applied_index
    }
    /// Highest index known durable on this node.
    pub fn persisted_index(&self) -> Index {
        self.persisted_index
    }

    /// The term of entry `index`, or `None` if it is compacted away (below the snapshot) or
    /// beyond the end.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.last_included_index {
            return Some(self.snapshot.last_included_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index < self.first_index() {
            return None;
        }
        self.entries.get((index - self.first_index()) as usize)
    }

    /// Entries from `from` on, at most `entries_max` of them and at most `bytes_max` bytes (but
    /// always at least one if any exists). `from` must be at or above `first_index`.
    pub fn entries_from(&self, from: Index, entries_max: usize, bytes_max: usize) -> Vec<Entry> {
        assert!(
            from >= self.first_index(),
            "entries_from({from}) below first index {}",
            self.first_index()
        );
        let skip = (from - self.first_index()) as usize;
        // Counted first so that the batch is allocated once, at its size: growing it entry by
        // entry cost the leader more than the clones themselves.
        let mut count = 0;
        let mut bytes = 0;
        for entry in self.entries.iter().skip(skip).take(entries_max) {
            bytes += entry.size_bytes();
            if count > 0 && bytes > bytes_max {
                break;
            }
            count += 1;
        }
        let mut out = Vec::with_capacity(count);
        out.extend(self.entries.iter().skip(skip).take(count).cloned());
        out
    }

    /// Whether a candidate's log with this last entry is at least as up-to-date as ours
    /// (paper section 5.4.1).
    pub fn is_up_to_date(&self, last_log_index: Index, last_log_term: Term) -> bool {
        last_log_term > self.last_term()
            || (last_log_term == self.last_term() && last_log_index >= self.last_index())
    }

    /// The leader's append of its own new entry.
    pub fn append(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "leader append must be contiguous"
        );
        self.mark_unwritten(entry.index);
        self.entries.push_back(entry);
    }

    /// A follower's append (paper Figure 2, AppendEntries steps 2-4): returns the index of the
    /// last new entry when `prev` matches, else `None`. Conflicting suffixes are replaced.
    pub fn try_append(
        &mut self,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
    ) -> Option<Index> {
        if self.term_at(prev_log_index) != Some(prev_log_term) {
            return None;
        }
        let last_new_index = prev_log_index + entries.len() as u64;
        for entry in entries {
            if entry.index < self.first_index() {
                continue; // Covered by our snapshot, so committed and identical.
            }
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    assert!(
                        entry.index > self.commit_index,
                        "conflict at {} at or below commit {}",
                        entry.index,
                        self.commit_index
                    );
                    self.truncate_from(entry.index);
                }
                None => {}
            }
            self.append(entry);
        }
        Some(last_new_index)
    }

    fn truncate_from(&mut self, index: Index) {
        let keep = (index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.persisted_index = self.persisted_index.min(index - 1);
        self.mark_unwritten(index);
    }

    fn mark_unwritten(&mut self, index: Index) {
        self.unwritten_from = Some(self.unwritten_from.map_or(index, |from| from.min(index)));
    }

    /// The first index of the run of entries with `term` that ends at `index` (for the fast
    /// backtracking hint), never below the first index held or the commit index + 1.
    pub fn first_index_of_term_at(&self, index: Index) -> Index {
        let Some(term) = self.term_at(index) else {
            return index;
        };
        let floor = self.first_index().max(self.commit_index + 1);
        let mut i = index;
        while i > floor && self.term_at(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// The last index at or below `index` whose term is `term`, if any is held.
    pub fn last_index_of_term(&self, term: Term, index: Index) -> Option<Index> {
        let mut i = index.min(self.last_index());
        loop {
            match self.term_at(i) {
                Some(t) if t == term => return Some(i),
                Some(t) if t < term => return None,
                Some(_) if i > self.snapshot.last_included_index => i -= 1,
                _ => return None,
            }
        }
    }

    /// Raises the commit index; never lowers it.
    pub fn commit_to(&mut self, index: Index) {
        if index > self.commit_index {
            assert!(
                index <= self.last_index(),
                "commit {index} beyond last index {}",
                self.last_index()
            );
            self.commit_index = index;
        }
    }

    /// Records that the driver made everything through (index, term) durable. Ignored when that
    /// entry has since been replaced (its write raced a truncation).
    pub fn persisted_to(&mut self, index: Index, term: Term) {
        if index > self.persisted_index
            && index <= self.last_index()
            && self.term_at(index) == Some(term)
        {
            self.persisted_index = index;
        }
    }

    /// Entries appended or replaced since the last call, for the driver to write.
    pub fn take_unwritten(&mut self) -> Vec<Entry> {
        match self.unwritten_from.take() {
            Some(from) if from <= self.last_index() => {
                self.entries_from(from.max(self.first_index()), usize::MAX, usize::MAX)
            }
            _ => Vec::new(),
        }
    }

    /// Committed entries not yet applied, at most `entries_max`; marks them applied.
    ///
    /// They need not be durable *here*: committed means durable on a majority, which is what an
    /// acknowledged write needs, so the leader may apply (and answer the client) as soon as two
    /// followers of three have synced, without waiting for its own fdatasync (thesis 10.2.1).
    /// Anything durable that depends on the applied state (a snapshot) is written through the
    /// same ordered disk queue, after the entries it covers.
    pub fn take_committed(&mut self, entries_max: usize) -> Vec<Entry> {
        let upto = self.commit_index;
        if upto <= self.applied_index {
            return Vec::new();
        }
        let count = ((upto - self.applied_index) as usize).min(entries_max);
        let out = self.entries_from(self.applied_index + 1, count, usize::MAX);
        self.applied_index += out.len() as u64;
        out
    }

    /// Discards entries through `index`, now covered by a snapshot taken at `index`, where
    /// `membership` was the configuration in force; returns them, for the driver to free (see
    /// [`super::output::Released`]).
    ///
    /// Takes time in the smaller of the two parts: with the usual snapshot thresholds the prefix
    /// is hundreds of thousands of entries and the part kept a few thousand, so the kept part
    /// moves to a new queue and the old one, prefix and all, is handed back whole.
    pub fn compact(&mut self, index: Index, membership: Membership) -> VecDeque<Entry> {
        assert!(
            index <= self.applied_index,
            "compact({index}) beyond applied {}",
            self.applied_index
        );
        if index <= self.snapshot.last_included_index {
            return VecDeque::new();
        }
        let term = self.term_at(index).expect("compact index is held");
        let drop = (index - self.snapshot.last_included_index) as usize;
        let released = if drop > self.entries.len() - drop {
            let kept = self.entries.split_off(drop);
            std::mem::replace(&mut self.entries, kept)
        } else {
            self.entries.drain(..drop).collect()
        };
        self.snapshot = SnapshotMeta {
            last_included_index: index,
            last_included_term: term,
            membership,
        };
        released
    }

    /// Replaces the whole log with a snapshot received from the leader (paper Figure 13 step 7).
    /// Returns the entries it replaced, for the driver to free.
    pub fn restore(&mut self, meta: SnapshotMeta) -> VecDeque<Entry> {
        let released = std::mem::take(&mut self.entries);
        let index = meta.last_included_index;
        self.snapshot = meta;
        self.commit_index = index;
        self.applied_index = index;
        self.persisted_index = index;
        self.unwritten_from = None;
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;

    /// A log of entries 1..=n in term 1, all committed and applied.
    fn applied_log(n: u64) -> RaftLog {
        let entries = (1..=n)
            .map(|index| Entry {
                term: 1,
                index,
                kind: EntryKind::Normal,
                data: bytes::Bytes::from(index.to_le_bytes().to_vec()),
                record: None,
            })
            .collect();
        let mut log = RaftLog::restored(SnapshotMeta::default(), entries);
        log.commit_to(n);
        assert_eq!(log.take_committed(usize::MAX).len() as u64, n);
        log
    }

    fn indexes(entries: impl IntoIterator<Item = Entry>) -> Vec<Index> {
        entries.into_iter().map(|e| e.index).collect()
    }

    #[test]
    fn compaction_hands_back_exactly_the_entries_it_drops() {
        // Most of the log dropped (the kept part moves), and a little of it (the prefix moves).
        for (n, upto) in [(100, 90), (100, 10), (100, 100), (100, 50)] {
            let mut log = applied_log(n);
            let released = log.compact(upto, Membership::default());
            assert_eq!(
                indexes(released),
                (1..=upto).collect::<Vec<_>>(),
                "{upto} of {n}"
            );
            assert_eq!((log.first_index(), log.last_index()), (upto + 1, n));
            assert_eq!(
                log.entry(upto + 1).map(|e| e.index),
                (upto < n).then_some(upto + 1)
            );
            assert_eq!(log.snapshot_meta().last_included_index, upto);
            // Compacting again at or below the snapshot lets nothing go.
            assert!(log.compact(upto, Membership::default()).is_empty());
        }
    }

    #[test]
    fn a_restored_snapshot_hands_back_the_whole_log() {
        let mut log = applied_log(20);
        let released = log.restore(SnapshotMeta {
            last_included_index: 50,
            last_included_term: 2,
            membership: Membership::default(),
        });
        assert_eq!(indexes(released), (1..=20).collect::<Vec<_>>());
        assert_eq!(log.last_index(), 50);
    }
}
