//! The root component: owns the store and the connection, runs the animation loop, listens to
//! the keyboard, and lays out the views. UI state (language, selection, filters, the message
//! being inspected) lives in one reducer; the streamed cluster data lives in the store, and
//! views re-render when its versions move.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;

use shared::lesson::LessonAction;
use shared::protocol::{AdminCommand, ClientFrame, ProxyFrame};
use shared::raft::{MessageId, NodeId};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use yew::prelude::*;

use crate::connection::{Connection, Source};
use crate::i18n::Lang;
use crate::store::{Link, Store};
use crate::view::{
    AdminPanel, Banners, ChartsView, ClientPanel, ClusterView, Header, Help, Inspector, KvView, Legend,
    LessonPanel, LogsView, ReplayBar, SaveFrom, SavePanel, TimeBar, TimelineFilter, TimelineView,
};

pub fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The token: only from this page's URL (`?token=…`, the admin link the cluster printed). It is
/// never remembered elsewhere, so the view-only link stays view-only in the lecturer's own
/// browser too.
fn initial_token() -> Option<String> {
    query("token").filter(|t| !t.is_empty())
}

/// Puts the token in the page's URL (or takes it out), so that a reload keeps what was typed.
fn token_in_url(token: Option<&str>) {
    let Some(window) = web_sys::window() else { return };
    let (Ok(search), Ok(path)) = (window.location().search(), window.location().pathname()) else { return };
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else { return };
    match token {
        Some(t) => params.set("token", t),
        None => params.delete("token"),
    }
    let query: String = params.to_string().into();
    let url = if query.is_empty() { path } else { format!("{path}?{query}") };
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
}

/// A query parameter of the page's URL (`?lang=es&present`).
fn query(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search).ok()?.get(name)
}

fn initial_lang() -> Lang {
    let saved =
        query("lang").or_else(|| local_storage().and_then(|s| s.get_item("consenso-lang").ok().flatten()));
    let browser = web_sys::window().and_then(|w| w.navigator().language());
    match saved.or(browser) {
        Some(l) if l.starts_with("es") => Lang::Es,
        _ => Lang::En,
    }
}

/// Everything the user changes about the view.
#[derive(Clone, PartialEq)]
pub struct Ui {
    pub lang: Lang,
    pub presentation: bool,
    pub selected: Option<NodeId>,
    /// The node whose context menu is open.
    pub menu: Option<NodeId>,
    /// Nodes ticked for a partition.
    pub partition: BTreeSet<NodeId>,
    pub filter: TimelineFilter,
    /// The message being inspected: (sender, id).
    pub message: Option<(NodeId, MessageId)>,
    pub help: bool,
}

pub enum UiAction {
    SetLang(Lang),
    TogglePresentation,
    /// Select a node (or none, by clicking the background).
    Select(Option<NodeId>),
    OpenMenu(NodeId),
    CloseMenu,
    TogglePartition(NodeId),
    ClearPartition,
    Filter(TimelineFilter),
    Inspect(Option<(NodeId, MessageId)>),
    ToggleHelp,
    /// Escape: close whatever is open.
    CloseAll,
}

impl Reducible for Ui {
    type Action = UiAction;
    fn reduce(self: Rc<Self>, action: UiAction) -> Rc<Self> {
        let mut ui = (*self).clone();
        match action {
            UiAction::SetLang(lang) => ui.lang = lang,
            UiAction::TogglePresentation => ui.presentation = !ui.presentation,
            UiAction::Select(node) => {
                ui.selected = node;
                ui.menu = None;
            }
            UiAction::OpenMenu(node) => {
                ui.selected = Some(node);
                ui.menu = Some(node);
            }
            UiAction::CloseMenu => ui.menu = None,
            UiAction::TogglePartition(node) => {
                if !ui.partition.remove(&node) {
                    ui.partition.insert(node);
                }
            }
            UiAction::ClearPartition => ui.partition.clear(),
            UiAction::Filter(filter) => ui.filter = filter,
            UiAction::Inspect(message) => ui.message = message,
            UiAction::ToggleHelp => ui.help = !ui.help,
            UiAction::CloseAll => {
                ui.menu = None;
                ui.help = false;
                ui.message = None;
            }
        }
        Rc::new(ui)
    }
}

