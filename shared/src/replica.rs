//! A server's logic without its I/O: the Raft core, the key-value store, and the client requests
//! waiting on them.
//!
//! The real node and the simulator both drive a [`Replica`]; the node adds sockets, a clock and
//! a disk, the simulator adds a simulated network and disk. So the logic that answers clients —
//! when a write counts as done, when a read may be served, what a deposed leader says — is the
//! logic the simulator's checkers test.
//!
//! The driver loop:
//!
//! ```text
//! feed inputs (tick / step / request)
//! while replica.has_work():
//!     work = replica.take_work()
//!     send work.messages_now; persist work.persist (durably); send work.messages
//!     done = replica.finish(work)   // applies, answers clients, maybe compacts
//!     answer done.replies; persist done.snapshot if any; publish done.events
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Consistency, Event};
use crate::kv::{Command, KvStore, WriteKey, WriteResult};
use crate::raft::{
    Bug, Config, Entry, HardState, Index, MembershipChange, Message, Millis, NodeId, Payload, Persisted,
    ProposeError, Raft, ReadError, ReadId, ReadOutcome, Role, Snapshot, Status, Term,
};

/// While a live follower lacks entries (catching up, or receiving a snapshot), compaction waits
/// until the log holds this many times `snapshot_every` entries (and a thousand more, for small
/// `snapshot_every`).
const COMPACTION_PATIENCE: u64 = 8;

/// Identifies a client request on the replica that received it; chosen by the driver.
pub type RequestId = u64;

/// What a client asks of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Write {
        command: Command,
    },
    Read {
        key: String,
        consistency: Consistency,
    },
    /// Add or remove a server (on the leader); answered once the change is committed.
    ChangeMembership {
        change: MembershipChange,
    },
    /// Open a write session (on the leader); answered with its client id once committed.
    Register,
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The write is committed and applied at `index`.
    Written {
        result: WriteResult,
        index: Index,
    },
    /// The value of the key as of applied index `index`.
    Value {
        value: Option<String>,
        index: Index,
    },
    /// The membership change is committed: its configuration's entry is at `index`.
    MembershipChanged {
        index: Index,
    },
    /// A session is open: its client id (the index of the entry that registered it).
    Registered {
        client: crate::kv::ClientId,
    },
    Error {
        error: ReplyError,
    },
}

/// Why a server could not answer. All are safe to retry; a write must be retried with the same
/// session so that it is applied at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ReplyError {
    /// Writes (and leader reads) go to the leader; this is who we think it is.
    NotLeader { leader: Option<NodeId> },
    /// No leader is known: an election is probably under way.
    NoLeader,
    /// The server lost leadership before the write committed: it may or may not be applied.
    LeadershipLost,
    /// The leader is handing over to `to`.
    TransferInProgress { to: NodeId },
    /// This server had a read index but did not apply up to it in time (it is cut off or far
    /// behind): another server may answer sooner.
    Behind,
    /// A membership change cannot start yet (the previous one is not committed, or the new
    /// leader has not committed an entry of its term): ask again shortly.
    MembershipBusy { reason: String },
    /// The membership change does not apply (an unknown server, the last voter…).
    MembershipRefused { reason: String },
    /// Removing the leader: it hands leadership to `to` first; ask again there.
    HandingOver { to: NodeId },
    /// A hosted node (`crate::hosted`) answered in a way that does not say whether a write
    /// happened (or not in time). It keeps no sessions, so asking again could apply it twice:
    /// the client hears that the outcome is unknown.
    Indeterminate { reason: String },
    /// A hosted node refused the request for good (a `lin-kv` error that says nothing
    /// happened, or an operation `lin-kv` lacks): the client hears why.
    Refused { reason: String },
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::NotLeader { leader: Some(l) } => write!(f, "not the leader (node {l} is)"),
            ReplyError::NotLeader { leader: None } => write!(f, "not the leader, and no leader is known"),
            ReplyError::NoLeader => write!(f, "no leader is known yet"),
            ReplyError::LeadershipLost => write!(f, "leadership was lost before the request completed"),
            ReplyError::TransferInProgress { to } => write!(f, "leadership is moving to node {to}"),
            ReplyError::Behind => write!(f, "this server did not catch up with the read's index in time"),
            ReplyError::MembershipBusy { reason } => write!(f, "membership change must wait: {reason}"),
            ReplyError::MembershipRefused { reason } => write!(f, "membership change refused: {reason}"),
            ReplyError::HandingOver { to } => {
                write!(f, "the leader is handing over to node {to} before it can be removed; ask node {to}")
            }
            ReplyError::Indeterminate { reason } => write!(f, "outcome unknown: {reason}"),
            ReplyError::Refused { reason } => write!(f, "refused: {reason}"),
        }
    }
}

