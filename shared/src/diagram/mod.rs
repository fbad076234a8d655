//! Space-time (Lamport) diagrams of a recording, as SVG for slides: one vertical lifeline per
//! server, time flowing down, one arrow per message from its sending to its arrival (lost
//! messages end in a cross half-way), role changes and commits marked on the lifelines.
//!
//! Each server stamps its events with its own clock (which starts at 0 with the process and
//! runs slower in slow motion). The diagram puts them on one axis by estimating each clock's
//! offset from when its events reached the proxy: the smallest difference seen is the closest
//! to the truth (events can only arrive late), as NTP estimates offsets from the fastest
//! round trip. Arrows therefore show order and latency faithfully to within a few ms.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::event::{Event, Observed};
use crate::protocol::ProxyFrame;
use crate::raft::{MessageId, MessageKind, NodeId, Role};
use crate::recording::Line;

/// Which part of a recording to draw, in seconds since it started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub from_s: f64,
    pub to_s: f64,
}

impl Window {
    pub fn all() -> Window {
        Window { from_s: 0.0, to_s: f64::INFINITY }
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
    pub lost: bool,
}

/// What the diagram shows, before it is drawn (tests and other renderers use it).
#[derive(Debug, Default)]
pub struct Picture {
    pub servers: Vec<NodeId>,
    pub arrows: Vec<Arrow>,
    /// (time, server, text) marks on lifelines: roles and commits.
    pub marks: Vec<(f64, NodeId, String, &'static str)>,
    pub start: f64,
    pub end: f64,
}

/// The events of a recording with the time each reached the proxy.
fn events(lines: &[Line]) -> Vec<(u64, &Observed)> {
    lines
        .iter()
        .flat_map(|line| match &line.frame {
            ProxyFrame::Events { events } => events.iter().map(|e| (line.t, e)).collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .filter(|(_, o)| o.node != 0)
        .collect()
}

/// The time scale the recording ran at (slow motion stretches the servers' clocks).
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

/// Every server's events on the recording's time axis (ms), each clock aligned by the least
/// lag seen between stamping and arrival.
fn aligned(lines: &[Line]) -> Vec<(f64, &Observed)> {
    let scale = time_scale(lines);
    let events = events(lines);
    let mut offset: BTreeMap<NodeId, f64> = BTreeMap::new();
    for (t, o) in &events {
        let lag = *t as f64 - o.at as f64 * scale;
        offset.entry(o.node).and_modify(|x| *x = x.min(lag)).or_insert(lag);
    }
    events.into_iter().map(|(_, o)| (o.at as f64 * scale + offset[&o.node], o)).collect()
}

/// The events of `window` in words, one line each, for lecture notes. Routine traffic
/// (messages, timer resets, applying) is left out: the diagram shows it.
pub fn text(lines: &[Line], window: Window, lang: crate::event_text::Lang) -> String {
    let node = if lang == crate::event_text::Lang::Es { "nodo" } else { "node" };
    let mut out = String::new();
    let mut events = aligned(lines);
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
            let _ = writeln!(out, "{:>8.3} s  {node} {}: {words}", at / 1000.0, o.node);
        }
    }
    out
}

/// Collects what happened in `window`.
pub fn picture(lines: &[Line], window: Window) -> Picture {
    let scale = time_scale(lines);
    let mut servers: BTreeSet<NodeId> = lines
        .iter()
        .filter_map(|l| match &l.frame {
            ProxyFrame::Welcome { nodes, .. } => Some(nodes.iter().map(|n| n.id).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    let events = aligned(lines);
    servers.extend(events.iter().map(|(_, o)| o.node));
    let lost: BTreeSet<MessageId> = events
        .iter()
        .filter_map(|(_, o)| match &o.event {
            Event::MessageLost { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let mut p = Picture { servers: servers.into_iter().collect(), ..Picture::default() };
    for (at, o) in &events {
        let at = *at;
        match &o.event {
            Event::MessageSent { id, to, message, delay, .. } if window.contains(at) => {
                p.arrows.push(Arrow {
                    id: *id,
                    from: o.node,
                    to: *to,
                    kind: message.kind(),
                    sent: at,
                    arrives: at + *delay as f64 * scale,
                    lost: lost.contains(id),
                })
            }
            Event::RoleChanged { role, term, .. } if window.contains(at) => {
                let class = match role {
                    Role::Leader => "leader",
                    Role::Candidate => "candidate",
                    Role::PreCandidate => "pre-candidate",
                    Role::Follower => "follower",
                };
                p.marks.push((at, o.node, format!("{class} · term {term}"), class));
            }
            Event::CommitAdvanced { to, .. } if window.contains(at) => {
                p.marks.push((at, o.node, format!("commit {to}"), "commit"));
            }
            _ => {}
        }
    }
    let times = p.arrows.iter().flat_map(|a| [a.sent, a.arrives]).chain(p.marks.iter().map(|m| m.0));
    let (start, end) = times.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| (lo.min(t), hi.max(t)));
    (p.start, p.end) = if start.is_finite() { (start, end.max(start + 1.0)) } else { (0.0, 1.0) };
    p
}

const LEFT: f64 = 90.0;
const TOP: f64 = 70.0;
const COLUMN: f64 = 190.0;
/// Pixels per ms: a 10 s election is about 1,500 px tall; long windows are squeezed.
fn pixels_per_ms(span_ms: f64) -> f64 {
    (1500.0 / span_ms.max(1.0)).clamp(0.02, 2.0)
}

fn kind_class(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::PreVote | MessageKind::RequestVote => "vote-request",
        MessageKind::PreVoteResponse | MessageKind::VoteResponse => "vote-response",
        MessageKind::Heartbeat => "heartbeat",
        MessageKind::AppendEntries | MessageKind::InstallSnapshot => "append",
        MessageKind::AppendResponse | MessageKind::SnapshotResponse => "append-response",
        MessageKind::TimeoutNow | MessageKind::ReadIndexRequest | MessageKind::ReadIndexResponse => "other",
    }
}

/// Text for an SVG document: valid XML whatever it holds (control characters written out).
fn escape(text: &str) -> String {
    crate::visible::visible(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws `window` of a recording as an SVG document.
pub fn render(lines: &[Line], window: Window, title: &str) -> String {
    let p = picture(lines, window);
    let ppm = pixels_per_ms(p.end - p.start);
    let y = |t: f64| TOP + (t - p.start) * ppm;
    let column: BTreeMap<NodeId, f64> =
        p.servers.iter().enumerate().map(|(i, id)| (*id, LEFT + i as f64 * COLUMN)).collect();
    let width = LEFT * 2.0 + (p.servers.len().max(1) - 1) as f64 * COLUMN + 120.0;
    let height = y(p.end) + 40.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="13">
<style>
.lifeline {{ stroke: #444; stroke-width: 2; }}
.msg {{ stroke-width: 1.6; fill: none; }}
.vote-request {{ stroke: #6a3d9a; }} .vote-response {{ stroke: #1b9e77; }}
.append {{ stroke: #1f5f9e; }} .append-response {{ stroke: #2a8a5a; }}
.heartbeat {{ stroke: #9ab; stroke-width: 1; }} .other {{ stroke: #b35806; }}
.lost {{ stroke: #c0392b; stroke-dasharray: 5 4; }}
.mark {{ font-size: 12px; }} .mark.leader {{ fill: #1f5f9e; font-weight: bold; }}
.mark.candidate, .mark.pre-candidate {{ fill: #b35806; }} .mark.commit {{ fill: #2a8a5a; }}
</style>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>
<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>
"##,
        escape(title)
    );
    // A time scale: a tick every second (every 100 ms for short windows).
    let step = if p.end - p.start > 3000.0 { 1000.0 } else { 100.0 };
    let mut t = (p.start / step).ceil() * step;
    while t <= p.end {
        let _ = writeln!(
            s,
            r##"<text class="tick" x="8" y="{:.1}" fill="#777">{:.1} s</text>"##,
            y(t) + 4.0,
            t / 1000.0
        );
        t += step;
    }
    for (id, x) in &column {
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="52" text-anchor="middle" font-weight="bold">node {id}</text><line class="lifeline" data-node="{id}" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}"/>"#,
            y(p.end) + 10.0
        );
    }
    for a in &p.arrows {
        let (Some(x1), Some(x2)) = (column.get(&a.from), column.get(&a.to)) else { continue };
        let (y1, y2) = (y(a.sent), y(a.arrives));
        let label = format!("{} #{} node {} → node {}", a.kind.name(), a.id, a.from, a.to);
        if a.lost {
            let (xm, ym) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
            let _ = writeln!(
                s,
                r##"<line class="msg lost {}" data-message="{}" x1="{x1:.1}" y1="{y1:.1}" x2="{xm:.1}" y2="{ym:.1}"><title>{} (lost)</title></line><text x="{xm:.1}" y="{:.1}" text-anchor="middle" fill="#c0392b">✗</text>"##,
                kind_class(a.kind),
                a.id,
                escape(&label),
                ym + 5.0
            );
        } else {
            let _ = writeln!(
                s,
                r#"<line class="msg delivered {}" data-message="{}" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" marker-end="url(#arrow)"><title>{}</title></line>"#,
                kind_class(a.kind),
                a.id,
                escape(&label)
            );
        }
    }
    for (t, node, text, class) in &p.marks {
        let Some(x) = column.get(node) else { continue };
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{:.1}" r="3.5" fill="#444"/><text class="mark {class}" x="{:.1}" y="{:.1}">{}</text>"##,
            y(*t),
            x + 7.0,
            y(*t) + 4.0,
            escape(text)
        );
    }
    s.push_str("</svg>\n");
    s
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
            // Node 2's clock started 1,000 ms after node 1's: the diagram aligns them.
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
            at(1030, 2, 20, sent(9, 1)),
            at(1031, 3, 500, Event::CommitAdvanced { from: 0, to: 1, term: 1 }),
        ]
    }

    #[test]
    fn each_server_gets_a_lifeline_and_each_delivered_message_an_arrow() {
        let svg = render(&recording(), Window::all(), "test <window>");
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let class = |c: &str| {
            doc.descendants()
                .filter(|n| n.attribute("class").is_some_and(|k| k.split(' ').any(|w| w == c)))
                .count()
        };
        assert_eq!(class("lifeline"), 3);
        assert_eq!(class("delivered"), 2, "messages 7 and 9");
        assert_eq!(class("lost"), 1, "message 8");
        assert!(svg.contains("test &lt;window&gt;"), "text is escaped");
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
    fn clocks_are_aligned_by_the_least_lag_and_a_window_selects_by_recording_time() {
        let p = picture(&recording(), Window::all());
        let from_2 = p.arrows.iter().find(|a| a.id == 9).unwrap();
        assert_eq!(from_2.sent, 1030.0, "node 2's clock runs 1,010 ms behind node 1's");
        let p = picture(&recording(), Window { from_s: 1.015, to_s: 2.0 });
        assert_eq!(p.arrows.iter().map(|a| a.id).collect::<Vec<_>>(), vec![9]);
    }

    /// Whatever a crafted recording holds, the diagram is valid XML and the words hold no
    /// terminal control sequence.
    #[test]
    fn control_characters_in_a_recording_never_reach_the_svg_or_the_words_raw() {
        let mut lines = recording();
        let nasty = "esc\x1b[2J\x07k\u{0}\u{9b}\u{fffe}";
        let entry =
            crate::event::EntrySummary { index: 1, term: 1, text: format!("put {nasty}=v\x1b]0;owned\x07") };
        lines.push(at(1500, 1, 1500, Event::EntriesAppended { entries: vec![entry] }));
        lines.push(at(1600, 1, 1600, Event::Fault { description: nasty.to_string() }));
        let svg = render(&lines, Window::all(), nasty);
        roxmltree::Document::parse(&svg).expect("well-formed SVG");
        assert!(!svg.contains('\x1b') && !svg.contains('\u{0}') && !svg.contains('\u{fffe}'));
        let words = text(&lines, Window::all(), crate::event_text::Lang::En);
        assert!(words.contains("\\u{1b}[2J"), "{words}");
        assert!(!words.chars().any(|c| c.is_control() && c != '\n'), "{words:?}");
    }
}
