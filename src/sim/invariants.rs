//! Raft's safety properties (paper Figure 3), one function each, checked as the run goes.
//!
//! The checker remembers what it has seen across the whole run (leaders per term, every
//! (index, term) appended anywhere, every entry seen committed, every entry applied), so a
//! property broken by nodes that never coexist is still caught.

use std::collections::{BTreeMap, HashMap};

use crate::core::{Entry, EntryKind, Index, NodeId, RaftLog, Term};

/// A broken property: its name (after the paper) and what was seen.
pub type Broken = (&'static str, String);

/// What the checker remembers.
#[derive(Default)]
pub struct Checker {
    /// Term -> the leader seen in it.
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term) -> (content hash, term of the entry before it if known), for every entry
    /// ever handed out for persistence.
    appended: HashMap<(Index, Term), (u64, Option<Term>)>,
    /// Index -> term of every entry seen committed.
    committed: BTreeMap<Index, Term>,
    /// Index -> (node, content hash) of the first entry applied there.
    applied: HashMap<Index, (NodeId, u64)>,
}

/// A content hash of an entry (term, kind and data), FNV-1a.
pub fn entry_hash(entry: &Entry) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let kind = match entry.kind {
        EntryKind::Normal => 1u8,
        EntryKind::Noop => 2u8,
    };
    for byte in entry
        .term
        .to_le_bytes()
        .into_iter()
        .chain([kind])
        .chain(entry.data.iter().copied())
    {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Checker {
    /// Terms with a leader seen.
    pub fn leader_terms(&self) -> usize {
        self.leaders.len()
    }

    /// Highest index seen committed.
    pub fn commit_max(&self) -> Index {
        self.committed.last_key_value().map_or(0, |(&i, _)| i)
    }

    /// Election Safety: at most one leader can be elected in a given term.
    pub fn election_safety(&mut self, term: Term, leader: NodeId) -> Result<(), Broken> {
        match self.leaders.insert(term, leader) {
            Some(other) if other != leader => Err((
                "election_safety",
                format!("term {term} has two leaders: {other} and {leader}"),
            )),
            _ => Ok(()),
        }
    }

    /// Log Matching, incrementally: two entries with the same index and term hold the same
    /// command, and the entries before them have the same term. By induction that is the whole
    /// property (identical prefixes); `log_matching` checks the prefixes directly now and then.
    pub fn log_matching_appended(
        &mut self,
        node: NodeId,
        entries: &[Entry],
        log: &RaftLog,
    ) -> Result<(), Broken> {
        for entry in entries {
            let prev_term = log.term_at(entry.index - 1);
            let hash = entry_hash(entry);
            match self.appended.get(&(entry.index, entry.term)) {
                None => {
                    self.appended
                        .insert((entry.index, entry.term), (hash, prev_term));
                }
                Some(&(seen_hash, seen_prev)) => {
                    if seen_hash != hash {
                        return Err((
                            "log_matching",
                            format!(
                                "node {node}: entry ({}, term {}) differs from one seen before",
                                entry.index, entry.term
                            ),
                        ));
                    }
                    if let (Some(a), Some(b)) = (seen_prev, prev_term) {
                        if a != b {
                            return Err((
                                "log_matching",
                                format!(
                                    "node {node}: entry ({}, term {}) follows term {b}, elsewhere term {a}",
                                    entry.index, entry.term
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Log Matching, directly: if two logs contain an entry with the same index and term, the
    /// logs are identical in all entries up through that index (as far as both still hold them).
    pub fn log_matching(logs: &[(NodeId, &RaftLog)]) -> Result<(), Broken> {
        for (i, &(a, log_a)) in logs.iter().enumerate() {
            for &(b, log_b) in &logs[i + 1..] {
                let low = log_a.first_index().max(log_b.first_index());
                let high = log_a.last_index().min(log_b.last_index());
                // The highest index where both hold the same term; everything held below it
                // must match.
                let Some(top) = (low..=high)
                    .rev()
                    .find(|&k| log_a.term_at(k) == log_b.term_at(k))
                else {
                    continue;
                };
                for k in low..=top {
                    let (ea, eb) = (log_a.entry(k), log_b.entry(k));
                    if let (Some(ea), Some(eb)) = (ea, eb) {
                        if ea != eb {
                            return Err((
                                "log_matching",
                                format!("nodes {a} and {b} agree at index {top} but differ at {k}: {ea:?} vs {eb:?}"),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Records entries `from..=to` of `log` as committed (a node's commit index rose); a
    /// different term at an index already seen committed breaks Leader Completeness's premise
    /// (a committed entry was replaced).
    pub fn note_committed(
        &mut self,
        node: NodeId,
        log: &RaftLog,
        from: Index,
        to: Index,
    ) -> Result<(), Broken> {
        for index in from.max(log.first_index())..=to {
            let Some(term) = log.term_at(index) else {
                continue;
            };
            match self.committed.insert(index, term) {
                Some(seen) if seen != term => {
                    return Err((
                        "leader_completeness",
                        format!("node {node} committed index {index} at term {term}, but term {seen} was committed there before"),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Leader Completeness: a leader's log holds every entry committed before its term (unless
    /// its snapshot covers it).
    pub fn leader_completeness(
        &self,
        leader: NodeId,
        term: Term,
        log: &RaftLog,
    ) -> Result<(), Broken> {
        let covered = log.snapshot_meta().last_included_index;
        for (&index, &committed_term) in self.committed.range(covered + 1..) {
            if committed_term >= term {
                continue;
            }
            let held = log.term_at(index);
            if held != Some(committed_term) {
                return Err((
                    "leader_completeness",
                    format!(
                        "leader {leader} of term {term} holds {held:?} at index {index}, where term {committed_term} was committed"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// State Machine Safety: no two servers apply different entries at the same index.
    pub fn state_machine_safety(&mut self, node: NodeId, entry: &Entry) -> Result<(), Broken> {
        let hash = entry_hash(entry);
        match self.applied.get(&entry.index) {
            None => {
                self.applied.insert(entry.index, (node, hash));
                Ok(())
            }
            Some(&(first, seen)) if seen != hash => Err((
                "state_machine_safety",
                format!(
                    "node {node} applied a different entry at index {} (term {}) than node {first}",
                    entry.index, entry.term
                ),
            )),
            Some(_) => Ok(()),
        }
    }
}
