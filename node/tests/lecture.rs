//! Lecture time on real processes: time stopped and stepped message by message, a dropped vote
//! that changes who wins, every lesson run headless, and a deliberate defect caught live.

mod support;

use std::process::Command;
use std::time::Duration;

use shared::lesson::CATALOG;
use shared::protocol::{AdminCommand, ClusterStatus, ProxyFrame};
use shared::raft::{MessageKind, NodeId, Role};
use support::{BIN, Cluster, TOKEN, serial, wait_for};

fn admin_ok(cluster: &Cluster, command: AdminCommand) -> String {
    match cluster.admin(command.clone()) {
        ProxyFrame::AdminDone { message, .. } => message,
        other => panic!("{command:?} failed: {other:?}"),
    }
}

fn roles(s: &ClusterStatus) -> Vec<(NodeId, Option<Role>)> {
    s.nodes.iter().map(|n| (n.id, n.role)).collect()
}

fn role_of(s: &ClusterStatus, node: NodeId) -> Option<Role> {
    s.nodes.iter().find(|n| n.id == node)?.role
}

/// Stops time, crashes the leader and waits until the statuses say so; returns the followers.
fn stop_and_crash_leader(cluster: &Cluster) -> (NodeId, Vec<NodeId>) {
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    admin_ok(cluster, AdminCommand::StopTime);
    admin_ok(cluster, AdminCommand::Crash { node: leader });
    // What the leader's followers held for it is of no interest here.
    let status = cluster.status().unwrap();
    for m in &status.time.messages {
        let _ = cluster.admin(AdminCommand::DropMessage { id: m.id });
    }
    let followers = status.nodes.iter().map(|n| n.id).filter(|id| *id != leader).collect();
    (leader, followers)
}

#[test]
fn stopped_time_holds_every_message_and_steps_drive_an_election_one_message_at_a_time() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let (old, _) = stop_and_crash_leader(&cluster);
    let term = cluster.status().unwrap().term;
    // Nothing moves while time stands still.
    std::thread::sleep(Duration::from_millis(800));
    let still = cluster.status().unwrap();
    assert!(still.time.stopped);
    assert_eq!(still.term, term, "no timer fired while time was stopped");
    assert!(
        still.nodes.iter().all(|n| n.role != Some(Role::Candidate) && n.role != Some(Role::PreCandidate))
    );

    // First step: nothing is held, so the clocks run to the next timer: one follower campaigns.
    let said = admin_ok(&cluster, AdminCommand::Step { count: 1 });
    assert!(said.contains("advanced"), "{said}");
    let status = wait_for(Duration::from_secs(5), "a pre-candidate", || {
        let s = cluster.status()?;
        s.nodes.iter().any(|n| n.role == Some(Role::PreCandidate)).then_some(s)
    });
    let campaigner = status.nodes.iter().find(|n| n.role == Some(Role::PreCandidate)).unwrap().id;
    assert!(
        status.time.messages.iter().any(|m| m.from == campaigner && m.kind == MessageKind::PreVote),
        "its pre-votes are held: {:?}",
        status.time.messages
    );

    // Then one message per step, until someone leads; every step shows one move.
    let mut steps = 1;
    let leader = loop {
        let said = admin_ok(&cluster, AdminCommand::Step { count: 1 });
        steps += 1;
        assert!(!said.contains(';'), "one step, one move: {said}");
        let s = cluster.status().unwrap();
        if let Some(l) = s.leader.filter(|l| *l != old) {
            break l;
        }
        assert!(steps < 40, "no leader after {steps} steps: {:?}", roles(&s));
    };
    assert!(steps >= 5, "an election takes several moves (pre-votes, votes), took {steps}");
    let s = cluster.status().unwrap();
    assert!(s.term > term, "the new leader leads a new term");
    assert!(s.time.stopped, "time is still stopped");
    admin_ok(&cluster, AdminCommand::StartTime);
    let s = wait_for(Duration::from_secs(10), "time to run", || cluster.status().filter(|s| !s.time.stopped));
    assert_eq!(s.leader, Some(leader));
}

