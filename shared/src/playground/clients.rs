//! Reads and writes in the playground, routed as the proxy routes them: writes (and reads that
//! ask for the leader) to the leader, other reads to the followers in turn; retried when a
//! server is not the leader, loses leadership or crashes, with the write's session so that a
//! retry is never applied twice; given up after `PATIENCE_MS` of *cluster* time, so that a
//! write waits as long as time is stopped.

use crate::event::Consistency;
use crate::kv::{Command, WriteOp};
use crate::protocol::{ApiError, ClientFrame, ErrorKind, OpResult, ProxyFrame};
use crate::raft::{MembershipChange, Millis, NodeId, Role};
use crate::replica::{Reply, ReplyError, Request};
use crate::session::ClientSession;

use super::Core;

/// How long a request may take, in ms of cluster time.
const PATIENCE_MS: Millis = 10_000;
/// After a refusal with no better idea, wait this long (cluster time) before trying again.
const RETRY_AFTER_MS: Millis = 50;

/// The page's client: one session for every write that comes without one.
pub(super) struct Clients {
    session: ClientSession,
    next_op: u64,
    turn: usize,
}

impl Clients {
    pub fn new(seed: u64) -> Clients {
        Clients { session: ClientSession::new((seed >> 12).max(1)), next_op: 1, turn: 0 }
    }
}

/// Who asked, and so gets the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AnswerTo {
    Page,
    /// A lesson: its answer goes to the lesson, not to the page.
    Lesson,
    /// The playground itself (a membership change an admin command started).
    Nobody,
}

/// A request from the page on its way through the cluster.
pub(super) struct ClientOp {
    op: u64,
    /// The page's id for it.
    id: u64,
    request: Request,
    started: Millis,
    /// Where it was sent, and that server's life then; `None` while waiting to be sent.
    at: Option<(NodeId, u64)>,
    retry_at: Millis,
    hint: Option<NodeId>,
    retries: u32,
    /// Who gets the answer.
    to: AnswerTo,
    /// Only this server may answer (a lesson asking one server); no retries elsewhere.
    only: Option<NodeId>,
}

impl Core {
    pub(super) fn client_request(&mut self, frame: ClientFrame) {
        let (id, request) = match frame {
            ClientFrame::Put { id, key, value, session } => {
                (id, self.write(WriteOp::Put { key, value }, session))
            }
            ClientFrame::Delete { id, key, session } => (id, self.write(WriteOp::Delete { key }, session)),
            ClientFrame::Cas { id, key, expected, new, session } => {
                (id, self.write(WriteOp::Cas { key, expected, new }, session))
            }
            ClientFrame::Get { id, key, consistency } => (id, Request::Read { key, consistency }),
            ClientFrame::Hello { .. } | ClientFrame::Status { .. } | ClientFrame::Admin { .. } => {
                unreachable!("handled by the caller")
            }
        };
        self.submit(id, request, AnswerTo::Page, None);
    }

    /// Starts an operation: `id` names it in its answer.
    pub(super) fn submit(&mut self, id: u64, request: Request, to: AnswerTo, only: Option<NodeId>) {
        let op = self.clients.next_op;
        self.clients.next_op += 1;
        let now = self.now;
        let (at, retry_at, hint, retries) = (None, now, None, 0);
        self.ops.push(ClientOp { op, id, request, started: now, at, retry_at, hint, retries, to, only });
        self.retry_clients();
    }

    /// A numbered write for a lesson, from the page's session.
    pub(super) fn lesson_write(&mut self, key: &str, value: &str) -> Request {
        self.write(WriteOp::Put { key: key.to_string(), value: value.to_string() }, None)
    }

    fn answer(&mut self, op: &ClientOp, frame: ProxyFrame) {
        match op.to {
            AnswerTo::Page => self.out.push(frame),
            AnswerTo::Lesson => {
                self.lesson_answers.insert(op.id, frame);
            }
            AnswerTo::Nobody => {}
        }
    }

    fn write(&mut self, op: WriteOp, session: Option<crate::protocol::Session>) -> Request {
        let command = match session {
            Some(s) => {
                Command { client: s.client, seq: s.seq, op, answered_below: s.answered_below.unwrap_or(0) }
            }
            None => {
                let numbered = self.clients.session.number();
                Command {
                    client: self.clients.session.client(),
                    seq: numbered.seq,
                    op,
                    answered_below: numbered.answered_below,
                }
            }
        };
        Request::Write { command }
    }

