//! A student's own node (`--server-cmd`, docs/node-protocol.md) on real processes: the Python
//! reference node of `examples/python` elects, replicates, survives the nemesis and passes
//! `consenso test`; its broken variant fails it; nodes that say nothing, write garbage or
//! exit get a verdict; and a cluster with one misbehaving node keeps serving.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use shared::protocol::{AdminCommand, ClientFrame, ProxyFrame};
use support::*;

fn example(name: &str) -> String {
    format!("python3 {}", repo_root().join("examples/python").join(name).display())
}

/// A `--server-cmd` that runs the reference node everywhere but on node `odd_one`, which runs
/// the shell command `odd` instead.
fn all_but_one(dir: &std::path::Path, odd_one: &str, odd: &str) -> String {
    let wrapper = dir.join("node.sh");
    let raft = repo_root().join("examples/python/raft.py");
    let script = format!(
        "if [ \"$CONSENSO_NODE_ID\" = {odd_one} ]; then exec {odd}; else exec python3 {}; fi\n",
        raft.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    format!("sh {}", wrapper.display())
}

/// `consenso test` on `server_cmd`: its exit code and what it printed.
fn verdict(server_cmd: &str, extra: &[&str]) -> (i32, String) {
    let Output { status, stdout, stderr } = Command::new(BIN)
        .args(["test", "--server-cmd", server_cmd])
        .args(extra)
        .output()
        .expect("consenso test runs");
    let said = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    (status.code().unwrap_or(-1), said)
}

#[test]
fn the_python_reference_node_passes_consenso_test_under_the_nemesis() {
    let _turn = serial();
    let (code, said) = verdict(&example("raft.py"), &["--time", "12"]);
    assert_eq!(code, 0, "{said}");
    for line in ["ok        election", "ok        linearizability", "ok        liveness", "verdict: PASS"] {
        assert!(said.contains(line), "missing {line:?}:\n{said}");
    }
    // The nemesis cut the leader off and crashed nodes: the node said it keeps its state.
    assert!(said.contains("partition") && said.contains("crash"), "{said}");
}

#[test]
fn a_leader_that_commits_without_a_majority_fails_consenso_test_with_the_broken_rule() {
    let _turn = serial();
    let (code, said) = verdict(&example("raft_broken.py"), &["--time", "12"]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("verdict: FAIL"), "{said}");
    assert!(
        said.contains("BROKEN    State Machine Safety") || said.contains("BROKEN    linearizability"),
        "names the property that broke:\n{said}"
    );
}

#[test]
fn a_node_that_says_nothing_or_writes_garbage_gets_a_verdict_not_a_hang() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let silent = dir.path().join("silent.py");
    std::fs::write(&silent, "import sys\nfor line in sys.stdin:\n    pass\n").unwrap();
    let (code, said) = verdict(&format!("python3 {}", silent.display()), &["--patience", "6"]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("no leader was elected") && said.contains("never answered init"), "{said}");

    let garbage = dir.path().join("garbage.py");
    std::fs::write(&garbage, "import sys\nwhile True:\n    sys.stdout.write('not json {{{\\n' * 100)\n")
        .unwrap();
    let (code, said) = verdict(&format!("python3 {}", garbage.display()), &["--patience", "6"]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("not JSON"), "says what was wrong with the lines:\n{said}");

    let (code, said) = verdict("sh -c 'echo gone >&2; exit 3'", &["--patience", "4"]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("exited") && said.contains("gone"),
        "says the node exited and its last words:\n{said}"
    );
}

