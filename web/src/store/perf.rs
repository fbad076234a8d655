//! How smoothly the page runs: animation frames, and how long data waits to be drawn.

use std::collections::VecDeque;

/// How smoothly the page runs: animation frames, and how long data waits to be drawn.
#[derive(Default)]
pub struct Perf {
    frames: VecDeque<f64>,
    /// When the oldest frame not yet drawn arrived.
    pending_since: Option<f64>,
    lags: VecDeque<f64>,
}

impl Perf {
    pub fn received(&mut self, t: f64) {
        self.pending_since.get_or_insert(t);
    }

    /// Called at every animation frame, after which the page is drawn.
    pub fn frame(&mut self, t: f64) {
        self.frames.push_back(t);
        while self.frames.front().is_some_and(|f| t - f > 2_000.0) {
            self.frames.pop_front();
        }
        if let Some(since) = self.pending_since.take() {
            self.lags.push_back(t - since);
            if self.lags.len() > 300 {
                self.lags.pop_front();
            }
        }
    }

    /// Frames per second over the last two seconds, and the longest gap between frames (ms).
    pub fn fps(&self) -> (f64, f64) {
        let n = self.frames.len();
        if n < 2 {
            return (0.0, 0.0);
        }
        let span = self.frames[n - 1] - self.frames[0];
        let worst =
            self.frames.iter().zip(self.frames.iter().skip(1)).map(|(a, b)| b - a).fold(0.0, f64::max);
        ((n - 1) as f64 * 1000.0 / span.max(1.0), worst)
    }

    /// Median and maximum time from a frame's arrival to the next drawing (ms).
    pub fn lag(&self) -> (f64, f64) {
        let mut v: Vec<f64> = self.lags.iter().copied().collect();
        if v.is_empty() {
            return (0.0, 0.0);
        }
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
    }
}
