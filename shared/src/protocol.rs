//! The JSON protocol spoken over WebSockets. Every frame is one JSON object with a `"type"`
//! field; `docs/protocol.md` documents each with examples.
//!
//! Three conversations:
//!
//! - **Clients and pages ↔ proxy** (`ClientFrame` / `ProxyFrame`): writes, reads, status, admin
//!   commands, and for pages the live observation stream.
//! - **Proxies and peers ↔ server** (`ServerInbound` / `ServerOutbound`): Raft messages between
//!   servers; client requests, fault commands and the observation stream between a proxy and a
//!   server.
//! - **Proxies ↔ cluster supervisor** (`SupervisorInbound` / `SupervisorOutbound`): crash,
//!   restart, pause and resume real processes.
//!
//! Every conversation opens with a `hello` carrying the protocol version and, where required,
//! the shared token.

use serde::{Deserialize, Serialize};

use crate::event::{Alarm, Consistency, EntrySummary, LogMirror, MessageSummary, Observed};
use crate::kv::{ClientId, WriteResult};
use crate::lesson::{LessonAction, LessonStatus};
use crate::raft::{Bug, Index, Message, MessageId, MessageKind, Millis, NodeId, Term};
use crate::replica::{ReplicaStatus, Reply, Request};

/// Bumped on any incompatible change; peers with another version are refused with a clear error.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame accepted, in bytes. Snapshots of the demo store fit well within it.
pub const MAX_FRAME_BYTES: usize = 8 << 20;

/// Largest write (its command as JSON): it must fit in one frame between nodes with room for
/// the message around it. The same limit holds a read's key: no longer key can be stored.
pub const MAX_WRITE_BYTES: usize = MAX_FRAME_BYTES - (64 << 10);

/// What a command's session numbers add to its operation, as JSON, at most.
const SESSION_JSON_BYTES: usize = 128;

/// Why an operation cannot fit in a frame between nodes, if it cannot: `bytes` is its size as
/// JSON with the session around it. Checked before a write takes a sequence number (a write
/// refused here never reaches the log) and for a read's key.
pub fn too_large(op: &crate::kv::WriteOp) -> Option<ApiError> {
    let bytes = serde_json::to_vec(op).map_or(usize::MAX, |json| json.len()) + SESSION_JSON_BYTES;
    (bytes > MAX_WRITE_BYTES).then(|| {
        ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "the write takes {bytes} bytes; one write may take at most {MAX_WRITE_BYTES} (it must fit in one \
                 frame between nodes)"
            ),
        )
    })
}

/// As `too_large`, for a read of `key`.
pub fn key_too_large(key: &str) -> Option<ApiError> {
    (key.len() + SESSION_JSON_BYTES > MAX_WRITE_BYTES).then(|| {
        ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "the key takes {} bytes; keys and values may take at most {MAX_WRITE_BYTES} together, so no such \
                 key is stored",
                key.len()
            ),
        )
    })
}

/// Longest injected delay, latency or jitter, in ms of cluster time.
pub const MAX_DELAY_MS: u64 = 10_000;

// ---------------------------------------------------------------- client ↔ proxy

/// A write's identity for exactly-once application: retries carry the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub client: ClientId,
    pub seq: u64,
    /// The client knows the outcome of each of its writes numbered below this (answered
    /// `done` or refused; a `timeout` is not an outcome). Lets the cluster forget their results
    /// and refuse late copies. Absent: the cluster keeps the last 256 results of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_below: Option<u64>,
}

/// Frames a client or page sends to a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Hello {
        version: u32,
        #[serde(default)]
        token: Option<String>,
        /// Receive the observation stream (pages do; the CLI client does not).
        #[serde(default)]
        subscribe: bool,
    },
    Put {
        id: u64,
        key: String,
        value: String,
        #[serde(default)]
        session: Option<Session>,
    },
    Get {
        id: u64,
        key: String,
        #[serde(default)]
        consistency: Consistency,
    },
    Delete {
        id: u64,
        key: String,
        #[serde(default)]
        session: Option<Session>,
    },
    Cas {
        id: u64,
        key: String,
        expected: Option<String>,
        new: String,
        #[serde(default)]
        session: Option<Session>,
    },
    Status {
        id: u64,
    },
    Admin {
        id: u64,
        command: AdminCommand,
    },
    /// Opens a write session (dissertation §6.3), for a client that numbers its own writes —
    /// one that may fail over between proxies. Answered `registered` with its `client` id.
    Register {
        id: u64,
    },
}

