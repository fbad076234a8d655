//! Messages on their way, as the page draws them — the same journeys the servers' network
//! queues make.
//!
//! A message leaves its sender when its `MessageSent` event says, and travels for the delay
//! the event carries (cluster milliseconds, stretched by the time scale into real ones), so it
//! is drawn arriving when it is delivered. While its sender's clock is stopped (or its process
//! paused) it does not move: it is held, drawn as a parked envelope. A step releases it for the
//! travel time its `MessageStepped` event gives. A `MessageLost` event shows it lost, where it
//! was lost and why. A reply never leaves before the request it answers has arrived on screen.
//!
//! At real speed messages take microseconds; a journey shorter than `TRUE_SPEED_FROM_MS` is
//! drawn for `IMPRESSION_MS` instead, as an impression (and the page says so), since nobody
//! could see it otherwise. From ×7 slow motion on, the automatic latency (a tenth of the
//! election timeout) is long enough to be drawn at its true speed.

use std::collections::VecDeque;

use shared::event::{LossReason, MessageSummary};
use shared::raft::{MessageId, MessageKind, Millis, NodeId, Term};

/// The shortest journey drawn at its true speed (six frames)…
pub const TRUE_SPEED_FROM_MS: f64 = 100.0;
/// …shorter ones are drawn this long, marked as not to scale.
pub const IMPRESSION_MS: f64 = 450.0;

