//! Playing a recording: play and pause, the next frame, speed, a slider over the whole run, and
//! jumps to the next election, commit or fault. Shown only while a recording plays.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, t};
use crate::replay::{Landmark, ReplayAction, SPEEDS};
use crate::store::ReplayView;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub replay: ReplayView,
}

fn clock(ms: f64) -> String {
    let s = (ms / 1000.0).max(0.0);
    format!("{}:{:04.1}", (s / 60.0).floor() as u64, s % 60.0)
}

/// The speeds offered, with the one in force (a URL may ask for any).
fn speeds(current: f64) -> Vec<f64> {
    let mut all = SPEEDS.to_vec();
    if !all.iter().any(|s| (s - current).abs() < 1e-9) {
        all.push(current);
        all.sort_by(f64::total_cmp);
    }
    all
}

#[function_component]
pub fn ReplayBar(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let (lang, r) = (props.lang, &props.replay);
    let act = |action: ReplayAction| {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.replay(action))
    };
    let on_seek = {
        let shared = shared.clone();
        Callback::from(move |e: InputEvent| {
            let input: HtmlInputElement = e.target_unchecked_into();
            shared.replay(ReplayAction::Seek(input.value().parse().unwrap_or(0.0)));
        })
    };
    let on_speed = {
        let shared = shared.clone();
        Callback::from(move |e: Event| {
            let input: web_sys::HtmlSelectElement = e.target_unchecked_into();
            shared.replay(ReplayAction::Speed(input.value().parse().unwrap_or(1.0)));
        })
    };
    let toggle = if r.playing {
        html! { <button class="play" data-replay="pause" onclick={act(ReplayAction::Pause)}>{ t(lang, T::PauseReplay) }</button> }
    } else {
        html! { <button class="play" data-replay="play" onclick={act(ReplayAction::Play)}>{ t(lang, T::Play) }</button> }
    };
    html! {
        <div class="replay-bar" data-replay-at={format!("{:.0}", r.at_ms)} data-replay-duration={format!("{:.0}", r.duration_ms)}
            data-replay-playing={r.playing.to_string()} data-replay-frame={r.frame.to_string()}>
            { toggle }
            <button data-replay="step" onclick={act(ReplayAction::Step)}>{ t(lang, T::StepFrame) }</button>
            <input type="range" class="scrub" min="0" max={format!("{:.0}", r.duration_ms)} step="10"
                value={format!("{:.0}", r.at_ms)} oninput={on_seek} aria-label="position" />
            <span class="replay-clock">{ format!("{} / {}", clock(r.at_ms), clock(r.duration_ms)) }</span>
            <label>{ t(lang, T::Speed) }
                <select onchange={on_speed} data-replay="speed">
                    { for speeds(r.speed).into_iter().map(|s| html! {
                        <option value={s.to_string()} selected={(s - r.speed).abs() < 1e-9}>{ format!("×{s}") }</option>
                    }) }
                </select>
            </label>
            <button data-replay="next-election" onclick={act(ReplayAction::Jump(Landmark::Election))}>{ format!("» {}", t(lang, T::NextElection)) }</button>
            <button data-replay="next-commit" onclick={act(ReplayAction::Jump(Landmark::Commit))}>{ format!("» {}", t(lang, T::NextCommit)) }</button>
            <button data-replay="next-fault" onclick={act(ReplayAction::Jump(Landmark::Fault))}>{ format!("» {}", t(lang, T::NextFault)) }</button>
        </div>
    }
}
