//! The replicated key-value state machine, with client sessions for exactly-once writes.
//!
//! Every replica applies the same committed commands in the same order, so every replica's
//! store is the same function of the log. Writes carry a session `(client, seq)` (Raft
//! dissertation §6.3): the store remembers, per client, the highest sequence number applied and
//! its result, so a write retried after a timeout or a leader change — possibly appended to the
//! log twice — takes effect once and answers the same both times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::raft::Index;

/// A client's identity for session purposes. Chosen by the client (randomly) so that a retry
/// through a different proxy is recognised as the same request.
pub type ClientId = u64;

/// Sessions kept before the least recently active one is forgotten. Eviction is decided by log
/// index, so every replica forgets the same sessions at the same point of the log.
pub const MAX_SESSIONS: usize = 10_000;

/// A write as it travels in the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    pub client: ClientId,
    pub seq: u64,
    pub op: WriteOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WriteOp {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    /// Set `key` to `new` only if it currently holds `expected` (`None`: only if absent).
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

impl WriteOp {
    pub fn key(&self) -> &str {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key } | WriteOp::Cas { key, .. } => key,
        }
    }
}

impl std::fmt::Display for WriteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteOp::Put { key, value } => write!(f, "put {key}={value}"),
            WriteOp::Delete { key } => write!(f, "delete {key}"),
            WriteOp::Cas { key, expected, new } => {
                write!(f, "cas {key}: {}→{new}", expected.as_deref().unwrap_or("∅"))
            }
        }
    }
}

/// What a write did. Stored in the session so that a duplicate gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum WriteResult {
    /// A put: the previous value, if any.
    Put { previous: Option<String> },
    /// A delete: whether the key existed.
    Delete { existed: bool },
    /// A compare-and-swap: whether it swapped, and the value it found.
    Cas { swapped: bool, current: Option<String> },
    /// The client's sequence number is older than the last one applied for it: the original
    /// result is gone, so the write must not be applied again and cannot be answered.
    StaleSequence { last_applied: u64 },
}

/// What applying one committed command did, for the caller and the checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub result: WriteResult,
    /// True when this command had already been applied (a retry): nothing changed.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    seq: u64,
    result: WriteResult,
    /// Log index of the session's last write; the eviction order.
    last_index: Index,
}

/// The store. Also the snapshot format: it serializes as the whole state, sessions included,
/// because a follower restored from a snapshot must deduplicate exactly as the leader does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    data: BTreeMap<String, String>,
    /// A list on the wire: JSON object keys are strings, and integer keys inside the
    /// internally tagged messages that carry snapshots cannot be read back.
    #[serde(with = "sessions_as_list")]
    sessions: BTreeMap<ClientId, Session>,
    /// Index of the last log entry applied (including no-ops), for snapshots and catch-up.
    applied: Index,
    /// Deliberate defect for the simulator: forget sessions, applying every retry again.
    #[serde(skip)]
    ignore_sessions: bool,
}

impl KvStore {
    pub fn new() -> KvStore {
        KvStore::default()
    }

    /// Switch on the `no-dedup` defect (see `raft::Bugs`).
    pub fn set_ignore_sessions(&mut self, on: bool) {
        self.ignore_sessions = on;
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.data.get(key)
    }

    pub fn applied(&self) -> Index {
        self.applied
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.data.iter()
    }

    /// Marks a non-command entry (no-op, configuration) as applied.
    pub fn skip(&mut self, index: Index) {
        assert!(index > self.applied, "entries are applied once, in order: {index} after {}", self.applied);
        self.applied = index;
    }

    /// Applies the committed command at `index`. Commands must arrive in log order.
    pub fn apply(&mut self, index: Index, command: &Command) -> Applied {
        self.skip(index);
        if !self.ignore_sessions {
            if let Some(session) = self.sessions.get(&command.client) {
                if command.seq == session.seq {
                    return Applied { result: session.result.clone(), duplicate: true };
                }
                if command.seq < session.seq {
                    let result = WriteResult::StaleSequence { last_applied: session.seq };
                    return Applied { result, duplicate: true };
                }
            }
        }
        let result = self.execute(&command.op);
        let session = Session { seq: command.seq, result: result.clone(), last_index: index };
        self.sessions.insert(command.client, session);
        if self.sessions.len() > MAX_SESSIONS {
            self.evict_oldest_session();
        }
        Applied { result, duplicate: false }
    }

    /// If `client` already has `seq` applied, its result: lets a leader answer a retry at once.
    pub fn cached_result(&self, client: ClientId, seq: u64) -> Option<WriteResult> {
        let session = self.sessions.get(&client)?;
        (session.seq == seq && !self.ignore_sessions).then(|| session.result.clone())
    }

