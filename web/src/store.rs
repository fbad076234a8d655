//! The page's model of the cluster, built only from the proxy's frames, plus the recent history
//! of those frames so that the view can be frozen and scrubbed back.
//!
//! `Model::apply` is a pure function of (model, frame, time): the live view applies frames as
//! they arrive; a frozen view replays them from the nearest checkpoint. Every view area has a
//! version number, so components re-render only when their part changed.

use std::collections::{BTreeMap, VecDeque};

use shared::event::{Event, LogMirror, MessageSummary, Observed};
use shared::protocol::{ClusterStatus, FaultSettings, NodeAddress, ProcessState, ProxyFrame, RequestStats};
use shared::raft::{Index, MessageKind, NodeId, PeerProgress, Role, Term};

/// Events kept for the timeline.
const TIMELINE_LEN: usize = 1_500;
/// Frames kept for scrubbing back, and how far back.
const HISTORY_FRAMES: usize = 40_000;
const HISTORY_MS: f64 = 120_000.0;
const CHECKPOINT_EVERY_MS: f64 = 5_000.0;
/// Messages drawn at once; beyond this the page shows a sample and the rate.
pub const MAX_FLIGHTS: usize = 60;
/// Points kept per chart.
const CHART_POINTS: usize = 120;

#[derive(Debug, Clone, Default)]
pub struct NodeModel {
    pub id: NodeId,
    pub address: String,
    pub process: Option<ProcessState>,
    pub reachable: bool,
    pub partitioned: bool,
    pub pid: Option<u32>,
    pub role: Option<Role>,
    pub term: Term,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub commit: Index,
    pub applied: Index,
    pub last_index: Index,
    /// Election timer in page time (ms): fires at `deadline`, lasts `span` in all.
    pub timer: Option<(f64, f64)>,
    pub progress: Vec<PeerProgress>,
    pub kv: Vec<(String, String)>,
    pub kv_truncated: bool,
    pub faults: FaultSettings,
    pub rss_bytes: Option<u64>,
    pub log: LogMirror,
}

/// A message drawn on its way.
#[derive(Debug, Clone, PartialEq)]
pub struct Flight {
    pub from: NodeId,
    pub to: NodeId,
    pub kind: MessageKind,
    pub message: MessageSummary,
    pub start: f64,
    pub duration: f64,
}

#[derive(Debug, Clone)]
pub struct TimelineItem {
    pub t: f64,
    pub node: NodeId,
    pub event: Event,
}

#[derive(Debug, Clone, Default)]
pub struct Charts {
    pub writes_per_s: VecDeque<f64>,
    pub write_p50_ms: VecDeque<f64>,
    pub commits_per_s: VecDeque<f64>,
    last_commit: Option<(f64, Index)>,
}

#[derive(Debug, Clone, Default)]
pub struct Versions {
    pub nodes: u64,
    pub logs: u64,
    pub timeline: u64,
    pub charts: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub now: f64,
    pub nodes: BTreeMap<NodeId, NodeModel>,
    pub proxies: Vec<String>,
    pub leader: Option<NodeId>,
    pub term: Term,
    pub time_scale: f64,
    pub supervised: bool,
    pub stats: RequestStats,
    /// Messages per second across the cluster, as the proxy counts them (all, not just drawn).
    pub messages_per_s: f64,
    pub flights: VecDeque<Flight>,
    /// When recent messages were sent (page time), for the rate; and how many were not drawn.
    pub message_times: VecDeque<f64>,
    pub flights_skipped: u64,
    pub timeline: VecDeque<TimelineItem>,
    pub charts: Charts,
    pub versions: Versions,
}

impl Model {
    pub fn node(&mut self, id: NodeId) -> &mut NodeModel {
        self.nodes.entry(id).or_insert_with(|| NodeModel { id, ..NodeModel::default() })
    }

