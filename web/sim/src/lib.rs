//! The cluster inside the page, as a WebAssembly module of its own: `shared::playground` behind
//! three calls that take and give JSON — the very frames a proxy's WebSocket carries. The page
//! loads it only for `?sim`, so a page watching a live cluster does not carry a whole Raft
//! cluster in its download (the page's size budget).

use shared::playground::Playground;
use shared::protocol::{ClientFrame, parse};
use shared::raft::Bug;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct SimCluster {
    playground: Playground,
}

#[wasm_bindgen]
impl SimCluster {
    /// `servers` (3–7) running the Raft core, seeded with `seed` (an integer below 2^53),
    /// with the deliberate defects named in `bugs` (comma-separated), and elections with a
    /// pre-vote round unless `pre_vote` is false.
    #[wasm_bindgen(constructor)]
    pub fn new(servers: usize, seed: f64, bugs: &str, pre_vote: bool) -> SimCluster {
        let bugs: Vec<Bug> = bugs
            .split(',')
            .map(str::trim)
            .filter_map(|name| Bug::ALL.into_iter().find(|b| b.name() == name))
            .collect();
        SimCluster { playground: Playground::with_pre_vote(servers, seed as u64, &bugs, pre_vote) }
    }

    /// Takes one client frame (JSON); an unreadable one is refused with the reason.
    pub fn handle(&mut self, frame: &str) -> Result<(), JsError> {
        let frame: ClientFrame = parse(frame).map_err(|e| JsError::new(&e.to_string()))?;
        self.playground.handle(frame);
        Ok(())
    }

    /// Moves the cluster to the page's clock (ms).
    pub fn advance(&mut self, wall_ms: f64) {
        self.playground.advance(wall_ms);
    }

    /// A picture of the cluster now (a `welcome` frame, JSON), to start a recording with.
    pub fn picture(&self) -> String {
        serde_json::to_string(&self.playground.picture()).expect("frames serialize")
    }

    /// The frames for the page since the last call, as a JSON array.
    pub fn take_frames(&mut self) -> String {
        serde_json::to_string(&self.playground.take_frames()).expect("frames serialize")
    }
}

/// A window of a recording (docs/recording.md) as a space-time diagram in SVG.
#[wasm_bindgen]
pub fn render_diagram(
    recording: &str,
    from_s: f64,
    to_s: f64,
    title: &str,
    heartbeats: bool,
) -> Result<String, JsError> {
    let (_, lines) = shared::recording::parse(recording).map_err(|e| JsError::new(&e))?;
    Ok(shared::diagram::render(&lines, shared::diagram::Window { from_s, to_s, routine: heartbeats }, title))
}

/// A window of a recording in words, `en` or `es`, for lecture notes.
#[wasm_bindgen]
pub fn diagram_text(recording: &str, from_s: f64, to_s: f64, lang: &str) -> Result<String, JsError> {
    let (_, lines) = shared::recording::parse(recording).map_err(|e| JsError::new(&e))?;
    let lang = if lang == "es" { shared::event_text::Lang::Es } else { shared::event_text::Lang::En };
    Ok(shared::diagram::text(&lines, shared::diagram::Window { from_s, to_s, routine: false }, lang))
}
