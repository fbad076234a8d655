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
    /// The first key found with no linearization.
    pub violation: Option<KeyViolation>,
    /// Keys whose search ran out of budget (neither proven nor refuted).
    pub inconclusive: Vec<String>,
}

/// Why one key's operations have no linearization, and the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyViolation {
    pub key: String,
    pub reason: String,
    /// The operations around the point where every order failed, in invocation order.
    pub near: Vec<Operation>,
    /// How many operations the key has in all.
    pub operations: usize,
}

/// What a check concluded. A search that ran out of budget proves nothing either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    Unknown,
}

impl LinearizabilityReport {
    pub fn verdict(&self) -> Verdict {
        if self.violation.is_some() {
            Verdict::NotLinearizable
        } else if !self.inconclusive.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Linearizable
        }
    }

    /// Proven linearizable: no violation and no key left undecided.
    pub fn is_linearizable(&self) -> bool {
        self.verdict() == Verdict::Linearizable
    }
}

/// Checks a whole history, one key at a time.
pub fn check_history(ops: &[Operation]) -> LinearizabilityReport {
    check_with_budget(ops, BUDGET_PER_KEY)
}

fn check_with_budget(ops: &[Operation], budget: u64) -> LinearizabilityReport {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.is_checked()) {
        by_key.entry(op.input.key()).or_default().push(op);
    }
    let mut report =
        LinearizabilityReport { operations: ops.len(), keys: by_key.len(), ..Default::default() };
    for (key, mut ops) in by_key {
        ops.sort_by_key(|o| o.invoke);
        drop_unobserved_unknown_writes(&mut ops);
        if ops.is_empty() {
            continue;
        }
        let failure = match impossible_read(&ops) {
            Some(failure) => Some(failure),
            None => match check_key(&ops, budget) {
                KeyResult::Linearizable => None,
                KeyResult::Inconclusive => {
                    report.inconclusive.push(key.to_string());
                    None
                }
                KeyResult::Violation { stuck } => {
                    let reason = format!(
                        "no order of its operations is legal: every one fails by the return of {}",
                        ops[stuck]
                    );
                    Some((reason, stuck))
                }
            },
        };
        if let Some((reason, at)) = failure {
            let near = near(&ops, at).into_iter().cloned().collect();
            report.violation =
                Some(KeyViolation { key: key.to_string(), reason, near, operations: ops.len() });
            break;
        }
    }
    report
}

/// Leaves out writes of unknown outcome (puts and compare-and-swaps that were never answered)
/// whose value no operation ever observed: such a write can always be placed after every other
/// operation, where it changes nothing anyone saw, so the history is linearizable with it if
/// and only if it is without it. (Not on keys with answers that reveal only that *some* value
/// was there — a delete that found one, a failed compare-and-swap that did not say what it
/// found — which such a write could be what explains.) Runs with many unanswered writes, as
/// long unavailability leaves, are then decided instead of running out of budget.
fn drop_unobserved_unknown_writes(ops: &mut Vec<&Operation>) {
    let vague = ops
        .iter()
        .any(|op| matches!(op.output, Output::Delete { existed: true } | Output::Cas { current: None, .. }));
    if vague {
        return;
    }
    let mut observed: HashSet<&str> = HashSet::new();
    for op in ops.iter() {
        match (&op.input, &op.output) {
            (_, Output::Value { value: Some(v) } | Output::Put { previous: Some(v) }) => {
                observed.insert(v);
            }
            (_, Output::Cas { current: Some(Some(v)), .. }) => {
                observed.insert(v);
            }
            _ => {}
        }
        if let (Input::Cas { expected: Some(e), .. }, Output::Cas { swapped: true, .. }) =
            (&op.input, &op.output)
        {
            observed.insert(e);
        }
    }
    ops.retain(|op| {
        let written = match &op.input {
            Input::Put { value, .. } | Input::Cas { new: value, .. } => Some(value.as_str()),
            _ => None,
        };
        !(op.output == Output::Unknown && written.is_some_and(|w| !observed.contains(w)))
    });
}

