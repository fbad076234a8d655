//! Observation events: what a server did and why, in one typed enum.
//!
//! The Raft core emits most of them; the node and the simulator add the few that happen outside
//! the core (applying an entry, serving a read, a crash). The node streams them to proxies, the
//! page draws them, the simulator's trace prints them — all from these same types, so what the
//! lecturer sees is what the code did.

use serde::{Deserialize, Serialize};

use crate::types::{
    Body, ConflictHint, Index, Message, MessageId, MessageKind, Millis, NodeId, ReadId, Role, Term,
    VoteRefusal,
};

/// An event as it leaves a server: who, when (the server's clock, in ms), and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub node: NodeId,
    pub at: Millis,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Role or term changed.
    RoleChanged { role: Role, term: Term, leader: Option<NodeId>, reason: RoleReason },
    /// The election timer was (re)armed: it fires at `deadline` unless a leader is heard first.
    ElectionTimerReset { deadline: Millis, timeout: Millis },
    /// A message left this server. It reaches `to` after `delay` ms of the sender's clock (the
    /// network's latency, jitter and any injected delay), unless a `MessageLost` follows.
    /// While the sender's clock is stopped the message waits: it is *held*.
    MessageSent { id: MessageId, to: NodeId, term: Term, message: MessageSummary, delay: Millis },
    /// A message will not arrive, and why. `from` is the sender (the event may come from the
    /// receiver, which drops messages from peers it is cut off from).
    MessageLost { from: NodeId, id: MessageId, to: NodeId, reason: LossReason },
    /// A held message was released by a step: it arrives after `travel_ms` of real time.
    MessageStepped { id: MessageId, to: NodeId, travel_ms: u64 },
    /// This server's clock stopped: no timer fires and its messages wait.
    ClockStopped,
    /// This server's clock runs again.
    ClockStarted,
    /// This server's clock jumped forward by `by` ms (a step with nothing held), firing the
    /// timers that came due.
    ClockAdvanced { by: Millis },
    /// The live invariant monitor found one of Raft's safety properties broken (emitted by a
    /// proxy, with node 0).
    Alarm { alarm: Alarm },
    /// This server gave its (pre-)vote.
    VoteGranted { candidate: NodeId, term: Term, pre_vote: bool },
    /// This server refused its (pre-)vote, and the rule that made it refuse.
    VoteRefused { candidate: NodeId, term: Term, pre_vote: bool, refusal: VoteRefusal },
    /// A candidate counted a vote.
    VoteCounted { voter: NodeId, term: Term, pre_vote: bool, granted: bool, granted_total: u32, needed: u32 },
    /// Entries were added to this server's log (by a proposal on a leader, by AppendEntries on
    /// a follower).
    EntriesAppended { entries: Vec<EntrySummary> },
    /// A conflicting suffix was removed, starting at `from` (§5.3).
    LogTruncated { from: Index },
    /// A follower refused AppendEntries because its log does not contain the previous entry.
    AppendRefused { leader: NodeId, prev_log_index: Index, prev_log_term: Term, hint: ConflictHint },
    /// The leader learned that `follower` matches up to `match_index`.
    AppendAccepted { follower: NodeId, match_index: Index, next_index: Index },
    /// The leader learned that `follower` diverges; it will retry from `next_index`.
    AppendRejected { follower: NodeId, next_index: Index },
    /// The commit index moved forward.
    CommitAdvanced { from: Index, to: Index, term: Term },
    /// The state machine applied entries up to `index` (emitted by the node or simulator).
    Applied { index: Index },
    /// A snapshot of the state machine at `index` replaced the log up to it.
    SnapshotTaken { index: Index, term: Term },
    /// The leader is sending a snapshot to a follower that is behind its log's first entry.
    SnapshotSent { to: NodeId, index: Index },
    /// A follower replaced its state with the leader's snapshot.
    SnapshotInstalled { index: Index, term: Term, leader: NodeId },
    /// The configuration in force changed (appended at `index`, or an uncommitted one was cut
    /// off): who votes, and who learns the log without a vote yet.
    MembershipChanged { voters: Vec<NodeId>, learners: Vec<NodeId>, index: Index },
    /// A linearizable read may be served once the state machine has applied `index`.
    ReadIndexReady { read_id: ReadId, index: Index },
    /// A linearizable read could not get an index (no leader, or leadership was lost).
    ReadIndexFailed { read_id: ReadId, reason: String },
    /// A read was answered (emitted by the node or simulator).
    ReadServed { read_id: ReadId, index: Index, consistency: Consistency },
    /// The leader heard from `node`, a voter of its configuration, that its disk is not
    /// admitted: the server was restarted on an empty disk and forgot its votes and entries.
    /// Its answers no longer count; the safe way back is `remove-server`, then `add-server`.
    DiskLost { node: NodeId },
    /// A server was let into the cluster: it stored a configuration listing it as a learner.
    Admitted,
    /// The leader is handing leadership to `to` (dissertation §3.10).
    TransferStarted { to: NodeId },
    /// The transfer did not finish within an election timeout.
    TransferAborted { to: NodeId },
    /// A server process started and recovered this state from disk (emitted by the node).
    Recovered { term: Term, voted_for: Option<NodeId>, snapshot_index: Index, last_index: Index },
    /// A hosted node (`crate::hosted`) wrote something Consenso could not use, or did not
    /// answer: the latest problem, and how many so far (reported at most once a second).
    NodeProblem { problem: String, count: u64 },
    /// A fault was injected or cleared on this server (emitted by the node or simulator).
    Fault {
        description: String,
        /// The same in Spanish, for pages shown in Spanish (absent in older recordings).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description_es: Option<String>,
    },
}

