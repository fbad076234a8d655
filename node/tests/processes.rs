//! Real processes, real signals, real disks: the failures Consenso promises to survive.

mod support;

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shared::event::Consistency;
use shared::protocol::{
    AdminCommand, ClientFrame, ErrorKind, MAX_FRAME_BYTES, OpResult, PROTOCOL_VERSION, ProcessState,
    ProxyFrame, Session,
};
use shared::raft::Role;
use support::{BIN, Client, Cluster, HandStarted, TOKEN, block_on, serial, signal_child, wait_for};

fn put(key: &str, value: &str, session: Session) -> ClientFrame {
    ClientFrame::Put { id: 0, key: key.into(), value: value.into(), session: Some(session) }
}

fn get(key: &str) -> ClientFrame {
    ClientFrame::Get { id: 0, key: key.into(), consistency: Consistency::Linearizable }
}

fn previous_of(answer: Option<ProxyFrame>) -> Option<String> {
    match answer {
        Some(ProxyFrame::Done { result: OpResult::Put { previous }, .. }) => previous,
        other => panic!("write failed: {other:?}"),
    }
}

fn value_of(answer: Option<ProxyFrame>) -> Option<String> {
    match answer {
        Some(ProxyFrame::Done { result: OpResult::Get { value }, .. }) => value,
        other => panic!("read failed: {other:?}"),
    }
}

/// Waits until `node`'s commit index equals the leader's (and is at least `at_least`).
fn wait_caught_up(cluster: &Cluster, node: u64, at_least: u64, what: &str) {
    wait_for(Duration::from_secs(30), what, || {
        let s = cluster.status()?;
        let leader_commit = s.nodes.iter().find(|n| Some(n.id) == s.leader)?.commit?;
        let mine = s.nodes.iter().find(|n| n.id == node)?.commit?;
        (mine == leader_commit && mine >= at_least).then_some(())
    });
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).expect("signal delivered");
}

#[test]
fn killing_the_leader_under_writes_loses_no_acknowledged_write_and_applies_none_twice() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let old = cluster.wait_for_leader(Duration::from_secs(30));
    let old_pid = cluster.status().unwrap().nodes.iter().find(|n| n.id == old).unwrap().pid.unwrap();
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        let (chain, keys) = (c.register().await, c.register().await);
        // One key written in sequence: each put must find exactly the previous value. A write
        // applied twice (a retry re-applied after a later write) would break the chain.
        for i in 1..=120u64 {
            if i == 40 {
                signal(old_pid, Signal::SIGKILL);
            }
            let previous = previous_of(
                c.request(put(
                    "chain",
                    &i.to_string(),
                    Session { client: chain, seq: i, answered_below: None },
                ))
                .await,
            );
            let expected = (i > 1).then(|| (i - 1).to_string());
            assert_eq!(previous, expected, "write {i} found {previous:?}");
            let previous = previous_of(
                c.request(put(
                    &format!("k{i}"),
                    &i.to_string(),
                    Session { client: keys, seq: i, answered_below: None },
                ))
                .await,
            );
            assert_eq!(previous, None, "k{i} was written once");
        }
        for i in 1..=120u64 {
            assert_eq!(
                value_of(c.request(get(&format!("k{i}"))).await),
                Some(i.to_string()),
                "k{i} survives"
            );
        }
        assert_eq!(value_of(c.request(get("chain")).await), Some("120".into()));
    });
    let new = cluster.wait_for_leader(Duration::from_secs(10));
    assert_ne!(new, old, "a new leader was elected");
    // The killed server restarts on its data and catches up.
    assert!(matches!(cluster.admin(AdminCommand::Restart { node: old }), ProxyFrame::AdminDone { .. }));
    wait_caught_up(&cluster, old, 241, "the restarted node to catch up");
}

#[test]
fn a_paused_leader_is_replaced_and_steps_down_when_it_resumes() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let old = cluster.wait_for_leader(Duration::from_secs(30));
    let old_term = cluster.status().unwrap().term;
    let s9 = block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        let s9 = c.register().await;
        previous_of(
            c.request(put("p", "before", Session { client: s9, seq: 1, answered_below: None })).await,
        );
        let paused =
            c.request(ClientFrame::Admin { id: 0, command: AdminCommand::Pause { node: old } }).await;
        assert!(matches!(paused, Some(ProxyFrame::AdminDone { .. })), "{paused:?}");
        // The proxy first tries the frozen leader, times out, finds the new one, and retries
        // with the same session: the write is applied once.
        assert_eq!(
            previous_of(
                c.request(put("p", "during", Session { client: s9, seq: 2, answered_below: None })).await
            ),
            Some("before".into())
        );
        for i in 3..=20 {
            previous_of(
                c.request(put("p", &format!("v{i}"), Session { client: s9, seq: i, answered_below: None }))
                    .await,
            );
        }
        s9
    });
    let s = cluster.status().unwrap();
    assert_ne!(s.leader, Some(old), "another node leads while {old} is frozen");
    assert_eq!(s.nodes.iter().find(|n| n.id == old).unwrap().state, ProcessState::Paused);
    assert!(matches!(cluster.admin(AdminCommand::Resume { node: old }), ProxyFrame::AdminDone { .. }));
    wait_for(Duration::from_secs(15), "the old leader to step down", || {
        let s = cluster.status()?;
        let n = s.nodes.iter().find(|n| n.id == old)?;
        (n.role == Some(Role::Follower) && n.term? > old_term).then_some(())
    });
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        // Whatever the old leader appended while it believed it led was never acknowledged:
        // the value is the last acknowledged write, and the chain continues from it.
        assert_eq!(value_of(c.request(get("p")).await), Some("v20".into()));
        assert_eq!(
            previous_of(
                c.request(put("p", "after", Session { client: s9, seq: 21, answered_below: None })).await
            ),
            Some("v20".into())
        );
    });
}

