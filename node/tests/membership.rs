//! Membership changes on real processes: servers join under load, leave (the leader too), and a
//! server whose disk is lost is replaced by a new member — with every acknowledged write kept.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use shared::protocol::{AdminCommand, ClusterStatus, ProxyFrame};
use shared::raft::NodeId;
use support::{BIN, Cluster, TOKEN, serial, wait_for};

fn client(cluster: &Cluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["client", "--proxy", &cluster.proxy(0), "--token", TOKEN])
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn members(status: &ClusterStatus) -> (Vec<NodeId>, Vec<NodeId>) {
    (status.members.voters.clone(), status.members.learners.clone())
}

/// Every server of `voters` up, and at the leader's commit index.
fn settled(cluster: &Cluster, voters: &[NodeId]) -> Option<ClusterStatus> {
    let status = cluster.status()?;
    let leader = status.leader?;
    let commit = status.nodes.iter().find(|n| n.id == leader)?.commit?;
    let caught_up =
        voters.iter().all(|v| status.nodes.iter().any(|n| n.id == *v && n.commit == Some(commit)));
    (members(&status).0 == voters && members(&status).1.is_empty() && caught_up).then_some(status)
}

fn put_all(cluster: &Cluster, prefix: &str, count: usize) {
    for i in 0..count {
        ok(client(cluster, &["put", &format!("{prefix}{i}"), &format!("v{i}")]));
    }
}

fn all_readable(cluster: &Cluster, prefix: &str, count: usize) {
    for i in 0..count {
        let out = ok(client(cluster, &["get", &format!("{prefix}{i}"), "--consistency", "linearizable"]));
        assert!(out.contains(&format!("v{i}")), "{prefix}{i}: {out}");
    }
}

