//! The root component: owns the store and the connection, runs the animation loop, listens to
//! the keyboard, and lays out the views. UI state (language, selection, filters, the message
//! being inspected) lives in one reducer (`ui`); the cluster's data lives in the store, whose
//! parts reach the views as props — a view re-renders exactly when the part it draws changed.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use shared::lesson::LessonAction;
use shared::protocol::{AdminCommand, ClientFrame, ProxyFrame};
use shared::raft::NodeId;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use yew::prelude::*;

use crate::connection::{Connection, Source};
use crate::i18n::Lang;
use crate::store::{Link, Model, Nodes, Part, Store, TimelineItem};
use crate::ui::{Ui, UiAction};
use crate::view::{
    AdminPanel, Banners, ChartsView, ClientPanel, ClusterView, Header, Help, Inspector, KvView, Legend,
    LessonPanel, LogsView, ReplayBar, SaveFrom, SavePanel, TimeBar, TimelineView,
};

pub fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// Where this tab keeps the token: `sessionStorage`, so that a reload keeps it but no other
/// tab sees it — and only for a reload: opening the view-only link, even in this tab, forgets
/// it, so the viewer link stays view-only in the lecturer's own browser.
const TOKEN_KEY: &str = "consenso-token";

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// The token: from the admin link the cluster printed (`?token=…`), which then leaves the
/// address bar at once — a projector shows the address — or from this tab's earlier visit.
fn initial_token() -> Option<String> {
    if let Some(token) = query("token").filter(|t| !t.is_empty()) {
        remember_token(Some(&token));
        remove_token_from_address();
        return Some(token);
    }
    if !reloaded() {
        remember_token(None);
        return None;
    }
    current_token()
}

/// Whether this page was reloaded (not opened from a link or the address bar).
fn reloaded() -> bool {
    let Some(performance) = web_sys::window().and_then(|w| w.performance()) else { return false };
    let entry = performance.get_entries_by_type("navigation").get(0);
    js_sys::Reflect::get(&entry, &"type".into()).ok().and_then(|t| t.as_string()).as_deref() == Some("reload")
}

/// The token this tab uses from now on (typed in, or forgotten).
fn remember_token(token: Option<&str>) {
    let Some(storage) = session_storage() else { return };
    let _ = match token {
        Some(t) => storage.set_item(TOKEN_KEY, t),
        None => storage.remove_item(TOKEN_KEY),
    };
}

fn remove_token_from_address() {
    let Some(window) = web_sys::window() else { return };
    let (Ok(search), Ok(path)) = (window.location().search(), window.location().pathname()) else { return };
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else { return };
    params.delete("token");
    let query: String = params.to_string().into();
    let hash = window.location().hash().unwrap_or_default();
    let url = if query.is_empty() { format!("{path}{hash}") } else { format!("{path}?{query}{hash}") };
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
}

