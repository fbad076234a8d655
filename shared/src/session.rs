//! The client's side of a write session (see `kv` for the store's side): numbers the writes
//! and says which outcomes the client knows, so the store can forget their results.
//!
//! A write's outcome is known when it was answered `done` or refused; after a timeout it is
//! not — the write may still be applied — so it holds `answered_below` down until the store
//! itself forgets it (it keeps `MAX_RESULTS_PER_SESSION` results per session).

use std::collections::BTreeSet;

use crate::kv::{ClientId, MAX_RESULTS_PER_SESSION};

#[derive(Debug, Clone)]
pub struct ClientSession {
    client: ClientId,
    last: u64,
    /// Writes whose outcome the client does not know: in flight, or given up on.
    unsettled: BTreeSet<u64>,
}

/// One write's place in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbered {
    pub seq: u64,
    pub answered_below: u64,
}

impl ClientSession {
    pub fn new(client: ClientId) -> ClientSession {
        ClientSession { client, last: 0, unsettled: BTreeSet::new() }
    }

    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Numbers a new write. Retries of it reuse what this returned.
    pub fn number(&mut self) -> Numbered {
        self.last += 1;
        self.unsettled.insert(self.last);
        // Older unknown outcomes are forgotten by the store anyway.
        while self.unsettled.len() > MAX_RESULTS_PER_SESSION {
            self.unsettled.pop_first();
        }
        let answered_below = *self.unsettled.first().expect("just inserted");
        Numbered { seq: self.last, answered_below }
    }

    /// The client now knows what became of write `seq`.
    pub fn settled(&mut self, seq: u64) {
        self.unsettled.remove(&seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_below_is_the_lowest_write_without_a_known_outcome() {
        let mut s = ClientSession::new(7);
        let a = s.number();
        let b = s.number();
        assert_eq!((a.seq, a.answered_below, b.seq, b.answered_below), (1, 1, 2, 1));
        s.settled(2);
        assert_eq!(s.number().answered_below, 1, "write 1 is still unknown");
        s.settled(1);
        assert_eq!(s.number(), Numbered { seq: 4, answered_below: 3 });
    }

    #[test]
    fn unknown_outcomes_are_held_no_longer_than_the_store_keeps_results() {
        let mut s = ClientSession::new(7);
        for _ in 0..MAX_RESULTS_PER_SESSION + 10 {
            s.number();
        }
        let n = s.number();
        assert_eq!(n.answered_below, n.seq - MAX_RESULTS_PER_SESSION as u64 + 1);
    }
}
