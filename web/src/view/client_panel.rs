//! Reads and writes from the page: put, get, delete, compare-and-swap; for reads, the
//! consistency to ask for, and which server answered.

use std::collections::VecDeque;

use shared::event::Consistency;
use shared::protocol::{ClientFrame, OpResult, ProxyFrame};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, error, request, t};
use crate::store::{Part, RequestRecord};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    /// This page's recent requests and what came of them, newest first.
    pub requests: Part<VecDeque<RequestRecord>>,
    /// Admin, or the lecturer opened writes to everyone.
    pub may_write: bool,
}

fn describe_outcome(lang: Lang, r: &RequestRecord) -> (String, &'static str) {
    let es = lang == Lang::Es;
    let Some(outcome) = &r.outcome else { return (t(lang, T::Waiting).to_string(), "pending") };
    let latency = r.latency_ms.map_or(String::new(), |ms| format!(" · {ms:.0} ms"));
    match outcome {
        ProxyFrame::Done { result, served_by, index, retries, .. } => {
            let what = match result {
                OpResult::Put { .. } => "OK".to_string(),
                OpResult::Get { value: Some(v) } => format!("= {v}"),
                OpResult::Get { value: None } => {
                    if es {
                        "= (no existe)".into()
                    } else {
                        "= (absent)".into()
                    }
                }
                OpResult::Delete { existed: true } => {
                    if es {
                        "borrada".into()
                    } else {
                        "deleted".into()
                    }
                }
                OpResult::Delete { existed: false } => {
                    if es {
                        "no existía".into()
                    } else {
                        "was absent".into()
                    }
                }
                OpResult::Cas { swapped: true, .. } => {
                    if es {
                        "intercambiado".into()
                    } else {
                        "swapped".into()
                    }
                }
                OpResult::Cas { swapped: false, current } => {
                    let c = current.clone().unwrap_or_else(|| "∅".into());
                    if es {
                        format!("no intercambiado: vale {c}")
                    } else {
                        format!("not swapped: the value is {c}")
                    }
                }
            };
            let retried =
                if *retries > 0 { format!(" · {retries} {}", t(lang, T::Retries)) } else { String::new() };
            (
                format!(
                    "{what} — {} {served_by}, {} {index}{retried}{latency}",
                    t(lang, T::ServedBy),
                    t(lang, T::AtIndex)
                ),
                "ok",
            )
        }
        // The proxy's own words are English: in Spanish only "hecho" shows (the command, before
        // it, is in Spanish already); the English stays available on hover.
        ProxyFrame::AdminDone { .. } if es => (format!("{}{latency}", t(lang, T::Done)), "ok"),
        ProxyFrame::AdminDone { message, .. } => (format!("{message}{latency}"), "ok"),
        ProxyFrame::Error { error: e, .. } => (error(lang, e.kind, &e.message), "error"),
        _ => (String::new(), "pending"),
    }
}

/// What the form holds: kept across redraws, requests and language changes.
#[derive(Clone, PartialEq)]
struct Form {
    key: String,
    value: String,
    expected: String,
    consistency: Consistency,
}

#[function_component]
pub fn ClientPanel(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    let form = use_state(|| Form {
        key: "x".into(),
        value: "1".into(),
        expected: String::new(),
        consistency: Consistency::Linearizable,
    });
    let edit = |field: fn(&mut Form, String)| {
        let form = form.clone();
        Callback::from(move |e: InputEvent| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let mut next = (*form).clone();
            field(&mut next, input.value());
            form.set(next);
        })
    };
    let op = |which: &'static str| {
        let (shared, form) = (shared.clone(), (*form).clone());
        Callback::from(move |e: MouseEvent| {
            e.prevent_default();
            send(&shared, which, form.clone());
        })
    };
    let on_consistency = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let select: web_sys::HtmlSelectElement = e.target_unchecked_into();
            if let Ok(c) = select.value().parse() {
                let mut next = (*form).clone();
                next.consistency = c;
                form.set(next);
            }
        })
    };
    let f = &*form;
    html! {
        <div class="client-panel">
            <h2>{ t(lang, T::Client) }</h2>
            <form class="client-form" onsubmit={Callback::from(|e: SubmitEvent| e.prevent_default())}>
                <input name="key" placeholder={t(lang, T::Key)} value={f.key.clone()} oninput={edit(|f, v| f.key = v)} aria-label={t(lang, T::Key)} />
                <input name="value" placeholder={t(lang, T::Value)} value={f.value.clone()} oninput={edit(|f, v| f.value = v)} aria-label={t(lang, T::Value)} />
                <input name="expected" placeholder={t(lang, T::Expected)} title={t(lang, T::ExpectedAbsent)} value={f.expected.clone()}
                    oninput={edit(|f, v| f.expected = v)} aria-label={t(lang, T::Expected)} />
                <div class="buttons">
                    <button data-op="put" onclick={op("put")} disabled={!props.may_write}>{ t(lang, T::Put) }</button>
                    <button data-op="get" onclick={op("get")}>{ t(lang, T::Get) }</button>
                    <button data-op="delete" onclick={op("delete")} disabled={!props.may_write}>{ t(lang, T::Delete) }</button>
                    <button data-op="cas" onclick={op("cas")} disabled={!props.may_write}>{ t(lang, T::Cas) }</button>
                </div>
                if !props.may_write {
                    <p class="writes-closed" data-writes="closed">{ t(lang, T::WritesClosed) }</p>
                }
                <select name="consistency" onchange={on_consistency} aria-label="consistency">
                    <option value="linearizable" selected={f.consistency == Consistency::Linearizable}>{ t(lang, T::Linearizable) }</option>
                    <option value="stale" selected={f.consistency == Consistency::Stale}>{ t(lang, T::Stale) }</option>
                    <option value="leader" selected={f.consistency == Consistency::Leader}>{ t(lang, T::LeaderRead) }</option>
                </select>
            </form>
            { results(lang, &props.requests) }
        </div>
    }
}

/// Sends the operation `which` with what the form holds (nothing without a key).
fn send(shared: &Shared, which: &str, form: Form) {
    let Form { key, value, expected, consistency } = form;
    if key.is_empty() {
        return;
    }
    match which {
        "put" => shared.request(|id| ClientFrame::Put { id, key, value, session: None }),
        "get" => shared.request(|id| ClientFrame::Get { id, key, consistency }),
        "delete" => shared.request(|id| ClientFrame::Delete { id, key, session: None }),
        _ => {
            let expected = (!expected.is_empty()).then_some(expected);
            shared.request(|id| ClientFrame::Cas { id, key, expected, new: value, session: None })
        }
    }
}

/// This page's requests, newest first, and what came of them.
fn results(lang: Lang, requests: &VecDeque<RequestRecord>) -> Html {
    html! {
    <ul class="results">
        { for requests.iter().map(|r| {
            let (text, class) = describe_outcome(lang, r);
            // The proxy's own words (English) stay available on hover.
            let detail = match &r.outcome {
                Some(ProxyFrame::AdminDone { message, .. }) => message.clone(),
                Some(ProxyFrame::Error { error, .. }) => error.to_string(),
                _ => String::new(),
            };
            html! { <li class={class} data-request={r.id.to_string()} title={detail}><code>{ request(lang, &r.frame) }</code>{ " → " }{ text }</li> }
        }) }
    </ul>
    }
}
