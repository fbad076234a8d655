//! Time in the cluster, above the drawing: stop and run it (Space), step one message or one
//! timer (→), slow it down, and set the network's latency. These act on the real processes;
//! viewers see the state only.

use shared::protocol::{AdminCommand, TimeStatus};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, t};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub admin: bool,
    pub frozen: bool,
    pub time: TimeStatus,
    pub scale: f64,
}

/// The time scale slider is logarithmic: 0 → ×1, 100 → ×100.
fn scale_of(slider: f64) -> f64 {
    (10f64.powf(slider / 50.0) * 10.0).round() / 10.0
}

fn slider_of(scale: f64) -> f64 {
    scale.max(1.0).log10() * 50.0
}

#[function_component]
pub fn TimeBar(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    let (time, scale) = (&props.time, props.scale);
    let send = |command: AdminCommand| {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.admin(command.clone()))
    };
    let state = if time.stopped {
        html! { <span class="time-state stopped" data-time="stopped">{ format!("{} · {} {}", t(lang, T::TimeStopped), time.held, t(lang, T::HeldMessages)) }</span> }
    } else {
        html! { <span class="time-state" data-time="running">{ format!("{} ×{scale}", t(lang, T::TimeRuns)) }</span> }
    };
    if !props.admin {
        return html! { <div class="time-bar viewer">{ state }</div> };
    }
    let on_scale = {
        let shared = shared.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let scale = scale_of(input.value().parse().unwrap_or(0.0));
            shared.admin(AdminCommand::TimeScale { scale });
        })
    };
    let on_latency = {
        let shared = shared.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let ms = input.value().parse::<u64>().ok();
            shared.admin(AdminCommand::Latency { ms, jitter_ms: None });
        })
    };
    let auto_latency = send(AdminCommand::Latency { ms: None, jitter_ms: None });
    let (toggle, toggle_label, action) = if time.stopped {
        (AdminCommand::StartTime, T::RunTime, "play")
    } else {
        (AdminCommand::StopTime, T::StopTime, "pause")
    };
    html! {
        <div class={classes!("time-bar", time.stopped.then_some("stopped"))}>
            <button class="play" data-action={action} onclick={send(toggle)} title="Space" aria-keyshortcuts="Space">{ t(lang, toggle_label) }</button>
            <button class="step" data-action="step" onclick={send(AdminCommand::Step { count: 1 })} title="→" aria-keyshortcuts="ArrowRight">{ t(lang, T::Step) }</button>
            { state }
            <label class="slider">{ format!("{} ×{scale}", t(lang, T::TimeScale)) }
                <input type="range" min="0" max="100" step="1" value={slider_of(scale).round().to_string()}
                    onchange={on_scale} data-control="time-scale" aria-label={t(lang, T::TimeScale)} />
            </label>
            <label class="slider">
                { format!("{} {} ms{}", t(lang, T::Latency), time.latency_ms, if time.latency_auto { format!(" ({})", t(lang, T::LatencyAuto)) } else { String::new() }) }
                <input type="range" min="0" max="100" step="5" value={time.latency_ms.to_string()}
                    onchange={on_latency} data-control="latency" aria-label={t(lang, T::Latency)} />
            </label>
            <button class="auto" onclick={auto_latency} data-action="latency-auto" disabled={time.latency_auto}>{ t(lang, T::LatencyAuto) }</button>
            { if props.frozen { html! { <span class="frozen-note">{ t(lang, T::FrozenActsLive) }</span> } } else { html! {} } }
        </div>
    }
}
