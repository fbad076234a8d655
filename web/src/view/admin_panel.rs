//! Breaking things: per-server process faults, partitions (also one-way), message loss and
//! delay, a reset onto empty disks. Shown only with the admin token; the proxy refuses these
//! commands without it anyway. (Time — stop, step, slow motion, latency — is in the time bar.)

use std::collections::BTreeSet;

use shared::protocol::{AdminCommand, ProcessState};
use shared::raft::{NodeId, Role};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, t};
use crate::store::{Nodes, Part};
use crate::ui::UiAction;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub admin: bool,
    pub selected: Option<NodeId>,
    pub nodes: Part<Nodes>,
    /// Pages without the token may write.
    pub open_writes: bool,
    pub partition: BTreeSet<NodeId>,
    pub supervised: bool,
    /// The view shows the past: say that these act on the present.
    pub frozen: bool,
    pub dispatch: Callback<UiAction>,
}

#[function_component]
pub fn AdminPanel(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    if !props.admin {
        return html! { <TokenForm lang={lang} /> };
    }
    let send = |command: AdminCommand| {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.admin(command.clone()))
    };
    let toggle_writes = {
        let (shared, open) = (shared.clone(), props.open_writes);
        Callback::from(move |_: Event| shared.admin(AdminCommand::OpenWrites { open: !open }))
    };
    // Everything on every disk goes: asked once more, in words (a stray click in class).
    let reset = {
        let (shared, question) = (shared.clone(), t(lang, T::ConfirmReset));
        Callback::from(move |_: MouseEvent| {
            let sure = web_sys::window().and_then(|w| w.confirm_with_message(question).ok()).unwrap_or(false);
            if sure {
                shared.admin(AdminCommand::Reset);
            }
        })
    };
    let forget = {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.set_token(None))
    };
    html! {
        <div class="admin-panel">
            <h2>{ t(lang, T::Admin) }</h2>
            if props.frozen { <p class="note frozen-note">{ t(lang, T::FrozenActsLive) }</p> }
            if !props.supervised { <p class="note">{ t(lang, T::Unsupervised) }</p> }
            { node_actions(props, &shared) }
            <NetworkControls lang={lang} nodes={props.nodes.clone()} partition={props.partition.clone()}
                dispatch={props.dispatch.clone()} />
            <div class="row">
                <button data-action="snapshot" onclick={send(AdminCommand::Snapshot { node: None })}>{ t(lang, T::Snapshot2) }</button>
                <button data-action="reset" disabled={!props.supervised} onclick={reset}>{ t(lang, T::Reset) }</button>
                <button data-action="add-server" disabled={!props.supervised} onclick={send(AdminCommand::AddServer { node: None, address: None })}>{ t(lang, T::AddServer) }</button>
            </div>
            <label class="open-writes">
                <input type="checkbox" data-control="open-writes" checked={props.open_writes}
                    onchange={toggle_writes} />
                { t(lang, T::StudentsMayWrite) }
            </label>
            <button class="forget" onclick={forget}>{ t(lang, T::ForgetToken) }</button>
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct TokenProps {
    lang: Lang,
}

/// Without the token: say so, and take one.
#[function_component]
fn TokenForm(props: &TokenProps) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    let token = use_node_ref();
    let on_token = {
        let token = token.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(input) = token.cast::<HtmlInputElement>() {
                let value = input.value();
                if !value.trim().is_empty() {
                    shared.set_token(Some(value.trim().to_string()));
                }
            }
        })
    };
    html! {
        <div class="admin-panel viewer">
            <h2>{ t(lang, T::Admin) }</h2>
            <p class="note" data-viewer="true">{ t(lang, T::ViewOnly) }</p>
            <form onsubmit={on_token}>
                <input ref={token} type="password" placeholder={t(lang, T::TokenPlaceholder)} aria-label={t(lang, T::TokenPlaceholder)} />
                <button type="submit">{ t(lang, T::UseToken) }</button>
            </form>
        </div>
    }
}

