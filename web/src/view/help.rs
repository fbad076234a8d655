//! The `?` overlay: every keyboard shortcut.

use yew::prelude::*;

use crate::i18n::{Lang, T, t};
use crate::ui::UiAction;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub dispatch: Callback<UiAction>,
}

#[function_component]
pub fn Help(props: &Props) -> Html {
    let lang = props.lang;
    let close = {
        let d = props.dispatch.clone();
        Callback::from(move |_: MouseEvent| d.emit(UiAction::ToggleHelp))
    };
    let keys = [
        ("Space", T::KeySpace),
        ("→", T::KeyRight),
        ("N", T::KeyNext),
        ("Tab, Enter", T::KeyEnter),
        ("Esc", T::KeyEscape),
        ("P", T::KeyPresent),
        ("?", T::KeyHelp),
    ];
    html! {
        <div class="help" role="dialog" aria-modal="true" aria-label={t(lang, T::Shortcuts)} data-help="open" onclick={close.clone()}>
            <div class="help-box" onclick={Callback::from(|e: MouseEvent| e.stop_propagation())}>
                <h2>{ t(lang, T::Shortcuts) }</h2>
                <dl>
                    { for keys.iter().map(|(k, what)| html! { <><dt><kbd>{ *k }</kbd></dt><dd>{ t(lang, *what) }</dd></> }) }
                </dl>
                <button onclick={close} data-action="close-help">{ t(lang, T::Close) }</button>
            </div>
        </div>
    }
}
