//! Simulated clients: a closed loop of random puts, gets, deletes and compare-and-swaps on a
//! few keys, with timeouts and retries that reuse the write's session (client id, sequence
//! number) — the behaviour that exactly-once depends on.

use std::collections::BTreeMap;

use super::SimEvent;
use super::network::wire_round_trip_request;
use super::node::Input as NodeInput;
use crate::check::{Input, Operation, Output, Property, Violation};
use crate::event::Consistency;
use crate::kv::{ClientId, Command, MAX_SESSIONS, WriteOp, WriteResult};
use crate::raft::{Millis, NodeId};
use crate::replica::{Reply, ReplyError, Request};
use crate::rng::Rng;
use crate::session::ClientSession;

/// After this many attempts a client gives up on an operation: a write's outcome becomes
/// unknown, a read is forgotten (it changed nothing).
pub(super) const MAX_ATTEMPTS: u32 = 12;

#[derive(Debug)]
pub(super) struct SimClient {
    pub id: ClientId,
    pub ops_started: u64,
    pub current: Option<PendingOp>,
    pub leader_hint: Option<NodeId>,
    /// Invalidates timers set for earlier attempts.
    pub generation: u64,
    /// The last value this client saw per key, for plausible compare-and-swaps.
    known: BTreeMap<String, Option<String>>,
    /// Numbers the writes; outcomes given up on hold `answered_below` down.
    session: ClientSession,
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
            ops_started: 0,
            current: None,
            leader_hint: None,
            generation: 0,
            session: ClientSession::new(id),
            known: BTreeMap::new(),
        }
    }

    /// A random operation on one of `keys` keys. Values are unique, so a read identifies the
    /// write it saw; with `padding`, they carry that many copies of a multi-byte phrase, so that
    /// snapshots hold text whose characters chunks can cut.
    pub fn next_op(&mut self, rng: &mut Rng, keys: u64, padding: u32) -> (Input, Request) {
        self.ops_started += 1;
        let key = format!("k{}", rng.below(keys));
        let mut value = format!("c{}-{}", self.id, self.ops_started);
        if padding > 0 {
            value.push_str(&"·año ñandú € 🦙".repeat(rng.range(1, u64::from(padding)) as usize));
        }
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
        let numbered = self.session.number();
        (
            input,
            Request::Write {
                command: Command {
                    client: self.id,
                    seq: numbered.seq,
                    op,
                    answered_below: numbered.answered_below,
                },
            },
        )
    }

    /// Remembers what a completed operation revealed about its key.
    pub fn learn(&mut self, input: &Input, output: &Output) {
        let seen = match (input, output) {
            (Input::Put { value, .. }, Output::Ok | Output::Put { .. }) => Some(value.clone()),
            (Input::Delete { .. }, Output::Ok | Output::Delete { .. }) => None,
            (Input::Get { .. }, Output::Value { value }) => value.clone(),
            (Input::Cas { new, .. }, Output::Cas { swapped: true, .. }) => Some(new.clone()),
            _ => return,
        };
        self.known.insert(input.key().to_string(), seen);
    }

    pub fn judge(&mut self, input: &Input, reply: Reply) -> Verdict {
        match reply {
            Reply::Written { result, .. } => Verdict::Done(match (input, result) {
                // What each write found goes into the history: the checker holds it to the
                // order it picks.
                (Input::Cas { .. }, WriteResult::Cas { swapped, current }) => {
                    Output::Cas { swapped, current: Some(current) }
                }
                (Input::Put { .. }, WriteResult::Put { previous }) => Output::Put { previous },
                (Input::Delete { .. }, WriteResult::Delete { existed }) => Output::Delete { existed },
                (_, WriteResult::SessionConflict) => {
                    panic!("client {} reused a sequence number for another write", self.id)
                }
                // Refused here, but a copy of the write elsewhere in the log might still
                // apply: the checker must allow both, at any time after the call.
                (
                    _,
                    WriteResult::StaleSequence { .. }
                    | WriteResult::SessionExpired
                    | WriteResult::StoreFull { .. },
                ) => Output::Unknown,
                _ => Output::Ok,
            }),
            Reply::Value { value, .. } => Verdict::Done(Output::Value { value }),
            Reply::MembershipChanged { .. } => unreachable!("clients do not change membership"),
            Reply::Error { error } => {
                let hint = match error {
                    ReplyError::NotLeader { leader } => leader,
                    ReplyError::TransferInProgress { to } | ReplyError::HandingOver { to } => Some(to),
                    ReplyError::NoLeader
                    | ReplyError::LeadershipLost
                    | ReplyError::Behind
                    | ReplyError::MembershipBusy { .. }
                    | ReplyError::MembershipRefused { .. } => None,
                };
                self.leader_hint = hint;
                Verdict::Retry(hint)
            }
        }
    }
}