/// Why the role or term changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RoleReason {
    /// The server started (or restarted) as a follower.
    Started,
    /// No leader was heard for an election timeout.
    ElectionTimeout,
    /// Enough pre-votes: the real election may start.
    PreVoteWon,
    /// A majority voted for this server.
    ElectionWon { votes: u32 },
    /// A majority refused: wait for another timeout.
    ElectionLost,
    /// A message carried a higher term (§5.1).
    HigherTerm { from: NodeId },
    /// A candidate heard from the leader of its term (§5.2).
    LeaderDiscovered { leader: NodeId },
    /// A leader that heard from no majority for an election timeout stepped down (§6.2).
    CheckQuorumFailed,
    /// The leader said this server is not in its committed configuration any more (§4.2.3).
    Removed { leader: NodeId },
    /// The leader asked this server to take over (§3.10).
    TimeoutNow { from: NodeId },
    /// A hosted node (`crate::hosted`) reported it; it does not say why.
    Reported,
}

/// A message's fields without its payload: what a page shows when a message is clicked and
/// what lessons match held messages against. Entries are summarised by their count and range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageSummary {
    RequestVote {
        pre_vote: bool,
        last_log_index: Index,
        last_log_term: Term,
        transfer: bool,
    },
    VoteResponse {
        pre_vote: bool,
        granted: bool,
        refusal: Option<VoteRefusal>,
    },
    AppendEntries {
        prev_log_index: Index,
        prev_log_term: Term,
        /// How many entries, at indices `prev_log_index + 1 ..= prev_log_index + entries`.
        entries: u32,
        /// The term of the last entry carried, if any.
        last_entry_term: Option<Term>,
        leader_commit: Index,
    },
    AppendResponse {
        success: bool,
        index: Index,
        conflict: Option<ConflictHint>,
        last_log_index: Index,
    },
    InstallSnapshot {
        index: Index,
        term: Term,
        /// Where this chunk starts and how many bytes it carries.
        #[serde(default)]
        offset: u64,
        #[serde(default)]
        bytes: u64,
        #[serde(default = "yes")]
        done: bool,
    },
    SnapshotResponse {
        index: Index,
        #[serde(default)]
        received: u64,
        #[serde(default = "yes")]
        done: bool,
    },
    TimeoutNow,
    ReadIndexRequest {
        read_id: ReadId,
    },
    ReadIndexResponse {
        read_id: ReadId,
        index: Option<Index>,
    },
    /// A hosted node's message: its type's name and the kind it is drawn as.
    Foreign {
        name: crate::types::ShortName,
        kind: MessageKind,
    },
}

