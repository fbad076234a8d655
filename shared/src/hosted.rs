//! Hosted nodes: a student's server, in any language, that speaks Maelstrom's protocol — JSON
//! lines on stdin and stdout — runs inside a Consenso cluster (`docs/node-protocol.md`).
//!
//! This is the protocol's pure half, without a process or a clock: what a node's line means
//! (`parse_line`), the lines Consenso writes to it (`init_line`, `deliver_line`,
//! `client_line`, `time_line`), how a client's request becomes a `lin-kv` operation and its
//! answer a `Reply` (`ClientOp`), and how the status lines a node writes become the same
//! observation events Consenso's own servers emit (`Tracker`), so that the page, the monitor
//! and recordings need nothing new. `consenso server --server-cmd` does the I/O.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::event::{EntrySummary, Event, RoleReason};
use crate::kv::{WriteOp, WriteResult};
use crate::raft::{Index, NodeId, Role, Status, Term};
use crate::replica::{ReplicaStatus, Reply, ReplyError, Request};
use crate::types::ShortName;

/// Longest line a node may write; a longer one is reported and skipped.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// The type of a node's status line (Consenso's addition; Maelstrom nodes need not send it).
pub const STATUS_TYPE: &str = "consenso_status";

/// Maelstrom names nodes `n1`, `n2`…; Consenso numbers them 1, 2….
pub fn node_name(id: NodeId) -> String {
    format!("n{id}")
}

/// The node id of a Maelstrom node name (`n3` → 3).
pub fn node_id(name: &str) -> Option<NodeId> {
    name.strip_prefix('n')?.parse().ok().filter(|id| *id > 0)
}

/// What one line from a node asks Consenso to do.
#[derive(Debug, Clone, PartialEq)]
pub enum FromNode {
    /// Carry `body` to another node.
    Peer { to: NodeId, name: ShortName, body: Value },
    /// The answer to a client operation Consenso sent (`in_reply_to` its `msg_id`).
    Reply { in_reply_to: u64, body: Value },
    /// The node is ready. `durable`: it keeps its state on disk across a crash (Consenso's
    /// optional field), so that crashing it is a fair test.
    InitOk { durable: bool },
    /// What the page draws: role, term, vote, commit, log.
    Status(NodeReport),
}

/// Why a line was not understood, in words for the student.
pub type LineError = String;

/// Reads one line a node wrote as node `me`.
pub fn parse_line(line: &str, me: NodeId) -> Result<FromNode, LineError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!("a line of {} bytes (at most {MAX_LINE_BYTES})", line.len()));
    }
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {}", clip(line)))?;
    let Value::Object(mut envelope) = value else {
        return Err(format!("not a JSON object: {}", clip(line)));
    };
    let dest = envelope.get("dest").and_then(Value::as_str).map(str::to_string);
    let Some(Value::Object(body)) = envelope.remove("body") else {
        return Err(format!("no \"body\" object: {}", clip(line)));
    };
    let Some(kind) = body.get("type").and_then(Value::as_str).map(str::to_string) else {
        return Err(format!("the body has no \"type\": {}", clip(line)));
    };
    match kind.as_str() {
        STATUS_TYPE => {
            let report = NodeReport::deserialize(Value::Object(body))
                .map_err(|e| format!("a {STATUS_TYPE} line Consenso cannot read ({e}): {}", clip(line)))?;
            return Ok(FromNode::Status(report));
        }
        "init_ok" => {
            let durable = body.get("durable").and_then(Value::as_bool).unwrap_or(false);
            return Ok(FromNode::InitOk { durable });
        }
        _ => {}
    }
    let Some(dest) = dest else { return Err(format!("no \"dest\": {}", clip(line))) };
    if let Some(to) = node_id(&dest) {
        if to == me {
            return Err(format!("node {} sent a message to itself: {}", node_name(me), clip(line)));
        }
        return Ok(FromNode::Peer { to, name: ShortName::new(&kind), body: Value::Object(body) });
    }
    if dest.starts_with('c') {
        let in_reply_to = body
            .get("in_reply_to")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("a message to client {dest} without \"in_reply_to\": {}", clip(line)))?;
        return Ok(FromNode::Reply { in_reply_to, body: Value::Object(body) });
    }
    Err(format!("\"dest\" {dest:?} is neither a node (n1, n2…) nor a client (c1…): {}", clip(line)))
}