impl ClientFrame {
    /// The id its answer will carry (`None` for a hello).
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientFrame::Hello { .. } => None,
            ClientFrame::Put { id, .. }
            | ClientFrame::Get { id, .. }
            | ClientFrame::Delete { id, .. }
            | ClientFrame::Cas { id, .. }
            | ClientFrame::Status { id }
            | ClientFrame::Admin { id, .. }
            | ClientFrame::Register { id } => Some(*id),
        }
    }
}

/// What an admin (holder of the token) may do to the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminCommand {
    /// Kill the server process (SIGKILL).
    Crash { node: NodeId },
    /// Start a crashed server again on its data directory.
    Restart { node: NodeId },
    /// Freeze the process (SIGSTOP), as a long GC pause or a hung VM would.
    Pause { node: NodeId },
    /// Thaw it (SIGCONT).
    Resume { node: NodeId },
    /// Split servers into groups that cannot talk to each other; servers not listed form one
    /// more group.
    Partition { groups: Vec<Vec<NodeId>> },
    /// Lose every message from `from` to `to` (a one-way partition).
    Block { from: NodeId, to: NodeId },
    /// Remove all partitions, blocks, loss and delay.
    Heal,
    /// Lose this fraction (0–1) of the messages a server sends (all servers if `node` is null).
    Drop { node: Option<NodeId>, rate: f64 },
    /// Delay every message a server sends by this many milliseconds (all servers if null).
    Delay { node: Option<NodeId>, ms: u64 },
    /// Stretch every timeout by this factor (10 = ten times slower) for slow-motion teaching.
    TimeScale { scale: f64 },
    /// Ask the leader to hand leadership to `to` (dissertation §3.10).
    TransferLeadership { to: NodeId },
    /// Stop every server's clock: no timer fires, and every message sent from now on (and
    /// every one still on its way) is held until a step releases it.
    StopTime,
    /// Let the clocks run again; held messages continue their journeys.
    StartTime,
    /// Deliver the oldest held message (in send order), `count` times; when nothing is held,
    /// advance the clocks to the next timer instead. Stops time first if it runs.
    Step { count: u32 },
    /// Deliver one held message now (from any server).
    DeliverMessage { id: MessageId },
    /// Drop one held or travelling message (from any server).
    DropMessage { id: MessageId },
    /// Run one server's clock forward to its next timer (its election timer, on a follower).
    FireTimer { node: NodeId },
    /// Move clocks forward by `ms` (every server's, or one's).
    Advance { node: Option<NodeId>, ms: u64 },
    /// One-way network latency and jitter in ms of cluster time (scaled by slow motion like
    /// every timeout); `null` for automatic: none at real speed, a tenth of the election
    /// timeout in slow motion.
    Latency { ms: Option<u64>, jitter_ms: Option<u64> },
    /// Most entries per AppendEntries (`null`: the servers' own setting). 1 shows entries
    /// travelling one by one.
    BatchSize { entries: Option<u32> },
    /// Take a snapshot and compact the log now (one server or all).
    Snapshot { node: Option<NodeId> },
    /// Restart the whole cluster on empty disks, with the network healed and time running.
    Reset,
    /// Start, advance or stop a lesson (see `consenso scenario list`).
    Lesson { action: LessonAction },
    /// Let clients without the token write (students), or only admins again. Per proxy.
    OpenWrites { open: bool },
    /// Start recording everything the pages see to a file on the proxy's machine (`file`, or
    /// `consenso-<time>.rec` in its working directory), or stop. Per proxy.
    Record {
        on: bool,
        #[serde(default)]
        file: Option<String>,
    },
    /// A new server joins: the supervisor starts it on an empty disk (id `node`, or the next
    /// free one) — or, without a supervisor, it already runs at `address`, waiting — and
    /// the leader adds it as a learner, promoting it to voter once it has caught up.
    AddServer {
        #[serde(default)]
        node: Option<NodeId>,
        #[serde(default)]
        address: Option<String>,
    },
    /// A server leaves the configuration (the leader hands over first if it is the one); the
    /// supervisor then stops its process. To replace a server whose disk was lost, remove it
    /// and add a new one: it must not come back under its old id.
    RemoveServer { node: NodeId },
}