/// The token this tab holds now, for downloads from the proxy.
pub fn current_token() -> Option<String> {
    session_storage()?.get_item(TOKEN_KEY).ok()?.filter(|t| !t.is_empty())
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

/// Lets a new version of a part through at most every `every` ms: a timeline or a table redrawn
/// more than ~20 times a second is unreadable anyway, and the frames are better spent on
/// animation.
struct Throttle<T> {
    shown: Option<Part<T>>,
    at: f64,
}

impl<T> Default for Throttle<T> {
    fn default() -> Self {
        Throttle { shown: None, at: f64::NEG_INFINITY }
    }
}

impl<T: Clone> Throttle<T> {
    /// The version to draw now, and whether a newer one is being held back.
    fn gate(&mut self, current: &Part<T>, now: f64, every: f64) -> (Part<T>, bool) {
        if self.shown.as_ref() != Some(current) && now - self.at >= every {
            self.shown = Some(current.clone());
            self.at = now;
        }
        let shown = self.shown.clone().unwrap_or_else(|| current.clone());
        let held = shown != *current;
        (shown, held)
    }
}

/// The parts drawn at a gentler pace than the animation.
#[derive(Default)]
struct Throttles {
    logs: Throttle<Nodes>,
    kv: Throttle<Nodes>,
    timeline: Throttle<VecDeque<TimelineItem>>,
}

/// Those parts as they are drawn now, and whether a newer version waits.
struct Slow {
    logs: Part<Nodes>,
    kv: Part<Nodes>,
    timeline: Part<VecDeque<TimelineItem>>,
    held: bool,
}

impl Throttles {
    fn gate(&mut self, model: &Model, now: f64) -> Slow {
        let (logs, a) = self.logs.gate(&model.nodes, now, 50.0);
        let (kv, b) = self.kv.gate(&model.nodes, now, 250.0);
        let (timeline, c) = self.timeline.gate(&model.timeline, now, 250.0);
        Slow { logs, kv, timeline, held: a || b || c }
    }
}

/// What every view may use to act: send requests, freeze the view, open recordings. Views
/// *read* nothing through it: what they draw comes as props.
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

    /// Freezes the view at page time `at` (now, if `None`), or moves the frozen moment there.
    pub fn freeze(&self, at: Option<f64>) {
        {
            let mut store = self.store.borrow_mut();
            let at = at.unwrap_or(store.live.now);
            store.freeze(at);
        }
        self.touch.emit(());
    }

    pub fn go_live(&self) {
        self.store.borrow_mut().go_live();
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
        remember_token(token.as_deref());
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
        Link::Connected { .. } if store.admin => {
            Some(SaveFrom::Live { recording: store.live.recording.clone() })
        }
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
    let dirty: Rc<Cell<bool>> = (*use_memo((), |_| Rc::new(Cell::new(true)))).clone();
    let now = use_state(now_ms);
    let ui = use_reducer(|| Ui::new(initial_lang(), query("present").is_some()));
    let touch = {
        let dirty = dirty.clone();
        Callback::from(move |_| dirty.set(true))
    };
    let shared = Shared { store: store.clone(), connection, touch };
    use_source(shared.clone(), dirty.clone(), now.clone());
    use_lang(ui.lang);
    {
        let (shared, dispatcher) = (shared.clone(), ui.dispatcher());
        use_effect_with((), move |_| {
            listen_to_keys(shared, dispatcher);
            || ()
        });
    }
    let throttles = use_mut_ref(Throttles::default);
    let s = store.borrow();
    let slow = throttles.borrow_mut().gate(s.view(), *now);
    if slow.held {
        dirty.set(true);
    }
    let dispatch = {
        let ui = ui.clone();
        Callback::from(move |a: UiAction| ui.dispatch(a))
    };
    let page = Page { store: &s, ui: &ui, now: *now, dispatch };
    html! {
        <ContextProvider<Shared> context={shared.clone()}>
            { page.draw(&shared, slow) }
        </ContextProvider<Shared>>
    }
}

/// Connects once — to a proxy, a cluster simulated in the page, or a recording (`?replay=`) —
/// and runs the animation loop for the life of the page.
#[hook]
fn use_source(shared: Shared, dirty: Rc<Cell<bool>>, now: UseStateHandle<f64>) {
    use_effect_with((), move |_| {
        let redraw = redraw_soon(now.clone());
        let store = shared.store.clone();
        let on_frame = {
            let (store, dirty) = (store.clone(), dirty.clone());
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
            let shared = shared.clone();
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
            *shared.connection.borrow_mut() = Some(source);
        }
        start_animation(store, dirty, now);
        || ()
    });
}

/// Remembers the language and tells the browser (screen readers, hyphenation).
#[hook]
fn use_lang(lang: Lang) {
    use_effect_with(lang, move |lang| {
        let code = if *lang == Lang::Es { "es" } else { "en" };
        if let Some(s) = local_storage() {
            let _ = s.set_item("consenso-lang", code);
        }
        if let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) {
            let _ = root.set_attribute("lang", code);
        }
    });
}

/// Everything one drawing of the page needs: the store (whose parts go to the views as props),
/// the UI state, and the page time.
struct Page<'a> {
    store: &'a Store,
    ui: &'a Ui,
    now: f64,
    dispatch: Callback<UiAction>,
}

