//! Hardening, tried from outside with real processes: processes are honest about failure,
//! sessions are exact, and what a client without the token can do is bounded.

mod support;

use std::time::Duration;

use shared::protocol::{AdminCommand, ClientFrame, ErrorKind, OpResult, ProcessState, ProxyFrame, Session};
use support::{BIN, Client, Cluster, HandStarted, TOKEN, block_on, serial, wait_for};

fn put(key: &str, value: &str, session: Option<Session>) -> ClientFrame {
    ClientFrame::Put { id: 0, key: key.into(), value: value.into(), session }
}

fn error_kind(frame: Option<ProxyFrame>) -> ErrorKind {
    match frame {
        Some(ProxyFrame::Error { error, .. }) => error.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet, which runs nothing).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_server_whose_raft_loop_fails_exits_and_the_supervisor_shows_it_crashed() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let victim = if leader == 2 { 3 } else { 2 };
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        assert!(matches!(c.request(put("k", "v", None)).await, Some(ProxyFrame::Done { .. })));
    });
    // Storing a snapshot writes a temporary file first: a directory in its way makes the
    // write fail inside the Raft loop.
    let dir = cluster.dir.path().join(format!("data/node-{victim}"));
    std::fs::create_dir(dir.join("snapshot.json.tmp")).unwrap();
    cluster.admin(AdminCommand::Snapshot { node: Some(victim) });
    wait_for(Duration::from_secs(20), "the supervisor to show the server crashed", || {
        let s = cluster.status()?;
        (s.nodes.iter().find(|n| n.id == victim)?.state == ProcessState::Crashed).then_some(())
    });
    let log = cluster.log_of(&format!("node-{victim}"));
    assert!(log.contains("the Raft loop failed"), "the log says why: {log}");
    // The rest of the cluster serves on.
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        assert!(matches!(c.request(put("k", "after", None)).await, Some(ProxyFrame::Done { .. })));
    });
}

#[test]
fn killing_the_supervisor_takes_its_servers_and_proxies_with_it_even_paused_ones() {
    let _turn = serial();
    let mut cluster = Cluster::start(3, 2);
    let status = cluster.status().unwrap();
    let pids: Vec<u32> = status.nodes.iter().filter_map(|n| n.pid).collect();
    assert_eq!(pids.len(), 3);
    let paused = status.nodes[0].id;
    assert!(matches!(cluster.admin(AdminCommand::Pause { node: paused }), ProxyFrame::AdminDone { .. }));
    let proxy_pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline);
            text.contains("proxy") && text.contains(&format!("127.0.0.1:{}", cluster.port))
        })
        .collect();
    assert!(!proxy_pids.is_empty(), "the proxies are found");
    cluster.child.kill().unwrap();
    cluster.child.wait().unwrap();
    wait_for(Duration::from_secs(10), "every child of the supervisor to die", || {
        pids.iter().chain(&proxy_pids).all(|p| is_dead(*p)).then_some(())
    });
}

