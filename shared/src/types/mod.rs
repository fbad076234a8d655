//! The vocabulary of Raft: entries, hard state, configurations, snapshots, roles, and the
//! messages servers exchange (`message`). Plain data: the core (`crate::raft`) acts on it, and
//! the events, the protocol and the checkers describe it, all looking down to it.

mod message;

pub use crate::ids::{Index, MessageId, Millis, NodeId, ReadId, Term};
pub use message::{Body, ConflictHint, Message, MessageKind, ShortName, VoteRefusal};

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::kv::{Command, KvStore};

/// One slot of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// Appended by every new leader so that it can commit entries of earlier terms (§5.4.2) and
    /// serve reads (§6.4) as soon as possible.
    Noop,
    /// A client's write.
    Command(Command),
    /// A client opens a write session; its id is this entry's index (dissertation §6.3), so
    /// that a session the store does not have is one it forgot — never one it has not seen.
    Register,
    /// A cluster membership. The configuration in force is the latest one in the log, committed
    /// or not (dissertation §4.1), so changing membership is appending one of these.
    Config(Configuration),
}

impl Payload {
    /// About how many bytes the payload takes on the wire: enough to keep messages under the
    /// frame limit without encoding them twice.
    pub fn approx_bytes(&self) -> usize {
        const OVERHEAD: usize = 96;
        match self {
            Payload::Noop | Payload::Register => OVERHEAD,
            Payload::Command(c) => OVERHEAD + c.op.approx_bytes(),
            Payload::Config(c) => {
                OVERHEAD
                    + 24 * (c.voters.len() + c.learners.len())
                    + c.addresses.values().map(|a| a.len() + 24).sum::<usize>()
            }
        }
    }

    /// A short description for logs and the page ("put x=1", "no-op").
    pub fn describe(&self) -> String {
        match self {
            Payload::Noop => "no-op".to_string(),
            Payload::Register => "open a session".to_string(),
            Payload::Command(c) => c.op.to_string(),
            Payload::Config(c) if c.learners.is_empty() => format!("config voters {:?}", c.voters),
            Payload::Config(c) => format!("config voters {:?} learners {:?}", c.voters, c.learners),
        }
    }
}

/// What must be on disk before this server says anything that depends on it (Figure 2,
/// "Persistent state on all servers").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    /// This disk has been let into a cluster: it holds the cluster's first configuration
    /// (bootstrap), or it has stored a configuration that lists this server as a learner (it
    /// was added). Only an admitted server votes, and a leader counts only an admitted
    /// server's acknowledgements. A server restarted on an empty disk is not admitted: it
    /// forgot its votes and the entries it acknowledged, and letting it vote or count could
    /// elect a leader without a committed entry (see `membership`).
    #[serde(default)]
    pub admitted: bool,
}

/// The cluster's members: the voters, whose votes and acknowledgements count, and the
/// learners, who receive the log without a vote until they are promoted (`membership`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Configuration {
    pub voters: BTreeSet<NodeId>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub learners: BTreeSet<NodeId>,
    /// Where members added at run time listen, for the drivers that connect to them (the core
    /// never reads it). Servers of the first configuration are known from the command line.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "id_pairs")]
    pub addresses: BTreeMap<NodeId, String>,
}

/// A map keyed by node id, as a list of `[id, value]` pairs: JSON object keys are strings, and
/// inside the protocol's tagged enums serde cannot read a string key back as a number.
mod id_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::NodeId;

    pub fn serialize<S: Serializer>(map: &BTreeMap<NodeId, String>, s: S) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<NodeId, String>, D::Error> {
        Ok(Vec::<(NodeId, String)>::deserialize(d)?.into_iter().collect())
    }
}

impl Configuration {
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Configuration {
        Configuration { voters: voters.into_iter().collect(), ..Configuration::default() }
    }

    /// Size of a majority of voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }
}

/// Where a snapshot ends and the configuration in force at that point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
    pub config: Configuration,
}

/// A compacted prefix of the log: the state machine as of `meta.index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: KvStore,
}

/// The role a server plays. A pre-candidate has timed out and asks whether it *could* win before
/// disturbing anyone with a higher term (dissertation §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}

/// What a server keeps on disk, handed back to `Raft::new` after a restart.
#[derive(Debug, Clone, Default)]
pub struct Persisted {
    pub hard_state: HardState,
    /// The latest snapshot, or the bootstrap configuration at index 0 on a fresh server.
    pub snapshot: Option<Snapshot>,
    /// Log entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}
