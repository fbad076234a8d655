//! Events on their way to pages: batched into one frame per display frame, and routine
//! traffic sampled.
//!
//! A 7-server cluster sends thousands of heartbeats and acknowledgements a second; a page can
//! draw a few dozen messages at once and a person can follow fewer. So pages get every event
//! that changes something (roles, votes, entries, commits, snapshots, reads, faults) and, per
//! link and kind of message, at most one routine message (heartbeat, append, acknowledgement)
//! every `ROUTINE_EVERY` — plus the true message rate in the status. In slow motion nothing is
//! dropped: messages are rarer than the limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::event::{Event, Observed};
use shared::raft::{MessageKind, NodeId};

/// Routine messages per link and kind shown at most this often.
const ROUTINE_EVERY: Duration = Duration::from_millis(150);
/// Election timer resets per server shown at most this often (the status corrects the rest).
const TIMER_EVERY: Duration = Duration::from_millis(100);
/// The window over which the message rate is counted.
const RATE_WINDOW: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct Fanout {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: Vec<Observed>,
    last_message: HashMap<(NodeId, NodeId, MessageKind), Instant>,
    last_timer: HashMap<NodeId, Instant>,
    /// Every message sent, counted per 100 ms slot over the rate window.
    counts: Vec<(Instant, u64)>,
}

fn routine(kind: MessageKind) -> bool {
    matches!(kind, MessageKind::Heartbeat | MessageKind::AppendEntries | MessageKind::AppendResponse)
}

impl Fanout {
    /// Takes a server's events: keeps what pages should see, counts every message.
    pub fn offer(&self, events: &[Observed]) {
        let now = Instant::now();
        let mut s = self.state.lock().expect("fanout lock");
        let mut messages = 0;
        for observed in events {
            let keep = match &observed.event {
                Event::MessageSent { to, kind, .. } => {
                    messages += 1;
                    !routine(*kind)
                        || due(&mut s.last_message, (observed.node, *to, *kind), now, ROUTINE_EVERY)
                }
                Event::ElectionTimerReset { .. } => due(&mut s.last_timer, observed.node, now, TIMER_EVERY),
                _ => true,
            };
            if keep {
                s.pending.push(observed.clone());
            }
        }
        match s.counts.last_mut() {
            Some((slot, n)) if now.duration_since(*slot) < Duration::from_millis(100) => *n += messages,
            _ => s.counts.push((now, messages)),
        }
        s.counts.retain(|(slot, _)| now.duration_since(*slot) <= RATE_WINDOW);
    }

    /// The events gathered since the last call.
    pub fn take(&self) -> Vec<Observed> {
        std::mem::take(&mut self.state.lock().expect("fanout lock").pending)
    }

    /// Messages sent per second across the cluster, all of them (not just those shown).
    pub fn message_rate(&self) -> f64 {
        let s = self.state.lock().expect("fanout lock");
        let now = Instant::now();
        let total: u64 = s
            .counts
            .iter()
            .filter(|(slot, _)| now.duration_since(*slot) <= RATE_WINDOW)
            .map(|(_, n)| n)
            .sum();
        total as f64 / RATE_WINDOW.as_secs_f64()
    }
}

fn due<K: std::hash::Hash + Eq>(
    last: &mut HashMap<K, Instant>,
    key: K,
    now: Instant,
    every: Duration,
) -> bool {
    match last.get(&key) {
        Some(t) if now.duration_since(*t) < every => false,
        _ => {
            last.insert(key, now);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::event::MessageDetail;

    fn sent(node: NodeId, to: NodeId, kind: MessageKind) -> Observed {
        Observed {
            node,
            at: 0,
            event: Event::MessageSent { to, kind, term: 1, detail: MessageDetail::default() },
        }
    }

    #[test]
    fn routine_traffic_is_sampled_and_the_rest_passes() {
        let f = Fanout::default();
        let burst: Vec<Observed> = (0..50).map(|_| sent(1, 2, MessageKind::Heartbeat)).collect();
        f.offer(&burst);
        f.offer(&[
            sent(1, 2, MessageKind::RequestVote),
            sent(1, 2, MessageKind::RequestVote),
            sent(1, 3, MessageKind::Heartbeat),
        ]);
        let kept = f.take();
        let heartbeats = kept
            .iter()
            .filter(|o| matches!(o.event, Event::MessageSent { kind: MessageKind::Heartbeat, .. }))
            .count();
        let votes = kept
            .iter()
            .filter(|o| matches!(o.event, Event::MessageSent { kind: MessageKind::RequestVote, .. }))
            .count();
        assert_eq!((heartbeats, votes), (2, 2), "one heartbeat per link; every vote request");
        assert!(f.take().is_empty());
        assert!(f.message_rate() >= 53.0 / 2.0 - 0.01);
    }
}