    /// Sends what waits to be sent, gives up on what waited too long.
    pub(super) fn retry_clients(&mut self) {
        let now = self.now;
        let mut i = 0;
        while i < self.ops.len() {
            let op = &self.ops[i];
            // A request at a server that crashed since is lost with it: send it again.
            let lost = op.at.is_some_and(|(node, life)| {
                self.servers.get(&node).is_none_or(|s| !s.is_up() || s.incarnation != life)
            });
            if lost {
                self.ops[i].at = None;
            }
            let op = &self.ops[i];
            if now >= op.started + PATIENCE_MS {
                let op = self.ops.remove(i);
                let error = ApiError::new(
                    ErrorKind::Timeout,
                    format!(
                        "no answer in {:.0} s of cluster time; a write may or may not have been applied",
                        PATIENCE_MS as f64 / 1000.0
                    ),
                );
                self.settle(&op, false);
                self.answer(&op, ProxyFrame::Error { id: Some(op.id), error });
                continue;
            }
            if op.at.is_none() && now >= op.retry_at {
                let to_leader = match &op.request {
                    Request::Write { .. } | Request::ChangeMembership { .. } => true,
                    Request::Read { consistency, .. } => *consistency == Consistency::Leader,
                };
                let (only, hint) = (op.only, op.hint);
                let target = match only {
                    Some(node) => Some(node).filter(|n| self.servers.get(n).is_some_and(|s| s.is_running())),
                    None => self.pick(hint, to_leader),
                };
                if only.is_some() && target.is_none() {
                    let op = self.ops.remove(i);
                    let error = ApiError::new(ErrorKind::Unavailable, "that server is down");
                    self.answer(&op, ProxyFrame::Error { id: Some(op.id), error });
                    continue;
                }
                if let Some(target) = target {
                    let server = self.servers.get_mut(&target).expect("picked");
                    let life = server.incarnation;
                    let (op_id, request) = (self.ops[i].op, self.ops[i].request.clone());
                    self.ops[i].at = Some((target, life));
                    server.request(now, op_id, request);
                    self.work(target);
                    // The answer may have come at once and removed the operation.
                    if self.ops.get(i).is_none_or(|o| o.op != op_id) {
                        continue;
                    }
                }
            }
            i += 1;
        }
    }

    /// Where an operation goes now, if anywhere can take it.
    fn pick(&mut self, hint: Option<NodeId>, to_leader: bool) -> Option<NodeId> {
        // A paused process takes nothing: requests wait for another server (or time out).
        let running = |id: &NodeId| self.servers.get(id).is_some_and(|s| s.is_running());
        let leader = hint.filter(running).or_else(|| self.leader().filter(running));
        if to_leader {
            return leader;
        }
        let followers: Vec<NodeId> = self
            .servers
            .values()
            .filter(|s| s.is_running())
            .filter(|s| s.replica.as_ref().is_some_and(|r| r.raft().role() == Role::Follower))
            .map(|s| s.id)
            .collect();
        if followers.is_empty() {
            return leader;
        }
        self.clients.turn += 1;
        Some(followers[self.clients.turn % followers.len()])
    }

    /// A server answered operation `op`.
    pub(super) fn answered(&mut self, node: NodeId, op: u64, reply: Reply) {
        let Some(i) = self.ops.iter().position(|o| o.op == op) else { return };
        if let (Some(_), Reply::Error { error }) = (self.ops[i].only, &reply) {
            let op = self.ops.remove(i);
            let error = ApiError::new(ErrorKind::Unavailable, error.to_string());
            return self.answer(&op, ProxyFrame::Error { id: Some(op.id), error });
        }
        let (frame, op) = match reply {
            Reply::Written { result, index } => {
                let op = self.ops.remove(i);
                self.settle(&op, true);
                let retries = op.retries;
                let frame = match OpResult::of_write(result) {
                    Ok(result) => ProxyFrame::Done { id: op.id, result, served_by: node, index, retries },
                    Err(error) => ProxyFrame::Error { id: Some(op.id), error },
                };
                (frame, op)
            }
            Reply::Value { value, index } => {
                let op = self.ops.remove(i);
                let (id, retries) = (op.id, op.retries);
                (
                    ProxyFrame::Done { id, result: OpResult::Get { value }, served_by: node, index, retries },
                    op,
                )
            }
            Reply::MembershipChanged { .. } => {
                let op = self.ops.remove(i);
                if let Request::ChangeMembership { change: MembershipChange::Remove { id } } = op.request {
                    self.retire(id);
                }
                return;
            }
            Reply::Error { error } => {
                let op = &mut self.ops[i];
                op.at = None;
                op.retries += 1;
                op.hint = match error {
                    ReplyError::NotLeader { leader } => leader,
                    ReplyError::TransferInProgress { to } | ReplyError::HandingOver { to } => Some(to),
                    _ => None,
                };
                op.retry_at = self.now + if op.hint.is_some() { 0 } else { RETRY_AFTER_MS };
                return;
            }
        };
        self.answer(&op, frame);
    }

    /// The page's own session learns which of its writes have a known outcome.
    fn settle(&mut self, op: &ClientOp, known: bool) {
        if let Request::Write { command } = &op.request
            && known
            && command.client == self.clients.session.client()
        {
            self.clients.session.settled(command.seq);
        }
    }
}
