//! The Raft core: a deterministic, sans-IO state machine.
//!
//! A [`Raft`] owns one server's consensus state and nothing else: no sockets, no clock, no
//! threads, no global randomness. Its driver (the node's event loop, or the simulator) feeds it
//!
//! - time: [`Raft::tick`] with the current time in milliseconds, at [`Raft::next_deadline`];
//! - messages from peers: [`Raft::step`];
//! - client requests: [`Raft::propose`], [`Raft::read_index`];
//! - admin requests: [`Raft::transfer_leadership`], [`Raft::change_membership`],
//!   [`Raft::compact`];
//!
//! and after any batch of those takes a [`Ready`] — messages to send, state and entries to
//! persist, entries to apply, reads to serve, observation events — handles it in the order the
//! type documents, and calls [`Raft::advance`]. The only randomness (election timeouts) comes
//! from the seed given to [`Raft::new`]; the same inputs always give the same outputs.
//!
//! # Layout
//!
//! - `types`: terms, indices, entries, configurations, snapshots.
//! - `message`: what servers say to each other.
//! - `log`: the in-memory log and what storage has seen of it.
//! - `progress`: a leader's view of each follower.
//! - `election`: timeouts, pre-vote, votes (§5.2, §5.4.1, §9.6).
//! - `replication`: AppendEntries, commit, snapshots (§5.3, §5.4.2, §7).
//! - `read`: ReadIndex reads on leaders and followers (§6.4).
//! - `membership`: learners, one-server changes, removing the leader (chapter 4).
//! - `ready`: the output batch and status.
//! - `config`: tunables and the deliberate defects (`Bug`).

mod config;
mod election;
mod invariants;
mod log;
mod membership;
mod progress;
mod read;
mod ready;
mod replication;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::types::{
    Body, Configuration, ConflictHint, Entry, HardState, Index, Message, MessageId, MessageKind, Millis,
    NodeId, Payload, Persisted, ReadId, Role, Snapshot, SnapshotMeta, Term, VoteRefusal,
};
pub use config::{Bug, Bugs, Config, default_election_jitter};
pub use membership::{ChangeRefused, MembershipChange};
pub use progress::{PeerProgress, ProgressState};
pub use ready::{ProposeError, ReadError, ReadOutcome, Ready, Status};

use crate::event::{EntrySummary, Event, RoleReason};
use crate::kv::{Command, KvStore};
use crate::rng::Rng;
use log::RaftLog;
use progress::{OutgoingSnapshot, Progress};
use read::ReadState;

/// Longest command text carried in an observation event; the page shows it on hover.
const SUMMARY_TEXT_LIMIT: usize = 48;

/// One Raft server's consensus state. See the module documentation.
#[derive(Debug)]
pub struct Raft {
    id: NodeId,
    cfg: Config,
    rng: Rng,
    now: Millis,

    // Persistent state (Figure 2).
    term: Term,
    voted_for: Option<NodeId>,
    /// `HardState::admitted`: this disk was let into the cluster, so this server may vote.
    admitted: bool,
    log: RaftLog,
    hard_state_dirty: bool,

    // Volatile state.
    role: Role,
    leader: Option<NodeId>,
    commit: Index,
    /// Last committed index handed to the driver for application.
    applied: Index,
    /// The latest snapshot (taken here or installed), kept to send to followers that need it.
    snapshot: Option<Snapshot>,
    /// That snapshot encoded for the wire, made when a follower first needs it; transfers
    /// in progress hold their own reference (`Progress::snapshot`), so compacting again
    /// never changes the bytes under a transfer.
    outgoing_snapshot: Option<Arc<OutgoingSnapshot>>,
    /// On a follower: the bytes of a snapshot received so far.
    incoming_snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// The leader said this server's committed configuration no longer includes it: it stops
    /// campaigning until a leader contacts it again (dissertation §4.2.3).
    removed: bool,
    /// The configuration last announced to observers (and, on a leader, replicated to).
    membership: Configuration,

    // Timers, as absolute deadlines.
    election_timeout: Millis,
    election_deadline: Millis,
    heartbeat_deadline: Millis,
    check_quorum_deadline: Millis,
    /// A candidate asks again, every heartbeat interval, the peers that have not answered
    /// ("servers retry RPCs if they do not receive a response in a timely manner", §5.1).
    vote_retry_deadline: Millis,
    /// When this server last heard from the leader of its term.
    leader_contact: Option<Millis>,