/// Lets a view's version through at most every `every` ms: a timeline or a table redrawn more
/// than ~20 times a second is unreadable anyway, and the frames are better spent on animation.
#[derive(Default)]
struct Throttle {
    shown: u64,
    at: f64,
}

impl Throttle {
    /// The version to draw now, and whether a newer one is being held back.
    fn gate(&mut self, version: u64, now: f64, every: f64) -> (u64, bool) {
        if version != self.shown && now - self.at >= every {
            self.shown = version;
            self.at = now;
        }
        (self.shown, self.shown != version)
    }
}

/// What every view may use: the store, and a way to send requests.
#[derive(Clone)]
pub struct Shared {
    pub store: Rc<RefCell<Store>>,
    pub connection: Rc<RefCell<Option<Source>>>,
    /// Asks for a redraw after a local change.
    pub touch: Callback<()>,
}

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.store, &other.store)
    }
}

impl Shared {
    /// Sends a request; its outcome appears in the store's request list.
    pub fn request(&self, frame: impl FnOnce(u64) -> ClientFrame) {
        let frame = self.store.borrow_mut().new_request(frame, now_ms());
        let sent = self.connection.borrow().as_ref().is_some_and(|c| c.send(&frame));
        if !sent {
            let error = shared::protocol::ApiError::new(
                shared::protocol::ErrorKind::Unavailable,
                "not connected to a proxy",
            );
            let id = request_id(&frame);
            self.store.borrow_mut().receive(ProxyFrame::Error { id: Some(id), error }, now_ms());
        }
        self.touch.emit(());
    }

    pub fn admin(&self, command: AdminCommand) {
        self.request(move |id| ClientFrame::Admin { id, command });
    }

    pub fn set_token(&self, token: Option<String>) {
        // A simulated cluster or a recording has no token to change.
        if !matches!(self.connection.borrow().as_ref(), Some(Source::Live(_))) {
            return;
        }
        token_in_url(token.as_deref());
        self.store.borrow_mut().admin = false;
        if let Some(c) = self.connection.borrow().as_ref() {
            c.set_token(token);
        }
        self.touch.emit(());
    }
}

/// What the page can save from where its frames come (a viewer of a live cluster: nothing).
fn save_from(store: &Store) -> Option<SaveFrom> {
    match &store.link {
        Link::Simulated { .. } => Some(SaveFrom::Simulated),
        Link::Replay { .. } => Some(SaveFrom::Replay),
        Link::Connected { .. } if store.admin => Some(SaveFrom::Live {
            token: initial_token().unwrap_or_default(),
            recording: store.live.recording.clone(),
        }),
        _ => None,
    }
}

fn request_id(frame: &ClientFrame) -> u64 {
    frame.id().unwrap_or(0)
}

