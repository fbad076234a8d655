//! Messages between Raft servers. The node sends them as JSON over WebSockets; the simulator
//! passes them through its simulated network. Both see exactly these types.

use serde::{Deserialize, Serialize};

use super::{Entry, Index, MessageId, NodeId, ReadId, SnapshotMeta, Term};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub id: MessageId,
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// RequestVote (§5.2), or a pre-vote (§9.6) that changes nobody's state.
    RequestVote {
        pre_vote: bool,
        last_log_index: Index,
        last_log_term: Term,
        /// Set by a leadership transfer: voters must not ignore it because they heard from a
        /// leader recently (that leader asked for this election).
        transfer: bool,
    },
    VoteResponse {
        pre_vote: bool,
        granted: bool,
        /// Why the vote was refused, so that the page can say it in words.
        refusal: Option<VoteRefusal>,
    },
    /// AppendEntries (§5.3). With no entries it is a heartbeat. `read_round` tags a heartbeat
    /// round that confirms leadership for pending linearizable reads (§6.4).
    AppendEntries {
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
        read_round: u64,
    },
    AppendResponse {
        success: bool,
        /// On success, the highest index known to match the leader's log; on failure, the
        /// `prev_log_index` that did not match (so the leader can ignore stale refusals).
        index: Index,
        /// On failure, where the leader should look next (fast backtracking, §5.3 end).
        conflict: Option<ConflictHint>,
        /// The follower's last index, shown on the page and used to probe less.
        last_log_index: Index,
        read_round: u64,
        /// The follower's disk is admitted (`HardState::admitted`). A leader counts an
        /// acknowledgement that is not for nothing: it carries no promise.
        #[serde(default)]
        admitted: bool,
    },
    /// InstallSnapshot (§7, Figure 13), in chunks: `data` is the part of the encoded snapshot
    /// that starts at byte `offset`, so that a store larger than a frame still reaches a
    /// follower. Chunks are bytes (base64 on the wire): a cut may fall inside a character of
    /// the text they carry. `done` marks the last chunk.
    InstallSnapshot {
        meta: SnapshotMeta,
        offset: u64,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
        done: bool,
    },
    /// The follower has `received` bytes of the snapshot ending at `index` (send from there;
    /// 0: start over), or, when `done`, has its state up to `index` (installed, or already
    /// committed).
    SnapshotResponse {
        index: Index,
        received: u64,
        done: bool,
        /// As in `AppendResponse`.
        #[serde(default)]
        admitted: bool,
    },
    /// Leadership transfer (dissertation §3.10): start an election now.
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of its own client (§6.4).
    ReadIndexRequest { read_id: ReadId },
    /// The leader's answer: the index the follower must apply before answering, or why not.
    ReadIndexResponse { read_id: ReadId, index: Option<Index> },
    /// A message between hosted nodes (`docs/node-protocol.md`): a student's server, in any
    /// language, names its messages itself. Consenso carries the body without reading it, so
    /// that it can hold, step, drop and draw it like its own; a Consenso core never sends one
    /// and ignores any it is given.
    Foreign { name: ShortName, body: serde_json::Value },
}

/// A message type's name, as a hosted node spelled it, cut to 23 bytes: small and `Copy`, so
/// that summaries of messages stay `Copy` too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShortName {
    len: u8,
    bytes: [u8; 23],
}

impl ShortName {
    pub fn new(name: &str) -> ShortName {
        let mut end = name.len().min(23);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; 23];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        ShortName { len: end as u8, bytes }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("cut at a character boundary")
    }
}

impl std::fmt::Debug for ShortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Serialize for ShortName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ShortName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ShortName, D::Error> {
        let name = String::deserialize(d)?;
        Ok(ShortName::new(&name))
    }
}

/// Where the follower's log diverges: if it has an entry at `prev_log_index`, `term` is that
/// entry's term and `index` the first index of that term; otherwise `term` is `None` and
/// `index` is one past its last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHint {
    pub term: Option<Term>,
    pub index: Index,
}

/// Why a server refused its vote. Each is one of Raft's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum VoteRefusal {
    /// The candidate's term is older than the voter's (§5.1).
    StaleTerm { voter_term: Term },
    /// The voter already voted for someone else in this term (§5.2).
    AlreadyVoted { voted_for: NodeId },
    /// The voter's log is more up-to-date than the candidate's (§5.4.1).
    LogNotUpToDate { voter_last_index: Index, voter_last_term: Term },
    /// The voter heard from a live leader less than an election timeout ago (§9.6, §4.2.3).
    LeaderActive { leader: NodeId },
    /// The asked server's disk was never admitted (empty after a loss, or a server waiting to
    /// be added): it must not vote, having forgotten what it promised.
    NotAVoter,
    /// The leader's committed configuration does not include the candidate: it was removed and
    /// should stop campaigning (dissertation §4.2.3).
    NotAMember,
}

impl Message {
    /// About how many bytes the message takes on the wire (to batch messages by size).
    pub fn approx_bytes(&self) -> usize {
        const OVERHEAD: usize = 160;
        OVERHEAD
            + match &self.body {
                Body::AppendEntries { entries, .. } => entries.iter().map(|e| e.payload.approx_bytes()).sum(),
                Body::InstallSnapshot { data, .. } => data.len(),
                _ => 0,
            }
    }
}

