//! Simulated clients: a closed loop of random puts, gets, deletes and compare-and-swaps on a
//! few keys, sent to a proxy core (`proxies`) as the CLI sends them to `consenso proxy`.
//!
//! Two kinds, as in real use. A *session* client registers its own session and numbers its
//! writes, so that when its proxy dies it sends the same write to another proxy and is
//! answered exactly once (`consenso client`, `consenso bench`). A *connection* client sends
//! writes without a session and lets the proxy number them on the connection's own (pages);
//! when its proxy dies, the write in flight has an unknown outcome. Either way the routing,
//! retries and sessions under test are the proxy's.

use std::collections::BTreeMap;

use super::SimEvent;
use crate::check::{Input, Operation, Output, Property, Violation};
use crate::event::Consistency;
use crate::kv::{ClientId, WriteOp};
use crate::protocol::{ClientFrame, ErrorKind, OpResult, ProxyFrame, Session};
use crate::proxy::{ConnId, OVERALL_MS};
use crate::raft::Millis;
use crate::rng::Rng;
use crate::session::ClientSession;

/// After this many sends a session client gives up on an operation: a write's outcome stays
/// unknown, a read is forgotten (it changed nothing).
pub(super) const MAX_ATTEMPTS: u32 = 6;
/// How long a client waits for its proxy's answer: past the proxy's own patience, a silent
/// proxy is a dead one.
const CLIENT_PATIENCE_MS: Millis = OVERALL_MS + 2_000;
/// How long a client waits before connecting again when no proxy is up.
const RECONNECT_MS: Millis = 100;

#[derive(Debug)]
pub(super) struct SimClient {
    /// Numbers from 1; values it writes say which client wrote them.
    pub number: u64,
    /// Registers its own session (else writes go on the connection's).
    pub own_session: bool,
    /// The proxy it talks to, and its connection there (`None`: not connected).
    pub proxy: usize,
    pub conn: Option<(ConnId, u64)>,
    connections: u64,
    session: Option<ClientSession>,
    /// The frame id of a registration in flight.
    registering: Option<u64>,
    pub ops_started: u64,
    pub current: Option<PendingOp>,
    /// Invalidates timers set for earlier sends.
    pub generation: u64,
    next_frame: u64,
    /// The last value this client saw per key, for plausible compare-and-swaps.
    known: BTreeMap<String, Option<String>>,
}

#[derive(Debug)]
pub(super) struct PendingOp {
    pub input: Input,
    pub frame: ClientFrame,
    pub history: usize,
    pub attempts: u32,
    /// The session number of a write on the client's own session.
    seq: Option<u64>,
}

impl SimClient {
    pub fn new(number: u64, own_session: bool, proxy: usize) -> SimClient {
        SimClient {
            number,
            own_session,
            proxy,
            conn: None,
            connections: 0,
            session: None,
            registering: None,
            ops_started: 0,
            current: None,
            generation: 0,
            next_frame: 0,
            known: BTreeMap::new(),
        }
    }

    /// A connection id no other connection of any client has.
    fn new_conn(&mut self) -> ConnId {
        self.connections += 1;
        (self.number << 32) | self.connections
    }

    pub fn client_of(conn: ConnId) -> usize {
        (conn >> 32) as usize - 1
    }

    fn frame_id(&mut self) -> u64 {
        self.next_frame += 1;
        self.next_frame
    }