/// At most 120 characters of a line, for error messages.
fn clip(line: &str) -> String {
    let mut out: String = line.chars().take(120).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

/// Consenso's own messages to a node come from this name (Maelstrom's clients are `c1`…).
const CONSENSO_CLIENT: &str = "c0";

/// The `init` line: the node's name and everyone's, and Consenso's optional settings.
pub fn init_line(me: NodeId, nodes: &[NodeId], extra: Value) -> String {
    let ids: Vec<String> = nodes.iter().map(|n| node_name(*n)).collect();
    let body =
        json!({"type": "init", "msg_id": 0, "node_id": node_name(me), "node_ids": ids, "consenso": extra});
    envelope(CONSENSO_CLIENT, &node_name(me), body)
}

/// A message from another node, delivered.
pub fn deliver_line(from: NodeId, to: NodeId, body: &Value) -> String {
    envelope(&node_name(from), &node_name(to), body.clone())
}

/// Consenso's clock for the node (an optional message a Maelstrom node may ignore): how much
/// slower than real time its timers should run, whether they are stopped, and how far a step
/// moved them.
pub fn time_line(me: NodeId, scale: f64, stopped: bool, advanced_ms: u64) -> String {
    let body =
        json!({"type": "consenso_time", "scale": scale, "stopped": stopped, "advanced_ms": advanced_ms});
    envelope(CONSENSO_CLIENT, &node_name(me), body)
}

fn envelope(src: &str, dest: &str, body: Value) -> String {
    json!({"src": src, "dest": dest, "body": body}).to_string()
}

/// A client operation sent to a node, waiting for its answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientOp {
    Read,
    Write,
    Cas,
}

/// The `lin-kv` line for a client's request (`msg_id`), or the answer Consenso gives itself
/// when the request has no `lin-kv` counterpart.
pub fn client_line(me: NodeId, msg_id: u64, request: &Request) -> Result<(ClientOp, String), Reply> {
    let (op, body) = match request {
        Request::Read { key, .. } => (ClientOp::Read, json!({"type": "read", "key": key})),
        Request::Write { command } => match &command.op {
            WriteOp::Put { key, value } => {
                (ClientOp::Write, json!({"type": "write", "key": key, "value": value}))
            }
            WriteOp::Cas { key, expected: Some(from), new } => {
                (ClientOp::Cas, json!({"type": "cas", "key": key, "from": from, "to": new}))
            }
            WriteOp::Cas { expected: None, .. } => return Err(unsupported("cas on an absent key")),
            WriteOp::Delete { .. } => return Err(unsupported("delete")),
        },
        // A hosted node keeps no sessions: a client's session is a number only it uses.
        Request::Register => return Err(Reply::Registered { client: msg_id }),
        Request::ChangeMembership { .. } => return Err(unsupported("membership changes")),
    };
    let mut body = body;
    body["msg_id"] = json!(msg_id);
    Ok((op, envelope(&format!("c{me}"), &node_name(me), body)))
}

fn unsupported(what: &str) -> Reply {
    Reply::Error {
        error: ReplyError::Refused { reason: format!("a hosted node speaks lin-kv, which has no {what}") },
    }
}

/// Maelstrom's error codes that say an operation certainly did not happen.
const TEMPORARILY_UNAVAILABLE: u64 = 11;
const KEY_DOES_NOT_EXIST: u64 = 20;
const PRECONDITION_FAILED: u64 = 22;
/// Other definite errors: not supported, malformed request, abort, txn conflict.
const DEFINITE: [u64; 4] = [10, 12, 14, 30];

