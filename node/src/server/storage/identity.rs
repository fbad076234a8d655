//! Who a data directory belongs to: the file `identity`, written before anything else.
//!
//! It names the server (`node`) and, once known, its cluster (`cluster`, a random id made
//! when `consenso init` created the cluster). A server created with the cluster also keeps
//! the first configuration (`first_voters`): it is the only place a voter of the first
//! configuration learns that it is one, so a server whose directory lost this file — an
//! emptied directory, a lost volume — can never take itself for a voter of a new cluster
//! (`HardState::admitted` in the core says what it may do instead).

use serde::{Deserialize, Serialize};
use shared::raft::NodeId;

/// The data directory format this build writes and reads.
pub const FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub format: u32,
    pub node: NodeId,
    /// The cluster this directory's data belongs to; `None` until the server is initialized or
    /// first contacted by a member of a cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The voters of the cluster's first configuration, for a server created with it; empty
    /// for a server added later (it learns the configuration from the leader that adds it).
    #[serde(default)]
    pub first_voters: Vec<NodeId>,
}

impl Identity {
    /// A directory just claimed by `node`, which belongs to no cluster yet.
    pub fn unclaimed(node: NodeId) -> Identity {
        Identity { format: FORMAT, node, cluster: None, first_voters: Vec::new() }
    }
}