impl AdminCommand {
    /// A short description for logs and the page's timeline.
    pub fn describe(&self) -> String {
        match self {
            AdminCommand::Crash { node } => format!("crash node {node}"),
            AdminCommand::Restart { node } => format!("restart node {node}"),
            AdminCommand::Pause { node } => format!("pause node {node}"),
            AdminCommand::Resume { node } => format!("resume node {node}"),
            AdminCommand::Partition { groups } => {
                let groups: Vec<String> = groups
                    .iter()
                    .map(|g| g.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","))
                    .collect();
                format!("partition {}", groups.join(" | "))
            }
            AdminCommand::Block { from, to } => format!("block messages {from} → {to}"),
            AdminCommand::Heal => "heal the network".to_string(),
            AdminCommand::Drop { node: Some(n), rate } => {
                format!("drop {:.0}% of node {n}'s messages", rate * 100.0)
            }
            AdminCommand::Drop { node: None, rate } => format!("drop {:.0}% of all messages", rate * 100.0),
            AdminCommand::Delay { node: Some(n), ms } => format!("delay node {n}'s messages by {ms} ms"),
            AdminCommand::Delay { node: None, ms } => format!("delay all messages by {ms} ms"),
            AdminCommand::TimeScale { scale } => format!("time scale ×{scale}"),
            AdminCommand::TransferLeadership { to } => format!("transfer leadership to node {to}"),
            AdminCommand::StopTime => "stop time".to_string(),
            AdminCommand::StartTime => "start time".to_string(),
            AdminCommand::Step { count: 1 } => "step".to_string(),
            AdminCommand::Step { count } => format!("{count} steps"),
            AdminCommand::DeliverMessage { id } => format!("deliver message #{id}"),
            AdminCommand::DropMessage { id } => format!("drop message #{id}"),
            AdminCommand::FireTimer { node } => format!("fire node {node}'s timer"),
            AdminCommand::Advance { node: Some(n), ms } => format!("advance node {n}'s clock by {ms} ms"),
            AdminCommand::Advance { node: None, ms } => format!("advance the clocks by {ms} ms"),
            AdminCommand::Latency { ms: Some(ms), jitter_ms } => {
                format!("latency {ms} ms (jitter {} ms)", jitter_ms.map_or("auto".into(), |j| j.to_string()))
            }
            AdminCommand::Latency { ms: None, .. } => "automatic latency".to_string(),
            AdminCommand::BatchSize { entries: Some(n) } => format!("at most {n} entries per AppendEntries"),
            AdminCommand::BatchSize { entries: None } => "default AppendEntries batches".to_string(),
            AdminCommand::Snapshot { node: Some(n) } => format!("snapshot node {n}"),
            AdminCommand::Snapshot { node: None } => "snapshot every node".to_string(),
            AdminCommand::Reset => "reset the cluster".to_string(),
            AdminCommand::Lesson { action } => action.describe(),
            AdminCommand::OpenWrites { open: true } => "let everyone write".to_string(),
            AdminCommand::OpenWrites { open: false } => "writes need the token again".to_string(),
            AdminCommand::Record { on: true, .. } => "start recording".to_string(),
            AdminCommand::Record { on: false, .. } => "stop recording".to_string(),
            AdminCommand::AddServer { node: Some(n), .. } => format!("add server {n}"),
            AdminCommand::AddServer { node: None, .. } => "add a server".to_string(),
            AdminCommand::RemoveServer { node } => format!("remove server {node}"),
        }
    }
}

