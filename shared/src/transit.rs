//! Messages on their way: the network as one sender sees it.
//!
//! Every message a server sends goes through its `Transit`, which gives it an id, draws its
//! one-way delay (latency, jitter, injected delay) and keeps it until its delivery time on the
//! *sender's* clock comes. That makes time in the network the cluster's time: slow motion
//! stretches a message's journey like every timeout, and when the sender's clock stops, its
//! messages stop too — they are *held* until a step releases one or the clock runs again.
//!
//! Each message's journey is reported as events (`MessageSent` with its delay, then
//! `MessageStepped` or `MessageLost`), so that what a page draws is what the network does.
//!
//! Sans-IO like the core: no clock, no sockets. The node's server loop drives it with its
//! clock and hands due messages to the peer links; a simulator can drive it with virtual time.

use std::collections::BTreeMap;

use crate::event::{Event, LossReason, message_sent};
use serde::{Deserialize, Serialize};

use crate::event::MessageSummary;
use crate::raft::{Message, MessageId, MessageKind, Millis, NodeId, Term};
use crate::rng::Rng;

/// Messages a sender keeps at most. Beyond this (a stopped clock under a flood of client
/// requests) new messages are lost with `LossReason::Overflow` instead of exhausting memory.
pub const TRANSIT_LIMIT: usize = 20_000;

/// Held messages listed in a status at most.
pub const HELD_LISTED: usize = 100;

/// A message waiting in its sender's network queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMessage {
    pub id: MessageId,
    pub from: NodeId,
    pub to: NodeId,
    pub kind: MessageKind,
    pub term: Term,
    pub message: MessageSummary,
    /// When it left and when it arrives, on the sender's clock.
    pub sent_at: Millis,
    pub due: Millis,
    /// Wall-clock milliseconds at sending, for ordering messages of different senders.
    pub stamp: u64,
}

impl HeldMessage {
    /// Sorts held messages of every server in the order they were sent.
    pub fn send_order(&self) -> (u64, NodeId, MessageId) {
        (self.stamp, self.from, self.id)
    }
}

/// What the network does to one server's outgoing messages, in numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkPolicy {
    /// One-way latency of every message, in ms of the sender's clock.
    pub latency: Millis,
    /// Each message takes up to this much longer (uniformly), so messages may overtake each
    /// other, as Raft allows.
    pub jitter: Millis,
    /// Injected extra delay (the `delay` fault).
    pub extra_delay: Millis,
    /// Injected random loss, in parts per million.
    pub drop_ppm: u32,
    /// Peers whose link from here is cut.
    pub blocked_to: Vec<NodeId>,
}

/// A message the network holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InTransit {
    pub message: Message,
    /// When it left, on the sender's clock.
    pub sent_at: Millis,
    /// When it arrives, on the sender's clock.
    pub due: Millis,
    /// The driver's ordering stamp at sending (the node uses wall-clock milliseconds), so that
    /// held messages of different senders can be listed in send order.
    pub stamp: u64,
}

#[derive(Debug)]
pub struct Transit {
    next_id: MessageId,
    queue: BTreeMap<(Millis, MessageId), InTransit>,
    rng: Rng,
    events: Vec<Event>,
}

impl Transit {
    /// Message ids start at a point drawn from `seed`, below 2^52 so that they stay exact in
    /// every JSON tool, and far apart between servers and restarts.
    pub fn new(seed: u64) -> Transit {
        let mut rng = Rng::new(seed);
        let next_id = (rng.next_u64() >> 12).max(1);
        Transit { next_id, queue: BTreeMap::new(), rng, events: Vec::new() }
    }

    /// Takes a message from the core at `now`: numbers it, reports it, and either queues it
    /// or loses it at once (a cut link, random loss, a full queue).
    pub fn send(&mut self, now: Millis, stamp: u64, mut message: Message, policy: &NetworkPolicy) {
        message.id = self.next_id;
        self.next_id += 1;
        let jitter = if policy.jitter > 0 { self.rng.below(policy.jitter + 1) } else { 0 };
        let delay = policy.latency + jitter + policy.extra_delay;
        self.events.push(message_sent(&message, delay));
        let lost = if policy.blocked_to.contains(&message.to) {
            Some(LossReason::Partition)
        } else if policy.drop_ppm > 0 && self.rng.chance(policy.drop_ppm) {
            Some(LossReason::RandomLoss)
        } else if self.queue.len() >= TRANSIT_LIMIT {
            Some(LossReason::Overflow)
        } else {
            None
        };
        if let Some(reason) = lost {
            return self.lost(&message, reason);
        }
        let due = now + delay;
        let key = (due, message.id);
        debug_assert!(!self.queue.contains_key(&key), "message ids are unique");
        self.queue.insert(key, InTransit { message, sent_at: now, due, stamp });
    }

    /// Removes and returns the messages due at `now`, earliest first.
    pub fn due(&mut self, now: Millis) -> Vec<InTransit> {
        let mut out = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
        out
    }

