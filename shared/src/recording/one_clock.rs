//! One clock for a recording: every event's `at` put on the recording's own time axis.
//!
//! Each server stamps its events with its own clock, which starts at 0 with the process, runs
//! `scale` times slower in slow motion, stands still while time is stopped and jumps when an
//! admin advances it. Drawn as they come, a restarted server's vote would seem to be granted
//! seconds after the leader counted it. A recording therefore keeps one clock: the proxy's,
//! counted from the recording's start (`t`).
//!
//! How each stamp is placed: a server's clock runs at a known rate between *discontinuities*
//! (the process starting again — its clock goes back or it reports `recovered` —, the clock
//! started or advanced, the time scale changed). Within such a stretch the clock's offset from
//! the proxy's is estimated as NTP does from its fastest round trip: an event can only reach the
//! proxy after it happened, so the smallest lag seen (`t` minus the stamp) is the closest to the
//! truth, and every stamp is placed at most that lag late — on loopback, well under a
//! millisecond. While a server's clock is stopped its stamps say nothing of real time, and its
//! events are placed when they reached the proxy. Placed times never go back for one server.
//!
//! Only `at` moves: an election timer's `deadline` moves with it, so `deadline - at` (what the
//! page draws, in the server's ms) is what the server meant.

use std::collections::BTreeMap;

use crate::event::{Event, Observed};
use crate::protocol::ProxyFrame;
use crate::raft::NodeId;

/// Places the stamps of the events of a recording on its clock, frame by frame, in order.
#[derive(Debug)]
pub struct OneClock {
    servers: BTreeMap<NodeId, ServerClock>,
    /// The cluster's time scale as last reported (server ms → real ms).
    scale: f64,
}

#[derive(Debug)]
struct ServerClock {
    last_at: u64,
    /// Recording time minus the stamp (scaled), least seen in this stretch.
    offset: f64,
    scale: f64,
    stopped: bool,
    last_placed: u64,
}

impl Default for OneClock {
    fn default() -> Self {
        OneClock { servers: BTreeMap::new(), scale: 1.0 }
    }
}

impl OneClock {
    pub fn new() -> OneClock {
        OneClock::default()
    }

    /// A frame published at recording time `t`: its events' stamps are moved onto the
    /// recording's clock; statuses tell the time scale.
    pub fn frame(&mut self, t: u64, frame: &mut ProxyFrame) {
        match frame {
            ProxyFrame::Events { events } => events.iter_mut().for_each(|o| self.place(t, o)),
            ProxyFrame::Status { cluster, .. } => self.scale = cluster.time_scale.max(0.001),
            ProxyFrame::Welcome { picture: Some(p), .. } => self.scale = p.cluster.time_scale.max(0.001),
            _ => {}
        }
    }

