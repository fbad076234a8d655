//! Tests named after the rules of the Raft paper (§5.1–§5.4, §6.4, §7) and the dissertation
//! (§3.10, §6.2, §9.6), plus scenario tests for the classic cases. They drive `Raft` values by
//! hand through a tiny in-memory network, so every message can be held, cut or delivered.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::*;
use crate::kv::{Command, WriteOp};

fn put(key: &str, value: &str) -> Command {
    Command {
        client: 1,
        seq: 0,
        op: WriteOp::Put { key: key.into(), value: value.into() },
        answered_below: 0,
    }
}

/// What one Ready carried: its hard state, the messages sent before and after persisting.
type ReadySeen = (Option<HardState>, Vec<Message>, Vec<Message>);

/// A cluster whose every message passes through `in_flight`, delivered only when asked.
struct Harness {
    configs: BTreeMap<NodeId, Config>,
    nodes: BTreeMap<NodeId, Raft>,
    disks: BTreeMap<NodeId, Persisted>,
    clock: Millis,
    in_flight: VecDeque<Message>,
    cut: BTreeSet<(NodeId, NodeId)>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    reads: BTreeMap<NodeId, Vec<ReadOutcome>>,
    events: BTreeMap<NodeId, Vec<Event>>,
    /// Readies seen, for tests about what leaves before and after persisting.
    readies: BTreeMap<NodeId, Vec<ReadySeen>>,
}

impl Harness {
    fn new(n: u64, tweak: impl Fn(&mut Config)) -> Harness {
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut h = Harness {
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            clock: 0,
            in_flight: VecDeque::new(),
            cut: BTreeSet::new(),
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            events: BTreeMap::new(),
            readies: BTreeMap::new(),
        };
        for id in &ids {
            let mut cfg = Config::new(*id, ids.clone());
            tweak(&mut cfg);
            h.configs.insert(*id, cfg);
            h.disks.insert(*id, Persisted::default());
            h.start(*id);
        }
        h
    }

    /// Pre-vote and check-quorum off: the protocol exactly as in the paper's Figure 2.
    fn plain(n: u64) -> Harness {
        Harness::new(n, |c| {
            c.pre_vote = false;
            c.check_quorum = false;
        })
    }

    fn start(&mut self, id: NodeId) {
        let cfg = self.configs[&id].clone();
        let raft = Raft::new(cfg, self.disks[&id].clone(), id * 7919, self.clock);
        self.nodes.insert(id, raft);
        self.drain(id);
    }

    fn crash(&mut self, id: NodeId) {
        self.nodes.remove(&id);
        self.in_flight.retain(|m| m.to != id);
    }

    fn raft(&self, id: NodeId) -> &Raft {
        &self.nodes[&id]
    }

    fn raft_mut(&mut self, id: NodeId) -> &mut Raft {
        self.nodes.get_mut(&id).expect("node is up")
    }

    /// Handles every Ready of `id`: persist to its disk, queue messages, apply, advance.
    fn drain(&mut self, id: NodeId) {
        while self.nodes.get(&id).is_some_and(|r| r.has_ready()) {
            let raft = self.nodes.get_mut(&id).expect("up");
            let rd = raft.ready();
            let disk = self.disks.get_mut(&id).expect("disk");
            if let Some(s) = &rd.snapshot {
                disk.snapshot = Some(s.clone());
                disk.entries.clear();
            }
            if let Some(hs) = rd.hard_state {
                disk.hard_state = hs;
            }
            if let Some(first) = rd.entries.first() {
                disk.entries.retain(|e| e.index < first.index);
                disk.entries.extend(rd.entries.iter().cloned());
            }
            self.readies.entry(id).or_default().push((
                rd.hard_state,
                rd.messages_now.clone(),
                rd.messages.clone(),
            ));
            self.in_flight.extend(rd.messages_now);
            self.in_flight.extend(rd.messages);
            self.applied.entry(id).or_default().extend(rd.committed);
            self.reads.entry(id).or_default().extend(rd.reads);
            self.events.entry(id).or_default().extend(rd.events);
            self.nodes.get_mut(&id).expect("up").advance();
        }
    }

