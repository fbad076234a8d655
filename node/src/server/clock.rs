//! The server's clock: real time, stretched by the time scale, that a lecturer can stop and
//! step.
//!
//! The Raft core takes time as an input. Feeding it real milliseconds divided by a scale makes
//! every timeout, heartbeat and election last `scale` times longer — slow motion for a lecture —
//! without the core knowing. Stopping the clock stops every timer (and, through the network
//! queue, every message); advancing it jumps to a chosen moment, firing what came due. The
//! clock never goes backwards.

use std::time::{Duration, Instant};

use shared::raft::Millis;

pub struct Clock {
    real_base: Instant,
    virtual_base: f64,
    scale: f64,
    stopped: bool,
}

impl Clock {
    pub fn new(scale: f64) -> Clock {
        Clock { real_base: Instant::now(), virtual_base: 0.0, scale: sanitize(scale), stopped: false }
    }

    fn exact(&self) -> f64 {
        if self.stopped {
            self.virtual_base
        } else {
            self.virtual_base + self.real_base.elapsed().as_secs_f64() * 1000.0 / self.scale
        }
    }

    pub fn now(&self) -> Millis {
        self.exact() as Millis
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Changes the scale from now on, keeping the reading continuous.
    pub fn set_scale(&mut self, scale: f64) {
        self.rebase();
        self.scale = sanitize(scale);
    }

    /// Stops the clock: it keeps its reading until started or advanced.
    pub fn stop(&mut self) {
        self.rebase();
        self.stopped = true;
    }

    pub fn start(&mut self) {
        self.rebase();
        self.stopped = false;
    }

    /// Moves the reading forward by `ms` at once.
    pub fn advance(&mut self, ms: Millis) {
        self.rebase();
        self.virtual_base += ms as f64;
    }

    fn rebase(&mut self) {
        self.virtual_base = self.exact();
        self.real_base = Instant::now();
    }

    /// Real time until the clock reads `deadline`; `None` while it is stopped (never).
    pub fn until(&self, deadline: Millis) -> Option<Duration> {
        if self.stopped {
            return None;
        }
        let left = (deadline as f64 - self.exact()).max(0.0);
        Some(Duration::from_secs_f64(left * self.scale / 1000.0))
    }

    /// Real time that `ms` of this clock take at the current scale.
    pub fn real(&self, ms: Millis) -> Duration {
        Duration::from_secs_f64(ms as f64 * self.scale / 1000.0)
    }
}

/// Scales outside 0.1–1000 make no sense for a demo and would overflow or spin.
pub fn sanitize(scale: f64) -> f64 {
    if scale.is_finite() { scale.clamp(0.1, 1000.0) } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_stretches_time_and_stays_continuous() {
        let mut c = Clock::new(1.0);
        let before = c.now();
        c.set_scale(100.0);
        assert!(c.now() >= before, "never goes backwards");
        let until = c.until(c.now() + 10).expect("running");
        assert!(
            until <= Duration::from_secs(1) && until > Duration::from_millis(900),
            "10 ms at ×100 is a second"
        );
        assert_eq!(sanitize(f64::NAN), 1.0);
        assert_eq!(sanitize(0.0), 0.1);
    }

    #[test]
    fn a_stopped_clock_holds_its_reading_and_advances_only_when_told() {
        let mut c = Clock::new(1.0);
        c.stop();
        let at = c.now();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.now(), at, "nothing moves while stopped");
        assert_eq!(c.until(at + 5), None, "no deadline comes");
        c.advance(150);
        assert_eq!(c.now(), at + 150);
        c.start();
        assert!(c.now() >= at + 150);
        assert!(c.until(c.now() + 50).is_some());
    }
}
