//! The Raft loop's side of the network: every outgoing message waits in a
//! `shared::transit::Transit` until its delivery time on this server's clock, then goes to its
//! peer's link — or is reported lost, with the reason, when the link is cut or down.
//!
//! While the clock is stopped nothing comes due: messages are *held*. A step releases one to
//! travel for a short, visible while in real time (`STEP_TRAVEL_*`), so that a page draws it
//! arriving when it does arrive.
//!
//! Observers are told about every message in slow motion or with time stopped; at real speed,
//! thousands of heartbeats and appends a second are more than anyone can watch or a proxy
//! should parse, so routine traffic is reported at most once per link and kind every
//! `ROUTINE_EVERY`, and the true count travels in the status.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::event::{Event, LossReason};
use shared::protocol::{HELD_LISTED, HeldMessage};
use shared::raft::{Message, MessageId, MessageKind, Millis, NodeId};
use shared::transit::{InTransit, NetworkPolicy, Transit};

use super::clock::Clock;

/// A released message travels at least this long in real time, so that it can be seen…
const STEP_TRAVEL_MIN: Duration = Duration::from_millis(300);
/// …and at most this long, so that steps stay brisk.
const STEP_TRAVEL_MAX: Duration = Duration::from_millis(900);
/// At real speed, routine messages per link and kind reported at most this often.
const ROUTINE_EVERY: Duration = Duration::from_millis(100);
/// Slower than this, every message is reported.
const REPORT_ALL_FROM_SCALE: f64 = 2.0;
/// Reported messages remembered, so that their loss or step is reported too.
const REPORTED_KEPT: usize = 8_192;

/// One outgoing link as the Raft loop sees it.
pub use super::peers::LinkSender as Link;

pub struct Outbox {
    transit: Transit,
    pub policy: NetworkPolicy,
    links: BTreeMap<NodeId, Link>,
    /// Released by a step: due at a real instant, whatever the clock says.
    travelling: Vec<(Instant, InTransit)>,
    reporting: Reporting,
}

/// Which message events go to observers (see the module documentation).
#[derive(Default)]
struct Reporting {
    last: HashMap<(NodeId, MessageKind), Instant>,
    reported: HashSet<MessageId>,
    order: VecDeque<MessageId>,
    /// Every message sent, reported or not.
    sent: u64,
}

impl Reporting {
    fn keep(&mut self, event: &Event, every: bool) -> bool {
        match event {
            Event::MessageSent { id, to, message, .. } => {
                self.sent += 1;
                let kind = message.kind();
                let now = Instant::now();
                let due =
                    self.last.get(&(*to, kind)).is_none_or(|at| now.duration_since(*at) >= ROUTINE_EVERY);
                let keep = every || !kind.is_routine() || due;
                if keep {
                    self.last.insert((*to, kind), now);
                    if self.reported.insert(*id) {
                        self.order.push_back(*id);
                        if self.order.len() > REPORTED_KEPT {
                            let old = self.order.pop_front().expect("not empty");
                            self.reported.remove(&old);
                        }
                    }
                }
                keep
            }
            Event::MessageLost { id, .. } | Event::MessageStepped { id, .. } => self.reported.contains(id),
            _ => true,
        }
    }
}

impl Outbox {
    /// Whether messages to `peer` have a way out.
    pub fn has_link(&self, peer: NodeId) -> bool {
        self.links.contains_key(&peer)
    }

    /// A way out to a server that joined the configuration.
    pub fn add_link(&mut self, peer: NodeId, link: Link) {
        self.links.insert(peer, link);
    }

    pub fn new(seed: u64, policy: NetworkPolicy, links: BTreeMap<NodeId, Link>) -> Outbox {
        Outbox {
            transit: Transit::new(seed),
            policy,
            links,
            travelling: Vec::new(),
            reporting: Reporting::default(),
        }
    }

    /// Messages sent since the start, reported to observers or not.
    pub fn sent(&self) -> u64 {
        self.reporting.sent
    }

    /// Takes messages from the core and sends at once those already due (zero latency).
    pub fn send(&mut self, clock: &Clock, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let now = clock.now();
        let stamp = wall_ms();
        for msg in messages {
            self.transit.send(now, stamp, msg, &self.policy);
        }
        self.dispatch(clock);
    }

    /// Hands every message that is due to its link. While the clock is stopped nothing is due,
    /// not even a message sent with no latency at all: it is held.
    pub fn dispatch(&mut self, clock: &Clock) {
        if !clock.is_stopped() {
            for t in self.transit.due(clock.now()) {
                self.deliver(t.message);
            }
        }
        if !self.travelling.is_empty() {
            let now = Instant::now();
            let (arrived, still): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.travelling).into_iter().partition(|(at, _)| *at <= now);
            self.travelling = still;
            for (_, t) in arrived {
                self.deliver(t.message);
            }
        }
    }

    /// The link's verdict at delivery time: a partition that began meanwhile, or a peer that is
    /// not connected, loses the message.
    fn deliver(&mut self, msg: Message) {
        let Some(link) = self.links.get(&msg.to) else { return };
        if self.policy.blocked_to.contains(&msg.to) {
            return self.transit.lost(&msg, LossReason::Partition);
        }
        if let Err(lost) = link.send(msg) {
            let (unsent, reason) = *lost;
            self.transit.lost(&unsent, reason);
        }
    }

    /// Real time until something here comes due.
    pub fn next_wake(&self, clock: &Clock) -> Option<Duration> {
        let by_clock = self.transit.next_due().and_then(|due| clock.until(due));
        let by_step =
            self.travelling.iter().map(|(at, _)| at.saturating_duration_since(Instant::now())).min();
        match (by_clock, by_step) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Releases held messages to travel now; returns (id, real ms of travel) for each found.
    pub fn release(&mut self, clock: &Clock, ids: &[MessageId]) -> Vec<(MessageId, u64)> {
        let now = clock.now();
        let mut acted = Vec::new();
        for id in ids {
            let Some(remaining) =
                self.transit.queued().iter().find(|t| t.message.id == *id).map(|t| t.due.saturating_sub(now))
            else {
                continue;
            };
            let travel = clock.real(remaining).clamp(STEP_TRAVEL_MIN, STEP_TRAVEL_MAX);
            if let Some(t) = self.transit.release(*id, travel.as_millis() as u64) {
                acted.push((*id, travel.as_millis() as u64));
                self.travelling.push((Instant::now() + travel, t));
            }
        }
        acted
    }

    pub fn drop_messages(&mut self, ids: &[MessageId]) -> Vec<(MessageId, u64)> {
        ids.iter().filter(|id| self.transit.drop_message(**id)).map(|id| (*id, 0)).collect()
    }

    /// A message from a peer this server is cut off from: lost at the receiving end.
    pub fn lost_on_arrival(&mut self, msg: &Message) {
        self.transit.lost(msg, LossReason::Partition);
    }

    pub fn held_count(&self) -> usize {
        self.transit.len()
    }

    /// Held messages, oldest first, at most `HELD_LISTED`.
    pub fn held(&self) -> Vec<HeldMessage> {
        self.transit.queued().into_iter().take(HELD_LISTED).map(HeldMessage::from).collect()
    }

    /// The events observers should get (every message while the clock is stopped or slow).
    pub fn take_events(&mut self, clock: &Clock) -> Vec<Event> {
        let every = clock.is_stopped() || clock.scale() >= REPORT_ALL_FROM_SCALE;
        let mut events = self.transit.take_events();
        events.retain(|e| self.reporting.keep(e, every));
        events
    }
}

/// Wall-clock milliseconds: only to order held messages of different servers for people.
fn wall_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}
