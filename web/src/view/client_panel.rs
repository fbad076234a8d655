//! Reads and writes from the page: put, get, delete, compare-and-swap; for reads, the
//! consistency to ask for, and which server answered.

use shared::event::Consistency;
use shared::protocol::{ClientFrame, OpResult, ProxyFrame};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, error, t};
use crate::store::RequestRecord;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub version: u64,
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
        ProxyFrame::AdminDone { message, .. } => (format!("{message}{latency}"), "ok"),
        ProxyFrame::Error { error: e, .. } => (error(lang, e.kind, &e.message), "error"),
        _ => (String::new(), "pending"),
    }
}

#[function_component]
pub fn ClientPanel(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    let key = use_node_ref();
    let value = use_node_ref();
    let expected = use_node_ref();
    let consistency = use_state(|| Consistency::Linearizable);
    let read = |r: &NodeRef| r.cast::<HtmlInputElement>().map(|i| i.value()).unwrap_or_default();

    let op = |which: &'static str| {
        let (shared, key, value, expected, consistency) =
            (shared.clone(), key.clone(), value.clone(), expected.clone(), *consistency);
        Callback::from(move |e: MouseEvent| {
            e.prevent_default();
            let k = read(&key);
            if k.is_empty() {
                return;
            }
            let (v, x) = (read(&value), read(&expected));
            match which {
                "put" => shared.request(format!("put {k} = {v}"), |id| ClientFrame::Put {
                    id,
                    key: k.clone(),
                    value: v,
                    session: None,
                }),
                "get" => shared.request(format!("get {k} ({consistency})"), |id| ClientFrame::Get {
                    id,
                    key: k.clone(),
                    consistency,
                }),
                "delete" => shared.request(format!("delete {k}"), |id| ClientFrame::Delete {
                    id,
                    key: k.clone(),
                    session: None,
                }),
                _ => {
                    let expected = (!x.is_empty()).then_some(x);
                    let shown = expected.clone().unwrap_or_else(|| "∅".into());
                    shared.request(format!("cas {k}: {shown} → {v}"), |id| ClientFrame::Cas {
                        id,
                        key: k.clone(),
                        expected,
                        new: v,
                        session: None,
                    })
                }
            }
        })
    };
    let on_consistency = {
        let consistency = consistency.clone();
        Callback::from(move |e: Event| {
            let select: web_sys::HtmlSelectElement = e.target_unchecked_into();
            if let Ok(c) = select.value().parse() {
                consistency.set(c);
            }
        })
    };
    let store = shared.store.borrow();
    html! {
        <div class="client-panel">
            <h2>{ t(lang, T::Client) }</h2>
            <form class="client-form" onsubmit={Callback::from(|e: SubmitEvent| e.prevent_default())}>
                <input ref={key.clone()} name="key" placeholder={t(lang, T::Key)} value="x" aria-label={t(lang, T::Key)} />
                <input ref={value.clone()} name="value" placeholder={t(lang, T::Value)} value="1" aria-label={t(lang, T::Value)} />
                <input ref={expected.clone()} name="expected" placeholder={t(lang, T::Expected)} title={t(lang, T::ExpectedAbsent)} aria-label={t(lang, T::Expected)} />
                <div class="buttons">
                    <button data-op="put" onclick={op("put")}>{ t(lang, T::Put) }</button>
                    <button data-op="get" onclick={op("get")}>{ t(lang, T::Get) }</button>
                    <button data-op="delete" onclick={op("delete")}>{ t(lang, T::Delete) }</button>
                    <button data-op="cas" onclick={op("cas")}>{ t(lang, T::Cas) }</button>
                </div>
                <select name="consistency" onchange={on_consistency} aria-label="consistency">
                    <option value="linearizable" selected={*consistency == Consistency::Linearizable}>{ t(lang, T::Linearizable) }</option>
                    <option value="stale" selected={*consistency == Consistency::Stale}>{ t(lang, T::Stale) }</option>
                    <option value="leader" selected={*consistency == Consistency::Leader}>{ t(lang, T::LeaderRead) }</option>
                </select>
            </form>
            <ul class="results">
                { for store.requests.iter().map(|r| {
                    let (text, class) = describe_outcome(lang, r);
                    html! { <li class={class} data-request={r.id.to_string()}><code>{ &r.what }</code>{ " → " }{ text }</li> }
                }) }
            </ul>
        </div>
    }
}