    /// The next delivery time, if anything is queued.
    pub fn next_due(&self) -> Option<Millis> {
        self.queue.keys().next().map(|(due, _)| *due)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Everything queued, in the order it was sent.
    pub fn queued(&self) -> Vec<&InTransit> {
        let mut all: Vec<&InTransit> = self.queue.values().collect();
        all.sort_by_key(|t| t.message.id);
        all
    }

    fn find(&self, id: MessageId) -> Option<(Millis, MessageId)> {
        self.queue.iter().find(|(_, t)| t.message.id == id).map(|(k, _)| *k)
    }

    /// Takes a queued message out to deliver it now, after `travel_ms` of real time (a step).
    pub fn release(&mut self, id: MessageId, travel_ms: u64) -> Option<InTransit> {
        let taken = self.queue.remove(&self.find(id)?)?;
        self.events.push(Event::MessageStepped { id, to: taken.message.to, travel_ms });
        Some(taken)
    }

    /// Removes a queued message for good (an admin dropped it). False if it is not here.
    pub fn drop_message(&mut self, id: MessageId) -> bool {
        match self.find(id).and_then(|key| self.queue.remove(&key)) {
            Some(taken) => {
                self.lost(&taken.message, LossReason::Dropped);
                true
            }
            None => false,
        }
    }

    /// Reports a message as lost (also for the driver's own verdicts at delivery time).
    pub fn lost(&mut self, message: &Message, reason: LossReason) {
        self.events.push(Event::MessageLost { from: message.from, id: message.id, to: message.to, reason });
    }

    /// The events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

impl From<&InTransit> for HeldMessage {
    fn from(t: &InTransit) -> HeldMessage {
        let summary = crate::event::MessageSummary::of(&t.message.body);
        HeldMessage {
            id: t.message.id,
            from: t.message.from,
            to: t.message.to,
            kind: summary.kind(),
            term: t.message.term,
            message: summary,
            sent_at: t.sent_at,
            due: t.due,
            stamp: t.stamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Body;

    fn msg(to: NodeId) -> Message {
        Message { id: 0, from: 1, to, term: 1, body: Body::TimeoutNow }
    }

    #[test]
    fn messages_arrive_after_their_delay_on_the_senders_clock() {
        let mut t = Transit::new(7);
        let policy = NetworkPolicy { latency: 15, ..NetworkPolicy::default() };
        t.send(100, 0, msg(2), &policy);
        t.send(101, 1, msg(3), &policy);
        assert!(t.due(114).is_empty());
        assert_eq!(t.next_due(), Some(115));
        let due = t.due(115);
        assert_eq!(due.len(), 1, "only the first is due at 115");
        assert_eq!(due[0].message.to, 2);
        assert_eq!(t.due(200).len(), 1);
        let events = t.take_events();
        assert!(matches!(events[0], Event::MessageSent { delay: 15, .. }));
    }

    #[test]
    fn a_zero_delay_message_is_due_at_once() {
        let mut t = Transit::new(1);
        t.send(5, 0, msg(2), &NetworkPolicy::default());
        assert_eq!(t.due(5).len(), 1);
    }

    #[test]
    fn ids_are_distinct_and_increase_in_send_order() {
        let mut t = Transit::new(3);
        for to in [2, 3, 2] {
            t.send(0, 0, msg(to), &NetworkPolicy { latency: 10, ..NetworkPolicy::default() });
        }
        let ids: Vec<MessageId> = t.queued().iter().map(|m| m.message.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(ids.iter().all(|id| *id < 1 << 52));
    }

    #[test]
    fn cut_links_and_random_loss_lose_messages_at_sending() {
        let mut t = Transit::new(9);
        let cut = NetworkPolicy { blocked_to: vec![2], ..NetworkPolicy::default() };
        t.send(0, 0, msg(2), &cut);
        assert!(t.is_empty());
        let all_lost = NetworkPolicy { drop_ppm: 1_000_000, ..NetworkPolicy::default() };
        t.send(0, 0, msg(3), &all_lost);
        assert!(t.is_empty());
        let reasons: Vec<LossReason> = t
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::MessageLost { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, vec![LossReason::Partition, LossReason::RandomLoss]);
    }

    #[test]
    fn a_held_message_can_be_released_or_dropped_by_id() {
        let mut t = Transit::new(4);
        let policy = NetworkPolicy { latency: 50, ..NetworkPolicy::default() };
        t.send(0, 0, msg(2), &policy);
        t.send(0, 0, msg(3), &policy);
        let ids: Vec<MessageId> = t.queued().iter().map(|m| m.message.id).collect();
        let released = t.release(ids[0], 300).expect("queued");
        assert_eq!(released.message.to, 2);
        assert!(t.release(ids[0], 300).is_none(), "only once");
        assert!(t.drop_message(ids[1]));
        assert!(!t.drop_message(ids[1]));
        assert!(t.is_empty());
        let events = t.take_events();
        assert!(events.iter().any(|e| matches!(e, Event::MessageStepped { travel_ms: 300, .. })));
        assert!(events.iter().any(|e| matches!(e, Event::MessageLost { reason: LossReason::Dropped, .. })));
    }
}
