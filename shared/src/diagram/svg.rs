//! A [`Picture`] drawn as SVG on a 16:9 slide (1600 × 900): lifelines spread across the width,
//! the window's time fitted to the height, admin actions named in the right margin, labels
//! haloed so that arrows never hide them (and stacked so that they never hide each other).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Picture, Window, picture};
use crate::raft::{MessageKind, NodeId};
use crate::recording::Line;

const WIDTH: f64 = 1600.0;
const HEIGHT: f64 = 900.0;
/// Where the first lifeline stands (the time scale is left of it).
const LEFT: f64 = 130.0;
/// Where the last one stands (admin actions are named right of it).
const RIGHT: f64 = 1330.0;
const TOP: f64 = 80.0;
const BOTTOM: f64 = 60.0;
/// Least vertical room between two labels on one lifeline.
const LABEL_GAP: f64 = 15.0;

fn kind_class(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::PreVote | MessageKind::RequestVote => "vote-request",
        MessageKind::PreVoteResponse | MessageKind::VoteResponse => "vote-response",
        MessageKind::Heartbeat => "heartbeat",
        MessageKind::AppendEntries | MessageKind::InstallSnapshot => "append",
        MessageKind::AppendResponse | MessageKind::SnapshotResponse => "append-response",
        MessageKind::TimeoutNow
        | MessageKind::ReadIndexRequest
        | MessageKind::ReadIndexResponse
        | MessageKind::Other => "other",
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

const STYLE: &str = r##"<style>
text { paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
.lifeline { stroke: #444; stroke-width: 2; } .down { stroke: #fff; stroke-width: 3; stroke-dasharray: 6 6; }
.msg { stroke-width: 1.8; fill: none; }
.vote-request { stroke: #6a3d9a; } .vote-response { stroke: #1b9e77; }
.append { stroke: #1f5f9e; } .append-response { stroke: #2a8a5a; }
.heartbeat { stroke: #9ab; stroke-width: 1.2; } .other { stroke: #b35806; }
.lost { stroke-dasharray: 5 4; }
.action { stroke: #b0b0b0; stroke-width: 1; stroke-dasharray: 2 4; }
.mark { font-size: 13px; } .mark.leader { fill: #1f5f9e; font-weight: bold; }
.mark.candidate, .mark.pre-candidate { fill: #b35806; } .mark.commit { fill: #2a8a5a; }
.mark.crash, .mark.pause, .mark.cut { fill: #c0392b; font-weight: bold; } .mark.restart { fill: #1b9e77; font-weight: bold; }
</style>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>
"##;

/// Where things go on the slide.
struct Layout {
    start: f64,
    pixels_per_ms: f64,
    column: BTreeMap<NodeId, f64>,
}

impl Layout {
    fn new(p: &Picture) -> Layout {
        let gap = if p.servers.len() > 1 { (RIGHT - LEFT) / (p.servers.len() - 1) as f64 } else { 0.0 };
        let column = p.servers.iter().enumerate().map(|(i, id)| (*id, LEFT + i as f64 * gap)).collect();
        let pixels_per_ms = (HEIGHT - TOP - BOTTOM) / (p.end - p.start).max(1.0);
        Layout { start: p.start, pixels_per_ms, column }
    }

    fn y(&self, t: f64) -> f64 {
        TOP + (t - self.start) * self.pixels_per_ms
    }
}

/// Draws `window` of a recording as an SVG document that fits a 16:9 slide.
pub fn render(lines: &[Line], window: Window, title: &str) -> String {
    let p = picture(lines, window);
    let at = Layout::new(&p);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="14">"#
    );
    s.push_str(STYLE);
    let _ = writeln!(s, r#"<text x="20" y="30" font-size="20" font-weight="bold">{}</text>"#, escape(title));
    time_scale(&mut s, &p, &at);
    lifelines(&mut s, &p, &at);
    actions(&mut s, &p, &at);
    arrows(&mut s, &p, &at);
    marks(&mut s, &p, &at);
    legend(&mut s, &p);
    s.push_str("</svg>\n");
    s
}

/// A tick every second (every 100 ms for short windows).
fn time_scale(s: &mut String, p: &Picture, at: &Layout) {
    let span = p.end - p.start;
    let step = if span > 20_000.0 {
        5000.0
    } else if span > 3000.0 {
        1000.0
    } else {
        100.0
    };
    let mut t = (p.start / step).ceil() * step;
    while t <= p.end {
        let _ =
            writeln!(s, r##"<text x="20" y="{:.1}" fill="#777">{:.1} s</text>"##, at.y(t) + 4.0, t / 1000.0);
        t += step;
    }
}

fn lifelines(s: &mut String, p: &Picture, at: &Layout) {
    let (top, bottom) = (at.y(p.start) - 10.0, at.y(p.end) + 10.0);
    for (id, x) in &at.column {
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-weight="bold" font-size="16">node {id}</text><line class="lifeline" data-node="{id}" x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}"/>"#,
            TOP - 22.0
        );
    }
    for (id, from, to) in &p.down {
        let Some(x) = at.column.get(id) else { continue };
        let _ = writeln!(
            s,
            r#"<line class="down" data-node="{id}" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"><title>node {id} down</title></line>"#,
            at.y(*from),
            at.y(*to)
        );
    }
}

/// Admin actions: a faint rule across the lifelines, named in the right margin.
fn actions(s: &mut String, p: &Picture, at: &Layout) {
    let mut last_y = f64::NEG_INFINITY;
    for (t, description) in &p.actions {
        let y = at.y(*t);
        let label_y = (y + 4.0).max(last_y + LABEL_GAP);
        last_y = label_y;
        let _ = writeln!(
            s,
            r##"<line class="action" x1="{LEFT:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="action-label" x="{:.1}" y="{label_y:.1}" fill="#555">{}</text>"##,
            RIGHT + 20.0,
            RIGHT + 28.0,
            escape(description)
        );
    }
}

fn arrows(s: &mut String, p: &Picture, at: &Layout) {
    for a in &p.arrows {
        let (Some(&x1), Some(&x2)) = (at.column.get(&a.from), at.column.get(&a.to)) else { continue };
        let (y1, y2) = (at.y(a.sent), at.y(a.arrives));
        let label = format!("{} #{} node {} → node {}", a.kind.name(), a.id, a.from, a.to);
        let class = kind_class(a.kind);
        match a.lost {
            Some(_) => {
                let f = lost_fraction(a, &at.column);
                let (xe, ye) = (x1 + (x2 - x1) * f, y1 + (y2 - y1) * f);
                let _ = writeln!(
                    s,
                    r##"<line class="msg lost {class}" data-message="{}" x1="{x1:.1}" y1="{y1:.1}" x2="{xe:.1}" y2="{ye:.1}"><title>{} (lost)</title></line><text x="{xe:.1}" y="{:.1}" text-anchor="middle" fill="#c0392b" font-weight="bold">✗</text>"##,
                    a.id,
                    escape(&label),
                    ye + 5.0
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    r#"<line class="msg delivered {class}" data-message="{}" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" marker-end="url(#arrow)"><title>{}</title></line>"#,
                    a.id,
                    escape(&label)
                );
            }
        }
    }
}

/// How far along its own arrow a lost message is drawn: almost to the server it was for, so
/// that it is plain whom it did not reach (a message lost to a partition or a dead server is
/// lost when it is due, on arrival), and never onto a lifeline, where it would seem to arrive.
fn lost_fraction(a: &super::Arrow, column: &BTreeMap<NodeId, f64>) -> f64 {
    let (Some(&x1), Some(&x2)) = (column.get(&a.from), column.get(&a.to)) else { return 0.5 };
    let dx = (x2 - x1).abs().max(1.0);
    (1.0 - 36.0 / dx).max(0.5)
}

fn marks(s: &mut String, p: &Picture, at: &Layout) {
    let mut marks: Vec<&super::Mark> = p.marks.iter().collect();
    marks.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut last_label: BTreeMap<NodeId, f64> = BTreeMap::new();
    for m in marks {
        let Some(x) = at.column.get(&m.node) else { continue };
        let y = at.y(m.at);
        let label_y = (y + 4.0).max(last_label.get(&m.node).map_or(f64::NEG_INFINITY, |l| l + LABEL_GAP));
        last_label.insert(m.node, label_y);
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="#444"/><text class="mark {}" x="{:.1}" y="{label_y:.1}">{}</text>"##,
            m.class,
            x + 8.0,
            escape(&m.text)
        );
    }
}

fn legend(s: &mut String, p: &Picture) {
    let y = HEIGHT - 22.0;
    let entries = [
        ("vote-request", "vote request"),
        ("vote-response", "vote"),
        ("append", "entries"),
        ("append-response", "acknowledgement"),
        ("heartbeat", "heartbeat"),
    ];
    let mut x = 20.0;
    for (class, name) in entries {
        let _ = write!(
            s,
            r##"<line class="msg {class}" x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" fill="#555" font-size="12">{name}</text>"##,
            x + 26.0,
            x + 32.0,
            y + 4.0
        );
        x += 150.0;
    }
    if p.routine_hidden > 0 {
        let _ = write!(
            s,
            r##"<text x="{x:.1}" y="{:.1}" fill="#777" font-size="12">{} routine heartbeats and acknowledgements not drawn</text>"##,
            y + 4.0,
            p.routine_hidden
        );
    }
    s.push('\n');
}