/// What can be done to the selected server.
fn node_actions(props: &Props, shared: &Shared) -> Html {
    let lang = props.lang;
    let Some(n) = props.selected.and_then(|id| props.nodes.get(&id)) else {
        return html! { <p class="note">{ t(lang, T::SelectNode) }</p> };
    };
    let send = |command: AdminCommand| {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.admin(command.clone()))
    };
    let (id, supervised) = (n.id, props.supervised);
    let state = n.process.unwrap_or(ProcessState::Up);
    html! {
        <div class="node-actions" data-selected={id.to_string()}>
            <strong>{ format!("{} {id}", t(lang, T::Node)) }</strong>
            <button data-action="crash" disabled={state == ProcessState::Crashed || !supervised && state != ProcessState::Up} onclick={send(AdminCommand::Crash { node: id })}>{ t(lang, T::Crash) }</button>
            <button data-action="restart" disabled={!supervised} onclick={send(AdminCommand::Restart { node: id })}>{ t(lang, T::Restart) }</button>
            <button data-action="pause" disabled={!supervised || state != ProcessState::Up} onclick={send(AdminCommand::Pause { node: id })}>{ t(lang, T::Pause) }</button>
            <button data-action="resume" disabled={!supervised || state != ProcessState::Paused} onclick={send(AdminCommand::Resume { node: id })}>{ t(lang, T::Resume) }</button>
            <button data-action="make-leader" disabled={n.role == Some(Role::Leader) || state != ProcessState::Up} onclick={send(AdminCommand::TransferLeadership { to: id })}>{ t(lang, T::MakeLeader) }</button>
            <button data-action="isolate" onclick={send(AdminCommand::Partition { groups: vec![vec![id]] })}>{ t(lang, T::Isolate) }</button>
            <button data-action="remove-server" disabled={!supervised} onclick={send(AdminCommand::RemoveServer { node: id })}>{ t(lang, T::RemoveServer) }</button>
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct NetworkProps {
    lang: Lang,
    nodes: Part<Nodes>,
    partition: BTreeSet<NodeId>,
    dispatch: Callback<UiAction>,
}

/// The network: partitions, one-way blocks, healing, loss and delay for every server.
#[function_component]
fn NetworkControls(props: &NetworkProps) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    let block_from = use_node_ref();
    let block_to = use_node_ref();
    let ids: Vec<NodeId> = props.nodes.keys().copied().collect();
    let partition = {
        let picked: Vec<NodeId> = props.partition.iter().copied().collect();
        let (shared, dispatch) = (shared.clone(), props.dispatch.clone());
        Callback::from(move |_: MouseEvent| {
            if !picked.is_empty() {
                shared.admin(AdminCommand::Partition { groups: vec![picked.clone()] });
                dispatch.emit(UiAction::ClearPartition);
            }
        })
    };
    let block = {
        let (shared, from, to) = (shared.clone(), block_from.clone(), block_to.clone());
        Callback::from(move |_: MouseEvent| {
            let pick =
                |r: &NodeRef| r.cast::<HtmlSelectElement>().and_then(|s| s.value().parse::<NodeId>().ok());
            if let (Some(from), Some(to)) = (pick(&from), pick(&to)) {
                if from != to {
                    shared.admin(AdminCommand::Block { from, to });
                }
            }
        })
    };
    let heal = {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.admin(AdminCommand::Heal))
    };
    let options = |r: &NodeRef, first: bool| {
        html! {
            <select ref={r.clone()}>
                { for ids.iter().enumerate().map(|(i, id)| html! { <option value={id.to_string()} selected={if first { i == 0 } else { i == 1 }}>{ id.to_string() }</option> }) }
            </select>
        }
    };
    html! { <>
        <div class="partition">
            <p class="note">{ t(lang, T::PartitionHelp) }</p>
            { for ids.iter().map(|id| {
                let d = props.dispatch.clone();
                let id = *id;
                html! { <label><input type="checkbox" data-partition-pick={id.to_string()} checked={props.partition.contains(&id)}
                    onchange={Callback::from(move |_| d.emit(UiAction::TogglePartition(id)))} />{ id.to_string() }</label> }
            }) }
            <button data-action="partition" disabled={props.partition.is_empty()} onclick={partition}>{ t(lang, T::Partition) }</button>
        </div>
        <div class="block">
            { t(lang, T::BlockMessages) }{ " " }{ options(&block_from, true) }{ " → " }{ options(&block_to, false) }
            <button data-action="block" onclick={block}>{ t(lang, T::Block) }</button>
        </div>
        <button class="heal" data-action="heal" onclick={heal}>{ t(lang, T::Heal) }</button>
        { loss_and_delay(lang, &props.nodes) }
    </> }
}

fn loss_and_delay(lang: Lang, nodes: &Nodes) -> Html {
    let any = nodes.values().next();
    let (drop_rate, delay_ms) = any.map_or((0.0, 0), |n| (n.faults.drop_rate, n.faults.delay_ms));
    html! { <LossAndDelay lang={lang} drop_rate={drop_rate} delay_ms={delay_ms} /> }
}

/// Loss and delay for every server, as sliders showing the current setting. What the user set
/// shows until the cluster's status says the same: without that, the status of a moment before
/// pulled the slider back between two key presses, and steps were lost.
#[derive(Properties, PartialEq)]
struct SliderProps {
    lang: Lang,
    drop_rate: f64,
    delay_ms: u64,
}

#[function_component]
fn LossAndDelay(props: &SliderProps) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    let asked_drop = use_state(|| None::<f64>);
    let asked_delay = use_state(|| None::<u64>);
    // The cluster caught up: show what it says again.
    if asked_drop.is_some_and(|d| (d - props.drop_rate).abs() < 1e-9) {
        asked_drop.set(None);
    }
    if *asked_delay == Some(props.delay_ms) {
        asked_delay.set(None);
    }
    let drop_rate = asked_drop.unwrap_or(props.drop_rate);
    let delay = asked_delay.unwrap_or(props.delay_ms);
    let on_drop = {
        let (shared, asked) = (shared.clone(), asked_drop.clone());
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let rate = input.value().parse::<f64>().unwrap_or(0.0) / 100.0;
            asked.set(Some(rate));
            shared.admin(AdminCommand::Drop { node: None, rate });
        })
    };
    let on_delay = {
        let (shared, asked) = (shared.clone(), asked_delay.clone());
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let ms = input.value().parse().unwrap_or(0);
            asked.set(Some(ms));
            shared.admin(AdminCommand::Delay { node: None, ms });
        })
    };
    html! { <>
        <label class="slider">{ format!("{} ({}): {:.0}%", t(lang, T::DropRate), t(lang, T::AllNodes), drop_rate * 100.0) }
            <input type="range" min="0" max="50" step="5" value={(drop_rate * 100.0).round().to_string()} onchange={on_drop} data-control="drop" />
        </label>
        <label class="slider">{ format!("{} ({}): {delay} ms", t(lang, T::Delay), t(lang, T::AllNodes)) }
            <input type="range" min="0" max="500" step="25" value={delay.to_string()} onchange={on_delay} data-control="delay" />
        </label>
    </> }
}