    /// The leader as shown: the reachable node that says it leads, in the highest term.
    pub fn shown_leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.role == Some(Role::Leader) && n.reachable)
            .max_by_key(|n| n.term)
            .map(|n| n.id)
    }

    pub fn apply(&mut self, frame: &ProxyFrame, t: f64) {
        self.now = self.now.max(t);
        match frame {
            ProxyFrame::Welcome { proxies, nodes, picture, .. } => {
                self.welcome(proxies, nodes);
                if let Some(picture) = picture {
                    self.status(&picture.cluster, t);
                    for (node, log) in &picture.logs {
                        self.node(*node).log = log.clone();
                    }
                    self.versions.logs += 1;
                }
            }
            ProxyFrame::Status { cluster, .. } => self.status(cluster, t),
            ProxyFrame::Events { events } => {
                for observed in events {
                    self.event(observed, t);
                }
            }
            ProxyFrame::Log { node, snapshot_index, snapshot_term, skipped, entries } => {
                let n = self.node(*node);
                n.log = LogMirror {
                    snapshot_index: *snapshot_index,
                    snapshot_term: *snapshot_term,
                    skipped: *skipped,
                    entries: entries.clone(),
                };
                self.versions.logs += 1;
            }
            ProxyFrame::Done { .. } | ProxyFrame::Error { .. } | ProxyFrame::AdminDone { .. } => {}
        }
        self.expire_flights(t);
    }

    fn welcome(&mut self, proxies: &[String], nodes: &[NodeAddress]) {
        self.proxies = proxies.to_vec();
        for n in nodes {
            self.node(n.id).address = n.address.clone();
        }
        self.versions.nodes += 1;
    }

    fn status(&mut self, cluster: &ClusterStatus, t: f64) {
        self.leader = cluster.leader;
        self.term = cluster.term;
        self.time_scale = cluster.time_scale;
        self.supervised = cluster.supervised;
        self.stats = cluster.stats.clone();
        self.messages_per_s = cluster.messages_per_s;
        let scale = cluster.time_scale.max(0.01);
        for view in &cluster.nodes {
            let n = self.node(view.id);
            n.address = view.address.clone();
            n.process = Some(view.state);
            n.pid = view.pid;
            n.partitioned = view.partitioned;
            n.reachable = view.status.is_some();
            match &view.status {
                Some(s) => {
                    let r = &s.replica.raft;
                    n.role = Some(r.role);
                    n.term = r.term;
                    n.voted_for = r.voted_for;
                    n.leader = r.leader;
                    n.commit = r.commit;
                    n.applied = s.replica.applied;
                    n.last_index = r.last_index;
                    n.progress = r.progress.clone();
                    n.kv = s.kv.clone();
                    n.kv_truncated = s.kv_truncated;
                    n.faults = s.faults.clone();
                    n.rss_bytes = s.rss_bytes;
                    n.timer = (r.role != Role::Leader).then(|| {
                        let remaining = r.election_deadline.saturating_sub(s.now) as f64 * scale;
                        (t + remaining, r.election_timeout as f64 * scale)
                    });
                }
                None => {
                    n.role = None;
                    n.timer = None;
                }
            }
        }
        let leader_commit = cluster.leader.and_then(|l| self.nodes.get(&l)).map(|n| n.commit);
        let charts = &mut self.charts;
        push_point(&mut charts.writes_per_s, cluster.stats.writes_per_s);
        push_point(&mut charts.write_p50_ms, cluster.stats.write_p50_ms);
        if let Some(commit) = leader_commit {
            let rate = match charts.last_commit {
                Some((t0, c0)) if t > t0 && commit >= c0 => (commit - c0) as f64 * 1000.0 / (t - t0),
                _ => 0.0,
            };
            push_point(&mut charts.commits_per_s, rate);
            charts.last_commit = Some((t, commit));
        }
        self.versions.nodes += 1;
        self.versions.charts += 1;
    }

    fn event(&mut self, observed: &Observed, t: f64) {
        let id = observed.node;
        let scale = self.time_scale.max(0.01);
        let mut timeline = true;
        match &observed.event {
            Event::RoleChanged { role, term, leader, .. } => {
                let n = self.node(id);
                n.role = Some(*role);
                n.term = *term;
                n.leader = *leader;
                n.reachable = true;
                if *role == Role::Leader {
                    n.timer = None;
                }
                self.versions.nodes += 1;
            }
            Event::ElectionTimerReset { deadline, timeout } => {
                let n = self.node(id);
                if n.role != Some(Role::Leader) {
                    let remaining = deadline.saturating_sub(observed.at) as f64 * scale;
                    n.timer = Some((t + remaining, *timeout as f64 * scale));
                }
                timeline = false;
            }
            Event::MessageSent { to, message, .. } => {
                self.message_times.push_back(t);
                while self.message_times.len() > 20_000
                    || self.message_times.front().is_some_and(|m| t - m > 1_000.0)
                {
                    self.message_times.pop_front();
                }
                if self.flights.len() < MAX_FLIGHTS {
                    let duration = (350.0 * scale).clamp(450.0, 3_000.0);
                    self.flights.push_back(Flight {
                        from: id,
                        to: *to,
                        kind: message.kind(),
                        message: *message,
                        start: t,
                        duration,
                    });
                } else {
                    self.flights_skipped += 1;
                }
                timeline = false;
            }
            Event::EntriesAppended { .. } | Event::LogTruncated { .. } => {
                let n = self.node(id);
                n.log.apply(&observed.event);
                n.last_index = n.log.last_index();
                self.versions.logs += 1;
            }
            Event::SnapshotTaken { .. } | Event::SnapshotInstalled { .. } => {
                self.node(id).log.apply(&observed.event);
                self.versions.logs += 1;
            }
            Event::CommitAdvanced { to, .. } => {
                let n = self.node(id);
                n.commit = n.commit.max(*to);
                self.versions.logs += 1;
            }
            Event::Applied { index } => {
                let n = self.node(id);
                n.applied = n.applied.max(*index);
                self.versions.logs += 1;
                timeline = false;
            }
            _ => {}
        }
        if timeline {
            self.timeline.push_front(TimelineItem { t, node: id, event: observed.event.clone() });
            self.timeline.truncate(TIMELINE_LEN);
            self.versions.timeline += 1;
        }
    }

    fn expire_flights(&mut self, now: f64) {
        while self.flights.front().is_some_and(|f| f.start + f.duration < now) {
            self.flights.pop_front();
        }
    }

    /// Messages sent per second, over the last second.
    pub fn message_rate(&self) -> usize {
        self.message_times.iter().filter(|t| self.now - **t <= 1_000.0).count()
    }

    /// Called every animation frame: drops finished flights.
    pub fn advance_to(&mut self, now: f64) {
        self.now = self.now.max(now);
        self.expire_flights(now);
    }
}