    /// A random operation on one of `keys` keys. Values are unique, so a read identifies the
    /// write it saw (and the safety checker a write applied twice); with `padding`, they carry
    /// that many copies of a multi-byte phrase, so that snapshots hold text whose characters
    /// chunks can cut.
    fn next_op(&mut self, rng: &mut Rng, keys: u64, padding: u32) -> PendingOp {
        self.ops_started += 1;
        let key = format!("k{}", rng.below(keys));
        let mut value = format!("c{}-{}", self.number, self.ops_started);
        if padding > 0 {
            value.push_str(&"·año ñandú € 🦙".repeat(rng.range(1, u64::from(padding)) as usize));
        }
        let id = self.frame_id();
        let roll = rng.below(100);
        if roll < 35 {
            let consistency =
                if rng.chance(200_000) { Consistency::Leader } else { Consistency::Linearizable };
            let frame = ClientFrame::Get { id, key: key.clone(), consistency };
            return PendingOp { input: Input::Get { key }, frame, history: 0, attempts: 0, seq: None };
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
        let session = self.session.as_mut().map(|s| {
            let numbered = s.number();
            Session { client: s.client(), seq: numbered.seq, answered_below: Some(numbered.answered_below) }
        });
        let seq = session.as_ref().map(|s| s.seq);
        let frame = match op {
            WriteOp::Put { key, value } => ClientFrame::Put { id, key, value, session },
            WriteOp::Delete { key } => ClientFrame::Delete { id, key, session },
            WriteOp::Cas { key, expected, new } => ClientFrame::Cas { id, key, expected, new, session },
        };
        PendingOp { input, frame, history: 0, attempts: 0, seq }
    }

    /// Remembers what a completed operation revealed about its key.
    fn learn(&mut self, input: &Input, output: &Output) {
        let seen = match (input, output) {
            (Input::Put { value, .. }, Output::Ok | Output::Put { .. }) => Some(value.clone()),
            (Input::Delete { .. }, Output::Ok | Output::Delete { .. }) => None,
            (Input::Get { .. }, Output::Value { value }) => value.clone(),
            (Input::Cas { new, .. }, Output::Cas { swapped: true, .. }) => Some(new.clone()),
            _ => return,
        };
        self.known.insert(input.key().to_string(), seen);
    }

    fn settle(&mut self, seq: Option<u64>) {
        if let (Some(session), Some(seq)) = (self.session.as_mut(), seq) {
            session.settled(seq);
        }
    }
}

/// What an answer means for the operation it answers.
enum Verdict {
    Done(Output),
    /// Send the same frame again (a session client's write or a read: safe to repeat).
    Again,
    /// The outcome will not be known: a write stays unknown, a read is dropped.
    Unknown,
}

fn output_of(input: &Input, result: OpResult) -> Output {
    match (input, result) {
        // What each write found goes into the history: the checker holds it to the order it
        // picks.
        (Input::Cas { .. }, OpResult::Cas { swapped, current }) => {
            Output::Cas { swapped, current: Some(current) }
        }
        (Input::Put { .. }, OpResult::Put { previous }) => Output::Put { previous },
        (Input::Delete { .. }, OpResult::Delete { existed }) => Output::Delete { existed },
        (Input::Get { .. }, OpResult::Get { value }) => Output::Value { value },
        _ => Output::Ok,
    }
}

// The clients' side of the event loop.
impl super::Simulation {
    pub(super) fn client_wake(&mut self, client: usize, generation: u64) {
        if self.clients[client].generation != generation {
            return;
        }
        if self.clients[client].conn.is_none() && !self.connect(client) {
            return self.wake_client(client, RECONNECT_MS);
        }
        if self.clients[client].registering.is_some() {
            // The registration was not answered in time: the proxy is gone or stuck.
            return self.fail_over(client);
        }
        match &self.clients[client].current {
            None => self.start_op(client),
            // No answer in time: the proxy is gone or stuck.
            Some(_) => self.fail_over(client),
        }
    }

    fn wake_client(&mut self, client: usize, after: Millis) {
        self.clients[client].generation += 1;
        let generation = self.clients[client].generation;
        self.schedule(self.now + after, SimEvent::ClientWake { client, generation });
    }

    /// Opens a connection to the client's proxy, or the next one that runs; false if none does.
    fn connect(&mut self, client: usize) -> bool {
        let count = self.proxies.len();
        for turn in 0..count {
            let p = (self.clients[client].proxy + turn) % count;
            if self.proxies[p].core.is_none() {
                continue;
            }
            let conn = self.clients[client].new_conn();
            let incarnation = self.proxies[p].incarnation;
            self.clients[client].proxy = p;
            self.clients[client].conn = Some((conn, incarnation));
            self.with_proxy(p, |proxy, now| {
                proxy.opened(now, conn, true, false);
            });
            return true;
        }
        false
    }

    /// The client's proxy stopped answering or its connection dropped: the client moves to
    /// another proxy and carries on with what was in flight.
    pub(super) fn fail_over(&mut self, client: usize) {
        if let Some((conn, incarnation)) = self.clients[client].conn.take() {
            let p = self.clients[client].proxy;
            if self.proxies[p].incarnation == incarnation {
                self.with_proxy(p, |proxy, now| proxy.closed(now, conn));
            }
        }
        let c = &mut self.clients[client];
        c.proxy = (c.proxy + 1) % self.proxies.len();
        c.registering = None;
        let resend = match &c.current {
            None => true,
            // A write on the connection's session belonged to that connection: its outcome is
            // unknown. A session client sends it again, on its session, elsewhere.
            Some(op) => !matches!(op.input, Input::Get { .. }) && op.seq.is_none(),
        };
        if !resend {
            self.finish_op(client, Verdict::Unknown);
        }
        self.note(format!("client {} fails over to proxy {}", client + 1, self.clients[client].proxy + 1));
        self.wake_client(client, 1);
    }

    fn start_op(&mut self, client: usize) {
        if self.clients[client].own_session && self.clients[client].session.is_none() {
            let id = self.clients[client].frame_id();
            self.clients[client].registering = Some(id);
            return self.send_frame(client, ClientFrame::Register { id });
        }
        let (keys, padding) = (self.params.keys, self.params.padding);
        let mut op = self.clients[client].next_op(&mut self.rng, keys, padding);
        let consistency = match &op.frame {
            ClientFrame::Get { consistency, .. } => Some(*consistency),
            _ => None,
        };
        self.history.push(Operation {
            client: self.clients[client].number,
            input: op.input.clone(),
            consistency,
            invoke: self.step,
            complete: None,
            output: Output::Unknown,
        });
        self.abandoned.push(false);
        op.history = self.history.len() - 1;
        let frame = op.frame.clone();
        self.clients[client].current = Some(op);
        self.send_frame(client, frame);
    }

