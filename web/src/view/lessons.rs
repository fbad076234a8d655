//! The Lessons panel: pick one, start it, go on with Next; the caption itself shows big above
//! the cluster (see `banners`). Viewers see which lesson runs, not the controls.

use shared::lesson::{CATALOG, LessonAction, LessonStatus};
use shared::protocol::AdminCommand;
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use crate::app::Shared;
use crate::i18n::{Lang, T, t};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub admin: bool,
    pub lesson: Option<LessonStatus>,
}

#[function_component]
pub fn LessonPanel(props: &Props) -> Html {
    let shared = use_context::<Shared>().expect("shared context");
    let lesson = &props.lesson;
    let current = lesson.as_ref().map(|l| l.name.clone());
    // The lesson on screen is the one picked: a page that opens (or changes layout) during a
    // lesson, or sees one started from another page, names it.
    let pick = use_state(|| current.clone().unwrap_or_else(|| CATALOG[0].name.to_string()));
    {
        let pick = pick.clone();
        use_effect_with(current, move |current| {
            if let Some(name) = current {
                pick.set(name.clone());
            }
        });
    }
    let lang = props.lang;
    if !props.admin {
        return html! {
            <div class="lessons viewer">
                <h2>{ t(lang, T::Lessons) }</h2>
                <p class="note">{ t(lang, T::LessonsAdminOnly) }</p>
            </div>
        };
    }
    let running = lesson.as_ref().is_some_and(|l| l.outcome.is_none());
    let waiting = lesson.as_ref().is_some_and(|l| l.waiting);
    let on_pick = {
        let pick = pick.clone();
        Callback::from(move |e: Event| {
            let select: HtmlSelectElement = e.target_unchecked_into();
            pick.set(select.value());
        })
    };
    let send = |action: LessonAction| {
        let shared = shared.clone();
        Callback::from(move |_: MouseEvent| shared.admin(AdminCommand::Lesson { action: action.clone() }))
    };
    let start = send(LessonAction::Start { name: (*pick).clone(), auto: false });
    html! {
        <div class="lessons">
            <h2>{ t(lang, T::Lessons) }</h2>
            <div class="row">
                <select onchange={on_pick} data-control="lesson" aria-label={t(lang, T::Lessons)}>
                    { for CATALOG.iter().map(|l| html! {
                        <option value={l.name} selected={*pick == l.name}>{ if lang == Lang::Es { l.title.1 } else { l.title.0 } }</option>
                    }) }
                </select>
                <button data-action="lesson-start" onclick={start}>{ t(lang, T::StartLesson) }</button>
            </div>
            <div class="row">
                <button data-action="lesson-next" class="next" disabled={!waiting} onclick={send(LessonAction::Next)} aria-keyshortcuts="N">{ t(lang, T::Next) }</button>
                // A finished lesson's caption stays until closed (or Esc).
                if running {
                    <button data-action="lesson-stop" onclick={send(LessonAction::Stop)}>{ t(lang, T::StopLesson) }</button>
                } else {
                    <button data-action="lesson-close" disabled={lesson.is_none()} onclick={send(LessonAction::Stop)}
                        aria-keyshortcuts="Escape">{ t(lang, T::CloseLesson) }</button>
                }
            </div>
        </div>
    }
}
