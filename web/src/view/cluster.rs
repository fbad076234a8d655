//! The cluster drawn: each server as a shape whose form and label say its role (readable
//! without colour), its term and vote, its process and network state, its election timer as a
//! ring that empties toward the timeout; and the messages in flight between servers.

use std::collections::BTreeSet;

use shared::event::MessageSummary;
use shared::event_text::role_name;
use shared::protocol::{AdminCommand, ProcessState};
use shared::raft::{MessageKind, NodeId, Role};
use yew::prelude::*;

use super::actions::admin;
use crate::app::{Shared, UiAction};
use crate::i18n::{Lang, T, process, t};
use crate::store::{Flight, MAX_FLIGHTS, NodeModel};

const SIZE: f64 = 600.0;
const RADIUS: f64 = 205.0;
const NODE_R: f64 = 46.0;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub now: f64,
    pub version: u64,
    pub selected: Option<NodeId>,
    pub menu: Option<NodeId>,
    pub partition: BTreeSet<NodeId>,
    pub admin: bool,
    pub dispatch: Callback<UiAction>,
}

fn positions(ids: &[NodeId]) -> Vec<(NodeId, f64, f64)> {
    let n = ids.len().max(1) as f64;
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let angle = -std::f64::consts::FRAC_PI_2 + i as f64 * std::f64::consts::TAU / n;
            (*id, SIZE / 2.0 + RADIUS * angle.cos(), SIZE / 2.0 + RADIUS * angle.sin())
        })
        .collect()
}

