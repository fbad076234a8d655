//! Simulated clients: a closed loop of random puts, gets, deletes and compare-and-swaps on a
//! few keys, with timeouts and retries that reuse the write's session (client id, sequence
//! number) — the behaviour that exactly-once depends on.

use std::collections::BTreeMap;

use crate::check::{Input, Output};
use crate::event::Consistency;
use crate::kv::{ClientId, Command, WriteOp, WriteResult};
use crate::raft::NodeId;
use crate::replica::{Reply, ReplyError, Request};
use crate::rng::Rng;

/// After this many attempts a client gives up on an operation: a write's outcome becomes
/// unknown, a read is forgotten (it changed nothing).
pub(super) const MAX_ATTEMPTS: u32 = 12;

#[derive(Debug)]
pub(super) struct SimClient {
    pub id: ClientId,
    pub seq: u64,
    pub ops_started: u64,
    pub current: Option<PendingOp>,
    pub leader_hint: Option<NodeId>,
    /// Invalidates timers set for earlier attempts.
    pub generation: u64,
    /// The last value this client saw per key, for plausible compare-and-swaps.
    known: BTreeMap<String, Option<String>>,
}

#[derive(Debug)]
pub(super) struct PendingOp {
    pub op: u64,
    pub input: Input,
    pub request: Request,
    pub history: usize,
    pub attempts: u32,
}

/// What a reply means for the operation in flight.
pub(super) enum Verdict {
    Done(Output),
    /// Retry, at this node if one is suggested.
    Retry(Option<NodeId>),
}

impl SimClient {
    pub fn new(id: ClientId) -> SimClient {
        SimClient {
            id,
            seq: 0,
            ops_started: 0,
            current: None,
            leader_hint: None,
            generation: 0,
            known: BTreeMap::new(),
        }
    }

    /// A random operation on one of `keys` keys. Values are unique, so a read identifies the
    /// write it saw.
    pub fn next_op(&mut self, rng: &mut Rng, keys: u64) -> (Input, Request) {
        self.ops_started += 1;
        let key = format!("k{}", rng.below(keys));
        let value = format!("c{}-{}", self.id, self.ops_started);
        let roll = rng.below(100);
        if roll < 35 {
            let consistency =
                if rng.chance(200_000) { Consistency::Leader } else { Consistency::Linearizable };
            return (Input::Get { key: key.clone() }, Request::Read { key, consistency });
        }
        let (input, op) = if roll < 70 {
            (Input::Put { key: key.clone(), value: value.clone() }, WriteOp::Put { key, value })
        } else if roll < 80 {
            (Input::Delete { key: key.clone() }, WriteOp::Delete { key })
        } else {
            // Expect the last value this client saw: sometimes current, sometimes stale.
            let expected = self.known.get(&key).cloned().flatten();
            let input = Input::Cas { key: key.clone(), expected: expected.clone(), new: value.clone() };
            (input, WriteOp::Cas { key, expected, new: value })
        };
        self.seq += 1;
        (input, Request::Write { command: Command { client: self.id, seq: self.seq, op } })
    }

    /// Remembers what a completed operation revealed about its key.
    pub fn learn(&mut self, input: &Input, output: &Output) {
        let seen = match (input, output) {
            (Input::Put { value, .. }, Output::Ok) => Some(value.clone()),
            (Input::Delete { .. }, Output::Ok) => None,
            (Input::Get { .. }, Output::Value { value }) => value.clone(),
            (Input::Cas { new, .. }, Output::Cas { swapped: true }) => Some(new.clone()),
            _ => return,
        };
        self.known.insert(input.key().to_string(), seen);
    }

    pub fn judge(&mut self, input: &Input, reply: Reply) -> Verdict {
        match reply {
            Reply::Written { result, .. } => Verdict::Done(match (input, result) {
                (Input::Cas { .. }, WriteResult::Cas { swapped, .. }) => Output::Cas { swapped },
                (_, WriteResult::StaleSequence { .. }) => Output::Unknown,
                _ => Output::Ok,
            }),
            Reply::Value { value, .. } => Verdict::Done(Output::Value { value }),
            Reply::Error { error } => {
                let hint = match error {
                    ReplyError::NotLeader { leader } => leader,
                    ReplyError::TransferInProgress { to } => Some(to),
                    ReplyError::NoLeader | ReplyError::LeadershipLost => None,
                };
                self.leader_hint = hint;
                Verdict::Retry(hint)
            }
        }
    }
}