    fn drain_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.drain(id);
        }
    }

    /// Delivers messages until none are left (cut links and crashed nodes drop theirs).
    fn deliver(&mut self) {
        self.drain_all();
        let mut budget = 100_000;
        while let Some(msg) = self.in_flight.pop_front() {
            budget -= 1;
            assert!(budget > 0, "messages never stop flowing");
            self.deliver_one(msg);
        }
    }

    fn deliver_one(&mut self, msg: Message) {
        if self.cut.contains(&(msg.from, msg.to)) || !self.nodes.contains_key(&msg.to) {
            return;
        }
        let to = msg.to;
        let now = self.clock;
        self.raft_mut(to).step(now, msg);
        self.drain(to);
    }

    /// Takes the queued messages out of the network without delivering them.
    fn take_in_flight(&mut self) -> Vec<Message> {
        self.drain_all();
        self.in_flight.drain(..).collect()
    }

    /// Lets `id`'s election timer fire (nobody else's clock matters for this).
    fn time_out(&mut self, id: NodeId) {
        let deadline = self.raft(id).election_deadline;
        self.clock = self.clock.max(deadline);
        let now = self.clock;
        self.raft_mut(id).tick(now);
        self.drain(id);
    }

    /// Advances everyone's clock by `ms` in small steps, delivering as it goes.
    fn run_for(&mut self, ms: Millis) {
        let end = self.clock + ms;
        while self.clock < end {
            self.clock += 5;
            let now = self.clock;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.raft_mut(id).tick(now);
                self.drain(id);
            }
            self.deliver();
        }
    }

    fn elect(&mut self, id: NodeId) {
        self.time_out(id);
        self.deliver();
        assert_eq!(self.raft(id).role(), Role::Leader, "node {id} should have won");
    }

    fn propose(&mut self, id: NodeId, value: &str) -> Index {
        let now = self.clock;
        let (index, _) = self.raft_mut(id).propose(now, put("k", value)).expect("leader accepts");
        self.drain(id);
        index
    }

    fn isolate(&mut self, id: NodeId) {
        for other in self.configs.keys().copied().filter(|o| *o != id) {
            self.cut.insert((id, other));
            self.cut.insert((other, id));
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.nodes.values().filter(|r| r.role() == Role::Leader).map(|r| r.id()).collect()
    }

    fn log_terms(&self, id: NodeId) -> Vec<Term> {
        let r = self.raft(id);
        (r.log.first_index()..=r.last_index()).map(|i| r.term_at(i).expect("in log")).collect()
    }

    fn events_of(&self, id: NodeId) -> &[Event] {
        self.events.get(&id).map_or(&[], Vec::as_slice)
    }
}

// ------------------------------------------------------------------ §5.1 terms

#[test]
fn s5_1_a_higher_term_turns_a_leader_into_a_follower() {
    let mut h = Harness::plain(3);
    h.elect(1);
    let term = h.raft(1).term();
    let now = h.clock;
    let heartbeat = Message {
        id: 0,
        from: 2,
        to: 1,
        term: term + 3,
        body: Body::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![],
            leader_commit: 0,
            read_round: 0,
        },
    };
    h.raft_mut(1).step(now, heartbeat);
    assert_eq!(h.raft(1).role(), Role::Follower);
    assert_eq!(h.raft(1).term(), term + 3);
    assert_eq!(h.raft(1).leader(), Some(2));
}

#[test]
fn s5_1_messages_from_an_older_term_are_answered_with_the_newer_term() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.elect(2);
    let old = Message {
        id: 0,
        from: 1,
        to: 3,
        term: 1,
        body: Body::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![],
            leader_commit: 0,
            read_round: 0,
        },
    };
    let now = h.clock;
    h.raft_mut(3).step(now, old);
    let answers = h.take_in_flight();
    let answer = answers.iter().find(|m| m.to == 1).expect("node 3 answers the stale leader");
    assert_eq!(answer.term, h.raft(3).term());
    assert!(matches!(answer.body, Body::AppendResponse { success: false, .. }));
}

// ------------------------------------------------------------------ §5.2 leader election

