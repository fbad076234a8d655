//! The cluster drawn: each server as a shape whose form and label say its role (readable
//! without colour), its term and vote, its votes while it campaigns, its process and network
//! state, its election timer as a ring that empties toward the timeout; the sides of a
//! partition and the direction of one-way blocks; and the messages on their way.
//!
//! Every server is a keyboard stop: Tab reaches it, Enter opens its menu.

use std::collections::BTreeSet;

use shared::event_text::role_name;
use shared::protocol::{AdminCommand, ProcessState};
use shared::raft::{MessageId, NodeId, Role};
use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::flights;
use super::geometry::{NODE_R, PRESENTATION_SCALE, SIZE, polygon, positions};
use crate::app::Shared;
use crate::i18n::{Lang, T, process, t};
use crate::store::{Flights, MAX_FLIGHTS, NodeModel, Nodes, Part, Timer};
use crate::ui::UiAction;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    /// Page time of the moment drawn (the frozen moment, when frozen).
    pub now: f64,
    pub nodes: Part<Nodes>,
    pub flights: Part<Flights>,
    /// Members without a vote yet.
    pub learners: Vec<NodeId>,
    /// Messages per second as the proxy counts them, and as many as the page was told of.
    pub messages_per_s: f64,
    pub drawn_rate: usize,
    pub time_stopped: bool,
    pub selected: Option<NodeId>,
    pub menu: Option<NodeId>,
    pub partition: BTreeSet<NodeId>,
    pub message: Option<(NodeId, MessageId)>,
    pub admin: bool,
    /// Presentation mode draws bigger servers (for the back row).
    pub presentation: bool,
    pub dispatch: Callback<UiAction>,
}

/// Focuses the first element matching `selector` (keyboard users follow what opens).
fn focus(selector: &str) {
    let element =
        web_sys::window().and_then(|w| w.document()).and_then(|d| d.query_selector(selector).ok().flatten());
    if let Some(el) = element {
        if let Ok(html) = el.clone().dyn_into::<web_sys::HtmlElement>() {
            let _ = html.focus();
        } else if let Ok(svg) = el.dyn_into::<web_sys::SvgElement>() {
            let _ = svg.focus();
        }
    }
}