#[test]
fn a_client_fails_over_to_another_proxy_and_its_write_applies_once() {
    let _turn = serial();
    let m = HandStarted::start();
    let (a, b) = (format!("127.0.0.1:{}", m.base), format!("127.0.0.1:{}", m.base + 1));
    let leader = wait_for(Duration::from_secs(30), "a leader", || {
        block_on(async {
            let mut c = Client::connect(&a, Some(TOKEN)).await.ok()?;
            match c.request(ClientFrame::Status { id: 0 }).await? {
                ProxyFrame::Status { cluster, .. } => cluster.leader,
                _ => None,
            }
        })
    });
    block_on(async {
        let mut via_a = Client::connect(&a, Some(TOKEN)).await.unwrap();
        // A session registered through proxy A, used through proxy B too: it is the cluster's.
        let client = via_a.register().await;
        let session = |seq| Session { client, seq, answered_below: None };
        previous_of(via_a.request(put("x", "a", session(1))).await);
        // Freeze the leader so the next write hangs inside proxy A, then kill proxy A.
        signal_child(&m.servers[leader as usize - 1], Signal::SIGSTOP).unwrap();
        via_a.send_text(shared::protocol::encode(&put("x", "b", session(2)))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal_child(&m.proxies[0], Signal::SIGKILL).unwrap();
        signal_child(&m.servers[leader as usize - 1], Signal::SIGCONT).unwrap();
        // The client fails over to proxy B and sends the same write, same session.
        assert!(Client::connect(&a, Some(TOKEN)).await.is_err(), "proxy A is gone");
        let mut via_b = Client::connect(&b, Some(TOKEN)).await.unwrap();
        let previous = previous_of(via_b.request(put("x", "b", session(2))).await);
        assert_eq!(previous, Some("a".into()), "the answer is the first (and only) application's");
        assert_eq!(previous_of(via_b.request(put("x", "c", session(3))).await), Some("b".into()));
        assert_eq!(value_of(via_b.request(get("x")).await), Some("c".into()));
    });
    // The CLI does the same failover by itself: a dead proxy first in the list is skipped.
    let out =
        Command::new(BIN).args(["client", "--proxy", &format!("{a},{b}"), "get", "x"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "c");
}

#[test]
fn a_torn_log_tail_is_cut_off_and_the_server_recovers_and_catches_up() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        let s3 = c.register().await;
        for i in 1..=20 {
            previous_of(
                c.request(put(&format!("t{i}"), "v", Session { client: s3, seq: i, answered_below: None }))
                    .await,
            );
        }
    });
    let victim = (1..=3).find(|n| Some(*n) != cluster.leader()).unwrap();
    assert!(matches!(cluster.admin(AdminCommand::Crash { node: victim }), ProxyFrame::AdminDone { .. }));
    let wal = cluster.dir.path().join(format!("data/node-{victim}/wal.log"));
    let end = log_of_file(&wal).len() as u64;
    // Half a batch where the log ends, over the zeros grown ahead of it, as a crash in the
    // middle of a write leaves: its header whole (length, payload checksum, header checksum),
    // its payload cut short.
    let entry = br#"{"index":99,"term":9,"payload":{"kind":"noop"}}"#;
    let payload = [&[2u8][..], &(entry.len() as u32).to_le_bytes(), entry].concat();
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(&payload).to_le_bytes();
    let header_crc = crc32c::crc32c_append(crc32c::crc32c(&len), &crc).to_le_bytes();
    let half = [&len[..], &crc, &header_crc, &payload[..20]].concat();
    let length_before = std::fs::metadata(&wal).unwrap().len();
    assert!(length_before >= end + half.len() as u64, "the file is grown ahead of its log");
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(&wal).unwrap().write_all_at(&half, end).unwrap();
    assert!(matches!(cluster.admin(AdminCommand::Restart { node: victim }), ProxyFrame::AdminDone { .. }));
    wait_caught_up(&cluster, victim, 21, "the recovered node to catch up");
    assert!(cluster.log_of(&format!("node-{victim}")).contains("torn batch"), "recovery says what it cut");
}

