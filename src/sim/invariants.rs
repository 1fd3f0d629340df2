//! Raft's safety properties (paper Figure 3), one function each, checked as the run goes.
//!
//! The checker remembers what it has seen across the whole run (leaders per term, every
//! (index, term) appended anywhere, every entry seen committed, every entry applied), so a
//! property broken by nodes that never coexist is still caught.

use std::collections::{BTreeMap, HashMap};

use crate::core::{Entry, EntryKind, Index, Membership, NodeId, RaftLog, Term};

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
        EntryKind::Config => 3u8,
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

/// Commitment needs a majority of every voter set (thesis 4.3: of C_old *and* C_new while
/// joint): counted here from the leader's durable log and the acknowledgements the simulator
/// delivered to it in its term, independently of the core's own arithmetic.
pub fn commit_quorum(
    leader: NodeId,
    leader_persisted: Index,
    acks: &BTreeMap<NodeId, Index>,
    membership: &Membership,
    commit: Index,
) -> Result<(), (&'static str, String)> {
    let holds = |id: NodeId| {
        if id == leader {
            leader_persisted >= commit
        } else {
            acks.get(&id).is_some_and(|&a| a >= commit)
        }
    };
    let mut sets = vec![("C_new", &membership.voters)];
    if membership.is_joint() {
        sets.push(("C_old", &membership.outgoing));
    }
    for (name, set) in sets {
        let holders: Vec<NodeId> = set.iter().copied().filter(|&id| holds(id)).collect();
        if holders.len() * 2 <= set.len() {
            return Err((
                "joint_commitment",
                format!(
                    "leader n{leader} committed {commit} in configuration {membership:?}, but only {holders:?} of {name} {set:?} hold it"
                ),
            ));
        }
    }
    Ok(())
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

/// Each property is fed a state that breaks it and must fire under its own name; a checker that
/// never fires proves nothing.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::SnapshotMeta;

    fn entry(index: Index, term: Term, data: &'static [u8]) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: bytes::Bytes::from_static(data),
            record: None,
        }
    }

    /// A log of (term, data) entries from index 1.
    fn log(entries: &[(Term, &'static [u8])]) -> RaftLog {
        let entries = entries
            .iter()
            .enumerate()
            .map(|(i, &(term, data))| entry(i as Index + 1, term, data))
            .collect();
        RaftLog::restored(SnapshotMeta::default(), entries)
    }

    #[test]
    fn election_safety_fires_on_two_leaders_in_one_term() {
        let mut checker = Checker::default();
        assert!(checker.election_safety(3, 1).is_ok());
        assert!(
            checker.election_safety(3, 1).is_ok(),
            "the same leader again is fine"
        );
        assert!(
            checker.election_safety(4, 2).is_ok(),
            "another term, another leader"
        );
        let (property, detail) = checker.election_safety(3, 2).unwrap_err();
        assert_eq!(property, "election_safety");
        assert!(
            detail.contains("term 3 has two leaders: 1 and 2"),
            "{detail}"
        );
    }

    #[test]
    fn log_matching_fires_on_conflicting_entries_at_one_index_and_term() {
        // Incrementally: node 2 appends a different command at (2, term 1) than node 1 did.
        let mut checker = Checker::default();
        let a = log(&[(1, b"x"), (1, b"y")]);
        checker
            .log_matching_appended(1, &[a.entry(2).unwrap().clone()], &a)
            .unwrap();
        let b = log(&[(1, b"x"), (1, b"z")]);
        let (property, detail) = checker
            .log_matching_appended(2, &[b.entry(2).unwrap().clone()], &b)
            .unwrap_err();
        assert_eq!(property, "log_matching");
        assert!(detail.contains("entry (2, term 1) differs"), "{detail}");

        // The same (index, term) after a different previous term.
        let c = log(&[(2, b"x"), (1, b"y")]);
        let (property, detail) = checker
            .log_matching_appended(3, &[c.entry(2).unwrap().clone()], &c)
            .unwrap_err();
        assert_eq!(property, "log_matching");
        assert!(
            detail.contains("follows term 2, elsewhere term 1"),
            "{detail}"
        );

        // Directly: two logs agree at (3, term 2) but hold different entries at index 1.
        let d = log(&[(1, b"x"), (2, b"y"), (2, b"w")]);
        let e = log(&[(1, b"q"), (2, b"y"), (2, b"w")]);
        let same = log(&[(1, b"x"), (2, b"y"), (2, b"w")]);
        assert!(Checker::log_matching(&[(1, &d), (2, &same)]).is_ok());
        let (property, detail) = Checker::log_matching(&[(1, &d), (2, &e)]).unwrap_err();
        assert_eq!(property, "log_matching");
        assert!(
            detail.contains("agree at index 3 but differ at 1"),
            "{detail}"
        );
    }

    #[test]
    fn leader_completeness_fires_on_a_leader_missing_a_committed_entry() {
        let mut checker = Checker::default();
        let committed = log(&[(1, b"x"), (1, b"y")]);
        checker.note_committed(1, &committed, 1, 2).unwrap();
        // A leader of term 2 that holds index 2 from another term.
        let leader = log(&[(1, b"x"), (2, b"other")]);
        let (property, detail) = checker.leader_completeness(3, 2, &leader).unwrap_err();
        assert_eq!(property, "leader_completeness");
        assert!(
            detail.contains("leader 3 of term 2 holds Some(2) at index 2"),
            "{detail}"
        );
        // One that lacks it altogether.
        let short = log(&[(1, b"x")]);
        let (property, _) = checker.leader_completeness(3, 2, &short).unwrap_err();
        assert_eq!(property, "leader_completeness");
        assert!(checker.leader_completeness(1, 2, &committed).is_ok());
        // A committed index later committed at another term.
        let (property, detail) = checker.note_committed(2, &leader, 1, 2).unwrap_err();
        assert_eq!(property, "leader_completeness");
        assert!(detail.contains("committed index 2 at term 2"), "{detail}");
    }

    #[test]
    fn state_machine_safety_fires_on_different_entries_applied_at_one_index() {
        let mut checker = Checker::default();
        checker.state_machine_safety(1, &entry(5, 2, b"x")).unwrap();
        checker.state_machine_safety(2, &entry(5, 2, b"x")).unwrap();
        let (property, detail) = checker
            .state_machine_safety(3, &entry(5, 2, b"y"))
            .unwrap_err();
        assert_eq!(property, "state_machine_safety");
        assert!(
            detail.contains("node 3 applied a different entry at index 5"),
            "{detail}"
        );
    }
}
