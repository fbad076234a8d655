//! Messages drawn on their way: each kind with its own shape (the legend works in black and
//! white), held ones parked as envelopes, lost ones crossed out where they were lost, with the
//! reason. A click opens the message in the inspector.

use std::collections::HashMap;

use shared::event::MessageSummary;
use shared::event_text::loss;
use shared::raft::{MessageId, MessageKind, NodeId};
use yew::prelude::*;

use super::geometry::polygon;
use crate::i18n::Lang;
use crate::store::{Flight, Journey, LOST_SHOWN_MS};
use crate::ui::UiAction;

/// How far apart (in fractions of the way) held messages on one link are parked.
const PARK_SPACING: f64 = 0.09;

/// Each kind of message has its own shape, so the legend works in black and white too.
pub fn glyph(kind: MessageKind, message: &MessageSummary) -> Html {
    let ok = if message.ok() { "ok" } else { "no" };
    let entries = message.entries();
    match kind {
        MessageKind::PreVote => html! { <polygon class="msg vote pre" points={polygon(4, 9.0, 0.0)} /> },
        MessageKind::RequestVote => html! { <polygon class="msg vote" points={polygon(4, 9.0, 0.0)} /> },
        MessageKind::PreVoteResponse | MessageKind::VoteResponse => {
            html! { <circle class={classes!("msg", "vote-reply", ok)} r="6" /> }
        }
        MessageKind::Heartbeat => html! { <circle class="msg heartbeat" r="4.5" /> },
        MessageKind::AppendEntries => html! {
            <g>
                <circle class="msg append" r="8" />
                { if entries > 1 { html! { <text class="count" y="3">{ entries.min(99) }</text> } } else { html! {} } }
            </g>
        },
        MessageKind::AppendResponse => {
            html! { <rect class={classes!("msg", "append-reply", ok)} x="-4.5" y="-4.5" width="9" height="9" /> }
        }
        MessageKind::InstallSnapshot => {
            html! { <rect class="msg snapshot" x="-10" y="-10" width="20" height="20" /> }
        }
        MessageKind::SnapshotResponse => html! { <circle class="msg snapshot-reply" r="6" /> },
        MessageKind::TimeoutNow => {
            html! { <polygon class="msg timeout-now" points={polygon(3, 10.0, -std::f64::consts::FRAC_PI_2)} /> }
        }
        MessageKind::ReadIndexRequest => {
            html! { <polygon class="msg read" points={polygon(3, 8.0, std::f64::consts::FRAC_PI_2)} /> }
        }
        MessageKind::ReadIndexResponse => {
            html! { <polygon class={classes!("msg", "read-reply", ok)} points={polygon(3, 7.0, -std::f64::consts::FRAC_PI_2)} /> }
        }
        // A hosted node's own kind of message: a hexagon, named in the inspector.
        MessageKind::Other => html! { <polygon class="msg other" points={polygon(6, 7.0, 0.0)} /> },
    }
}

/// Draws every message in `flights` between the servers placed by `at`.
#[allow(clippy::too_many_arguments)]
pub fn draw(
    flights: &[&Flight],
    at: impl Fn(NodeId) -> Option<(f64, f64)>,
    node_r: f64,
    now: f64,
    lang: Lang,
    selected: Option<(NodeId, MessageId)>,
    dispatch: &Callback<UiAction>,
) -> Html {
    // Held messages on one link wait one behind the other.
    let mut parked: HashMap<(NodeId, NodeId), usize> = HashMap::new();
    html! {
        <g class="flights">
            { for flights.iter().filter_map(|f| {
                let (fx, fy) = at(f.from)?;
                let (tx, ty) = at(f.to)?;
                let mut p = f.progress_at(now);
                if f.held() {
                    let k = parked.entry((f.from, f.to)).or_default();
                    p = (p + *k as f64 * PARK_SPACING).min(0.9);
                    *k += 1;
                }
                // From the edge of one shape to the edge of the other.
                let (dx, dy) = (tx - fx, ty - fy);
                let len = (dx * dx + dy * dy).sqrt().max(1.0);
                let edge = (node_r + 10.0) / len;
                let q = edge + (1.0 - 2.0 * edge) * p;
                Some(flight(f, fx + dx * q, fy + dy * q, now, lang, selected == Some((f.from, f.id)), dispatch))
            }) }
        </g>
    }
}

