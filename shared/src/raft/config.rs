//! Tunables of a Raft server and the deliberate defects the simulator can switch on.

use serde::{Deserialize, Serialize};

use crate::types::{Millis, NodeId};

#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    /// The cluster's voters when the server starts with an empty disk (bootstrap). Ignored when
    /// a snapshot or configuration entries say otherwise.
    pub voters: Vec<NodeId>,
    /// The shortest election timeout (§5.2). Each timer is drawn uniformly from
    /// `[election_timeout, election_timeout + election_jitter)`.
    pub election_timeout: Millis,
    /// How much randomness a timer gets on top of the shortest timeout. The paper's Figure 16
    /// shows split votes stay rare from about 50 ms of spread; the default, half the timeout
    /// (150–225 ms), keeps them rare while the first follower notices a dead leader sooner (its
    /// median, the smaller of two draws, is 172 ms against 194 ms for 150–300 ms).
    pub election_jitter: Millis,
    /// How often a leader sends heartbeats; well below the election timeout (§5.6).
    pub heartbeat_interval: Millis,
    /// Most entries in one AppendEntries.
    pub max_entries_per_message: usize,
    /// Most bytes (about) in one AppendEntries; an entry larger than this travels alone.
    pub max_bytes_per_message: usize,
    /// Most AppendEntries in flight to one follower before waiting for acknowledgements.
    pub max_inflight_messages: usize,
    /// Ask for pre-votes before raising the term (dissertation §9.6).
    pub pre_vote: bool,
    /// A leader that hears from no majority for an election timeout steps down, and voters
    /// ignore candidates while they hear from a leader (§6.2, §4.2.3).
    pub check_quorum: bool,
    pub bugs: Bugs,
}

/// The randomness added to each election timer unless asked otherwise: half the timeout, so
/// 150 ms timers fire in [150, 225) — spread enough that split votes stay rare (the paper's
/// Figure 16), narrow enough that a leader's crash is noticed soon (bench/RESULTS.md).
pub const fn default_election_jitter(election_timeout: Millis) -> Millis {
    if election_timeout < 2 { 1 } else { election_timeout / 2 }
}

impl Config {
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        const ELECTION_TIMEOUT: Millis = 150;
        Config {
            id,
            voters,
            election_timeout: ELECTION_TIMEOUT,
            election_jitter: default_election_jitter(ELECTION_TIMEOUT),
            heartbeat_interval: 50,
            max_entries_per_message: 256,
            max_bytes_per_message: 1 << 20,
            max_inflight_messages: 64,
            pre_vote: true,
            check_quorum: true,
            bugs: Bugs::default(),
        }
    }

    /// A server that joins a running cluster: it starts with no configuration, as a learner in
    /// waiting, and learns its cluster from the leader that adds it (dissertation §4.2.1).
    pub fn joining(id: NodeId) -> Config {
        Config::new(id, Vec::new())
    }

    /// Panics with a message naming the setting when the configuration cannot work.
    pub fn validate(&self) {
        assert!(self.id > 0, "node ids start at 1");
        assert!(
            self.voters.is_empty() || self.voters.contains(&self.id),
            "node {} is not among the voters {:?}",
            self.id,
            self.voters
        );
        assert!(self.election_timeout > 0, "election timeout must be positive");
        assert!(self.election_jitter > 0, "election timeouts need some randomness (§5.2)");
        assert!(
            self.heartbeat_interval > 0 && self.heartbeat_interval < self.election_timeout,
            "heartbeat interval must be positive and below the election timeout"
        );
        assert!(
            self.max_entries_per_message > 0
                && self.max_inflight_messages > 0
                && self.max_bytes_per_message > 0,
            "batch limits must be positive"
        );
    }
}

/// A rule of Raft that can be switched off, to show (and test) that the checkers notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bug {
    /// Commit an entry of an earlier term once a majority stores it (Raft Figure 8).
    CommitOldTerm,
    /// Grant votes without the up-to-date log check (§5.4.1).
    VoteWithoutLogCheck,
    /// Do not persist whom we voted for: after a restart, vote again in the same term.
    ForgetVote,
    /// Answer linearizable reads from local state without asking the leader.
    StaleRead,
    /// Ignore client sessions: a retried write is applied again.
    NoDedup,
    /// Change membership before committing an entry of the leader's own term (the bug found in
    /// single-server changes after the dissertation).
    ChangeBeforeCommit,
    /// A server restarted on an empty disk takes the first configuration again and votes at
    /// once, as if the cluster were new (the drivers' start-up rule, not the core's).
    VoteOnEmptyDisk,
    /// A leader refused by a follower tries the same entry again instead of looking further
    /// back: a follower with a divergent log is never repaired (a liveness defect).
    NoBacktrack,
    /// Snapshots leave out the client sessions: a server restored from one forgets which
    /// writes it applied, and its store differs from the others'.
    SnapshotWithoutSessions,
    /// The proxy sends a write it retries on a fresh session (a defect of the proxy core, not
    /// the servers'): a write applied before the retry is applied again.
    RetryWithoutSession,
}