    /// Sends a frame over the client's connection (in order, never lost: a WebSocket).
    fn send_frame(&mut self, client: usize, frame: ClientFrame) {
        let Some((conn, incarnation)) = self.clients[client].conn else { return self.wake_client(client, 1) };
        if let Some(op) = self.clients[client].current.as_mut() {
            op.attempts += 1;
        }
        let frame = super::network::wire_round_trip_client(frame);
        let proxy = self.clients[client].proxy;
        let delay = self.link_delay();
        self.schedule(self.now + delay, SimEvent::ToProxy { proxy, incarnation, conn, frame });
        self.wake_client(client, CLIENT_PATIENCE_MS);
    }

    pub(super) fn client_answer(&mut self, conn: ConnId, frame: ProxyFrame) {
        let client = SimClient::client_of(conn);
        if self.clients[client].conn.map(|(c, _)| c) != Some(conn) {
            return;
        }
        let frame = super::network::wire_round_trip_proxy(frame);
        if let ProxyFrame::Registered { id, client: session } = frame {
            if self.clients[client].registering == Some(id) {
                self.clients[client].registering = None;
                self.clients[client].session = Some(ClientSession::new(session));
                self.note(format!("client {} opened session {session}", client + 1));
                self.wake_client(client, 0);
            }
            return;
        }
        if let ProxyFrame::Error { id, error } = &frame {
            if self.clients[client].registering.is_some() && *id == self.clients[client].registering {
                self.clients[client].registering = None;
                self.note(format!("client {}: no session: {error}", client + 1));
                return self.wake_client(client, 20);
            }
        }
        let Some(op) = self.clients[client].current.as_ref() else { return };
        let answers_op = match &frame {
            ProxyFrame::Done { id, .. } | ProxyFrame::Error { id: Some(id), .. } => {
                op.frame.id() == Some(*id)
            }
            _ => false,
        };
        if !answers_op {
            return;
        }
        let verdict = self.judge(client, frame);
        self.finish_op(client, verdict);
    }

    fn judge(&mut self, client: usize, frame: ProxyFrame) -> Verdict {
        let op = self.clients[client].current.as_ref().expect("checked by the caller");
        let is_read = matches!(op.input, Input::Get { .. });
        let on_own_session = op.seq.is_some();
        let (input, attempts) = (op.input.clone(), op.attempts);
        match frame {
            ProxyFrame::Done { result, .. } => Verdict::Done(output_of(&input, result)),
            ProxyFrame::Error { error, .. } => {
                self.note(format!("client {}: {error}", client + 1));
                match error.kind {
                    ErrorKind::SessionExpired => {
                        let session = self.clients[client].session.take().map(|s| s.client());
                        if let Some(session) = session {
                            self.check_session_was_evicted(client, session);
                        }
                        Verdict::Unknown
                    }
                    ErrorKind::SessionConflict => {
                        panic!("client {} reused a sequence number for another write", client + 1)
                    }
                    // Refused here, but a copy elsewhere in the log may still apply.
                    ErrorKind::StaleSession => Verdict::Unknown,
                    kind if !kind.outcome_is_known() && (is_read || on_own_session) => {
                        if attempts >= MAX_ATTEMPTS { Verdict::Unknown } else { Verdict::Again }
                    }
                    _ => Verdict::Unknown,
                }
            }
            other => panic!("an answer of the wrong kind to client {}: {other:?}", client + 1),
        }
    }

    fn finish_op(&mut self, client: usize, verdict: Verdict) {
        match verdict {
            Verdict::Again => {
                // The proxy already retried and backed off: sent again at once.
                let frame = self.clients[client].current.as_ref().expect("in flight").frame.clone();
                self.send_frame(client, frame);
            }
            Verdict::Done(output) => {
                let op = self.clients[client].current.take().expect("in flight");
                self.clients[client].learn(&op.input, &output);
                self.clients[client].settle(op.seq);
                let entry = &mut self.history[op.history];
                entry.complete = Some(self.step);
                entry.output = output;
                let think = self.rng.range(0, 20);
                self.wake_client(client, think);
            }
            Verdict::Unknown => {
                let Some(op) = self.clients[client].current.take() else { return };
                if matches!(op.input, Input::Get { .. }) {
                    self.abandoned[op.history] = true;
                }
                self.note(format!("client {} gives up: {}", client + 1, self.history[op.history]));
                let think = self.rng.range(0, 20);
                self.wake_client(client, think);
            }
        }
    }

    /// A session is refused as forgotten only once the store evicted it (§6.3): the store
    /// every server applies in order (`sessions_seen`) must have let it go — checked when that
    /// store has applied all that any server has, so that the refusal is in its past.
    fn check_session_was_evicted(&mut self, client: usize, session: ClientId) {
        if !self.sessions_seen.caught_up() || !self.sessions_seen.store.has_session(session) {
            return;
        }
        if self.report.violation.is_none() {
            let detail = format!(
                "client {} was told its session {session} was forgotten, but the store still holds it",
                client + 1
            );
            self.report.violation =
                Some(Violation { property: Property::LiveSessions, step: self.step, detail });
        }
    }
}