/// What must be durable before `Work::messages` may leave.
#[derive(Debug, Default)]
pub struct Persist {
    /// A snapshot from the leader: reset the stored log to it before appending `entries`.
    pub snapshot: Option<Snapshot>,
    pub hard_state: Option<HardState>,
    /// Replace stored entries at these indices and beyond.
    pub entries: Vec<Entry>,
}

impl Persist {
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.hard_state.is_none() && self.entries.is_empty()
    }
}

/// One round of output. See the module documentation for the order.
#[derive(Debug)]
pub struct Work {
    pub messages_now: Vec<Message>,
    pub persist: Persist,
    pub messages: Vec<Message>,
    committed: Vec<Entry>,
    reads: Vec<ReadOutcome>,
    events: Vec<Event>,
}

/// What finishing a round produced.
#[derive(Debug, Default)]
pub struct Finished {
    pub replies: Vec<(RequestId, Reply)>,
    pub events: Vec<Event>,
    /// A snapshot taken here: persist it and drop the stored log up to its index.
    pub snapshot: Option<Snapshot>,
    /// Entries applied in this round, for the simulator's checkers.
    pub applied: Vec<AppliedEntry>,
}

/// An applied entry as the checkers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedEntry {
    pub index: Index,
    pub term: Term,
    pub payload: Payload,
    /// The store recognised a retry and changed nothing.
    pub duplicate: bool,
}

#[derive(Debug)]
struct PendingWrite {
    request: RequestId,
    term: Term,
    write: WriteKey,
}

#[derive(Debug)]
struct PendingRead {
    request: RequestId,
    key: String,
    /// When waiting for the store to reach the read's index stops (a server cut off after
    /// learning the index might never get there).
    deadline: Millis,
}

/// A server's state at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    #[serde(flatten)]
    pub raft: Status,
    pub applied: Index,
    pub keys: u64,
    pub pending_writes: u64,
    pub pending_reads: u64,
}

#[derive(Debug)]
pub struct Replica {
    raft: Raft,
    kv: KvStore,
    writes: BTreeMap<Index, PendingWrite>,
    /// Membership changes proposed here and the term they were proposed in, by index.
    membership_changes: BTreeMap<Index, (RequestId, Term)>,
    /// Registrations proposed here and the term they were proposed in, by index.
    registrations: BTreeMap<Index, (RequestId, Term)>,
    /// Reads waiting for the Raft core to give them a read index.
    reads_awaiting_index: BTreeMap<ReadId, PendingRead>,
    /// Reads with an index, waiting for the store to apply it; keyed by (index, read id).
    reads_awaiting_apply: BTreeMap<(Index, ReadId), PendingRead>,
    next_read_id: ReadId,
    /// Take a snapshot once this many entries were applied since the last one (0: never).
    snapshot_every: u64,
    replies: Vec<(RequestId, Reply)>,
    events: Vec<Event>,
}

impl Replica {
    pub fn new(cfg: Config, persisted: Persisted, seed: u64, now: Millis, snapshot_every: u64) -> Replica {
        let mut kv = KvStore::new();
        kv.set_ignore_sessions(cfg.bugs.has(Bug::NoDedup));
        kv.set_snapshot_without_sessions(cfg.bugs.has(Bug::SnapshotWithoutSessions));
        if let Some(snapshot) = &persisted.snapshot {
            kv.restore(&snapshot.data);
            kv.set_applied(snapshot.meta.index);
        }
        Replica {
            raft: Raft::new(cfg, persisted, seed, now),
            kv,
            writes: BTreeMap::new(),
            membership_changes: BTreeMap::new(),
            registrations: BTreeMap::new(),
            reads_awaiting_index: BTreeMap::new(),
            reads_awaiting_apply: BTreeMap::new(),
            // Read ids differ from one life of the server to the next, so that an answer
            // meant for a read before a restart cannot complete a read after it.
            next_read_id: (seed & 0xFFFF_FFFF) << 32 | 1,
            snapshot_every,
            replies: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    pub fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            raft: self.raft.status(),
            applied: self.kv.applied(),
            keys: self.kv.len() as u64,
            pending_writes: self.writes.len() as u64,
            pending_reads: (self.reads_awaiting_index.len() + self.reads_awaiting_apply.len()) as u64,
        }
    }