#[test]
fn a_corrupted_record_makes_the_server_refuse_to_start_and_say_where() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        let s5 = c.register().await;
        for i in 1..=10 {
            previous_of(
                c.request(put(&format!("c{i}"), "v", Session { client: s5, seq: i, answered_below: None }))
                    .await,
            );
        }
    });
    let victim = (1..=3).find(|n| Some(*n) != cluster.leader()).unwrap();
    assert!(matches!(cluster.admin(AdminCommand::Crash { node: victim }), ProxyFrame::AdminDone { .. }));
    let wal = cluster.dir.path().join(format!("data/node-{victim}/wal.log"));
    let mut bytes = std::fs::read(&wal).unwrap();
    let middle = log_of_file(&wal).len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&wal, &bytes).unwrap();
    cluster.admin(AdminCommand::Restart { node: victim });
    let log = wait_for(Duration::from_secs(15), "the damaged server to refuse", || {
        let log = cluster.log_of(&format!("node-{victim}"));
        log.contains("refusing to start").then_some(log)
    });
    wait_for(Duration::from_secs(15), "the damaged server to exit", || {
        let s = cluster.status()?;
        (s.nodes.iter().find(|n| n.id == victim)?.state == ProcessState::Crashed).then_some(())
    });
    assert!(
        log.contains("wal.log")
            && log.contains("damaged batch at offset")
            && log.contains("refusing to start"),
        "{log}"
    );
    // The rest of the cluster keeps serving.
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        assert_eq!(value_of(c.request(get("c10")).await), Some("v".into()));
    });
}

#[test]
fn bad_frames_and_wrong_tokens_get_typed_errors_and_every_process_keeps_serving() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), None).await.unwrap();
        let error_kind = |f: Option<ProxyFrame>| match f {
            Some(ProxyFrame::Error { error, .. }) => error.kind,
            other => panic!("expected an error, got {other:?}"),
        };
        c.send_text("{not json".into()).await.unwrap();
        assert_eq!(error_kind(c.next_frame().await), ErrorKind::BadRequest);
        c.send_text(r#"{"type":"launch_missiles","id":9}"#.into()).await.unwrap();
        match c.next_frame().await {
            Some(ProxyFrame::Error { id, error }) => {
                assert_eq!((id, error.kind), (Some(9), ErrorKind::BadRequest));
                assert!(error.message.contains("launch_missiles"), "{}", error.message);
            }
            other => panic!("{other:?}"),
        }
        // With the token a frame past the protocol's limit is answered, and the connection
        // goes on (a viewer's is cut far below: see tests/connections.rs).
        let mut admin = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        let huge = format!(r#"{{"type":"put","id":10,"key":"k","value":"{}"}}"#, "x".repeat(MAX_FRAME_BYTES));
        admin.send_text(huge).await.unwrap();
        assert_eq!(error_kind(admin.next_frame().await), ErrorKind::FrameTooLarge);
        value_of(admin.request(get("alive")).await);
        let refused = c.request(ClientFrame::Admin { id: 0, command: AdminCommand::Crash { node: 1 } }).await;
        assert_eq!(error_kind(refused), ErrorKind::Unauthorized);
        // Without the token a write is refused, not lost in a timeout.
        let refused =
            c.request(put("alive", "yes", Session { client: 1, seq: 1, answered_below: None })).await;
        assert_eq!(error_kind(refused), ErrorKind::Unauthorized);
        // Same connection, still served.
        value_of(c.request(get("alive")).await);

        let mut wrong = Client::connect(&cluster.proxy(0), Some("not-the-token")).await.unwrap();
        assert!(!wrong.admin);
        let refused = wrong.request(ClientFrame::Admin { id: 0, command: AdminCommand::Heal }).await;
        assert!(
            matches!(refused, Some(ProxyFrame::Error { ref error, .. }) if error.kind == ErrorKind::Unauthorized)
        );
    });
    // Straight to a server: wrong token, wrong version, garbage.
    block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let server = format!("ws://127.0.0.1:{}/ws", cluster.port + 11);
        for hello in [
            format!(
                r#"{{"type":"hello","version":{PROTOCOL_VERSION},"token":"wrong","caller":{{"role":"proxy"}}}}"#
            ),
            format!(r#"{{"type":"hello","version":999,"token":"{TOKEN}","caller":{{"role":"proxy"}}}}"#),
            "garbage".to_string(),
        ] {
            let (mut ws, _) = tokio_tungstenite::connect_async(&server).await.unwrap();
            ws.send(Message::text(hello)).await.unwrap();
            let answer = ws.next().await.unwrap().unwrap().into_text().unwrap();
            assert!(answer.contains(r#""type":"error""#), "{answer}");
        }
    });
    let s = cluster.status().unwrap();
    assert!(
        s.nodes.iter().all(|n| n.state == ProcessState::Up && n.role.is_some()),
        "every node still up: {s:?}"
    );
}

/// The log in a server's `wal.log`, without the zeros the file is grown by ahead of it (the
/// log's last byte is never zero: a batch ends in its JSON).
fn log_of_file(wal: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(wal).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    bytes.truncate(end);
    bytes
}
