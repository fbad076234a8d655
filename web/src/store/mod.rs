//! The page's state, apart from its views: the cluster as the proxy's frames describe it
//! (`model`), the messages on their way (`flights`), the recent history of frames so that the
//! view can be frozen and scrubbed back, the requests this page sent, and how smoothly it draws
//! (`perf`). Everything here is plain Rust, tested natively.

mod flights;
mod model;
mod part;
mod perf;

use std::collections::VecDeque;

use shared::protocol::{ClientFrame, ProxyFrame};

pub use flights::{Flight, Flights, Journey, LOST_SHOWN_MS, MAX_FLIGHTS};
pub use model::{Charts, Model, NodeModel, Nodes, TimelineItem, Timer};
pub use part::Part;
pub use perf::Perf;

/// Frames kept for scrubbing back, and how far back.
const HISTORY_FRAMES: usize = 40_000;
const HISTORY_MS: f64 = 120_000.0;
const CHECKPOINT_EVERY_MS: f64 = 5_000.0;

/// A request the page sent, and what came of it (for the client panel).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub id: u64,
    /// The request as sent.
    pub frame: ClientFrame,
    pub sent_at: f64,
    pub outcome: Option<ProxyFrame>,
    pub latency_ms: Option<f64>,
}

/// The connection as shown in the header.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Link {
    #[default]
    Connecting,
    Connected {
        proxy: String,
    },
    Reconnecting {
        attempt: u32,
    },
    /// No proxy: a cluster simulated in this page, from this seed.
    Simulated {
        seed: u64,
    },
    /// Nothing to show, and why.
    Failed {
        reason: String,
    },
    /// Playing a recording (its file name or address).
    Replay {
        name: String,
    },
}

/// Where a replay is, for its controls.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayView {
    /// Recording time shown, and the whole run, in ms.
    pub at_ms: f64,
    pub duration_ms: f64,
    pub playing: bool,
    pub speed: f64,
    /// Frames shown so far, of all.
    pub frame: usize,
    pub frames: usize,
}

#[derive(Default)]
pub struct Store {
    pub perf: Perf,
    pub live: Model,
    history: VecDeque<(f64, ProxyFrame)>,
    checkpoints: VecDeque<(f64, Model)>,
    /// When frozen: the time shown and the model as it was then.
    pub frozen: Option<(f64, Model)>,
    pub link: Link,
    pub admin: bool,
    pub requests: Part<VecDeque<RequestRecord>>,
    next_request: u64,
    /// Set while a recording plays.
    pub replay: Option<ReplayView>,
}

impl Store {
    /// The model on screen: the frozen one, or the live one.
    pub fn view(&self) -> &Model {
        self.frozen.as_ref().map_or(&self.live, |(_, m)| m)
    }

    pub fn receive(&mut self, frame: ProxyFrame, t: f64) {
        self.perf.received(t);
        match &frame {
            ProxyFrame::Welcome { admin, .. } => self.admin = *admin,
            ProxyFrame::Done { id, .. }
            | ProxyFrame::AdminDone { id, .. }
            | ProxyFrame::Error { id: Some(id), .. } => {
                self.answer(*id, frame.clone(), t);
            }
            ProxyFrame::Status { id: Some(_), .. } => return,
            _ => {}
        }
        let replayable = matches!(
            frame,
            ProxyFrame::Welcome { .. }
                | ProxyFrame::Status { .. }
                | ProxyFrame::Events { .. }
                | ProxyFrame::Log { .. }
        );
        if !replayable {
            return;
        }
        if self.checkpoints.back().is_none_or(|(ct, _)| t - ct >= CHECKPOINT_EVERY_MS) {
            self.checkpoints.push_back((t, self.live.clone()));
        }
        self.live.apply(&frame, t);
        self.history.push_back((t, frame));
        while self.history.len() > HISTORY_FRAMES
            || self.history.front().is_some_and(|(ht, _)| t - ht > HISTORY_MS)
        {
            self.history.pop_front();
        }
        let oldest = self.history.front().map_or(t, |(ht, _)| *ht);
        // Keep the newest checkpoint at or before the oldest frame, so any kept moment can be rebuilt.
        while self.checkpoints.len() > 1 && self.checkpoints[1].0 <= oldest {
            self.checkpoints.pop_front();
        }
    }

