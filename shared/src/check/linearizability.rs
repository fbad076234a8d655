//! Linearizability checking of a key-value history.
//!
//! A history is linearizable if every operation can be given a single instant between its
//! invocation and its return such that, in instant order, the operations are a legal run of a
//! sequential key-value store. Keys are independent (linearizability is compositional, Herlihy
//! & Wing 1990), so each key is checked on its own, which keeps the search small.
//!
//! The search is Wing & Gong's (1993) with Lowe's (2017) memoization, as in Porcupine: walk the
//! time-ordered list of call and return events; try to linearize the earliest pending calls;
//! backtrack when a return is reached whose call was not linearized; remember every
//! (set of linearized operations, state) already explored.

use std::collections::{BTreeMap, HashSet};

use super::history::{Input, Operation, Output};

/// Search steps allowed per key before giving up as inconclusive.
const BUDGET_PER_KEY: u64 = 5_000_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinearizabilityReport {
    pub operations: usize,
    pub keys: usize,
    /// The first key with no linearization, and its operations in invocation order.
    pub violation: Option<(String, Vec<Operation>)>,
    /// Keys whose search ran out of budget (neither proven nor refuted).
    pub inconclusive: Vec<String>,
}

impl LinearizabilityReport {
    pub fn is_linearizable(&self) -> bool {
        self.violation.is_none()
    }
}

/// Checks a whole history, one key at a time.
pub fn check_history(ops: &[Operation]) -> LinearizabilityReport {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.input.key()).or_default().push(op);
    }
    let mut report =
        LinearizabilityReport { operations: ops.len(), keys: by_key.len(), ..Default::default() };
    for (key, ops) in by_key {
        match check_key(&ops) {
            KeyResult::Linearizable => {}
            KeyResult::Inconclusive => report.inconclusive.push(key.to_string()),
            KeyResult::Violation => {
                let mut ops: Vec<Operation> = ops.into_iter().cloned().collect();
                ops.sort_by_key(|o| o.invoke);
                report.violation = Some((key.to_string(), ops));
                break;
            }
        }
    }
    report
}

#[derive(Debug, PartialEq, Eq)]
enum KeyResult {
    Linearizable,
    Violation,
    Inconclusive,
}

type State = Option<String>;

/// The sequential specification: the state after `op` if `op` may happen in `state` with the
/// output it had, or `None` if it may not.
fn step(state: &State, input: &Input, output: &Output) -> Option<State> {
    match (input, output) {
        (Input::Put { value, .. }, _) => Some(Some(value.clone())),
        (Input::Delete { .. }, _) => Some(None),
        (Input::Get { .. }, Output::Value { value }) => (state == value).then(|| state.clone()),
        (Input::Get { .. }, _) => Some(state.clone()),
        (Input::Cas { expected, new, .. }, output) => {
            let matches = state == expected;
            match output {
                Output::Cas { swapped } if *swapped != matches => None,
                _ if matches => Some(Some(new.clone())),
                _ => Some(state.clone()),
            }
        }
    }
}

