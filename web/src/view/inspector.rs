//! One message, clicked in the drawing: its fields as the paper names them, where it is on its
//! journey, and — for the lecturer — deliver it now or drop it.

use shared::event::MessageSummary;
use shared::event_text::loss;
use shared::protocol::AdminCommand;
use shared::raft::{MessageId, NodeId, VoteRefusal};
use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, t};
use crate::store::{Flight, Flights, Journey, Part};
use crate::ui::UiAction;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub admin: bool,
    pub message: Option<(NodeId, MessageId)>,
    /// The messages drawn, where the inspected one is looked up.
    pub flights: Part<Flights>,
    pub now: f64,
    pub dispatch: Callback<UiAction>,
}

/// The entries an AppendEntries carries, in words.
fn carried(m: &MessageSummary) -> String {
    let MessageSummary::AppendEntries { prev_log_index, entries, last_entry_term, .. } = *m else {
        return String::new();
    };
    match (entries, last_entry_term) {
        (0, _) => "none (heartbeat)".to_string(),
        (n, Some(term)) => {
            format!("{n}: {}–{} (last of term {term})", prev_log_index + 1, prev_log_index + n as u64)
        }
        (n, None) => n.to_string(),
    }
}

/// The message's fields, named as in the paper (the same in every language).
pub fn fields(term: u64, m: &MessageSummary) -> Vec<(&'static str, String)> {
    let mut out = vec![("term", term.to_string())];
    let yes = |b: bool| if b { "yes".to_string() } else { "no".to_string() };
    match m {
        MessageSummary::RequestVote { pre_vote, last_log_index, last_log_term, transfer } => {
            out.push(("preVote", yes(*pre_vote)));
            out.push(("lastLogIndex", last_log_index.to_string()));
            out.push(("lastLogTerm", last_log_term.to_string()));
            if *transfer {
                out.push(("leadershipTransfer", yes(true)));
            }
        }
        MessageSummary::VoteResponse { pre_vote, granted, refusal } => {
            out.push(("preVote", yes(*pre_vote)));
            out.push(("voteGranted", yes(*granted)));
            if let Some(r) = refusal {
                out.push(("because", refusal_text(r)));
            }
        }
        MessageSummary::AppendEntries { prev_log_index, prev_log_term, leader_commit, .. } => {
            out.push(("prevLogIndex", prev_log_index.to_string()));
            out.push(("prevLogTerm", prev_log_term.to_string()));
            out.push(("entries", carried(m)));
            out.push(("leaderCommit", leader_commit.to_string()));
        }
        MessageSummary::AppendResponse { success, index, conflict, last_log_index } => {
            out.push(("success", yes(*success)));
            out.push(("matchIndex / refused prevLogIndex", index.to_string()));
            if let Some(c) = conflict {
                let term = c.term.map_or("-".to_string(), |t| t.to_string());
                out.push(("conflict", format!("term {term}, first index {}", c.index)));
            }
            out.push(("lastLogIndex", last_log_index.to_string()));
        }
        MessageSummary::InstallSnapshot { index, term, offset, bytes, done } => {
            out.push(("lastIncludedIndex", index.to_string()));
            out.push(("lastIncludedTerm", term.to_string()));
            out.push(("offset", offset.to_string()));
            out.push(("data", format!("{bytes} bytes")));
            out.push(("done", yes(*done)));
        }
        MessageSummary::SnapshotResponse { index, received, done } => {
            out.push(("index", index.to_string()));
            out.push(("received", format!("{received} bytes")));
            out.push(("done", yes(*done)));
        }
        MessageSummary::TimeoutNow => {}
        MessageSummary::ReadIndexRequest { read_id } => out.push(("readId", read_id.to_string())),
        MessageSummary::ReadIndexResponse { read_id, index } => {
            out.push(("readId", read_id.to_string()));
            out.push(("readIndex", index.map_or("refused".to_string(), |i| i.to_string())));
        }
        // A hosted node's message: its own type name (its fields are its own).
        MessageSummary::Foreign { name, .. } => out.push(("type", name.as_str().to_string())),
    }
    out
}

fn refusal_text(r: &VoteRefusal) -> String {
    match r {
        VoteRefusal::StaleTerm { voter_term } => format!("stale term (voter in {voter_term})"),
        VoteRefusal::AlreadyVoted { voted_for } => format!("already voted for {voted_for}"),
        VoteRefusal::LogNotUpToDate { voter_last_index, voter_last_term } => {
            format!("log not up to date (voter: {voter_last_index}, term {voter_last_term})")
        }
        VoteRefusal::LeaderActive { leader } => format!("leader {leader} is alive"),
        VoteRefusal::NotAVoter => "its disk was not let into the cluster".to_string(),
        VoteRefusal::NotAMember => "you were removed from the cluster".to_string(),
    }
}

fn where_it_is(lang: Lang, f: &Flight, now: f64) -> String {
    match f.journey {
        Journey::Lost { reason, .. } => format!("{}: {}", t(lang, T::Lost), loss(reason, lang)),
        Journey::Stepped { .. } => t(lang, T::Stepping).to_string(),
        Journey::Flying if f.held() => t(lang, T::Held).to_string(),
        Journey::Flying => format!("{} ({:.0}%)", t(lang, T::InFlight), f.progress_at(now) * 100.0),
    }
}

#[function_component]
pub fn Inspector(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let last = use_mut_ref(|| None::<Flight>);
    let lang = props.lang;
    let Some((from, id)) = props.message else {
        *last.borrow_mut() = None;
        return html! {};
    };
    let live = props.flights.find(from, id).cloned();
    let arrived = live.is_none();
    if let Some(f) = live {
        *last.borrow_mut() = Some(f);
    }
    let Some(f) = last.borrow().clone() else { return html! {} };
    let close = {
        let d = props.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.emit(UiAction::Inspect(None)))
    };
    let act = |command: AdminCommand| {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.admin(command.clone()))
    };
    let state = if arrived {
        if lang == Lang::Es {
            "llegó (o ya no se muestra)".to_string()
        } else {
            "arrived (or no longer shown)".to_string()
        }
    } else {
        where_it_is(lang, &f, props.now)
    };
    let can_act = props.admin && !arrived && f.lost().is_none();
    html! {
        <div class="inspector" data-inspector={id.to_string()} aria-live="polite">
            <h2>{ format!("{} {} #{id}", t(lang, T::MessageTitle), f.kind.name()) }</h2>
            <p class="route">{ format!("{} {} → {} {}", t(lang, T::Node), f.from, t(lang, T::Node), f.to) }</p>
            <p class="where" data-where={if arrived { "arrived" } else if f.held() { "held" } else { "moving" }}>{ state }</p>
            <dl>
                { for fields(f.term, &f.message).into_iter().map(|(k, v)| html! { <><dt>{ k }</dt><dd data-field={k}>{ v }</dd></> }) }
            </dl>
            <div class="buttons">
                { if can_act { html! { <>
                    <button data-action="deliver-message" onclick={act(AdminCommand::DeliverMessage { id })} disabled={!f.held()}>{ t(lang, T::DeliverNow) }</button>
                    <button data-action="drop-message" onclick={act(AdminCommand::DropMessage { id })}>{ t(lang, T::DropIt) }</button>
                </> } } else { html! {} } }
                <button onclick={close} data-action="close-inspector">{ t(lang, T::Close) }</button>
            </div>
        </div>
    }
}