impl ClientOp {
    /// The `Reply` for a node's answer `body` to this operation.
    pub fn reply(&self, body: &Value) -> Reply {
        let kind = body.get("type").and_then(Value::as_str).unwrap_or_default();
        let code = body.get("code").and_then(Value::as_u64);
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match (self, kind, code) {
            (ClientOp::Read, "read_ok", _) => {
                Reply::Value { value: body.get("value").filter(|v| !v.is_null()).map(text), index: 0 }
            }
            (ClientOp::Read, "error", Some(KEY_DOES_NOT_EXIST)) => Reply::Value { value: None, index: 0 },
            (ClientOp::Write, "write_ok", _) => {
                Reply::Written { result: WriteResult::Put { previous: None }, index: 0 }
            }
            (ClientOp::Cas, "cas_ok", _) => {
                Reply::Written { result: WriteResult::Cas { swapped: true, current: None }, index: 0 }
            }
            (ClientOp::Cas, "error", Some(PRECONDITION_FAILED | KEY_DOES_NOT_EXIST)) => {
                Reply::Written { result: WriteResult::Cas { swapped: false, current: None }, index: 0 }
            }
            // Certainly not done: another node may be asked.
            (_, "error", Some(TEMPORARILY_UNAVAILABLE)) => Reply::Error { error: ReplyError::NoLeader },
            (_, "error", Some(c)) if DEFINITE.contains(&c) => Reply::Error {
                error: ReplyError::Refused { reason: format!("the node answered error {c}: {}", text(body)) },
            },
            // Anything else may or may not have happened.
            (ClientOp::Read, _, _) => Reply::Error { error: ReplyError::Behind },
            _ => Reply::Error {
                error: ReplyError::Indeterminate { reason: format!("the node answered {}", text(body)) },
            },
        }
    }
}

/// A node's status line (`type: consenso_status`): what the page draws of it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NodeReport {
    /// `leader`, `candidate`, `pre_candidate` or `follower`.
    pub role: String,
    pub term: Term,
    #[serde(default)]
    pub voted_for: Option<String>,
    #[serde(default)]
    pub leader: Option<String>,
    #[serde(default, alias = "commit_index")]
    pub commit: Index,
    #[serde(default)]
    pub last_log_index: Option<Index>,
    #[serde(default)]
    pub last_log_term: Option<Term>,
    /// The log (optional): each entry's term, or `{"term": t, "op": …}`, from index
    /// `log_from` (default 1: the whole log) to its end. A node that sends only what changed
    /// since its last line keeps its lines short.
    #[serde(default)]
    pub log: Option<Vec<ReportedEntry>>,
    #[serde(default)]
    pub log_from: Option<Index>,
    /// Milliseconds until the node's election timer fires, on its clock (absent on a leader):
    /// the page draws the timer, and a step with nothing held runs the clock to it.
    #[serde(default)]
    pub election_timer_ms: Option<u64>,
    /// On a candidate: the nodes that granted it their vote so far (itself included).
    #[serde(default)]
    pub votes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ReportedEntry {
    Term(Term),
    Entry {
        term: Term,
        #[serde(default)]
        op: Value,
    },
}

impl ReportedEntry {
    fn summary(&self, index: Index) -> EntrySummary {
        match self {
            ReportedEntry::Term(term) => EntrySummary { index, term: *term, text: "".into() },
            ReportedEntry::Entry { term, op } => {
                let other;
                let text = match op {
                    Value::Null => "",
                    Value::String(s) => s.as_str(),
                    op => {
                        other = op.to_string();
                        other.as_str()
                    }
                };
                // The first 60 characters, made into the shared text with one copy.
                let cut = text.char_indices().nth(60).map_or(text.len(), |(i, _)| i);
                EntrySummary { index, term: *term, text: text[..cut].into() }
            }
        }
    }
}

/// Follows one node's status lines and says what changed as Consenso's observation events.
#[derive(Debug)]
pub struct Tracker {
    me: NodeId,
    voters: Vec<NodeId>,
    role: Role,
    term: Term,
    voted_for: Option<NodeId>,
    leader: Option<NodeId>,
    commit: Index,
    log: Vec<EntrySummary>,
    /// On a candidate, who granted it a vote (as it reports).
    votes: Vec<NodeId>,
    /// The node reported at least once.
    heard: bool,
}

impl Tracker {
    pub fn new(me: NodeId, voters: Vec<NodeId>) -> Tracker {
        Tracker {
            me,
            voters,
            role: Role::Follower,
            term: 0,
            voted_for: None,
            leader: None,
            commit: 0,
            log: Vec::new(),
            votes: Vec::new(),
            heard: false,
        }
    }

    pub fn heard(&self) -> bool {
        self.heard
    }

    /// The role last reported (a follower until the first report).
    pub fn role(&self) -> Role {
        self.role
    }

    /// The node's log as last reported.
    pub fn log(&self) -> &[EntrySummary] {
        &self.log
    }