    pub fn next_deadline(&self) -> Millis {
        let reads = self.reads_awaiting_apply.values().map(|r| r.deadline).min();
        reads.map_or(self.raft.next_deadline(), |r| r.min(self.raft.next_deadline()))
    }

    pub fn tick(&mut self, now: Millis) {
        self.raft.tick(now);
        self.expire_reads_awaiting_apply(now);
    }

    fn expire_reads_awaiting_apply(&mut self, now: Millis) {
        let late: Vec<(Index, ReadId)> =
            self.reads_awaiting_apply.iter().filter(|(_, r)| r.deadline <= now).map(|(k, _)| *k).collect();
        for key in late {
            let read = self.reads_awaiting_apply.remove(&key).expect("listed above");
            self.replies.push((read.request, Reply::Error { error: ReplyError::Behind }));
        }
    }

    pub fn step(&mut self, now: Millis, msg: Message) {
        self.raft.step(now, msg);
    }

    pub fn transfer_leadership(&mut self, now: Millis, to: NodeId) -> Result<(), ProposeError> {
        self.raft.transfer_leadership(now, to)
    }

    /// Takes a client request; its reply comes out of a later `finish`.
    pub fn request(&mut self, now: Millis, id: RequestId, request: Request) {
        match request {
            Request::Write { command } => self.write(now, id, command),
            Request::Read { key, consistency } => self.read(now, id, key, consistency),
            Request::ChangeMembership { change } => match self.raft.change_membership(now, change) {
                Ok(index) => {
                    self.membership_changes.insert(index, (id, self.raft.term()));
                }
                Err(error) => self.replies.push((id, Reply::Error { error: refusal(error) })),
            },
            Request::Register => match self.raft.propose_register(now) {
                Ok((index, term)) => {
                    self.registrations.insert(index, (id, term));
                }
                Err(error) => self.replies.push((id, Reply::Error { error: refusal(error) })),
            },
        }
    }

    fn write(&mut self, now: Millis, id: RequestId, command: Command) {
        if self.raft.role() == Role::Leader {
            // A retry of a write that is already applied gets its answer without a new entry.
            if let Some(result) = self.kv.cached_result(&command.key()) {
                let index = self.kv.applied();
                return self.replies.push((id, Reply::Written { result, index }));
            }
        }
        let write = command.key();
        match self.raft.propose(now, command) {
            Ok((index, term)) => {
                self.writes.insert(index, PendingWrite { request: id, term, write });
            }
            Err(error) => self.replies.push((id, Reply::Error { error: refusal(error) })),
        }
    }

    fn read(&mut self, now: Millis, id: RequestId, key: String, consistency: Consistency) {
        match consistency {
            Consistency::Stale => {
                let reply = Reply::Value { value: self.kv.get(&key).cloned(), index: self.kv.applied() };
                self.events.push(Event::ReadServed { read_id: 0, index: self.kv.applied(), consistency });
                self.replies.push((id, reply));
            }
            Consistency::Leader if self.raft.role() != Role::Leader => {
                let error = ReplyError::NotLeader { leader: self.raft.leader() };
                self.replies.push((id, Reply::Error { error }));
            }
            Consistency::Linearizable | Consistency::Leader => {
                let read_id = self.next_read_id;
                self.next_read_id = self.next_read_id.wrapping_add(1);
                let deadline = now + 2 * self.raft.config().election_timeout;
                self.reads_awaiting_index.insert(read_id, PendingRead { request: id, key, deadline });
                self.raft.read_index(now, read_id);
            }
        }
    }

    pub fn has_work(&self) -> bool {
        self.raft.has_ready()
            || !self.replies.is_empty()
            || !self.events.is_empty()
            || self.deposed_with_writes()
    }

    fn deposed_with_writes(&self) -> bool {
        self.raft.role() != Role::Leader
            && !(self.writes.is_empty()
                && self.membership_changes.is_empty()
                && self.registrations.is_empty())
    }