impl MessageSummary {
    pub fn of(body: &Body) -> MessageSummary {
        match body {
            Body::RequestVote { pre_vote, last_log_index, last_log_term, transfer } => {
                MessageSummary::RequestVote {
                    pre_vote: *pre_vote,
                    last_log_index: *last_log_index,
                    last_log_term: *last_log_term,
                    transfer: *transfer,
                }
            }
            Body::VoteResponse { pre_vote, granted, refusal } => {
                MessageSummary::VoteResponse { pre_vote: *pre_vote, granted: *granted, refusal: *refusal }
            }
            Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, .. } => {
                MessageSummary::AppendEntries {
                    prev_log_index: *prev_log_index,
                    prev_log_term: *prev_log_term,
                    entries: entries.len() as u32,
                    last_entry_term: entries.last().map(|e| e.term),
                    leader_commit: *leader_commit,
                }
            }
            Body::AppendResponse { success, index, conflict, last_log_index, .. } => {
                MessageSummary::AppendResponse {
                    success: *success,
                    index: *index,
                    conflict: *conflict,
                    last_log_index: *last_log_index,
                }
            }
            Body::InstallSnapshot { meta, offset, data, done } => MessageSummary::InstallSnapshot {
                index: meta.index,
                term: meta.term,
                offset: *offset,
                bytes: data.len() as u64,
                done: *done,
            },
            Body::SnapshotResponse { index, received, done, .. } => {
                MessageSummary::SnapshotResponse { index: *index, received: *received, done: *done }
            }
            Body::TimeoutNow => MessageSummary::TimeoutNow,
            Body::ReadIndexRequest { read_id } => MessageSummary::ReadIndexRequest { read_id: *read_id },
            Body::ReadIndexResponse { read_id, index } => {
                MessageSummary::ReadIndexResponse { read_id: *read_id, index: *index }
            }
            Body::Foreign { name, body } => {
                MessageSummary::Foreign { name: *name, kind: MessageKind::of_foreign(name.as_str(), body) }
            }
        }
    }

    pub fn kind(&self) -> MessageKind {
        match self {
            MessageSummary::RequestVote { pre_vote: true, .. } => MessageKind::PreVote,
            MessageSummary::RequestVote { .. } => MessageKind::RequestVote,
            MessageSummary::VoteResponse { pre_vote: true, .. } => MessageKind::PreVoteResponse,
            MessageSummary::VoteResponse { .. } => MessageKind::VoteResponse,
            MessageSummary::AppendEntries { entries: 0, .. } => MessageKind::Heartbeat,
            MessageSummary::AppendEntries { .. } => MessageKind::AppendEntries,
            MessageSummary::AppendResponse { .. } => MessageKind::AppendResponse,
            MessageSummary::InstallSnapshot { .. } => MessageKind::InstallSnapshot,
            MessageSummary::SnapshotResponse { .. } => MessageKind::SnapshotResponse,
            MessageSummary::TimeoutNow => MessageKind::TimeoutNow,
            MessageSummary::ReadIndexRequest { .. } => MessageKind::ReadIndexRequest,
            MessageSummary::ReadIndexResponse { .. } => MessageKind::ReadIndexResponse,
            MessageSummary::Foreign { kind, .. } => *kind,
        }
    }

    /// Entries carried (AppendEntries), else 0.
    pub fn entries(&self) -> u32 {
        match self {
            MessageSummary::AppendEntries { entries, .. } => *entries,
            _ => 0,
        }
    }

    /// The indices of the entries carried, if any.
    pub fn entry_range(&self) -> Option<(Index, Index)> {
        match self {
            MessageSummary::AppendEntries { prev_log_index, entries, .. } if *entries > 0 => {
                Some((prev_log_index + 1, prev_log_index + *entries as Index))
            }
            _ => None,
        }
    }

    /// For answers: whether it says yes. Requests count as yes.
    pub fn ok(&self) -> bool {
        match self {
            MessageSummary::VoteResponse { granted, .. } => *granted,
            MessageSummary::AppendResponse { success, .. } => *success,
            MessageSummary::ReadIndexResponse { index, .. } => index.is_some(),
            _ => true,
        }
    }
}

