//! A real cluster recorded (`cluster --record`) through an election, and the recording drawn
//! by `consenso diagram`: valid SVG, a lifeline per server, an arrow per delivered message.

mod support;

use std::process::Command;
use std::time::Duration;

use shared::protocol::{AdminCommand, ProxyFrame};
use support::{BIN, Cluster, serial};

#[test]
fn a_recorded_election_is_drawn_with_a_lifeline_per_server_and_an_arrow_per_delivered_message() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.jsonl");
    let cluster = Cluster::start_with(3, 1, &["--record", file.to_str().unwrap(), "--time-scale", "5"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    assert!(matches!(cluster.admin(AdminCommand::Crash { node: leader }), ProxyFrame::AdminDone { .. }));
    let second = support::wait_for(Duration::from_secs(30), "a new leader", || {
        cluster.leader().filter(|l| *l != leader)
    });
    // The first leader comes back with a clock that starts at 0 again, and votes in the next
    // election: the recording must still put its vote before the win it made.
    assert!(matches!(cluster.admin(AdminCommand::Restart { node: leader }), ProxyFrame::AdminDone { .. }));
    std::thread::sleep(Duration::from_secs(4));
    assert!(matches!(cluster.admin(AdminCommand::Crash { node: second }), ProxyFrame::AdminDone { .. }));
    support::wait_for(Duration::from_secs(30), "a third leader", || {
        cluster.leader().filter(|l| *l != second)
    });
    std::thread::sleep(Duration::from_secs(1));
    drop(cluster);

    let text = std::fs::read_to_string(&file).unwrap();
    let (header, lines) = shared::recording::parse(&text).expect("a readable recording");
    assert_eq!(header.version, shared::recording::VERSION);
    assert!(
        matches!(lines[0].frame, ProxyFrame::Welcome { picture: Some(_), .. }),
        "it starts with the picture"
    );
    // What the diagram must show, counted here from the recording itself.
    let (mut sent, mut lost) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for line in &lines {
        if let ProxyFrame::Events { events } = &line.frame {
            for e in events {
                match &e.event {
                    shared::event::Event::MessageSent { id, .. } => {
                        sent.insert(*id);
                    }
                    shared::event::Event::MessageLost { id, .. } => {
                        lost.insert(*id);
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(!lost.is_empty(), "messages to the crashed leader were lost");
    causes_come_before_effects(&lines);

    let svg_path = dir.path().join("election.svg");
    let draw = |extra: &[&str]| {
        let mut args = vec!["diagram", file.to_str().unwrap(), "-o", svg_path.to_str().unwrap()];
        args.extend(extra);
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(&svg_path).unwrap()
    };
    let slide = draw(&[]);
    assert!(slide.contains("routine heartbeats and acknowledgements not drawn"), "a slide leaves them out");
    assert!(slide.contains(&format!("crash node {leader}")), "the crash is marked");
    let svg = draw(&["--heartbeats"]);
    let doc = roxmltree::Document::parse(&svg).expect("valid SVG (well-formed XML)");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let with_class = |c: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class").is_some_and(|k| k.split(' ').any(|w| w == c)))
            .count()
    };
    assert_eq!(with_class("lifeline"), 3);
    assert_eq!(with_class("delivered"), sent.difference(&lost).count());
    assert!(with_class("leader") >= 2, "both leaders are marked");

    // The same window in words, in Spanish, for the lecture notes.
    let words = Command::new(BIN)
        .args(["diagram", file.to_str().unwrap(), "--text", "--lang", "es"])
        .output()
        .unwrap();
    assert!(words.status.success(), "{}", String::from_utf8_lossy(&words.stderr));
    let words = String::from_utf8(words.stdout).unwrap();
    assert!(words.lines().any(|l| l.contains("nodo") && l.contains("líder")), "{words}");

    let refused =
        Command::new(BIN).args(["diagram", svg_path.to_str().unwrap(), "-o", "/dev/null"]).output().unwrap();
    assert!(!refused.status.success(), "an SVG is not a recording");
}

/// Every vote a candidate counts was granted, on the recording's one clock, before it was
/// counted (and no later than the win it made).
fn causes_come_before_effects(lines: &[shared::recording::Line]) {
    use shared::event::Event;
    let mut granted = std::collections::BTreeMap::new();
    let mut counted = Vec::new();
    for line in lines {
        let ProxyFrame::Events { events } = &line.frame else { continue };
        for e in events {
            match e.event {
                Event::VoteGranted { candidate, term, pre_vote: false } => {
                    granted.entry((e.node, candidate, term)).or_insert(e.at);
                }
                Event::VoteCounted { voter, term, pre_vote: false, granted: true, .. } if voter != e.node => {
                    counted.push((voter, e.node, term, e.at))
                }
                _ => {}
            }
        }
    }
    let matched: Vec<_> =
        counted.iter().filter_map(|(v, c, t, at)| Some((granted.get(&(*v, *c, *t))?, at))).collect();
    assert!(matched.len() >= 2, "votes of at least two elections recorded: {counted:?}");
    for (granted_at, counted_at) in matched {
        assert!(granted_at <= counted_at, "a vote granted at {granted_at} ms was counted at {counted_at} ms");
    }
}

/// `GET path` on the proxy: the status line, the headers and the body.
fn get(address: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(address).unwrap();
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_string(), body.to_string())
}

#[test]
fn the_lecturer_saves_the_last_minutes_and_draws_the_last_seconds_after_the_fact() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(3, 1);
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    assert!(matches!(cluster.admin(AdminCommand::Crash { node: leader }), ProxyFrame::AdminDone { .. }));
    support::wait_for(Duration::from_secs(30), "a new leader", || cluster.leader().filter(|l| *l != leader));
    std::thread::sleep(Duration::from_secs(1));
    let proxy = cluster.proxy(0);
    let token = support::TOKEN;

    let (head, _) = get(&proxy, "/recording?minutes=1");
    assert!(head.starts_with("HTTP/1.1 401"), "the recent minutes need the token: {head}");
    let (head, body) = get(&proxy, &format!("/recording?minutes=1&token={token}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-disposition: attachment"), "{head}");
    let (_, lines) = shared::recording::parse(&body).expect("a readable recording");
    assert!(
        matches!(lines[0].frame, ProxyFrame::Welcome { picture: Some(_), .. }),
        "it opens with a picture"
    );
    let elected = lines.iter().any(|l| match &l.frame {
        ProxyFrame::Events { events } => events.iter().any(|e| {
            matches!(e.event, shared::event::Event::RoleChanged { role: shared::raft::Role::Leader, .. })
                && e.node != leader
        }),
        _ => false,
    });
    assert!(elected, "the recording holds the election that followed the crash");

    let (head, svg) = get(&proxy, &format!("/diagram?seconds=30&token={token}"));
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("image/svg+xml"), "{head}");
    let doc = roxmltree::Document::parse(&svg).expect("valid SVG");
    let lifelines =
        doc.descendants().filter(|n| n.attribute("class").is_some_and(|c| c.contains("lifeline"))).count();
    assert_eq!(lifelines, 3);
    let (head, words) = get(&proxy, &format!("/diagram?seconds=30&format=text&lang=es&token={token}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(words.contains("líder"), "{words}");

    // A file recording, started and stopped by admin commands.
    let file = dir.path().join("tuesday.rec");
    let on = AdminCommand::Record { on: true, file: Some(file.display().to_string()) };
    assert!(matches!(cluster.admin(on), ProxyFrame::AdminDone { .. }));
    assert_eq!(cluster.status().unwrap().recording, Some(file.display().to_string()));
    std::thread::sleep(Duration::from_millis(800));
    assert!(matches!(
        cluster.admin(AdminCommand::Record { on: false, file: None }),
        ProxyFrame::AdminDone { .. }
    ));
    assert_eq!(cluster.status().unwrap().recording, None);
    let size = std::fs::metadata(&file).unwrap().len();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size, "nothing is written after the stop");
    let (_, lines) = shared::recording::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(matches!(lines[0].frame, ProxyFrame::Welcome { .. }) && lines.len() > 2);
    let nowhere = AdminCommand::Record { on: true, file: Some("/nonexistent/dir/x.rec".into()) };
    assert!(matches!(cluster.admin(nowhere), ProxyFrame::Error { .. }), "a path that cannot be created");
}
