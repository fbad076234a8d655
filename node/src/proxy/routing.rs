//! Where each client request goes, and what happens when it fails.
//!
//! Writes go to the leader. If the server says it is not the leader, the proxy follows its
//! hint; on a timeout, a lost connection or a leadership change it looks for the leader again
//! and retries — always with the same session (client id, sequence number), so that a write
//! that did commit before the failure is recognised and answered, never applied twice.
//!
//! Reads go to followers in turn (linearizable by default, via ReadIndex; `stale` answers from
//! the follower's state at once), or to the leader when asked.
//!
//! Patience counts only the time the cluster's clocks run: a write sent while time is stopped
//! waits for the lecturer's steps instead of timing out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shared::event::Consistency;
use shared::kv::Command;
use shared::protocol::{ApiError, ErrorKind, OpResult, ProxyFrame};
use shared::raft::{Index, MembershipChange, NodeId, Role, Term};
use shared::replica::{Reply, ReplyError, Request};

use super::Hub;
use super::status::time_scale;

/// One attempt's patience, at time scale 1.
const ATTEMPT: Duration = Duration::from_millis(1_000);
/// The whole request's patience, at time scale 1.
const OVERALL: Duration = Duration::from_secs(10);

/// While time is stopped, how often a waiting request looks whether it runs again.
const STOPPED_POLL: Duration = Duration::from_millis(50);

pub(super) enum Outcome {
    Reply(Reply),
    /// No answer in time, or the link dropped: the server may be dead, paused or cut off.
    NoAnswer,
}

