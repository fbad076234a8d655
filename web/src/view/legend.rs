//! What every mark in the drawing means: server shapes and badges, the timer ring, the kinds
//! of message, held and lost ones.

use shared::event::MessageSummary;
use shared::raft::MessageKind;
use yew::prelude::*;

use super::flights::glyph;
use super::geometry::polygon;
use crate::i18n::{Lang, T, t};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
}

/// A message of `kind` as the legend shows it.
fn sample(kind: MessageKind, ok: bool) -> MessageSummary {
    match kind {
        MessageKind::VoteResponse => {
            MessageSummary::VoteResponse { pre_vote: false, granted: ok, refusal: None }
        }
        MessageKind::AppendResponse => {
            MessageSummary::AppendResponse { success: ok, index: 0, conflict: None, last_log_index: 0 }
        }
        MessageKind::AppendEntries | MessageKind::Heartbeat => MessageSummary::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: if kind == MessageKind::Heartbeat { 0 } else { 3 },
            last_entry_term: None,
            leader_commit: 0,
        },
        _ => MessageSummary::TimeoutNow,
    }
}

fn shape(class: &'static str, body: Html) -> Html {
    html! {
        <svg viewBox="-14 -14 28 28" width="24" height="24" aria-hidden="true" class={classes!("legend-shape", class)}>{ body }</svg>
    }
}

#[function_component]
pub fn Legend(props: &Props) -> Html {
    let lang = props.lang;
    let es = lang == Lang::Es;
    let messages = [
        (MessageKind::PreVote, false),
        (MessageKind::RequestVote, false),
        (MessageKind::VoteResponse, true),
        (MessageKind::VoteResponse, false),
        (MessageKind::Heartbeat, true),
        (MessageKind::AppendEntries, true),
        (MessageKind::AppendResponse, true),
        (MessageKind::AppendResponse, false),
        (MessageKind::InstallSnapshot, true),
        (MessageKind::TimeoutNow, true),
        (MessageKind::ReadIndexRequest, true),
    ];
    let roles = [
        (shape("follower", html! { <circle r="11" /> }), T::LegendFollower),
        (shape("pre_candidate", html! { <polygon points={polygon(4, 12.0, 0.0)} /> }), T::LegendPreCandidate),
        (shape("candidate", html! { <polygon points={polygon(4, 12.0, 0.0)} /> }), T::LegendCandidate),
        (shape("leader", html! { <polygon points={polygon(6, 12.0, 0.0)} /> }), T::LegendLeader),
        (shape("learner", html! { <circle r="11" /> }), T::LegendLearner),
        (shape("timer", html! { <circle r="10" stroke-dasharray="40 63" /> }), T::LegendTimer),
    ];
    let badges = [T::LegendPaused, T::LegendCrashed, T::LegendUnreachable, T::LegendCutOff];
    html! {
        <details class="legend" open=true>
            <summary>{ t(lang, T::LegendTitle) }</summary>
            <ul class="legend-roles">
                { for roles.into_iter().map(|(icon, what)| html! { <li>{ icon }{ t(lang, what) }</li> }) }
                { for badges.iter().map(|what| html! { <li>{ t(lang, *what) }</li> }) }
            </ul>
            <ul class="legend-messages" aria-label={t(lang, T::Legend)}>
                { for messages.iter().map(|(kind, ok)| {
                    let suffix = match (kind, ok) {
                        (MessageKind::VoteResponse | MessageKind::AppendResponse, true) => if es { " (sí)" } else { " (yes)" },
                        (MessageKind::VoteResponse | MessageKind::AppendResponse, false) => " (no)",
                        _ => "",
                    };
                    html! {
                        <li>
                            <svg viewBox="-12 -12 24 24" width="22" height="22" aria-hidden="true">{ glyph(*kind, &sample(*kind, *ok)) }</svg>
                            { format!("{}{suffix}", kind.name()) }
                        </li>
                    }
                }) }
                <li>{ t(lang, T::LegendHeld) }</li>
                <li>{ t(lang, T::LegendLostMsg) }</li>
                // Also under the drawing, where a small screen has no room for it.
                <li>{ t(lang, T::ClickAMessage) }</li>
            </ul>
        </details>
    }
}
