//! A client's session across a failover: a new leader learns that its predecessor's entries are
//! committed only when an entry of its own term commits (§5.4.2), so for a while its store lags
//! its log. What the store has not applied yet must not be taken for what it forgot.

use shared::kv::{Command, WriteOp, WriteResult};
use shared::raft::{Body, Config, Entry, HardState, Message, Payload, Persisted, Role};
use shared::replica::{Replica, Reply, Request, RequestId};

const NEW_LEADER: u64 = 1;
const VOTER: u64 = 2;
/// The session was registered at index 1: that is its id.
const CLIENT: u64 = 1;

fn put(seq: u64, value: &str, answered_below: u64) -> Command {
    let op = WriteOp::Put { key: "x".into(), value: value.into() };
    Command { client: CLIENT, seq, op, answered_below }
}

/// Runs the replica's work loop as a driver would; returns what it sent and answered.
fn drain(r: &mut Replica) -> (Vec<Message>, Vec<(RequestId, Reply)>) {
    let (mut sent, mut replies) = (Vec::new(), Vec::new());
    while r.has_work() {
        let mut work = r.take_work();
        sent.append(&mut work.messages_now);
        sent.append(&mut work.messages);
        replies.extend(r.finish(work).replies);
    }
    (sent, replies)
}

fn from_voter(term: u64, body: Body) -> Message {
    Message { id: 0, from: VOTER, to: NEW_LEADER, term, body }
}

#[test]
fn a_new_leader_does_not_refuse_a_live_session_before_applying_its_predecessors_entries() {
    // The client's session and its first write reached this server's log in term 1 (and were
    // answered by the old leader, so the client says "answered below 2"); the old leader then
    // died.
    let registered = Entry { index: 1, term: 1, payload: Payload::Register };
    let first = Entry { index: 2, term: 1, payload: Payload::Command(put(1, "v1", 1)) };
    let persisted = Persisted {
        hard_state: HardState { term: 1, voted_for: None, admitted: true },
        snapshot: None,
        entries: vec![registered, first],
    };
    let mut config = Config::new(NEW_LEADER, vec![1, 2, 3]);
    config.pre_vote = false;
    let mut r = Replica::new(config, persisted, 7, 0, 0);

    let mut now = 0;
    while r.raft().role() != Role::Candidate {
        now = r.next_deadline();
        r.tick(now);
        drain(&mut r);
    }
    let term = r.raft().term();
    let granted = Body::VoteResponse { pre_vote: false, granted: true, refusal: None };
    r.step(now, from_voter(term, granted));
    drain(&mut r);
    assert_eq!(r.raft().role(), Role::Leader);
    assert_eq!(r.kv().applied(), 0, "nothing of term {term} is committed yet, so nothing applied");

    // The client's second write arrives at the new leader.
    r.request(now, 42, Request::Write { command: put(2, "v2", 2) });
    let (_, replies) = drain(&mut r);
    assert!(
        replies.iter().all(|(id, _)| *id != 42),
        "answered before the session's first write was applied: {replies:?}"
    );

    // A majority holds everything: the no-op of the new term and the write commit.
    let last = r.raft().last_index();
    let ack = Body::AppendResponse {
        success: true,
        index: last,
        conflict: None,
        last_log_index: last,
        read_round: 0,
        admitted: true,
    };
    r.step(now, from_voter(term, ack));
    let (_, replies) = drain(&mut r);
    let answer = replies.iter().find(|(id, _)| *id == 42).map(|(_, reply)| reply);
    assert!(
        matches!(answer, Some(Reply::Written { result: WriteResult::Put { previous: Some(v) }, .. }) if v == "v1"),
        "the second write applies after the first: {answer:?}"
    );
    assert_eq!(r.kv().get("x").map(String::as_str), Some("v2"));
}