// Every defect has a bit in `Bugs`.
const _: () = assert!(Bug::ALL.len() <= 32);

impl Bug {
    pub const ALL: [Bug; 10] = [
        Bug::CommitOldTerm,
        Bug::VoteWithoutLogCheck,
        Bug::ForgetVote,
        Bug::StaleRead,
        Bug::NoDedup,
        Bug::ChangeBeforeCommit,
        Bug::VoteOnEmptyDisk,
        Bug::NoBacktrack,
        Bug::SnapshotWithoutSessions,
        Bug::RetryWithoutSession,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::CommitOldTerm => "commit-old-term",
            Bug::VoteWithoutLogCheck => "vote-without-log-check",
            Bug::ForgetVote => "forget-vote",
            Bug::StaleRead => "stale-read",
            Bug::NoDedup => "no-dedup",
            Bug::ChangeBeforeCommit => "change-before-commit",
            Bug::VoteOnEmptyDisk => "vote-on-empty-disk",
            Bug::NoBacktrack => "no-backtrack",
            Bug::SnapshotWithoutSessions => "snapshot-without-sessions",
            Bug::RetryWithoutSession => "retry-without-session",
        }
    }

    /// The rule this defect breaks, in a sentence for people.
    pub fn explanation(self) -> &'static str {
        match self {
            Bug::CommitOldTerm => {
                "a leader may only commit entries of its own term by counting replicas (Figure 8)"
            }
            Bug::VoteWithoutLogCheck => {
                "a vote goes only to a candidate whose log is at least as up-to-date (§5.4.1)"
            }
            Bug::ForgetVote => "a server's vote must be on disk before it is granted (Figure 2)",
            Bug::StaleRead => "a linearizable read must be confirmed by a current leader (§6.4)",
            Bug::NoDedup => "a retried write must be applied exactly once (dissertation §6.3)",
            Bug::ChangeBeforeCommit => {
                "a new leader changes membership only after committing an entry of its term (§4.1, 2015 fix)"
            }
            Bug::VoteOnEmptyDisk => {
                "a server that lost its disk forgot its votes and entries: it must not vote until added again"
            }
            Bug::NoBacktrack => {
                "a refused AppendEntries makes the leader look further back until the logs agree (§5.3)"
            }
            Bug::SnapshotWithoutSessions => {
                "a snapshot holds the whole state machine, client sessions included (dissertation §6.3)"
            }
            Bug::RetryWithoutSession => {
                "a retried write must keep its session, so that the cluster applies it at most once (§6.3)"
            }
        }
    }
}

impl std::str::FromStr for Bug {
    type Err = String;
    fn from_str(s: &str) -> Result<Bug, String> {
        Bug::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
            let names: Vec<_> = Bug::ALL.iter().map(|b| b.name()).collect();
            format!("unknown bug '{s}' (known: {})", names.join(", "))
        })
    }
}

impl std::fmt::Display for Bug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of defects switched on. Empty in production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bugs(u32);

impl Bugs {
    pub fn none() -> Bugs {
        Bugs(0)
    }

    pub fn with(self, bug: Bug) -> Bugs {
        Bugs(self.0 | Self::bit(bug))
    }

    pub fn has(self, bug: Bug) -> bool {
        self.0 & Self::bit(bug) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Bug> {
        Bug::ALL.into_iter().filter(move |b| self.has(*b))
    }

    fn bit(bug: Bug) -> u32 {
        1 << Bug::ALL.iter().position(|b| *b == bug).expect("every bug is in ALL")
    }
}

impl FromIterator<Bug> for Bugs {
    fn from_iter<I: IntoIterator<Item = Bug>>(iter: I) -> Bugs {
        iter.into_iter().fold(Bugs::none(), Bugs::with)
    }
}