fn push_point(series: &mut VecDeque<f64>, value: f64) {
    series.push_back(if value.is_finite() { value } else { 0.0 });
    while series.len() > CHART_POINTS {
        series.pop_front();
    }
}

/// A request the page sent, and what came of it (for the client panel).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub id: u64,
    pub what: String,
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
}

/// How smoothly the page runs: animation frames, and how long data waits to be drawn.
#[derive(Default)]
pub struct Perf {
    frames: VecDeque<f64>,
    /// When the oldest frame not yet drawn arrived.
    pending_since: Option<f64>,
    lags: VecDeque<f64>,
}

impl Perf {
    pub fn received(&mut self, t: f64) {
        self.pending_since.get_or_insert(t);
    }

    /// Called at every animation frame, after which the page is drawn.
    pub fn frame(&mut self, t: f64) {
        self.frames.push_back(t);
        while self.frames.front().is_some_and(|f| t - f > 2_000.0) {
            self.frames.pop_front();
        }
        if let Some(since) = self.pending_since.take() {
            self.lags.push_back(t - since);
            if self.lags.len() > 300 {
                self.lags.pop_front();
            }
        }
    }

    /// Frames per second over the last two seconds, and the longest gap between frames (ms).
    pub fn fps(&self) -> (f64, f64) {
        let n = self.frames.len();
        if n < 2 {
            return (0.0, 0.0);
        }
        let span = self.frames[n - 1] - self.frames[0];
        let worst =
            self.frames.iter().zip(self.frames.iter().skip(1)).map(|(a, b)| b - a).fold(0.0, f64::max);
        ((n - 1) as f64 * 1000.0 / span.max(1.0), worst)
    }

    /// Median and maximum time from a frame's arrival to the next drawing (ms).
    pub fn lag(&self) -> (f64, f64) {
        let mut v: Vec<f64> = self.lags.iter().copied().collect();
        if v.is_empty() {
            return (0.0, 0.0);
        }
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
    }
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
    pub requests: VecDeque<RequestRecord>,
    pub requests_version: u64,
    next_request: u64,
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
        let base =
            self.checkpoints.iter().rev().find(|(t, _)| *t <= at).map(|(_, m)| m.clone()).unwrap_or_default();
        let mut model = base;
        let from = model.now;
        for (t, frame) in self.history.iter().filter(|(t, _)| *t > from && *t <= at) {
            model.apply(frame, *t);
        }
        model.advance_to(at);
        // Fresh version numbers make every area redraw the moment shown.
        let bump = self.live.versions.nodes + self.live.versions.logs + self.live.versions.timeline + 1;
        model.versions = Versions { nodes: bump, logs: bump, timeline: bump, charts: bump };
        self.frozen = Some((at, model));
    }

    pub fn go_live(&mut self) {
        self.frozen = None;
        let v = &mut self.live.versions;
        v.nodes += 1_000_000;
        v.logs += 1_000_000;
        v.timeline += 1_000_000;
        v.charts += 1_000_000;
    }

    pub fn new_request(&mut self, what: String, t: f64) -> u64 {
        self.next_request += 1;
        let id = self.next_request;
        self.requests.push_front(RequestRecord { id, what, sent_at: t, outcome: None, latency_ms: None });
        self.requests.truncate(12);
        self.requests_version += 1;
        id
    }

    fn answer(&mut self, id: u64, frame: ProxyFrame, t: f64) {
        if let Some(r) = self.requests.iter_mut().find(|r| r.id == id) {
            r.latency_ms = Some(t - r.sent_at);
            r.outcome = Some(frame);
            self.requests_version += 1;
        }
    }
}