/// Frames a proxy sends to a client or page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProxyFrame {
    Welcome {
        version: u32,
        /// Whether the token was accepted: admin commands allowed.
        admin: bool,
        /// Every proxy of the cluster, for clients and pages to fail over to.
        proxies: Vec<String>,
        nodes: Vec<NodeAddress>,
        /// For subscribers: the cluster as it is now, so that the first frame is a whole
        /// picture; events and statuses follow.
        #[serde(default)]
        picture: Option<Box<Picture>>,
    },
    /// A request succeeded.
    Done {
        id: u64,
        result: OpResult,
        /// The server that answered (for reads: a follower, unless asked otherwise).
        served_by: NodeId,
        /// The log index the answer reflects.
        index: Index,
        /// How many times the proxy had to retry (leader changes, timeouts).
        retries: u32,
    },
    /// A session opened (`register`): number writes from 1 with this client id.
    Registered {
        id: u64,
        client: crate::kv::ClientId,
    },
    Error {
        /// The request this answers; `null` for errors about the connection itself.
        id: Option<u64>,
        error: ApiError,
    },
    Status {
        id: Option<u64>,
        cluster: Box<ClusterStatus>,
    },
    /// Observation events from every server, in arrival order.
    Events {
        events: Vec<Observed>,
    },
    /// A server's log (its newest entries), sent when a server (re)subscribes or events were
    /// lost. `skipped` entries between the snapshot and the first one sent are not included.
    Log {
        node: NodeId,
        snapshot_index: Index,
        snapshot_term: Term,
        #[serde(default)]
        skipped: Index,
        entries: Vec<EntrySummary>,
    },
    AdminDone {
        id: u64,
        message: String,
    },
}

/// The cluster's status and every server's log at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Picture {
    pub cluster: ClusterStatus,
    pub logs: Vec<(NodeId, LogMirror)>,
    /// The latest events worth a line in the timeline (oldest first), so that a page that
    /// opens late sees what happened just before.
    #[serde(default)]
    pub recent: Vec<Observed>,
}

/// The outcome of a client operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpResult {
    Put { previous: Option<String> },
    Get { value: Option<String> },
    Delete { existed: bool },
    Cas { swapped: bool, current: Option<String> },
}

