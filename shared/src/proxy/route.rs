//! Where each request goes, and what happens when it fails.
//!
//! Writes go to the leader. If the server says it is not the leader, the proxy follows its
//! hint; on no answer, a lost link or a leadership change it looks for the leader again and
//! retries — always with the same session (client id, sequence number), so that a write that
//! did commit before the failure is recognised and answered, never applied twice.
//!
//! Reads go to followers in turn (linearizable by default, via ReadIndex; `stale` answers from
//! the follower's state at once), or to the leader when asked.
//!
//! Patience counts only the time the cluster's clocks run: a write sent while time is stopped
//! waits for the lecturer's steps instead of timing out.

use std::collections::BTreeMap;

use crate::event::Consistency;
use crate::kv::Command;
use crate::protocol::{ApiError, ErrorKind, OpResult, ProxyFrame};
use crate::raft::{Index, MembershipChange, Millis, NodeId};
use crate::replica::{Reply, ReplyError, Request};

use super::core::Core;
use super::wait::{Answered, settle, sleep, wait_reply};

/// One attempt's patience, at time scale 1.
pub const ATTEMPT_MS: Millis = 1_000;
/// The whole request's patience, at time scale 1.
pub const OVERALL_MS: Millis = 10_000;
/// While time is stopped, how often a waiting request looks whether it runs again.
const STOPPED_POLL_MS: Millis = 50;
/// After an error reply, how long to try other servers first.
const AVOID_AFTER_ERROR_MS: Millis = 100;
/// A hint at a server that just failed, or a leadership on its way: give the cluster this long,
/// or less if a server announces meanwhile that it leads.
const SETTLING_MS: Millis = 20;
/// After "no leader" or "leadership lost": wait this long before the next try (or less, as above).
const NO_LEADER_BACKOFF_MS: Millis = 25;
/// After "membership change busy": the leader is right, the moment is not.
const BUSY_BACKOFF_MS: Millis = 50;
/// Every server was tried: wait this long before trying them all again.
const ALL_TRIED_BACKOFF_MS: Millis = 50;

/// What one server said to one attempt.
pub(crate) enum Outcome {
    Reply(Reply),
    /// No answer in time, or the link dropped: the server may be dead, paused or cut off.
    NoAnswer,
}

/// Sends one request to one server and waits for its answer for `patience` of running time.
pub(crate) async fn ask(core: &Core, node: NodeId, request: Request, patience: Millis) -> Outcome {
    let (id, mark) = {
        let mut state = core.state();
        let Some(id) = state.request(node, request) else { return Outcome::NoAnswer };
        (id, state.mark())
    };
    loop {
        let (left, stopped, now) = {
            let state = core.state();
            (patience.saturating_sub(state.running_since(mark)), state.gate.is_stopped(), state.now)
        };
        if left == 0 {
            core.state().forget_request(id);
            return Outcome::NoAnswer;
        }
        let deadline = now + if stopped { STOPPED_POLL_MS } else { left };
        match wait_reply(core, id, deadline).await {
            Answered::Yes(reply) => return Outcome::Reply(reply),
            Answered::No => return Outcome::NoAnswer,
            // Time passed: look again at how much of it ran (a stopped clock pauses patience).
            Answered::Late => {}
        }
    }
}

/// Patience for one attempt and for the whole request, stretched by the time scale.
pub(crate) fn patience(core: &Core) -> (Millis, Millis) {
    let scale = core.state().time_scale();
    ((ATTEMPT_MS as f64 * scale.max(0.5)) as Millis, (OVERALL_MS as f64 * scale.max(1.0)) as Millis)
}

/// Servers to skip for a while during one request. One that just failed us is probably dead,
/// paused, cut off or no longer leading — but only probably, and not for long: after its time
/// it gets another chance (an election may have made it the leader).
#[derive(Default)]
pub(crate) struct Avoid {
    until: BTreeMap<NodeId, Millis>,
}

impl Avoid {
    fn add(&mut self, node: NodeId, until: Millis) {
        self.until.insert(node, until);
    }