impl Body {
    /// A short name for logs, the trace and the page's message legend.
    pub fn kind(&self) -> MessageKind {
        match self {
            Body::RequestVote { pre_vote: true, .. } => MessageKind::PreVote,
            Body::RequestVote { .. } => MessageKind::RequestVote,
            Body::VoteResponse { pre_vote: true, .. } => MessageKind::PreVoteResponse,
            Body::VoteResponse { .. } => MessageKind::VoteResponse,
            Body::AppendEntries { entries, .. } if entries.is_empty() => MessageKind::Heartbeat,
            Body::AppendEntries { .. } => MessageKind::AppendEntries,
            Body::AppendResponse { .. } => MessageKind::AppendResponse,
            Body::InstallSnapshot { .. } => MessageKind::InstallSnapshot,
            Body::SnapshotResponse { .. } => MessageKind::SnapshotResponse,
            Body::TimeoutNow => MessageKind::TimeoutNow,
            Body::ReadIndexRequest { .. } => MessageKind::ReadIndexRequest,
            Body::ReadIndexResponse { .. } => MessageKind::ReadIndexResponse,
            Body::Foreign { name, body } => MessageKind::of_foreign(name.as_str(), body),
        }
    }
}

/// The kinds of message, as the page's legend and filters name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    PreVote,
    PreVoteResponse,
    RequestVote,
    VoteResponse,
    Heartbeat,
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    SnapshotResponse,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
    /// A hosted node's message of a type Consenso does not know: drawn by its own name.
    Other,
}

impl MessageKind {
    pub const ALL: [MessageKind; 13] = [
        MessageKind::PreVote,
        MessageKind::PreVoteResponse,
        MessageKind::RequestVote,
        MessageKind::VoteResponse,
        MessageKind::Heartbeat,
        MessageKind::AppendEntries,
        MessageKind::AppendResponse,
        MessageKind::InstallSnapshot,
        MessageKind::SnapshotResponse,
        MessageKind::TimeoutNow,
        MessageKind::ReadIndexRequest,
        MessageKind::ReadIndexResponse,
        MessageKind::Other,
    ];

    /// Replication traffic that flows all the time (heartbeats, appends, their answers): at real
    /// speed observers see only a sample of it.
    pub fn is_routine(self) -> bool {
        matches!(self, MessageKind::Heartbeat | MessageKind::AppendEntries | MessageKind::AppendResponse)
    }

    pub fn name(self) -> &'static str {
        match self {
            MessageKind::PreVote => "PreVote",
            MessageKind::PreVoteResponse => "PreVoteResponse",
            MessageKind::RequestVote => "RequestVote",
            MessageKind::VoteResponse => "VoteResponse",
            MessageKind::Heartbeat => "Heartbeat",
            MessageKind::AppendEntries => "AppendEntries",
            MessageKind::AppendResponse => "AppendResponse",
            MessageKind::InstallSnapshot => "InstallSnapshot",
            MessageKind::SnapshotResponse => "SnapshotResponse",
            MessageKind::TimeoutNow => "TimeoutNow",
            MessageKind::ReadIndexRequest => "ReadIndexRequest",
            MessageKind::ReadIndexResponse => "ReadIndexResponse",
            MessageKind::Other => "Other",
        }
    }

    /// The kind a hosted node's message is drawn as, from its type's name: the names of
    /// Maelstrom's Raft tutorial and of Consenso's own kinds are known; others are `Other`.
    pub fn of_foreign(name: &str, body: &serde_json::Value) -> MessageKind {
        let pre_vote = body.get("pre_vote").and_then(serde_json::Value::as_bool) == Some(true);
        let carries =
            body.get("entries").and_then(serde_json::Value::as_array).is_some_and(|e| !e.is_empty());
        match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "requestvote" | "vote" if pre_vote => MessageKind::PreVote,
            "requestvote" | "vote" => MessageKind::RequestVote,
            "prevote" => MessageKind::PreVote,
            "requestvoteres" | "requestvoteok" | "voteresponse" | "voteres" if pre_vote => {
                MessageKind::PreVoteResponse
            }
            "requestvoteres" | "requestvoteok" | "voteresponse" | "voteres" => MessageKind::VoteResponse,
            "prevoteres" | "prevoteresponse" => MessageKind::PreVoteResponse,
            "appendentries" if carries => MessageKind::AppendEntries,
            "appendentries" | "heartbeat" => MessageKind::Heartbeat,
            "appendentriesres" | "appendentriesok" | "appendresponse" | "heartbeatres" => {
                MessageKind::AppendResponse
            }
            "installsnapshot" => MessageKind::InstallSnapshot,
            "installsnapshotres" | "snapshotresponse" => MessageKind::SnapshotResponse,
            "timeoutnow" => MessageKind::TimeoutNow,
            _ => MessageKind::Other,
        }
    }
}

/// Bytes as one base64 string: JSON has no byte strings, and an array of numbers would
/// triple a snapshot chunk.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}