    // Candidate state: who answered, and how; whether a leadership transfer started it.
    votes: BTreeMap<NodeId, bool>,
    transfer_campaign: bool,

    // Leader state.
    progress: BTreeMap<NodeId, Progress>,
    transfer: Option<(NodeId, Millis)>,
    reads: ReadState,

    out: Outbox,
    /// Between `ready` and `advance` the driver is persisting: no input may arrive.
    awaiting_advance: Option<Index>,
}

#[derive(Debug, Default)]
struct Outbox {
    messages_now: Vec<Message>,
    messages: Vec<Message>,
    events: Vec<Event>,
    reads: Vec<ReadOutcome>,
    snapshot: Option<Snapshot>,
}

impl Raft {
    /// A server starting at time `now` from what it persisted (or from nothing, on first boot).
    pub fn new(cfg: Config, persisted: Persisted, seed: u64, now: Millis) -> Raft {
        cfg.validate();
        let meta = match &persisted.snapshot {
            Some(s) => s.meta.clone(),
            None => {
                SnapshotMeta { index: 0, term: 0, config: Configuration::new(cfg.voters.iter().copied()) }
            }
        };
        let commit = meta.index;
        let log = RaftLog::new(meta, persisted.entries);
        let membership = log.config().clone();
        // A disk holding the first configuration (the driver passes it as `voters`) was
        // admitted by bootstrap; any other is admitted only once it stored itself as a learner.
        let admitted = persisted.hard_state.admitted || cfg.voters.contains(&cfg.id);
        let mut raft = Raft {
            id: cfg.id,
            rng: Rng::new(seed),
            now,
            term: persisted.hard_state.term,
            voted_for: persisted.hard_state.voted_for,
            admitted,
            log,
            hard_state_dirty: admitted != persisted.hard_state.admitted,
            role: Role::Follower,
            leader: None,
            commit,
            applied: commit,
            snapshot: persisted.snapshot,
            outgoing_snapshot: None,
            incoming_snapshot: None,
            removed: false,
            membership,
            election_timeout: cfg.election_timeout,
            election_deadline: now,
            heartbeat_deadline: now,
            check_quorum_deadline: now,
            vote_retry_deadline: now,
            leader_contact: None,
            votes: BTreeMap::new(),
            transfer_campaign: false,
            progress: BTreeMap::new(),
            transfer: None,
            reads: ReadState::default(),
            out: Outbox::default(),
            awaiting_advance: None,
            cfg,
        };
        raft.emit(Event::RoleChanged {
            role: Role::Follower,
            term: raft.term,
            leader: None,
            reason: RoleReason::Started,
        });
        raft.reset_election_timer();
        raft
    }

    // ---------------------------------------------------------------- inputs

    /// Advances time to `now`, firing every timer that is due.
    pub fn tick(&mut self, now: Millis) {
        self.set_now(now);
        self.expire_reads();
        if self.role == Role::Leader {
            if self.now >= self.heartbeat_deadline {
                self.heartbeat_deadline = self.now + self.cfg.heartbeat_interval;
                self.on_heartbeat_timer();
            }
            if self.role == Role::Leader && self.now >= self.check_quorum_deadline {
                self.check_quorum_deadline = self.now + self.cfg.election_timeout;
                self.on_check_quorum();
            }
            if let Some((to, deadline)) = self.transfer {
                if self.role == Role::Leader && self.now >= deadline {
                    self.transfer = None;
                    self.emit(Event::TransferAborted { to });
                }
            }
        } else if self.now >= self.election_deadline {
            self.on_election_timeout();
        } else if self.is_campaigning() && self.now >= self.vote_retry_deadline {
            self.vote_retry_deadline = self.now + self.cfg.heartbeat_interval;
            self.request_missing_votes();
        }
    }

    fn is_campaigning(&self) -> bool {
        matches!(self.role, Role::PreCandidate | Role::Candidate)
    }

    /// The next time `tick` has something to do.
    pub fn next_deadline(&self) -> Millis {
        let timers = self.next_timer();
        self.next_read_deadline().map_or(timers, |reads| reads.min(timers))
    }