#[function_component]
pub fn App() -> Html {
    let store = use_mut_ref(Store::default);
    let connection = use_mut_ref(|| None::<Source>);
    let dirty = use_mut_ref(|| Rc::new(Cell::new(true)));
    let now = use_state(now_ms);
    let ui = use_reducer(|| Ui {
        lang: initial_lang(),
        presentation: query("present").is_some(),
        selected: None,
        menu: None,
        partition: BTreeSet::new(),
        filter: TimelineFilter::default(),
        message: None,
        help: false,
    });

    {
        // Connect once, and run the animation loop for the life of the page.
        let (store, connection, dirty, now) =
            (store.clone(), connection.clone(), dirty.borrow().clone(), now.clone());
        use_effect_with((), move |_| {
            let redraw = redraw_soon(now.clone());
            let on_frame = {
                let (store, dirty, redraw) = (store.clone(), dirty.clone(), redraw.clone());
                Callback::from(move |frame: ProxyFrame| {
                    store.borrow_mut().receive(frame, now_ms());
                    dirty.set(true);
                    redraw.emit(());
                })
            };
            let on_link = {
                let (store, dirty) = (store.clone(), dirty.clone());
                Callback::from(move |link: Link| {
                    store.borrow_mut().link = link;
                    dirty.set(true);
                })
            };
            if let Some(url) = query("replay") {
                // A recording to watch: nothing to connect to.
                let touch = {
                    let dirty = dirty.clone();
                    Callback::from(move |_| dirty.set(true))
                };
                let shared = Shared { store: store.clone(), connection: connection.clone(), touch };
                yew::platform::spawn_local(async move {
                    match crate::replay::fetch(&url).await {
                        Ok(text) => shared.open_recording(&text, url),
                        Err(reason) => shared.failed(reason),
                    }
                });
            } else {
                let source = match crate::simulated::settings_from_url() {
                    Some(settings) => {
                        Source::Simulated(crate::simulated::Simulated::start(&settings, on_frame, on_link))
                    }
                    None => Source::Live(Connection::start(initial_token(), on_frame, on_link)),
                };
                *connection.borrow_mut() = Some(source);
            }
            start_animation(store, dirty, now);
            || ()
        });
    }

    let touch = {
        let dirty = dirty.borrow().clone();
        Callback::from(move |_| dirty.set(true))
    };
    let shared = Shared { store: store.clone(), connection: connection.clone(), touch };
    {
        let lang = ui.lang;
        use_effect_with(lang, move |lang| {
            if let Some(s) = local_storage() {
                let _ = s.set_item("consenso-lang", if *lang == Lang::Es { "es" } else { "en" });
            }
            if let Some(root) =
                web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element())
            {
                let _ = root.set_attribute("lang", if *lang == Lang::Es { "es" } else { "en" });
            }
        });
    }
    {
        let (shared, dispatcher) = (shared.clone(), ui.dispatcher());
        use_effect_with((), move |_| {
            listen_to_keys(shared, dispatcher);
            || ()
        });
    }
    let throttles = use_mut_ref(|| [Throttle::default(), Throttle::default(), Throttle::default()]);
    let s = store.borrow();
    let model = s.view();
    let (logs_version, kv_version, timeline_version) = {
        let mut th = throttles.borrow_mut();
        let v = &model.versions;
        let (logs, a) = th[0].gate(v.logs + v.nodes, *now, 50.0);
        let (kv, b) = th[1].gate(v.nodes, *now, 250.0);
        let (timeline, c) = th[2].gate(v.timeline, *now, 250.0);
        if a || b || c {
            dirty.borrow().set(true);
        }
        (logs, kv, timeline)
    };
    let lang = ui.lang;
    let dispatch = {
        let ui = ui.clone();
        Callback::from(move |a: UiAction| ui.dispatch(a))
    };
    let frozen = s.frozen.is_some();
    let classes = classes!(
        "app",
        ui.presentation.then_some("presentation"),
        frozen.then_some("frozen"),
        s.replay.is_some().then_some("replaying"),
        matches!(s.link, Link::Simulated { .. }).then_some("simulating"),
        query("debug").is_some().then_some("debug")
    );
    let rows = model.nodes.len().max(3);
    html! {
        <ContextProvider<Shared> context={shared.clone()}>
            <div class={classes} style={format!("--rows: {rows}")}
                ondragover={Callback::from(|e: DragEvent| e.prevent_default())}
                ondrop={
                    let shared = shared.clone();
                    Callback::from(move |e: DragEvent| {
                        e.prevent_default();
                        let file = e.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0));
                        if let Some(file) = file {
                            shared.open_file(file);
                        }
                    })
                }
                onclick={
                let (dispatch, open) = (dispatch.clone(), ui.menu.is_some());
                Callback::from(move |_: MouseEvent| if open { dispatch.emit(UiAction::CloseMenu) })
            }>
                { perf_meter(&s) }
                <div class="screen">
                    <Header lang={lang} presentation={ui.presentation} link={s.link.clone()} admin={s.admin}
                        leader={model.shown_leader()} term={model.term} deposed={model.deposed_leaders()}
                        frozen={s.frozen.as_ref().map(|(t, _)| *t)}
                        live_now={s.live.now} earliest={s.earliest()} dispatch={dispatch.clone()} />
                    <Banners lang={lang} admin={s.admin} alarms={model.alarms.clone()} bugs={model.bugs.clone()}
                        lesson={model.lesson.clone()} />
                    <section class="stage" aria-label="cluster">
                        { for s.replay.clone().map(|replay| html! { <ReplayBar lang={lang} replay={replay} /> }) }
                        <TimeBar lang={lang} admin={s.admin} frozen={frozen} time={model.time.clone()} scale={model.time_scale} />
                        <ClusterView lang={lang} now={*now} version={model.versions.nodes} presentation={ui.presentation}
                            selected={ui.selected} menu={ui.menu} partition={ui.partition.clone()}
                            message={ui.message} admin={s.admin} dispatch={dispatch.clone()} />
                    </section>
                    <aside class={classes!("side", ui.message.is_some().then_some("inspecting"))}>
                        <Inspector lang={lang} admin={s.admin} message={ui.message} now={*now} dispatch={dispatch.clone()} />
                        <LessonPanel lang={lang} admin={s.admin} lesson={model.lesson.clone()} />
                        <AdminPanel lang={lang} admin={s.admin} selected={ui.selected} version={model.versions.nodes}
                            partition={ui.partition.clone()} supervised={model.supervised} frozen={frozen}
                            dispatch={dispatch.clone()} />
                        <ClientPanel lang={lang} version={s.requests_version}
                            may_write={s.admin || s.live.open_writes} />
                        { for save_from(&s).map(|from| html! { <SavePanel lang={lang} from={from} /> }) }
                        <Legend lang={lang} />
                    </aside>
                    <section class="logs-area">
                        <LogsView lang={lang} version={logs_version} presentation={ui.presentation} />
                    </section>
                </div>
                <main class="more">
                    <section class="kv-area">
                        <KvView lang={lang} version={kv_version} />
                    </section>
                    <section class="timeline-area">
                        <TimelineView lang={lang} version={timeline_version} filter={ui.filter.clone()} dispatch={dispatch.clone()} />
                    </section>
                    <section class="charts-area">
                        <ChartsView lang={lang} version={model.versions.charts} />
                    </section>
                </main>
                { if ui.help { html! { <Help lang={lang} dispatch={dispatch} /> } } else { html! {} } }
            </div>
        </ContextProvider<Shared>>
    }
}

