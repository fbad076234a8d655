//! Space-time (Lamport) diagrams of a recording, for slides: one vertical lifeline per server,
//! time flowing down, one arrow per message from its sending to its arrival, a lost message
//! stopping with a cross where it was lost, role changes, restarts and commits marked on the
//! lifelines, the time a server was down drawn pale, and every admin action (a crash, a
//! partition, a heal) as a rule across the picture, named on the right.
//!
//! A slide must read at a glance, so *routine* traffic is left out unless asked for: a
//! heartbeat that tells its follower nothing new (the same commit index as the last one it
//! sent there) and an acknowledgement that acknowledges nothing new. The first heartbeat of a
//! leader, every entry, vote and refusal stays.
//!
//! Times come from the recording's one clock (`shared::recording::OneClock`): every event is
//! stamped on the proxy's clock, so the arrows show order and latency across servers.

mod svg;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::event::{Event, MessageSummary, Observed};
use crate::protocol::{ProcessState, ProxyFrame};
use crate::raft::{Index, MessageId, MessageKind, NodeId, Role};
use crate::recording::Line;

pub use svg::render;

/// Which part of a recording to draw, in seconds since it started, and whether routine
/// heartbeats and acknowledgements are drawn too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub from_s: f64,
    pub to_s: f64,
    pub routine: bool,
}

impl Window {
    pub fn all() -> Window {
        Window { from_s: 0.0, to_s: f64::INFINITY, routine: false }
    }

    fn contains(&self, ms: f64) -> bool {
        ms >= self.from_s * 1000.0 && ms <= self.to_s * 1000.0
    }
}

/// A message as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrow {
    pub id: MessageId,
    pub from: NodeId,
    pub to: NodeId,
    pub kind: MessageKind,
    /// Recording time, ms.
    pub sent: f64,
    pub arrives: f64,
    /// When it was lost, if it was.
    pub lost: Option<f64>,
}

/// A note on one server's lifeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub at: f64,
    pub node: NodeId,
    pub text: String,
    /// How it is drawn: `leader`, `candidate`, `pre-candidate`, `follower`, `commit`,
    /// `restart`, `crash`, `pause`, `cut`.
    pub class: &'static str,
}

/// What the diagram shows, before it is drawn (tests and other renderers use it).
#[derive(Debug, Default)]
pub struct Picture {
    pub servers: Vec<NodeId>,
    pub arrows: Vec<Arrow>,
    pub marks: Vec<Mark>,
    /// What an admin did (crash, partition, heal…), across every lifeline.
    pub actions: Vec<(f64, String)>,
    /// When a server was down (crashed or paused): server, from, to.
    pub down: Vec<(NodeId, f64, f64)>,
    /// Routine messages left out.
    pub routine_hidden: usize,
    pub start: f64,
    pub end: f64,
}