/// A read of a value that no write on the key could have written by the time the read
/// returned: a violation however the operations are ordered, found without searching (and a
/// search among many writes of unknown outcome could run out of budget first).
fn impossible_read(ops: &[&Operation]) -> Option<(String, usize)> {
    for (i, op) in ops.iter().enumerate() {
        let Output::Value { value: Some(value) } = &op.output else { continue };
        let returned = op.complete.unwrap_or(u64::MAX);
        let writers = ops.iter().filter(|w| match &w.input {
            Input::Put { value: v, .. } | Input::Cas { new: v, .. } => v == value,
            _ => false,
        });
        if !writers.clone().any(|w| w.invoke <= returned) {
            let reason = if writers.count() == 0 {
                format!("{op} read a value that no operation ever wrote")
            } else {
                format!("{op} read a value whose only writes began after it returned")
            };
            return Some((reason, i));
        }
    }
    None
}

/// The operations to show around `at` (sorted by invocation): those overlapping it in time,
/// and the few that completed just before it began (they set the state it saw).
fn near<'a>(ops: &[&'a Operation], at: usize) -> Vec<&'a Operation> {
    const BEFORE: usize = 6;
    const MOST: usize = 40;
    let (start, end) = (ops[at].invoke, ops[at].complete.unwrap_or(u64::MAX));
    let overlaps = |o: &Operation| o.invoke <= end && o.complete.is_none_or(|c| c >= start);
    let before: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].complete.is_some_and(|c| c < start)).collect();
    let mut chosen: Vec<usize> = before.iter().rev().take(BEFORE).copied().collect();
    chosen.extend((0..ops.len()).filter(|&i| overlaps(ops[i])).take(MOST));
    chosen.sort_unstable();
    chosen.dedup();
    chosen.into_iter().map(|i| ops[i]).collect()
}

#[derive(Debug, PartialEq, Eq)]
enum KeyResult {
    Linearizable,
    /// No order works; `stuck` is the operation whose return the deepest attempt could not
    /// get past.
    Violation {
        stuck: usize,
    },
    Inconclusive,
}

type State = Option<String>;

/// The sequential specification: the state after `op` if `op` may happen in `state` with the
/// output it had, or `None` if it may not.
fn step(state: &State, input: &Input, output: &Output) -> Option<State> {
    match (input, output) {
        // What a write found must be what the state held (when the record says).
        (Input::Put { value, .. }, Output::Put { previous }) => {
            (state == previous).then(|| Some(value.clone()))
        }
        (Input::Put { value, .. }, _) => Some(Some(value.clone())),
        (Input::Delete { .. }, Output::Delete { existed }) => (state.is_some() == *existed).then_some(None),
        (Input::Delete { .. }, _) => Some(None),
        (Input::Get { .. }, Output::Value { value }) => (state == value).then(|| state.clone()),
        (Input::Get { .. }, _) => Some(state.clone()),
        (Input::Cas { expected, new, .. }, output) => {
            let matches = state == expected;
            match output {
                Output::Cas { swapped, .. } if *swapped != matches => None,
                Output::Cas { current: Some(current), .. } if current != state => None,
                _ if matches => Some(Some(new.clone())),
                _ => Some(state.clone()),
            }
        }
    }
}

/// Calls and returns in time order, as a doubly linked list with head and tail sentinels, so
/// that linearized operations can be lifted out and put back in O(1) (dancing links).
struct Timeline {
    /// (time, is_return, op). Calls sort before returns at the same time, which treats
    /// touching operations as concurrent (the permissive reading).
    events: Vec<(u64, bool, usize)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Where each operation's return is in `events`.
    return_of: Vec<usize>,
    head: usize,
    tail: usize,
}

impl Timeline {
    fn new(ops: &[&Operation]) -> Timeline {
        let n = ops.len();
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke, false, i));
            events.push((op.complete.unwrap_or(u64::MAX), true, i));
        }
        events.sort();
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
        Timeline { events, next, prev, return_of, head, tail }
    }

    fn first(&self) -> usize {
        self.next[self.head]
    }

    fn is_empty(&self) -> bool {
        self.first() == self.tail
    }

    fn unlink(&mut self, x: usize) {
        let (p, q) = (self.prev[x], self.next[x]);
        self.next[p] = q;
        self.prev[q] = p;
    }

    fn relink(&mut self, x: usize) {
        let (p, q) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        self.prev[q] = x;
    }
}