    fn next_timer(&self) -> Millis {
        if self.role == Role::Leader {
            let mut next = self.heartbeat_deadline;
            if self.cfg.check_quorum {
                next = next.min(self.check_quorum_deadline);
            }
            if let Some((_, deadline)) = self.transfer {
                next = next.min(deadline);
            }
            next
        } else if self.is_campaigning() {
            self.election_deadline.min(self.vote_retry_deadline)
        } else {
            self.election_deadline
        }
    }

    /// Handles a message from a peer, received at `now`.
    pub fn step(&mut self, now: Millis, msg: Message) {
        self.set_now(now);
        debug_assert_eq!(msg.to, self.id, "message delivered to the wrong server");
        // A hosted node's message has no meaning here (and its term is not Raft's to trust).
        if msg.to != self.id || msg.from == self.id || matches!(msg.body, Body::Foreign { .. }) {
            return;
        }
        if !self.update_term(&msg) {
            return;
        }
        match msg.body {
            Body::RequestVote { .. } => self.on_request_vote(msg),
            Body::VoteResponse { .. } => self.on_vote_response(msg),
            Body::AppendEntries { .. } => self.on_append_entries(msg),
            Body::AppendResponse { .. } => self.on_append_response(msg),
            Body::InstallSnapshot { meta, offset, data, done } => {
                self.on_install_snapshot(msg.from, meta, offset, data, done)
            }
            Body::SnapshotResponse { index, received, done, admitted } => {
                self.on_snapshot_response(msg.from, index, received, done, admitted)
            }
            Body::TimeoutNow => self.on_timeout_now(msg.from),
            Body::ReadIndexRequest { read_id } => self.on_read_index_request(msg.from, read_id),
            Body::ReadIndexResponse { read_id, index } => {
                self.on_read_index_response(msg.from, msg.term, read_id, index)
            }
            Body::Foreign { .. } => unreachable!("returned above"),
        }
    }

    /// Appends a client's write to the leader's log. Returns the index it will have if it
    /// commits; the driver learns the outcome when that index is applied (same term: it is this
    /// command; another term: it was lost in a leader change).
    pub fn propose(&mut self, now: Millis, command: Command) -> Result<(Index, Term), ProposeError> {
        self.set_now(now);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if let Some((to, _)) = self.transfer {
            return Err(ProposeError::TransferInProgress { to });
        }
        let index = self.append_own(Payload::Command(command));
        Ok((index, self.term))
    }

    /// Appends a client's registration (a new write session) on the leader; as `propose`.
    pub fn propose_register(&mut self, now: Millis) -> Result<(Index, Term), ProposeError> {
        self.set_now(now);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if let Some((to, _)) = self.transfer {
            return Err(ProposeError::TransferInProgress { to });
        }
        let index = self.append_own(Payload::Register);
        Ok((index, self.term))
    }

    /// Starts handing leadership to `to` (dissertation §3.10).
    pub fn transfer_leadership(&mut self, now: Millis, to: NodeId) -> Result<(), ProposeError> {
        self.set_now(now);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if to == self.id || !self.progress.contains_key(&to) || !self.log.config().contains(to) {
            return Ok(());
        }
        self.transfer = Some((to, self.now + self.cfg.election_timeout));
        self.emit(Event::TransferStarted { to });
        if self.progress[&to].matched == self.log.last_index() {
            self.send(to, Body::TimeoutNow);
        }
        Ok(())
    }

    /// Replaces the log up to `index` (already applied) by a snapshot of the state machine
    /// taken there, and returns that snapshot for the driver to persist. Until it is durable the
    /// stored log still holds the entries, so a crash in between loses nothing.
    pub fn compact(&mut self, index: Index, data: KvStore) -> Option<Snapshot> {
        self.check_not_awaiting();
        assert!(index <= self.applied, "snapshot at {index} beyond applied {}", self.applied);
        if index <= self.log.snapshot_meta().index {
            return None;
        }
        let term = self.log.term_at(index).expect("an applied entry past the snapshot is in the log");
        let meta = SnapshotMeta { index, term, config: self.log.config_at(index) };
        self.log.compact(meta.clone());
        let snapshot = Snapshot { meta, data };
        self.snapshot = Some(snapshot.clone());
        self.emit(Event::SnapshotTaken { index, term });
        Some(snapshot)
    }

    // ---------------------------------------------------------------- outputs