impl OpResult {
    /// What a client is told of an applied (or refused) write: its result, or why it was not
    /// applied.
    pub fn of_write(result: WriteResult) -> Result<OpResult, ApiError> {
        Ok(match result {
            WriteResult::StaleSequence { last_applied } => {
                return Err(ApiError::new(
                    ErrorKind::StaleSession,
                    format!(
                        "not applied: this session has forgotten the results of sequence numbers up to \
                     {last_applied} (below its answered_below, or more than 256 ago); use a higher one"
                    ),
                ));
            }
            WriteResult::SessionConflict => {
                return Err(ApiError::new(
                    ErrorKind::SessionConflict,
                    "not applied: this session already used this sequence number for another write",
                ));
            }
            WriteResult::SessionExpired => {
                return Err(ApiError::new(
                    ErrorKind::SessionExpired,
                    "not applied: the cluster has forgotten this session (too many clients since); \
                 start a new session (another client id) — if this was a retry, its earlier outcome is unknown",
                ));
            }
            WriteResult::StoreFull { limit } => {
                return Err(ApiError::new(
                    ErrorKind::StoreFull,
                    format!(
                        "not applied: the store is at its limit of {limit} bytes of keys and values; delete something"
                    ),
                ));
            }
            WriteResult::Put { previous } => OpResult::Put { previous },
            WriteResult::Delete { existed } => OpResult::Delete { existed },
            WriteResult::Cas { swapped, current } => OpResult::Cas { swapped, current },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// Every error a client can see. All but `BadRequest`, `Unauthorized`, `VersionMismatch` and
/// `FrameTooLarge` are worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed JSON, an unknown `type`, a missing field.
    BadRequest,
    /// The frame exceeds `MAX_FRAME_BYTES`.
    FrameTooLarge,
    /// Admin command or peer connection without the right token.
    Unauthorized,
    VersionMismatch,
    /// No leader is known (an election is under way, or no majority is up).
    NoLeader,
    /// The operation did not complete in time. A write may or may not have been applied; retry
    /// it with the same session to find out without applying it twice.
    Timeout,
    /// No server (or supervisor) could be reached.
    Unavailable,
    /// The command needs something this deployment lacks (e.g. restart without a supervisor).
    NotSupported,
    /// The write's sequence number is below what the session has said it knows (or older than
    /// the 256 results a session keeps): it was not applied now, and its result is forgotten.
    StaleSession,
    /// The session already has a write with this sequence number, and it was another write.
    SessionConflict,
    /// The session was forgotten (too many clients since): a retry is refused rather than
    /// risk applying it twice. Start a new session.
    SessionExpired,
    /// The store is at its configured size limit: the write changed nothing.
    StoreFull,
    /// The write cannot fit in one frame between nodes.
    TooLarge,
    /// The server belongs to another cluster (or was initialized differently): a peer from
    /// another cluster, or `init` of a server that is already a member.
    WrongCluster,
}

impl ErrorKind {
    /// Every kind, for counters and documentation checks.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::BadRequest,
        ErrorKind::FrameTooLarge,
        ErrorKind::Unauthorized,
        ErrorKind::VersionMismatch,
        ErrorKind::NoLeader,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
        ErrorKind::NotSupported,
        ErrorKind::StaleSession,
        ErrorKind::SessionConflict,
        ErrorKind::SessionExpired,
        ErrorKind::StoreFull,
        ErrorKind::TooLarge,
        ErrorKind::WrongCluster,
    ];

    /// Whether a write answered with this error certainly did not take effect, so the client
    /// knows its outcome. After a `timeout` (or a lost proxy) it may still be applied.
    pub fn outcome_is_known(self) -> bool {
        !matches!(self, ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::NoLeader)
    }

    /// Whether a write answered with this error certainly had no effect, ever: it never
    /// reached the log, or was applied as a no-op. (`stale_session` and `session_expired`
    /// refuse a copy, but an earlier copy may have been applied.)
    pub fn had_no_effect(self) -> bool {
        matches!(
            self,
            ErrorKind::BadRequest
                | ErrorKind::FrameTooLarge
                | ErrorKind::Unauthorized
                | ErrorKind::VersionMismatch
                | ErrorKind::NotSupported
                | ErrorKind::SessionConflict
                | ErrorKind::StoreFull
                | ErrorKind::TooLarge
                | ErrorKind::WrongCluster
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::FrameTooLarge => "frame_too_large",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::VersionMismatch => "version_mismatch",
            ErrorKind::NoLeader => "no_leader",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NotSupported => "not_supported",
            ErrorKind::StaleSession => "stale_session",
            ErrorKind::SessionConflict => "session_conflict",
            ErrorKind::SessionExpired => "session_expired",
            ErrorKind::StoreFull => "store_full",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::WrongCluster => "wrong_cluster",
        }
    }
}

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

/// Held messages listed in a status at most.
pub const HELD_LISTED: usize = 100;

/// A message waiting in its sender's network queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMessage {
    pub id: MessageId,
    pub from: NodeId,
    pub to: NodeId,
    pub kind: MessageKind,
    pub term: Term,
    pub message: MessageSummary,
    /// When it left and when it arrives, on the sender's clock.
    pub sent_at: Millis,
    pub due: Millis,
    /// Wall-clock milliseconds at sending, for ordering messages of different senders.
    pub stamp: u64,
}

impl HeldMessage {
    /// Sorts held messages of every server in the order they were sent.
    pub fn send_order(&self) -> (u64, NodeId, MessageId) {
        (self.stamp, self.from, self.id)
    }
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

/// Nodes on one side of a partition, and the nodes outside it.
pub type PartitionGroup = (std::collections::BTreeSet<NodeId>, Vec<NodeId>);

/// A partition request made whole: every node in exactly one group, the unlisted ones forming
/// one more. Each group with the nodes outside it (whom its members stop hearing).
pub fn partition_groups(
    all: &std::collections::BTreeSet<NodeId>,
    groups: Vec<Vec<NodeId>>,
) -> Result<Vec<PartitionGroup>, ApiError> {
    use std::collections::BTreeSet;
    let mut groups: Vec<BTreeSet<NodeId>> = groups.into_iter().map(|g| g.into_iter().collect()).collect();
    let listed: BTreeSet<NodeId> = groups.iter().flatten().copied().collect();
    if listed.len() != groups.iter().map(BTreeSet::len).sum::<usize>() {
        return Err(ApiError::new(ErrorKind::BadRequest, "a node appears in two groups"));
    }
    let rest: BTreeSet<NodeId> = all.difference(&listed).copied().collect();
    if !rest.is_empty() {
        groups.push(rest);
    }
    Ok(groups
        .into_iter()
        .map(|g| {
            let outside = all.difference(&g).copied().collect();
            (g, outside)
        })
        .collect())
}

/// How a partition is described: "1,2 | 3,4,5".
pub fn describe_groups<'a>(groups: impl Iterator<Item = &'a std::collections::BTreeSet<NodeId>>) -> String {
    let shown: Vec<String> =
        groups.map(|g| g.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")).collect();
    shown.join(" | ")
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

// ---------------------------------------------------------------- proxy/peer ↔ server

/// Who opens a connection to a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Caller {
    /// Another server, which will send Raft messages, and the cluster it belongs to (none yet
    /// for a server waiting to be initialized or added). Servers of different clusters refuse
    /// each other.
    Peer {
        node: NodeId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster: Option<String>,
    },
    /// A proxy, which sends client requests and fault commands and may subscribe.
    Proxy,
}

/// Frames sent to a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerInbound {
    Hello {
        version: u32,
        token: String,
        caller: Caller,
    },
    /// Raft traffic from a peer, several messages per frame when they queue up.
    Raft {
        messages: Vec<Message>,
    },
    /// A client request, forwarded by a proxy.
    Request {
        id: u64,
        request: Request,
    },
    /// Start streaming events, status and the log.
    Subscribe,
    /// Change this server's injected faults.
    Faults {
        faults: FaultSettings,
    },
    /// Hand leadership to `to` (only meaningful on the leader).
    Transfer {
        to: NodeId,
    },
    /// Exit at once without cleanup, as a crash would (used when no supervisor can SIGKILL).
    Crash,
    /// Inspect or act on this server's clock and held messages; answered with `time`.
    Time {
        id: u64,
        command: TimeCommand,
    },
    /// Take a snapshot at the applied index and compact the log now.
    Snapshot,
    /// Make this server, whose disk is empty, a voter of a new cluster `cluster` whose first
    /// configuration is `voters` (`consenso init`). Answered with `done`; refused with
    /// `wrong_cluster` by a server that holds any state.
    Bootstrap {
        id: u64,
        cluster: String,
        voters: Vec<NodeId>,
    },
}

/// What a proxy asks of a server's clock and network queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum TimeCommand {
    /// Only report.
    Report,
    /// Deliver these held messages now (after a short, visible journey).
    Release { ids: Vec<MessageId> },
    /// Drop these held messages.
    Drop { ids: Vec<MessageId> },
    /// Move the clock forward by `ms`, firing the timers that come due.
    Advance { ms: Millis },
}

