//! Events on their way to pages: batched into one frame per display frame, and routine
//! traffic sampled.
//!
//! A 7-server cluster sends thousands of heartbeats and acknowledgements a second; a page can
//! draw a few dozen messages at once and a person can follow fewer. Servers already report
//! routine traffic only as a sample at real speed (the true rate is in their statuses); here
//! pages get every event that changes something (roles, votes, entries, commits, snapshots,
//! reads, faults) and, per link and kind of message, at most one routine message (heartbeat,
//! append, acknowledgement) every `ROUTINE_EVERY` — the servers' samples, merged. In slow
//! motion nothing is dropped: messages are rarer than the limit. A message's loss follows it
//! only if the page got the message itself; a step always passes (the lecturer asked for it,
//! and the page knows held messages from the status). Servers send their events in frames a few
//! milliseconds apart, so a receiver's report of a loss (it is cut off from the sender) can come
//! before the sender's report of the message: such a loss waits a moment for its message.
//!
//! The fanout also keeps the recent events worth a line in the timeline, so that a page that
//! opens late sees the election that happened before it came.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::event::{Event, Observed};
use crate::raft::{MessageId, MessageKind, Millis, NodeId};

/// Routine messages per link and kind shown at most this often (ms of the proxy's time).
const ROUTINE_EVERY_MS: Millis = 150;
/// Election timer resets per server shown at most this often (the status corrects the rest).
const TIMER_EVERY_MS: Millis = 100;
/// Messages whose later events are forwarded: the newest this many that pages got.
const FOLLOWED: usize = 8_192;
/// How long a loss whose message was not seen yet waits for it (ms of the proxy's time): a few
/// of the servers' event frames (`EventBatch::WINDOW`, 5 ms).
const EARLY_LOSS_MS: Millis = 50;
/// Losses waiting for their message, at most (the oldest are given up first).
const EARLY_LOSSES: usize = 512;
/// Timeline events kept for pages that open later.
pub(crate) const RECENT: usize = 300;

#[derive(Debug, Default)]
pub(crate) struct Fanout {
    pending: Vec<Observed>,
    last_message: HashMap<(NodeId, NodeId, MessageKind), Millis>,
    last_timer: HashMap<NodeId, Millis>,
    /// Messages pages got, so that their loss or step follows them.
    followed: HashSet<(NodeId, MessageId)>,
    followed_order: VecDeque<(NodeId, MessageId)>,
    /// Losses that came before their message, with when: they follow it if it comes and is kept.
    early_losses: VecDeque<(Millis, Observed)>,
    /// The last message id each sender reported (ids rise within a server's life): a loss at or
    /// below it is of a message already seen, and sampled out.
    last_sent: HashMap<NodeId, MessageId>,
    recent: VecDeque<Observed>,
}

impl Fanout {
    fn follow(&mut self, key: (NodeId, MessageId)) {
        if self.followed.insert(key) {
            self.followed_order.push_back(key);
            if self.followed_order.len() > FOLLOWED {
                if let Some(old) = self.followed_order.pop_front() {
                    self.followed.remove(&old);
                }
            }
        }
    }

    fn remember(&mut self, observed: &Observed) {
        self.recent.push_back(observed.clone());
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }
}

/// Events that are a line in the timeline (not every message and timer).
fn worth_a_line(event: &Event) -> bool {
    !matches!(
        event,
        Event::MessageSent { .. }
            | Event::MessageLost { .. }
            | Event::MessageStepped { .. }
            | Event::ElectionTimerReset { .. }
            | Event::Applied { .. }
    )
}