#[test]
fn crash_works_without_a_reachable_supervisor_because_the_server_kills_itself() {
    let _turn = serial();
    // Proxies told of a supervisor that is not there (it died, or was never started).
    let mut cluster = HandStarted::start_with(&["--supervisor=127.0.0.1:9"]);
    let proxy = format!("127.0.0.1:{}", cluster.base);
    wait_for(Duration::from_secs(30), "a leader", || {
        block_on(async {
            let mut c = Client::connect(&proxy, Some(TOKEN)).await.ok()?;
            match c.request(ClientFrame::Status { id: 0 }).await? {
                ProxyFrame::Status { cluster, .. } => cluster.leader,
                _ => None,
            }
        })
    });
    let output = std::process::Command::new(BIN)
        .args(["client", "--proxy", &proxy, "--token", TOKEN, "crash", "2"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let server = &mut cluster.servers[1];
    wait_for(Duration::from_secs(10), "node 2 to be gone", || server.try_wait().unwrap().map(|_| ()));
}

#[test]
fn twenty_pipelined_writes_on_one_session_all_apply_and_a_reused_number_is_refused() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        let client = c.register().await;
        let session = |seq| Some(Session { client, seq, answered_below: Some(1) });
        for seq in 1..=20u64 {
            let frame = ClientFrame::Put {
                id: 1000 + seq,
                key: format!("pipe-{seq}"),
                value: seq.to_string(),
                session: session(seq),
            };
            c.send_text(shared::protocol::encode(&frame)).await.unwrap();
        }
        let mut done = 0;
        for _ in 0..20 {
            match c.next_frame().await {
                Some(ProxyFrame::Done { result: OpResult::Put { .. }, .. }) => done += 1,
                other => panic!("a pipelined write failed: {other:?}"),
            }
        }
        assert_eq!(done, 20);
        // The same number again with the same write: the same answer, applied once.
        let again = c.request(put("pipe-3", "3", session(3))).await;
        assert!(
            matches!(again, Some(ProxyFrame::Done { result: OpResult::Put { previous: None }, .. })),
            "{again:?}"
        );
        // The same number with another write: refused.
        assert_eq!(
            error_kind(c.request(put("pipe-3", "other", session(3))).await),
            ErrorKind::SessionConflict
        );
        // Once the client says it knows every outcome below 21, a late copy of 5 is refused.
        let moved_on = Some(Session { client, seq: 21, answered_below: Some(21) });
        assert!(matches!(c.request(put("pipe-21", "21", moved_on)).await, Some(ProxyFrame::Done { .. })));
        assert_eq!(error_kind(c.request(put("pipe-5", "5", session(5))).await), ErrorKind::StaleSession);
    });
}

#[test]
fn the_store_limit_and_the_frame_limit_give_clear_errors_and_change_nothing() {
    let _turn = serial();
    let cluster = Cluster::start_with(3, 1, &["--max-store-bytes=100000"]);
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        let big = "x".repeat(60_000);
        assert!(matches!(c.request(put("a", &big, None)).await, Some(ProxyFrame::Done { .. })));
        assert_eq!(error_kind(c.request(put("b", &big, None)).await), ErrorKind::StoreFull);
        // Shrinking is always allowed; then there is room again.
        assert!(matches!(c.request(put("a", "small", None)).await, Some(ProxyFrame::Done { .. })));
        assert!(matches!(c.request(put("b", &big, None)).await, Some(ProxyFrame::Done { .. })));
        // A write that could not travel between nodes in one frame.
        let huge = "y".repeat(shared::protocol::MAX_WRITE_BYTES);
        assert_eq!(error_kind(c.request(put("c", &huge, None)).await), ErrorKind::TooLarge);
    });
}