/// Sends one request to one server and waits for its answer for `patience` of running time.
pub(super) async fn ask(hub: &Hub, node: NodeId, request: Request, patience: Duration) -> Outcome {
    let Some(backend) = hub.backends.get(&node) else { return Outcome::NoAnswer };
    let id = hub.next_id();
    let reply = backend.request(id, request);
    tokio::pin!(reply);
    let mark = hub.time.mark();
    loop {
        let left = patience.saturating_sub(hub.time.running_since(mark));
        if left.is_zero() {
            backend.forget(id);
            return Outcome::NoAnswer;
        }
        let nap = if hub.time.is_stopped() { STOPPED_POLL } else { left };
        tokio::select! {
            answer = &mut reply => return match answer {
                Ok(reply) => Outcome::Reply(reply),
                Err(_) => Outcome::NoAnswer,
            },
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

/// Patience for one attempt and for the whole request, stretched by the time scale.
fn patience(hub: &Hub) -> (Duration, Duration) {
    let scale = time_scale(hub);
    (ATTEMPT.mul_f64(scale.max(0.5)), OVERALL.mul_f64(scale.max(1.0)))
}

/// Servers to skip for a while during one request. One that just failed us is probably dead,
/// paused, cut off or no longer leading — but only probably, and not for long: after its time
/// it gets another chance (an election may have made it the leader).
#[derive(Default)]
struct Avoid {
    until: BTreeMap<NodeId, Instant>,
}

impl Avoid {
    fn add(&mut self, node: NodeId, for_: Duration) {
        self.until.insert(node, Instant::now() + for_);
    }

    fn contains(&self, node: &NodeId) -> bool {
        self.until.get(node).is_some_and(|t| Instant::now() < *t)
    }

    fn clear(&mut self) {
        self.until.clear();
    }
}

/// After an error reply, how long to try others first.
const AVOID_AFTER_ERROR: Duration = Duration::from_millis(100);

/// Reachable servers: the leader of the highest term if known, and the others.
fn candidates(hub: &Hub, avoid: &Avoid) -> (Option<NodeId>, Vec<NodeId>) {
    let roles: Vec<(NodeId, Role, Term)> = hub
        .backends
        .iter()
        .filter(|(id, _)| !avoid.contains(id))
        .filter_map(|(id, b)| b.fresh(|s| (id, s.replica.raft.role, s.replica.raft.term)))
        .collect();
    let leader = roles
        .iter()
        .filter(|(_, role, _)| *role == Role::Leader)
        .max_by_key(|(_, _, term)| *term)
        .map(|(id, _, _)| *id);
    let followers = roles.iter().filter(|(id, _, _)| Some(*id) != leader).map(|(id, _, _)| *id).collect();
    (leader, followers)
}

fn any_node(hub: &Hub, avoid: &Avoid) -> Option<NodeId> {
    let ids: Vec<NodeId> = hub
        .backends
        .iter()
        .filter(|(id, b)| !avoid.contains(id) && b.is_connected())
        .map(|(id, _)| id)
        .collect();
    (!ids.is_empty()).then(|| ids[hub.next_turn() % ids.len()])
}

/// How a request's routing ended.
enum Routed {
    /// A server answered (not with an error worth retrying).
    Answered { reply: Reply, node: NodeId, retries: u32 },
    /// Out of time; the last problem seen, and whether it was that no leader is known.
    GaveUp { problem: String, no_leader: bool, after: Duration },
}

/// Sends `request` to the server `pick` chooses (given the servers to avoid and the last
/// leader hint), retrying on errors worth retrying until the request's patience runs out.
/// Writes and reads share this; they differ only in whom they pick.
async fn route(
    hub: &Hub,
    request: Request,
    mut pick: impl FnMut(&Avoid, Option<NodeId>) -> Option<NodeId>,
) -> Routed {
    let (attempt, overall) = patience(hub);
    let start = hub.time.mark();
    let mut hint: Option<NodeId> = None;
    let mut avoid = Avoid::default();
    let mut retries = 0;
    let mut problem = "no server answered".to_string();
    let mut no_leader = false;
    while hub.time.running_since(start) < overall {
        let Some(node) = pick(&avoid, hint.take()).or_else(|| any_node(hub, &avoid)) else {
            // Every server was tried: start over (one may have come back).
            avoid.clear();
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let left = overall.saturating_sub(hub.time.running_since(start));
        match ask(hub, node, request.clone(), attempt.min(left)).await {
            Outcome::Reply(Reply::Error { error: ReplyError::MembershipRefused { reason } }) => {
                // Asking again changes nothing: the client hears why.
                let reply = Reply::Error { error: ReplyError::MembershipRefused { reason } };
                return Routed::Answered { reply, node, retries };
            }
            Outcome::Reply(Reply::Error { error }) => {
                problem = format!("node {node}: {error}");
                no_leader = matches!(error, ReplyError::NoLeader | ReplyError::NotLeader { leader: None });
                retries += 1;
                match error {
                    ReplyError::NotLeader { leader: Some(l) }
                    | ReplyError::TransferInProgress { to: l }
                    | ReplyError::HandingOver { to: l } => {
                        // A hint at a server that just failed us means the cluster has not
                        // noticed yet: give the election a moment instead of spinning.
                        let moving = matches!(
                            error,
                            ReplyError::TransferInProgress { .. } | ReplyError::HandingOver { .. }
                        );
                        if avoid.contains(&l) || moving {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if !avoid.contains(&l) {
                            hint = Some(l);
                        }
                    }
                    ReplyError::NotLeader { leader: None }
                    | ReplyError::NoLeader
                    | ReplyError::LeadershipLost
                    | ReplyError::Behind => {
                        avoid.add(node, AVOID_AFTER_ERROR);
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    // The leader is right; the moment is not (a change still committing).
                    ReplyError::MembershipBusy { .. } => {
                        hint = Some(node);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    ReplyError::MembershipRefused { .. } => unreachable!("answered above"),
                }
            }
            Outcome::Reply(reply) => return Routed::Answered { reply, node, retries },
            Outcome::NoAnswer => {
                problem = format!("node {node} did not answer");
                no_leader = false;
                avoid.add(node, attempt);
                retries += 1;
            }
        }
    }
    Routed::GaveUp { problem, no_leader, after: overall }
}

fn unexpected(id: u64, node: NodeId, reply: &Reply) -> ProxyFrame {
    let error = ApiError::new(
        ErrorKind::Unavailable,
        format!("node {node} gave an answer of the wrong kind: {reply:?}"),
    );
    ProxyFrame::Error { id: Some(id), error }
}

pub async fn write(hub: &Hub, id: u64, command: Command) -> ProxyFrame {
    let started = Instant::now();
    let request = Request::Write { command: command.clone() };
    // Writes go to the leader: the last hint, else the leader the statuses name.
    match route(hub, request, |avoid, hint| hint.or_else(|| candidates(hub, avoid).0)).await {
        Routed::Answered { reply: Reply::Written { result, index }, node, retries } => {
            hub.stats.record(true, started);
            match OpResult::of_write(result) {
                Ok(result) => ProxyFrame::Done { id, result, served_by: node, index, retries },
                Err(error) => ProxyFrame::Error { id: Some(id), error },
            }
        }
        Routed::Answered { reply, node, .. } => unexpected(id, node, &reply),
        Routed::GaveUp { problem, after, .. } => {
            let error = ApiError::new(
                ErrorKind::Timeout,
                format!(
                    "the write did not complete in {:.1} s ({problem}); it may or may not have been applied — \
                     retry with the same session to find out without applying it twice",
                    after.as_secs_f64()
                ),
            );
            ProxyFrame::Error { id: Some(id), error }
        }
    }
}

pub async fn read(hub: &Hub, id: u64, key: String, consistency: Consistency) -> ProxyFrame {
    let started = Instant::now();
    let request = Request::Read { key, consistency };
    // Reads go to followers in turn (the leader if none), or to the leader when asked.
    let pick = |avoid: &Avoid, hint: Option<NodeId>| {
        let (leader, followers) = candidates(hub, avoid);
        match consistency {
            Consistency::Leader => hint.or(leader),
            Consistency::Linearizable | Consistency::Stale if followers.is_empty() => leader,
            Consistency::Linearizable | Consistency::Stale => {
                Some(followers[hub.next_turn() % followers.len()])
            }
        }
    };
    match route(hub, request, pick).await {
        Routed::Answered { reply: Reply::Value { value, index }, node, retries } => {
            hub.stats.record(false, started);
            ProxyFrame::Done { id, result: OpResult::Get { value }, served_by: node, index, retries }
        }
        Routed::Answered { reply, node, .. } => unexpected(id, node, &reply),
        Routed::GaveUp { problem, no_leader, after } => {
            let kind = if no_leader { ErrorKind::NoLeader } else { ErrorKind::Timeout };
            let message = format!("the read did not complete in {:.1} s ({problem})", after.as_secs_f64());
            ProxyFrame::Error { id: Some(id), error: ApiError::new(kind, message) }
        }
    }
}

/// Asks the leader for a membership change and waits until it is committed; returns the index
/// of the new configuration. Busy answers (a change still committing, a leader that has not
/// committed in its term) are retried; removing the leader follows it to its successor.
pub async fn change_membership(hub: &Hub, change: MembershipChange) -> Result<Index, ApiError> {
    let request = Request::ChangeMembership { change };
    match route(hub, request, |avoid, hint| hint.or_else(|| candidates(hub, avoid).0)).await {
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
                "the membership change did not complete in {:.1} s ({problem}); look at the members in \
                 `status` before asking again",
                after.as_secs_f64()
            ),
        )),
    }
}