    /// The events that take an observer from the last report to `report`, or why the report
    /// makes no sense.
    pub fn update(&mut self, report: NodeReport) -> Result<Vec<Event>, LineError> {
        let role = match report.role.as_str() {
            "leader" => Role::Leader,
            "candidate" => Role::Candidate,
            "pre_candidate" | "precandidate" => Role::PreCandidate,
            "follower" => Role::Follower,
            other => {
                return Err(format!("role {other:?} is none of leader, candidate, pre_candidate, follower"));
            }
        };
        let named = |name: &Option<String>, field: &str| -> Result<Option<NodeId>, LineError> {
            match name {
                None => Ok(None),
                Some(n) if n.is_empty() => Ok(None),
                Some(n) => {
                    node_id(n).map(Some).ok_or_else(|| format!("{field} {n:?} is not a node name (n1, n2…)"))
                }
            }
        };
        let voted_for = named(&report.voted_for, "voted_for")?;
        let leader = named(&report.leader, "leader")?.or((role == Role::Leader).then_some(self.me));
        let mut events = Vec::new();
        if !self.heard || role != self.role || report.term != self.term {
            let reason = if self.heard { RoleReason::Reported } else { RoleReason::Started };
            events.push(Event::RoleChanged { role, term: report.term, leader, reason });
        }
        if let Some(candidate) = voted_for
            && (voted_for != self.voted_for || report.term != self.term)
            && candidate != self.me
        {
            events.push(Event::VoteGranted { candidate, term: report.term, pre_vote: false });
        }
        let votes = report.votes.iter().flatten().filter_map(|n| node_id(n)).collect();
        let log = self.next_log(&report)?;
        events.extend(self.log_events(log));
        // Backwards too: the monitor says that a commit index must never go back.
        if report.commit > self.commit || (self.heard && report.commit < self.commit) {
            events.push(Event::CommitAdvanced { from: self.commit, to: report.commit, term: report.term });
        }
        (self.role, self.term, self.voted_for, self.leader, self.commit, self.votes) =
            (role, report.term, voted_for, leader, report.commit, votes);
        self.heard = true;
        Ok(events)
    }

    /// The log as the report has it: entry by entry if it sent its log, else as long as it says
    /// with the terms known (new entries take its last term).
    fn next_log(&self, report: &NodeReport) -> Result<Vec<EntrySummary>, LineError> {
        if let Some(log) = &report.log {
            let from = report.log_from.unwrap_or(1).max(1);
            if from > self.log.len() as Index + 1 {
                return Err(format!(
                    "log_from {from} leaves a hole: the last line's log ended at {}",
                    self.log.len()
                ));
            }
            let mut whole = self.log[..from as usize - 1].to_vec();
            whole.extend(log.iter().enumerate().map(|(i, e)| e.summary(from + i as Index)));
            return Ok(whole);
        }
        let last = report.last_log_index.unwrap_or(self.log.len() as Index) as usize;
        let term = report.last_log_term.unwrap_or(report.term);
        let mut log: Vec<EntrySummary> = self.log.iter().take(last).cloned().collect();
        let unknown: std::sync::Arc<str> = "".into();
        while log.len() < last {
            log.push(EntrySummary { index: log.len() as Index + 1, term, text: unknown.clone() });
        }
        Ok(log)
    }

    fn log_events(&mut self, log: Vec<EntrySummary>) -> Vec<Event> {
        let same = self.log.iter().zip(&log).take_while(|(a, b)| a == b).count();
        let mut events = Vec::new();
        if same < self.log.len() {
            events.push(Event::LogTruncated { from: same as Index + 1 });
        }
        if log.len() > same {
            events.push(Event::EntriesAppended { entries: log[same..].to_vec() });
        }
        self.log = log;
        events
    }