#[test]
fn s5_2_a_follower_that_times_out_becomes_candidate_votes_for_itself_and_asks_everyone() {
    let mut h = Harness::plain(3);
    h.time_out(1);
    let r = h.raft(1);
    assert_eq!((r.role(), r.term(), r.voted_for), (Role::Candidate, 1, Some(1)));
    let asks: BTreeSet<NodeId> = h
        .take_in_flight()
        .into_iter()
        .filter(|m| matches!(m.body, Body::RequestVote { pre_vote: false, .. }))
        .map(|m| m.to)
        .collect();
    assert_eq!(asks, BTreeSet::from([2, 3]));
}

#[test]
fn s5_2_a_candidate_with_votes_from_a_majority_becomes_leader() {
    let mut h = Harness::plain(5);
    h.isolate(4);
    h.isolate(5);
    h.cut.remove(&(1, 4));
    h.time_out(1);
    h.deliver();
    assert_eq!(h.leaders(), vec![1], "votes from 1, 2, 3 are a majority of 5");
}

#[test]
fn s5_2_a_candidate_without_a_majority_does_not_become_leader() {
    let mut h = Harness::plain(5);
    h.isolate(3);
    h.isolate(4);
    h.isolate(5);
    h.time_out(1);
    h.deliver();
    assert_eq!(h.raft(1).role(), Role::Candidate);
}

#[test]
fn s5_2_each_server_votes_for_at_most_one_candidate_per_term() {
    let mut h = Harness::plain(3);
    h.time_out(1);
    let first = h.take_in_flight();
    h.time_out(2);
    let second = h.take_in_flight();
    assert_eq!(h.raft(1).term(), h.raft(2).term(), "both campaign in the same term");
    // Node 3 hears node 1 first, then node 2.
    for m in first.into_iter().chain(second).filter(|m| m.to == 3) {
        h.deliver_one(m);
    }
    let grants: Vec<NodeId> = h
        .take_in_flight()
        .into_iter()
        .filter(|m| m.from == 3 && matches!(m.body, Body::VoteResponse { granted: true, .. }))
        .map(|m| m.to)
        .collect();
    assert_eq!(grants, vec![1]);
    assert!(h.events_of(3).iter().any(|e| matches!(
        e,
        Event::VoteRefused { candidate: 2, refusal: VoteRefusal::AlreadyVoted { voted_for: 1 }, .. }
    )));
}

#[test]
fn s5_2_the_vote_is_persisted_before_the_answer_leaves() {
    let mut h = Harness::plain(3);
    h.time_out(1);
    let requests = h.take_in_flight();
    h.readies.clear();
    for m in requests.into_iter().filter(|m| m.to == 2) {
        h.deliver_one(m);
    }
    let readies = &h.readies[&2];
    let (hard_state, now, after) =
        readies.iter().find(|(_, _, after)| !after.is_empty()).expect("a ready with the vote");
    assert_eq!(
        hard_state.map(|hs| hs.voted_for),
        Some(Some(1)),
        "the vote is in the same ready's hard state"
    );
    assert!(now.is_empty(), "nothing leaves before the disk write");
    assert!(matches!(after[0].body, Body::VoteResponse { granted: true, .. }));
}

#[test]
fn s5_2_a_candidate_that_hears_from_the_leader_of_its_term_steps_down() {
    let mut h = Harness::plain(3);
    h.time_out(1);
    h.time_out(2);
    let _ = h.take_in_flight();
    let term = h.raft(2).term();
    let now = h.clock;
    let from_leader = Message {
        id: 0,
        from: 1,
        to: 2,
        term,
        body: Body::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![],
            leader_commit: 0,
            read_round: 0,
        },
    };
    h.raft_mut(2).step(now, from_leader);
    assert_eq!((h.raft(2).role(), h.raft(2).leader()), (Role::Follower, Some(1)));
}

#[test]
fn s5_2_election_timeouts_are_random_between_the_timeout_and_the_timeout_plus_its_jitter() {
    let h = Harness::plain(1);
    let mut raft = Raft::new(h.configs[&1].clone(), Persisted::default(), 1, 0);
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        raft.reset_election_timer();
        let t = raft.election_timeout;
        assert!((150..225).contains(&t), "{t}");
        seen.insert(t / 5);
    }
    assert!(seen.len() > 10, "timeouts should spread across the range");
}

