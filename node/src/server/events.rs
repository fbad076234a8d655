//! Observation events on their way from a server to its observers (the proxy's monitor, its
//! recorder, the pages): gathered into frames so that a busy server sends a few a second per
//! writer instead of one per write, with every event and its own time kept.

use std::time::{Duration, Instant};

use shared::event::{Event, Observed};
use shared::raft::{Millis, NodeId};

/// The events waiting to go out, each stamped with the time it happened. A frame leaves at
/// most `WINDOW` after its first event, and at once when it holds a change of role.
#[derive(Default)]
pub struct EventBatch {
    pending: Vec<Observed>,
    since: Option<Instant>,
    /// The batch holds news the proxy routes by (a change of role): it goes out this turn.
    urgent: bool,
    frames: u64,
}

impl EventBatch {
    /// Short enough to be invisible on a page (a third of a 60 Hz frame), long enough to
    /// gather several writes' events at a thousand writes a second.
    pub const WINDOW: Duration = Duration::from_millis(5);

    pub fn add(&mut self, node: NodeId, at: Millis, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        // A new leader is what the proxy's waiting writes wait for (`shared::proxy::wait::settle`).
        self.urgent |= events.iter().any(|e| matches!(e, Event::RoleChanged { .. }));
        self.pending.extend(events.drain(..).map(|event| Observed { node, at, event }));
    }

    /// When the pending events must go out.
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|since| if self.urgent { since } else { since + Self::WINDOW })
    }

    pub fn flush(&mut self, shared: &super::Shared) {
        if self.pending.is_empty() {
            return;
        }
        self.frames += 1;
        self.since = None;
        self.urgent = false;
        shared.publish(std::mem::take(&mut self.pending), self.frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_wait_a_few_milliseconds_unless_a_change_of_role_is_among_them() {
        use shared::event::RoleReason;
        let mut batch = EventBatch::default();
        batch.add(1, 0, &mut vec![Event::ClockStopped]);
        let due = batch.due().unwrap();
        assert!(due > Instant::now(), "routine events wait for the window");
        let won = Event::RoleChanged {
            role: shared::raft::Role::Leader,
            term: 2,
            leader: Some(1),
            reason: RoleReason::ElectionWon { votes: 2 },
        };
        batch.add(1, 0, &mut vec![won]);
        assert!(batch.due().unwrap() <= Instant::now(), "a new leader goes out at once");
    }
}
