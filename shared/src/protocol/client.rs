//! Clients and pages ↔ proxy: requests, their answers, admin commands, and the frames
//! subscribed pages get.

use serde::{Deserialize, Serialize};

use super::*;

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
            AdminCommand::Partition { groups } => format!("partition {}", describe_groups(groups.iter())),
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

    /// The same in Spanish, for pages, captions and the timeline shown in Spanish.
    pub fn describe_es(&self) -> String {
        match self {
            AdminCommand::Crash { node } => format!("tumbar el nodo {node}"),
            AdminCommand::Restart { node } => format!("reiniciar el nodo {node}"),
            AdminCommand::Pause { node } => format!("pausar el nodo {node}"),
            AdminCommand::Resume { node } => format!("reanudar el nodo {node}"),
            AdminCommand::Partition { groups } => format!("particionar {}", describe_groups(groups.iter())),
            AdminCommand::Block { from, to } => format!("bloquear los mensajes {from} → {to}"),
            AdminCommand::Heal => "curar la red".to_string(),
            AdminCommand::Drop { rate, .. } => format!("perder el {:.0}% de los mensajes", rate * 100.0),
            AdminCommand::Delay { ms, .. } => format!("retrasar los mensajes {ms} ms"),
            AdminCommand::TimeScale { scale } => format!("cámara lenta ×{scale}"),
            AdminCommand::TransferLeadership { to } => format!("ceder el liderazgo al nodo {to}"),
            AdminCommand::StopTime => "parar el tiempo".to_string(),
            AdminCommand::StartTime => "poner el tiempo en marcha".to_string(),
            AdminCommand::Step { count } => format!("{count} paso(s)"),
            AdminCommand::DeliverMessage { id } => format!("entregar el mensaje #{id}"),
            AdminCommand::DropMessage { id } => format!("descartar el mensaje #{id}"),
            AdminCommand::FireTimer { node } => format!("vencer el temporizador del nodo {node}"),
            AdminCommand::Advance { ms, .. } => format!("adelantar los relojes {ms} ms"),
            AdminCommand::Latency { ms: Some(ms), .. } => format!("latencia {ms} ms"),
            AdminCommand::Latency { ms: None, .. } => "latencia automática".to_string(),
            AdminCommand::BatchSize { entries: Some(n) } => {
                format!("como mucho {n} entradas por AppendEntries")
            }
            AdminCommand::BatchSize { entries: None } => "lotes de AppendEntries por defecto".to_string(),
            AdminCommand::Snapshot { .. } => "tomar una instantánea".to_string(),
            AdminCommand::Reset => "reiniciar el clúster con discos vacíos".to_string(),
            AdminCommand::Lesson { action: LessonAction::Start { name, .. } } => {
                format!("empezar la lección {name}")
            }
            AdminCommand::Lesson { action: LessonAction::Next } => "siguiente paso de la lección".to_string(),
            AdminCommand::Lesson { action: LessonAction::Stop } => "detener la lección".to_string(),
            AdminCommand::OpenWrites { open: true } => "dejar escribir a todos".to_string(),
            AdminCommand::OpenWrites { open: false } => "escribir vuelve a necesitar el token".to_string(),
            AdminCommand::Record { on: true, .. } => "empezar a grabar".to_string(),
            AdminCommand::Record { on: false, .. } => "detener la grabación".to_string(),
            AdminCommand::AddServer { node: Some(n), .. } => format!("añadir el servidor {n}"),
            AdminCommand::AddServer { node: None, .. } => "añadir un servidor".to_string(),
            AdminCommand::RemoveServer { node } => format!("quitar el servidor {node}"),
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
                    "not applied: the cluster does not have this session: forgotten (too many clients \
                 since), or never opened (a client id comes from `register`, not from the client); open \
                 a new one with `register` — if this was a retry, its earlier outcome is unknown",
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
pub fn describe_groups<'a, G: IntoIterator<Item = &'a NodeId>>(groups: impl Iterator<Item = G>) -> String {
    let shown: Vec<String> =
        groups.map(|g| g.into_iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")).collect();
    shown.join(" | ")
}