#[test]
fn s5_2_a_split_vote_is_resolved_by_the_next_randomized_timeout() {
    let mut h = Harness::plain(4);
    h.time_out(1);
    h.time_out(2);
    // 1 and 2 split the vote: each gets one of {3, 4}.
    let msgs = h.take_in_flight();
    for m in msgs.into_iter().filter(|m| (m.from, m.to) == (1, 3) || (m.from, m.to) == (2, 4)) {
        h.deliver_one(m);
    }
    h.deliver();
    assert!(h.leaders().is_empty(), "2 of 4 votes is not a majority");
    h.run_for(2_000);
    assert_eq!(h.leaders().len(), 1, "a later election succeeds");
}

// ------------------------------------------------------------------ §5.3 log replication

#[test]
fn s5_3_a_leader_replicates_an_entry_and_commits_it_once_a_majority_stores_it() {
    let mut h = Harness::plain(3);
    h.elect(1);
    let index = h.propose(1, "x");
    h.deliver();
    assert!(h.raft(1).commit_index() >= index, "the leader commits once a majority stores it");
    assert!(h.applied[&1].iter().any(|e| e.index == index), "and applies it");
    // The followers learn it with the leader's next AppendEntries: here, its heartbeat.
    h.run_for(h.raft(1).config().heartbeat_interval + 1);
    for id in 2..=3 {
        assert!(h.raft(id).commit_index() >= index, "node {id} knows it is committed");
        assert!(h.applied[&id].iter().any(|e| e.index == index), "node {id} applied it");
    }
}

#[test]
fn s5_3_a_leader_with_only_a_minority_does_not_commit() {
    let mut h = Harness::plain(5);
    h.elect(1);
    let committed = h.raft(1).commit_index();
    h.isolate(1);
    h.cut.remove(&(1, 2));
    h.cut.remove(&(2, 1));
    let index = h.propose(1, "x");
    h.deliver();
    assert_eq!(h.raft(2).last_index(), index, "one follower stores it");
    assert_eq!(h.raft(1).commit_index(), committed, "two of five is not a majority");
}

#[test]
fn s5_3_a_follower_refuses_entries_that_do_not_follow_its_log_and_says_where_to_look() {
    let mut h = Harness::plain(3);
    h.elect(1);
    let now = h.clock;
    let term = h.raft(1).term();
    let gap = Message {
        id: 0,
        from: 1,
        to: 2,
        term,
        body: Body::AppendEntries {
            prev_log_index: 10,
            prev_log_term: term,
            entries: vec![],
            leader_commit: 0,
            read_round: 0,
        },
    };
    h.raft_mut(2).step(now, gap);
    let answer = h.take_in_flight().into_iter().find(|m| m.from == 2).expect("an answer");
    let Body::AppendResponse { success, conflict, .. } = answer.body else { panic!("{answer:?}") };
    assert!(!success);
    assert_eq!(conflict, Some(ConflictHint { term: None, index: h.raft(2).last_index() + 1 }));
}

#[test]
fn s5_3_conflicting_entries_of_a_deposed_leader_are_overwritten() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.isolate(1);
    let lost = h.propose(1, "lost");
    h.propose(1, "lost too");
    h.elect(2);
    h.propose(2, "kept");
    h.deliver();
    assert_ne!(
        h.raft(2).term_at(lost),
        h.raft(1).term_at(lost),
        "the new leader put its own entry in that slot"
    );
    h.heal();
    h.run_for(300);
    assert_eq!(h.log_terms(1), h.log_terms(2), "node 1's log now matches the leader's");
    assert!(h.events_of(1).iter().any(|e| matches!(e, Event::LogTruncated { from } if *from == lost)));
}

#[test]
fn s5_3_fast_backtracking_skips_a_whole_divergent_term_in_one_round_trip() {
    let mut h = Harness::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.max_entries_per_message = 100;
    });
    h.elect(1);
    h.isolate(1);
    for i in 0..50 {
        h.propose(1, &format!("stale {i}"));
    }
    h.elect(2);
    h.propose(2, "fresh");
    h.deliver();
    h.heal();
    h.events.clear();
    h.run_for(200);
    let rejections =
        h.events_of(2).iter().filter(|e| matches!(e, Event::AppendRejected { follower: 1, .. })).count();
    assert!(rejections <= 2, "{rejections} round trips to skip 50 divergent entries");
    assert_eq!(h.log_terms(1), h.log_terms(2));
}

