//! One row per server, one cell per log entry, coloured by term (with the term written in it
//! for those who cannot tell the colours apart). Committed entries are solid, uncommitted ones
//! hatched; a bar marks each server's applied index; on the leader's followers, the leader's
//! view of their match and next index. The compacted prefix is one snapshot block. Only as many
//! entries as fit the width are drawn — the newest, unless scrolled back — so long logs stay
//! smooth and the newest entry is never cut off.

use shared::raft::{NodeId, PeerProgress, Role};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use yew::prelude::*;

use crate::i18n::{Lang, T, t};
use crate::store::{NodeModel, Nodes, Part};

/// Entries shown at once before the page has measured how many fit, and the bounds.
const WINDOW: u64 = 36;
const WINDOW_MIN: u64 = 8;
const WINDOW_MAX: u64 = 120;

/// How many cells fit in the logs area, measured on the drawn page.
fn cells_that_fit(area: &web_sys::Element) -> Option<u64> {
    let cell = area.query_selector(".index-ruler .cell").ok()??.dyn_into::<web_sys::HtmlElement>().ok()?;
    let label =
        area.query_selector(".index-ruler .row-label").ok()??.dyn_into::<web_sys::HtmlElement>().ok()?;
    let cell_px = f64::from(cell.offset_width()) + 2.0;
    let free = f64::from(area.client_width()) - f64::from(label.offset_width()) - 24.0;
    (cell_px > 2.0).then(|| ((free / cell_px).floor() as u64).clamp(WINDOW_MIN, WINDOW_MAX))
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub nodes: Part<Nodes>,
    /// The mode changes cell sizes: measure again.
    pub presentation: bool,
}

/// How many cells fit: measured once drawn, and again whenever the window changes size or the
/// mode changes (measuring forces a layout: not at every redraw).
#[hook]
fn use_cells_that_fit(area: NodeRef, presentation: bool, drawn: bool) -> u64 {
    let fit = use_state(|| WINDOW);
    {
        let fit = fit.clone();
        use_effect_with((presentation, drawn), move |_| {
            let measure = move || {
                if let Some(n) = area.cast::<web_sys::Element>().and_then(|a| cells_that_fit(&a)) {
                    fit.set(n);
                }
            };
            measure();
            let on_resize = Closure::<dyn Fn()>::new(measure);
            let window = web_sys::window().expect("a window");
            let _ = window.add_event_listener_with_callback("resize", on_resize.as_ref().unchecked_ref());
            move || {
                let _ =
                    window.remove_event_listener_with_callback("resize", on_resize.as_ref().unchecked_ref());
            }
        });
    }
    *fit
}

/// One server's log from `first` to `last`: its snapshot, a mark for entries not sent to the
/// page, and a cell per entry; `p` is the leader's view of it (match and next index).
fn log_row(n: &NodeModel, p: Option<&PeerProgress>, (first, last): (u64, u64), lang: Lang) -> Html {
    let role = n.role.map_or("—".to_string(), |r| shared::event_text::role_name(r, lang).to_string());
    let snapshot = (n.log.snapshot_index >= first).then(|| html! {
        <span class="cell snapshot" title={format!("{} ≤ {} ({} {})", t(lang, T::Snapshot), n.log.snapshot_index, t(lang, T::Term), n.log.snapshot_term)}
            data-snapshot-index={n.log.snapshot_index.to_string()}>{ format!("≤{}", n.log.snapshot_index) }</span>
    });
    let earlier = (n.log.skipped > 0 && n.log.first_kept() > first).then(|| html! {
        <span class="cell earlier" title={format!("{} {}", n.log.skipped, t(lang, T::EarlierEntries))}>{ "…" }</span>
    });
    let start = first.max(n.log.first_kept());
    let cells = (start..=last).map(|index| {
        let marks = classes!(
            (index == n.applied).then_some("applied"),
            p.is_some_and(|p| p.match_index == index).then_some("match"),
            p.is_some_and(|p| p.next_index == index).then_some("next"),
        );
        match n.log.get(index) {
            Some(e) => {
                let committed = e.index <= n.commit;
                let title = format!("#{} · {} {} · {}", e.index, t(lang, T::Term), e.term, e.text);
                html! {
                    <span class={classes!("cell", format!("t{}", e.term % 8), (!committed).then_some("uncommitted"), marks)}
                        data-index={e.index.to_string()} data-term={e.term.to_string()} data-committed={committed.to_string()}
                        title={title}>{ e.term }</span>
                }
            }
            None => html! { <span class={classes!("cell", "empty", marks)}></span> },
        }
    });
    html! {
        <div class={classes!("log-row", (n.role == Some(Role::Leader)).then_some("leader"))} data-node={n.id.to_string()}>
            <span class="row-label" title={format!("{role} · {} {} · {} {}", t(lang, T::Commit), n.commit, t(lang, T::Applied), n.applied)}>
                <strong>{ format!("{} {}", t(lang, T::Node), n.id) }</strong>
                <small>{ format!(" {role} · c{} a{}", n.commit, n.applied) }</small>
            </span>
            // Cells are not keyed: a log that grows faster than the window moves every cell
            // at each redraw, and rewriting attributes in place is cheaper than replacing them.
            <span class="cells">{ for snapshot.into_iter().chain(earlier).chain(cells) }</span>
        </div>
    }
}

