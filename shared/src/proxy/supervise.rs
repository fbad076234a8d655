//! Asking the supervisor, and the servers the proxy knows — what admin commands and membership
//! steps both rest on.

use crate::protocol::{ApiError, ErrorKind, SupervisorInbound};
use crate::raft::NodeId;

use super::core::Core;
use super::wait::{Answered, wait_supervisor};

/// How long the supervisor may take to carry out a command.
const SUPERVISOR_PATIENCE_MS: u64 = 20_000;

/// The error a client sees for a server that does not exist.
pub(crate) fn known(core: &Core, node: NodeId) -> Result<(), ApiError> {
    let state = core.state();
    if state.servers.contains_key(&node) {
        return Ok(());
    }
    let ids: Vec<String> = state.servers.keys().map(|i| i.to_string()).collect();
    Err(ApiError::new(ErrorKind::BadRequest, format!("there is no node {node} (nodes: {})", ids.join(", "))))
}

/// Asks the supervisor and waits for its answer.
pub(crate) async fn supervise(
    core: &Core,
    make: impl FnOnce(u64) -> SupervisorInbound,
) -> Result<String, ApiError> {
    let (id, deadline) = {
        let mut state = core.state();
        let id = state.ask_supervisor(make)?;
        (id, state.now + SUPERVISOR_PATIENCE_MS)
    };
    loop {
        match wait_supervisor(core, id, deadline).await {
            Answered::Yes(result) => return result,
            Answered::No => return Err(ApiError::new(ErrorKind::Unavailable, "the supervisor went away")),
            Answered::Late if core.now() < deadline => continue,
            Answered::Late => {
                core.state().forget_supervisor(id);
                return Err(ApiError::new(ErrorKind::Timeout, "the supervisor did not answer"));
            }
        }
    }
}