    pub fn contains(&self, node: NodeId, now: Millis) -> bool {
        self.until.get(&node).is_some_and(|t| now < *t)
    }

    fn clear(&mut self) {
        self.until.clear();
    }
}

/// How a request's routing ended.
pub(crate) enum Routed {
    /// A server answered (not with an error worth retrying).
    Answered { reply: Reply, node: NodeId, retries: u32 },
    /// Out of time; the last problem seen, and whether it was that no leader is known.
    GaveUp { problem: String, no_leader: bool, after: Millis },
}

/// Whom a request goes to next, given the servers to avoid and the last leader hint.
pub(crate) type Pick = dyn Fn(&Core, &Avoid, Option<NodeId>) -> Option<NodeId>;

/// The leader named by the hint, else the one statuses name.
pub(crate) fn leader(core: &Core, avoid: &Avoid, hint: Option<NodeId>) -> Option<NodeId> {
    let state = core.state();
    let now = state.now;
    hint.or_else(|| state.roles(|id| avoid.contains(id, now)).0)
}

/// Any server with a live link, in turn.
fn any_node(core: &Core, avoid: &Avoid) -> Option<NodeId> {
    let mut state = core.state();
    let now = state.now;
    let ids: Vec<NodeId> = state
        .servers
        .iter()
        .filter(|(id, s)| s.up && !avoid.contains(**id, now))
        .map(|(id, _)| *id)
        .collect();
    (!ids.is_empty()).then(|| ids[state.next_turn() % ids.len()])
}

/// Sends `request` to the server `pick` chooses, retrying on errors worth retrying until the
/// request's patience runs out. Writes and reads share this; they differ only in whom they pick.
pub(crate) async fn route(core: &Core, mut request: Request, pick: &Pick) -> Routed {
    let (attempt, overall) = patience(core);
    let start = core.state().mark();
    let mut hint: Option<NodeId> = None;
    let mut avoid = Avoid::default();
    let mut retries = 0;
    let mut problem = "no server answered".to_string();
    let mut no_leader = false;
    while core.state().running_since(start) < overall {
        let Some(node) = pick(core, &avoid, hint.take()).or_else(|| any_node(core, &avoid)) else {
            // Every server was tried: start over (one may have come back).
            avoid.clear();
            sleep(core, ALL_TRIED_BACKOFF_MS).await;
            continue;
        };
        let left = overall.saturating_sub(core.state().running_since(start));
        match ask(core, node, request.clone(), attempt.min(left)).await {
            Outcome::Reply(Reply::Error {
                error:
                    error @ (ReplyError::MembershipRefused { .. }
                    | ReplyError::Refused { .. }
                    | ReplyError::Indeterminate { .. }),
            }) => {
                // Asking again changes nothing, or (a hosted node, without sessions) could apply
                // a write twice: the client hears why.
                return Routed::Answered { reply: Reply::Error { error }, node, retries };
            }
            Outcome::Reply(Reply::Error { error }) => {
                problem = format!("node {node}: {error}");
                no_leader = matches!(error, ReplyError::NoLeader | ReplyError::NotLeader { leader: None });
                retries += 1;
                hint = after_error(core, node, error, &mut avoid).await;
            }
            Outcome::Reply(reply) => return Routed::Answered { reply, node, retries },
            Outcome::NoAnswer if matches!(request, Request::Write { .. }) && core.state().is_hosted(node) => {
                // A hosted node keeps no sessions: a write sent again could be applied twice.
                let reason = format!("node {node} did not answer; a hosted node's write is not retried");
                let error = ReplyError::Indeterminate { reason };
                return Routed::Answered { reply: Reply::Error { error }, node, retries };
            }
            Outcome::NoAnswer => {
                problem = format!("node {node} did not answer");
                no_leader = false;
                let now = core.now();
                avoid.add(node, now + attempt);
                retries += 1;
                if retries_without_session(core) {
                    request = on_a_fresh_session(core, request).await;
                }
            }
        }
    }
    Routed::GaveUp { problem, no_leader, after: overall }
}