#[function_component]
pub fn LogsView(props: &Props) -> Html {
    // How far back from the newest entry the window is scrolled (0 = follow the tail).
    let back = use_state(|| 0u64);
    let area = use_node_ref();
    // The ruler has cells to measure once any log has an entry.
    let drawn = props.nodes.values().any(|n| n.log.last_index() > 0);
    let window = use_cells_that_fit(area.clone(), props.presentation, drawn);
    let nodes = &props.nodes;
    let lang = props.lang;
    let newest = nodes.values().map(|n| n.log.last_index()).max().unwrap_or(0);
    let oldest = nodes.values().map(|n| n.log.first_kept()).min().unwrap_or(1);
    let span = newest.saturating_sub(oldest);
    let back_by = (*back).min(span.saturating_sub(window.min(span)));
    let last = newest.saturating_sub(back_by).max(window.min(newest));
    let first = last.saturating_sub(window - 1).max(1);
    let leader = nodes.shown_leader().and_then(|l| nodes.get(&l));
    let progress_of = |id: NodeId| leader.and_then(|l| l.progress.iter().find(|p| p.id == id));

    let rows = nodes.values().map(|n| log_row(n, progress_of(n.id), (first, last), lang));
    let on_scroll = {
        let back = back.clone();
        Callback::from(move |e: InputEvent| {
            let input: web_sys::HtmlInputElement = e.target_unchecked_into();
            let value = input.value().parse::<u64>().unwrap_or(0);
            back.set(span.saturating_sub(value));
        })
    };
    html! {
        <div class="logs" ref={area}>
            <h2>{ t(lang, T::Logs) }<small>{ format!(" #{first}–{last}") }</small></h2>
            <div class="index-ruler">
                <span class="row-label"></span>
                <span class="cells">{ for (first..=last).map(|i| html! { <span class="cell ruler">{ if i % 5 == 0 { i.to_string() } else { String::new() } }</span> }) }</span>
            </div>
            { for rows }
            { if span > window {
                html! { <input type="range" class="log-scroll" min="0" max={span.to_string()} value={(span - back_by).to_string()} oninput={on_scroll} aria-label="scroll the logs" /> }
            } else { html! {} } }
            <p class="legend-line">
                <span class="cell t1">{"1"}</span>{ t(lang, T::LegendCommitted) }
                <span class="cell t1 uncommitted">{"1"}</span>{ t(lang, T::LegendUncommitted) }
                <span class="cell t1 applied">{"1"}</span>{ t(lang, T::LegendApplied) }
                <span class="cell t1 match">{"1"}</span>{ t(lang, T::LegendMatch) }
                <span class="cell t1 next">{"1"}</span>{ t(lang, T::LegendNext) }
            </p>
        </div>
    }
}