    /// Whether `ready` would return anything to persist, send or apply.
    pub fn has_ready(&self) -> bool {
        self.hard_state_dirty
            || self.log.has_unpersisted()
            || self.commit > self.applied
            || !self.out.messages_now.is_empty()
            || !self.out.messages.is_empty()
            || !self.out.reads.is_empty()
            || self.out.snapshot.is_some()
            || !self.out.events.is_empty()
            || (self.role == Role::Leader && self.replication_pending())
    }

    /// Takes everything produced since the last call. See [`Ready`] for what to do with it.
    pub fn ready(&mut self) -> Ready {
        self.check_not_awaiting();
        #[cfg(debug_assertions)]
        self.check_invariants();
        if self.role == Role::Leader {
            self.flush_replication();
        }
        let hard_state = self.hard_state_dirty.then(|| HardState {
            term: self.term,
            voted_for: if self.cfg.bugs.has(Bug::ForgetVote) { None } else { self.voted_for },
            admitted: self.admitted,
        });
        self.hard_state_dirty = false;
        let committed = if self.commit > self.applied {
            let from = (self.applied + 1).max(self.log.first_index());
            self.log.slice(from, (self.commit + 1 - from) as usize)
        } else {
            Vec::new()
        };
        let out = std::mem::take(&mut self.out);
        let ready = Ready {
            messages_now: out.messages_now,
            snapshot: out.snapshot,
            hard_state,
            entries: self.log.unpersisted(),
            messages: out.messages,
            committed,
            reads: out.reads,
            events: out.events,
        };
        self.awaiting_advance = Some(self.commit);
        ready
    }

    /// The driver has handled the last `Ready`: its entries are durable and its committed
    /// entries applied.
    pub fn advance(&mut self) {
        let handed = self.awaiting_advance.take().expect("advance without ready");
        self.log.mark_persisted();
        self.applied = self.applied.max(handed);
        if self.role == Role::Leader {
            // The leader's own entries now count towards commitment.
            self.maybe_commit();
        }
    }