    /// The status a Consenso server would report, from what the node said (its election timer
    /// as its host placed it on the server's clock).
    pub fn status(&self, election_timeout: u64, election_deadline: u64) -> ReplicaStatus {
        let last = self.log.last();
        ReplicaStatus {
            raft: Status {
                id: self.me,
                role: self.role,
                term: self.term,
                voted_for: self.voted_for,
                admitted: true,
                leader: self.leader,
                first_index: 1,
                last_index: last.map_or(0, |e| e.index),
                last_term: last.map_or(0, |e| e.term),
                commit: self.commit,
                snapshot_index: 0,
                election_deadline,
                election_timeout,
                voters: self.voters.clone(),
                learners: Vec::new(),
                committed_voters: self.voters.clone(),
                committed_learners: Vec::new(),
                progress: Vec::new(),
                transfer_to: None,
                votes: self.votes.iter().map(|v| (*v, true)).collect(),
                votes_needed: if matches!(self.role, Role::Candidate | Role::PreCandidate) {
                    self.voters.len() as u32 / 2 + 1
                } else {
                    0
                },
                max_entries_per_message: 0,
            },
            applied: self.commit,
            keys: 0,
            pending_writes: 0,
            pending_reads: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_to_another_node_is_carried_with_its_type_as_its_name() {
        let line = r#"{"src":"n1","dest":"n2","body":{"type":"request_vote","term":3,"msg_id":7}}"#;
        let FromNode::Peer { to, name, body } = parse_line(line, 1).unwrap() else { panic!() };
        assert_eq!((to, name.as_str()), (2, "request_vote"));
        assert_eq!(body["term"], 3);
        assert_eq!(
            crate::raft::MessageKind::of_foreign(name.as_str(), &body),
            crate::raft::MessageKind::RequestVote
        );
    }

    #[test]
    fn garbage_and_half_messages_are_refused_with_the_reason() {
        for (line, says) in [
            ("not json \u{0} {{{", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"dest":"n2"}"#, "no \"body\""),
            (r#"{"dest":"n2","body":{}}"#, "no \"type\""),
            (r#"{"dest":"n1","body":{"type":"x"}}"#, "to itself"),
            (r#"{"dest":"zz","body":{"type":"x"}}"#, "neither a node"),
            (r#"{"dest":"c1","body":{"type":"read_ok"}}"#, "in_reply_to"),
        ] {
            let error = parse_line(line, 1).unwrap_err();
            assert!(error.contains(says), "{line}: {error}");
        }
    }

    #[test]
    fn lin_kv_answers_become_replies_and_only_definite_errors_say_not_done() {
        let read = ClientOp::Read.reply(&json!({"type": "read_ok", "value": 5}));
        assert_eq!(read, Reply::Value { value: Some("5".into()), index: 0 });
        let absent = ClientOp::Read.reply(&json!({"type": "error", "code": 20}));
        assert_eq!(absent, Reply::Value { value: None, index: 0 });
        let refused = ClientOp::Cas.reply(&json!({"type": "error", "code": 22}));
        assert!(matches!(refused, Reply::Written { result: WriteResult::Cas { swapped: false, .. }, .. }));
        let unavailable = ClientOp::Write.reply(&json!({"type": "error", "code": 11}));
        assert_eq!(unavailable, Reply::Error { error: ReplyError::NoLeader });
        let crashed = ClientOp::Write.reply(&json!({"type": "error", "code": 13}));
        assert!(matches!(crashed, Reply::Error { error: ReplyError::Indeterminate { .. } }));
    }

    fn report(role: &str, term: Term, commit: Index, log: &[Term]) -> NodeReport {
        NodeReport {
            role: role.into(),
            term,
            voted_for: Some("n2".into()),
            leader: None,
            commit,
            last_log_index: None,
            last_log_term: None,
            log: Some(log.iter().map(|t| ReportedEntry::Term(*t)).collect()),
            log_from: None,
            election_timer_ms: None,
            votes: None,
        }
    }

    #[test]
    fn status_lines_become_the_events_a_consenso_server_would_emit() {
        let mut tracker = Tracker::new(1, vec![1, 2, 3]);
        let first = tracker.update(report("follower", 1, 0, &[1])).unwrap();
        assert!(matches!(first[0], Event::RoleChanged { role: Role::Follower, term: 1, .. }));
        assert!(first.iter().any(|e| matches!(e, Event::VoteGranted { candidate: 2, term: 1, .. })));
        assert!(first.iter().any(|e| matches!(e, Event::EntriesAppended { entries } if entries.len() == 1)));
        // A conflicting suffix replaced (§5.3), then committed.
        let next = tracker.update(report("follower", 2, 2, &[1, 2])).unwrap();
        assert!(!next.iter().any(|e| matches!(e, Event::LogTruncated { .. })));
        let repaired = tracker.update(report("follower", 3, 2, &[1, 3, 3])).unwrap();
        assert!(repaired.iter().any(|e| matches!(e, Event::LogTruncated { from: 2 })));
        assert!(
            repaired.iter().any(|e| matches!(e, Event::EntriesAppended { entries } if entries[0].index == 2))
        );
        assert!(next.iter().any(|e| matches!(e, Event::CommitAdvanced { from: 0, to: 2, .. })));
        assert!(tracker.update(report("king", 3, 2, &[])).unwrap_err().contains("king"));
    }
}