/// The menu takes the focus when it opens, and gives it back to its server when it closes.
#[hook]
fn use_menu_focus(menu: Option<NodeId>) {
    let opened = use_mut_ref(|| None::<NodeId>);
    use_effect_with(menu, move |menu| {
        match menu {
            Some(_) => focus(".menu button:not([disabled])"),
            None => {
                if let Some(node) = opened.borrow().as_ref() {
                    focus(&format!(r#"[data-node-id="{node}"]"#));
                }
            }
        }
        *opened.borrow_mut() = *menu;
    });
}

#[function_component]
pub fn ClusterView(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    use_menu_focus(props.menu);
    let servers = &props.nodes;
    let lang = props.lang;
    let ids: Vec<NodeId> = servers.keys().copied().collect();
    let places = positions(&ids);
    let at = |id: NodeId| places.iter().find(|(i, _, _)| *i == id).map(|(_, x, y)| (*x, *y));
    let now = props.now;

    let sides = servers.sides();
    let halos = halos(&places, &sides, lang);
    let links = links(servers, &places, lang);
    let shown: Vec<_> = props.flights.list.iter().collect();
    let node_r = if props.presentation { NODE_R * PRESENTATION_SCALE } else { NODE_R };
    let flights = flights::draw(&shown, at, node_r, now, lang, props.message, &props.dispatch);
    let leader = servers.shown_leader();
    let nodes = servers.values().map(|n| {
        let (x, y) = at(n.id).unwrap_or((0.0, 0.0));
        node(n, (x, y), now, props, leader)
    });

    let menu = props.menu.and_then(|id| {
        let (x, y) = at(id)?;
        Some(context_menu(&shared, id, x, y, lang, props.admin, servers.get(&id)?, props.dispatch.clone()))
    });
    html! {
        <div class="cluster">
            <div class="canvas-box">
                <div class="cluster-canvas">
                    <svg viewBox={format!("0 0 {SIZE} {SIZE}")} role="group" aria-label={t(lang, T::Cluster)} onclick={{
                        let d = props.dispatch.clone();
                        Callback::from(move |_: MouseEvent| d.emit(UiAction::Select(None)))
                    }}>
                        { halos }
                        { links }
                        <g class="nodes">{ for nodes }</g>
                        { flights }
                    </svg>
                    { menu.unwrap_or_default() }
                </div>
            </div>
            { rate_line(props) }
        </div>
    }
}

/// How many messages travel, whether the drawing shows them all, and at what speed.
fn rate_line(props: &Props) -> Html {
    let lang = props.lang;
    let rate = props.messages_per_s.round() as usize;
    let drawn = props.drawn_rate;
    html! {
    <p class="rate" data-message-rate={rate.to_string()}>
        <span class="sample">{ format!("{rate} {} · ", t(lang, T::MessagesPerSecond)) }</span>
        { if drawn + 2 < rate || props.flights.list.len() >= MAX_FLIGHTS { html! { <span class="sample">{ format!("{} · ", t(lang, T::ShowingSample)) }</span> } } else { html! {} } }
        { speed_note(&props.flights, props.time_stopped, lang) }
        <span class="click">{ format!(" {}", t(lang, T::ClickAMessage)) }</span>
    </p>
    }
}

/// A halo around each side of a partition, the side named once, at its first server.
fn halos(places: &[(NodeId, f64, f64)], sides: &[Vec<NodeId>], lang: Lang) -> Html {
    let side_of =
        |id: NodeId| (sides.len() > 1).then(|| sides.iter().position(|s| s.contains(&id))).flatten();
    html! {
        <g class="sides">
            { for places.iter().filter_map(|(id, x, y)| {
                let side = side_of(*id)?;
                let letter = (b'A' + side as u8) as char;
                // The side is named once, at its first server.
                let first = sides[side].first() == Some(id);
                Some(html! {
                    <g class={format!("halo halo-{side}")} transform={format!("translate({x:.1},{y:.1})")} data-side={letter.to_string()}>
                        <circle r={(NODE_R + 30.0).to_string()} />
                        { if first { html! { <text y={(-NODE_R - 36.0).to_string()} x={(NODE_R + 14.0).to_string()}>{ format!("{} {letter}", t(lang, T::Side)) }</text> } } else { html! {} } }
                    </g>
                })
            }) }
        </g>
    }
}

/// Whether the messages on screen travel at their true speed; said only while time runs.
fn speed_note(flights: &Flights, time_stopped: bool, lang: Lang) -> Html {
    if flights.list.is_empty() || time_stopped {
        return html! {};
    }
    let true_speed = flights.true_to_time();
    let (class, key) = if true_speed { ("true", T::TrueSpeed) } else { ("impression", T::NotToScale) };
    html! { <span class={classes!("speed-note", class)} data-true-speed={true_speed.to_string()}>{ t(lang, key) }</span> }
}

/// A line between every two servers: cut both ways (a partition) dashed, cut one way with an
/// arrow and a cross on the way that is lost.
fn links(servers: &Nodes, places: &[(NodeId, f64, f64)], lang: Lang) -> Html {
    let pairs = places
        .iter()
        .enumerate()
        .flat_map(|(i, a)| places.iter().skip(i + 1).map(move |b| (*a, *b)))
        .map(|((a, ax, ay), (b, bx, by))| {
            let (ab, ba) = (servers.blocked(a, b), servers.blocked(b, a));
            let line = html! {
                <line class={classes!("link", (ab && ba).then_some("cut"), (ab != ba).then_some("one-way"))}
                    x1={ax.to_string()} y1={ay.to_string()} x2={bx.to_string()} y2={by.to_string()} />
            };
            let arrow = (ab != ba).then(|| {
                // Points from the sender whose messages are lost towards the receiver.
                let (from, (fx, fy), (tx, ty)) = if ab { (a, (ax, ay), (bx, by)) } else { (b, (bx, by), (ax, ay)) };
                let to = if ab { b } else { a };
                let (mx, my) = ((fx + tx) / 2.0, (fy + ty) / 2.0);
                let angle = (ty - fy).atan2(tx - fx).to_degrees();
                html! {
                    <g class="blocked" transform={format!("translate({mx:.1},{my:.1}) rotate({angle:.1})")}
                        data-blocked={format!("{from}-{to}")}>
                        <title>{ format!("{from} → {to}: {}", t(lang, T::OneWayBlocked)) }</title>
                        <polygon points="-14,-9 8,0 -14,9" />
                        <text x="-3" y="-12" transform={format!("rotate({:.1} -3 -12)", -angle)}>{ "✕" }</text>
                    </g>
                }
            });
            html! { <>{ line }{ arrow.unwrap_or_default() }</> }
        });
    html! { <g class="links">{ for pairs }</g> }
}

fn node(n: &NodeModel, (x, y): (f64, f64), now: f64, props: &Props, leader: Option<NodeId>) -> Html {
    let lang = props.lang;
    let state = n.process.unwrap_or(if n.reachable { ProcessState::Up } else { ProcessState::Unreachable });
    let down = matches!(state, ProcessState::Crashed | ProcessState::Unreachable);
    let role = if down { None } else { n.role };
    let role_attr = role.map_or("unknown", role_key);
    let shape = shape(role);
    let ring = n.timer.filter(|_| !down).map(|timer| timer_ring(timer, now));
    let learner = props.learners.contains(&n.id);
    let label = label(role, learner, state, lang);
    let badges = badges(n, role, state);
    let campaigning = matches!(role, Some(Role::Candidate | Role::PreCandidate));
    let votes = campaigning.then(|| votes_drawn(n, lang));
    let vote = n.voted_for.map_or(String::new(), |v| format!("{} {v}", t(lang, T::VotedFor)));
    let classes = classes!(
        "node",
        format!("role-{role_attr}"),
        format!("state-{}", state.as_str()),
        (props.selected == Some(n.id)).then_some("selected"),
        props.partition.contains(&n.id).then_some("picked"),
        n.partitioned.then_some("partitioned"),
        n.clock_stopped.then_some("clock-stopped"),
        learner.then_some("learner"),
    );
    let id = n.id;
    let (onclick, oncontextmenu, onkeydown) = node_handlers(id, &props.dispatch);
    let aria = format!(
        "{} {id}: {label}{}",
        t(lang, T::Node),
        if role.is_some() { format!(", {} {}", t(lang, T::Term), n.term) } else { String::new() }
    );
    let is_leader = leader == Some(id);
    html! {
        <g class={classes} transform={format!("translate({x:.1},{y:.1})")} tabindex="0" role="button" aria-label={aria}
            aria-haspopup="menu" data-node-id={id.to_string()} data-role={role_attr} data-term={n.term.to_string()}
            data-state={state.as_str()} data-partitioned={n.partitioned.to_string()} data-leader={is_leader.to_string()}
            data-commit={n.commit.to_string()} data-last-index={n.last_index.to_string()}
            data-member={if learner { "learner" } else { "voter" }}
            {onclick} {oncontextmenu} {onkeydown}>
            <title>{ tooltip(n, lang) }</title>
            // One group to scale up in presentation mode.
            <g class="body">
            { ring.unwrap_or_default() }
            { shape }
            <text class="name" y="-12">{ format!("{} {id}", t(lang, T::Node)) }</text>
            <text class="role" y="9">{ label }</text>
            // A server that cannot be heard from has no term we could vouch for.
            <text class="term" y="28">{ if role.is_none() { String::new() } else { format!("{} {}", t(lang, T::Term), n.term) } }</text>
            { if campaigning { votes.unwrap_or_default() } else {
                html! { <text class="vote" y={(NODE_R + 28.0).to_string()}>{ if role.is_none() { String::new() } else { vote } }</text> }
            } }
            <text class="badges" y={(-NODE_R - 18.0).to_string()}>{ badges }</text>
            { hosted_problem(n, lang) }
            </g>
        </g>
    }
}

/// What a hosted node (`--server-cmd`) got wrong, under it: no `init_ok` yet, or lines
/// Consenso could not read (the last one said on hover).
fn hosted_problem(n: &NodeModel, lang: Lang) -> Html {
    let Some(hosted) = n.hosted.as_ref().filter(|_| n.process == Some(ProcessState::Up)) else {
        return html! {};
    };
    let (text, detail) = if !hosted.ready {
        let why = hosted.last_problem.clone().map_or(String::new(), |p| format!(" ({p})"));
        (t(lang, T::NodeNotReady).to_string(), format!("{}{why}", t(lang, T::NodeNotReadyDetail)))
    } else if hosted.bad_lines > 0 {
        (
            format!("{} {}", t(lang, T::NodeBadLines), hosted.bad_lines),
            hosted.last_problem.clone().unwrap_or_default(),
        )
    } else {
        return html! {};
    };
    html! {
        <text class="node-problem" y={(NODE_R + 46.0).to_string()} data-node-problem={detail.clone()}>
            <title>{ detail }</title>{ text }
        </text>
    }
}

/// The form says the role without colour: a hexagon leads, a diamond campaigns, a circle follows.
fn shape(role: Option<Role>) -> Html {
    match role {
        Some(Role::Leader) => html! { <polygon class="shape" points={polygon(6, NODE_R, 0.0)} /> },
        Some(Role::Candidate | Role::PreCandidate) => {
            html! { <polygon class="shape" points={polygon(4, NODE_R * 1.3, 0.0)} /> }
        }
        _ => html! { <circle class="shape" r={NODE_R.to_string()} /> },
    }
}

/// The role in words (a learner says so), or the process state when it cannot be heard.
fn label(role: Option<Role>, learner: bool, state: ProcessState, lang: Lang) -> String {
    match role {
        Some(_) if learner => t(lang, T::Learner).to_string(),
        Some(r) => {
            let name = role_name(r, lang);
            if r == Role::Leader { name.to_uppercase() } else { name.to_string() }
        }
        None => process(lang, state).to_string(),
    }
}

/// Paused, crashed, unheard of, cut off, leading: at a glance above the server.
fn badges(n: &NodeModel, role: Option<Role>, state: ProcessState) -> String {
    [
        (state == ProcessState::Paused, "❚❚"),
        (state == ProcessState::Crashed, "✖"),
        (state == ProcessState::Unreachable, "?"),
        (n.partitioned, "✂"),
        (role == Some(Role::Leader), "★"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, s)| *s)
    .collect()
}

/// The election timer as a ring that empties toward the timeout.
fn timer_ring(timer: Timer, now: f64) -> Html {
    let left = timer.left(now);
    let r = NODE_R + 10.0;
    let circumference = std::f64::consts::TAU * r;
    html! {
        <circle class={classes!("timer", timer.frozen.is_some().then_some("frozen"))} r={r.to_string()} transform="rotate(-90)"
            stroke-dasharray={format!("{:.1} {:.1}", circumference * left, circumference)}
            data-timer-left={format!("{left:.2}")} />
    }
}

/// A campaigning server's votes so far: "2/3 votes" and a pip per answer.
fn votes_drawn(n: &NodeModel, lang: Lang) -> Html {
    let granted = n.votes_granted();
    let needed = n.votes_needed.max(1);
    html! {
        <g class="votes" data-votes-granted={granted.to_string()} data-votes-needed={needed.to_string()}>
            <text y={(NODE_R + 30.0).to_string()}>{ format!("{granted} {} {needed} {}", t(lang, T::VotesOf), t(lang, T::VotesNeeded)) }</text>
            { for n.votes.iter().enumerate().map(|(i, (voter, yes))| {
                let dx = (i as f64 - (n.votes.len() as f64 - 1.0) / 2.0) * 17.0;
                html! { <g class={classes!("pip", if *yes { "yes" } else { "no" })} transform={format!("translate({dx:.1},{:.1})", NODE_R + 44.0)}>
                    <title>{ format!("{} {voter}: {}", t(lang, T::Node), if *yes { "✓" } else { "✗" }) }</title>
                    <circle r="7" /><text y="4">{ if *yes { "✓" } else { "✗" } }</text>
                </g> }
            }) }
        </g>
    }
}

/// A click selects the server; a right click, Enter or Space opens its menu.
fn node_handlers(
    id: NodeId,
    dispatch: &Callback<UiAction>,
) -> (Callback<MouseEvent>, Callback<MouseEvent>, Callback<KeyboardEvent>) {
    let onclick = {
        let d = dispatch.clone();
        Callback::from(move |e: MouseEvent| {
            e.stop_propagation();
            d.emit(UiAction::Select(Some(id)));
        })
    };
    let oncontextmenu = {
        let d = dispatch.clone();
        Callback::from(move |e: MouseEvent| {
            e.prevent_default();
            e.stop_propagation();
            d.emit(UiAction::OpenMenu(id));
        })
    };
    let onkeydown = {
        let d = dispatch.clone();
        Callback::from(move |e: KeyboardEvent| {
            // Enter; Space belongs to time (see `app::listen_to_keys`).
            if e.key() == "Enter" {
                e.prevent_default();
                e.stop_propagation();
                d.emit(UiAction::OpenMenu(id));
            }
        })
    };
    (onclick, oncontextmenu, onkeydown)
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
    let place = format!("left:{:.1}%;top:{:.1}%", x / SIZE * 100.0, y / SIZE * 100.0);
    let onkeydown = {
        let d = dispatch.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" {
                e.stop_propagation();
                d.emit(UiAction::CloseMenu);
            }
        })
    };
    if !is_admin {
        return html! {
            <div class="menu" style={place} role="menu" {onkeydown}>
                <p>{ t(lang, T::ViewOnly) }</p>
            </div>
        };
    }
    let state = n.process.unwrap_or(ProcessState::Up);
    let item = |label: T, command: AdminCommand, enabled: bool| {
        let (shared, dispatch) = (shared.clone(), dispatch.clone());
        let onclick = Callback::from(move |e: MouseEvent| {
            e.stop_propagation();
            shared.admin(command.clone());
            dispatch.emit(UiAction::CloseMenu);
        });
        html! { <button role="menuitem" disabled={!enabled} {onclick} data-action={format!("{label:?}").to_lowercase()}>{ t(lang, label) }</button> }
    };
    html! {
        <div class="menu" style={place} role="menu" aria-label={format!("{} {id}", t(lang, T::Node))} {onkeydown}
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