#[test]
fn s5_3_pipelining_is_bounded_by_the_in_flight_limit() {
    let mut h = Harness::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.max_entries_per_message = 1;
        c.max_inflight_messages = 4;
    });
    h.elect(1);
    for i in 0..20 {
        let now = h.clock;
        h.raft_mut(1).propose(now, put("k", &i.to_string())).expect("leader");
    }
    h.drain(1);
    let appends = h.take_in_flight().into_iter().filter(|m| m.to == 2).count();
    assert_eq!(appends, 4, "at most 4 AppendEntries in flight to one follower");
    h.deliver();
    h.run_for(100);
    assert_eq!(h.raft(2).last_index(), h.raft(1).last_index(), "the rest follows as acknowledgements return");
}

#[test]
fn s5_3_a_leader_sends_appends_before_its_own_disk_write_but_counts_itself_only_after() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.readies.clear();
    h.propose(1, "x");
    let (_, now, _) = &h.readies[&1][0];
    assert!(
        now.iter().any(|m| matches!(&m.body, Body::AppendEntries { entries, .. } if !entries.is_empty()))
    );
}

// ------------------------------------------------------------------ §5.4 safety

#[test]
fn s5_4_1_a_vote_is_refused_to_a_candidate_whose_log_is_less_up_to_date() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.isolate(3);
    h.propose(1, "x");
    h.deliver();
    h.heal();
    h.crash(1);
    h.time_out(3);
    h.deliver();
    assert_ne!(h.raft(3).role(), Role::Leader);
    assert!(h.events_of(2).iter().any(|e| matches!(
        e,
        Event::VoteRefused { candidate: 3, refusal: VoteRefusal::LogNotUpToDate { .. }, .. }
    )));
}

/// Figure 8 of the paper, on three servers. Entry X (term 1) ends up stored on a majority by
/// the leader of term 3; counting replicas would commit it, yet node 2 — holding a term-2
/// entry in that slot — can still be elected and overwrite it.
fn figure_8(bugs: Bugs) -> (Harness, Index) {
    let mut h = Harness::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.max_entries_per_message = 1;
        c.bugs = bugs;
    });
    h.elect(1);
    h.deliver();
    // (a) Leader 1 (term 1) appends X but nobody else receives it.
    h.isolate(1);
    let x = h.propose(1, "X");
    // (b) Node 2 wins term 2 with node 3's vote and appends its no-op in X's slot, which
    // nobody receives either.
    h.heal();
    h.isolate(1);
    h.time_out(2);
    let msgs = h.take_in_flight();
    for m in msgs.into_iter().filter(|m| m.to == 3 || m.from == 3) {
        h.deliver_one(m);
    }
    let replies = h.take_in_flight();
    for m in replies.into_iter().filter(|m| m.to == 2) {
        h.deliver_one(m);
    }
    assert_eq!(h.raft(2).role(), Role::Leader);
    assert_eq!(h.raft(2).term_at(x), Some(2));
    let _ = h.take_in_flight();
    // (c) Node 1 restarts and, with node 3's vote (node 2 is cut off), wins a later term. It
    // sends X to node 3 and the acknowledgement comes back, but its own no-op never reaches
    // node 3.
    h.crash(1);
    h.start(1);
    h.heal();
    h.isolate(2);
    let mut x_reached_3 = false;
    for _ in 0..5 {
        h.time_out(1);
        for _ in 0..20 {
            for m in h.take_in_flight() {
                let to_3_with_noop = m.to == 3
                    && matches!(&m.body, Body::AppendEntries { entries, .. } if entries.iter().any(|e| e.index > x));
                if to_3_with_noop && h.raft(3).term_at(x) == Some(1) {
                    continue;
                }
                h.deliver_one(m);
                x_reached_3 |= h.raft(3).term_at(x) == Some(1);
            }
        }
        if h.raft(1).role() == Role::Leader {
            break;
        }
    }
    assert_eq!(h.raft(1).role(), Role::Leader);
    assert!(x_reached_3, "node 3 received X from the leader of term 3");
    assert_eq!(h.raft(3).term_at(x), Some(1));
    (h, x)
}