/// Keyboard shortcuts: Space stops or runs time, → steps, N goes on with a lesson, P toggles
/// presentation, ? shows the help, Escape closes. Keys typed into a form field are the
/// field's.
fn listen_to_keys(shared: Shared, ui: UseReducerDispatcher<Ui>) {
    let Some(window) = web_sys::window() else { return };
    let handler = Closure::<dyn FnMut(web_sys::KeyboardEvent)>::new(move |e: web_sys::KeyboardEvent| {
        if e.ctrl_key() || e.meta_key() || e.alt_key() || typing(&e) {
            return;
        }
        let (admin, stopped, waiting) = {
            let store = shared.store.borrow();
            let live = &store.live;
            (store.admin, live.time.stopped, live.lesson.as_ref().is_some_and(|l| l.waiting))
        };
        match e.key().as_str() {
            " " if admin && !on_button(&e) => {
                e.prevent_default();
                shared.admin(if stopped { AdminCommand::StartTime } else { AdminCommand::StopTime });
            }
            "ArrowRight" if admin => {
                e.prevent_default();
                shared.admin(AdminCommand::Step { count: 1 });
            }
            "n" | "N" if admin && waiting => {
                shared.admin(AdminCommand::Lesson { action: LessonAction::Next })
            }
            "?" => ui.dispatch(UiAction::ToggleHelp),
            "p" | "P" => ui.dispatch(UiAction::TogglePresentation),
            "Escape" => ui.dispatch(UiAction::CloseAll),
            _ => {}
        }
    });
    let _ = window.add_event_listener_with_callback("keydown", handler.as_ref().unchecked_ref());
    // The listener lives as long as the page.
    handler.forget();
}

