//! The replicated key-value state machine, with client sessions for exactly-once writes.
//!
//! Every replica applies the same committed commands in the same order, so every replica's
//! store is the same function of the log. Writes carry a session `(client, seq)` (Raft
//! dissertation §6.3): the store remembers, per client, the result of every write the client
//! may not have seen answered yet, so a write retried after a timeout or a leader change —
//! possibly appended to the log twice — takes effect once and answers the same both times, and
//! a client may have many writes in flight at once, applied in any order. Each write also says
//! below which sequence number the client knows every outcome (`answered_below`): those
//! results are forgotten, and a retry of one of them is refused, never applied again. A retry
//! with the same number but another write is refused too (`SessionConflict`).
//!
//! Sessions are registered through the log (dissertation §6.3): a client's id is the index of
//! the entry that registered it. So a write whose session the store does not have belongs to a
//! session it forgot (the least recently used go when there are more than the store keeps) or
//! that never was — it is refused (`SessionExpired`), never taken for a new one: a retry of a
//! write whose session was forgotten in between can never be applied a second time.
//!
//! Sequence numbers identify writes, they do not order them: writes of one session in flight
//! together may be applied in any order, each at most once; a number below `answered_below`
//! is refused (`StaleSequence`).
//!
//! The store's size is limited: a put that would take it past its limit changes nothing and
//! answers `StoreFull`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::Index;

/// A client's identity for session purposes. Chosen by the client (randomly) so that a retry
/// through a different proxy is recognised as the same request.
pub type ClientId = u64;

/// Sessions kept before the least recently active one is forgotten. Eviction is decided by log
/// index, so every replica forgets the same sessions at the same point of the log.
pub const MAX_SESSIONS: usize = 10_000;
/// Results a session keeps for writes not known to be answered; beyond this the oldest go (and
/// a retry of them is refused).
pub const MAX_RESULTS_PER_SESSION: usize = 256;
/// The store's size limit when none is configured, in bytes of keys and values.
pub const DEFAULT_STORE_LIMIT: u64 = 256 << 20;

/// A write as it travels in the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    pub client: ClientId,
    pub seq: u64,
    pub op: WriteOp,
    /// The client knows the outcome of every write it numbered below this: their results may
    /// be forgotten and a copy of one still in the log is refused. A write that timed out is
    /// not known, so it holds this down (0: the client says nothing).
    #[serde(default)]
    pub answered_below: u64,
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

impl Command {
    /// What the store needs to recognise this write again without its payload.
    pub fn key(&self) -> WriteKey {
        WriteKey {
            client: self.client,
            seq: self.seq,
            answered_below: self.answered_below,
            fingerprint: fingerprint(&self.op),
        }
    }
}

/// A write's session identity and fingerprint: enough to find its result, kept by a leader
/// while the write is in flight instead of the (possibly large) command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteKey {
    pub client: ClientId,
    pub seq: u64,
    pub answered_below: u64,
    pub fingerprint: u64,
}

impl WriteOp {
    /// The bytes the operation carries (keys and values; JSON escaping may add more).
    pub fn approx_bytes(&self) -> usize {
        match self {
            WriteOp::Put { key, value } => key.len() + value.len(),
            WriteOp::Delete { key } => key.len(),
            WriteOp::Cas { key, expected, new } => {
                key.len() + expected.as_ref().map_or(0, String::len) + new.len()
            }
        }
    }

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
    /// The write was answered before and its result forgotten (its number is below the
    /// client's `answered_below`): it must not be applied again and cannot be answered again.
    StaleSequence { last_applied: u64 },
    /// This session already has a write with this number, and it was another write.
    SessionConflict,
    /// The store does not have the client's session: forgotten (too many clients since), or
    /// never registered (an id the client made up). Refused either way: it may be a retry.
    SessionExpired,
    /// The store is at its size limit: nothing changed.
    StoreFull { limit: u64 },
}

