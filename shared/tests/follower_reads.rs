//! Follower reads (dissertation §6.4) against answers that arrive late or from the wrong
//! server. A follower is driven by hand with the messages a leader would send, so every
//! interleaving is exact.

use shared::event::Consistency;
use shared::kv::{Command, WriteOp};
use shared::raft::{Body, Config, Entry, HardState, Message, Millis, Payload, Persisted};
use shared::replica::{Replica, Reply, ReplyError, Request, RequestId};

const LEADER: u64 = 1;
const FOLLOWER: u64 = 3;

/// The client's session, registered at index 1 (its id).
fn register() -> Entry {
    Entry { index: 1, term: 1, payload: Payload::Register }
}

fn put(index: u64, value: &str) -> Entry {
    let op = WriteOp::Put { key: "x".into(), value: value.into() };
    Entry {
        index,
        term: 1,
        payload: Payload::Command(Command { client: 1, seq: index, op, answered_below: 0 }),
    }
}

fn from_leader(body: Body) -> Message {
    Message { id: 0, from: LEADER, to: FOLLOWER, term: 1, body }
}

fn append(prev: u64, entries: Vec<Entry>, commit: u64) -> Message {
    from_leader(Body::AppendEntries {
        prev_log_index: prev,
        prev_log_term: if prev == 0 { 0 } else { 1 },
        entries,
        leader_commit: commit,
        read_round: 0,
    })
}

fn read_answer(from: u64, read_id: u64, index: u64) -> Message {
    Message {
        id: 0,
        from,
        to: FOLLOWER,
        term: 1,
        body: Body::ReadIndexResponse { read_id, index: Some(index) },
    }
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

fn follower(persisted: Persisted, seed: u64) -> Replica {
    let cfg = Config::new(FOLLOWER, vec![1, 2, 3]);
    Replica::new(cfg, persisted, seed, 0, 0)
}

/// Starts a linearizable read and returns the read id the follower asked the leader about.
fn start_read(r: &mut Replica, now: Millis, request: RequestId) -> u64 {
    r.request(now, request, Request::Read { key: "x".into(), consistency: Consistency::Linearizable });
    let (sent, _) = drain(r);
    sent.iter()
        .find_map(|m| match m.body {
            Body::ReadIndexRequest { read_id } if m.to == LEADER => Some(read_id),
            _ => None,
        })
        .expect("the follower asks the leader for a read index")
}

fn value_of(replies: &[(RequestId, Reply)], request: RequestId) -> Option<Option<String>> {
    replies.iter().find(|(id, _)| *id == request).map(|(_, reply)| match reply {
        Reply::Value { value, .. } => value.clone(),
        other => panic!("read {request} failed: {other:?}"),
    })
}

#[test]
fn an_answer_meant_for_a_read_before_a_restart_does_not_answer_a_read_after_it() {
    // First life: x=old is committed at index 2; a read is forwarded to the leader.
    let mut first = follower(Persisted::default(), 1);
    first.step(0, append(0, vec![register(), put(2, "old")], 2));
    drain(&mut first);
    let before = start_read(&mut first, 1, 1);
    // The server restarts with its log (term and entries are durable; commit is not) while the
    // leader commits x=new at index 3 with the other follower's help.
    let persisted = Persisted {
        hard_state: HardState { term: 1, voted_for: None, admitted: true },
        snapshot: None,
        entries: vec![register(), put(2, "old")],
    };
    let mut second = follower(persisted, 2);
    second.step(10, append(2, vec![], 2));
    drain(&mut second);
    let after = start_read(&mut second, 11, 7);
    assert_ne!(before, after, "read ids differ between lives of a server");
    // The leader's answer to the first life's read arrives now: index 2 would serve x=old,
    // although x=new was committed before this read began.
    second.step(12, read_answer(LEADER, before, 2));
    let (_, replies) = drain(&mut second);
    assert_eq!(value_of(&replies, 7), None, "a stale answer must not complete the new read");
    // The right answer (index 3) waits for x=new to be applied, then serves it.
    second.step(13, read_answer(LEADER, after, 3));
    assert_eq!(value_of(&drain(&mut second).1, 7), None, "index 3 is not applied yet");
    second.step(14, append(2, vec![put(3, "new")], 3));
    assert_eq!(value_of(&drain(&mut second).1, 7), Some(Some("new".into())));
}

#[test]
fn a_read_index_counts_only_from_the_leader_asked() {
    let mut r = follower(Persisted::default(), 3);
    r.step(0, append(0, vec![register(), put(2, "old")], 2));
    drain(&mut r);
    let id = start_read(&mut r, 1, 5);
    // Another server (not the leader asked) answers with the same id.
    r.step(2, read_answer(2, id, 2));
    assert_eq!(value_of(&drain(&mut r).1, 5), None);
    r.step(3, read_answer(LEADER, id, 2));
    assert_eq!(value_of(&drain(&mut r).1, 5), Some(Some("old".into())));
}

#[test]
fn a_read_index_counts_only_in_the_term_it_was_asked() {
    let mut r = follower(Persisted::default(), 3);
    r.step(0, append(0, vec![register(), put(2, "old")], 2));
    drain(&mut r);
    let id = start_read(&mut r, 1, 5);
    // The leader's answer, but stamped with an earlier term: from a previous life, ignored.
    let mut stale = read_answer(LEADER, id, 2);
    stale.term = 0;
    r.step(2, stale);
    assert_eq!(value_of(&drain(&mut r).1, 5), None);
    r.step(3, read_answer(LEADER, id, 2));
    assert_eq!(value_of(&drain(&mut r).1, 5), Some(Some("old".into())));
}

#[test]
fn a_read_waiting_for_its_index_to_be_applied_gives_up_and_says_this_server_is_behind() {
    let mut r = follower(Persisted::default(), 4);
    r.step(0, append(0, vec![register(), put(2, "old")], 2));
    drain(&mut r);
    let id = start_read(&mut r, 1, 5);
    // The leader has committed index 3, which this server never receives.
    r.step(2, read_answer(LEADER, id, 3));
    assert!(drain(&mut r).1.is_empty());
    // Time passes with nothing from the leader; the driver sleeps until each next deadline.
    let mut replies = Vec::new();
    for _ in 0..20 {
        let deadline = r.next_deadline();
        r.tick(deadline);
        replies.extend(drain(&mut r).1);
        if !replies.is_empty() {
            break;
        }
    }
    assert!(
        replies.contains(&(5, Reply::Error { error: ReplyError::Behind })),
        "the read gives up instead of waiting forever: {replies:?}"
    );
}
