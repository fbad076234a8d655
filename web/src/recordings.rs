//! Opening and saving recordings: what the page's `Shared` does for a replay, the file picker
//! and drag-and-drop, and the Save panel (docs/recording.md).

use shared::recording;

use crate::app::Shared;
use crate::connection::Source;
use crate::store::Link;

impl Shared {
    /// Replaces whatever the page shows with a recording (docs/recording.md).
    pub fn open_recording(&self, text: &str, name: String) {
        let lines = match recording::parse(text) {
            Ok((_, lines)) if !lines.is_empty() => lines,
            Ok(_) => return self.failed(format!("{name}: the recording has no frames")),
            Err(e) => return self.failed(format!("{name}: {e}")),
        };
        if let Some(source) = self.connection.borrow().as_ref() {
            source.stop();
        }
        let replay = crate::replay::Replay::start(
            text.to_string(),
            lines,
            self.store.clone(),
            self.touch.clone(),
            name,
        );
        *self.connection.borrow_mut() = Some(Source::Replay(replay));
        self.touch.emit(());
    }

    pub fn failed(&self, reason: String) {
        self.store.borrow_mut().link = Link::Failed { reason };
        self.touch.emit(());
    }

    /// Opens a recording the user picked or dropped.
    pub fn open_file(&self, file: web_sys::File) {
        let (shared, name) = (self.clone(), file.name());
        yew::platform::spawn_local(async move {
            match crate::replay::read_file(file).await {
                Ok(text) => shared.open_recording(&text, name),
                Err(reason) => shared.failed(format!("{name}: {reason}")),
            }
        });
    }

    /// Saves what the page can save where it is: the last minutes of a simulated session, or a
    /// diagram (or the words) of the seconds before now — or before the moment a replay shows.
    /// (A live cluster's are links to the proxy, which keeps them: see `SavePanel`.)
    pub fn save(&self, what: crate::view::Save) {
        use crate::view::Save;
        let source = self.connection.borrow().clone();
        if let Some(Source::Live(_)) = &source {
            return self.save_from_proxy(what);
        }
        let (recording, end_s) = match (&source, what) {
            (Some(Source::Simulated(sim)), Save::Recording { minutes }) => {
                return crate::simulated::download(
                    "consenso-simulated.rec",
                    "application/x-ndjson",
                    &sim.recent(minutes),
                );
            }
            (Some(Source::Simulated(sim)), Save::Diagram { seconds, .. }) => {
                let text = sim.recent(seconds / 60.0);
                let end =
                    recording::parse(&text).ok().and_then(|(_, l)| l.last().map(|l| l.t as f64 / 1000.0));
                (std::rc::Rc::new(text), end.unwrap_or(0.0))
            }
            (Some(Source::Replay(replay)), Save::Diagram { .. }) => replay.recording(),
            _ => return,
        };
        let Save::Diagram { seconds, words, lang, heartbeats } = what else { return };
        let shared = self.clone();
        yew::platform::spawn_local(async move {
            let from = (end_s - seconds).max(0.0);
            let title = format!("Consenso — {from:.1} s to {end_s:.1} s");
            let (format, mime, name) = if words {
                ("text", "text/plain", "consenso.txt")
            } else if heartbeats {
                ("svg-all", "image/svg+xml", "consenso.svg")
            } else {
                ("svg", "image/svg+xml", "consenso.svg")
            };
            let lang = if lang == crate::i18n::Lang::Es { "es" } else { "en" };
            match crate::simulated::draw(&recording, from, end_s + 0.001, &title, format, lang).await {
                Ok(drawn) => crate::simulated::download(name, mime, &drawn),
                Err(reason) => shared.failed(reason),
            }
        });
    }

    /// A live cluster's recent minutes, or a diagram of its last seconds, as the proxy keeps
    /// them, fetched with the token in a header.
    fn save_from_proxy(&self, what: crate::view::Save) {
        use crate::view::Save;
        let Some(token) = crate::app::current_token() else { return };
        let (url, name, mime) = match what {
            Save::Recording { minutes } => {
                (format!("/recording?minutes={minutes}"), "consenso.rec", "application/x-ndjson")
            }
            Save::Diagram { seconds, words: false, heartbeats, .. } => (
                format!("/diagram?seconds={seconds}&heartbeats={heartbeats}"),
                "consenso.svg",
                "image/svg+xml",
            ),
            Save::Diagram { seconds, words: true, lang, .. } => {
                let lang = if lang == crate::i18n::Lang::Es { "es" } else { "en" };
                (format!("/diagram?seconds={seconds}&format=text&lang={lang}"), "consenso.txt", "text/plain")
            }
        };
        let shared = self.clone();
        yew::platform::spawn_local(async move {
            match crate::simulated::fetch_text(&url, &token).await {
                Ok(text) => crate::simulated::download(name, mime, &text),
                Err(reason) => shared.failed_quietly(reason),
            }
        });
    }

    /// A save that failed: said in the console, the view stays as it is.
    fn failed_quietly(&self, reason: String) {
        web_sys::console::warn_1(&format!("Consenso: {reason}").into());
    }

    pub fn replay(&self, action: crate::replay::ReplayAction) {
        if let Some(Source::Replay(replay)) = self.connection.borrow().as_ref() {
            replay.act(action);
        }
    }
}
