//! Where each client request goes, and what happens when it fails.
//!
//! Writes go to the leader. If the server says it is not the leader, the proxy follows its
//! hint; on a timeout, a lost connection or a leadership change it looks for the leader again
//! and retries — always with the same session (client id, sequence number), so that a write
//! that did commit before the failure is recognised and answered, never applied twice.
//!
//! Reads go to followers in turn (linearizable by default, via ReadIndex; `stale` answers from
//! the follower's state at once), or to the leader when asked.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shared::event::Consistency;
use shared::kv::{Command, WriteOp, WriteResult};
use shared::protocol::{ApiError, ErrorKind, OpResult, ProxyFrame};
use shared::raft::{NodeId, Role};
use shared::replica::{Reply, ReplyError, Request};

use super::Hub;
use super::status::{leader_of, time_scale};

/// One attempt's patience, at time scale 1.
const ATTEMPT: Duration = Duration::from_millis(1_000);
/// The whole request's patience, at time scale 1.
const OVERALL: Duration = Duration::from_secs(10);

enum Outcome {
    Reply(Reply),
    /// No answer in time, or the link dropped: the server may be dead, paused or cut off.
    NoAnswer,
}

async fn ask(hub: &Hub, node: NodeId, request: Request, patience: Duration) -> Outcome {
    let Some(backend) = hub.backends.get(&node) else { return Outcome::NoAnswer };
    let id = hub.next_id();
    let reply = backend.request(id, request);
    match tokio::time::timeout(patience, reply).await {
        Ok(Ok(reply)) => Outcome::Reply(reply),
        Ok(Err(_)) => Outcome::NoAnswer,
        Err(_) => {
            backend.forget(id);
            Outcome::NoAnswer
        }
    }
}

/// Patience for one attempt and for the whole request, stretched by the time scale.
fn patience(hub: &Hub) -> (Duration, Duration) {
    let scale = time_scale(hub);
    (ATTEMPT.mul_f64(scale.max(0.5)), OVERALL.mul_f64(scale.max(1.0)))
}

/// Reachable servers, the leader first if known.
fn candidates(hub: &Hub, avoid: &BTreeSet<NodeId>) -> (Option<NodeId>, Vec<NodeId>) {
    let status = super::status::cluster_status(hub);
    let leader = leader_of(&status.nodes).filter(|l| !avoid.contains(l));
    let followers = status
        .nodes
        .iter()
        .filter(|n| n.role.is_some() && n.role != Some(Role::Leader) && !avoid.contains(&n.id))
        .map(|n| n.id)
        .collect();
    (leader, followers)
}

fn any_node(hub: &Hub, avoid: &BTreeSet<NodeId>) -> Option<NodeId> {
    let ids: Vec<NodeId> = hub.backends.keys().copied().filter(|id| !avoid.contains(id)).collect();
    (!ids.is_empty()).then(|| ids[hub.next_turn() % ids.len()])
}

