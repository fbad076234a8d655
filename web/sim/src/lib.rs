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
    /// with the deliberate defects named in `bugs` (comma-separated).
    #[wasm_bindgen(constructor)]
    pub fn new(servers: usize, seed: f64, bugs: &str) -> SimCluster {
        let bugs: Vec<Bug> = bugs
            .split(',')
            .map(str::trim)
            .filter_map(|name| Bug::ALL.into_iter().find(|b| b.name() == name))
            .collect();
        SimCluster { playground: Playground::new(servers, seed as u64, &bugs) }
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

    /// The frames for the page since the last call, as a JSON array.
    pub fn take_frames(&mut self) -> String {
        serde_json::to_string(&self.playground.take_frames()).expect("frames serialize")
    }
}