#[test]
fn s5_4_2_a_leader_never_commits_an_earlier_term_entry_by_counting_replicas() {
    let (h, x) = figure_8(Bugs::none());
    assert!(h.raft(1).commit_index() < x, "X is on a majority but of an old term: not committed");
}

#[test]
fn figure_8_counting_replicas_of_an_old_term_loses_a_committed_entry() {
    let (mut h, x) = figure_8(Bugs::none().with(Bug::CommitOldTerm));
    assert!(h.raft(1).commit_index() >= x, "the defect commits X");
    // (d) Node 1 crashes; node 2 (last term 2) wins node 3's vote and overwrites X.
    h.crash(1);
    h.heal();
    h.run_for(3_000);
    assert_eq!(h.raft(2).role(), Role::Leader, "node 3 votes for node 2, whose last term is higher");
    assert_eq!(h.raft(3).term_at(x), Some(2), "the 'committed' X is gone from node 3");
}

// ------------------------------------------------------------------ crashes and restarts

#[test]
fn a_restarted_server_keeps_its_term_vote_and_log_and_catches_up() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.propose(1, "a");
    h.deliver();
    let (term, vote, last) = (h.raft(3).term(), h.raft(3).voted_for, h.raft(3).last_index());
    h.crash(3);
    h.propose(1, "b");
    h.deliver();
    h.start(3);
    assert_eq!((h.raft(3).term(), h.raft(3).voted_for, h.raft(3).last_index()), (term, vote, last));
    h.run_for(200);
    assert_eq!(h.raft(3).last_index(), h.raft(1).last_index());
    assert_eq!(h.raft(3).commit_index(), h.raft(1).commit_index());
}

// ------------------------------------------------------------------ §6.4 reads

#[test]
fn s6_4_a_leader_serves_a_read_only_after_a_majority_confirms_its_leadership() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.deliver();
    let now = h.clock;
    h.raft_mut(1).read_index(now, 7);
    h.drain(1);
    assert!(h.reads.get(&1).is_none_or(|r| r.is_empty()), "not before the heartbeat round");
    h.deliver();
    let commit = h.raft(1).commit_index();
    assert_eq!(h.reads[&1], vec![ReadOutcome { id: 7, result: Ok(commit) }]);
}

#[test]
fn s6_4_a_leader_cut_off_from_the_majority_cannot_serve_a_linearizable_read() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.deliver();
    h.isolate(1);
    let now = h.clock;
    h.raft_mut(1).read_index(now, 7);
    h.run_for(500);
    assert!(h.reads.get(&1).is_none_or(|r| r.iter().all(|o| o.result.is_err())));
}

#[test]
fn s6_4_a_follower_read_asks_the_leader_for_the_read_index() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.propose(1, "x");
    h.deliver();
    let now = h.clock;
    h.raft_mut(3).read_index(now, 9);
    h.drain(3);
    assert!(
        h.take_in_flight()
            .iter()
            .any(|m| m.to == 1 && matches!(m.body, Body::ReadIndexRequest { read_id: 9 }))
    );
    let now = h.clock;
    h.raft_mut(3).read_index(now, 10);
    h.deliver();
    let commit = h.raft(1).commit_index();
    assert!(h.reads[&3].contains(&ReadOutcome { id: 10, result: Ok(commit) }));
}

#[test]
fn s6_4_a_new_leader_holds_reads_until_it_commits_an_entry_of_its_term() {
    let mut h = Harness::plain(3);
    h.time_out(1);
    // Deliver the votes but hold every AppendEntries: the no-op is not yet committed.
    let mut held = Vec::new();
    for _ in 0..4 {
        for m in h.take_in_flight() {
            if matches!(m.body, Body::AppendEntries { .. }) {
                held.push(m);
            } else {
                h.deliver_one(m);
            }
        }
    }
    assert_eq!(h.raft(1).role(), Role::Leader);
    let now = h.clock;
    h.raft_mut(1).read_index(now, 1);
    h.drain(1);
    assert!(h.reads.get(&1).is_none_or(|r| r.is_empty()));
    h.in_flight.extend(held);
    h.deliver();
    assert_eq!(h.reads[&1].len(), 1);
    assert!(h.reads[&1][0].result.is_ok());
}