/// Every event of a recording with its time (ms on the recording's clock).
fn events(lines: &[Line]) -> Vec<(f64, &Observed)> {
    lines
        .iter()
        .flat_map(|line| match &line.frame {
            ProxyFrame::Events { events } => events.iter().collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .map(|o| (o.at as f64, o))
        .collect()
}

/// The time scale the recording ran at (slow motion stretches message delays).
fn time_scale(lines: &[Line]) -> f64 {
    lines
        .iter()
        .rev()
        .find_map(|l| match &l.frame {
            ProxyFrame::Status { cluster, .. } => Some(cluster.time_scale),
            ProxyFrame::Welcome { picture: Some(p), .. } => Some(p.cluster.time_scale),
            _ => None,
        })
        .unwrap_or(1.0)
        .max(0.01)
}

/// The events of `window` in words, one line each, for lecture notes. Routine traffic
/// (messages, timer resets, applying) is left out: the diagram shows it.
pub fn text(lines: &[Line], window: Window, lang: crate::event_text::Lang) -> String {
    let node = if lang == crate::event_text::Lang::Es { "nodo" } else { "node" };
    let mut out = String::new();
    let mut events = events(lines);
    // In time order across servers (a stable sort keeps each server's own order).
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (at, o) in events {
        let routine = matches!(
            o.event,
            Event::MessageSent { .. }
                | Event::MessageLost { .. }
                | Event::MessageStepped { .. }
                | Event::ElectionTimerReset { .. }
                | Event::Applied { .. }
                | Event::AppendAccepted { .. }
        );
        if !routine && window.contains(at) {
            let words = o.event.describe_in(lang);
            let words = crate::visible::visible(&words);
            let who = if o.node == 0 { "proxy".to_string() } else { format!("{node} {}", o.node) };
            let _ = writeln!(out, "{:>8.3} s  {who}: {words}", at / 1000.0);
        }
    }
    out
}

/// Tells routine messages from news, sender by sender.
#[derive(Default)]
struct Routine {
    /// The commit index last sent from one server to another in an AppendEntries.
    commit_sent: BTreeMap<(NodeId, NodeId), Index>,
    /// The highest index one server acknowledged to another.
    acknowledged: BTreeMap<(NodeId, NodeId), Index>,
}

impl Routine {
    fn is_routine(&mut self, from: NodeId, to: NodeId, message: &MessageSummary) -> bool {
        match *message {
            MessageSummary::AppendEntries { entries, leader_commit, .. } => {
                let before = self.commit_sent.insert((from, to), leader_commit);
                entries == 0 && before == Some(leader_commit)
            }
            MessageSummary::AppendResponse { success: true, index, .. } => {
                let before = self.acknowledged.get(&(from, to)).copied();
                self.acknowledged.insert((from, to), before.unwrap_or(0).max(index));
                before.is_some_and(|b| index <= b)
            }
            _ => false,
        }
    }
}

/// The servers a recording knows of: every one pictured or heard from.
fn servers(lines: &[Line]) -> Vec<NodeId> {
    let mut servers: BTreeSet<NodeId> = BTreeSet::new();
    for line in lines {
        match &line.frame {
            ProxyFrame::Welcome { nodes, .. } => servers.extend(nodes.iter().map(|n| n.id)),
            ProxyFrame::Events { events } => servers.extend(events.iter().map(|o| o.node)),
            _ => {}
        }
    }
    servers.remove(&0);
    servers.into_iter().collect()
}

/// Collects what happened in `window`.
pub fn picture(lines: &[Line], window: Window) -> Picture {
    let scale = time_scale(lines);
    let events = events(lines);
    let lost: BTreeMap<(NodeId, MessageId), f64> = events
        .iter()
        .filter_map(|(at, o)| match &o.event {
            Event::MessageLost { from, id, .. } => Some(((*from, *id), *at)),
            _ => None,
        })
        .collect();
    let mut p = Picture { servers: servers(lines), ..Picture::default() };
    let mut routine = Routine::default();
    let mut roles = opening_roles(lines);
    for (at, o) in &events {
        let (at, node) = (*at, o.node);
        let shown = window.contains(at);
        match &o.event {
            Event::MessageSent { id, to, message, delay, .. } => {
                if routine.is_routine(node, *to, message) && !window.routine {
                    p.routine_hidden += usize::from(shown);
                } else if shown {
                    let (arrives, lost) = (at + *delay as f64 * scale, lost.get(&(node, *id)).copied());
                    let kind = message.kind();
                    p.arrows.push(Arrow { id: *id, from: node, to: *to, kind, sent: at, arrives, lost });
                }
            }
            Event::Fault { description, .. } if node == 0 && shown => {
                p.actions.push((at, description.clone()))
            }
            event => {
                if let Some((text, class)) = lifeline_mark(event, node, &mut roles, window.routine) {
                    if shown {
                        p.marks.push(Mark { at, node, text, class });
                    }
                }
            }
        }
    }
    process_states(lines, window, &mut p);
    fit_span(&mut p);
    p
}

/// Who has which role when the recording opens.
fn opening_roles(lines: &[Line]) -> BTreeMap<NodeId, Role> {
    lines
        .iter()
        .find_map(|l| match &l.frame {
            ProxyFrame::Welcome { picture: Some(p), .. } => {
                Some(p.cluster.nodes.iter().filter_map(|n| Some((n.id, n.role?))).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// The mark an event puts on its server's lifeline, if any (keeping `roles` up to date).
fn lifeline_mark(
    event: &Event,
    node: NodeId,
    roles: &mut BTreeMap<NodeId, Role>,
    routine: bool,
) -> Option<(String, &'static str)> {
    match event {
        Event::RoleChanged { role, term, .. } => {
            let before = roles.insert(node, *role);
            let class = match role {
                Role::Leader => "leader",
                Role::Candidate => "candidate",
                Role::PreCandidate => "pre-candidate",
                Role::Follower => "follower",
            };
            // Every server becomes a follower in every election: only stepping down says
            // something.
            let news = *role != Role::Follower || matches!(before, Some(Role::Leader | Role::Candidate));
            (news || routine).then(|| (format!("{class} · term {term}"), class))
        }
        Event::CommitAdvanced { to, .. } if routine || roles.get(&node) == Some(&Role::Leader) => {
            Some((format!("commit {to}"), "commit"))
        }
        Event::Recovered { term, .. } => Some((format!("restarted · term {term}"), "restart")),
        _ => None,
    }
}

/// The time the picture spans: from its first to its last drawn thing.
fn fit_span(p: &mut Picture) {
    let times = p.arrows.iter().flat_map(|a| [a.sent, a.arrives]).chain(p.marks.iter().map(|m| m.at));
    let times = times.chain(p.actions.iter().map(|a| a.0));
    let (start, end) = times.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| (lo.min(t), hi.max(t)));
    (p.start, p.end) = if start.is_finite() { (start, end.max(start + 1.0)) } else { (0.0, 1.0) };
    for (_, from, to) in &mut p.down {
        *from = from.max(p.start);
        *to = to.min(p.end);
    }
}

/// Crashes, pauses and cut links from the statuses (whoever caused them: an admin, a lesson,
/// `kill -9` from a shell): marks where they begin, and the time a server was down.
fn process_states(lines: &[Line], window: Window, p: &mut Picture) {
    let mut last: BTreeMap<NodeId, (ProcessState, bool)> = BTreeMap::new();
    let mut down_since: BTreeMap<NodeId, f64> = BTreeMap::new();
    for line in lines {
        let cluster = match &line.frame {
            ProxyFrame::Status { cluster, .. } => cluster,
            ProxyFrame::Welcome { picture: Some(picture), .. } => &picture.cluster,
            _ => continue,
        };
        let at = line.t as f64;
        for n in &cluster.nodes {
            let now = (n.state, n.partitioned);
            let Some(before) = last.insert(n.id, now).filter(|b| *b != now) else { continue };
            // A status comes every 250 ms: the admin action that did it, if any, says when.
            let cause = |verb: &str| {
                let what = format!("{verb} node {}", n.id);
                let recent = p.actions.iter().rev().take_while(|(t, _)| *t > at - 1000.0);
                recent.filter(|(t, d)| *t <= at && *d == what).map(|(t, _)| *t).next().unwrap_or(at)
            };
            let at = match now.0 {
                ProcessState::Crashed => cause("crash"),
                ProcessState::Paused => cause("pause"),
                _ => at,
            };
            let shown = window.contains(at);
            match (before.0, now.0) {
                (ProcessState::Up, ProcessState::Crashed) if shown => {
                    p.marks.push(mark(at, n.id, "crashed", "crash"))
                }
                (ProcessState::Up, ProcessState::Paused) if shown => {
                    p.marks.push(mark(at, n.id, "paused", "pause"))
                }
                _ => {}
            }
            let is_down = matches!(now.0, ProcessState::Crashed | ProcessState::Paused);
            if is_down {
                down_since.entry(n.id).or_insert(at);
            } else if let Some(since) = down_since.remove(&n.id) {
                p.down.push((n.id, since, at));
            }
            if now.1 != before.1 && shown {
                let (text, class) = if now.1 { ("cut off", "cut") } else { ("reconnected", "cut") };
                p.marks.push(mark(at, n.id, text, class));
            }
        }
    }
    let end = lines.last().map_or(0.0, |l| l.t as f64);
    p.down.extend(down_since.into_iter().map(|(node, since)| (node, since, end)));
    // Kept when it overlaps the window.
    p.down.retain(|(_, from, to)| *to >= window.from_s * 1000.0 && *from <= window.to_s * 1000.0);
}

fn mark(at: f64, node: NodeId, text: &str, class: &'static str) -> Mark {
    Mark { at, node, text: text.to_string(), class }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MessageSummary;
    use crate::event::{LossReason, RoleReason};

    fn at(t: u64, node: NodeId, at: u64, event: Event) -> Line {
        Line { t, frame: ProxyFrame::Events { events: vec![Observed { node, at, event }] } }
    }

    fn heartbeat() -> MessageSummary {
        MessageSummary::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: 0,
            last_entry_term: None,
            leader_commit: 0,
        }
    }

    fn recording() -> Vec<Line> {
        let sent = |id, to| Event::MessageSent { id, to, term: 1, message: heartbeat(), delay: 5 };
        vec![
            at(
                1000,
                1,
                1000,
                Event::RoleChanged {
                    role: Role::Leader,
                    term: 1,
                    leader: Some(1),
                    reason: RoleReason::ElectionWon { votes: 2 },
                },
            ),
            at(1010, 1, 1010, sent(7, 2)),
            at(1012, 1, 1011, sent(8, 3)),
            at(1020, 1, 1012, Event::MessageLost { from: 1, id: 8, to: 3, reason: LossReason::Partition }),
            at(1030, 2, 1030, sent(9, 1)),
            at(1031, 3, 1031, Event::CommitAdvanced { from: 0, to: 1, term: 1 }),
        ]
    }

    fn class_count(svg: &str, c: &str) -> usize {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        doc.descendants()
            .filter(|n| n.attribute("class").is_some_and(|k| k.split(' ').any(|w| w == c)))
            .count()
    }

    #[test]
    fn each_server_gets_a_lifeline_and_each_delivered_message_an_arrow() {
        let svg = render(&recording(), Window::all(), "test <window>");
        assert_eq!(class_count(&svg, "lifeline"), 3);
        assert_eq!(class_count(&svg, "delivered"), 2, "messages 7 and 9");
        assert_eq!(class_count(&svg, "lost"), 1, "message 8");
        assert!(svg.contains("test &lt;window&gt;"), "text is escaped");
        assert!(svg.contains(r#"viewBox="0 0 1600 900""#), "a 16:9 slide");
    }

    #[test]
    fn a_window_in_words_names_the_roles_and_commits_but_not_the_routine_traffic() {
        let en = text(&recording(), Window::all(), crate::event_text::Lang::En);
        assert_eq!(en.lines().count(), 2, "{en}");
        assert!(en.contains("node 1:") && en.contains("node 3:"), "{en}");
        let es = text(&recording(), Window::all(), crate::event_text::Lang::Es);
        assert!(es.contains("nodo 1:"), "{es}");
        assert_ne!(en.replace("node", "nodo"), es, "the events themselves are in Spanish too");
    }

    #[test]
    fn a_window_selects_by_recording_time() {
        let p = picture(&recording(), Window { from_s: 1.015, ..Window::all() });
        assert_eq!(p.arrows.iter().map(|a| a.id).collect::<Vec<_>>(), vec![9]);
    }

    #[test]
    fn routine_heartbeats_are_left_out_unless_asked_for_but_news_is_not() {
        let mut lines = Vec::new();
        for i in 0..10u64 {
            let mut beat = heartbeat();
            if let MessageSummary::AppendEntries { leader_commit, .. } = &mut beat {
                *leader_commit = if i < 6 { 3 } else { 4 };
            }
            let sent = Event::MessageSent { id: i, to: 2, term: 1, message: beat, delay: 1 };
            lines.push(at(100 * i, 1, 100 * i, sent));
        }
        let p = picture(&lines, Window::all());
        assert_eq!(
            p.arrows.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![0, 6],
            "the first, and a new commit"
        );
        assert_eq!(p.routine_hidden, 8);
        assert!(render(&lines, Window::all(), "").contains("8 routine heartbeats"));
        let all = picture(&lines, Window { routine: true, ..Window::all() });
        assert_eq!(all.arrows.len(), 10);
    }

    #[test]
    fn a_lost_message_stops_on_its_own_arrow_and_never_on_another_lifeline() {
        let svg = render(&recording(), Window::all(), "");
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let lifelines: Vec<f64> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("lifeline"))
            .map(|n| n.attribute("x1").unwrap().parse().unwrap())
            .collect();
        let lost =
            doc.descendants().find(|n| n.attribute("class").is_some_and(|c| c.contains("lost"))).unwrap();
        let coordinate = |name: &str| lost.attribute(name).unwrap().parse::<f64>().unwrap();
        let (x1, x2) = (coordinate("x1"), coordinate("x2"));
        assert_eq!(x1, lifelines[0], "it leaves node 1");
        assert!(x2 > x1 && x2 < lifelines[2], "it heads for node 3 and stops before it");
        assert!(lifelines.iter().all(|x| (x - x2).abs() >= 18.0), "{x2} is not on a lifeline {lifelines:?}");
    }

    #[test]
    fn crashes_restarts_and_admin_actions_are_marked() {
        let mut lines = recording();
        let fault =
            |description: &str| Event::Fault { description: description.into(), description_es: None };
        lines.push(at(1100, 0, 0, fault("crash node 2")));
        lines.push(at(
            1900,
            2,
            1900,
            Event::Recovered { term: 1, voted_for: Some(1), snapshot_index: 0, last_index: 0 },
        ));
        let lines: Vec<Line> = lines
            .into_iter()
            .map(|mut l| {
                if let ProxyFrame::Events { events } = &mut l.frame {
                    events.iter_mut().filter(|o| o.node == 0).for_each(|o| o.at = l.t);
                }
                l
            })
            .collect();
        let p = picture(&lines, Window::all());
        assert_eq!(p.actions, vec![(1100.0, "crash node 2".to_string())]);
        assert!(p.marks.iter().any(|m| m.node == 2 && m.class == "restart"), "{:?}", p.marks);
        let svg = render(&lines, Window::all(), "");
        assert!(svg.contains("crash node 2") && svg.contains("restarted · term 1"));
    }

    /// Whatever a crafted recording holds, the diagram is valid XML and the words hold no
    /// terminal control sequence.
    #[test]
    fn control_characters_in_a_recording_never_reach_the_svg_or_the_words_raw() {
        let mut lines = recording();
        let nasty = "esc\x1b[2J\x07k\u{0}\u{9b}\u{fffe}";
        let entry = crate::event::EntrySummary {
            index: 1,
            term: 1,
            text: format!("put {nasty}=v\x1b]0;owned\x07").into(),
        };
        lines.push(at(1500, 1, 1500, Event::EntriesAppended { entries: vec![entry] }));
        lines.push(at(1600, 1, 1600, Event::Fault { description: nasty.to_string(), description_es: None }));
        let svg = render(&lines, Window::all(), nasty);
        roxmltree::Document::parse(&svg).expect("well-formed SVG");
        assert!(!svg.contains('\x1b') && !svg.contains('\u{0}') && !svg.contains('\u{fffe}'));
        let words = text(&lines, Window::all(), crate::event_text::Lang::En);
        assert!(words.contains("\\u{1b}[2J"), "{words}");
        assert!(!words.chars().any(|c| c.is_control() && c != '\n'), "{words:?}");
    }
}
