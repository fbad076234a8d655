//! Adding and removing servers: the supervisor starts or stops the process, the leader changes
//! the configuration (`route::change_membership`), and this proxy starts or stops talking to
//! the server. The order matters: a new server runs before it is added (so that the leader can
//! reach it at once), and a removed one stops only once its removal is committed — whenever
//! that is, even after the command timed out — so that the cluster never waits on a server it
//! still counts. Every decision rests on the *committed* configuration.

use crate::protocol::{ApiError, ErrorKind, Members, SupervisorInbound};
use crate::raft::{MembershipChange, NodeId};

use super::core::Core;
use super::ready::LinkChange;
use super::route;
use super::supervise::{known, supervise};
use super::wait::sleep;

/// Node ids are small positive integers (people say "node 4"); beyond this one is a typo.
pub const MAX_NODE_ID: NodeId = 9_999;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, message)
}

pub(crate) async fn add(
    core: &Core,
    node: Option<NodeId>,
    address: Option<String>,
) -> Result<String, ApiError> {
    let supervised = core.state().supervisor.exists;
    if let Some(id) = node {
        if id == 0 || id > MAX_NODE_ID {
            return Err(bad(format!("node ids go from 1 to {MAX_NODE_ID}; {id} is not one")));
        }
    }
    match (&address, supervised) {
        (Some(address), true) => {
            return Err(bad(format!(
                "this cluster's supervisor starts its servers and chooses where they listen: leave out the \
                 address ({address})"
            )));
        }
        (Some(address), false) => check_address(address)?,
        (None, false) => {
            return Err(ApiError::new(
                ErrorKind::NotSupported,
                "without a supervisor, start the server yourself (`consenso server --id N …` on an empty data \
                 directory: it waits to be added) and give its address",
            ));
        }
        (None, true) => {}
    }
    // A change needs a leader that can make it: without one (an election may be under way,
    // as after a removal), wait as long as a write would; then nothing is started.
    if wait_for_leader(core).await.is_none() {
        return Err(ApiError::new(
            ErrorKind::NoLeader,
            "there is no leader to add a server: nothing was started",
        ));
    }
    // Whether it is a member already is the leader's to say: statuses may lag a removal that
    // just committed.
    let id = node.unwrap_or_else(|| next_free_id(core));
    let address = match address {
        Some(address) => address,
        None => supervise(core, |request| SupervisorInbound::StartServer { id: request, node: id }).await?,
    };
    link(core, id, &address);
    let change = MembershipChange::AddLearner { id, address: address.clone() };
    match route::change_membership(core, change).await {
        Ok(index) => Ok(format!(
            "node {id} at {address} joined as a learner (configuration at index {index}); the leader makes it a \
             voter once it has caught up"
        )),
        Err(error) if error.kind == ErrorKind::Timeout => Err(error),
        Err(error) => {
            // Not added (the configuration says so): nobody keeps a server that is not a member.
            if committed_members(core).is_some_and(|m| m.is_member(id)) {
                return Ok(format!("node {id} at {address} is a member"));
            }
            unlink(core, id);
            if supervised {
                let _ =
                    supervise(core, |request| SupervisorInbound::StopServer { id: request, node: id }).await;
            }
            Err(error)
        }
    }
}

pub(crate) async fn remove(core: &Core, node: NodeId) -> Result<String, ApiError> {
    known(core, node)?;
    // Whatever comes of the request, the server stops once its removal is committed.
    core.state().removing.insert(node);
    let message = match route::change_membership(core, MembershipChange::Remove { id: node }).await {
        Ok(index) => format!("node {node} left the configuration (index {index})"),
        // A retry of a removal that had committed is refused: it is done.
        Err(e)
            if e.kind == ErrorKind::BadRequest
                && committed_members(core).is_some_and(|m| !m.is_member(node)) =>
        {
            format!("node {node} is not a member")
        }
        Err(e) => {
            if e.kind != ErrorKind::Timeout {
                core.state().removing.remove(&node);
            }
            return Err(e);
        }
    };
    let stopped = stop_removed(core, node).await;
    Ok(format!("{message}{stopped}"))
}

