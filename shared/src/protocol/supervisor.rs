//! Proxies ↔ cluster supervisor: crash, restart, pause, resume, reset, start and stop real
//! processes, and the processes as they are.

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SupervisorInbound {
    Hello {
        version: u32,
        token: String,
    },
    Process {
        id: u64,
        node: NodeId,
        action: ProcessAction,
        /// On restart: the faults the server starts with (a partition, a stopped clock…), so
        /// that it never runs a moment without them.
        #[serde(default)]
        faults: Option<FaultSettings>,
    },
    /// Stop every server, empty their data directories and start them again.
    Reset {
        id: u64,
        #[serde(default)]
        faults: Option<FaultSettings>,
    },
    /// Start a new server `node` on an empty disk, waiting to be added to the configuration;
    /// answered with its address.
    StartServer {
        id: u64,
        node: NodeId,
    },
    /// Stop server `node` for good (it left the configuration) and forget it.
    StopServer {
        id: u64,
        node: NodeId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessAction {
    Crash,
    Restart,
    Pause,
    Resume,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SupervisorOutbound {
    Welcome {
        version: u32,
    },
    Done {
        id: u64,
        result: Result<String, ApiError>,
    },
    Processes {
        processes: Vec<ProcessInfo>,
        /// Bumped by every reset: what observers knew of the cluster before is void.
        #[serde(default)]
        epoch: u64,
        /// Ids of servers that left for good: never given to a new server (its old disk may
        /// still exist somewhere, and a vote it cast would count twice).
        #[serde(default)]
        retired: Vec<NodeId>,
    },
    Error {
        error: ApiError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub node: NodeId,
    pub pid: Option<u32>,
    pub state: ProcessState,
    /// Where the server listens (so that proxies find servers added while they run).
    #[serde(default)]
    pub address: Option<String>,
}