/// What applying one committed command did, for the caller and the checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub result: WriteResult,
    /// True when this command had already been applied (a retry): nothing changed.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// Results of writes the client may not have seen answered: (sequence number, fingerprint
    /// of the write, result). A list, as sessions are (see `KvStore::sessions`).
    results: Vec<(u64, u64, WriteResult)>,
    /// Writes numbered below this were answered: forgotten, and refused if retried.
    floor: u64,
    /// Log index of the session's last write; the eviction order.
    last_index: Index,
}

impl Session {
    fn find(&self, seq: u64) -> Option<&(u64, u64, WriteResult)> {
        self.results.iter().find(|(s, _, _)| *s == seq)
    }

    /// What a write with this number and fingerprint gets without being applied: the earlier
    /// answer, a conflict, or a refusal. `None`: apply it.
    fn known(&self, seq: u64, fingerprint: u64) -> Option<WriteResult> {
        if seq < self.floor {
            return Some(WriteResult::StaleSequence { last_applied: self.floor.saturating_sub(1) });
        }
        self.find(seq).map(
            |(_, f, result)| {
                if *f == fingerprint { result.clone() } else { WriteResult::SessionConflict }
            },
        )
    }

    fn raise_floor(&mut self, answered_below: u64) {
        if answered_below > self.floor {
            self.floor = answered_below;
            self.results.retain(|(s, _, _)| *s >= answered_below);
        }
    }

    fn remember(&mut self, seq: u64, fingerprint: u64, result: WriteResult, index: Index) {
        self.results.push((seq, fingerprint, result));
        self.last_index = index;
        if self.results.len() > MAX_RESULTS_PER_SESSION {
            let (oldest, _) =
                self.results.iter().enumerate().min_by_key(|(_, (s, _, _))| *s).expect("not empty");
            let (seq, _, _) = self.results.remove(oldest);
            self.floor = self.floor.max(seq + 1);
        }
    }
}