#[test]
fn a_snapshot_larger_than_a_frame_still_catches_a_restarted_follower_up() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let behind = if leader == 3 { 2 } else { 3 };
    assert!(matches!(cluster.admin(AdminCommand::Crash { node: behind }), ProxyFrame::AdminDone { .. }));
    // 12 MiB of values: more than one frame (8 MiB) can carry.
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        for i in 0..3 {
            let value = char::from(b'a' + i).to_string().repeat(4 << 20);
            let answer = c.request(put(&format!("big-{i}"), &value, None)).await;
            assert!(matches!(answer, Some(ProxyFrame::Done { .. })), "{answer:?}");
        }
    });
    // Compact the log so that the entries the follower misses exist only in the snapshot, on
    // every server that could lead: first let them all apply the writes (a follower learns a
    // commit with the leader's next message), so that every snapshot covers them.
    wait_for(Duration::from_secs(20), "the running servers to apply the writes", || {
        let s = cluster.status()?;
        let commit = s.nodes.iter().find(|n| Some(n.id) == s.leader)?.commit?;
        s.nodes.iter().filter(|n| n.id != behind).all(|n| n.applied == Some(commit)).then_some(())
    });
    assert!(matches!(cluster.admin(AdminCommand::Snapshot { node: None }), ProxyFrame::AdminDone { .. }));
    let compacted = wait_for(Duration::from_secs(10), "the leader's snapshot", || {
        let s = cluster.status()?;
        s.nodes.iter().find(|n| n.id == leader)?.snapshot_index.filter(|i| *i > 0)
    });
    assert!(matches!(cluster.admin(AdminCommand::Restart { node: behind }), ProxyFrame::AdminDone { .. }));
    wait_for(Duration::from_secs(60), "the restarted follower to catch up through the snapshot", || {
        let s = cluster.status()?;
        let leader_commit = s.nodes.iter().find(|n| Some(n.id) == s.leader)?.commit?;
        let node = s.nodes.iter().find(|n| n.id == behind)?;
        // Its log starts at a snapshot that covers what it missed: installed, not replayed.
        // (Not necessarily the first leader's: a busy leader may lose its place meanwhile, and
        // its successor's snapshot may stop an entry earlier, before it learned a commit.)
        let smallest = s.nodes.iter().filter(|n| n.id != behind).filter_map(|n| n.snapshot_index).min()?;
        (node.commit? == leader_commit && node.snapshot_index? >= smallest.min(compacted)).then_some(())
    });
}

#[test]
fn a_refused_hello_gets_an_error_then_a_close_frame_on_every_endpoint() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let endpoints = [
        (cluster.port, r#"{"type":"hello","version":999}"#.to_string()),
        (
            cluster.port + 11,
            r#"{"type":"hello","version":1,"token":"wrong","caller":{"role":"proxy"}}"#.to_string(),
        ),
        (cluster.port + 9, r#"{"type":"hello","version":1,"token":"wrong"}"#.to_string()),
        (cluster.port, r#"{"type":"get","id":1,"key":"k"}"#.to_string()),
    ];
    block_on(async {
        for (port, hello) in endpoints {
            let (mut ws, _) =
                tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await.unwrap();
            ws.send(Message::text(hello.clone())).await.unwrap();
            let error = ws.next().await.unwrap().unwrap();
            assert!(error.to_text().unwrap().contains(r#""type":"error""#), "{port} {hello}: {error:?}");
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    assert!(!frame.reason.is_empty(), "the close frame says why");
                }
                other => panic!("{port} {hello}: expected a Close frame, got {other:?}"),
            }
        }
    });
}

/// Runs `consenso ARGS` with its stdout a pipe nobody reads (closed before the command
/// starts, so every write fails, as in `consenso check h.jsonl | head -0`).
fn run_into_a_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    std::process::Command::new(BIN).args(args).stdout(std::process::Stdio::from(writer)).output().unwrap()
}

#[test]
fn reports_piped_into_a_reader_that_stopped_end_quietly_with_their_own_status() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let recorded =
        std::process::Command::new(BIN).args(["sim", "--seed", "7", "--history"]).output().unwrap();
    assert!(recorded.status.success(), "{}", String::from_utf8_lossy(&recorded.stderr));
    std::fs::write(&history, &recorded.stdout).unwrap();
    let history = history.to_str().unwrap();

    for (args, status) in [
        (vec!["check", history], 0),
        (vec!["sim", "--seeds", "2"], 0),
        (vec!["sim", "--seed", "7", "--history"], 0),
        (vec!["scenario", "list"], 0),
    ] {
        let out = run_into_a_closed_pipe(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "consenso {args:?} panicked:\n{stderr}");
        assert_eq!(out.status.code(), Some(status), "consenso {args:?}:\n{stderr}");
    }

    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let proxy = cluster.proxy(0);
    for args in
        [vec!["client", "--proxy", &proxy, "status", "--json"], vec!["client", "--proxy", &proxy, "status"]]
    {
        let out = run_into_a_closed_pipe(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "consenso {args:?} panicked:\n{stderr}");
        assert_eq!(out.status.code(), Some(0), "consenso {args:?}:\n{stderr}");
    }
}