impl Page<'_> {
    fn draw(&self, shared: &Shared, slow: Slow) -> Html {
        let (s, ui) = (self.store, self.ui);
        let classes = classes!(
            "app",
            ui.presentation.then_some("presentation"),
            s.frozen.is_some().then_some("frozen"),
            s.replay.is_some().then_some("replaying"),
            matches!(s.link, Link::Simulated { .. }).then_some("simulating"),
            query("debug").is_some().then_some("debug")
        );
        let rows = s.view().nodes.len().max(3);
        let on_drop = {
            let shared = shared.clone();
            Callback::from(move |e: DragEvent| {
                e.prevent_default();
                if let Some(file) = e.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)) {
                    shared.open_file(file);
                }
            })
        };
        let on_click = {
            let (dispatch, open) = (self.dispatch.clone(), ui.menu.is_some());
            Callback::from(move |_: MouseEvent| {
                if open {
                    dispatch.emit(UiAction::CloseMenu)
                }
            })
        };
        html! {
            <div class={classes} style={format!("--rows: {rows}")}
                ondragover={Callback::from(|e: DragEvent| e.prevent_default())} ondrop={on_drop} onclick={on_click}>
                { perf_meter(s) }
                <div class="screen">
                    { self.header() }
                    { self.stage() }
                    { self.side() }
                    <section class="logs-area">
                        <LogsView lang={ui.lang} nodes={slow.logs} presentation={ui.presentation} />
                    </section>
                </div>
                { self.more(slow.kv, slow.timeline) }
                if ui.help { <Help lang={ui.lang} dispatch={self.dispatch.clone()} /> }
            </div>
        }
    }

    fn header(&self) -> Html {
        let (s, m, lang) = (self.store, self.store.view(), self.ui.lang);
        html! { <>
            <Header lang={lang} presentation={self.ui.presentation} link={s.link.clone()} admin={s.admin}
                leader={m.nodes.shown_leader()} term={m.term} deposed={m.nodes.deposed_leaders()}
                hosted={m.nodes.hosted_command()}
                frozen={s.frozen.as_ref().map(|(t, _)| *t)}
                live_now={s.live.now} earliest={s.earliest()} dispatch={self.dispatch.clone()} />
            <Banners lang={lang} admin={s.admin} alarms={m.alarms.clone()} bugs={m.bugs.clone()}
                lesson={m.lesson.clone()} />
        </> }
    }

    /// The cluster drawn, with the replay and time bars above it.
    fn stage(&self) -> Html {
        let (s, m, ui) = (self.store, self.store.view(), self.ui);
        // A frozen view draws its own moment, not the page's clock.
        let now = if s.frozen.is_some() { m.now } else { self.now };
        html! {
            <section class="stage" aria-label="cluster">
                { for s.replay.clone().map(|replay| html! { <ReplayBar lang={ui.lang} replay={replay} /> }) }
                <TimeBar lang={ui.lang} admin={s.admin} frozen={s.frozen.is_some()} time={m.time.clone()} scale={m.time_scale} />
                <ClusterView lang={ui.lang} now={now} nodes={m.nodes.clone()} flights={m.flights.clone()}
                    learners={m.members.learners.clone()} messages_per_s={m.messages_per_s}
                    drawn_rate={m.message_rate()} time_stopped={m.time.stopped} presentation={ui.presentation}
                    selected={ui.selected} menu={ui.menu} partition={ui.partition.clone()}
                    message={ui.message} admin={s.admin} dispatch={self.dispatch.clone()} />
            </section>
        }
    }

    /// The side column: inspector, lesson, admin and client panels, saving, legend.
    fn side(&self) -> Html {
        let (s, m, ui, lang) = (self.store, self.store.view(), self.ui, self.ui.lang);
        html! {
            <aside class={classes!("side", ui.message.is_some().then_some("inspecting"))}>
                <Inspector lang={lang} admin={s.admin} message={ui.message} flights={m.flights.clone()} now={self.now}
                    dispatch={self.dispatch.clone()} />
                <LessonPanel lang={lang} admin={s.admin} lesson={m.lesson.clone()} />
                <AdminPanel lang={lang} admin={s.admin} selected={ui.selected} nodes={m.nodes.clone()}
                    open_writes={m.open_writes} partition={ui.partition.clone()} supervised={m.supervised}
                    frozen={s.frozen.is_some()} dispatch={self.dispatch.clone()} />
                <ClientPanel lang={lang} requests={s.requests.clone()} may_write={s.admin || s.live.open_writes} />
                { for save_from(s).map(|from| html! { <SavePanel lang={lang} from={from} /> }) }
                <Legend lang={lang} />
            </aside>
        }
    }

    /// Below the screen: the stores side by side, the event timeline, the numbers.
    fn more(&self, kv: Part<Nodes>, timeline: Part<VecDeque<TimelineItem>>) -> Html {
        let (m, lang) = (self.store.view(), self.ui.lang);
        let nodes: Vec<NodeId> = m.nodes.keys().copied().collect();
        html! {
            <main class="more">
                <section class="kv-area">
                    <KvView lang={lang} nodes={kv} />
                </section>
                <section class="timeline-area">
                    <TimelineView lang={lang} timeline={timeline} nodes={nodes} filter={self.ui.filter.clone()}
                        dispatch={self.dispatch.clone()} />
                </section>
                <section class="charts-area">
                    <ChartsView lang={lang} charts={m.charts.clone()} />
                </section>
            </main>
        }
    }
}