pub async fn write(hub: &Hub, id: u64, command: Command) -> ProxyFrame {
    let started = Instant::now();
    let (attempt, overall) = patience(hub);
    let deadline = Instant::now() + overall;
    let mut target: Option<NodeId> = None;
    let mut avoid = BTreeSet::new();
    let mut retries = 0;
    let mut last_problem = "no server answered".to_string();
    while Instant::now() < deadline {
        let node = match target.take().or_else(|| candidates(hub, &avoid).0).or_else(|| any_node(hub, &avoid))
        {
            Some(node) => node,
            None => {
                // Every server was tried: start over (one may have come back).
                avoid.clear();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let request = Request::Write { command: command.clone() };
        match ask(hub, node, request, attempt.min(deadline.saturating_duration_since(Instant::now()))).await {
            Outcome::Reply(Reply::Written { result, index }) => {
                hub.stats.record(true, started);
                return match result_of(&command.op, result) {
                    Ok(result) => ProxyFrame::Done { id, result, served_by: node, index, retries },
                    Err(error) => ProxyFrame::Error { id: Some(id), error },
                };
            }
            Outcome::Reply(Reply::Error { error }) => {
                last_problem = format!("node {node}: {error}");
                retries += 1;
                match error {
                    ReplyError::NotLeader { leader: Some(l) } | ReplyError::TransferInProgress { to: l } => {
                        if matches!(error, ReplyError::TransferInProgress { .. }) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        target = Some(l);
                    }
                    ReplyError::NotLeader { leader: None }
                    | ReplyError::NoLeader
                    | ReplyError::LeadershipLost => {
                        avoid.insert(node);
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
            }
            Outcome::Reply(Reply::Value { .. }) => {
                last_problem = format!("node {node} answered a write with a read result");
                retries += 1;
            }
            Outcome::NoAnswer => {
                last_problem = format!("node {node} did not answer");
                avoid.insert(node);
                retries += 1;
            }
        }
    }
    let error = ApiError::new(
        ErrorKind::Timeout,
        format!(
            "the write did not complete in {:.1} s ({last_problem}); it may or may not have been applied — \
             retry with the same session to find out without applying it twice",
            overall.as_secs_f64()
        ),
    );
    ProxyFrame::Error { id: Some(id), error }
}

fn result_of(op: &WriteOp, result: WriteResult) -> Result<OpResult, ApiError> {
    Ok(match (op, result) {
        (_, WriteResult::StaleSequence { last_applied }) => {
            return Err(ApiError::new(
                ErrorKind::StaleSession,
                format!("this session already applied sequence {last_applied}; use a higher sequence number"),
            ));
        }
        (_, WriteResult::Put { previous }) => OpResult::Put { previous },
        (_, WriteResult::Delete { existed }) => OpResult::Delete { existed },
        (_, WriteResult::Cas { swapped, current }) => OpResult::Cas { swapped, current },
    })
}

pub async fn read(hub: &Hub, id: u64, key: String, consistency: Consistency) -> ProxyFrame {
    let started = Instant::now();
    let (attempt, overall) = patience(hub);
    let deadline = Instant::now() + overall;
    let mut avoid = BTreeSet::new();
    let mut target: Option<NodeId> = None;
    let mut retries = 0;
    let mut last_problem = "no server answered".to_string();
    while Instant::now() < deadline {
        let (leader, followers) = candidates(hub, &avoid);
        let pick = match consistency {
            Consistency::Leader => target.take().or(leader),
            Consistency::Linearizable | Consistency::Stale => {
                if followers.is_empty() {
                    leader
                } else {
                    Some(followers[hub.next_turn() % followers.len()])
                }
            }
        };
        let Some(node) = pick.or_else(|| any_node(hub, &avoid)) else {
            avoid.clear();
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let request = Request::Read { key: key.clone(), consistency };
        match ask(hub, node, request, attempt.min(deadline.saturating_duration_since(Instant::now()))).await {
            Outcome::Reply(Reply::Value { value, index }) => {
                hub.stats.record(false, started);
                return ProxyFrame::Done {
                    id,
                    result: OpResult::Get { value },
                    served_by: node,
                    index,
                    retries,
                };
            }
            Outcome::Reply(Reply::Error { error }) => {
                last_problem = format!("node {node}: {error}");
                retries += 1;
                if let ReplyError::NotLeader { leader: Some(l) } = error {
                    target = Some(l);
                } else {
                    avoid.insert(node);
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            Outcome::Reply(Reply::Written { .. }) => {
                last_problem = format!("node {node} answered a read with a write result");
                retries += 1;
            }
            Outcome::NoAnswer => {
                last_problem = format!("node {node} did not answer");
                avoid.insert(node);
                retries += 1;
            }
        }
    }
    let kind = if last_problem.contains("no leader") { ErrorKind::NoLeader } else { ErrorKind::Timeout };
    ProxyFrame::Error {
        id: Some(id),
        error: ApiError::new(
            kind,
            format!("the read did not complete in {:.1} s ({last_problem})", overall.as_secs_f64()),
        ),
    }
}