/// The summary event of a message as it leaves its sender.
pub fn message_sent(msg: &Message, delay: Millis) -> Event {
    Event::MessageSent {
        id: msg.id,
        to: msg.to,
        term: msg.term,
        message: MessageSummary::of(&msg.body),
        delay,
    }
}

/// Why a message did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReason {
    /// The link between sender and receiver is cut (a partition or a one-way block).
    Partition,
    /// The network's injected random loss took it.
    RandomLoss,
    /// The receiver could not be reached when the message was due (crashed, or not yet up).
    Unreachable,
    /// An admin dropped it (a click on the message in the page, or `client drop-message`).
    Dropped,
    /// The sender already held too many messages (`transit::TRANSIT_LIMIT`).
    Overflow,
}

/// A broken safety property, as the live invariant monitor reports it: which property, on
/// which servers, in which term and at which log index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub property: Property,
    pub nodes: Vec<NodeId>,
    pub term: Term,
    pub index: Option<Index>,
    /// What was seen, in English.
    pub detail: String,
    /// The same in Spanish (absent in older recordings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_es: Option<String>,
}

/// A log entry as the page draws it: position, term and a short description of the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySummary {
    pub index: Index,
    pub term: Term,
    /// Shared, not owned: a page keeps each server's log window (thousands of summaries) in
    /// versions that views and checkpoints hold, and a new version copies the window; copying a
    /// summary then copies a pointer, not its text (that copying was a tenth of a busy page's
    /// main thread; bench/RESULTS.md).
    pub text: std::sync::Arc<str>,
}

/// How a read is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// ReadIndex: as of a moment between the request and the answer. Served by any server.
    #[default]
    Linearizable,
    /// Whatever this server has applied. Possibly old; never blocks. What the original
    /// project did, kept so the difference can be shown.
    Stale,
    /// ReadIndex on the leader itself.
    Leader,
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "stale" => Ok(Consistency::Stale),
            "leader" => Ok(Consistency::Leader),
            other => Err(format!("unknown consistency '{other}' (expected linearizable, stale or leader)")),
        }
    }
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Stale => "stale",
            Consistency::Leader => "leader",
        })
    }
}

/// Entries of each server's log that observers keep: the newest ones. A page draws a few dozen
/// at a time and lets you scroll back through these; older ones stay on the servers.
pub const OBSERVED_LOG_WINDOW: usize = 5_000;
/// How far past the window a mirror may grow before its oldest entries go, all at once:
/// dropping one at a time moved the whole window for every entry appended (a fifth of the
/// proxy core's time at 64 clients); in bulk it is a few entries' worth per append.
const WINDOW_SLACK: usize = OBSERVED_LOG_WINDOW / 4;

/// A server's log as observers draw it (proxy and page), kept current from its events: the
/// compacted prefix as a snapshot block, then the newest entries (at least the newest
/// `OBSERVED_LOG_WINDOW` it was told of, at most a quarter more), one summary each.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMirror {
    pub snapshot_index: Index,
    pub snapshot_term: Term,
    /// Entries after the snapshot that are not kept here (older than the window).
    #[serde(default)]
    pub skipped: Index,
    pub entries: Vec<EntrySummary>,
}

impl LogMirror {
    /// The first index whose summary is kept.
    pub fn first_kept(&self) -> Index {
        self.snapshot_index + self.skipped + 1
    }

    pub fn last_index(&self) -> Index {
        self.first_kept() - 1 + self.entries.len() as Index
    }