#[test]
fn s6_4_a_follower_without_a_leader_fails_the_read_at_once() {
    let mut h = Harness::plain(3);
    let now = h.clock;
    h.raft_mut(2).read_index(now, 5);
    h.drain(2);
    assert_eq!(h.reads[&2], vec![ReadOutcome { id: 5, result: Err(ReadError::NoLeader) }]);
}

#[test]
fn s6_4_a_follower_read_whose_request_is_lost_gives_up_instead_of_waiting_forever() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.deliver();
    h.cut.insert((3, 1));
    let now = h.clock;
    h.raft_mut(3).read_index(now, 9);
    h.run_for(1_000);
    assert_eq!(h.raft(3).leader(), Some(1), "still following the leader it cannot reach");
    assert_eq!(h.reads[&3], vec![ReadOutcome { id: 9, result: Err(ReadError::Unconfirmed) }]);
}

#[test]
fn stale_read_defect_answers_without_asking_anyone() {
    let mut h = Harness::new(3, |c| c.bugs = Bugs::none().with(Bug::StaleRead));
    let now = h.clock;
    h.raft_mut(2).read_index(now, 5);
    h.drain(2);
    assert_eq!(h.reads[&2], vec![ReadOutcome { id: 5, result: Ok(0) }]);
}

// ------------------------------------------------------------------ §7 snapshots

#[test]
fn s7_a_follower_behind_the_compacted_log_receives_a_snapshot() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.crash(3);
    for i in 0..10 {
        h.propose(1, &format!("v{i}"));
    }
    h.deliver();
    let applied = h.raft(1).applied;
    let mut store = crate::kv::KvStore::new();
    store.set_applied(applied);
    h.raft_mut(1).compact(applied, store).expect("compacts");
    h.drain(1);
    assert!(h.raft(1).log.first_index() > 1);
    h.start(3);
    h.run_for(300);
    assert!(h.events_of(1).iter().any(|e| matches!(e, Event::SnapshotSent { to: 3, .. })));
    assert!(h.events_of(3).iter().any(|e| matches!(e, Event::SnapshotInstalled { .. })));
    assert_eq!(h.raft(3).last_index(), h.raft(1).last_index());
    assert_eq!(h.disks[&3].snapshot.as_ref().map(|s| s.meta.index), Some(applied));
}

#[test]
fn s7_a_snapshot_larger_than_a_message_travels_in_chunks_and_resumes_after_a_lost_one() {
    let mut h = Harness::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.max_bytes_per_message = 40;
    });
    h.elect(1);
    h.crash(3);
    for i in 0..6 {
        h.propose(1, &format!("value-{i}"));
    }
    h.deliver();
    let applied = h.raft(1).applied;
    // A store of that size, whatever its entries said.
    let mut store = crate::kv::KvStore::new();
    store.register(1);
    for i in 2..=applied {
        store.apply(i, &put(&format!("k{i}"), "some value that takes room"));
    }
    h.raft_mut(1).compact(applied, store.clone()).expect("compacts");
    h.drain(1);
    h.start(3);
    // Let the first chunk through, lose the second, then let everything flow.
    let mut chunks_seen = 0;
    let mut lost = false;
    for _ in 0..200 {
        h.clock += 10;
        let now = h.clock;
        h.raft_mut(1).tick(now);
        h.drain(1);
        for msg in h.take_in_flight() {
            if let Body::InstallSnapshot { offset, .. } = &msg.body {
                chunks_seen += 1;
                if *offset > 0 && !lost {
                    lost = true;
                    continue;
                }
            }
            h.deliver_one(msg);
        }
        if h.events_of(3).iter().any(|e| matches!(e, Event::SnapshotInstalled { .. })) {
            break;
        }
    }
    assert!(lost, "a chunk after the first was lost");
    assert!(chunks_seen > 3, "the snapshot took several messages: {chunks_seen}");
    assert!(h.events_of(3).iter().any(|e| matches!(e, Event::SnapshotInstalled { .. })));
    assert_eq!(h.disks[&3].snapshot.as_ref().map(|s| &s.data), Some(&store), "the same store, byte for byte");
}

// ------------------------------------------------------------------ pre-vote, check-quorum, transfer

