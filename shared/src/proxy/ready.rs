//! What a proxy is told when it starts, and what it asks its driver to do.

use std::collections::BTreeMap;

use crate::protocol::{ProxyFrame, ServerInbound, SupervisorInbound};
use crate::raft::{Bugs, Millis, NodeId};

/// A client connection, numbered by whoever drives the proxy.
pub type ConnId = u64;

/// What a proxy is told when it starts.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Every proxy of the cluster (`host:port`), told to clients for failover.
    pub proxies: Vec<String>,
    /// The servers it knows at start, by id, with their addresses.
    pub servers: BTreeMap<NodeId, String>,
    /// Whether a supervisor runs the processes (crash, restart, pause, reset, add servers).
    pub supervised: bool,
    /// Whether clients without the token may write.
    pub open_writes: bool,
    /// The file being recorded to, for the status (recording itself is I/O: the driver's).
    pub recording: Option<String>,
    /// Deliberate defects of the proxy itself (the simulator's `retry-without-session`).
    pub bugs: Bugs,
}

/// A link to open or close, because a server joined or left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// Start talking to `node` at `address` (and keep reconnecting).
    Add { node: NodeId, address: String },
    /// Stop talking to `node`: it left the cluster.
    Remove { node: NodeId },
}

/// What the proxy wants done, gathered since the last `ready`. Every field must be acted on,
/// in this order: links first (frames below may be for a server just added), then frames.
#[derive(Debug, Default)]
pub struct Ready {
    /// Links to open or close. A link opened is reported back with `link(node, true)` once
    /// it is up (and `false` each time it drops); a closed one is never reported again.
    pub links: Vec<LinkChange>,
    /// Frames for servers, in order per server. One for a server whose link is down may be
    /// dropped: the proxy fails what waited on it when told the link dropped.
    pub to_servers: Vec<(NodeId, ServerInbound)>,
    /// Answers for client connections (a connection closed meanwhile: drop them).
    pub to_clients: Vec<(ConnId, ProxyFrame)>,
    /// Frames for every subscribed page (and recordings): events, statuses and logs, in order.
    pub publish: Vec<ProxyFrame>,
    /// Requests for the supervisor (their answers come back through `supervisor`).
    pub to_supervisor: Vec<SupervisorInbound>,
    /// What happened worth a line in the proxy's log (alarms, admin commands, lessons).
    pub log: Vec<String>,
    /// Call `tick` at this time (or earlier) even if nothing else comes.
    pub wake_at: Option<Millis>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.to_servers.is_empty()
            && self.to_clients.is_empty()
            && self.publish.is_empty()
            && self.to_supervisor.is_empty()
            && self.log.is_empty()
    }
}