    /// How far back the view can go (page time of the oldest rebuildable moment).
    pub fn earliest(&self) -> f64 {
        self.checkpoints.front().map_or(self.live.now, |(t, _)| *t)
    }

    pub fn freeze(&mut self, at: f64) {
        let at = at.clamp(self.earliest(), self.live.now.max(self.earliest()));
        // A checkpoint is the model just before the first frame of its moment: replay from there.
        let (from, mut model) = self
            .checkpoints
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map(|(t, m)| (*t, m.clone()))
            .unwrap_or_default();
        for (t, frame) in self.history.iter().filter(|(t, _)| *t >= from && *t <= at) {
            model.apply(frame, *t);
        }
        model.advance_to(at);
        self.frozen = Some((at, model));
    }

    pub fn go_live(&mut self) {
        self.frozen = None;
    }

    /// Records a request about to be sent; `make` builds it with its id.
    pub fn new_request(&mut self, make: impl FnOnce(u64) -> ClientFrame, t: f64) -> ClientFrame {
        self.next_request += 1;
        let id = self.next_request;
        let frame = make(id);
        let requests = self.requests.edit();
        requests.push_front(RequestRecord {
            id,
            frame: frame.clone(),
            sent_at: t,
            outcome: None,
            latency_ms: None,
        });
        requests.truncate(12);
        frame
    }

    fn answer(&mut self, id: u64, frame: ProxyFrame, t: f64) {
        if !self.requests.iter().any(|r| r.id == id) {
            return;
        }
        if let Some(r) = self.requests.edit().iter_mut().find(|r| r.id == id) {
            r.latency_ms = Some(t - r.sent_at);
            r.outcome = Some(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::event::{Event, Observed, RoleReason};
    use shared::protocol::{ApiError, ErrorKind};
    use shared::raft::Role;

    fn became(node: u64, role: Role, term: u64) -> ProxyFrame {
        let event = Event::RoleChanged { role, term, leader: None, reason: RoleReason::ElectionTimeout };
        ProxyFrame::Events { events: vec![Observed { node, at: 0, event }] }
    }

    #[test]
    fn freezing_rebuilds_an_earlier_moment_and_live_comes_back() {
        let mut store = Store::default();
        store.receive(became(1, Role::Leader, 1), 0.0);
        store.receive(became(2, Role::Candidate, 2), 6_000.0);
        store.receive(became(2, Role::Leader, 2), 12_000.0);
        store.freeze(3_000.0);
        let frozen = store.view();
        assert_eq!(frozen.nodes[&1].role, Some(Role::Leader));
        assert!(!frozen.nodes.contains_key(&2), "node 2 had said nothing yet");
        store.freeze(7_000.0);
        assert_eq!(store.view().nodes[&2].role, Some(Role::Candidate));
        store.go_live();
        assert_eq!(store.view().nodes[&2].role, Some(Role::Leader));
        assert_eq!(store.view().nodes.shown_leader(), Some(2), "the leader of the highest term");
    }

    #[test]
    fn an_answer_settles_the_request_it_answers() {
        let mut store = Store::default();
        let frame = store.new_request(|id| ClientFrame::Status { id }, 100.0);
        let ClientFrame::Status { id } = frame else { unreachable!() };
        let error = ApiError::new(ErrorKind::NoLeader, "no leader");
        store.receive(ProxyFrame::Error { id: Some(id), error }, 160.0);
        let r = &store.requests[0];
        assert_eq!(r.latency_ms, Some(60.0));
        assert!(matches!(r.outcome, Some(ProxyFrame::Error { .. })));
    }
}
