//! Membership changes (dissertation chapter 4, and the 2015 correction), driven by hand.

use super::*;

impl Harness {
    /// Starts server `id` with an empty disk and no configuration: it waits to be added.
    fn boot_new_server(&mut self, id: NodeId) {
        let mut cfg = Config::joining(id);
        cfg.pre_vote = self.configs[&1].pre_vote;
        cfg.check_quorum = self.configs[&1].check_quorum;
        self.configs.insert(id, cfg);
        self.disks.insert(id, Persisted::default());
        self.start(id);
    }

    fn change(&mut self, leader: NodeId, change: MembershipChange) -> Result<Index, ProposeError> {
        let now = self.clock;
        let result = self.raft_mut(leader).change_membership(now, change);
        self.drain(leader);
        result
    }

    fn members(&self, id: NodeId) -> (Vec<NodeId>, Vec<NodeId>) {
        let status = self.raft(id).status();
        (status.voters, status.learners)
    }
}

fn add(id: NodeId) -> MembershipChange {
    MembershipChange::AddLearner { id, address: format!("host-{id}:7000") }
}

#[test]
fn s4_2_1_a_new_server_joins_as_a_learner_catches_up_and_is_then_promoted() {
    let mut h = Harness::plain(3);
    h.elect(1);
    for i in 0..5 {
        h.propose(1, &format!("v{i}"));
    }
    h.deliver();
    h.boot_new_server(4);
    assert_eq!(h.raft(4).role(), Role::Follower);
    let index = h.change(1, add(4)).expect("the leader accepts");
    assert_eq!(h.members(1), (vec![1, 2, 3], vec![4]), "in force as soon as appended");
    h.deliver();
    assert!(h.raft(1).commit_index() > index);
    for id in 1..=4 {
        assert_eq!(h.members(id), (vec![1, 2, 3, 4], vec![]), "node {id}");
    }
    // It learns the commit index with the leader's next heartbeat.
    h.run_for(h.raft(1).config().heartbeat_interval + 1);
    assert_eq!(h.raft(4).commit_index(), h.raft(1).commit_index(), "the new voter holds everything");
    let config = h.raft(1).entry(index).map(|e| e.payload.clone());
    assert!(
        matches!(config, Some(Payload::Config(c)) if c.addresses.get(&4).map(String::as_str) == Some("host-4:7000")),
        "the learner's address travels in the log"
    );
    let announced = h.events_of(4).iter().filter(|e| matches!(e, Event::MembershipChanged { .. })).count();
    assert!(announced >= 2, "the learner saw itself added, then promoted");
}

#[test]
fn s4_2_1_a_learner_neither_starts_elections_nor_counts_for_commitment() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.deliver();
    h.boot_new_server(4);
    // The learner receives the log, but its acknowledgements of entries are lost: the leader
    // never sees it caught up, and it stays a learner.
    h.change(1, add(4)).unwrap();
    for _ in 0..20 {
        for m in h.take_in_flight() {
            let acknowledges = m.from == 4 && matches!(m.body, Body::AppendResponse { success: true, .. });
            if !acknowledges {
                h.deliver_one(m);
            }
        }
    }
    assert_eq!(h.members(4), (vec![1, 2, 3], vec![4]), "the learner knows it is one");
    h.time_out(4);
    assert_eq!(h.raft(4).role(), Role::Follower, "a learner never campaigns");
    assert!(h.take_in_flight().iter().all(|m| !matches!(m.body, Body::RequestVote { .. })));
    // With two voters down, the leader and the learner store a new entry: not a majority of
    // the voters, so it does not commit — nor after the learner is promoted (2 of 4).
    h.crash(2);
    h.crash(3);
    let index = h.propose(1, "needs-a-majority-of-voters");
    h.run_for(300);
    assert!(h.raft(4).last_index() >= index, "the learner stores it");
    assert!(h.raft(1).commit_index() < index, "a learner does not make a majority");
}

#[test]
fn s4_1_one_change_at_a_time_the_next_waits_until_the_previous_commits() {
    let mut h = Harness::plain(3);
    h.elect(1);
    h.deliver();
    h.boot_new_server(4);
    let first = h.change(1, add(4)).unwrap();
    assert_eq!(h.change(1, add(5)), Err(ProposeError::MembershipChangePending { index: first }));
    h.deliver();
    h.boot_new_server(5);
    assert!(h.change(1, add(5)).is_ok(), "once committed, the next change may start");
}

/// Elects `id` without letting its first entry be acknowledged.
fn elect_without_committing(h: &mut Harness, id: NodeId) {
    h.time_out(id);
    for request in h.take_in_flight() {
        h.deliver_one(request);
    }
    for answer in h.take_in_flight().into_iter().filter(|m| m.to == id) {
        h.deliver_one(answer);
    }
    h.take_in_flight();
    assert_eq!(h.raft(id).role(), Role::Leader);
    assert!(!h.raft(id).committed_in_term());
}