/// How long a journey of `real` ms is drawn, and whether that is its true length.
fn drawn_for(real: f64) -> (f64, bool) {
    if real >= TRUE_SPEED_FROM_MS { (real, true) } else { (IMPRESSION_MS, false) }
}
/// How long a lost message stays on screen, fading, with its reason.
pub const LOST_SHOWN_MS: f64 = 1_800.0;
/// Messages drawn at once; beyond this the page shows a sample and the rate.
pub const MAX_FLIGHTS: usize = 80;
/// A held message younger than this may not be in a status yet.
const STATUS_GRACE_MS: f64 = 1_500.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Journey {
    /// On its way (or held, while its sender's clock stands still).
    Flying,
    /// Released by a step at `start`: arrives `travel` ms later, from where it was parked.
    Stepped { start: f64, travel: f64, from: f64 },
    /// Lost at page time `at`, drawn at `progress` along its way.
    Lost { at: f64, progress: f64, reason: LossReason },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flight {
    pub from: NodeId,
    pub to: NodeId,
    pub id: MessageId,
    pub term: Term,
    pub kind: MessageKind,
    pub message: MessageSummary,
    /// Progress (0–1) reached at page time `since`.
    pub progress: f64,
    pub since: f64,
    /// Real milliseconds the whole journey takes while the sender's clock runs.
    pub duration: f64,
    /// Whether `duration` is the true one (not stretched to be visible).
    pub true_time: bool,
    /// Whether the sender's clock runs (else the message is held).
    pub moving: bool,
    pub journey: Journey,
    /// When the page learned of it.
    pub born: f64,
}

impl Flight {
    /// How far along its way the message is at page time `t`.
    pub fn progress_at(&self, t: f64) -> f64 {
        match self.journey {
            Journey::Lost { progress, .. } => progress,
            Journey::Stepped { start, travel, from } => {
                from + (1.0 - from) * ((t - start) / travel.max(1.0)).clamp(0.0, 1.0)
            }
            Journey::Flying if !self.moving => self.progress,
            Journey::Flying => {
                (self.progress + (t - self.since).max(0.0) / self.duration.max(1.0)).clamp(0.0, 1.0)
            }
        }
    }

    /// Held: waiting, not moving, in its sender's queue.
    pub fn held(&self) -> bool {
        self.journey == Journey::Flying && !self.moving
    }

    pub fn lost(&self) -> Option<LossReason> {
        match self.journey {
            Journey::Lost { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Page time at which it arrives, if it is moving towards arrival.
    fn arrival(&self) -> Option<f64> {
        match self.journey {
            Journey::Flying if self.moving => Some(self.since + (1.0 - self.progress) * self.duration),
            Journey::Stepped { start, travel, .. } => Some(start + travel),
            _ => None,
        }
    }

    fn still_shown(&self, t: f64, paused: impl Fn(NodeId) -> bool) -> bool {
        match self.journey {
            Journey::Lost { at, .. } => t - at < LOST_SHOWN_MS,
            _ => self.progress_at(t) < 1.0 || paused(self.to),
        }
    }

    fn freeze(&mut self, t: f64) {
        self.progress = self.progress_at(t);
        self.since = t;
    }
}

/// The request a reply answers, by kind.
fn answers(reply: MessageKind) -> Option<MessageKind> {
    Some(match reply {
        MessageKind::VoteResponse => MessageKind::RequestVote,
        MessageKind::PreVoteResponse => MessageKind::PreVote,
        MessageKind::AppendResponse => return None,
        MessageKind::SnapshotResponse => MessageKind::InstallSnapshot,
        MessageKind::ReadIndexResponse => MessageKind::ReadIndexRequest,
        _ => return None,
    })
}

fn is_append(kind: MessageKind) -> bool {
    matches!(kind, MessageKind::AppendEntries | MessageKind::Heartbeat)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flights {
    pub list: VecDeque<Flight>,
    /// Messages not drawn because too many were on screen.
    pub skipped: u64,
}

/// What the page knows of a message as it leaves.
pub struct Sent {
    pub from: NodeId,
    pub id: MessageId,
    pub to: NodeId,
    pub term: Term,
    pub message: MessageSummary,
    /// Delay in ms of the sender's clock.
    pub delay: Millis,
}

impl Flights {
    /// A message left at page time `t`; the cluster runs at `scale`; `moving`: the sender's
    /// clock runs.
    pub fn sent(&mut self, t: f64, sent: Sent, scale: f64, moving: bool) {
        if self.list.len() >= MAX_FLIGHTS {
            self.skipped += 1;
            return;
        }
        let real = sent.delay as f64 * scale.max(0.01);
        let (duration, true_time) = drawn_for(real);
        let kind = sent.message.kind();
        // A reply leaves once what it answers has arrived on screen.
        let answered = |f: &Flight| {
            f.from == sent.to
                && f.to == sent.from
                && (answers(kind) == Some(f.kind)
                    || (kind == MessageKind::AppendResponse && is_append(f.kind)))
        };
        let leaves = self.list.iter().filter(|f| answered(f)).filter_map(Flight::arrival).fold(t, f64::max);
        self.list.push_back(Flight {
            from: sent.from,
            to: sent.to,
            id: sent.id,
            term: sent.term,
            kind,
            message: sent.message,
            progress: 0.0,
            since: leaves,
            duration,
            true_time,
            moving,
            journey: Journey::Flying,
            born: t,
        });
    }

    /// Takes the servers' own list of held messages (a status): a page that opened after they
    /// were sent still draws them, parked where they are; held messages the servers no longer
    /// hold (their events were missed) go. `complete`: the list names every held message.
    pub fn held_by_servers(&mut self, t: f64, held: &[(Sent, f64)], scale: f64, complete: bool) {
        for (sent, progress) in held {
            if self.find(sent.from, sent.id).is_none() && self.list.len() < MAX_FLIGHTS {
                let (duration, true_time) = drawn_for(sent.delay as f64 * scale.max(0.01));
                self.list.push_back(Flight {
                    from: sent.from,
                    to: sent.to,
                    id: sent.id,
                    term: sent.term,
                    kind: sent.message.kind(),
                    message: sent.message,
                    progress: progress.clamp(0.0, 0.99),
                    since: t,
                    duration,
                    true_time,
                    moving: false,
                    journey: Journey::Flying,
                    born: t,
                });
            }
        }
        if complete {
            let listed = |f: &Flight| held.iter().any(|(s, _)| s.from == f.from && s.id == f.id);
            self.list.retain(|f| !f.held() || t - f.born < STATUS_GRACE_MS || listed(f));
        }
    }

    fn find_mut(&mut self, from: NodeId, id: MessageId) -> Option<&mut Flight> {
        self.list.iter_mut().find(|f| f.from == from && f.id == id)
    }

    pub fn find(&self, from: NodeId, id: MessageId) -> Option<&Flight> {
        self.list.iter().find(|f| f.from == from && f.id == id)
    }

    /// The message will not arrive: drawn where it was lost, with why.
    pub fn lost(&mut self, t: f64, from: NodeId, id: MessageId, reason: LossReason) {
        if let Some(f) = self.find_mut(from, id) {
            let now = f.progress_at(t);
            let progress = match reason {
                // The receiver was not there: the message got as far as its door (drawn just
                // before it, so that the cross does not sit on the server's name).
                LossReason::Unreachable => 0.8,
                // Cut or lost in the network: on the way.
                LossReason::Partition | LossReason::RandomLoss | LossReason::Overflow => now.max(0.45),
                LossReason::Dropped => now,
            };
            f.journey = Journey::Lost { at: t, progress, reason };
        }
    }

    /// A step released the message: it travels for `travel_ms` of real time.
    pub fn stepped(&mut self, t: f64, from: NodeId, id: MessageId, travel_ms: u64) {
        if let Some(f) = self.find_mut(from, id) {
            let at = f.progress_at(t);
            f.journey = Journey::Stepped { start: t, travel: travel_ms as f64, from: at };
        }
    }

    /// A sender's clock stopped or runs again (or its process was paused or resumed).
    pub fn sender_moving(&mut self, t: f64, node: NodeId, moving: bool) {
        for f in self.list.iter_mut().filter(|f| f.from == node && f.moving != moving) {
            f.freeze(t);
            f.moving = moving;
        }
    }

    /// The time scale changed: journeys under way keep their progress and stretch the rest.
    pub fn rescale(&mut self, t: f64, old: f64, new: f64) {
        if (old - new).abs() < f64::EPSILON || old <= 0.0 {
            return;
        }
        for f in self.list.iter_mut().filter(|f| f.journey == Journey::Flying) {
            f.freeze(t);
            if f.true_time {
                (f.duration, f.true_time) = drawn_for(f.duration * new / old);
            }
        }
    }

    /// A sender crashed: what waited in its memory is gone with it.
    pub fn sender_crashed(&mut self, node: NodeId) {
        self.list.retain(|f| f.from != node || f.journey != Journey::Flying || f.progress > 0.999);
    }

    /// Drops arrived and faded messages. A message for a paused receiver waits at its door.
    pub fn expire(&mut self, t: f64, paused: impl Fn(NodeId) -> bool) {
        self.list.retain(|f| f.still_shown(t, &paused));
    }

    /// Whether `expire` would drop any message (so that an unchanged list stays the same version).
    pub fn any_expired(&self, t: f64, paused: impl Fn(NodeId) -> bool) -> bool {
        self.list.iter().any(|f| !f.still_shown(t, &paused))
    }

    /// Messages held in stopped senders' queues.
    #[cfg(test)]
    pub fn held_count(&self) -> usize {
        self.list.iter().filter(|f| f.held()).count()
    }

    /// Whether every message drawn now travels at its true speed.
    pub fn true_to_time(&self) -> bool {
        self.list.iter().all(|f| f.true_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(from: NodeId, to: NodeId, id: MessageId, delay: Millis) -> Sent {
        Sent {
            from,
            id,
            to,
            term: 2,
            message: MessageSummary::RequestVote {
                pre_vote: false,
                last_log_index: 0,
                last_log_term: 0,
                transfer: false,
            },
            delay,
        }
    }

    fn granted(from: NodeId, to: NodeId, id: MessageId, delay: Millis) -> Sent {
        Sent {
            from,
            id,
            to,
            term: 2,
            message: MessageSummary::VoteResponse { pre_vote: false, granted: true, refusal: None },
            delay,
        }
    }

    #[test]
    fn a_message_arrives_on_screen_after_its_true_delay_in_slow_motion() {
        let mut f = Flights::default();
        // 15 ms of cluster time at ×50: 750 ms on screen.
        f.sent(1_000.0, vote(1, 2, 7, 15), 50.0, true);
        let m = f.find(1, 7).unwrap();
        assert!(m.true_time);
        assert!((m.progress_at(1_375.0) - 0.5).abs() < 1e-9);
        f.expire(1_749.0, |_| false);
        assert_eq!(f.list.len(), 1);
        f.expire(1_751.0, |_| false);
        assert!(f.list.is_empty(), "delivered at 1 750 ms");
    }

    #[test]
    fn at_ten_times_slower_the_automatic_latency_is_drawn_at_its_true_speed() {
        let mut f = Flights::default();
        // Election timeout 150 ms: automatic latency 15 ms, 150 ms on screen at ×10.
        f.sent(0.0, vote(1, 2, 1, 15), 10.0, true);
        assert!(f.true_to_time());
        assert_eq!(f.list[0].duration, 150.0);
    }

    #[test]
    fn at_real_speed_a_message_is_drawn_long_enough_to_be_seen_and_says_so() {
        let mut f = Flights::default();
        f.sent(0.0, vote(1, 2, 1, 0), 1.0, true);
        assert!(!f.true_to_time());
        assert_eq!(f.list[0].duration, IMPRESSION_MS);
    }

    #[test]
    fn a_stopped_sender_holds_its_messages_until_its_clock_runs() {
        let mut f = Flights::default();
        f.sent(0.0, vote(1, 2, 1, 20), 50.0, true);
        f.sender_moving(500.0, 1, false);
        let parked = f.list[0].progress_at(500.0);
        assert!((parked - 0.5).abs() < 1e-9);
        assert_eq!(f.list[0].progress_at(9_000.0), parked, "held: it does not move");
        assert_eq!(f.held_count(), 1);
        f.sender_moving(9_000.0, 1, true);
        assert!((f.list[0].progress_at(9_250.0) - 0.75).abs() < 1e-9, "it goes on from where it was");
    }

    #[test]
    fn a_stepped_message_travels_from_where_it_was_parked() {
        let mut f = Flights::default();
        f.sent(0.0, vote(1, 2, 1, 20), 1.0, false);
        f.stepped(100.0, 1, 1, 400);
        assert_eq!(f.list[0].progress_at(100.0), 0.0);
        assert!((f.list[0].progress_at(300.0) - 0.5).abs() < 1e-9);
        f.expire(501.0, |_| false);
        assert!(f.list.is_empty());
    }

    #[test]
    fn a_reply_does_not_leave_before_its_request_arrived_on_screen() {
        let mut f = Flights::default();
        f.sent(0.0, vote(1, 2, 1, 20), 50.0, true);
        // The reply's event came early (events reach the page with different delays).
        f.sent(600.0, granted(2, 1, 9, 20), 50.0, true);
        let reply = f.find(2, 9).unwrap();
        assert_eq!(reply.progress_at(900.0), 0.0, "waits until the request lands at 1 000 ms");
        assert!(reply.progress_at(1_500.0) > 0.4);
    }

    #[test]
    fn a_lost_message_is_drawn_where_it_was_lost_then_fades() {
        let mut f = Flights::default();
        f.sent(0.0, vote(1, 2, 1, 20), 50.0, true);
        f.sent(0.0, vote(1, 3, 2, 20), 50.0, true);
        f.lost(0.0, 1, 1, LossReason::Partition);
        f.lost(0.0, 1, 2, LossReason::Unreachable);
        assert_eq!(f.list[0].progress_at(10.0), 0.45, "a cut link loses it on the way");
        assert_eq!(f.list[1].progress_at(10.0), 0.8, "an absent receiver loses it at its door");
        f.expire(LOST_SHOWN_MS + 1.0, |_| false);
        assert!(f.list.is_empty());
    }

    #[test]
    fn a_message_for_a_paused_receiver_waits_at_its_door() {
        let mut f = Flights::default();
        f.sent(0.0, vote(1, 2, 1, 0), 1.0, true);
        f.expire(10_000.0, |node| node == 2);
        assert_eq!(f.list.len(), 1);
        f.expire(10_000.0, |_| false);
        assert!(f.list.is_empty());
    }
}
