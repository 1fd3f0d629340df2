//! A Wing–Gong linearizability checker (with Lowe's memoization), over a read/write register,
//! applied per key (a history of a map is linearizable iff each key's sub-history is, because
//! operations touch one key each: P-compositionality, Horn & Kroening 2015).
//!
//! Writes whose fate is unknown complete at "infinity": they may be linearized anywhere after
//! their invocation, including after everything else, which is the same as never taking effect.

use std::collections::{BTreeMap, HashSet};

use super::history::{History, OpKind};

/// Most search steps per key before giving up with [`Verdict::Unknown`].
pub const SEARCH_STEPS_MAX: u64 = 20_000_000;

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Linearizable,
    /// This key's history is not.
    NotLinearizable {
        /// The key.
        key: Vec<u8>,
    },
    /// The search budget ran out on these keys (every other key is linearizable).
    Unknown {
        /// The keys, in key order.
        keys: Vec<Vec<u8>>,
    },
}

/// One register operation, with values interned: 0 is "absent".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterOp {
    /// Invocation time.
    pub invoke: u64,
    /// Completion time; `u64::MAX` for a write whose fate is unknown.
    pub complete: u64,
    /// Write this value, or read and expect it.
    pub action: Action,
}

/// What a register operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set the register.
    Write(u32),
    /// Read the register and observe this value.
    Read(u32),
}

/// Checks a whole history, key by key (in key order), with [`SEARCH_STEPS_MAX`] steps per key.
pub fn check_history(history: &History) -> Verdict {
    check_history_within(history, SEARCH_STEPS_MAX)
}

/// Checks every key of a history with `steps_max` search steps per key. A key whose search runs
/// out of budget does not stop the check: the keys after it are checked too, so a violation on
/// any key is found and every undecided key is named.
pub fn check_history_within(history: &History, steps_max: u64) -> Verdict {
    let mut per_key: BTreeMap<&[u8], Vec<RegisterOp>> = BTreeMap::new();
    let mut values: BTreeMap<Option<Vec<u8>>, u32> = BTreeMap::new();
    values.insert(None, 0);
    let mut intern = |value: Option<&[u8]>| -> u32 {
        let next = values.len() as u32;
        *values.entry(value.map(<[u8]>::to_vec)).or_insert(next)
    };
    for op in &history.ops {
        let action = match &op.kind {
            OpKind::Write(value) => Action::Write(intern(value.as_deref())),
            OpKind::Read(Some(value)) => Action::Read(intern(value.as_deref())),
            OpKind::Read(None) => continue, // Never returned: no constraint.
        };
        let complete = match (op.complete, action) {
            (Some(at), _) => at,
            (None, Action::Write(_)) => u64::MAX,
            (None, Action::Read(_)) => continue,
        };
        per_key.entry(&op.key).or_default().push(RegisterOp {
            invoke: op.invoke,
            complete,
            action,
        });
    }
    let mut unknown = Vec::new();
    for (key, ops) in per_key {
        match check_register_within(&ops, steps_max) {
            Some(true) => {}
            Some(false) => return Verdict::NotLinearizable { key: key.to_vec() },
            None => unknown.push(key.to_vec()),
        }
    }
    if unknown.is_empty() {
        Verdict::Linearizable
    } else {
        Verdict::Unknown { keys: unknown }
    }
}

const NIL: usize = usize::MAX;

/// Whether a register history (initially 0) is linearizable; `None` if the budget ran out.
pub fn check_register(ops: &[RegisterOp]) -> Option<bool> {
    check_register_within(ops, SEARCH_STEPS_MAX)
}

