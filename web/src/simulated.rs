//! A simulated cluster running in this page (`?sim`): `shared::playground` driven by the page's
//! clock. It speaks the proxy's frames, so the store and every view work as with a live
//! cluster. The URL carries the seed (`?sim=SEED&servers=N&bug=NAME`), so a run can be shared
//! and replayed on any machine.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use shared::protocol::{ClientFrame, PROTOCOL_VERSION, ProxyFrame, encode};
use shared::raft::Bug;
use shared::recording::{Header, Rolling};
use wasm_bindgen::prelude::*;
use yew::Callback;

use crate::app::now_ms;
use crate::store::Link;

/// How often the simulated cluster moves forward (its timers and messages are finer than this:
/// each advance runs everything due in between, in order).
const ADVANCE_EVERY: Duration = Duration::from_millis(20);
/// Minutes of the simulated session kept for download, and their bytes at most.
const RECENT_MINUTES: u64 = 10;
const RECENT_MAX_BYTES: usize = 32 << 20;
/// Seeds stay exact as JavaScript numbers.
const MAX_SEED: u64 = (1 << 53) - 1;

#[wasm_bindgen(inline_js = r#"
async function module_at(url) {
  const module = await import(url);
  await module.default();
  return module;
}
export async function load_simulator(url, servers, seed, bugs, pre_vote) {
  const module = await module_at(url);
  return new module.SimCluster(servers, seed, bugs, pre_vote);
}
export async function render_recording(url, recording, from, to, title, format, lang) {
  const module = await module_at(url);
  return format === "text"
    ? module.diagram_text(recording, from, to, lang)
    : module.render_diagram(recording, from, to, title, format === "svg-all");
}
export function simulator_url() {
  const meta = document.querySelector('meta[name="consenso-sim"]');
  return meta ? meta.content : null;
}
export async function fetch_with_token(url, token) {
  const response = await fetch(url, { headers: { Authorization: "Bearer " + token } });
  const text = await response.text();
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${text}`);
  return text;
}
export function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    async fn load_simulator(
        url: &str,
        servers: usize,
        seed: f64,
        bugs: &str,
        pre_vote: bool,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn render_recording(
        url: &str,
        recording: &str,
        from_s: f64,
        to_s: f64,
        title: &str,
        format: &str,
        lang: &str,
    ) -> Result<JsValue, JsValue>;
    fn simulator_url() -> Option<String>;
    /// Saves `text` as a file the browser downloads.
    pub fn download(name: &str, mime: &str, text: &str);
    #[wasm_bindgen(catch)]
    async fn fetch_with_token(url: &str, token: &str) -> Result<JsValue, JsValue>;

    /// The simulator module's cluster (web/sim).
    type SimCluster;
    #[wasm_bindgen(method, catch)]
    fn handle(this: &SimCluster, frame: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method)]
    fn advance(this: &SimCluster, wall_ms: f64);
    #[wasm_bindgen(method)]
    fn take_frames(this: &SimCluster) -> String;
    #[wasm_bindgen(method)]
    fn picture(this: &SimCluster) -> String;
}

/// `GET url` from this page's proxy with the token in a header (never in a link a class could
/// read off the projector).
pub async fn fetch_text(url: &str, token: &str) -> Result<String, String> {
    match fetch_with_token(url, token).await {
        Ok(text) => text.as_string().ok_or_else(|| format!("{url}: not text")),
        Err(e) => Err(format!("{url}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}")))),
    }
}

/// A window of a recording drawn by the simulator module (which also holds the diagram code,
/// so that the live page does not carry it): SVG (`format` "svg", or "svg-all" with routine
/// heartbeats), or with "text" the events in words.
pub async fn draw(
    recording: &str,
    from_s: f64,
    to_s: f64,
    title: &str,
    format: &str,
    lang: &str,
) -> Result<String, String> {
    let url =
        simulator_url().ok_or("this build of the page has no simulator module (build it with ./dev page)")?;
    let drawn = render_recording(&url, recording, from_s, to_s, title, format, lang)
        .await
        .map_err(|e| e.as_string().unwrap_or_else(|| format!("{e:?}")))?;
    drawn.as_string().ok_or_else(|| "the diagram is not text".to_string())
}

/// What the URL asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    pub seed: u64,
    pub servers: usize,
    pub bugs: Vec<Bug>,
    /// Elections begin with a pre-vote round (off: `&prevote=off`).
    pub pre_vote: bool,
}

#[derive(Clone)]
pub struct Simulated {
    cluster: Rc<RefCell<Option<SimCluster>>>,
    /// The last minutes, to download (a picture every 30 s, as a proxy keeps them).
    recent: Rc<RefCell<Rolling>>,
    started: f64,
    /// Set when the page turns to another source: the cluster stops and says nothing more.
    stopped: Rc<std::cell::Cell<bool>>,
    /// Frames the page sent before the simulator finished loading.
    waiting: Rc<RefCell<Vec<String>>>,
    on_frame: Callback<ProxyFrame>,
}

impl Simulated {
    /// Loads the simulator module (named by the page's `consenso-sim` meta tag) and starts it.
    pub fn start(
        settings: &SimSettings,
        on_frame: Callback<ProxyFrame>,
        on_link: Callback<Link>,
    ) -> Simulated {
        let sim = Simulated {
            cluster: Rc::new(RefCell::new(None)),
            recent: Rc::new(RefCell::new(Rolling::new(RECENT_MINUTES * 60_000, RECENT_MAX_BYTES))),
            started: now_ms(),
            stopped: Rc::new(std::cell::Cell::new(false)),
            waiting: Rc::new(RefCell::new(Vec::new())),
            on_frame,
        };
        sim.send(&ClientFrame::Hello { version: PROTOCOL_VERSION, token: None, subscribe: true });
        let (running, settings) = (sim.clone(), settings.clone());
        yew::platform::spawn_local(async move {
            let Some(url) = simulator_url() else {
                let reason = "this build of the page has no simulator (build it with ./dev page)";
                return on_link.emit(Link::Failed { reason: reason.into() });
            };
            let bugs: Vec<&str> = settings.bugs.iter().map(|b| b.name()).collect();
            let loaded = load_simulator(
                &url,
                settings.servers,
                settings.seed as f64,
                &bugs.join(","),
                settings.pre_vote,
            )
            .await;
            let cluster = match loaded {
                Ok(cluster) => cluster.unchecked_into::<SimCluster>(),
                Err(e) => {
                    let reason = format!(
                        "the simulator did not load: {}",
                        e.as_string().unwrap_or_else(|| format!("{e:?}"))
                    );
                    return on_link.emit(Link::Failed { reason });
                }
            };
            for frame in running.waiting.borrow_mut().drain(..) {
                let _ = cluster.handle(&frame);
            }
            *running.cluster.borrow_mut() = Some(cluster);
            on_link.emit(Link::Simulated { seed: settings.seed });
            while !running.stopped.get() {
                if let Some(cluster) = running.cluster.borrow().as_ref() {
                    cluster.advance(now_ms());
                }
                running.deliver();
                yew::platform::time::sleep(ADVANCE_EVERY).await;
            }
        });
        sim
    }

    /// Takes a frame as a proxy would; its answers reach the page at once.
    pub fn send(&self, frame: &ClientFrame) -> bool {
        let text = encode(frame);
        match self.cluster.borrow().as_ref() {
            Some(cluster) => {
                if let Err(e) = cluster.handle(&text) {
                    web_sys::console::warn_1(
                        &format!("Consenso: the simulator refused a frame: {e:?}").into(),
                    );
                    return false;
                }
            }
            None => self.waiting.borrow_mut().push(text),
        }
        self.deliver();
        true
    }

    pub fn stop(&self) {
        self.stopped.set(true);
    }

    fn deliver(&self) {
        if self.stopped.get() {
            return;
        }
        let Some(text) = self.cluster.borrow().as_ref().map(|c| c.take_frames()) else { return };
        let frames = match serde_json::from_str::<Vec<ProxyFrame>>(&text) {
            Ok(frames) => frames,
            Err(e) => {
                let warning = format!("Consenso: unreadable frames from the simulator: {e}");
                return web_sys::console::warn_1(&warning.into());
            }
        };
        let t = (now_ms() - self.started).max(0.0) as u64;
        for frame in frames {
            self.remember(t, &frame);
            self.on_frame.emit(frame);
        }
    }

    /// Keeps what the page was shown, as a proxy's recent buffer does.
    fn remember(&self, t: u64, frame: &ProxyFrame) {
        if matches!(frame, ProxyFrame::Done { .. } | ProxyFrame::AdminDone { .. } | ProxyFrame::Error { .. })
        {
            return;
        }
        let mut recent = self.recent.borrow_mut();
        if recent.wants_keyframe(t) {
            let Some(picture) = self.cluster.borrow().as_ref().map(|c| c.picture()) else { return };
            recent.keyframe(t, picture);
        }
        recent.push(t, encode_frame(frame));
    }

    /// The last `minutes` of the simulated session, as a recording.
    pub fn recent(&self, minutes: f64) -> String {
        let now = (now_ms() - self.started).max(0.0) as u64;
        let header = Header::new(js_sys::Date::now() as u64, "simulated in the page".into());
        self.recent.borrow().export(now, (minutes * 60_000.0) as u64, &header)
    }
}

/// `?sim[=SEED]`, with `servers=3…7` and `bug=NAME` (repeatable). A missing seed is drawn at
/// random and written into the URL, so that the run can be reproduced.
pub fn settings_from_url() -> Option<SimSettings> {
    let window = web_sys::window()?;
    let search = window.location().search().ok()?;
    let params = web_sys::UrlSearchParams::new_with_str(&search).ok()?;
    if !params.has("sim") {
        return None;
    }
    let seed = match params.get("sim").and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(seed) => seed.min(MAX_SEED),
        None => {
            let seed = (js_sys::Math::random() * 1e9) as u64;
            params.set("sim", &seed.to_string());
            let query: String = params.to_string().into();
            if let (Ok(history), Ok(path)) = (window.history(), window.location().pathname()) {
                let url = format!("{path}?{query}");
                let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
            }
            seed
        }
    };
    let servers = params.get("servers").and_then(|s| s.parse().ok()).unwrap_or(5);
    let bugs = params
        .get_all("bug")
        .iter()
        .filter_map(|v| v.as_string())
        .filter_map(|name| Bug::ALL.into_iter().find(|b| b.name() == name))
        .collect();
    // `&prevote=off`: bare elections, without the pre-vote round (as `cluster --pre-vote off`).
    let pre_vote = params.get("prevote").is_none_or(|v| v != "off");
    Some(SimSettings { seed, servers, bugs, pre_vote })
}

/// The page's URL for a simulated cluster, from wherever the page is served.
pub fn simulation_url() -> String {
    let path = web_sys::window().and_then(|w| w.location().pathname().ok()).unwrap_or_else(|| "/".into());
    format!("{path}?sim")
}

fn encode_frame(frame: &ProxyFrame) -> String {
    serde_json::to_string(frame).expect("frames serialize")
}