fn polygon(sides: usize, r: f64, rotate: f64) -> String {
    (0..sides)
        .map(|i| {
            let a = rotate + i as f64 * std::f64::consts::TAU / sides as f64;
            format!("{:.1},{:.1}", r * a.cos(), r * a.sin())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[function_component]
pub fn ClusterView(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let store = shared.store.borrow();
    let model = store.view();
    let lang = props.lang;
    let ids: Vec<NodeId> = model.nodes.keys().copied().collect();
    let places = positions(&ids);
    let at = |id: NodeId| places.iter().find(|(i, _, _)| *i == id).map(|(_, x, y)| (*x, *y));
    let now = if store.frozen.is_some() { model.now } else { props.now };

    let links = html! {
        <g class="links">
            { for places.iter().enumerate().flat_map(|(i, (a, ax, ay))| places.iter().skip(i + 1).map(move |(b, bx, by)| (*a, *ax, *ay, *b, *bx, *by))).map(|(a, ax, ay, b, bx, by)| {
                let na = &model.nodes[&a];
                let nb = &model.nodes[&b];
                let cut = na.faults.blocked_to.contains(&b) || nb.faults.blocked_to.contains(&a);
                html! { <line class={classes!("link", cut.then_some("cut"))} x1={ax.to_string()} y1={ay.to_string()} x2={bx.to_string()} y2={by.to_string()} /> }
            }) }
        </g>
    };

    let flights = model.flights.iter().filter_map(|f| {
        let (fx, fy) = at(f.from)?;
        let (tx, ty) = at(f.to)?;
        // A message to a dead server or across a cut link is lost on the way: it fades out halfway.
        let to = model.nodes.get(&f.to);
        let lost = to.is_some_and(|n| {
            matches!(n.process, Some(ProcessState::Crashed | ProcessState::Unreachable))
                || n.faults.blocked_from.contains(&f.from)
        }) || model.nodes.get(&f.from).is_some_and(|n| n.faults.blocked_to.contains(&f.to));
        let p = ((now - f.start) / f.duration).clamp(0.0, 1.0) * if lost { 0.5 } else { 1.0 };
        // From the edge of one shape to the edge of the other.
        let (dx, dy) = (tx - fx, ty - fy);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let edge = (NODE_R + 8.0) / len;
        let q = edge + (1.0 - 2.0 * edge) * p;
        Some(flight(f, fx + dx * q, fy + dy * q, lost))
    });

    let nodes = model.nodes.values().map(|n| {
        let (x, y) = at(n.id).unwrap_or((0.0, 0.0));
        let onclick = {
            let d = props.dispatch.clone();
            let id = n.id;
            Callback::from(move |e: MouseEvent| {
                e.stop_propagation();
                d.emit(UiAction::Select(Some(id)));
            })
        };
        let oncontextmenu = {
            let d = props.dispatch.clone();
            let id = n.id;
            Callback::from(move |e: MouseEvent| {
                e.prevent_default();
                e.stop_propagation();
                d.emit(UiAction::OpenMenu(id));
            })
        };
        node(
            n,
            x,
            y,
            now,
            lang,
            props.selected == Some(n.id),
            props.partition.contains(&n.id),
            onclick,
            oncontextmenu,
        )
    });

    let rate = model.messages_per_s.round() as usize;
    let drawn = model.message_rate();
    let menu = props.menu.and_then(|id| {
        let (x, y) = at(id)?;
        Some(context_menu(
            &shared,
            id,
            x,
            y,
            lang,
            props.admin,
            model.nodes.get(&id)?,
            props.dispatch.clone(),
        ))
    });

    html! {
        <div class="cluster">
            <h2>{ t(lang, T::Cluster) }</h2>
            <div class="cluster-canvas">
                <svg viewBox={format!("0 0 {SIZE} {SIZE}")} role="img" aria-label="cluster" onclick={{
                    let d = props.dispatch.clone();
                    Callback::from(move |_: MouseEvent| d.emit(UiAction::Select(None)))
                }}>
                    { links }
                    <g class="flights">{ for flights }</g>
                    <g class="nodes">{ for nodes }</g>
                </svg>
                { menu.unwrap_or_default() }
            </div>
            <p class="rate" data-message-rate={rate.to_string()}>
                { format!("{rate} {}", t(lang, T::MessagesPerSecond)) }
                { if drawn + 2 < rate || model.flights.len() >= MAX_FLIGHTS { format!(" · {}", t(lang, T::ShowingSample)) } else { String::new() } }
            </p>
            <Legend lang={lang} />
        </div>
    }
}

#[allow(clippy::too_many_arguments)]
fn node(
    n: &NodeModel,
    x: f64,
    y: f64,
    now: f64,
    lang: Lang,
    selected: bool,
    picked: bool,
    onclick: Callback<MouseEvent>,
    oncontextmenu: Callback<MouseEvent>,
) -> Html {
    let state = n.process.unwrap_or(if n.reachable { ProcessState::Up } else { ProcessState::Unreachable });
    let down = matches!(state, ProcessState::Crashed | ProcessState::Unreachable);
    let role = if down { None } else { n.role };
    let role_attr = role.map_or("unknown", role_key);
    let shape = match role {
        Some(Role::Leader) => html! { <polygon class="shape" points={polygon(6, NODE_R, 0.0)} /> },
        Some(Role::Candidate | Role::PreCandidate) => {
            html! { <polygon class="shape" points={polygon(4, NODE_R * 1.08, 0.0)} /> }
        }
        _ => html! { <circle class="shape" r={NODE_R.to_string()} /> },
    };
    let ring = n.timer.filter(|_| !down && state != ProcessState::Paused).map(|(deadline, span)| {
        let left = ((deadline - now) / span.max(1.0)).clamp(0.0, 1.0);
        let r = NODE_R + 9.0;
        let circumference = std::f64::consts::TAU * r;
        html! {
            <circle class="timer" r={r.to_string()} transform="rotate(-90)"
                stroke-dasharray={format!("{:.1} {:.1}", circumference * left, circumference)}
                data-timer-left={format!("{left:.2}")} />
        }
    });
    let label = match role {
        Some(r) => {
            let name = role_name(r, lang);
            if r == Role::Leader { name.to_uppercase() } else { name.to_string() }
        }
        None => process(lang, state).to_string(),
    };
    let badges = [
        (state == ProcessState::Paused, "❚❚"),
        (state == ProcessState::Crashed, "✖"),
        (state == ProcessState::Unreachable, "?"),
        (n.partitioned, "✂"),
        (role == Some(Role::Leader), "★"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, s)| *s)
    .collect::<String>();
    let vote = n.voted_for.map_or(String::new(), |v| format!("{} {v}", t(lang, T::VotedFor)));
    let classes = classes!(
        "node",
        format!("role-{role_attr}"),
        format!("state-{}", state.as_str()),
        selected.then_some("selected"),
        picked.then_some("picked"),
        n.partitioned.then_some("partitioned")
    );
    html! {
        <g class={classes} transform={format!("translate({x:.1},{y:.1})")}
            data-node-id={n.id.to_string()} data-role={role_attr} data-term={n.term.to_string()}
            data-state={state.as_str()} data-partitioned={n.partitioned.to_string()}
            data-commit={n.commit.to_string()} data-last-index={n.last_index.to_string()}
            {onclick} {oncontextmenu}>
            <title>{ tooltip(n, lang) }</title>
            { ring.unwrap_or_default() }
            { shape }
            <text class="name" y="-14">{ format!("{} {}", t(lang, T::Node), n.id) }</text>
            <text class="role" y="4">{ label }</text>
            // A server that cannot be heard from has no term we could vouch for.
            <text class="term" y="20">{ if role.is_none() { String::new() } else { format!("{} {}", t(lang, T::Term), n.term) } }</text>
            <text class="vote" y="34">{ if role.is_none() { String::new() } else { vote } }</text>
            <text class="badges" y={(-NODE_R - 16.0).to_string()}>{ badges }</text>
        </g>
    }
}

fn tooltip(n: &NodeModel, lang: Lang) -> String {
    let mut parts = vec![format!("{} {} · {}", t(lang, T::Node), n.id, n.address)];
    if let Some(pid) = n.pid {
        parts.push(format!("pid {pid}"));
    }
    parts.push(format!("{} {} · {} {}", t(lang, T::Commit), n.commit, t(lang, T::Applied), n.applied));
    if n.partitioned {
        parts.push(t(lang, T::Partitioned).to_string());
    }
    if let Some(rss) = n.rss_bytes {
        parts.push(format!("{} {:.1} MB", t(lang, T::Memory), rss as f64 / 1e6));
    }
    parts.join("\n")
}

/// The role as `data-role` and CSS classes name it (the protocol's spelling).
pub fn role_key(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "pre_candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// Each kind of message has its own shape, so the legend works in black and white too.
fn glyph(kind: MessageKind, message: &MessageSummary) -> Html {
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
    }
}

fn flight(f: &Flight, x: f64, y: f64, lost: bool) -> Html {
    html! {
        <g class={classes!("flight", lost.then_some("lost"))} transform={format!("translate({x:.1},{y:.1})")} data-kind={f.kind.name()}
            data-from={f.from.to_string()} data-to={f.to.to_string()}>
            { glyph(f.kind, &f.message) }
        </g>
    }
}

/// A message of `kind` as the legend shows it.
fn sample(kind: MessageKind, ok: bool) -> MessageSummary {
    match kind {
        MessageKind::VoteResponse => MessageSummary::VoteResponse { pre_vote: false, granted: ok, refusal: None },
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

#[derive(Properties, PartialEq)]
struct LegendProps {
    lang: Lang,
}

#[function_component]
fn Legend(props: &LegendProps) -> Html {
    let items = [
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
    let es = props.lang == Lang::Es;
    html! {
        <ul class="legend" aria-label={t(props.lang, T::Legend)}>
            { for items.iter().map(|(kind, ok)| {
                let detail = sample(*kind, *ok);
                let suffix = match (kind, ok) {
                    (MessageKind::VoteResponse | MessageKind::AppendResponse, true) => if es { " (sí)" } else { " (yes)" },
                    (MessageKind::VoteResponse | MessageKind::AppendResponse, false) => " (no)",
                    _ => "",
                };
                html! {
                    <li>
                        <svg viewBox="-12 -12 24 24" width="22" height="22" aria-hidden="true">{ glyph(*kind, &detail) }</svg>
                        { format!("{}{suffix}", kind.name()) }
                    </li>
                }
            }) }
        </ul>
    }
}

#[allow(clippy::too_many_arguments)]
fn context_menu(
    shared: &Shared,
    id: NodeId,
    x: f64,
    y: f64,
    lang: Lang,
    is_admin: bool,
    n: &NodeModel,
    dispatch: Callback<UiAction>,
) -> Html {
    if !is_admin {
        return html! {
            <div class="menu" style={format!("left:{:.1}%;top:{:.1}%", x / SIZE * 100.0, y / SIZE * 100.0)}>
                <p>{ t(lang, T::ViewOnly) }</p>
            </div>
        };
    }
    let state = n.process.unwrap_or(ProcessState::Up);
    let item = |label: T, command: AdminCommand, enabled: bool| {
        let (shared, dispatch) = (shared.clone(), dispatch.clone());
        let onclick = Callback::from(move |e: MouseEvent| {
            e.stop_propagation();
            admin(&shared, command.clone());
            dispatch.emit(UiAction::CloseMenu);
        });
        html! { <button disabled={!enabled} {onclick} data-action={format!("{label:?}").to_lowercase()}>{ t(lang, label) }</button> }
    };
    html! {
        <div class="menu" style={format!("left:{:.1}%;top:{:.1}%", x / SIZE * 100.0, y / SIZE * 100.0)}
            onclick={Callback::from(|e: MouseEvent| e.stop_propagation())}>
            <strong>{ format!("{} {id}", t(lang, T::Node)) }</strong>
            { item(T::Crash, AdminCommand::Crash { node: id }, state != ProcessState::Crashed) }
            { item(T::Restart, AdminCommand::Restart { node: id }, true) }
            { item(T::Pause, AdminCommand::Pause { node: id }, state == ProcessState::Up) }
            { item(T::Resume, AdminCommand::Resume { node: id }, state == ProcessState::Paused) }
            { item(T::MakeLeader, AdminCommand::TransferLeadership { to: id }, state == ProcessState::Up && n.role != Some(Role::Leader)) }
            { item(T::Isolate, AdminCommand::Partition { groups: vec![vec![id]] }, true) }
        </div>
    }
}