    pub fn take_work(&mut self) -> Work {
        let ready = self.raft.ready();
        Work {
            messages_now: ready.messages_now,
            persist: Persist {
                snapshot: ready.snapshot,
                hard_state: ready.hard_state,
                entries: ready.entries,
            },
            messages: ready.messages,
            committed: ready.committed,
            reads: ready.reads,
            events: ready.events,
        }
    }

    /// Call once `work.persist` is durable and its messages are sent.
    pub fn finish(&mut self, work: Work) -> Finished {
        let mut done = Finished { events: work.events, ..Finished::default() };
        if let Some(snapshot) = &work.persist.snapshot {
            self.kv.restore(&snapshot.data);
            self.kv.set_applied(snapshot.meta.index);
            self.answer_writes_covered_by_snapshot(snapshot.meta.index);
        }
        for entry in work.committed {
            if entry.index <= self.kv.applied() {
                continue;
            }
            debug_assert_eq!(
                entry.index,
                self.kv.applied() + 1,
                "committed entries are applied in order, once"
            );
            let applied = self.apply(entry);
            done.applied.push(applied);
        }
        if let Some(last) = done.applied.last() {
            done.events.push(Event::Applied { index: last.index });
        }
        self.take_read_indices(work.reads);
        self.serve_applied_reads();
        self.raft.advance();
        if self.raft.role() != Role::Leader {
            self.fail_pending_writes();
        }
        done.snapshot = self.maybe_compact();
        done.replies = std::mem::take(&mut self.replies);
        done.events.append(&mut self.events);
        done
    }

    /// Applies one committed entry to the store, and answers whoever waited for it here.
    fn apply(&mut self, entry: Entry) -> AppliedEntry {
        let (result, duplicate) = match &entry.payload {
            Payload::Command(command) => {
                let applied = self.kv.apply(entry.index, command);
                (Some(applied.result), applied.duplicate)
            }
            Payload::Register => {
                let client = self.kv.register(entry.index);
                if let Some((request, term)) = self.registrations.remove(&entry.index) {
                    // Another leader's entry in this slot is someone else's registration.
                    let reply = if term == entry.term {
                        Reply::Registered { client }
                    } else {
                        Reply::Error { error: ReplyError::LeadershipLost }
                    };
                    self.replies.push((request, reply));
                }
                (None, false)
            }
            Payload::Noop | Payload::Config(_) => {
                self.kv.skip(entry.index);
                (None, false)
            }
        };
        if let Some((request, term)) = self.membership_changes.remove(&entry.index) {
            let reply = if term == entry.term && matches!(entry.payload, Payload::Config(_)) {
                Reply::MembershipChanged { index: entry.index }
            } else {
                Reply::Error { error: ReplyError::LeadershipLost }
            };
            self.replies.push((request, reply));
        }
        if let Some(pending) = self.writes.remove(&entry.index) {
            let reply = match result {
                Some(result) if pending.term == entry.term => Reply::Written { result, index: entry.index },
                // Another leader's entry took this slot: ours was lost (the client retries).
                _ => Reply::Error { error: ReplyError::LeadershipLost },
            };
            self.replies.push((pending.request, reply));
        }
        debug_assert_eq!(self.kv.applied(), entry.index, "the store applied exactly this entry");
        AppliedEntry { index: entry.index, term: entry.term, payload: entry.payload, duplicate }
    }

    /// Reads whose index the leader confirmed now wait for the store to reach it; the others
    /// are answered with why they failed.
    fn take_read_indices(&mut self, outcomes: Vec<ReadOutcome>) {
        for outcome in outcomes {
            let Some(read) = self.reads_awaiting_index.remove(&outcome.id) else { continue };
            match outcome.result {
                Ok(index) => {
                    self.reads_awaiting_apply.insert((index, outcome.id), read);
                }
                Err(error) => {
                    let error = match error {
                        ReadError::NoLeader => ReplyError::NoLeader,
                        ReadError::LeadershipLost | ReadError::Unconfirmed => ReplyError::LeadershipLost,
                    };
                    self.replies.push((read.request, Reply::Error { error }));
                }
            }
        }
    }

