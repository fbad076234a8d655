//! The server's clock: real time, stretched by the time scale.
//!
//! The Raft core takes time as an input. Feeding it real milliseconds divided by a scale makes
//! every timeout, heartbeat and election last `scale` times longer — slow motion for a lecture —
//! without the core knowing. Changing the scale keeps the clock continuous.

use std::time::{Duration, Instant};

use shared::raft::Millis;

pub struct Clock {
    real_base: Instant,
    virtual_base: f64,
    scale: f64,
}

impl Clock {
    pub fn new(scale: f64) -> Clock {
        Clock { real_base: Instant::now(), virtual_base: 0.0, scale: sanitize(scale) }
    }

    pub fn now(&self) -> Millis {
        (self.virtual_base + self.real_base.elapsed().as_secs_f64() * 1000.0 / self.scale) as Millis
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    pub fn set_scale(&mut self, scale: f64) {
        self.virtual_base += self.real_base.elapsed().as_secs_f64() * 1000.0 / self.scale;
        self.real_base = Instant::now();
        self.scale = sanitize(scale);
    }

    /// Real time until the clock reads `deadline`.
    pub fn until(&self, deadline: Millis) -> Duration {
        let now = self.now();
        Duration::from_secs_f64(deadline.saturating_sub(now) as f64 * self.scale / 1000.0)
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
        assert_eq!(c.until(c.now() + 10), Duration::from_secs(1), "10 ms at ×100 is a second");
        assert_eq!(sanitize(f64::NAN), 1.0);
        assert_eq!(sanitize(0.0), 0.1);
    }
}