#[test]
fn a_server_added_under_write_load_catches_up_and_votes_and_the_history_stays_linearizable() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    put_all(&cluster, "before-", 20);
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let proxy = cluster.proxy(0);
    let mut load = Command::new(BIN)
        .args(["bench", "--proxy", &proxy, "--token", TOKEN, "--clients", "4", "--duration", "6"])
        .args(["--reads", "0.3", "--keys", "20", "--history", history.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let added = ok(client(&cluster, &["add-server"]));
    assert!(added.contains("node 4") && added.contains("learner"), "{added}");
    let status =
        wait_for(Duration::from_secs(30), "node 4 a voter, caught up", || settled(&cluster, &[1, 2, 3, 4]));
    assert!(status.nodes.iter().any(|n| n.id == 4), "the proxy shows the new server");
    assert!(load.wait().unwrap().success(), "the load ran through the change");
    let checked = Command::new(BIN).args(["check", history.to_str().unwrap()]).output().unwrap();
    assert_eq!(checked.status.code(), Some(0), "{}", String::from_utf8_lossy(&checked.stdout));
    all_readable(&cluster, "before-", 20);
    // The new server applied everything too: its store is the others'.
    wait_for(Duration::from_secs(10), "node 4 to apply what is committed", || {
        let s = cluster.status()?;
        let commit = s.nodes.iter().find(|n| Some(n.id) == s.leader)?.commit?;
        (s.nodes.iter().find(|n| n.id == 4)?.applied? >= commit).then_some(())
    });
}

#[test]
fn removing_a_follower_then_the_leader_keeps_every_write_and_a_new_leader_serves() {
    let _turn = serial();
    let cluster = Cluster::start(5, 1);
    put_all(&cluster, "w-", 20);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let follower = (1..=5).find(|n| *n != leader).unwrap();
    ok(client(&cluster, &["remove-server", &follower.to_string()]));
    let remaining: Vec<NodeId> = (1..=5).filter(|n| *n != follower).collect();
    let status = wait_for(Duration::from_secs(20), "four voters", || settled(&cluster, &remaining));
    assert!(status.nodes.iter().all(|n| n.id != follower), "the removed server is gone from the status");
    put_all(&cluster, "x-", 10);

    let removed = ok(client(&cluster, &["remove-server", &leader.to_string()]));
    assert!(removed.contains("left the configuration"), "{removed}");
    let rest: Vec<NodeId> = remaining.iter().copied().filter(|n| *n != leader).collect();
    let status =
        wait_for(Duration::from_secs(20), "three voters and a new leader", || settled(&cluster, &rest));
    assert_ne!(status.leader, Some(leader));
    put_all(&cluster, "y-", 10);
    all_readable(&cluster, "w-", 20);
    all_readable(&cluster, "x-", 10);
    all_readable(&cluster, "y-", 10);
}

#[test]
fn a_server_whose_disk_is_lost_is_replaced_by_a_new_member_never_by_its_old_id() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    put_all(&cluster, "d-", 10);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let lost = (1..=3).find(|n| *n != leader).unwrap();
    assert!(matches!(cluster.admin(AdminCommand::Crash { node: lost }), ProxyFrame::AdminDone { .. }));
    std::fs::remove_dir_all(cluster.data_dir().join(format!("node-{lost}"))).unwrap();
    // The safe way out: remove the dead server, add a new one.
    ok(client(&cluster, &["remove-server", &lost.to_string()]));
    let survivors: Vec<NodeId> = (1..=3).filter(|n| *n != lost).collect();
    wait_for(Duration::from_secs(20), "the dead server out of the configuration", || {
        settled(&cluster, &survivors)
    });
    let again = client(&cluster, &["add-server", &lost.to_string()]);
    assert!(!again.status.success(), "the old id came back");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("new id"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let added = ok(client(&cluster, &["add-server"]));
    assert!(added.contains("node 4"), "{added}");
    let mut voters: Vec<NodeId> = (1..=3).filter(|n| *n != lost).collect();
    voters.push(4);
    wait_for(Duration::from_secs(30), "the replacement caught up as a voter", || settled(&cluster, &voters));
    // A majority of the new configuration without the old leader still serves everything.
    assert!(matches!(cluster.admin(AdminCommand::Crash { node: leader }), ProxyFrame::AdminDone { .. }));
    wait_for(Duration::from_secs(20), "a new leader", || {
        cluster.status().and_then(|s| s.leader).filter(|l| *l != leader)
    });
    all_readable(&cluster, "d-", 10);
}

/// A majority partition written to, one of its servers crashed and its data directory emptied,
/// then the other cut off: before, the emptied server came back at term 0 with no vote and no
/// log, voted for the stale side, and the cluster lost the acknowledged write.
#[test]
fn a_server_restarted_on_a_wiped_disk_is_refused_and_costs_no_acknowledged_write() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let stale = cluster.wait_for_leader(Duration::from_secs(10));
    let holder = stale % 3 + 1;
    let wiped = holder % 3 + 1;
    ok(client(&cluster, &["partition", &format!("{stale}/{holder},{wiped}")]));
    wait_for(Duration::from_secs(20), "a leader on the majority side", || {
        cluster.status()?.leader.filter(|l| *l != stale)
    });
    ok(client(&cluster, &["put", "x", "acked"]));
    ok(client(&cluster, &["crash", &wiped.to_string()]));
    let dir = cluster.data_dir().join(format!("node-{wiped}"));
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    ok(client(&cluster, &["partition", &format!("{holder}/{stale},{wiped}")]));
    let restart = client(&cluster, &["restart", &wiped.to_string()]);
    let said = String::from_utf8_lossy(&restart.stderr).to_string();
    assert!(!restart.status.success(), "a server on an emptied directory was restarted");
    assert!(
        said.contains("empty") && said.contains("remove-server") && said.contains("add-server"),
        "{said}"
    );
    ok(client(&cluster, &["heal"]));
    for _ in 0..6 {
        let out = ok(client(&cluster, &["get", "x", "--consistency", "linearizable"]));
        assert!(out.contains("acked"), "the acknowledged write was lost: {out}");
    }
    let status = cluster.status().unwrap();
    assert!(status.alarms.is_empty(), "{:?}", status.alarms);
    // The way back the message names: remove it, add a new server.
    ok(client(&cluster, &["remove-server", &wiped.to_string()]));
    let added = ok(client(&cluster, &["add-server"]));
    assert!(added.contains("node 4"), "{added}");
    let mut voters: Vec<NodeId> = (1..=3).filter(|n| *n != wiped).collect();
    voters.push(4);
    wait_for(Duration::from_secs(30), "the replacement caught up as a voter", || settled(&cluster, &voters));
    let out = ok(client(&cluster, &["get", "x", "--consistency", "linearizable"]));
    assert!(out.contains("acked"), "{out}");
}
