//! The requests a proxy completed over the last seconds: rates and latency percentiles for
//! the status.

use std::collections::VecDeque;

use crate::protocol::RequestStats;
use crate::raft::Millis;

/// Completed requests over the last `WINDOW_MS`, for rates and latency percentiles.
#[derive(Debug, Default)]
pub(crate) struct StatsWindow {
    done: VecDeque<(Millis, bool, Millis)>,
}

const WINDOW_MS: Millis = 2_000;
/// Samples kept at most; beyond this rate the percentiles come from the newest ones.
const MAX_SAMPLES: usize = 50_000;

impl StatsWindow {
    pub fn record(&mut self, is_write: bool, started: Millis, now: Millis) {
        self.done.push_back((now, is_write, now.saturating_sub(started)));
        while self.done.len() > MAX_SAMPLES || self.done.front().is_some_and(|(t, _, _)| now - *t > WINDOW_MS)
        {
            self.done.pop_front();
        }
    }

    pub fn summary(&self, now: Millis) -> RequestStats {
        let recent = self.done.iter().filter(|(t, _, _)| now.saturating_sub(*t) <= WINDOW_MS);
        let (mut writes, mut reads): (Vec<Millis>, Vec<Millis>) = (Vec::new(), Vec::new());
        for (_, is_write, ms) in recent {
            if *is_write { writes.push(*ms) } else { reads.push(*ms) }
        }
        let pct = |v: &mut Vec<Millis>, q: f64| {
            if v.is_empty() {
                return 0.0;
            }
            v.sort_unstable();
            v[((v.len() - 1) as f64 * q).round() as usize] as f64
        };
        let secs = WINDOW_MS as f64 / 1000.0;
        RequestStats {
            writes_per_s: writes.len() as f64 / secs,
            reads_per_s: reads.len() as f64 / secs,
            write_p50_ms: pct(&mut writes, 0.5),
            write_p99_ms: pct(&mut writes, 0.99),
            read_p50_ms: pct(&mut reads, 0.5),
        }
    }
}