    /// Serves every read whose index the store has reached.
    fn serve_applied_reads(&mut self) {
        let applied = self.kv.applied();
        while let Some(entry) = self.reads_awaiting_apply.first_entry() {
            let (index, read_id) = *entry.key();
            if index > applied {
                break;
            }
            let read = entry.remove();
            let value = self.kv.get(&read.key).cloned();
            self.events.push(Event::ReadServed {
                read_id,
                index: applied,
                consistency: Consistency::Linearizable,
            });
            self.replies.push((read.request, Reply::Value { value, index: applied }));
        }
    }

    /// A deposed leader cannot know whether its pending writes will commit: it says so, and the
    /// client retries with the same session (exactly-once through deduplication).
    fn fail_pending_writes(&mut self) {
        for (_, pending) in std::mem::take(&mut self.writes) {
            self.replies.push((pending.request, Reply::Error { error: ReplyError::LeadershipLost }));
        }
        for (_, (request, _)) in std::mem::take(&mut self.membership_changes) {
            self.replies.push((request, Reply::Error { error: ReplyError::LeadershipLost }));
        }
        for (_, (request, _)) in std::mem::take(&mut self.registrations) {
            self.replies.push((request, Reply::Error { error: ReplyError::LeadershipLost }));
        }
    }

    fn answer_writes_covered_by_snapshot(&mut self, index: Index) {
        let covered: Vec<Index> = self.writes.range(..=index).map(|(i, _)| *i).collect();
        for i in covered {
            let pending = self.writes.remove(&i).expect("listed above");
            let reply = match self.kv.cached_result(&pending.write) {
                Some(result) => Reply::Written { result, index: i },
                None => Reply::Error { error: ReplyError::LeadershipLost },
            };
            self.replies.push((pending.request, reply));
        }
    }

    /// Takes a snapshot at the applied index now (an admin asked), unless there is nothing new
    /// to compact. The driver persists it like one from `finish`.
    pub fn compact_now(&mut self) -> Option<Snapshot> {
        let applied = self.kv.applied();
        self.raft.compact(applied, self.kv.snapshot())
    }

    /// Keeps at most `sessions` client sessions (every replica of a cluster must use the same:
    /// it decides which sessions a committed write finds).
    pub fn set_session_capacity(&mut self, sessions: usize) {
        self.kv.set_session_capacity(sessions);
    }

    /// Limits the store's bytes of keys and values. Every replica of a cluster must use the
    /// same limit: it decides what a committed write does.
    pub fn set_store_limit(&mut self, bytes: u64) {
        self.kv.set_limit(bytes);
    }

    /// Changes the AppendEntries batch limit at run time (see `Raft::set_max_entries_per_message`).
    pub fn set_max_entries_per_message(&mut self, entries: usize) {
        self.raft.set_max_entries_per_message(entries);
    }

    fn maybe_compact(&mut self) -> Option<Snapshot> {
        let applied = self.kv.applied();
        let since = applied.saturating_sub(self.raft.snapshot_index());
        if self.snapshot_every == 0 || since < self.snapshot_every {
            return None;
        }
        // A live follower catching up (by entries, or by a snapshot it is receiving) needs the
        // entries it lacks: compacting them away would send it a newer snapshot, and under
        // steady writes it might never catch up. So compaction waits for live followers — up to
        // a bound, past which memory wins (a follower lagging that far gets a snapshot).
        if self.raft.needed_by_live_follower(applied)
            && since < self.snapshot_every * COMPACTION_PATIENCE + 1_000
        {
            return None;
        }
        self.raft.compact(applied, self.kv.snapshot())
    }
}

/// What a client hears when the leader would not take its proposal.
fn refusal(error: ProposeError) -> ReplyError {
    match error {
        ProposeError::NotLeader { leader: Some(leader) } => ReplyError::NotLeader { leader: Some(leader) },
        ProposeError::NotLeader { leader: None } => ReplyError::NoLeader,
        ProposeError::TransferInProgress { to } => ReplyError::TransferInProgress { to },
        ProposeError::NotCommittedInTerm => ReplyError::MembershipBusy {
            reason: "the new leader has not committed an entry of its term yet".into(),
        },
        ProposeError::MembershipChangePending { index } => {
            ReplyError::MembershipBusy { reason: format!("the change at index {index} is not committed yet") }
        }
        ProposeError::InvalidChange { refused } => {
            ReplyError::MembershipRefused { reason: refused.to_string() }
        }
        ProposeError::LeaderRemovalHandsOver { to } => ReplyError::HandingOver { to },
    }
}