/// A stable fingerprint of a write (FNV-1a over its JSON): the same on every replica, build
/// and version, since it is kept in snapshots.
fn fingerprint(op: &WriteOp) -> u64 {
    let text = serde_json::to_string(op).expect("writes serialize");
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The store. Also the snapshot format: it serializes as the whole state, sessions included,
/// because a follower restored from a snapshot must deduplicate exactly as the leader does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredKv")]
pub struct KvStore {
    data: BTreeMap<String, String>,
    /// A list on the wire: JSON object keys are strings, and integer keys inside the
    /// internally tagged messages that carry snapshots cannot be read back.
    #[serde(with = "sessions_as_list")]
    sessions: BTreeMap<ClientId, Session>,
    /// Index of the last log entry applied (including no-ops), for snapshots and catch-up.
    applied: Index,
    /// Bytes of keys and values, against `limit`.
    #[serde(skip)]
    bytes: u64,
    /// The size limit, the same on every replica (from the servers' configuration).
    #[serde(skip)]
    limit: Option<u64>,
    /// Deliberate defect for the simulator: forget sessions, applying every retry again.
    #[serde(skip)]
    ignore_sessions: bool,
    /// Deliberate defect for the simulator: snapshots leave the sessions out.
    #[serde(skip)]
    snapshot_without_sessions: bool,
    /// Sessions kept at most (`MAX_SESSIONS` unless set; every replica must use the same).
    #[serde(skip)]
    session_capacity: Option<usize>,
}

/// The serialized part of a store; reading one back recounts its size.
#[derive(Deserialize)]
struct StoredKv {
    data: BTreeMap<String, String>,
    #[serde(with = "sessions_as_list")]
    sessions: BTreeMap<ClientId, Session>,
    applied: Index,
}

impl From<StoredKv> for KvStore {
    fn from(stored: StoredKv) -> KvStore {
        let bytes = stored.data.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        KvStore {
            data: stored.data,
            sessions: stored.sessions,
            applied: stored.applied,
            bytes,
            ..KvStore::default()
        }
    }
}

impl KvStore {
    pub fn new() -> KvStore {
        KvStore::default()
    }

    /// Switch on the `no-dedup` defect (see `raft::Bugs`).
    pub fn set_ignore_sessions(&mut self, on: bool) {
        self.ignore_sessions = on;
    }

    /// Limits the bytes of keys and values the store holds. Every replica must use the same.
    pub fn set_limit(&mut self, bytes: u64) {
        self.limit = Some(bytes);
    }

    fn limit(&self) -> u64 {
        self.limit.unwrap_or(DEFAULT_STORE_LIMIT)
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> u64 {
        self.bytes
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

    /// About how many bytes the store takes in a snapshot.
    pub fn approx_bytes(&self) -> usize {
        self.data.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>() + self.sessions.len() * 96
    }

    /// Marks a non-command entry (no-op, configuration) as applied.
    pub fn skip(&mut self, index: Index) {
        assert!(index > self.applied, "entries are applied once, in order: {index} after {}", self.applied);
        self.applied = index;
    }

    /// Applies the committed command at `index`. Commands must arrive in log order.
    pub fn apply(&mut self, index: Index, command: &Command) -> Applied {
        self.skip(index);
        if self.ignore_sessions {
            return Applied { result: self.execute(&command.op), duplicate: false };
        }
        let key = command.key();
        let Some(session) = self.sessions.get_mut(&command.client) else {
            // Evicted, or never registered: refused, whatever it is.
            return Applied { result: WriteResult::SessionExpired, duplicate: true };
        };
        session.raise_floor(command.answered_below);
        if let Some(result) = session.known(key.seq, key.fingerprint) {
            return Applied { result, duplicate: true };
        }
        let result = self.execute(&command.op);
        let session = self.sessions.get_mut(&command.client).expect("found above");
        session.remember(command.seq, key.fingerprint, result.clone(), index);
        Applied { result, duplicate: false }
    }

    /// Applies a registration at `index`: a new session, whose client id is `index`. The least
    /// recently active session goes when there are more than the store keeps.
    pub fn register(&mut self, index: Index) -> ClientId {
        self.skip(index);
        self.sessions.insert(index, Session { last_index: index, ..Session::default() });
        if self.sessions.len() > self.session_capacity.unwrap_or(MAX_SESSIONS) {
            self.evict_oldest_session();
        }
        index
    }

    /// Keeps at most `sessions` sessions (every replica of a cluster must use the same).
    pub fn set_session_capacity(&mut self, sessions: usize) {
        assert!(sessions > 0, "a store keeps at least one session");
        self.session_capacity = Some(sessions);
    }

    /// Whether the store holds this client's session.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn has_session(&self, client: ClientId) -> bool {
        self.sessions.contains_key(&client)
    }

    /// What a write gets without being applied, if anything: its earlier result (a retry), a
    /// conflict, a stale number, or a session the store evicted. Lets a leader answer at once.
    ///
    /// Only answers that more applied entries cannot change: a store may lag its log (a new
    /// leader applies its predecessor's entries only once its own no-op commits), and a session
    /// registered at an index it has not applied *yet* is not a forgotten one. A session
    /// registered at or below the applied index and absent was evicted: that never changes.
    pub fn cached_result(&self, write: &WriteKey) -> Option<WriteResult> {
        if self.ignore_sessions {
            return None;
        }
        self.known(write)
    }

    fn known(&self, write: &WriteKey) -> Option<WriteResult> {
        match self.sessions.get(&write.client) {
            Some(session) => session.known(write.seq, write.fingerprint),
            // Registered at an index this store has not applied yet (it lags its log): not
            // known yet, whatever comes of it.
            None if write.client > self.applied => None,
            None => Some(WriteResult::SessionExpired),
        }
    }

    fn execute(&mut self, op: &WriteOp) -> WriteResult {
        match op {
            WriteOp::Put { key, value } => {
                if !self.fits(key, value) {
                    return WriteResult::StoreFull { limit: self.limit() };
                }
                let previous = self.insert(key, value);
                WriteResult::Put { previous }
            }
            WriteOp::Delete { key } => {
                let removed = self.data.remove(key);
                if let Some(v) = &removed {
                    self.bytes -= (key.len() + v.len()) as u64;
                }
                WriteResult::Delete { existed: removed.is_some() }
            }
            WriteOp::Cas { key, expected, new } => {
                let current = self.data.get(key).cloned();
                if current != *expected {
                    return WriteResult::Cas { swapped: false, current };
                }
                if !self.fits(key, new) {
                    return WriteResult::StoreFull { limit: self.limit() };
                }
                self.insert(key, new);
                WriteResult::Cas { swapped: true, current }
            }
        }
    }

    /// Whether setting `key` to `value` keeps the store within its limit (shrinking always does).
    fn fits(&self, key: &str, value: &str) -> bool {
        let old = self.data.get(key).map_or(0, |v| (key.len() + v.len()) as u64);
        let new = (key.len() + value.len()) as u64;
        new <= old || self.bytes - old + new <= self.limit()
    }

    fn insert(&mut self, key: &str, value: &str) -> Option<String> {
        let previous = self.data.insert(key.to_string(), value.to_string());
        self.bytes += (key.len() + value.len()) as u64;
        if let Some(p) = &previous {
            self.bytes -= (key.len() + p.len()) as u64;
        }
        previous
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
        if self.snapshot_without_sessions {
            copy.sessions.clear();
        }
        copy
    }

    /// Switch on the `snapshot-without-sessions` defect (see `raft::Bugs`).
    pub fn set_snapshot_without_sessions(&mut self, on: bool) {
        self.snapshot_without_sessions = on;
    }

    /// A digest of the whole state (data, sessions, applied index): two stores at the same
    /// applied index must have the same one (the simulator compares them).
    pub fn digest(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&self.applied, &mut h);
        for (k, v) in &self.data {
            std::hash::Hash::hash(&(k, v), &mut h);
        }
        for (client, session) in &self.sessions {
            std::hash::Hash::hash(&(client, session.floor, session.last_index), &mut h);
            for (seq, fingerprint, result) in &session.results {
                std::hash::Hash::hash(&(seq, fingerprint, format!("{result:?}")), &mut h);
            }
        }
        std::hash::Hasher::finish(&h)
    }

    /// Replaces the whole state with a snapshot's, keeping this store's defect switches and limits.
    pub fn restore(&mut self, snapshot: &KvStore) {
        let (ignore, without, limit) = (self.ignore_sessions, self.snapshot_without_sessions, self.limit);
        let capacity = self.session_capacity;
        *self = snapshot.clone();
        self.ignore_sessions = ignore;
        self.snapshot_without_sessions = without;
        self.limit = limit;
        self.session_capacity = capacity;
        self.bytes = self.data.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
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
        Command { client, seq, op: WriteOp::Put { key: key.into(), value: value.into() }, answered_below: 0 }
    }

    fn put_key(client: ClientId, seq: u64, key: &str, value: &str) -> WriteKey {
        put(client, seq, key, value).key()
    }

    fn answered(mut command: Command, below: u64) -> Command {
        command.answered_below = below;
        command
    }

    /// A store with sessions registered at indices 7 and 8 (so clients 7 and 8); what follows
    /// is applied from index 10.
    fn store() -> KvStore {
        let mut kv = KvStore::new();
        kv.skip(6);
        assert_eq!((kv.register(7), kv.register(8)), (7, 8));
        kv.skip(9);
        kv
    }

    #[test]
    fn put_get_delete_cas() {
        let mut kv = store();
        kv.apply(10, &put(7, 1, "a", "x"));
        assert_eq!(kv.get("a").map(String::as_str), Some("x"));
        let cas = |seq, expected: &str| Command {
            client: 7,
            seq,
            op: WriteOp::Cas { key: "a".into(), expected: Some(expected.into()), new: "z".into() },
            answered_below: 0,
        };
        assert_eq!(
            kv.apply(11, &cas(2, "y")).result,
            WriteResult::Cas { swapped: false, current: Some("x".into()) }
        );
        assert_eq!(
            kv.apply(12, &cas(3, "x")).result,
            WriteResult::Cas { swapped: true, current: Some("x".into()) }
        );
        let del = Command { client: 7, seq: 4, op: WriteOp::Delete { key: "a".into() }, answered_below: 0 };
        assert_eq!(kv.apply(13, &del).result, WriteResult::Delete { existed: true });
        assert_eq!(kv.get("a"), None);
        assert_eq!(kv.bytes(), 0);
    }

    #[test]
    fn retried_write_is_applied_once_and_answers_the_same() {
        let mut kv = store();
        let first = kv.apply(10, &put(7, 1, "k", "v1"));
        kv.apply(11, &put(8, 1, "k", "other"));
        let retry = kv.apply(12, &put(7, 1, "k", "v1"));
        assert!(retry.duplicate);
        assert_eq!(retry.result, first.result);
        assert_eq!(
            kv.get("k").map(String::as_str),
            Some("other"),
            "the retry must not overwrite a later write"
        );
    }

    #[test]
    fn many_writes_of_one_session_in_flight_apply_in_any_order_each_once() {
        let mut kv = store();
        let order = [3, 1, 2, 5, 4];
        for (i, seq) in order.iter().enumerate() {
            let r = kv.apply(10 + i as u64, &put(7, *seq, &format!("k{seq}"), "v"));
            assert!(!r.duplicate, "write {seq} applied");
        }
        for (i, seq) in order.iter().enumerate() {
            assert!(
                kv.apply(20 + i as u64, &put(7, *seq, &format!("k{seq}"), "v")).duplicate,
                "retry of {seq}"
            );
        }
        assert_eq!(kv.len(), 5);
    }

    #[test]
    fn a_retry_of_an_answered_and_forgotten_write_is_refused_not_applied() {
        let mut kv = store();
        kv.apply(10, &put(7, 1, "k", "v1"));
        // The client saw the answer to 1 and says so with its next write.
        kv.apply(11, &answered(put(7, 2, "k", "v2"), 2));
        let late = kv.apply(12, &put(7, 1, "k", "v1"));
        assert_eq!(late.result, WriteResult::StaleSequence { last_applied: 1 });
        assert_eq!(kv.get("k").map(String::as_str), Some("v2"));
    }

    #[test]
    fn the_same_number_with_another_write_is_a_conflict() {
        let mut kv = store();
        kv.apply(10, &put(7, 1, "k", "v1"));
        let other = kv.apply(11, &put(7, 1, "k", "something else"));
        assert_eq!(other.result, WriteResult::SessionConflict);
        assert_eq!(kv.get("k").map(String::as_str), Some("v1"));
        assert_eq!(
            kv.cached_result(&put_key(7, 1, "k", "something else")),
            Some(WriteResult::SessionConflict)
        );
    }

    #[test]
    fn a_forgotten_session_refuses_its_retries_even_its_very_first_write() {
        // The double apply this prevents: a client's first write is applied, its answer lost,
        // then more sessions than the store keeps are opened before the retry comes. With
        // sessions made by their first write, the retry looked like a new session's first write
        // and was applied again.
        let mut kv = store();
        kv.set_session_capacity(4);
        kv.apply(10, &put(7, 1, "k", "v"));
        for i in 11..16 {
            kv.register(i);
        }
        assert!(!kv.has_session(7), "the oldest session was evicted");
        let retry = kv.apply(16, &put(7, 1, "k", "v"));
        assert_eq!(retry.result, WriteResult::SessionExpired);
        assert!(retry.duplicate, "refused, not applied");
        assert_eq!(kv.cached_result(&put_key(7, 1, "k", "v")), Some(WriteResult::SessionExpired));
    }

    #[test]
    fn a_made_up_session_is_refused() {
        let mut kv = store();
        assert_eq!(kv.apply(10, &put(3, 1, "k", "v")).result, WriteResult::SessionExpired);
        assert_eq!(kv.get("k"), None);
    }

    #[test]
    fn a_session_not_yet_applied_is_not_answered_as_expired_early() {
        // A new leader whose store has not applied its predecessor's entries: the client's
        // registration is in the log, not yet in the store, and its write arrives.
        let mut kv = store();
        let write = put(12, 1, "k", "v");
        assert_eq!(kv.cached_result(&write.key()), None, "not refused before the log is applied");
        kv.skip(11);
        kv.register(12);
        assert!(matches!(kv.apply(13, &write).result, WriteResult::Put { .. }));
        assert_eq!(kv.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn without_sessions_a_retry_applies_twice() {
        let mut kv = store();
        kv.set_ignore_sessions(true);
        kv.apply(10, &put(7, 1, "k", "v1"));
        kv.apply(11, &put(8, 1, "k", "other"));
        assert!(!kv.apply(12, &put(7, 1, "k", "v1")).duplicate);
        assert_eq!(kv.get("k").map(String::as_str), Some("v1"));
    }

    #[test]
    fn a_full_store_refuses_what_would_grow_it_and_takes_what_shrinks_it() {
        let mut kv = store();
        kv.set_limit(10);
        assert!(matches!(kv.apply(10, &put(7, 1, "a", "12345")).result, WriteResult::Put { .. }));
        assert_eq!(kv.apply(11, &put(7, 2, "b", "12345")).result, WriteResult::StoreFull { limit: 10 });
        assert_eq!(kv.get("b"), None);
        assert!(matches!(kv.apply(12, &put(7, 3, "a", "1")).result, WriteResult::Put { .. }));
        assert!(matches!(kv.apply(13, &put(7, 4, "b", "1234")).result, WriteResult::Put { .. }));
        assert_eq!(kv.bytes(), 2 + 5);
        let mut restored = KvStore::new();
        restored.restore(&kv.snapshot());
        assert_eq!(restored.bytes(), kv.bytes(), "size is recounted from a snapshot");
    }

    #[test]
    fn sessions_survive_snapshot_and_restore_through_json() {
        let mut kv = store();
        kv.apply(10, &put(7, 1, "k", "v"));
        let json = serde_json::to_string(&kv.snapshot()).unwrap();
        let mut other = KvStore::new();
        other.restore(&serde_json::from_str(&json).unwrap());
        assert!(other.apply(11, &put(7, 1, "k", "v")).duplicate);
    }

    #[test]
    fn session_table_is_bounded_and_evicts_the_least_recently_active() {
        let mut kv = store();
        kv.apply(10, &put(7, 1, "k", "v"));
        for i in 11..(MAX_SESSIONS as u64 + 11) {
            kv.register(i);
        }
        assert_eq!(kv.sessions.len(), MAX_SESSIONS);
        assert!(!kv.has_session(8) && !kv.has_session(7), "the two oldest went");
        assert!(kv.has_session(MAX_SESSIONS as u64 + 10));
    }

    #[test]
    fn a_session_keeps_a_bounded_number_of_results() {
        let mut kv = store();
        for seq in 1..=(MAX_RESULTS_PER_SESSION as u64 + 10) {
            kv.apply(9 + seq, &put(7, seq, "k", "v"));
        }
        assert_eq!(kv.sessions[&7].results.len(), MAX_RESULTS_PER_SESSION);
        assert!(matches!(kv.apply(1_000, &put(7, 1, "k", "v")).result, WriteResult::StaleSequence { .. }));
    }
}