    /// The same, for a frame as encoded JSON: only `events` frames are decoded and encoded
    /// again (statuses are read for the time scale).
    pub fn frame_json(&mut self, t: u64, json: &str) -> Option<String> {
        let events = json.starts_with(r#"{"type":"events""#);
        let scale = json.starts_with(r#"{"type":"status""#) || json.starts_with(r#"{"type":"welcome""#);
        if !events && !scale {
            return None;
        }
        let mut frame: ProxyFrame = serde_json::from_str(json).ok()?;
        self.frame(t, &mut frame);
        events.then(|| crate::protocol::encode(&frame))
    }

    /// Moves one event's stamp (and what is counted from it) to recording time `t` or before.
    pub fn place(&mut self, t: u64, observed: &mut Observed) {
        if observed.node == 0 {
            // The proxy's own events (admin actions, alarms) happen when published.
            observed.at = t;
            return;
        }
        let scale = self.scale;
        let lag = t as f64 - observed.at as f64 * scale;
        let clock = self.servers.entry(observed.node).or_insert(ServerClock {
            last_at: observed.at,
            offset: lag,
            scale,
            stopped: false,
            last_placed: 0,
        });
        let jumped = observed.at < clock.last_at
            || clock.scale != scale
            || matches!(
                observed.event,
                Event::Recovered { .. } | Event::ClockStarted | Event::ClockAdvanced { .. }
            );
        if jumped {
            clock.offset = lag;
            clock.scale = scale;
        }
        clock.stopped = match observed.event {
            Event::ClockStopped => true,
            Event::ClockStarted | Event::Recovered { .. } => false,
            _ => clock.stopped,
        };
        clock.last_at = observed.at;
        let placed = if clock.stopped && !matches!(observed.event, Event::ClockStopped) {
            t
        } else {
            clock.offset = clock.offset.min(lag);
            (observed.at as f64 * scale + clock.offset).round().clamp(0.0, t as f64) as u64
        };
        let placed = placed.max(clock.last_placed);
        clock.last_placed = placed;
        let shift = placed as i128 - observed.at as i128;
        observed.at = placed;
        if let Event::ElectionTimerReset { deadline, .. } = &mut observed.event {
            *deadline = (*deadline as i128 + shift).max(0) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RoleReason;
    use crate::raft::Role;

    fn vote(candidate: NodeId) -> Event {
        Event::VoteGranted { candidate, term: 2, pre_vote: false }
    }

    fn placed(clock: &mut OneClock, t: u64, node: NodeId, at: u64, event: Event) -> Observed {
        let mut o = Observed { node, at, event };
        clock.place(t, &mut o);
        o
    }

    fn recovered() -> Event {
        Event::Recovered { term: 1, voted_for: None, snapshot_index: 0, last_index: 0 }
    }

    #[test]
    fn a_restarted_servers_clock_starting_at_zero_is_placed_after_its_earlier_life() {
        let mut clock = OneClock::new();
        // Node 1 started with the recording; it crashes at 60 s and starts again at 61 s.
        assert_eq!(placed(&mut clock, 1_001, 1, 1_000, vote(2)).at, 1_001, "1 ms late at most");
        assert_eq!(placed(&mut clock, 60_000, 1, 59_999, vote(2)).at, 60_000);
        assert_eq!(placed(&mut clock, 61_010, 1, 10, recovered()).at, 61_010);
        let granted = placed(&mut clock, 61_203, 1, 200, vote(3));
        // Node 3, which ran all along, counts that vote 2 ms after it was granted.
        placed(&mut clock, 100, 3, 100, Event::Admitted);
        let won = Event::RoleChanged {
            role: Role::Leader,
            term: 2,
            leader: Some(3),
            reason: RoleReason::ElectionWon { votes: 3 },
        };
        let counted = placed(&mut clock, 61_202, 3, 61_202, won);
        assert!(granted.at <= counted.at, "granted at {} before counted at {}", granted.at, counted.at);
        assert_eq!(granted.at, 61_200, "placed by the least lag of its new life (10 ms)");
    }

    #[test]
    fn slow_motion_stretches_stamps_and_a_timer_keeps_its_meaning() {
        let mut clock = OneClock::new();
        clock.scale = 10.0;
        placed(&mut clock, 5_000, 2, 500, Event::Admitted);
        let timer =
            placed(&mut clock, 6_000, 2, 600, Event::ElectionTimerReset { deadline: 800, timeout: 200 });
        assert_eq!(timer.at, 6_000);
        let Event::ElectionTimerReset { deadline, .. } = timer.event else { unreachable!() };
        assert_eq!(deadline - timer.at, 200, "still 200 ms of the server's clock to go");
    }

    #[test]
    fn while_a_clock_is_stopped_events_are_placed_when_they_arrive_and_never_go_back() {
        let mut clock = OneClock::new();
        placed(&mut clock, 1_000, 1, 1_000, Event::ClockStopped);
        let a = placed(&mut clock, 5_000, 1, 1_000, vote(2));
        let b = placed(&mut clock, 9_000, 1, 1_000, vote(3));
        assert_eq!((a.at, b.at), (5_000, 9_000));
        let started = placed(&mut clock, 12_000, 1, 1_000, Event::ClockStarted);
        assert_eq!(started.at, 12_000);
        assert_eq!(placed(&mut clock, 12_500, 1, 1_500, vote(2)).at, 12_500);
        // An event whose stamp would fall earlier than one already placed is held at it.
        let mut later = OneClock::new();
        placed(&mut later, 1_000, 4, 900, vote(1));
        // A faster arrival lowers the offset: this stamp alone would be placed at 940.
        assert_eq!(placed(&mut later, 940, 4, 920, vote(1)).at, 1_000);
    }

    #[test]
    fn only_events_frames_are_encoded_again() {
        let mut clock = OneClock::new();
        assert_eq!(clock.frame_json(5, r#"{"type":"log","entries":[]}"#), None);
        let events = crate::protocol::encode(&ProxyFrame::Events {
            events: vec![Observed {
                node: 0,
                at: 0,
                event: Event::Fault { description: "heal".into(), description_es: None },
            }],
        });
        let again = clock.frame_json(7, &events).expect("events are placed");
        assert!(again.contains(r#""at":7"#), "{again}");
    }
}