/// A server's clock and held messages, after a `TimeCommand`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeReport {
    pub node: NodeId,
    pub now: Millis,
    pub stopped: bool,
    /// When the next timer fires, on this server's clock.
    pub next_deadline: Millis,
    /// Every message in this server's network queue, in send order.
    pub held: Vec<HeldMessage>,
    /// Messages of the command found and acted on, with the real time (ms) they travel.
    pub acted: Vec<(MessageId, u64)>,
}

/// Frames a server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerOutbound {
    /// The answer to a hello: who this is, and the cluster its disk belongs to (none yet while
    /// it waits to be initialized or added).
    Welcome {
        version: u32,
        node: NodeId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster: Option<String>,
    },
    /// The answer to `bootstrap`.
    Done {
        id: u64,
        result: Result<String, ApiError>,
    },
    Reply {
        id: u64,
        reply: Reply,
    },
    Events {
        events: Vec<Observed>,
        /// Counts event frames from 1; a gap tells the proxy it missed some.
        #[serde(default)]
        seq: u64,
    },
    Status {
        status: Box<ServerStatus>,
    },
    Log {
        snapshot_index: Index,
        snapshot_term: Term,
        #[serde(default)]
        skipped: Index,
        entries: Vec<EntrySummary>,
    },
    Error {
        error: ApiError,
    },
    Time {
        id: u64,
        report: TimeReport,
    },
}

/// The faults a server injects into its own traffic, as set by admin commands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// Peers this server neither sends to nor accepts messages from... per direction:
    /// `blocked_to`: messages to these peers are lost.
    pub blocked_to: Vec<NodeId>,
    /// Messages from these peers are lost.
    pub blocked_from: Vec<NodeId>,
    /// Fraction of outgoing messages lost (0–1).
    pub drop_rate: f64,
    /// Extra delay for every outgoing message.
    pub delay_ms: u64,
    /// Timeouts are multiplied by this (1 = real time).
    pub time_scale: f64,
    /// One-way latency of every message in ms of cluster time; `None`: automatic.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Up to this much more per message (uniform); `None`: half the latency.
    #[serde(default)]
    pub jitter_ms: Option<u64>,
    /// The clock is stopped: no timer fires and messages wait.
    #[serde(default)]
    pub time_stopped: bool,
    /// Most entries per AppendEntries; `None`: the server's own setting.
    #[serde(default)]
    pub max_entries: Option<u32>,
}