#[test]
fn s9_6_a_partitioned_server_does_not_inflate_its_term_and_disrupt_the_leader_on_return() {
    let mut h = Harness::new(3, |_| {});
    h.elect(1);
    let term = h.raft(1).term();
    h.isolate(3);
    h.run_for(2_000);
    assert_eq!(h.raft(3).term(), term, "pre-votes fail, so the term never rises");
    h.heal();
    h.run_for(300);
    assert_eq!(h.leaders(), vec![1]);
    assert_eq!(h.raft(1).term(), term);
}

#[test]
fn without_pre_vote_a_returning_server_does_disrupt_the_leader() {
    let mut h = Harness::plain(3);
    h.elect(1);
    let term = h.raft(1).term();
    h.isolate(3);
    h.run_for(2_000);
    assert!(h.raft(3).term() > term);
    h.heal();
    h.run_for(1_000);
    assert!(h.raft(1).term() > term, "the higher term forced a new election");
}

#[test]
fn s6_2_check_quorum_a_leader_cut_off_from_the_majority_steps_down() {
    let mut h = Harness::new(3, |_| {});
    h.elect(1);
    h.isolate(1);
    h.run_for(400);
    assert_eq!(h.raft(1).role(), Role::Follower);
    assert!(h.events_of(1).iter().any(|e| matches!(
        e,
        Event::RoleChanged { reason: crate::event::RoleReason::CheckQuorumFailed, .. }
    )));
}

#[test]
fn s4_2_3_servers_that_hear_a_leader_ignore_candidates() {
    let mut h = Harness::new(3, |_| {});
    h.elect(1);
    h.run_for(100);
    // Node 2 times out (say it missed heartbeats) while node 3 still hears leader 1.
    let now = h.clock;
    h.raft_mut(2).now = now;
    h.raft_mut(2).on_election_timeout();
    h.deliver();
    assert_eq!(h.leaders(), vec![1]);
    assert!(h.events_of(3).iter().any(|e| matches!(
        e,
        Event::VoteRefused { candidate: 2, refusal: VoteRefusal::LeaderActive { leader: 1 }, .. }
    )));
}

#[test]
fn s3_10_leadership_transfer_hands_over_to_the_chosen_server() {
    let mut h = Harness::new(3, |_| {});
    h.elect(1);
    h.propose(1, "x");
    h.deliver();
    let now = h.clock;
    h.raft_mut(1).transfer_leadership(now, 3).expect("leader");
    assert!(matches!(
        h.raft_mut(1).propose(now, put("k", "y")),
        Err(ProposeError::TransferInProgress { to: 3 })
    ));
    h.deliver();
    assert_eq!(h.leaders(), vec![3]);
}

// ------------------------------------------------------------------ determinism

#[test]
fn the_same_seed_and_inputs_give_the_same_outputs() {
    let run = || {
        let mut h = Harness::new(5, |_| {});
        h.run_for(3_000);
        h.propose(h.leaders()[0], "x");
        h.run_for(500);
        h.events
    };
    assert_eq!(run(), run());
}

#[test]
#[should_panic(expected = "input between ready() and advance()")]
fn no_input_may_arrive_between_ready_and_advance() {
    let mut raft = Raft::new(Config::new(1, vec![1, 2, 3]), Persisted::default(), 1, 0);
    let _ready = raft.ready();
    raft.tick(1_000);
}

mod membership;

#[test]
#[should_panic(expected = "beyond the last entry")]
fn the_invariants_catch_a_commit_index_past_the_log() {
    let mut h = Harness::new(3, |_| {});
    h.elect(1);
    let r = h.raft_mut(1);
    r.commit = r.log.last_index() + 1;
    r.check_invariants();
}

#[test]
#[should_panic(expected = "only a leader leads")]
fn the_invariants_catch_a_follower_that_thinks_it_leads() {
    let mut h = Harness::new(3, |_| {});
    h.elect(1);
    let r = h.raft_mut(2);
    r.leader = Some(2);
    r.check_invariants();
}

#[test]
#[should_panic(expected = "without progress")]
fn the_invariants_catch_a_leader_that_lost_track_of_a_follower() {
    let mut h = Harness::new(3, |_| {});
    h.elect(1);
    let r = h.raft_mut(1);
    r.progress.remove(&3);
    r.check_invariants();
}