// The clients' side of the event loop.
impl super::Simulation {
    pub(super) fn client_wake(&mut self, client: usize, generation: u64) {
        if self.clients[client].generation != generation {
            return;
        }
        if self.clients[client].current.is_none() {
            return self.start_op(client);
        }
        // A timeout or a planned retry.
        let op = self.clients[client].current.as_mut().expect("checked");
        op.attempts += 1;
        if op.attempts > MAX_ATTEMPTS {
            let history = op.history;
            let is_read = matches!(op.input, Input::Get { .. });
            self.clients[client].current = None;
            if is_read {
                self.abandoned[history] = true;
            }
            self.note(format!("client {} gives up: {}", client + 1, self.history[history]));
            return self.wake_client(client, 0);
        }
        let target = match self.clients[client].leader_hint {
            Some(hint) if self.rng.chance(800_000) => hint,
            _ => self.rng.range(1, self.provisioned as u64),
        };
        self.send_request(client, target);
    }

    fn wake_client(&mut self, client: usize, after: Millis) {
        self.clients[client].generation += 1;
        let generation = self.clients[client].generation;
        self.schedule(self.now + after, SimEvent::ClientWake { client, generation });
    }

    pub(super) fn start_op(&mut self, client: usize) {
        let padding = self.params.padding;
        let (input, request) = self.clients[client].next_op(&mut self.rng, self.params.keys, padding);
        let op = self.clients[client].ops_started;
        let id = self.clients[client].id;
        let consistency = match &request {
            Request::Read { consistency, .. } => Some(*consistency),
            Request::Write { .. } | Request::ChangeMembership { .. } => None,
        };
        self.history.push(Operation {
            client: id,
            input: input.clone(),
            consistency,
            invoke: self.step,
            complete: None,
            output: Output::Unknown,
        });
        self.abandoned.push(false);
        let history = self.history.len() - 1;
        let is_read = matches!(input, Input::Get { .. });
        self.clients[client].current = Some(PendingOp { op, input, request, history, attempts: 0 });
        let target = match self.clients[client].leader_hint {
            // Writes go to the leader; linearizable reads may go anywhere (followers too).
            Some(hint) if !is_read => hint,
            _ => self.rng.range(1, self.provisioned as u64),
        };
        self.send_request(client, target);
    }

    fn send_request(&mut self, client: usize, node: NodeId) {
        let pending = self.clients[client].current.as_ref().expect("an operation is in flight");
        let (op, request) = (pending.op, pending.request.clone());
        let request = wire_round_trip_request(request);
        for delay in self.network.route(&mut self.rng, None) {
            let input = NodeInput::Request { client, op, request: request.clone() };
            self.schedule(self.now + delay, SimEvent::DeliverToNode(node, input));
        }
        let timeout = self.params.client_timeout;
        self.wake_client(client, timeout);
    }

    pub(super) fn client_reply(&mut self, client: usize, op: u64, reply: Reply) {
        let Some(pending) = self.clients[client].current.as_ref() else { return };
        if pending.op != op {
            return;
        }
        let input = pending.input.clone();
        if let Reply::Written { result: WriteResult::SessionExpired, .. } = &reply {
            self.session_refused(client);
        }
        match self.clients[client].judge(&input, reply) {
            Verdict::Done(output) => {
                let pending = self.clients[client].current.take().expect("checked");
                self.clients[client].learn(&input, &output);
                if let Request::Write { command } = &pending.request {
                    self.clients[client].session.settled(command.seq);
                }
                let entry = &mut self.history[pending.history];
                if output != Output::Unknown {
                    entry.complete = Some(self.step);
                }
                entry.output = output;
                let think = self.rng.range(0, 20);
                self.wake_client(client, think);
            }
            Verdict::Retry(Some(_)) => {
                let delay = self.rng.range(1, 5);
                self.wake_client(client, delay);
            }
            Verdict::Retry(None) => {
                let delay = self.rng.range(10, 60);
                self.wake_client(client, delay);
            }
        }
    }

    /// A simulation has far fewer clients than the store keeps sessions, so no session is ever
    /// evicted: a refusal as "forgotten" is a store answering from a state that lags its log.
    fn session_refused(&mut self, client: usize) {
        assert!(self.clients.len() < MAX_SESSIONS, "simulations keep every session");
        if self.report.violation.is_none() {
            let detail = format!(
                "client {} was told its session was forgotten, but no session was ever evicted",
                self.clients[client].id
            );
            self.report.violation =
                Some(Violation { property: Property::LiveSessions, step: self.step, detail });
        }
    }
}