/// Wing and Gong's search with Lowe's memoisation (as in Porcupine): linearize a pending call
/// whose effect the state allows, or backtrack when an operation returns before any did.
fn check_key(ops: &[&Operation], budget: u64) -> KeyResult {
    let mut t = Timeline::new(ops);
    let mut linearized = vec![0u64; ops.len().div_ceil(64).max(1)];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut calls: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut entry = t.first();
    let mut budget = budget;
    // The deepest attempt and where it failed, to show the user where to look.
    let (mut deepest, mut stuck) = (0, 0);
    while !t.is_empty() {
        budget -= 1;
        if budget == 0 {
            return KeyResult::Inconclusive;
        }
        let (_, is_return, op) = t.events[entry];
        if !is_return {
            if let Some(new_state) = step(&state, &ops[op].input, &ops[op].output) {
                linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((linearized.clone(), new_state.clone())) {
                    calls.push((entry, std::mem::replace(&mut state, new_state)));
                    t.unlink(entry);
                    t.unlink(t.return_of[op]);
                    entry = t.first();
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = t.next[entry];
        } else {
            // This operation returned before any order of the pending calls worked: backtrack.
            if calls.len() >= deepest {
                (deepest, stuck) = (calls.len(), op);
            }
            let Some((call, previous)) = calls.pop() else { return KeyResult::Violation { stuck } };
            let op = t.events[call].2;
            state = previous;
            linearized[op / 64] &= !(1 << (op % 64));
            t.relink(t.return_of[op]);
            t.relink(call);
            entry = t.next[call];
        }
    }
    KeyResult::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, input: Input, invoke: u64, complete: Option<u64>, output: Output) -> Operation {
        Operation { client, input, consistency: None, invoke, complete, output }
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
    fn many_unanswered_writes_nobody_saw_are_decided_not_left_undecided() {
        // Two hundred writes given up on, never read: the search would run out of budget on
        // their orders; none of them can matter, so the key is decided.
        let mut h: Vec<Operation> =
            (0..200).map(|i| op(i % 5, put(&format!("lost-{i}")), i, None, Output::Unknown)).collect();
        h.push(op(9, put("seen"), 300, Some(301), Output::Ok));
        h.push(op(9, get(), 302, Some(303), val(Some("seen"))));
        assert!(check_with_budget(&h, 10_000).is_linearizable());
        // One of them read, then the older value again: a violation, still found.
        h.push(op(8, get(), 304, Some(305), val(Some("lost-7"))));
        assert!(check_with_budget(&h, 10_000).is_linearizable(), "lost-7 may have happened last");
        h.push(op(8, get(), 306, Some(307), val(Some("seen"))));
        assert_eq!(check_with_budget(&h, 10_000).verdict(), Verdict::NotLinearizable);
    }

    #[test]
    fn an_unanswered_write_that_explains_a_failed_swap_is_kept() {
        // The swap failed without saying what it found: only the unanswered write explains it.
        let cas = Input::Cas { key: "k".into(), expected: Some("a".into()), new: "c".into() };
        let h = [
            op(1, put("a"), 0, Some(1), Output::Ok),
            op(2, put("b"), 2, None, Output::Unknown),
            op(3, cas, 4, Some(5), Output::Cas { swapped: false, current: None }),
        ];
        assert!(check_history(&h).is_linearizable());
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
        assert_eq!(report.violation.unwrap().key, "k");
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
            op(1, cas, 0, Some(5), Output::Cas { swapped: false, current: None }),
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
            op(1, cas(Some("a"), "b"), 2, Some(3), Output::Cas { swapped: true, current: None }),
            op(1, cas(Some("a"), "c"), 4, Some(5), Output::Cas { swapped: false, current: None }),
            op(2, get(), 6, Some(7), val(Some("b"))),
        ];
        assert!(check_history(&h).is_linearizable());
        let wrong = [
            op(1, put("a"), 0, Some(1), Output::Ok),
            op(1, cas(Some("a"), "b"), 2, Some(3), Output::Cas { swapped: false, current: None }),
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

    /// Twenty puts that timed out, then a read: each put may or may not have happened.
    fn twenty_unknown_puts_then(read: Option<&str>) -> Vec<Operation> {
        let mut h: Vec<Operation> =
            (0..20).map(|i| op(i + 1, put(&format!("v{i}")), i, None, Output::Unknown)).collect();
        h.push(op(99, get(), 1000, Some(1001), val(read)));
        h
    }

    #[test]
    fn a_read_of_a_value_nobody_wrote_is_refuted_among_unknown_writes() {
        let report = check_history(&twenty_unknown_puts_then(Some("phantom")));
        assert_eq!(report.verdict(), Verdict::NotLinearizable);
        let violation = report.violation.unwrap();
        assert!(violation.reason.contains("no operation ever wrote"), "{}", violation.reason);
        assert!(violation.near.iter().any(|o| o.client == 99), "the read is shown");
        assert_eq!(check_history(&twenty_unknown_puts_then(Some("v19"))).verdict(), Verdict::Linearizable);
    }

    #[test]
    fn a_search_out_of_budget_is_unknown_never_linearizable() {
        // v1, then v0, then v1 again: each unknown put happens at most once, so no order
        // works, but proving it means trying every subset of the twenty puts. (A read of each
        // of the others first, concurrent with everything, so that none may be left out as
        // unobserved.)
        let mut h = twenty_unknown_puts_then(Some("v1"));
        for i in 2..20 {
            h.push(op(100 + i, get(), 0, Some(2000), val(Some(&format!("v{i}")))));
        }
        h.push(op(99, get(), 1002, Some(1003), val(Some("v0"))));
        h.push(op(99, get(), 1004, Some(1005), val(Some("v1"))));
        let small = check_with_budget(&h, 1_000);
        assert_eq!(small.verdict(), Verdict::Unknown);
        assert!(!small.is_linearizable());
        assert_eq!(small.inconclusive, vec!["k".to_string()]);
    }

    #[test]
    fn a_violation_names_the_operation_no_order_gets_past() {
        let h = [
            op(1, put("a"), 0, Some(1), Output::Ok),
            op(1, put("b"), 2, Some(3), Output::Ok),
            op(2, get(), 4, Some(5), val(Some("a"))),
        ];
        let violation = check_history(&h).violation.unwrap();
        assert!(violation.reason.contains("get(k)"), "{}", violation.reason);
        assert_eq!(violation.near.len(), 3);
    }

    #[test]
    fn what_a_write_found_must_fit_the_order() {
        // Two puts one after the other: the second must have found the first's value.
        let found = |previous: Option<&str>| {
            [
                op(1, put("a"), 0, Some(1), Output::Put { previous: None }),
                op(2, put("b"), 2, Some(3), Output::Put { previous: previous.map(String::from) }),
            ]
        };
        assert!(check_history(&found(Some("a"))).is_linearizable());
        assert!(!check_history(&found(None)).is_linearizable(), "b was written after a, so it found a");
        let delete = [
            op(1, put("a"), 0, Some(1), Output::Ok),
            op(2, Input::Delete { key: "k".into() }, 2, Some(3), Output::Delete { existed: false }),
        ];
        assert!(!check_history(&delete).is_linearizable());
        let cas = Input::Cas { key: "k".into(), expected: Some("z".into()), new: "c".into() };
        let seen = |current: &str| {
            [
                op(1, put("a"), 0, Some(1), Output::Ok),
                op(
                    2,
                    cas.clone(),
                    2,
                    Some(3),
                    Output::Cas { swapped: false, current: Some(Some(current.into())) },
                ),
            ]
        };
        assert!(check_history(&seen("a")).is_linearizable());
        assert!(!check_history(&seen("q")).is_linearizable());
    }

    #[test]
    fn refused_operations_and_stale_reads_are_not_held_to_linearizability() {
        let mut stale = op(2, get(), 4, Some(5), val(None));
        stale.consistency = Some(crate::event::Consistency::Stale);
        let h = [
            op(1, put("a"), 0, Some(1), Output::Ok),
            op(3, put("b"), 2, Some(3), Output::Failed { error: "store_full".into() }),
            stale,
            op(2, get(), 6, Some(7), val(Some("a"))),
        ];
        assert!(check_history(&h).is_linearizable());
    }

    #[test]
    fn the_history_format_reads_back_what_it_writes() {
        let h = [
            op(1, put("a"), 0, Some(1), Output::Put { previous: None }),
            op(1, put("b"), 0, None, Output::Unknown),
            op(1, put("c"), 0, Some(1), Output::Failed { error: "unauthorized".into() }),
            op(
                2,
                Input::Cas { key: "k".into(), expected: None, new: "x".into() },
                2,
                Some(3),
                Output::Cas { swapped: false, current: Some(None) },
            ),
            op(
                2,
                Input::Cas { key: "k".into(), expected: None, new: "x".into() },
                2,
                Some(3),
                Output::Cas { swapped: true, current: None },
            ),
        ];
        for o in h {
            let line = serde_json::to_string(&o).unwrap();
            assert_eq!(serde_json::from_str::<Operation>(&line).unwrap(), o, "{line}");
        }
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