impl FaultSettings {
    pub fn normal() -> FaultSettings {
        FaultSettings { time_scale: 1.0, ..FaultSettings::default() }
    }

    pub fn partitioned(&self) -> bool {
        !self.blocked_to.is_empty() || !self.blocked_from.is_empty()
    }

    /// What the network does to this server's messages, given its base election timeout
    /// (automatic latency depends on it).
    pub fn network_policy(&self, election_timeout: Millis) -> crate::transit::NetworkPolicy {
        let (latency, jitter) = self.latency(election_timeout);
        crate::transit::NetworkPolicy {
            latency,
            jitter,
            extra_delay: self.delay_ms,
            drop_ppm: (self.drop_rate.clamp(0.0, 1.0) * 1_000_000.0) as u32,
            blocked_to: self.blocked_to.clone(),
        }
    }

    /// The latency and jitter in force, given the server's base election timeout: automatic
    /// latency is none at real speed (the network is what it is) and, in slow motion, a tenth of
    /// the election timeout, so that a vote's round trip can be seen, as in RaftScope.
    pub fn latency(&self, election_timeout: Millis) -> (Millis, Millis) {
        let latency =
            self.latency_ms.unwrap_or(if self.time_scale >= 2.0 { election_timeout / 10 } else { 0 });
        (latency, self.jitter_ms.unwrap_or(latency / 2))
    }
}

/// A server's periodic report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    #[serde(flatten)]
    pub replica: ReplicaStatus,
    pub pid: u32,
    pub address: String,
    /// The server's clock (scaled milliseconds), against which deadlines are given.
    pub now: u64,
    pub faults: FaultSettings,
    /// The first 50 keys of the store with values clipped to 48 bytes, for the page's table.
    /// `null` in the statuses a proxy broadcasts every 250 ms when it has not changed since the
    /// previous one (keep the last); always present in the answer to `status` and in `picture`.
    pub kv: Option<Vec<(String, String)>>,
    pub kv_truncated: bool,
    /// Resident memory, if the OS tells.
    pub rss_bytes: Option<u64>,
    /// The clock and the network queue.
    #[serde(default)]
    pub clock: ClockStatus,
    /// Deliberate defects this server runs with (`--bug`).
    #[serde(default)]
    pub bugs: Vec<Bug>,
}

/// Keys of the store included in a status report, and how much of each key and value: a
/// status goes to every page four times a second and must stay small whatever the store holds.
pub const STATUS_KEYS: usize = 50;
pub const STATUS_VALUE_BYTES: usize = 48;

/// The store as a status shows it: its first keys, clipped, and whether anything was left out.
pub fn kv_sample(kv: &crate::kv::KvStore) -> (Vec<(String, String)>, bool) {
    let sample = kv.iter().take(STATUS_KEYS).map(|(k, v)| (clip(k), clip(v))).collect();
    let truncated = kv.len() > STATUS_KEYS
        || kv
            .iter()
            .take(STATUS_KEYS)
            .any(|(k, v)| k.len() > STATUS_VALUE_BYTES || v.len() > STATUS_VALUE_BYTES);
    (sample, truncated)
}

/// The start of a key or value, for a status report (`…` marks what was cut).
fn clip(text: &str) -> String {
    if text.len() <= STATUS_VALUE_BYTES {
        return text.to_string();
    }
    let mut cut = STATUS_VALUE_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// A server's clock and what waits in its network queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockStatus {
    pub stopped: bool,
    /// When its next timer fires (same clock as `now`).
    pub next_deadline: Millis,
    /// Latency and jitter in force, in ms of cluster time.
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Messages queued, and the oldest of them (at most `HELD_LISTED`).
    pub held_count: u64,
    pub held: Vec<HeldMessage>,
    /// Messages sent since the server started (observers get only a sample at real speed).
    #[serde(default)]
    pub messages_sent: u64,
}

// ---------------------------------------------------------------- proxy ↔ supervisor

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