impl Fanout {
    /// Takes a server's events at `now`: keeps what pages should see.
    pub fn offer(&mut self, events: &[Observed], now: Millis) {
        while self.early_losses.front().is_some_and(|(at, _)| now.saturating_sub(*at) > EARLY_LOSS_MS) {
            self.early_losses.pop_front();
        }
        for observed in events {
            let mut early_loss = None;
            let keep = match &observed.event {
                Event::MessageSent { id, to, message, .. } => {
                    self.last_sent.insert(observed.node, *id);
                    let kind = message.kind();
                    let keep = !kind.is_routine()
                        || due(&mut self.last_message, (observed.node, *to, kind), now, ROUTINE_EVERY_MS);
                    if keep {
                        self.follow((observed.node, *id));
                        early_loss = self.take_early_loss(observed.node, *id);
                    }
                    keep
                }
                Event::MessageLost { from, id, .. } => {
                    let followed = self.followed.contains(&(*from, *id));
                    let message_seen = self.last_sent.get(from).is_some_and(|last| id <= last);
                    if !followed && !message_seen {
                        self.hold_early_loss(observed, now);
                    }
                    followed
                }
                Event::MessageStepped { .. } => true,
                Event::ElectionTimerReset { .. } => {
                    due(&mut self.last_timer, observed.node, now, TIMER_EVERY_MS)
                }
                _ => true,
            };
            if worth_a_line(&observed.event) {
                self.remember(observed);
            }
            if keep {
                self.pending.push(observed.clone());
            }
            self.pending.extend(early_loss);
        }
    }

    /// A loss reported before its message: kept a moment in case the message comes.
    fn hold_early_loss(&mut self, loss: &Observed, now: Millis) {
        if self.early_losses.len() == EARLY_LOSSES {
            self.early_losses.pop_front();
        }
        self.early_losses.push_back((now, loss.clone()));
    }

    fn take_early_loss(&mut self, from: NodeId, id: MessageId) -> Option<Observed> {
        let at = self.early_losses.iter().position(|(_, loss)| {
            matches!(loss.event, Event::MessageLost { from: f, id: i, .. } if (f, i) == (from, id))
        })?;
        self.early_losses.remove(at).map(|(_, loss)| loss)
    }

    /// An event every page must get (an alarm), unsampled.
    pub fn push(&mut self, observed: Observed) {
        self.remember(&observed);
        self.pending.push(observed);
    }

    /// The recent timeline events, oldest first, for a page that just opened.
    pub fn recent(&self) -> Vec<Observed> {
        self.recent.iter().cloned().collect()
    }

    /// The cluster was reset: its past is not this cluster's.
    pub fn forget(&mut self) {
        self.recent.clear();
        self.followed.clear();
        self.followed_order.clear();
        self.early_losses.clear();
        self.last_sent.clear();
    }

    /// Server `node` started a new life (its subscription begins again): its message ids start
    /// afresh, so the ids of its last life say nothing about which losses were seen.
    pub fn forget_sender(&mut self, node: NodeId) {
        self.last_sent.remove(&node);
    }

    /// Whether events wait to go out.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The events gathered since the last call.
    pub fn take(&mut self) -> Vec<Observed> {
        std::mem::take(&mut self.pending)
    }
}