/// What to do after `node` answered with `error`: wait a moment or avoid it for a while, and
/// whom to try next (`Some`: the server named by the hint).
async fn after_error(core: &Core, node: NodeId, error: ReplyError, avoid: &mut Avoid) -> Option<NodeId> {
    let now = core.now();
    match error {
        ReplyError::NotLeader { leader: Some(l) }
        | ReplyError::TransferInProgress { to: l }
        | ReplyError::HandingOver { to: l } => {
            // A hint at a server that just failed us means the cluster has not noticed yet:
            // give the election a moment instead of spinning.
            let moving =
                matches!(error, ReplyError::TransferInProgress { .. } | ReplyError::HandingOver { .. });
            if avoid.contains(l, now) || moving {
                if let Some(announced) = settle(core, SETTLING_MS).await {
                    return Some(announced);
                }
            }
            (!avoid.contains(l, core.now())).then_some(l)
        }
        ReplyError::NotLeader { leader: None }
        | ReplyError::NoLeader
        | ReplyError::LeadershipLost
        | ReplyError::Behind => {
            avoid.add(node, now + AVOID_AFTER_ERROR_MS);
            // The candidate that said "no leader" may be the one that wins meanwhile.
            settle(core, NO_LEADER_BACKOFF_MS).await
        }
        ReplyError::MembershipBusy { .. } => {
            sleep(core, BUSY_BACKOFF_MS).await;
            Some(node)
        }
        // Asking again changes nothing: answered by the caller.
        ReplyError::MembershipRefused { .. }
        | ReplyError::Refused { .. }
        | ReplyError::Indeterminate { .. } => None,
    }
}

/// The deliberate defect `retry-without-session`: the write, renumbered on a new session.
async fn on_a_fresh_session(core: &Core, request: Request) -> Request {
    let Request::Write { command } = request else { return request };
    match register(core).await {
        Ok(client) => Request::Write { command: Command { client, seq: 1, answered_below: 0, ..command } },
        Err(_) => Request::Write { command },
    }
}

/// A server's final refusal, or an outcome it cannot tell, as the client's error.
fn refused(id: u64, node: NodeId, error: ReplyError) -> ProxyFrame {
    let error = match error {
        ReplyError::Indeterminate { reason } => ApiError::new(
            ErrorKind::Timeout,
            format!("node {node}: {reason}; the write may or may not have been applied"),
        ),
        other => ApiError::new(ErrorKind::BadRequest, format!("node {node}: {other}")),
    };
    ProxyFrame::Error { id: Some(id), error }
}

fn unexpected(id: u64, node: NodeId, reply: &Reply) -> ProxyFrame {
    let error = ApiError::new(
        ErrorKind::Unavailable,
        format!("node {node} gave an answer of the wrong kind: {reply:?}"),
    );
    ProxyFrame::Error { id: Some(id), error }
}

/// A write, answered as a client frame `id`.
pub(crate) async fn write(core: &Core, id: u64, command: Command) -> ProxyFrame {
    let started = core.now();
    match route(core, Request::Write { command }, &leader).await {
        Routed::Answered { reply: Reply::Written { result, index }, node, retries } => {
            let mut state = core.state();
            let now = state.now;
            state.stats.record(true, started, now);
            match OpResult::of_write(result) {
                Ok(result) => ProxyFrame::Done { id, result, served_by: node, index, retries },
                Err(error) => ProxyFrame::Error { id: Some(id), error },
            }
        }
        Routed::Answered { reply: Reply::Error { error }, node, .. } => refused(id, node, error),
        Routed::Answered { reply, node, .. } => unexpected(id, node, &reply),
        Routed::GaveUp { problem, after, .. } => {
            let error = ApiError::new(
                ErrorKind::Timeout,
                format!(
                    "the write did not complete in {:.1} s ({problem}); it may or may not have been applied — \
                     retry with the same session to find out without applying it twice",
                    after as f64 / 1000.0
                ),
            );
            ProxyFrame::Error { id: Some(id), error }
        }
    }
}

