//! The cluster as a proxy reports it: every server's process, link and last state, the time
//! control, the configuration, the monitor's alarms and the request statistics.

use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    pub id: NodeId,
    pub address: String,
}

/// Who votes, and who receives the log without a vote yet (a server catching up to join).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

/// The whole cluster as one proxy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeView>,
    /// The leader of the highest term any reachable server knows.
    pub leader: Option<NodeId>,
    pub term: Term,
    pub time_scale: f64,
    pub proxies: Vec<String>,
    /// Whether a supervisor (`consenso cluster`) runs the processes: crash/restart/pause work.
    pub supervised: bool,
    /// Whether time is stopped, and the messages held meanwhile.
    #[serde(default)]
    pub time: TimeStatus,
    /// Safety properties the live invariant monitor saw broken, oldest first.
    #[serde(default)]
    pub alarms: Vec<Alarm>,
    /// The configuration in force, as the leader (else the most recent server) sees it.
    #[serde(default)]
    pub members: Members,
    /// The lesson running on this proxy, if any.
    #[serde(default)]
    pub lesson: Option<LessonStatus>,
    /// Deliberate defects the servers run with (`cluster --bug`); empty in a correct cluster.
    #[serde(default)]
    pub bugs: Vec<Bug>,
    /// Whether this proxy takes writes from clients without the token.
    #[serde(default)]
    pub open_writes: bool,
    /// The file this proxy records to, if it does.
    #[serde(default)]
    pub recording: Option<String>,
    /// Requests this proxy completed recently.
    #[serde(default)]
    pub stats: RequestStats,
    /// Raft messages sent per second across the cluster (pages draw only a sample of them).
    #[serde(default)]
    pub messages_per_s: f64,
}

/// Time in the cluster, as the servers report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeStatus {
    /// Any reachable server's clock is stopped.
    pub stopped: bool,
    /// Messages held or on their way, across the cluster.
    pub held: u64,
    /// The held messages, oldest first (at most `HELD_LISTED`).
    #[serde(default)]
    pub messages: Vec<HeldMessage>,
    /// One-way latency and jitter in force, in ms of cluster time.
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
    /// Whether the latency is the automatic one.
    #[serde(default)]
    pub latency_auto: bool,
}

/// Client requests completed by one proxy over the last few seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestStats {
    pub writes_per_s: f64,
    pub reads_per_s: f64,
    /// Median and 99th percentile latency of writes, in milliseconds.
    pub write_p50_ms: f64,
    pub write_p99_ms: f64,
    pub read_p50_ms: f64,
}

/// One server as a proxy sees it: its process, its link, and its last reported state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: NodeId,
    pub address: String,
    pub pid: Option<u32>,
    /// `up`, `paused`, `crashed` or `unreachable`.
    pub state: ProcessState,
    pub partitioned: bool,
    /// Raft role; `null` when the server cannot be reached (its last word may be stale).
    pub role: Option<crate::raft::Role>,
    pub term: Option<Term>,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<Index>,
    pub commit: Option<Index>,
    pub applied: Option<Index>,
    pub snapshot_index: Option<Index>,
    /// Whether the server's disk was let into the cluster (`HardState::admitted`): false for a
    /// server waiting to be initialized or added, or restarted on an empty disk.
    #[serde(default)]
    pub admitted: Option<bool>,
    /// The full report, when reachable.
    pub status: Option<ServerStatus>,
}

impl NodeView {
    /// A server's view, its summary fields taken from its report (if it answered).
    pub fn new(
        id: NodeId,
        address: String,
        pid: Option<u32>,
        state: ProcessState,
        partitioned: bool,
        status: Option<ServerStatus>,
    ) -> NodeView {
        let r = status.as_ref().map(|s| &s.replica);
        NodeView {
            id,
            address,
            pid,
            state,
            partitioned,
            role: r.map(|r| r.raft.role),
            term: r.map(|r| r.raft.term),
            voted_for: r.and_then(|r| r.raft.voted_for),
            leader: r.and_then(|r| r.raft.leader),
            last_log_index: r.map(|r| r.raft.last_index),
            commit: r.map(|r| r.raft.commit),
            applied: r.map(|r| r.applied),
            snapshot_index: r.map(|r| r.raft.snapshot_index),
            admitted: r.map(|r| r.raft.admitted),
            status,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Up,
    Paused,
    Crashed,
    /// Not supervised here and not answering.
    Unreachable,
}

impl ProcessState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessState::Up => "up",
            ProcessState::Paused => "paused",
            ProcessState::Crashed => "crashed",
            ProcessState::Unreachable => "unreachable",
        }
    }
}
