//! What must be read from the back row: the live invariant monitor's alarms (red), the
//! deliberate defects the cluster runs with, and the caption of the lesson in progress, big.

use shared::event::Alarm;
use shared::lesson::{LessonAction, LessonStatus, Text};
use shared::protocol::AdminCommand;
use shared::raft::Bug;
use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, t};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub admin: bool,
    pub alarms: Vec<Alarm>,
    pub bugs: Vec<Bug>,
    pub lesson: Option<LessonStatus>,
}

/// An alarm in the page's language, from its parts (the monitor's own words are English).
fn alarm_text(lang: Lang, a: &Alarm) -> String {
    let nodes = a.nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
    let index = a.index.map_or(String::new(), |i| i.to_string());
    match (lang, a.index.is_some()) {
        (Lang::Es, true) => format!("nodos {nodes}, término {}, índice {index}", a.term),
        (Lang::Es, false) => format!("nodos {nodes}, término {}", a.term),
        (Lang::En, true) => format!("nodes {nodes}, term {}, index {index}", a.term),
        (Lang::En, false) => format!("nodes {nodes}, term {}", a.term),
    }
}

pub fn text(lang: Lang, text: &Text) -> String {
    if lang == Lang::Es { text.es.clone() } else { text.en.clone() }
}

#[function_component]
pub fn Banners(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lang = props.lang;
    let (alarms, bugs, lesson) = (&props.alarms, &props.bugs, props.lesson.clone());
    let alarm_lines = alarms.iter().map(|a| {
        let name = if lang == Lang::Es { a.property.name_es() } else { a.property.name() };
        let broken = if lang == Lang::Es { "se ha roto" } else { "is broken" };
        html! {
            <div class="alarm" role="alert" data-alarm={a.property.key()} title={a.detail.clone()}>
                <strong>{ format!("{} — {name} {broken}", t(lang, T::Alarm)) }</strong>
                <span>{ format!(": {}", alarm_text(lang, a)) }</span>
                <span class="rule">{ format!(" — {}", shared::event_text::property_rule(a.property, lang)) }</span>
                // What was seen, in English (the monitor's words), for whoever reads English.
                if lang == Lang::En { <span class="detail">{ format!(" — {}", a.detail) }</span> }
            </div>
        }
    });
    let defects = (!bugs.is_empty()).then(|| {
        let names: Vec<String> = bugs
            .iter()
            .map(|b| format!("{} ({})", b.name(), shared::event_text::bug_explanation(*b, lang)))
            .collect();
        html! { <div class="defects" data-bugs={bugs.iter().map(|b| b.name()).collect::<Vec<_>>().join(",")}>
            { format!("⚠ {}: {}", t(lang, T::DeliberateDefects), names.join("; ")) }
        </div> }
    });
    let caption = lesson.map(|l| {
        let shown = l.captions.last().map(|c| text(lang, c)).unwrap_or_else(|| t(lang, T::LessonRunning).to_string());
        let outcome = l.outcome.as_ref().map(|o| {
            let (class, label) = if o.passed { ("passed", T::LessonPassed) } else { ("failed", T::LessonFailed) };
            html! { <p class={classes!("outcome", class)} data-lesson-outcome={class}>{ format!("{}: {}", t(lang, label), text(lang, &o.message)) }</p> }
        });
        let next = {
            let shared = shared.clone();
            Callback::from(move |_: MouseEvent| shared.admin(AdminCommand::Lesson { action: LessonAction::Next }))
        };
        let title = text(lang, &l.title);
        html! {
            <div class="caption" data-lesson={l.name.clone()} data-step={l.captions.len().to_string()} aria-live="polite">
                <div class="caption-head">
                    <span class="lesson-title">{ format!("{title} · {}", l.captions.len()) }</span>
                    { if l.waiting && props.admin {
                        html! { <button class="next" data-action="lesson-next" onclick={next}>{ t(lang, T::Next) }</button> }
                    } else if l.waiting {
                        html! { <span class="hint">{ t(lang, T::LessonWaiting) }</span> }
                    } else { html! {} } }
                </div>
                <p class="caption-text" data-caption="true">{ shown }</p>
                { outcome.unwrap_or_default() }
            </div>
        }
    });
    html! {
        <div class="banners">
            { for alarm_lines }
            { defects.unwrap_or_default() }
            { caption.unwrap_or_default() }
        </div>
    }
}