/// Reads go to followers in turn (the leader if none), or to the leader when asked.
fn reader(consistency: Consistency) -> impl Fn(&Core, &Avoid, Option<NodeId>) -> Option<NodeId> {
    move |core: &Core, avoid: &Avoid, hint: Option<NodeId>| {
        let mut state = core.state();
        let now = state.now;
        let (leader, followers) = state.roles(|id| avoid.contains(id, now));
        match consistency {
            Consistency::Leader => hint.or(leader),
            Consistency::Linearizable | Consistency::Stale if followers.is_empty() => leader,
            Consistency::Linearizable | Consistency::Stale => {
                let turn = state.next_turn();
                Some(followers[turn % followers.len()])
            }
        }
    }
}

/// A read, answered as a client frame `id`.
pub(crate) async fn read(core: &Core, id: u64, key: String, consistency: Consistency) -> ProxyFrame {
    let started = core.now();
    match route(core, Request::Read { key, consistency }, &reader(consistency)).await {
        Routed::Answered { reply: Reply::Value { value, index }, node, retries } => {
            let mut state = core.state();
            let now = state.now;
            state.stats.record(false, started, now);
            ProxyFrame::Done { id, result: OpResult::Get { value }, served_by: node, index, retries }
        }
        Routed::Answered { reply: Reply::Error { error }, node, .. } => refused(id, node, error),
        Routed::Answered { reply, node, .. } => unexpected(id, node, &reply),
        Routed::GaveUp { problem, no_leader, after } => {
            let kind = if no_leader { ErrorKind::NoLeader } else { ErrorKind::Timeout };
            let message = format!("the read did not complete in {:.1} s ({problem})", after as f64 / 1000.0);
            ProxyFrame::Error { id: Some(id), error: ApiError::new(kind, message) }
        }
    }
}

/// Registers a client session through the log (dissertation §6.3): its id is the index of the
/// entry, so a session the store no longer has is one it evicted, never one it has not seen.
pub(crate) async fn register(core: &Core) -> Result<u64, ApiError> {
    match Box::pin(route(core, Request::Register, &leader)).await {
        Routed::Answered { reply: Reply::Registered { client }, .. } => Ok(client),
        Routed::Answered { reply, node, .. } => Err(ApiError::new(
            ErrorKind::Unavailable,
            format!("node {node} gave an answer of the wrong kind: {reply:?}"),
        )),
        Routed::GaveUp { problem, no_leader, after } => {
            let kind = if no_leader { ErrorKind::NoLeader } else { ErrorKind::Timeout };
            Err(ApiError::new(
                kind,
                format!(
                    "no session could be opened in {:.1} s ({problem}); try again",
                    after as f64 / 1000.0
                ),
            ))
        }
    }
}

/// Asks the leader for a membership change and waits until it is committed; returns the index
/// of the new configuration. Busy answers are retried; removing the leader follows it to its
/// successor.
pub(crate) async fn change_membership(core: &Core, change: MembershipChange) -> Result<Index, ApiError> {
    match route(core, Request::ChangeMembership { change }, &leader).await {
        Routed::Answered { reply: Reply::MembershipChanged { index }, .. } => Ok(index),
        Routed::Answered {
            reply: Reply::Error { error: ReplyError::MembershipRefused { reason } }, ..
        } => Err(ApiError::new(ErrorKind::BadRequest, reason)),
        Routed::Answered { reply, node, .. } => Err(ApiError::new(
            ErrorKind::Unavailable,
            format!("node {node} gave an answer of the wrong kind: {reply:?}"),
        )),
        Routed::GaveUp { problem, after, .. } => Err(ApiError::new(
            ErrorKind::Timeout,
            format!(
                "the membership change did not complete in {:.1} s ({problem}); look at the members in `status` \
                 before asking again",
                after as f64 / 1000.0
            ),
        )),
    }
}

/// The deliberate defect `retry-without-session`: whether a write retried after no answer goes
/// out on a fresh session, as a student's proxy might — and applies twice.
fn retries_without_session(core: &Core) -> bool {
    core.state().settings.bugs.has(crate::raft::Bug::RetryWithoutSession)
}