    fn execute(&mut self, op: &WriteOp) -> WriteResult {
        match op {
            WriteOp::Put { key, value } => {
                WriteResult::Put { previous: self.data.insert(key.clone(), value.clone()) }
            }
            WriteOp::Delete { key } => WriteResult::Delete { existed: self.data.remove(key).is_some() },
            WriteOp::Cas { key, expected, new } => {
                let current = self.data.get(key).cloned();
                if current == *expected {
                    self.data.insert(key.clone(), new.clone());
                    WriteResult::Cas { swapped: true, current }
                } else {
                    WriteResult::Cas { swapped: false, current }
                }
            }
        }
    }

    fn evict_oldest_session(&mut self) {
        // Linear, but only when the table is full, and deterministic on every replica.
        let oldest = self.sessions.iter().min_by_key(|(id, s)| (s.last_index, **id)).map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.sessions.remove(&id);
        }
    }

    /// The state to ship in a snapshot.
    pub fn snapshot(&self) -> KvStore {
        let mut copy = self.clone();
        copy.ignore_sessions = false;
        copy
    }

    /// Replaces the whole state with a snapshot's, keeping this store's defect switch.
    pub fn restore(&mut self, snapshot: &KvStore) {
        let ignore = self.ignore_sessions;
        *self = snapshot.clone();
        self.ignore_sessions = ignore;
    }

    /// Applied index set by a restored snapshot.
    pub fn set_applied(&mut self, index: Index) {
        self.applied = index;
    }
}

mod sessions_as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{ClientId, Session};

    pub fn serialize<S: Serializer>(map: &BTreeMap<ClientId, Session>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<ClientId, Session>, D::Error> {
        Ok(Vec::<(ClientId, Session)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client: ClientId, seq: u64, key: &str, value: &str) -> Command {
        Command { client, seq, op: WriteOp::Put { key: key.into(), value: value.into() } }
    }

    #[test]
    fn put_get_delete_cas() {
        let mut kv = KvStore::new();
        kv.apply(1, &put(1, 1, "a", "x"));
        assert_eq!(kv.get("a").map(String::as_str), Some("x"));
        let cas = Command {
            client: 1,
            seq: 2,
            op: WriteOp::Cas { key: "a".into(), expected: Some("y".into()), new: "z".into() },
        };
        assert_eq!(kv.apply(2, &cas).result, WriteResult::Cas { swapped: false, current: Some("x".into()) });
        let cas = Command {
            client: 1,
            seq: 3,
            op: WriteOp::Cas { key: "a".into(), expected: Some("x".into()), new: "z".into() },
        };
        assert_eq!(kv.apply(3, &cas).result, WriteResult::Cas { swapped: true, current: Some("x".into()) });
        let del = Command { client: 1, seq: 4, op: WriteOp::Delete { key: "a".into() } };
        assert_eq!(kv.apply(4, &del).result, WriteResult::Delete { existed: true });
        assert_eq!(kv.get("a"), None);
    }

    #[test]
    fn retried_write_is_applied_once_and_answers_the_same() {
        let mut kv = KvStore::new();
        let first = kv.apply(1, &put(7, 1, "k", "v1"));
        kv.apply(2, &put(8, 1, "k", "other"));
        let retry = kv.apply(3, &put(7, 1, "k", "v1"));
        assert!(retry.duplicate);
        assert_eq!(retry.result, first.result);
        assert_eq!(
            kv.get("k").map(String::as_str),
            Some("other"),
            "the retry must not overwrite a later write"
        );
    }

    #[test]
    fn without_sessions_a_retry_applies_twice() {
        let mut kv = KvStore::new();
        kv.set_ignore_sessions(true);
        kv.apply(1, &put(7, 1, "k", "v1"));
        kv.apply(2, &put(8, 1, "k", "other"));
        assert!(!kv.apply(3, &put(7, 1, "k", "v1")).duplicate);
        assert_eq!(kv.get("k").map(String::as_str), Some("v1"));
    }

    #[test]
    fn older_sequence_is_refused() {
        let mut kv = KvStore::new();
        kv.apply(1, &put(7, 2, "k", "v"));
        let late = kv.apply(2, &put(7, 1, "k", "old"));
        assert_eq!(late.result, WriteResult::StaleSequence { last_applied: 2 });
        assert_eq!(kv.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn sessions_survive_snapshot_and_restore() {
        let mut kv = KvStore::new();
        kv.apply(1, &put(7, 1, "k", "v"));
        let mut other = KvStore::new();
        other.restore(&kv.snapshot());
        assert!(other.apply(2, &put(7, 1, "k", "v")).duplicate);
    }

    #[test]
    fn session_table_is_bounded_and_evicts_the_oldest() {
        let mut kv = KvStore::new();
        for i in 0..(MAX_SESSIONS as u64 + 5) {
            kv.apply(i + 1, &put(i, 1, "k", "v"));
        }
        assert_eq!(kv.sessions.len(), MAX_SESSIONS);
        assert!(kv.cached_result(0, 1).is_none());
        assert!(kv.cached_result(MAX_SESSIONS as u64 + 4, 1).is_some());
    }
}