fn due<K: std::hash::Hash + Eq>(last: &mut HashMap<K, Millis>, key: K, now: Millis, every: Millis) -> bool {
    match last.get(&key) {
        Some(t) if now.saturating_sub(*t) < every => false,
        _ => {
            last.insert(key, now);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LossReason, MessageSummary};

    fn sent(node: NodeId, to: NodeId, kind: MessageKind) -> Observed {
        sent_id(node, to, kind, 0)
    }

    fn sent_id(node: NodeId, to: NodeId, kind: MessageKind, id: MessageId) -> Observed {
        let message = match kind {
            MessageKind::Heartbeat => MessageSummary::AppendEntries {
                prev_log_index: 0,
                prev_log_term: 0,
                entries: 0,
                last_entry_term: None,
                leader_commit: 0,
            },
            _ => MessageSummary::RequestVote {
                pre_vote: false,
                last_log_index: 0,
                last_log_term: 0,
                transfer: false,
            },
        };
        Observed { node, at: 0, event: Event::MessageSent { id, to, term: 1, message, delay: 0 } }
    }

    #[test]
    fn routine_traffic_is_sampled_and_the_rest_passes() {
        let mut f = Fanout::default();
        let burst: Vec<Observed> = (0..50).map(|_| sent(1, 2, MessageKind::Heartbeat)).collect();
        f.offer(&burst, 1_000);
        f.offer(
            &[
                sent(1, 2, MessageKind::RequestVote),
                sent(1, 2, MessageKind::RequestVote),
                sent(1, 3, MessageKind::Heartbeat),
            ],
            1_000,
        );
        let kept = f.take();
        let heartbeats = kept
            .iter()
            .filter(|o| matches!(&o.event, Event::MessageSent { message, .. } if message.kind() == MessageKind::Heartbeat))
            .count();
        let votes = kept
            .iter()
            .filter(|o| matches!(&o.event, Event::MessageSent { message, .. } if message.kind() == MessageKind::RequestVote))
            .count();
        assert_eq!((heartbeats, votes), (2, 2), "one heartbeat per link; every vote request");
        assert!(f.take().is_empty());
    }

    #[test]
    fn a_loss_follows_its_message_only_if_pages_got_the_message() {
        let mut f = Fanout::default();
        f.offer(
            &[sent_id(1, 2, MessageKind::Heartbeat, 10), sent_id(1, 2, MessageKind::Heartbeat, 11)],
            1_000,
        );
        let lost = |id| Observed {
            node: 1,
            at: 0,
            event: Event::MessageLost { from: 1, id, to: 2, reason: LossReason::Partition },
        };
        f.offer(&[lost(10), lost(11)], 1_000);
        let kept = f.take();
        assert_eq!(kept.len(), 2, "heartbeat 10 and its loss; not 11 (sampled out) nor its loss");
        assert!(f.early_losses.is_empty(), "the loss of a message seen and sampled out waits for nothing");
        assert!(f.recent().is_empty(), "messages are not timeline lines");
    }

    #[test]
    fn a_loss_reported_before_its_message_follows_the_message_when_it_comes() {
        let mut f = Fanout::default();
        let lost = |id| Observed {
            node: 2,
            at: 0,
            event: Event::MessageLost { from: 1, id, to: 2, reason: LossReason::Partition },
        };
        // The receiver's frame (it is cut off from node 1) beats the sender's.
        f.offer(&[lost(20), lost(21)], 1_000);
        assert!(f.take().is_empty(), "no loss before its message");
        f.offer(&[sent_id(1, 2, MessageKind::RequestVote, 20)], 1_004);
        let kept: Vec<Event> = f.take().into_iter().map(|o| o.event).collect();
        assert!(
            matches!(kept[..], [Event::MessageSent { id: 20, .. }, Event::MessageLost { id: 20, .. }]),
            "the message, then its loss: {kept:?}"
        );
        // A loss whose message never comes is given up after a while.
        f.offer(&[], 1_000 + EARLY_LOSS_MS + 10);
        f.offer(&[sent_id(1, 2, MessageKind::RequestVote, 21)], 1_000 + EARLY_LOSS_MS + 10);
        assert_eq!(f.take().len(), 1, "message 21 alone: its loss waited too long");
    }

    #[test]
    fn a_restarted_sender_numbers_afresh_so_its_early_losses_wait_again() {
        let mut f = Fanout::default();
        f.offer(&[sent_id(1, 2, MessageKind::RequestVote, 500)], 1_000);
        f.take();
        // Node 1 restarts; its new life's ids begin below its old ones.
        f.forget_sender(1);
        let lost = Observed {
            node: 2,
            at: 0,
            event: Event::MessageLost { from: 1, id: 7, to: 2, reason: LossReason::Partition },
        };
        f.offer(&[lost], 2_000);
        f.offer(&[sent_id(1, 2, MessageKind::RequestVote, 7)], 2_004);
        let kept: Vec<Event> = f.take().into_iter().map(|o| o.event).collect();
        assert!(
            matches!(kept[..], [Event::MessageSent { id: 7, .. }, Event::MessageLost { id: 7, .. }]),
            "the new life's message, then its loss: {kept:?}"
        );
    }
}