/// One node of five writes garbage between good lines; the others are the reference node.
/// The cluster takes writes and reads, the status names the problem node and what it wrote,
/// and a crash of the leader is survived.
#[test]
fn a_cluster_with_one_garbage_writing_node_keeps_serving_and_names_it() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let odd = "python3 -c 'import sys,time\nwhile True:\n  print(\"garbage\", flush=True); time.sleep(0.05)'";
    let command = all_but_one(dir.path(), "n3", odd);
    let cluster = Cluster::start_with(5, 1, &["--server-cmd", &command]);
    let put = |value: &str| {
        let frame = ClientFrame::Put { id: 0, key: "k".into(), value: value.into(), session: None };
        block_on(async {
            let mut client = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.ok()?;
            client.request(frame).await
        })
    };
    for i in 0..5 {
        let answer = put(&i.to_string());
        assert!(matches!(answer, Some(ProxyFrame::Done { .. })), "write {i}: {answer:?}");
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    assert!(matches!(cluster.admin(AdminCommand::Crash { node: leader }), ProxyFrame::AdminDone { .. }));
    wait_for(Duration::from_secs(15), "a write after the crash", || {
        matches!(put("after"), Some(ProxyFrame::Done { .. })).then_some(())
    });
    let status = cluster.status().unwrap();
    let node3 = status.nodes.iter().find(|n| n.id == 3).unwrap();
    let hosted = node3.status.as_ref().and_then(|s| s.hosted.clone()).expect("node 3 is hosted");
    assert!(!hosted.ready && hosted.bad_lines > 0, "{hosted:?}");
    assert!(hosted.last_problem.unwrap_or_default().contains("not JSON"));
    for node in status.nodes.iter().filter(|n| n.id != 3 && n.id != leader) {
        let hosted = node.status.as_ref().and_then(|s| s.hosted.clone());
        assert!(hosted.is_some_and(|h| h.ready && h.durable && h.bad_lines == 0), "node {}", node.id);
    }
}

fn run_async<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f);
}

/// The page draws a cluster of Python nodes as it draws Consenso's own: roles, the leader, its
/// command in the header; with time stopped and the leader crashed, steps bring the Python
/// nodes' RequestVotes on screen one by one and a new leader is drawn; a node that never
/// answered init is marked.
#[test]
fn the_page_draws_a_python_cluster_and_steps_through_its_election() {
    use support::browser::Browser;
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    // Node 5 never answers init: the other four are a working majority.
    let command = all_but_one(dir.path(), "n5", "python3 -c 'import sys\nfor _ in sys.stdin: pass'");
    let cluster = Cluster::start_with(5, 1, &["--server-cmd", &command]);
    let soon = Duration::from_secs(20);
    run_async(async {
        let b = Browser::open(&format!("{}?token={TOKEN}", cluster.url())).await;
        let leader = b.wait(soon, "a leader drawn", || async { b.leader().await }).await;
        let hosted = b.attr_all("[data-hosted]", "data-hosted").await;
        assert_eq!(hosted, vec![command.clone()], "the header names the node's command");
        b.wait(soon, "node 5 marked as never ready", || async {
            b.attr_all(r#"[data-node-id="5"] [data-node-problem]"#, "data-node-problem")
                .await
                .into_iter()
                .next()
                .filter(|p| p.contains("init_ok"))
        })
        .await;
        b.click(r#"button[data-action="pause"]"#).await;
        b.click(&format!(r#"[data-node-id="{leader}"]"#)).await;
        b.click(r#".node-actions button[data-action="crash"]"#).await;
        b.wait(soon, "the leader crashed", || async {
            (b.node_attr(&leader, "data-state").await.as_deref() == Some("crashed")).then_some(())
        })
        .await;
        // Step until a vote request of the Python nodes is held on screen.
        let mut seen = false;
        for _ in 0..30 {
            b.click(r#"button[data-action="step"]"#).await;
            tokio::time::sleep(Duration::from_millis(700)).await;
            let kinds = b.attr_all(r#".flight[data-held="true"]"#, "data-kind").await;
            if kinds.iter().any(|k| k == "RequestVote") {
                seen = true;
                b.screenshot("own-node-held-vote").await;
                break;
            }
        }
        assert!(seen, "a step put a Python node's RequestVote on screen");
        b.key(" ").await;
        b.wait(soon, "a new leader drawn", || async { b.leader().await.filter(|l| *l != leader) }).await;
        b.screenshot("own-node-new-leader").await;
        b.close().await;
    });
}
