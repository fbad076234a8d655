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
    support::wait_for(Duration::from_secs(30), "a new leader", || cluster.leader().filter(|l| *l != leader));
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

    let svg_path = dir.path().join("election.svg");
    let out = Command::new(BIN)
        .args(["diagram", file.to_str().unwrap(), "-o", svg_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
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