    pub fn get(&self, index: Index) -> Option<&EntrySummary> {
        let first = self.first_kept();
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize)
    }

    /// A window of a full log given as (snapshot, entries after it).
    pub fn window(snapshot_index: Index, snapshot_term: Term, all: Vec<EntrySummary>) -> LogMirror {
        let mut mirror = LogMirror { snapshot_index, snapshot_term, skipped: 0, entries: all };
        mirror.trim();
        mirror
    }

    /// The same log with only its newest `n` summaries (the rest counted as skipped): what a
    /// page that opens late gets first, so that a class opening the page is not sent megabytes.
    pub fn tail(&self, n: usize) -> LogMirror {
        let excess = self.entries.len().saturating_sub(n);
        LogMirror {
            snapshot_index: self.snapshot_index,
            snapshot_term: self.snapshot_term,
            skipped: self.skipped + excess as Index,
            entries: self.entries[excess..].to_vec(),
        }
    }

    fn trim(&mut self) {
        if self.entries.len() > OBSERVED_LOG_WINDOW + WINDOW_SLACK {
            let excess = self.entries.len() - OBSERVED_LOG_WINDOW;
            self.entries.drain(..excess);
            self.skipped += excess as Index;
        }
    }

    /// Follows one event of the server whose log this is.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::EntriesAppended { entries } => {
                for entry in entries {
                    let first = self.first_kept();
                    if entry.index < first {
                        continue;
                    }
                    // As Raft appends: an entry already present with the same term is the same
                    // entry; a different term replaces it and what follows; a gap means events
                    // were missed, and the next full log will resynchronise.
                    let offset = (entry.index - first) as usize;
                    match self.entries.get(offset) {
                        Some(existing) if existing.term == entry.term => continue,
                        Some(_) => self.entries.truncate(offset),
                        None if offset > self.entries.len() => continue,
                        None => {}
                    }
                    self.entries.push(entry.clone());
                }
                self.trim();
            }
            Event::LogTruncated { from } if *from > self.snapshot_index => {
                let first = self.first_kept();
                if *from <= first {
                    self.entries.clear();
                    self.skipped = from - self.snapshot_index - 1;
                } else {
                    self.entries.truncate((from - first) as usize);
                }
            }
            Event::SnapshotTaken { index, term } | Event::SnapshotInstalled { index, term, .. } => {
                let keeps_suffix = matches!(event, Event::SnapshotTaken { .. })
                    || self.get(*index).is_some_and(|e| e.term == *term);
                if keeps_suffix {
                    let first = self.first_kept();
                    let drop = ((index + 1).saturating_sub(first) as usize).min(self.entries.len());
                    self.entries.drain(..drop);
                    self.skipped = first.saturating_sub(index + 1);
                } else {
                    self.entries.clear();
                    self.skipped = 0;
                }
                self.snapshot_index = *index;
                self.snapshot_term = *term;
            }
            _ => {}
        }
    }
}

/// Summaries recorded before snapshots travelled in chunks are read as whole ones.
fn yes() -> bool {
    true
}

impl Event {
    /// What a server starting from its disk found there (the node's and the playground's).
    pub fn recovered(persisted: &crate::types::Persisted) -> Event {
        let snapshot_index = persisted.snapshot.as_ref().map_or(0, |s| s.meta.index);
        Event::Recovered {
            term: persisted.hard_state.term,
            voted_for: persisted.hard_state.voted_for,
            snapshot_index,
            last_index: persisted.entries.last().map_or(snapshot_index, |e| e.index),
        }
    }
}

/// A safety property a checker or the live monitor holds the cluster to (an alarm names
/// one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// At most one leader per term.
    ElectionSafety,
    /// A leader never overwrites or deletes entries in its log.
    LeaderAppendOnly,
    /// Two logs with an entry of the same index and term are identical up to it.
    LogMatching,
    /// A committed entry is in the log of every leader of a later term.
    LeaderCompleteness,
    /// No two servers apply different entries at the same index.
    StateMachineSafety,
    /// No client write takes effect twice.
    ExactlyOnce,
    /// The clients' history has a legal sequential order consistent with real time.
    Linearizability,
    /// A client's session is refused as forgotten only after the store evicted it (§6.3).
    LiveSessions,
    /// Once faults end, a leader commits again and every running member catches up.
    Liveness,
}

impl Property {
    pub fn name(self) -> &'static str {
        match self {
            Property::ElectionSafety => "Election Safety",
            Property::LeaderAppendOnly => "Leader Append-Only",
            Property::LogMatching => "Log Matching",
            Property::LeaderCompleteness => "Leader Completeness",
            Property::StateMachineSafety => "State Machine Safety",
            Property::ExactlyOnce => "Exactly Once",
            Property::Linearizability => "Linearizability",
            Property::LiveSessions => "Live Sessions",
            Property::Liveness => "Liveness",
        }
    }
}