#[test]
fn a_new_leader_changes_membership_only_after_committing_an_entry_of_its_own_term() {
    let mut h = Harness::plain(3);
    elect_without_committing(&mut h, 1);
    assert_eq!(h.change(1, MembershipChange::Remove { id: 3 }), Err(ProposeError::NotCommittedInTerm));
    h.run_for(100);
    assert!(h.raft(1).committed_in_term());
    assert!(h.change(1, MembershipChange::Remove { id: 3 }).is_ok());

    // The deliberate defect skips that rule.
    let mut careless = Harness::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.bugs = Bugs::from_iter([Bug::ChangeBeforeCommit]);
    });
    elect_without_committing(&mut careless, 1);
    assert!(careless.change(1, MembershipChange::Remove { id: 3 }).is_ok());
}

#[test]
fn s4_2_2_removing_the_leader_hands_leadership_over_first_and_the_successor_removes_it() {
    let mut h = Harness::new(3, |_| {});
    h.elect(1);
    h.deliver();
    let to = match h.change(1, MembershipChange::Remove { id: 1 }) {
        Err(ProposeError::LeaderRemovalHandsOver { to }) => to,
        other => panic!("expected a hand-over first, got {other:?}"),
    };
    h.deliver();
    assert_eq!(h.leaders(), vec![to], "leadership moved before the removal");
    h.deliver();
    h.change(to, MembershipChange::Remove { id: 1 }).expect("the successor removes the old leader");
    h.deliver();
    let other = if to == 2 { 3 } else { 2 };
    assert_eq!(h.members(to).0, vec![to.min(other), to.max(other)]);
    // Two voters now: both are needed to commit.
    h.crash(other);
    let index = h.propose(to, "needs-both");
    h.run_for(400);
    assert!(h.raft(to).commit_index() < index);
}

#[test]
fn the_last_voter_cannot_be_removed_nor_a_stranger() {
    let mut h = Harness::plain(1);
    h.elect(1);
    h.deliver();
    assert!(matches!(
        h.change(1, MembershipChange::Remove { id: 1 }),
        Err(ProposeError::InvalidChange { .. })
    ));
    assert!(matches!(
        h.change(1, MembershipChange::Remove { id: 9 }),
        Err(ProposeError::InvalidChange { .. })
    ));
    assert!(matches!(
        h.change(1, MembershipChange::Promote { id: 9 }),
        Err(ProposeError::InvalidChange { .. })
    ));
}

#[test]
fn s4_1_a_configuration_is_in_force_when_appended_and_undone_when_its_entry_is_truncated() {
    let mut h = Harness::plain(5);
    h.elect(1);
    h.deliver();
    h.boot_new_server(6);
    // The change reaches node 2 only.
    for other in [3, 4, 5, 6] {
        h.cut.insert((1, other));
    }
    h.change(1, add(6)).unwrap();
    h.deliver();
    assert_eq!(h.members(2), (vec![1, 2, 3, 4, 5], vec![6]));
    // Node 3 leads a new term with nodes 4 and 5, and overwrites the uncommitted change.
    h.isolate(1);
    h.elect(3);
    h.propose(3, "overwrite");
    h.deliver();
    assert_eq!(h.members(2), (vec![1, 2, 3, 4, 5], vec![]), "the truncated change is no longer in force");
    assert!(
        h.events_of(2)
            .iter()
            .rev()
            .any(|e| matches!(e, Event::MembershipChanged { learners, .. } if learners.is_empty())),
        "observers hear that it was undone"
    );
}

#[test]
fn s7_a_snapshot_carries_the_configuration_to_a_learner_that_needs_it() {
    let mut h = Harness::plain(3);
    h.elect(1);
    for i in 0..6 {
        h.propose(1, &format!("v{i}"));
    }
    h.deliver();
    let applied = h.raft(1).commit_index();
    h.raft_mut(1).compact(applied, KvStore::new()).expect("compacts");
    h.boot_new_server(4);
    h.change(1, add(4)).unwrap();
    h.deliver();
    assert!(h.raft(4).snapshot_index() >= applied, "the learner got the snapshot");
    assert_eq!(h.members(4), (vec![1, 2, 3, 4], vec![]));
}

#[test]
fn s4_2_2_a_leader_that_leaves_hands_over_to_a_voter_it_hears_from_not_to_a_crashed_one() {
    let mut h = Harness::new(3, |_| {});
    h.elect(1);
    h.deliver();
    // Node 2 (which a tie would favour) crashes; a check-quorum round notices its silence.
    h.crash(2);
    h.run_for(400);
    assert_eq!(h.leaders(), vec![1]);
    match h.change(1, MembershipChange::Remove { id: 1 }) {
        Err(ProposeError::LeaderRemovalHandsOver { to }) => assert_eq!(to, 3),
        other => panic!("expected a hand-over to node 3, got {other:?}"),
    }
}