    // ---------------------------------------------------------------- observation

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn commit_index(&self) -> Index {
        self.commit
    }

    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term_at(index)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.log.entry(index)
    }

    pub fn snapshot_index(&self) -> Index {
        self.log.snapshot_meta().index
    }

    /// Whether this server's disk was let into the cluster (`HardState::admitted`).
    pub fn admitted(&self) -> bool {
        self.admitted
    }

    /// Whether this server may grant votes: its disk is admitted, so it remembers every vote it
    /// gave and every entry it acknowledged. It need not be a voter of its *own* configuration:
    /// a learner whose promotion has not reached it yet is a voter of the candidate's, and its
    /// vote may be the one a majority needs (etcd lets learners vote for the same reason).
    pub fn may_vote(&self) -> bool {
        self.admitted
    }

    /// Whether this server may stand for election: admitted, and a voter of the configuration
    /// in its own log.
    pub fn may_campaign(&self) -> bool {
        self.admitted && self.log.config().contains(self.id)
    }

    pub fn voters(&self) -> Vec<NodeId> {
        self.log.config().voters.iter().copied().collect()
    }

    /// The configuration in force: the latest in the log, committed or not.
    pub fn membership(&self) -> &Configuration {
        self.log.config()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn status(&self) -> Status {
        let committed = self.log.config_at(self.commit);
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            voted_for: self.voted_for,
            admitted: self.admitted,
            leader: self.leader,
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            commit: self.commit,
            snapshot_index: self.log.snapshot_meta().index,
            election_deadline: self.election_deadline,
            election_timeout: self.election_timeout,
            voters: self.voters(),
            learners: self.log.config().learners.iter().copied().collect(),
            committed_voters: committed.voters.iter().copied().collect(),
            committed_learners: committed.learners.iter().copied().collect(),
            progress: self
                .progress
                .iter()
                .map(|(id, p)| PeerProgress {
                    id: *id,
                    next_index: p.next,
                    match_index: p.matched,
                    state: p.state,
                    inflight: p.inflight.len() as u32,
                    recent_active: p.recent_active,
                    admitted: p.admitted,
                })
                .collect(),
            transfer_to: self.transfer.map(|(to, _)| to),
            votes: self.votes.iter().map(|(voter, granted)| (*voter, *granted)).collect(),
            votes_needed: if self.is_campaigning() { self.quorum() as u32 } else { 0 },
            max_entries_per_message: self.cfg.max_entries_per_message as u32,
        }
    }

    /// Changes how many entries one AppendEntries carries at most, at run time. Lessons set it
    /// to 1 to show entries travelling one by one (and to rebuild Figure 8 of the paper).
    pub fn set_max_entries_per_message(&mut self, entries: usize) {
        assert!(entries > 0, "an AppendEntries must be able to carry an entry");
        self.cfg.max_entries_per_message = entries;
    }

    // ---------------------------------------------------------------- shared helpers

    fn set_now(&mut self, now: Millis) {
        self.check_not_awaiting();
        // Time given by the driver never goes backwards for the core.
        self.now = self.now.max(now);
    }

    fn check_not_awaiting(&self) {
        assert!(
            self.awaiting_advance.is_none(),
            "input between ready() and advance(): persist and advance first"
        );
    }

    fn emit(&mut self, event: Event) {
        self.out.events.push(event);
    }

    /// Every other member, voter or learner: whom a leader replicates to.
    fn peers(&self) -> Vec<NodeId> {
        self.log.config().members().filter(|id| *id != self.id).collect()
    }

    /// The other voters: whom a candidate asks for votes.
    fn voting_peers(&self) -> Vec<NodeId> {
        self.log.config().voters.iter().copied().filter(|id| *id != self.id).collect()
    }

    fn quorum(&self) -> usize {
        self.log.config().quorum()
    }

    /// Queues a message. A leader's replication traffic may leave before the leader's own disk
    /// write; everything else promises something that must be durable first. The driver's
    /// network layer numbers it and reports it (`Event::MessageSent`) when it leaves.
    fn send(&mut self, to: NodeId, body: Body) {
        let term = match &body {
            // A pre-vote asks about the term the candidate would move to (§9.6).
            Body::RequestVote { pre_vote: true, .. } => self.term + 1,
            _ => self.term,
        };
        let leader_traffic = self.role == Role::Leader
            && matches!(body, Body::AppendEntries { .. } | Body::InstallSnapshot { .. } | Body::TimeoutNow);
        let msg = Message { id: 0, from: self.id, to, term, body };
        if leader_traffic { self.out.messages_now.push(msg) } else { self.out.messages.push(msg) }
    }

    /// Like `send` but with an explicit term, for answers that must echo the asker's term.
    fn send_with_term(&mut self, to: NodeId, term: Term, body: Body) {
        self.out.messages.push(Message { id: 0, from: self.id, to, term, body });
    }

    fn reset_election_timer(&mut self) {
        self.election_timeout = self.cfg.election_timeout + self.rng.below(self.cfg.election_jitter);
        self.election_deadline = self.now + self.election_timeout;
        self.emit(Event::ElectionTimerReset {
            deadline: self.election_deadline,
            timeout: self.election_timeout,
        });
    }

    /// Moves to `term` as a follower of `leader` (if known). Pending leader work is dropped.
    fn become_follower(&mut self, term: Term, leader: Option<NodeId>, reason: RoleReason) {
        assert!(term >= self.term, "terms never go backwards");
        let before = (self.role, self.term, self.leader);
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.hard_state_dirty = true;
        }
        if before.0 == Role::Leader {
            self.progress.clear();
            self.transfer = None;
            self.fail_leader_reads();
        }
        if before.2 != leader {
            self.fail_forwarded_reads();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        if (self.role, self.term, self.leader) != before {
            self.emit(Event::RoleChanged { role: Role::Follower, term: self.term, leader, reason });
        }
        self.reset_election_timer();
    }

    /// Appends an entry of the current term on the leader.
    fn append_own(&mut self, payload: Payload) -> Index {
        assert_eq!(self.role, Role::Leader);
        let entry = Entry { index: self.log.last_index() + 1, term: self.term, payload };
        let index = entry.index;
        self.emit(Event::EntriesAppended { entries: vec![summarize(&entry)] });
        let changes_membership = matches!(entry.payload, Payload::Config(_));
        self.log.append(entry);
        if changes_membership {
            self.membership_may_have_changed();
        }
        index
    }
}

/// An entry as the observation stream carries it.
pub fn summarize(entry: &Entry) -> EntrySummary {
    let mut text = entry.payload.describe();
    if text.len() > SUMMARY_TEXT_LIMIT {
        let mut cut = SUMMARY_TEXT_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    EntrySummary { index: entry.index, term: entry.term, text: text.into() }
}