impl Property {
    /// The property as a stable key (`election_safety`…), for `data-alarm` and scripts.
    pub fn key(self) -> &'static str {
        match self {
            Property::ElectionSafety => "election_safety",
            Property::LeaderAppendOnly => "leader_append_only",
            Property::LogMatching => "log_matching",
            Property::LeaderCompleteness => "leader_completeness",
            Property::StateMachineSafety => "state_machine_safety",
            Property::ExactlyOnce => "exactly_once",
            Property::Linearizability => "linearizability",
            Property::LiveSessions => "live_sessions",
            Property::Liveness => "liveness",
        }
    }

    /// The property's name in Spanish, for the page.
    pub fn name_es(self) -> &'static str {
        match self {
            Property::ElectionSafety => "Seguridad de la elección",
            Property::LeaderAppendOnly => "El líder solo añade",
            Property::LogMatching => "Coincidencia de logs",
            Property::LeaderCompleteness => "Completitud del líder",
            Property::StateMachineSafety => "Seguridad de la máquina de estados",
            Property::ExactlyOnce => "Exactamente una vez",
            Property::Linearizability => "Linealizabilidad",
            Property::LiveSessions => "Sesiones vivas",
            Property::Liveness => "Vivacidad",
        }
    }
}

impl std::fmt::Display for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Term;

    fn summary(index: Index, term: Term) -> EntrySummary {
        EntrySummary { index, term, text: format!("e{index}").into() }
    }

    #[test]
    fn the_log_mirror_follows_appends_truncations_and_snapshots() {
        let mut log = LogMirror::default();
        log.apply(&Event::EntriesAppended { entries: vec![summary(1, 1), summary(2, 1), summary(3, 1)] });
        log.apply(&Event::LogTruncated { from: 3 });
        log.apply(&Event::EntriesAppended { entries: vec![summary(3, 2)] });
        assert_eq!(
            log.entries.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
            vec![(1, 1), (2, 1), (3, 2)]
        );
        // Appending an entry already there (a replayed event) changes nothing.
        log.apply(&Event::EntriesAppended { entries: vec![summary(2, 1)] });
        assert_eq!(log.entries.len(), 3);
        log.apply(&Event::SnapshotTaken { index: 2, term: 1 });
        assert_eq!((log.snapshot_index, log.entries.len()), (2, 1));
        log.apply(&Event::SnapshotInstalled { index: 9, term: 4, leader: 1 });
        assert_eq!((log.snapshot_index, log.entries.len()), (9, 0));
    }

    #[test]
    fn the_tail_of_a_log_keeps_its_indices_and_counts_the_rest_as_skipped() {
        let log = LogMirror::window(10, 2, (11..=20).map(|i| summary(i, 3)).collect());
        let tail = log.tail(4);
        assert_eq!((tail.first_kept(), tail.last_index(), tail.skipped), (17, 20, 6));
        assert_eq!(tail.get(18), log.get(18));
        assert_eq!(log.tail(100), log);
    }

    #[test]
    fn the_log_mirror_keeps_only_the_newest_window() {
        let mut log = LogMirror::default();
        let n = (OBSERVED_LOG_WINDOW + WINDOW_SLACK) as Index + 1;
        for i in 1..=n {
            log.apply(&Event::EntriesAppended { entries: vec![summary(i, 1)] });
            let kept = log.entries.len();
            assert!(
                kept <= OBSERVED_LOG_WINDOW + WINDOW_SLACK && kept >= (i as usize).min(OBSERVED_LOG_WINDOW)
            );
        }
        let first = n - OBSERVED_LOG_WINDOW as Index + 1;
        assert_eq!((log.first_kept(), log.last_index()), (first, n), "trimmed to the window at once");
        assert!(log.get(first - 1).is_none());
        assert_eq!(log.get(first).map(|e| e.index), Some(first));
        let snapshot = first + 89;
        log.apply(&Event::SnapshotTaken { index: snapshot, term: 1 });
        assert_eq!((log.snapshot_index, log.first_kept(), log.last_index()), (snapshot, snapshot + 1, n));
        log.apply(&Event::LogTruncated { from: snapshot + 50 });
        assert_eq!(log.last_index(), snapshot + 49);
        let window = LogMirror::window(0, 0, (1..=n).map(|i| summary(i, 1)).collect());
        assert_eq!((window.first_kept(), window.last_index()), (first, n));
    }
}