/// [`check_register`] with a budget of `steps_max` search steps.
pub fn check_register_within(ops: &[RegisterOp], steps_max: u64) -> Option<bool> {
    // Events: 2k is the call of op k, 2k+1 its return. Sorted by time; a return at the same
    // time as a call never happens (the history clock is strictly increasing), and unknown
    // writes all return at u64::MAX, after everything.
    let n = ops.len();
    let mut order: Vec<usize> = (0..2 * n).collect();
    let time = |e: usize| {
        if e.is_multiple_of(2) {
            ops[e / 2].invoke
        } else {
            ops[e / 2].complete
        }
    };
    order.sort_by_key(|&e| (time(e), e));
    // A doubly linked list over the events, with a head sentinel at index 2n.
    let head = 2 * n;
    let mut next = vec![NIL; 2 * n + 1];
    let mut prev = vec![NIL; 2 * n + 1];
    let mut last = head;
    for &e in &order {
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        for e in [call, call + 1] {
            next[prev[e]] = next[e];
            if next[e] != NIL {
                prev[next[e]] = prev[e];
            }
        }
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        for e in [call + 1, call] {
            next[prev[e]] = e;
            if next[e] != NIL {
                prev[next[e]] = e;
            }
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut state = 0u32;
    let mut entry = next[head];
    let mut steps = 0u64;
    while next[head] != NIL {
        steps += 1;
        if steps > steps_max {
            return None;
        }
        if entry.is_multiple_of(2) {
            let k = entry / 2;
            let new_state = match ops[k].action {
                Action::Write(v) => Some(v),
                Action::Read(v) => (v == state).then_some(state),
            };
            if let Some(new_state) = new_state {
                linearized[k / 64] |= 1 << (k % 64);
                if cache.insert((linearized.clone(), new_state)) {
                    stack.push((entry, state));
                    state = new_state;
                    lift(&mut next, &mut prev, entry);
                    entry = next[head];
                    continue;
                }
                linearized[k / 64] &= !(1 << (k % 64));
            }
            entry = next[entry];
        } else {
            // A return whose call is not linearized yet: backtrack.
            let Some((call, old_state)) = stack.pop() else {
                return Some(false);
            };
            let k = call / 2;
            linearized[k / 64] &= !(1 << (k % 64));
            state = old_state;
            unlift(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(invoke: u64, complete: u64, v: u32) -> RegisterOp {
        RegisterOp {
            invoke,
            complete,
            action: Action::Write(v),
        }
    }
    fn r(invoke: u64, complete: u64, v: u32) -> RegisterOp {
        RegisterOp {
            invoke,
            complete,
            action: Action::Read(v),
        }
    }
    const NEVER: u64 = u64::MAX;

    #[test]
    fn sequential_history_is_linearizable() {
        assert_eq!(
            check_register(&[r(1, 2, 0), w(3, 4, 1), r(5, 6, 1), w(7, 8, 2), r(9, 10, 2)]),
            Some(true)
        );
    }

    #[test]
    fn stale_read_after_completed_write_is_not() {
        assert_eq!(check_register(&[w(1, 2, 1), r(3, 4, 0)]), Some(false));
        assert_eq!(
            check_register(&[w(1, 2, 1), w(3, 4, 2), r(5, 6, 1)]),
            Some(false)
        );
    }

    #[test]
    fn concurrent_operations_may_order_either_way() {
        // The read overlaps the write: it may see old or new.
        assert_eq!(check_register(&[w(1, 4, 1), r(2, 3, 0)]), Some(true));
        assert_eq!(check_register(&[w(1, 4, 1), r(2, 3, 1)]), Some(true));
        // Two overlapping writes, then reads that disagree on the winner: not linearizable.
        assert_eq!(
            check_register(&[w(1, 4, 1), w(2, 3, 2), r(5, 6, 1), r(7, 8, 2)]),
            Some(false)
        );
        assert_eq!(
            check_register(&[w(1, 4, 1), w(2, 3, 2), r(5, 6, 1), r(7, 8, 1)]),
            Some(true)
        );
    }

    #[test]
    fn reads_cannot_go_back_in_time() {
        // Read 2 then later read 1 while the writes overlap both reads: 1 then 2 then back to 1
        // would need write 1 twice.
        let ops = [w(1, 10, 1), w(2, 10, 2), r(3, 4, 2), r(5, 6, 1), r(7, 8, 2)];
        assert_eq!(check_register(&ops), Some(false));
    }

    #[test]
    fn unknown_writes_may_or_may_not_take_effect() {
        assert_eq!(
            check_register(&[w(1, NEVER, 1), r(2, 3, 0), r(4, 5, 1)]),
            Some(true)
        );
        assert_eq!(
            check_register(&[w(1, NEVER, 1), r(2, 3, 0), r(4, 5, 0)]),
            Some(true)
        );
        // Once seen, it cannot be unseen.
        assert_eq!(
            check_register(&[w(1, NEVER, 1), r(2, 3, 1), r(4, 5, 0)]),
            Some(false)
        );
        // A value nobody wrote.
        assert_eq!(check_register(&[w(1, NEVER, 1), r(2, 3, 7)]), Some(false));
    }

    #[test]
    fn history_is_checked_per_key() {
        let mut h = History::default();
        let a = h.invoke(1, b"a".to_vec(), OpKind::Write(Some(b"1".to_vec())));
        h.complete_write(a);
        let b = h.invoke(2, b"b".to_vec(), OpKind::Read(None));
        h.complete_read(b, None);
        let c = h.invoke(2, b"a".to_vec(), OpKind::Read(None));
        h.complete_read(c, Some(b"1".to_vec()));
        assert_eq!(check_history(&h), Verdict::Linearizable);
        let d = h.invoke(3, b"a".to_vec(), OpKind::Read(None));
        h.complete_read(d, None);
        assert_eq!(
            check_history(&h),
            Verdict::NotLinearizable { key: b"a".to_vec() }
        );
    }

    /// Sequential write 1, read 1, write 2, read 2 on `key`: four search steps at least.
    fn four_steps(h: &mut History, client: u64, key: &[u8]) {
        for value in [b"1", b"2"] {
            let w = h.invoke(client, key.to_vec(), OpKind::Write(Some(value.to_vec())));
            h.complete_write(w);
            let r = h.invoke(client, key.to_vec(), OpKind::Read(None));
            h.complete_read(r, Some(value.to_vec()));
        }
    }

    #[test]
    fn an_exhausted_budget_on_one_key_does_not_stop_the_others() {
        // Key "a" needs more search than the budget; key "b" holds a read of a value nobody
        // wrote, which the search rejects within the budget.
        let mut h = History::default();
        four_steps(&mut h, 1, b"a");
        let b = h.invoke(2, b"b".to_vec(), OpKind::Read(None));
        h.complete_read(b, Some(b"9".to_vec()));
        assert_eq!(
            check_history_within(&h, 2),
            Verdict::NotLinearizable { key: b"b".to_vec() },
            "the key after an undecided one is still checked"
        );
        let mut h = History::default();
        four_steps(&mut h, 1, b"a");
        four_steps(&mut h, 3, b"c");
        assert_eq!(
            check_history_within(&h, 2),
            Verdict::Unknown {
                keys: vec![b"a".to_vec(), b"c".to_vec()]
            },
            "every undecided key is named"
        );
        assert_eq!(check_history_within(&h, 1_000), Verdict::Linearizable);
    }

    #[test]
    fn many_concurrent_unknown_writes_stay_fast() {
        let mut ops = Vec::new();
        for k in 0..200u64 {
            ops.push(w(
                k * 10 + 1,
                if k % 3 == 0 { NEVER } else { k * 10 + 5 },
                k as u32 + 1,
            ));
            ops.push(r(k * 10 + 6, k * 10 + 8, k as u32 + 1));
        }
        assert_eq!(check_register(&ops), Some(true));
    }
}