/// Stops a removed server: its process (if the supervisor runs it) and this proxy's link.
async fn stop_removed(core: &Core, node: NodeId) -> String {
    core.state().removing.remove(&node);
    unlink(core, node);
    if !core.state().supervisor.exists {
        return String::new();
    }
    match supervise(core, |id| SupervisorInbound::StopServer { id, node }).await {
        Ok(_) => "; its process is stopped".to_string(),
        Err(e) => format!("; its process could not be stopped: {}", e.message),
    }
}

/// Servers whose removal was asked and is now committed (a command that timed out included):
/// stopped now. Called on every status round.
pub(crate) fn stop_those_removed(core: &Core) {
    let done: Vec<NodeId> = {
        let state = core.state();
        let Some(members) = state.members(true) else { return };
        state.removing.iter().copied().filter(|n| !members.is_member(*n)).collect()
    };
    for node in done {
        let task = core.clone();
        let mut state = core.state();
        state.removing.remove(&node);
        state.note(format!("node {node}'s removal is committed: stopping it"));
        state.spawn.spawn(async move {
            stop_removed(&task, node).await;
        });
    }
}

fn link(core: &Core, id: NodeId, address: &str) {
    let mut state = core.state();
    let known = state.servers.get(&id).is_some_and(|s| s.address == address);
    if !known {
        state.servers.insert(id, super::core::ServerView::new(address.to_string()));
        state.out.links.push(LinkChange::Add { node: id, address: address.to_string() });
    }
}

fn unlink(core: &Core, id: NodeId) {
    let mut state = core.state();
    if state.servers.remove(&id).is_some() {
        state.link_lost(id);
        state.out.links.push(LinkChange::Remove { node: id });
    }
}

/// The leader, once there is one, waiting at most a request's patience.
async fn wait_for_leader(core: &Core) -> Option<NodeId> {
    let (_, overall) = route::patience(core);
    let start = core.state().mark();
    loop {
        if let Some(leader) = leader_committed(core) {
            return Some(leader);
        }
        if core.state().running_since(start) >= overall {
            return None;
        }
        sleep(core, LEADER_POLL_MS).await;
    }
}

/// How often to look again for a leader: about a status round.
const LEADER_POLL_MS: crate::raft::Millis = 50;

/// The leader, if one has committed an entry of its term (so it may change membership).
fn leader_committed(core: &Core) -> Option<NodeId> {
    let state = core.state();
    let now = state.now;
    state.servers.iter().find_map(|(id, s)| {
        let raft = &s.fresh(now)?.replica.raft;
        (raft.role == crate::raft::Role::Leader).then_some(*id)
    })
}

fn committed_members(core: &Core) -> Option<Members> {
    core.state().members(true)
}

/// The next id nobody used: past every server known, every member, and every id the
/// supervisor ever gave (a server that left must not come back under its old id with its old
/// disk: it could vote twice in a term).
fn next_free_id(core: &Core) -> NodeId {
    let state = core.state();
    let known = state.servers.keys().max().copied().unwrap_or(0);
    let members =
        state.members(false).map_or(0, |m| m.voters.iter().chain(&m.learners).copied().max().unwrap_or(0));
    let supervised =
        state.supervisor.retired.iter().chain(state.supervisor.processes.keys()).max().copied().unwrap_or(0);
    known.max(members).max(supervised) + 1
}

/// An address another server can reach: `host:port`, with a port.
fn check_address(address: &str) -> Result<(), ApiError> {
    let (host, port) =
        address.rsplit_once(':').ok_or_else(|| bad(format!("'{address}' is not host:port")))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad(format!("'{address}' is not host:port with a port from 1 to 65535")));
    }
    Ok(())
}

impl Members {
    pub fn is_member(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
}