fn check_key(ops: &[&Operation]) -> KeyResult {
    let n = ops.len();
    // Events: (time, is_return, op). Calls sort before returns at the same time, which treats
    // touching operations as concurrent (the permissive reading).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke, false, i));
        events.push((op.complete.unwrap_or(u64::MAX), true, i));
    }
    events.sort();
    // A doubly linked list over the events, with head and tail sentinels, so that linearized
    // operations can be lifted out and put back in O(1) (dancing links).
    let len = events.len();
    debug_assert!(len > 0, "a key appears only with operations");
    let (head, tail) = (len, len + 1);
    let mut next: Vec<usize> = (0..len + 2).map(|i| i + 1).collect();
    let mut prev: Vec<usize> = (0..len + 2).map(|i| i.wrapping_sub(1)).collect();
    next[head] = 0;
    prev[0] = head;
    next[len - 1] = tail;
    prev[tail] = len - 1;
    let mut return_of = vec![0; n];
    for (pos, (_, is_return, op)) in events.iter().enumerate() {
        if *is_return {
            return_of[*op] = pos;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        let (p, q) = (prev[x], next[x]);
        next[p] = q;
        prev[q] = p;
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        let (p, q) = (prev[x], next[x]);
        next[p] = x;
        prev[q] = x;
    };

    let words = n.div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut calls: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut entry = next[head];
    let mut budget = BUDGET_PER_KEY;
    while next[head] != tail {
        budget -= 1;
        if budget == 0 {
            return KeyResult::Inconclusive;
        }
        let (_, is_return, op) = events[entry];
        if !is_return {
            if let Some(new_state) = step(&state, &ops[op].input, &ops[op].output) {
                linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((linearized.clone(), new_state.clone())) {
                    calls.push((entry, std::mem::replace(&mut state, new_state)));
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, return_of[op]);
                    entry = next[head];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = next[entry];
        } else {
            // This operation returned before any order of the pending calls worked: backtrack.
            let Some((call, previous)) = calls.pop() else { return KeyResult::Violation };
            let op = events[call].2;
            state = previous;
            linearized[op / 64] &= !(1 << (op % 64));
            relink(&mut next, &mut prev, return_of[op]);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    KeyResult::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, input: Input, invoke: u64, complete: Option<u64>, output: Output) -> Operation {
        Operation { client, input, invoke, complete, output }
    }
    fn put(v: &str) -> Input {
        Input::Put { key: "k".into(), value: v.into() }
    }
    fn get() -> Input {
        Input::Get { key: "k".into() }
    }
    fn val(v: Option<&str>) -> Output {
        Output::Value { value: v.map(String::from) }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert!(check_history(&[]).is_linearizable());
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [op(1, put("a"), 0, Some(1), Output::Ok), op(2, get(), 2, Some(3), val(Some("a")))];
        assert!(check_history(&h).is_linearizable());
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_rejected() {
        // put(a) completes, then put(b) completes, then a read returns a: impossible.
        let h = [
            op(1, put("a"), 0, Some(1), Output::Ok),
            op(1, put("b"), 2, Some(3), Output::Ok),
            op(2, get(), 4, Some(5), val(Some("a"))),
        ];
        let report = check_history(&h);
        assert!(!report.is_linearizable());
        assert_eq!(report.violation.unwrap().0, "k");
    }

    #[test]
    fn read_concurrent_with_write_may_see_either_value() {
        for seen in [Some("a"), Some("b")] {
            let h = [
                op(1, put("a"), 0, Some(1), Output::Ok),
                op(1, put("b"), 2, Some(6), Output::Ok),
                op(2, get(), 3, Some(5), val(seen)),
            ];
            assert!(check_history(&h).is_linearizable(), "{seen:?}");
        }
    }

    #[test]
    fn reads_must_not_go_back_in_time() {
        // During a long write, one read sees the new value and a later read the old one.
        let h = [
            op(1, put("a"), 0, Some(1), Output::Ok),
            op(1, put("b"), 2, Some(20), Output::Ok),
            op(2, get(), 3, Some(4), val(Some("b"))),
            op(3, get(), 5, Some(6), val(Some("a"))),
        ];
        assert!(!check_history(&h).is_linearizable());
    }

    #[test]
    fn unknown_write_may_or_may_not_happen() {
        let happened = [op(1, put("a"), 0, None, Output::Unknown), op(2, get(), 5, Some(6), val(Some("a")))];
        assert!(check_history(&happened).is_linearizable());
        let not_yet = [op(1, put("a"), 0, None, Output::Unknown), op(2, get(), 5, Some(6), val(None))];
        assert!(check_history(&not_yet).is_linearizable());
        // But it cannot happen before it was invoked.
        let before = [op(2, get(), 0, Some(1), val(Some("a"))), op(1, put("a"), 5, None, Output::Unknown)];
        assert!(!check_history(&before).is_linearizable());
    }

    #[test]
    fn write_applied_twice_is_caught_by_cas() {
        // cas(∅→a) reports failure, yet nobody else wrote "a": the retry's first application
        // must have swapped, which the reported failure contradicts.
        let cas = Input::Cas { key: "k".into(), expected: None, new: "a".into() };
        let h = [
            op(1, cas, 0, Some(5), Output::Cas { swapped: false }),
            op(2, get(), 6, Some(7), val(Some("a"))),
        ];
        assert!(!check_history(&h).is_linearizable());
    }

    #[test]
    fn cas_semantics() {
        let cas = |e: Option<&str>, n: &str| Input::Cas {
            key: "k".into(),
            expected: e.map(String::from),
            new: n.into(),
        };
        let h = [
            op(1, put("a"), 0, Some(1), Output::Ok),
            op(1, cas(Some("a"), "b"), 2, Some(3), Output::Cas { swapped: true }),
            op(1, cas(Some("a"), "c"), 4, Some(5), Output::Cas { swapped: false }),
            op(2, get(), 6, Some(7), val(Some("b"))),
        ];
        assert!(check_history(&h).is_linearizable());
        let wrong = [
            op(1, put("a"), 0, Some(1), Output::Ok),
            op(1, cas(Some("a"), "b"), 2, Some(3), Output::Cas { swapped: false }),
        ];
        assert!(!check_history(&wrong).is_linearizable());
    }

    #[test]
    fn keys_are_checked_independently() {
        let h = [
            op(1, Input::Put { key: "x".into(), value: "1".into() }, 0, Some(1), Output::Ok),
            op(1, Input::Get { key: "y".into() }, 2, Some(3), val(None)),
            op(1, Input::Delete { key: "x".into() }, 4, Some(5), Output::Ok),
            op(1, Input::Get { key: "x".into() }, 6, Some(7), val(None)),
        ];
        let report = check_history(&h);
        assert!(report.is_linearizable());
        assert_eq!(report.keys, 2);
    }

    #[test]
    fn many_concurrent_operations_stay_tractable() {
        // 8 clients each writing then reading their own value while all overlap: the memoized
        // search must not explode.
        let mut h = Vec::new();
        for c in 0..8u64 {
            h.push(op(c, put(&format!("v{c}")), c, Some(100 + c), Output::Ok));
        }
        h.push(op(9, get(), 200, Some(201), val(Some("v7"))));
        assert!(check_history(&h).is_linearizable());
    }
}