/// A message's name: a student's node names its own (`request_vote`…), said as it names them.
fn message_name(f: &Flight) -> String {
    match f.message {
        MessageSummary::Foreign { name, .. } => name.as_str().to_string(),
        _ => f.kind.name().to_string(),
    }
}

/// Clicking a message inspects it, and so does Enter on one with the focus.
fn handlers(f: &Flight, dispatch: &Callback<UiAction>) -> (Callback<MouseEvent>, Callback<KeyboardEvent>) {
    let onclick = {
        let (d, key) = (dispatch.clone(), (f.from, f.id));
        Callback::from(move |e: MouseEvent| {
            e.stop_propagation();
            d.emit(UiAction::Inspect(Some(key)));
        })
    };
    // Enter inspects a message with the focus. Held ones (time stopped: they stand still) are
    // keyboard stops; moving ones would pass too fast to reach, and would flood the Tab order.
    let onkeydown = {
        let (d, key) = (dispatch.clone(), (f.from, f.id));
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" {
                e.prevent_default();
                e.stop_propagation();
                d.emit(UiAction::Inspect(Some(key)));
            }
        })
    };
    (onclick, onkeydown)
}

fn flight(
    f: &Flight,
    x: f64,
    y: f64,
    now: f64,
    lang: Lang,
    selected: bool,
    dispatch: &Callback<UiAction>,
) -> Html {
    let (onclick, onkeydown) = handlers(f, dispatch);
    let (lost, fade) = match f.journey {
        Journey::Lost { at, reason, .. } => {
            (Some(reason), (1.0 - (now - at) / LOST_SHOWN_MS).clamp(0.15, 1.0))
        }
        _ => (None, 1.0),
    };
    let tabindex = if f.held() { "0" } else { "-1" };
    let name = message_name(f);
    let label = format!("{name} #{} {} → {}", f.id, f.from, f.to);
    let stepped = matches!(f.journey, Journey::Stepped { .. });
    let classes = classes!(
        "flight",
        f.held().then_some("held"),
        lost.is_some().then_some("lost"),
        stepped.then_some("stepped"),
        selected.then_some("selected"),
        (!f.true_time).then_some("impression")
    );
    html! {
        <g class={classes} transform={format!("translate({x:.1},{y:.1})")} style={format!("opacity:{fade:.2}")}
            data-kind={f.kind.name()} data-from={f.from.to_string()} data-to={f.to.to_string()}
            data-message-id={f.id.to_string()} data-held={f.held().to_string()}
            data-lost={lost.map_or(String::new(), |r| format!("{r:?}").to_lowercase())}
            tabindex={tabindex} role="button" aria-label={label.clone()}
            {onclick} {onkeydown}>
            <title>{ label }</title>
            // A generous target: the glyphs are small.
            <circle class="hit" r="15" />
            { if f.held() { html! { <rect class="envelope" x="-13" y="-11" width="26" height="22" rx="3" /> } } else { html! {} } }
            { glyph(f.kind, &f.message) }
            // A kind Consenso does not know is drawn by its name.
            { if f.kind == MessageKind::Other { html! { <text class="other-name" y="-11">{ name }</text> } } else { html! {} } }
            { match lost {
                Some(reason) => html! { <>
                    <text class="lost-mark" y="6">{ "✗" }</text>
                    <text class="lost-why" y="24">{ loss(reason, lang) }</text>
                </> },
                None => html! {},
            } }
        </g>
    }
}