#[test]
fn a_dropped_vote_changes_who_wins() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let (_, followers) = stop_and_crash_leader(&cluster);
    // Let time run, step by step, until a follower's timer fires and its pre-vote request to
    // the other is granted. (Right after the crash the other may still trust the dead leader —
    // its lease — and refuse; then time goes on and a later campaign is granted.)
    let mut granted = None;
    for _ in 0..8 {
        admin_ok(&cluster, AdminCommand::Step { count: 1 });
        let s = cluster.status().unwrap();
        let Some(first) = s.nodes.iter().find(|n| n.role == Some(Role::PreCandidate)).map(|n| n.id) else {
            continue;
        };
        let second = *followers.iter().find(|id| **id != first).unwrap();
        let Some(ask) = s
            .time
            .messages
            .iter()
            .find(|m| m.from == first && m.to == second && m.kind == MessageKind::PreVote)
        else {
            continue;
        };
        admin_ok(&cluster, AdminCommand::DeliverMessage { id: ask.id });
        let answer = wait_for(Duration::from_secs(5), "the pre-vote answer", || {
            let s = cluster.status()?;
            s.time
                .messages
                .iter()
                .find(|m| m.from == second && m.to == first && m.kind == MessageKind::PreVoteResponse)
                .cloned()
        });
        if answer.message.ok() {
            granted = Some((first, second, answer));
            break;
        }
        admin_ok(&cluster, AdminCommand::DeliverMessage { id: answer.id });
    }
    let (first, second, answer) = granted.expect("a granted pre-vote within 8 steps");
    // The grant is dropped on its way: `first` never learns it could win.
    admin_ok(&cluster, AdminCommand::DropMessage { id: answer.id });
    assert_eq!(role_of(&cluster.status().unwrap(), first), Some(Role::PreCandidate), "still waiting");
    // Now `second`'s timer runs out; everything it sends and receives arrives.
    admin_ok(&cluster, AdminCommand::FireTimer { node: second });
    for _ in 0..20 {
        let s = cluster.status().unwrap();
        if s.leader.is_some() {
            break;
        }
        match s.time.messages.iter().find(|m| m.from == second || m.to == second) {
            Some(m) => {
                admin_ok(&cluster, AdminCommand::DeliverMessage { id: m.id });
            }
            None => std::thread::sleep(Duration::from_millis(150)),
        }
    }
    let s = wait_for(Duration::from_secs(5), "a leader", || cluster.status().filter(|s| s.leader.is_some()));
    assert_eq!(s.leader, Some(second), "without the dropped vote {first} would have won: {:?}", roles(&s));
    admin_ok(&cluster, AdminCommand::StartTime);
}

fn scenario(cluster: &Cluster, name: &str) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["scenario", "run", name, "--proxy", &cluster.proxy(0), "--token", TOKEN, "--timeout", "240"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn every_lesson_runs_headless_and_its_check_holds() {
    let _turn = serial();
    let listed = Command::new(BIN).args(["scenario", "list"]).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(listed.lines().count(), CATALOG.len());
    let cluster = Cluster::start(5, 1);
    for lesson in CATALOG {
        assert!(listed.lines().any(|l| l.starts_with(&format!("{} — ", lesson.name))), "{listed}");
        let (passed, output) = scenario(&cluster, lesson.name);
        assert!(passed, "lesson {} failed:\n{output}", lesson.name);
        assert!(
            output.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).count() >= 1,
            "{output}"
        );
        assert!(output.contains("PASSED"), "{output}");
    }
    assert!(cluster.status().unwrap().alarms.is_empty());
}

#[test]
fn figure_8_with_the_commit_old_term_defect_ends_in_a_live_alarm() {
    let _turn = serial();
    let cluster = Cluster::start_with(5, 1, &["--bug", "commit-old-term"]);
    let (passed, output) = scenario(&cluster, "figure-8");
    assert!(!passed, "the defect must make the lesson fail:\n{output}");
    let last = output.lines().last().unwrap_or_default();
    assert!(last.starts_with("FAILED"), "{output}");
    let status = cluster.status().unwrap();
    assert!(!status.alarms.is_empty(), "the monitor raised no alarm:\n{output}");
    let keys: Vec<&str> = status.alarms.iter().map(|a| a.property.key()).collect();
    assert!(
        keys.iter().any(|k| *k == "state_machine_safety" || *k == "leader_completeness"),
        "the alarms name a broken property: {keys:?}"
    );
    assert_eq!(status.bugs.iter().map(|b| b.name()).collect::<Vec<_>>(), vec!["commit-old-term"]);
}