/// Whether the key goes to a text field or a menu.
fn typing(e: &web_sys::KeyboardEvent) -> bool {
    let tag = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .map(|el| el.tag_name().to_lowercase())
        .unwrap_or_default();
    matches!(tag.as_str(), "input" | "select" | "textarea")
}

/// Space on a focused button presses that button, not the time toggle.
fn on_button(e: &web_sys::KeyboardEvent) -> bool {
    e.target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .is_some_and(|el| el.tag_name().eq_ignore_ascii_case("button") || el.get_attribute("role").is_some())
}

/// Frame rate and drawing lag, as data attributes for benchmarks (and visible with `?debug`).
fn perf_meter(store: &Store) -> Html {
    let (fps, worst) = store.perf.fps();
    let (lag50, lag_max) = store.perf.lag();
    html! {
        <div class="perf" data-fps={format!("{fps:.1}")} data-frame-max-ms={format!("{worst:.1}")}
            data-lag-p50-ms={format!("{lag50:.1}")} data-lag-max-ms={format!("{lag_max:.1}")}>
            { format!("{fps:.0} fps · longest frame {worst:.0} ms · data drawn after {lag50:.0} ms (max {lag_max:.0})") }
        </div>
    }
}

/// Redraws shortly after new data even when animation frames do not come (a hidden tab, a
/// headless browser): at most one pending redraw at a time.
fn redraw_soon(now: UseStateHandle<f64>) -> Callback<()> {
    let pending = Rc::new(Cell::new(false));
    Callback::from(move |_| {
        if pending.replace(true) {
            return;
        }
        let (pending, now) = (pending.clone(), now.clone());
        yew::platform::spawn_local(async move {
            yew::platform::time::sleep(std::time::Duration::from_millis(50)).await;
            pending.set(false);
            now.set(now_ms());
        });
    })
}

/// Redraws every animation frame while something moves or changed: election timers empty,
/// messages fly. Views that did not change skip their work (their props are equal).
fn start_animation(store: Rc<RefCell<Store>>, dirty: Rc<Cell<bool>>, now: UseStateHandle<f64>) {
    type FrameCallback = Rc<RefCell<Option<Closure<dyn FnMut(f64)>>>>;
    let frame: FrameCallback = Rc::new(RefCell::new(None));
    let again = frame.clone();
    *frame.borrow_mut() = Some(Closure::new(move |_: f64| {
        let t = now_ms();
        let animating = {
            let mut s = store.borrow_mut();
            s.perf.frame(t);
            if s.frozen.is_none() {
                s.live.advance_to(t);
            }
            let m = s.view();
            m.flights.list.iter().any(|f| !f.held())
                || m.nodes.values().any(|n| n.timer.is_some_and(|tm| tm.frozen.is_none()))
        };
        if animating || dirty.replace(false) {
            now.set(t);
        }
        if let (Some(w), Some(f)) = (web_sys::window(), again.borrow().as_ref()) {
            let _ = w.request_animation_frame(f.as_ref().unchecked_ref());
        }
    }));
    if let (Some(w), Some(f)) = (web_sys::window(), frame.borrow().as_ref()) {
        let _ = w.request_animation_frame(f.as_ref().unchecked_ref());
    }
    // The closure lives as long as the page.
    std::mem::forget(frame);
}
