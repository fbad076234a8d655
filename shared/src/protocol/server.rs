//! Proxies and peers ↔ server: Raft traffic between servers; client requests, fault
//! settings, time commands and the observation stream between a proxy and a server.

use serde::{Deserialize, Serialize};

use super::*;

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
    /// A hosted node's process (`crate::hosted`), when this server is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted: Option<HostedStatus>,
}

/// How a hosted node's process is doing: what runs, and what it did wrong.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostedStatus {
    /// The command that runs the node, and its process.
    pub command: String,
    pub pid: u32,
    /// The node answered `init`.
    pub ready: bool,
    /// It said it keeps its state on disk across a crash.
    pub durable: bool,
    /// Status lines it wrote (a Maelstrom node that writes none is not drawn, only served).
    #[serde(default)]
    pub status_lines: u64,
    /// Lines it wrote that Consenso could not use, and the last of them explained.
    pub bad_lines: u64,
    pub last_problem: Option<String>,
    /// Client operations it did not answer in time.
    pub unanswered: u64,
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
