//! The top bar: connection, leader and term at a glance (and any deposed leader that does not
//! know it yet), freeze and scrub, language, presentation mode, help.

use shared::raft::{NodeId, Term};
use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, t};
use crate::store::Link;
use crate::ui::UiAction;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub presentation: bool,
    pub link: Link,
    pub admin: bool,
    pub leader: Option<NodeId>,
    pub term: Term,
    /// The command every server runs, when they are a student's own node (`--server-cmd`).
    pub hosted: Option<String>,
    /// Servers that still believe they lead an older term.
    pub deposed: Vec<(NodeId, Term)>,
    pub frozen: Option<f64>,
    pub live_now: f64,
    pub earliest: f64,
    pub dispatch: Callback<UiAction>,
}

#[function_component]
pub fn Header(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    let on_file = {
        let shared = shared.clone();
        Callback::from(move |e: Event| {
            let input: web_sys::HtmlInputElement = e.target_unchecked_into();
            if let Some(file) = input.files().and_then(|f| f.get(0)) {
                shared.open_file(file);
            }
        })
    };
    let (leader, term, deposed) = (props.leader, props.term, &props.deposed);
    let leader_text = leader.map_or(t(lang, T::NoLeader).to_string(), |l| {
        format!("{} {} {l}", t(lang, T::Leader), t(lang, T::Node))
    });
    let set_lang = |l: Lang| {
        let d = props.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.emit(UiAction::SetLang(l)))
    };
    let emit = |action: fn() -> UiAction| {
        let d = props.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.emit(action()))
    };
    html! {
        <header>
            <h1>{ "Consenso" }<small>{ t(lang, T::Tagline) }</small></h1>
            { link(props) }
            <label class="open-recording" title={t(lang, T::DropRecording)}>
                { t(lang, T::OpenRecording) }
                <input type="file" accept=".rec,.jsonl,.json,.txt" data-action="open-recording" onchange={on_file} />
            </label>
            <span class="summary" data-leader={leader.map_or(String::new(), |l| l.to_string())}>
                { format!("{leader_text} · {} {term}", t(lang, T::Term)) }
            </span>
            { for props.hosted.iter().map(|command| html! {
                <span class="hosted" data-hosted={command.clone()} title={command.clone()}>
                    { format!("{} {}", t(lang, T::YourNode), short_command(command)) }
                </span>
            }) }
            { for deposed.iter().map(|(node, old)| html! {
                <span class="deposed" data-deposed={node.to_string()}>
                    { format!("⚠ {} {node} {} {old} ({})", t(lang, T::Node), t(lang, T::StillLeads), t(lang, T::Deposed)) }
                </span>
            }) }
            { time_travel(props, &shared) }
            <span class="toggles">
                <button class={classes!((lang == Lang::En).then_some("on"))} onclick={set_lang(Lang::En)} lang="en" aria-pressed={(lang == Lang::En).to_string()}>{ "EN" }</button>
                <button class={classes!((lang == Lang::Es).then_some("on"))} onclick={set_lang(Lang::Es)} lang="es" aria-pressed={(lang == Lang::Es).to_string()}>{ "ES" }</button>
                <button class={classes!(props.presentation.then_some("on"))} onclick={emit(|| UiAction::TogglePresentation)}
                    data-action="presentation" aria-pressed={props.presentation.to_string()}>{ t(lang, T::Presentation) }</button>
                <button onclick={emit(|| UiAction::ToggleHelp)} data-action="help" aria-label={t(lang, T::Shortcuts)} title={t(lang, T::Shortcuts)}>{ "?" }</button>
            </span>
        </header>
    }
}

/// A node's command as a class reads it: the program's file name, not its whole path.
fn short_command(command: &str) -> String {
    command
        .split_whitespace()
        .map(|word| word.rsplit('/').next().unwrap_or(word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The connection, and when no proxy answers, the way to a simulated cluster instead.
fn link(props: &Props) -> Html {
    let lang = props.lang;
    let (link_text, link_class) = match &props.link {
        Link::Connecting => (t(lang, T::Connecting).to_string(), "connecting"),
        Link::Connected { proxy } => (format!("{} {proxy}", t(lang, T::ConnectedTo)), "connected"),
        Link::Reconnecting { attempt } => {
            (format!("{} ({attempt})", t(lang, T::Reconnecting)), "reconnecting")
        }
        Link::Simulated { seed } => (format!("{} {seed}", t(lang, T::SimulatedHere)), "simulated"),
        Link::Failed { reason } => (reason.clone(), "failed"),
        Link::Replay { name } => (format!("{} {name}", t(lang, T::Replaying)), "replay"),
    };
    // With no proxy to talk to (a static copy of the page, a cluster that is down), offer the
    // simulated cluster rather than a spinner.
    let offer_simulation = matches!(props.link, Link::Reconnecting { attempt } if attempt >= 2).then(|| {
        html! {
            <a class="run-simulation" data-action="simulate" href={crate::simulated::simulation_url()}>
                { t(lang, T::RunSimulation) }
            </a>
        }
    });
    html! { <>
        <span class={classes!("link", link_class)} data-link={link_class} data-admin={props.admin.to_string()}>{ link_text }</span>
        { for offer_simulation }
    </> }
}

/// Freeze the view, scrub back, come back live.
fn time_travel(props: &Props, shared: &Shared) -> Html {
    let lang = props.lang;
    let freeze = {
        let shared = shared.clone();
        let frozen = props.frozen.is_some();
        Callback::from(move |_: MouseEvent| if frozen { shared.go_live() } else { shared.freeze(None) })
    };
    let scrub = {
        let shared = shared.clone();
        Callback::from(move |e: InputEvent| {
            let input: web_sys::HtmlInputElement = e.target_unchecked_into();
            let at = input.value().parse::<f64>().unwrap_or(0.0);
            shared.freeze(Some(at));
        })
    };
    html! {
        <span class="time-travel">
            <button onclick={freeze} data-action="freeze">{ if props.frozen.is_some() { t(lang, T::Live) } else { t(lang, T::Freeze) } }</button>
            { match props.frozen {
                Some(at) => html! {
                    <>
                        <input type="range" min={props.earliest.to_string()} max={props.live_now.to_string()} step="50"
                            value={at.to_string()} oninput={scrub} aria-label="scrub" />
                        <span class="frozen-at">{ format!("{} −{:.1} s", t(lang, T::FrozenAt), (props.live_now - at) / 1000.0) }</span>
                    </>
                },
                None => html! {},
            } }
        </span>
    }
}