fn consenso(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn check_says_unknown_and_exits_2_when_its_search_runs_out_never_linearizable() {
    // Thirty puts that never answered, each seen by a read that overlaps everything, then reads
    // of v1, v0 and v1 again: no order works (each put happens at most once), but proving it
    // means trying every order of the thirty.
    let mut lines: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"client":{},"op":"put","key":"k","value":"v{i}","invoke":{i},"return":null,"output":{{"result":"unknown"}}}}"#,
                i + 1
            )
        })
        .collect();
    for i in 2..30 {
        lines.push(format!(
            r#"{{"client":{},"op":"get","key":"k","consistency":"linearizable","invoke":100,"return":5000,"output":{{"result":"value","value":"v{i}"}}}}"#,
            100 + i
        ));
    }
    for (at, value) in [(1000, "v1"), (1002, "v0"), (1004, "v1")] {
        lines.push(format!(
            r#"{{"client":99,"op":"get","key":"k","consistency":"linearizable","invoke":{at},"return":{},"output":{{"result":"value","value":"{value}"}}}}"#,
            at + 1
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = consenso(&["check", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("unknown"), "{stdout}");
}

#[test]
fn a_bench_history_holds_what_an_outside_checker_needs_and_checks_linearizable() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    let proxy = cluster.proxy(0);
    let out = consenso(&[
        "bench",
        "--proxy",
        &proxy,
        "--token",
        TOKEN,
        "--clients",
        "4",
        "--duration",
        "3",
        "--reads",
        "0.5",
        "--keys",
        "5",
        "--value-size",
        "4",
        "--history",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let ops: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(ops.len() > 50, "only {} operations recorded", ops.len());
    let mut values = std::collections::BTreeSet::new();
    let (mut gets, mut unknown) = (0, 0);
    for op in &ops {
        let client = op["client"].as_u64().expect("a client number");
        assert!(client > 0 && client < 1 << 53, "client {client} does not survive a double");
        assert!(op["invoke"].is_u64(), "{op}");
        let result = op["output"]["result"].as_str().expect("an output with a result");
        unknown += u64::from(result == "unknown");
        match op["op"].as_str().unwrap() {
            "get" => {
                gets += 1;
                assert_eq!(op["consistency"], "linearizable", "{op}");
            }
            "put" => {
                let value = op["value"].as_str().unwrap().to_string();
                assert!(
                    values.insert(value.clone()),
                    "value {value} written twice: histories need unique values"
                );
                if result == "put" {
                    assert!(op["output"].get("previous").is_some(), "a put says what it found: {op}");
                }
            }
            other => panic!("unexpected operation {other}"),
        }
    }
    assert!(gets > 0, "--reads 0.5 recorded reads");
    assert_eq!(report["unknown"].as_u64(), Some(unknown), "the summary counts the history's unknowns");
    let checked = consenso(&["check", file.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(0), "{}", String::from_utf8_lossy(&checked.stdout));
}

#[test]
fn the_cli_on_the_clusters_machine_finds_the_private_token_file_and_open_writes_let_anyone_write() {
    use std::os::unix::fs::PermissionsExt;
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let data = cluster.data_dir();
    let token_file = data.join("token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is readable by its owner only");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), TOKEN);
    // `consenso cluster` and `consenso client` run from the same directory find each other:
    // the default token file is consenso-data/token.
    let workdir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&data, workdir.path().join("consenso-data")).unwrap();
    let put_from = |dir: &std::path::Path| {
        std::process::Command::new(BIN)
            .args(["client", "--proxy", &cluster.proxy(0), "put", "found", "it"])
            .env_remove("CONSENSO_TOKEN")
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let with_file = put_from(workdir.path());
    assert!(with_file.status.success(), "{}", String::from_utf8_lossy(&with_file.stderr));
    let elsewhere = put_from(std::path::Path::new("/"));
    assert!(!elsewhere.status.success(), "a write without any token was accepted");
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("unauthorized"));
    drop(cluster);

    let open = Cluster::start_with(3, 1, &["--open-writes"]);
    block_on(async {
        let mut student = Client::connect(&open.proxy(0), None).await.unwrap();
        assert!(!student.admin);
        let answer = student.request(put("by-a-student", "hi", None)).await;
        assert!(matches!(answer, Some(ProxyFrame::Done { .. })), "{answer:?}");
        // Writes are open; admin commands are not.
        let admin =
            student.request(ClientFrame::Admin { id: 0, command: AdminCommand::Crash { node: 1 } }).await;
        assert_eq!(error_kind(admin), ErrorKind::Unauthorized);
    });
}

#[test]
fn huge_values_leave_statuses_small_and_the_cluster_serving() {
    let _turn = serial();
    let cluster = Cluster::start_with(3, 1, &["--open-writes"]);
    block_on(async {
        // Anyone may write with --open-writes, but a viewer's frame holds at most 256 KiB: a
        // room of students cannot make the proxy buffer megabytes each.
        let mut student = Client::connect(&cluster.proxy(0), None).await.unwrap();
        let answer = student.request(put("huge-by-a-student", &"s".repeat(2 << 20), None)).await;
        assert!(
            matches!(&answer, Some(ProxyFrame::Error { error, .. }) if error.kind == ErrorKind::TooLarge)
                || answer.is_none(),
            "{answer:?}"
        );
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        // The issue's attack was three 6 MiB values; 2 MiB each (6 MiB in all) shows the same
        // without a debug build's slow JSON of a 6 MiB entry making elections churn.
        for i in 0..3 {
            let value = char::from(b'a' + i).to_string().repeat(2 << 20);
            let answer = c.request(put(&format!("huge-{i}"), &value, None)).await;
            assert!(matches!(answer, Some(ProxyFrame::Done { .. })), "{answer:?}");
        }
    });
    let out = consenso(&["client", "--proxy", &cluster.proxy(0), "status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.len() < 200_000, "a status of {} bytes", out.stdout.len());
    // Reads and writes go on, and the proxy's links to the servers hold: before, every status
    // overflowed a frame, the links failed in a loop and no request got through until the keys
    // were deleted. (Terms may still move in a debug build, whose JSON of a 2 MiB entry takes
    // longer than an election timeout; that is not what this checks.)
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        for i in 0..10 {
            let answer = c.request(put(&format!("after-{i}"), "v", None)).await;
            assert!(matches!(answer, Some(ProxyFrame::Done { .. })), "{answer:?}");
        }
        let read = c
            .request(ClientFrame::Get { id: 0, key: "huge-2".into(), consistency: Default::default() })
            .await;
        assert!(matches!(read, Some(ProxyFrame::Done { .. })), "{:?}", read.map(|_| ()));
    });
    for _ in 0..8 {
        let status = cluster.status().expect("the proxy answers");
        let unreachable: Vec<_> = status.nodes.iter().filter(|n| n.status.is_none()).map(|n| n.id).collect();
        assert!(unreachable.is_empty(), "the proxy lost its link to nodes {unreachable:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn writes_without_a_session_pipelined_on_one_connection_all_apply() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        for i in 1..=20u64 {
            let frame =
                ClientFrame::Put { id: i, key: format!("loose-{i}"), value: i.to_string(), session: None };
            c.send_text(shared::protocol::encode(&frame)).await.unwrap();
        }
        for _ in 0..20 {
            let answer = c.next_frame().await;
            assert!(
                matches!(answer, Some(ProxyFrame::Done { result: OpResult::Put { previous: None }, .. })),
                "{answer:?}"
            );
        }
    });
}

#[test]
fn a_server_whose_last_complete_record_fails_its_checksum_refuses_to_start_and_says_how_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n1");
    std::fs::create_dir_all(&data).unwrap();
    // A vote in term 1, then an entry whose checksum is wrong though its bytes are all there:
    // not an unfinished write but damage, and cutting it could forget an acknowledged write.
    // (Format 2: a header, then batches `[len][payload crc][header crc]` of `[kind][len][JSON]`.)
    let mut wal = b"consenso-wal 2\n".to_vec();
    let batch = |wal: &mut Vec<u8>, kind: u8, body: &str, corrupt: bool| {
        let mut payload = vec![kind];
        payload.extend_from_slice(&(body.len() as u32).to_le_bytes());
        payload.extend_from_slice(body.as_bytes());
        let len = (payload.len() as u32).to_le_bytes();
        let mut crc = crc32c::crc32c(&payload);
        if corrupt {
            crc ^= 1;
        }
        let crc = crc.to_le_bytes();
        let header_crc = crc32c::crc32c_append(crc32c::crc32c(&len), &crc);
        wal.extend_from_slice(&len);
        wal.extend_from_slice(&crc);
        wal.extend_from_slice(&header_crc.to_le_bytes());
        wal.extend_from_slice(&payload);
    };
    batch(&mut wal, 1, r#"{"term":1,"voted_for":1,"admitted":true}"#, false);
    batch(&mut wal, 2, r#"{"index":1,"term":1,"payload":{"kind":"noop"}}"#, true);
    std::fs::write(data.join("wal.log"), &wal).unwrap();
    let port = support::free_ports();
    let out = std::process::Command::new(BIN)
        .args(["server", "--id", "1", "--peers", &format!("1=127.0.0.1:{port}")])
        .arg(format!("--data-dir={}", data.display()))
        .env("CONSENSO_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged log was accepted:\n{stderr}");
    assert!(stderr.contains("refusing to start") && stderr.contains("new member"), "{stderr}");
    assert_eq!(std::fs::read(data.join("wal.log")).unwrap(), wal, "the damaged log is kept as it was");
}

#[test]
fn a_stopped_follower_loses_its_connection_after_the_send_timeout_and_catches_up_when_resumed() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let stopped = if leader == 3 { 2 } else { 3 };
    block_on(async {
        let mut c = Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        // The connection's session is opened (a small entry) while every server runs: what the
        // leader probes the stopped follower with from then on is a megabyte entry.
        let first = c.request(put("before-stopping", "small", None)).await;
        assert!(matches!(first, Some(ProxyFrame::Done { .. })), "{first:?}");
        assert!(matches!(
            c.request(ClientFrame::Admin { id: 0, command: AdminCommand::Pause { node: stopped } }).await,
            Some(ProxyFrame::AdminDone { .. })
        ));
        // More than the socket buffers hold: the leader's sends to the stopped follower block,
        // and instead of queueing without bound (the bench measures its memory) it drops the
        // link.
        for i in 0..24 {
            let answer =
                c.request(put(&format!("while-stopped-{}", i % 4), &"s".repeat(1 << 20), None)).await;
            assert!(matches!(answer, Some(ProxyFrame::Done { .. })), "{answer:?}");
        }
    });
    // Whoever leads by now (a debug build on a busy machine may hold an election while it
    // encodes megabyte entries) is the one sending to the stopped follower.
    wait_for(Duration::from_secs(20), "the leader to give up on the stopped follower's connection", || {
        let lost = format!("lost peer {stopped}: the peer took no data");
        (1..=3)
            .filter(|n| *n != stopped)
            .any(|n| cluster.log_of(&format!("node-{n}")).contains(&lost))
            .then_some(())
    });
    assert!(matches!(cluster.admin(AdminCommand::Resume { node: stopped }), ProxyFrame::AdminDone { .. }));
    wait_for(Duration::from_secs(30), "the resumed follower to catch up", || {
        let s = cluster.status()?;
        let leader = s.leader?;
        let leader_commit = s.nodes.iter().find(|n| n.id == leader)?.commit?;
        (s.nodes.iter().find(|n| n.id == stopped)?.commit? == leader_commit).then_some(())
    });
}
