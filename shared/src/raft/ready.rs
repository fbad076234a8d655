//! What the core hands to its driver after a batch of inputs.

use serde::{Deserialize, Serialize};

use super::progress::PeerProgress;
use crate::event::Event;
use crate::types::{Entry, HardState, Index, Millis, NodeId, Role, Snapshot, Term};
use crate::types::{Message, ReadId};

/// The outputs of the core since the last `Raft::ready`. The driver must handle them in this
/// order, then call `Raft::advance`:
///
/// 1. send `messages_now` (a leader's AppendEntries may leave before its own disk write,
///    dissertation §10.2.1: the leader counts itself only once its entries are durable);
/// 2. persist `snapshot` (replacing the stored log), then `hard_state` and `entries` (replacing
///    any stored entries at the same or higher indices), and make them durable (fsync);
/// 3. send `messages` — votes and acknowledgements that promise what was just persisted;
/// 4. restore the state machine from `snapshot` if there is one, then apply `committed`;
/// 5. serve the reads in `reads` once the state machine has applied their index.
#[derive(Debug, Default)]
pub struct Ready {
    pub messages_now: Vec<Message>,
    pub snapshot: Option<Snapshot>,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub committed: Vec<Entry>,
    pub reads: Vec<ReadOutcome>,
    pub events: Vec<Event>,
}

impl Ready {
    /// True when there is nothing to persist, send or apply (events alone may remain).
    pub fn is_quiet(&self) -> bool {
        self.messages_now.is_empty()
            && self.snapshot.is_none()
            && self.hard_state.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
    }
}

/// A linearizable read's fate: serve it once `index` is applied, or report why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    pub id: ReadId,
    pub result: Result<Index, ReadError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ReadError {
    /// This server knows no leader to confirm the read.
    NoLeader,
    /// Leadership changed while the read was pending.
    LeadershipLost,
    /// No confirmation came in time (messages lost, or the leader cut off).
    Unconfirmed,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadError::NoLeader => "no leader is known to confirm the read",
            ReadError::LeadershipLost => "leadership changed while the read was pending",
            ReadError::Unconfirmed => "the leader did not confirm the read in time",
        })
    }
}

/// Why a proposal was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ProposeError {
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The leader is handing over; ask the next leader.
    TransferInProgress {
        to: NodeId,
    },
    /// A new leader changes membership only once it has committed an entry of its own term
    /// (moments after its election): ask again.
    NotCommittedInTerm,
    /// Membership changes go one at a time: the one at `index` is not committed yet.
    MembershipChangePending {
        index: Index,
    },
    /// The change does not apply to the current configuration.
    InvalidChange {
        refused: super::membership::ChangeRefused,
    },
    /// Removing the leader: leadership is handed to `to` first; ask `to` to remove it.
    LeaderRemovalHandsOver {
        to: NodeId,
    },
}

/// A server's state at a glance, for status displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub voted_for: Option<NodeId>,
    /// The disk was let into the cluster (`HardState::admitted`); false on a server waiting
    /// to be added, or restarted on an empty disk.
    #[serde(default = "yes")]
    pub admitted: bool,
    pub leader: Option<NodeId>,
    pub first_index: Index,
    pub last_index: Index,
    pub last_term: Term,
    pub commit: Index,
    pub snapshot_index: Index,
    pub election_deadline: Millis,
    pub election_timeout: Millis,
    pub voters: Vec<NodeId>,
    /// Members that receive the log without a vote yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners: Vec<NodeId>,
    /// The configuration as of the commit index (the one in force may be newer, not yet
    /// committed): what decisions about servers rest on.
    #[serde(default)]
    pub committed_voters: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub committed_learners: Vec<NodeId>,
    /// On a leader: each follower's next and match index.
    pub progress: Vec<PeerProgress>,
    pub transfer_to: Option<NodeId>,
    /// On a (pre-)candidate: the answers counted so far (its own included), and how many yeses
    /// it needs. Empty and 0 otherwise.
    #[serde(default)]
    pub votes: Vec<(NodeId, bool)>,
    #[serde(default)]
    pub votes_needed: u32,
    #[serde(default)]
    pub max_entries_per_message: u32,
}

fn yes() -> bool {
    true
}
