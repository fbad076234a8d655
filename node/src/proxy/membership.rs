//! Adding and removing servers: the supervisor starts or stops the process, the leader changes
//! the configuration (`routing::change_membership`), and this proxy starts or stops talking
//! to the server. The order matters: a new server runs before it is added (so that the leader
//! can reach it at once), and a removed one stops only after its removal is committed (so
//! that the cluster never waits on a server it still counts).

use std::sync::Arc;

use shared::protocol::{ApiError, ErrorKind, Members, SupervisorInbound};
use shared::raft::{MembershipChange, NodeId};

use super::{Hub, routing};

pub async fn add(hub: &Arc<Hub>, node: Option<NodeId>, address: Option<String>) -> Result<String, ApiError> {
    let mut id = node.unwrap_or_else(|| next_free_id(hub));
    // Whether `id` is a member is the leader's to say (from its configuration, not from a
    // status that may be a moment old): a server removed a moment ago may be added again.
    if address.is_none() && hub.backends.contains_key(&id) {
        return Err(ApiError::new(ErrorKind::BadRequest, format!("node {id} is already a member")));
    }
    let (address, started) = match (address, &hub.supervisor) {
        (Some(address), _) => (address, false),
        (None, Some(supervisor)) => {
            // The supervisor refuses the ids of servers that left (only it knows them all):
            // with no id asked for, take the next one.
            let mut tries = 0;
            loop {
                let asked = SupervisorInbound::StartServer { id: hub.next_id(), node: id };
                match supervisor.ask(asked).await {
                    Ok(address) => break (address, true),
                    Err(e) if node.is_none() && e.message.contains("new id") && tries < 32 => {
                        tries += 1;
                        id += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        (None, None) => {
            return Err(ApiError::new(
                ErrorKind::NotSupported,
                "without a supervisor, start the server yourself (`consenso server --id N …` on an empty data \
                 directory: it waits to be added) and give its address",
            ));
        }
    };
    if hub.backends.get(&id).is_some_and(|b| b.address != address) {
        hub.remove_server(id);
    }
    hub.add_server(id, address.clone());
    let change = MembershipChange::AddLearner { id, address: address.clone() };
    match routing::change_membership(hub, change).await {
        Ok(index) => Ok(format!(
            "node {id} at {address} joined as a learner (configuration at index {index}); the leader makes it \
             a voter once it has caught up"
        )),
        // A retry of a change that had committed is refused as "already a member": it is done.
        Err(_) if settled(|| is_member(hub, id)).await => Ok(format!("node {id} at {address} is a member")),
        Err(error) => {
            // Not added (the configuration says so): nobody should keep a server that is not a
            // member. After an unclear outcome (a timeout) it stays: it may become one.
            if error.kind != ErrorKind::Timeout {
                hub.remove_server(id);
                if let (true, Some(supervisor)) = (started, &hub.supervisor) {
                    let _ =
                        supervisor.ask(SupervisorInbound::StopServer { id: hub.next_id(), node: id }).await;
                }
            }
            Err(error)
        }
    }
}

pub async fn remove(hub: &Arc<Hub>, node: NodeId) -> Result<String, ApiError> {
    let mut message = match routing::change_membership(hub, MembershipChange::Remove { id: node }).await {
        Ok(index) => format!("node {node} left the configuration (index {index})"),
        // A retry of a removal that had committed is refused: the server is no longer a member.
        Err(e)
            if e.kind == ErrorKind::BadRequest
                && hub.backends.contains_key(&node)
                && settled(|| !is_member(hub, node)).await =>
        {
            format!("node {node} is not a member")
        }
        Err(e) => return Err(e),
    };
    if let Some(supervisor) = &hub.supervisor {
        match supervisor.ask(SupervisorInbound::StopServer { id: hub.next_id(), node }).await {
            Ok(_) => message.push_str("; its process is stopped"),
            Err(e) => message.push_str(&format!("; its process could not be stopped: {}", e.message)),
        }
    }
    hub.remove_server(node);
    Ok(message)
}

fn is_member(hub: &Hub, id: NodeId) -> bool {
    members(hub).is_some_and(|m| m.voters.contains(&id) || m.learners.contains(&id))
}

/// Whether `holds` becomes true within a second (statuses arrive four times a second).
async fn settled(holds: impl Fn() -> bool) -> bool {
    for _ in 0..8 {
        if holds() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(125)).await;
    }
    holds()
}

/// The configuration in force as the leader (else the most recent server) reports it.
pub fn members(hub: &Hub) -> Option<Members> {
    hub.backends
        .values()
        .filter_map(|b| {
            b.fresh(|s| {
                let raft = &s.replica.raft;
                let leads = raft.role == shared::raft::Role::Leader;
                (
                    (leads, raft.term, raft.last_index),
                    Members { voters: raft.voters.clone(), learners: raft.learners.clone() },
                )
            })
        })
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, members)| members)
}

fn next_free_id(hub: &Hub) -> NodeId {
    let known = hub.backends.keys().max().unwrap_or(0);
    let members = members(hub).map_or(0, |m| m.voters.iter().chain(&m.learners).copied().max().unwrap_or(0));
    known.max(members) + 1
}