/// Parses a frame, turning every failure into the protocol's own error.
pub fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, ApiError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(ApiError::new(
            ErrorKind::FrameTooLarge,
            format!("frame of {} bytes exceeds {MAX_FRAME_BYTES}", text.len()),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() { "malformed JSON" } else { "unexpected frame" };
        ApiError::new(ErrorKind::BadRequest, format!("{what}: {e}"))
    })
}

/// Serializes a frame. Our frames contain no maps with non-string keys, so this cannot fail.
pub fn encode<T: Serialize>(frame: &T) -> String {
    serde_json::to_string(frame).expect("protocol frames always serialize")
}

/// Parses `A,B/C` (groups separated by `/`, members by `,`) into groups of node ids. One group
/// alone (`3`) is cut off from all the others, as the `partition` command does with unlisted
/// servers.
pub fn parse_partition(spec: &str) -> Result<Vec<Vec<NodeId>>, String> {
    let groups: Result<Vec<Vec<NodeId>>, String> = spec
        .split('/')
        .map(|group| {
            group
                .split(',')
                .map(|n| {
                    n.trim().parse::<NodeId>().map_err(|_| format!("'{n}' is not a node id in '{spec}'"))
                })
                .collect()
        })
        .collect();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_as_tagged_json() {
        let frame = ClientFrame::Put { id: 1, key: "k".into(), value: "v".into(), session: None };
        let text = encode(&frame);
        assert_eq!(text, r#"{"type":"put","id":1,"key":"k","value":"v","session":null}"#);
        assert_eq!(parse::<ClientFrame>(&text), Ok(frame));
    }

    #[test]
    fn omitted_optional_fields_take_defaults() {
        let frame: ClientFrame = parse(r#"{"type":"get","id":3,"key":"x"}"#).unwrap();
        assert_eq!(
            frame,
            ClientFrame::Get { id: 3, key: "x".into(), consistency: Consistency::Linearizable }
        );
    }

    #[test]
    fn malformed_unknown_and_oversized_frames_are_typed_errors() {
        assert_eq!(parse::<ClientFrame>("{not json").unwrap_err().kind, ErrorKind::BadRequest);
        let unknown = parse::<ClientFrame>(r#"{"type":"launch_missiles","id":1}"#).unwrap_err();
        assert_eq!(unknown.kind, ErrorKind::BadRequest);
        assert!(unknown.message.contains("launch_missiles"), "{}", unknown.message);
        let big = format!(r#"{{"type":"put","id":1,"key":"k","value":"{}"}}"#, "x".repeat(MAX_FRAME_BYTES));
        assert_eq!(parse::<ClientFrame>(&big).unwrap_err().kind, ErrorKind::FrameTooLarge);
    }

    #[test]
    fn partition_specs() {
        assert_eq!(parse_partition("1,2/3"), Ok(vec![vec![1, 2], vec![3]]));
        assert_eq!(parse_partition("3"), Ok(vec![vec![3]]));
        assert!(parse_partition("1,x/3").is_err());
    }
}

#[cfg(test)]
mod snapshot_frame_tests {
    use super::*;
    use crate::kv::{Command, KvStore, WriteOp};
    use crate::raft::{Body, Configuration, SnapshotMeta};

    #[test]
    fn a_snapshot_with_sessions_crosses_the_wire() {
        let mut kv = KvStore::new();
        kv.apply(
            1,
            &Command {
                client: 7,
                seq: 1,
                op: WriteOp::Put { key: "k".into(), value: "v".into() },
                answered_below: 0,
            },
        );
        let meta = SnapshotMeta { index: 1, term: 1, config: Configuration::new([1, 2, 3]) };
        let data = serde_json::to_vec(&kv).unwrap();
        let frame = ServerInbound::Raft {
            messages: vec![Message {
                id: 0,
                from: 1,
                to: 2,
                term: 1,
                body: Body::InstallSnapshot { meta, offset: 0, data: data.clone(), done: true },
            }],
        };
        let text = encode(&frame);
        assert_eq!(parse::<ServerInbound>(&text), Ok(frame), "{text}");
        // The chunks put together give back the store, sessions included.
        let back: KvStore = serde_json::from_slice(&data).unwrap();
        assert_eq!(back, kv);
    }
}