/// Keyboard shortcuts: Space stops or runs time, → steps, N goes on with a lesson, P toggles
/// presentation, ? shows the help, Escape closes. Space and → are the lecturer's, whatever has
/// the focus: they are taken at the document, before any button (Enter presses a focused
/// button). Keys typed into a form field are the field's.
fn listen_to_keys(shared: Shared, ui: UseReducerDispatcher<Ui>) {
    let Some(window) = web_sys::window() else { return };
    let handler = Closure::<dyn FnMut(web_sys::KeyboardEvent)>::new(move |e: web_sys::KeyboardEvent| {
        if e.ctrl_key() || e.meta_key() || e.alt_key() || typing(&e) {
            return;
        }
        let (admin, stopped, waiting, finished) = {
            let store = shared.store.borrow();
            let live = &store.live;
            let lesson = live.lesson.as_ref();
            (
                store.admin,
                live.time.stopped,
                lesson.is_some_and(|l| l.waiting),
                lesson.is_some_and(|l| l.outcome.is_some()),
            )
        };
        let time_key = admin && matches!(e.key().as_str(), " " | "ArrowRight");
        if time_key {
            // Not for the focused control: Space would press it, → move a slider.
            e.prevent_default();
            e.stop_propagation();
        }
        if e.type_() != "keydown" {
            return;
        }
        match e.key().as_str() {
            " " if admin => {
                shared.admin(if stopped { AdminCommand::StartTime } else { AdminCommand::StopTime })
            }
            "ArrowRight" if admin => shared.admin(AdminCommand::Step { count: 1 }),
            "n" | "N" if admin && waiting => {
                shared.admin(AdminCommand::Lesson { action: LessonAction::Next })
            }
            "?" => ui.dispatch(UiAction::ToggleHelp),
            "p" | "P" => ui.dispatch(UiAction::TogglePresentation),
            "Escape" => {
                // What is open closes first; then a finished lesson's caption, for every page.
                if finished && admin && !something_open() {
                    shared.admin(AdminCommand::Lesson { action: LessonAction::Stop });
                }
                ui.dispatch(UiAction::CloseAll)
            }
            _ => {}
        }
    });
    // Capture: before the focused element sees the key. Key-up too: a button is pressed by
    // Space when the key comes up.
    for kind in ["keydown", "keyup"] {
        let _ =
            window.add_event_listener_with_callback_and_bool(kind, handler.as_ref().unchecked_ref(), true);
    }
    // The listener lives as long as the page.
    handler.forget();
}

/// Whether a menu, the help or the message inspector is open (Escape closes those first).
fn something_open() -> bool {
    let document = web_sys::window().and_then(|w| w.document());
    document.and_then(|d| d.query_selector(".menu, .help, .inspector").ok().flatten()).is_some()
}

/// Whether the key goes to a text field or a list.
fn typing(e: &web_sys::KeyboardEvent) -> bool {
    let tag = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .map(|el| el.tag_name().to_lowercase())
        .unwrap_or_default();
    let input_type = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .and_then(|el| el.get_attribute("type"))
        .unwrap_or_default();
    // A checkbox or a slider is not typed into: the time keys stay the lecturer's there too.
    let not_text = matches!(input_type.as_str(), "checkbox" | "range" | "radio" | "button" | "submit");
    (tag == "input" && !not_text) || matches!(tag.as_str(), "select" | "textarea")
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
