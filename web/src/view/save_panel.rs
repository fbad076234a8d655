//! Saving what happened, for slides and lecture notes: the last minutes as a recording (to
//! replay here or draw with `consenso diagram`), and the last seconds as a space-time diagram
//! (SVG) or in words. A live cluster's come from its proxy (links; the lecturer's token); a
//! simulated cluster's and a replay's are made in the page.

use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, t};

/// What to save.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Save {
    Recording {
        minutes: f64,
    },
    /// `heartbeats`: draw routine heartbeats and acknowledgements too (a slide leaves them out).
    Diagram {
        seconds: f64,
        words: bool,
        lang: Lang,
        heartbeats: bool,
    },
}

/// Where the page's frames come from, as far as saving goes.
#[derive(Debug, Clone, PartialEq)]
pub enum SaveFrom {
    /// A proxy (the lecturer's token fetches from it); the file it records to, if any.
    Live {
        recording: Option<String>,
    },
    Simulated,
    Replay,
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub from: SaveFrom,
}

const MINUTES: [u32; 4] = [1, 2, 5, 10];
const SECONDS: [u32; 4] = [5, 10, 30, 60];

fn picker(values: &[u32], chosen: &UseStateHandle<u32>, unit: &str, name: &'static str) -> Html {
    let on_change = {
        let chosen = chosen.clone();
        Callback::from(move |e: Event| {
            let select: web_sys::HtmlSelectElement = e.target_unchecked_into();
            chosen.set(select.value().parse().unwrap_or(5));
        })
    };
    html! {
        <select onchange={on_change} data-save={name}>
            { for values.iter().map(|v| html! { <option value={v.to_string()} selected={*v == **chosen}>{ format!("{v} {unit}") }</option> }) }
        </select>
    }
}

#[function_component]
pub fn SavePanel(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    let minutes = use_state(|| 5u32);
    let seconds = use_state(|| 10u32);
    let heartbeats = use_state(|| false);
    let recent = html! {
        <>{ t(lang, T::RecordingOfTheLast) }{ " " }{ picker(&MINUTES, &minutes, "min", "minutes") }</>
    };
    let window = match props.from {
        SaveFrom::Replay => {
            html! { <>{ t(lang, T::DiagramBefore) }{ " " }{ picker(&SECONDS, &seconds, "s", "seconds") }</> }
        }
        _ => {
            html! { <>{ t(lang, T::DiagramOfTheLast) }{ " " }{ picker(&SECONDS, &seconds, "s", "seconds") }</> }
        }
    };
    let window = {
        let (toggle, on) = (heartbeats.clone(), *heartbeats);
        let onchange = Callback::from(move |_: Event| toggle.set(!on));
        html! {
            <>{ window }{ " " }
                <label class="heartbeats"><input type="checkbox" data-save="heartbeats" checked={on} {onchange} />
                    { t(lang, T::WithHeartbeats) }</label>
            </>
        }
    };
    let choice = Choice { recent, window, minutes: *minutes, seconds: *seconds, heartbeats: *heartbeats };
    let body = match &props.from {
        SaveFrom::Live { recording } => live_saves(lang, &shared, recording.as_deref(), &choice),
        from => local_saves(lang, &shared, from, &choice),
    };
    html! {
        <div class="save-panel">
            <h2>{ t(lang, T::SaveHeading) }</h2>
            { body }
        </div>
    }
}

/// What the user picked: how many minutes of recording, how many seconds of diagram, and the
/// sentences that say so.
struct Choice {
    recent: Html,
    window: Html,
    minutes: u32,
    seconds: u32,
    heartbeats: bool,
}

/// A live cluster's are links to the proxy, which keeps the last minutes; and recording to a file.
fn live_saves(lang: Lang, shared: &Shared, recording: Option<&str>, choice: &Choice) -> Html {
    let Choice { recent, window, minutes, seconds, heartbeats } = choice;
    let heartbeats = *heartbeats;
    // Buttons, not links: a link would carry the token where the class can read it.
    let save = |what: Save| {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.save(what))
    };
    let seconds = f64::from(*seconds);
    let record = {
        let (shared, on) = (shared.clone(), recording.is_none());
        Callback::from(move |_: MouseEvent| {
            shared.admin(shared::protocol::AdminCommand::Record { on, file: None })
        })
    };
    html! {
        <>
            <p>{ recent.clone() }{ " " }
                <button data-save="recording" onclick={save(Save::Recording { minutes: f64::from(*minutes) })}>{ t(lang, T::Download) }</button>
            </p>
            <p>{ window.clone() }{ " " }
                <button data-save="diagram" onclick={save(Save::Diagram { seconds, words: false, lang, heartbeats })}>{ "SVG" }</button>
                <button data-save="words" onclick={save(Save::Diagram { seconds, words: true, lang, heartbeats })}>{ t(lang, T::InWords) }</button>
            </p>
            <p>
                <button data-action="record" data-recording={recording.is_some().to_string()} onclick={record}>
                    { if recording.is_some() { t(lang, T::StopRecording) } else { t(lang, T::RecordToFile) } }
                </button>
                { for recording.as_ref().map(|f| html! { <span class="recording-to">{ format!(" ● {} {f}", t(lang, T::RecordingTo)) }</span> }) }
            </p>
        </>
    }
}

/// A simulated cluster or a replay saves from the page itself.
fn local_saves(lang: Lang, shared: &Shared, from: &SaveFrom, choice: &Choice) -> Html {
    let Choice { recent, window, minutes, seconds, heartbeats } = choice;
    let heartbeats = *heartbeats;
    let save = |what: Save| {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.save(what))
    };
    let seconds = f64::from(*seconds);
    html! {
        <>
            { for (*from == SaveFrom::Simulated).then(|| html! {
                <p>{ recent.clone() }{ " " }
                    <button data-save="recording" onclick={save(Save::Recording { minutes: f64::from(*minutes) })}>{ t(lang, T::Download) }</button>
                </p>
            }) }
            <p>{ window.clone() }{ " " }
                <button data-save="diagram" onclick={save(Save::Diagram { seconds, words: false, lang, heartbeats })}>{ "SVG" }</button>
                <button data-save="words" onclick={save(Save::Diagram { seconds, words: true, lang, heartbeats })}>{ t(lang, T::InWords) }</button>
            </p>
        </>
    }
}
