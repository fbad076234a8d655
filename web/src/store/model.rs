//! The page's model of the cluster at one moment, built only from the proxy's frames.
//!
//! `Model::apply` is a pure function of (model, frame, page time): the live view applies frames
//! as they arrive; a frozen view replays them from the nearest checkpoint. What views draw is
//! kept in `Part`s (nodes, messages, timeline, charts): a view gets the part it draws as a prop
//! and re-renders exactly when that part changed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use shared::event::{Alarm, Event, LogMirror, Observed};
use shared::lesson::LessonStatus;
use shared::protocol::{
    ClusterStatus, FaultSettings, NodeAddress, NodeView, ProcessState, ProxyFrame, RequestStats, TimeStatus,
};
use shared::raft::{Bug, Index, NodeId, PeerProgress, Role, Term};

use super::flights::{Flights, Sent};
use super::part::Part;

/// Events kept for the timeline.
const TIMELINE_LEN: usize = 1_500;
/// Points kept per chart.
const CHART_POINTS: usize = 120;

/// An election timer as drawn: it fires at page time `deadline` and lasts `span` in all; while
/// the server's clock stands still it keeps the fraction `frozen` left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timer {
    pub deadline: f64,
    pub span: f64,
    pub frozen: Option<f64>,
}

impl Timer {
    /// The fraction of the timeout left at page time `t`.
    pub fn left(&self, t: f64) -> f64 {
        self.frozen.unwrap_or_else(|| (self.deadline - t) / self.span.max(1.0)).clamp(0.0, 1.0)
    }
}

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
    pub timer: Option<Timer>,
    /// This server's clock stands still (time stopped).
    pub clock_stopped: bool,
    /// On a (pre-)candidate: the answers so far, its own included, and the yeses it needs.
    pub votes: Vec<(NodeId, bool)>,
    pub votes_needed: u32,
    pub progress: Vec<PeerProgress>,
    pub kv: Part<Vec<(String, String)>>,
    pub kv_truncated: bool,
    pub faults: FaultSettings,
    pub rss_bytes: Option<u64>,
    pub log: Part<LogMirror>,
    /// A hosted node's process (`--server-cmd`): its command, and what it got wrong.
    pub hosted: Option<shared::protocol::HostedStatus>,
}

impl NodeModel {
    pub fn votes_granted(&self) -> usize {
        self.votes.iter().filter(|(_, granted)| *granted).count()
    }

    fn moving(&self) -> bool {
        !self.clock_stopped && self.process != Some(ProcessState::Paused)
    }

    /// What a status says of this server; `t` is the page time and `scale` the time scale.
    fn take_status(&mut self, view: &NodeView, t: f64, scale: f64) {
        self.address = view.address.clone();
        self.process = Some(view.state);
        self.pid = view.pid;
        self.partitioned = view.partitioned;
        self.reachable = view.status.is_some();
        let Some(s) = &view.status else {
            self.role = None;
            self.timer = None;
            return;
        };
        let r = &s.replica.raft;
        self.role = Some(r.role);
        self.term = r.term;
        self.voted_for = r.voted_for;
        self.leader = r.leader;
        self.commit = r.commit;
        self.applied = s.replica.applied;
        self.last_index = r.last_index;
        self.votes = r.votes.clone();
        self.votes_needed = r.votes_needed;
        self.progress = r.progress.clone();
        // Absent when unchanged since the last status: keep what is shown.
        if let Some(kv) = &s.kv {
            self.kv = Part::new(kv.clone());
        }
        self.kv_truncated = s.kv_truncated;
        self.faults = s.faults.clone();
        self.rss_bytes = s.rss_bytes;
        self.hosted = s.hosted.clone();
        self.clock_stopped = s.clock.stopped;
        self.timer = (r.role != Role::Leader).then(|| {
            let remaining = r.election_deadline.saturating_sub(s.now) as f64;
            let span = r.election_timeout as f64;
            Timer {
                deadline: t + remaining * scale,
                span: span * scale,
                frozen: s.clock.stopped.then(|| remaining / span.max(1.0)),
            }
        });
    }

    /// What an event of this server's says of it: role, votes, timer, log, commit.
    fn observe(&mut self, observed: &Observed, t: f64, scale: f64, quorum: u32) {
        match &observed.event {
            Event::RoleChanged { role, term, leader, .. } => {
                self.role = Some(*role);
                self.term = *term;
                self.leader = *leader;
                self.reachable = true;
                self.votes = match role {
                    Role::PreCandidate | Role::Candidate => vec![(self.id, true)],
                    _ => Vec::new(),
                };
                self.votes_needed = if self.votes.is_empty() { 0 } else { quorum };
                if *role == Role::Leader {
                    self.timer = None;
                }
            }
            Event::VoteCounted { voter, granted, needed, .. } => {
                if !self.votes.iter().any(|(v, _)| v == voter) {
                    self.votes.push((*voter, *granted));
                }
                self.votes_needed = *needed;
            }
            Event::ElectionTimerReset { deadline, timeout } if self.role != Some(Role::Leader) => {
                let remaining = deadline.saturating_sub(observed.at) as f64;
                let span = *timeout as f64;
                self.timer = Some(Timer {
                    deadline: t + remaining * scale,
                    span: span * scale,
                    frozen: self.clock_stopped.then(|| remaining / span.max(1.0)),
                });
            }
            Event::EntriesAppended { .. }
            | Event::LogTruncated { .. }
            | Event::SnapshotTaken { .. }
            | Event::SnapshotInstalled { .. } => {
                self.log.edit().apply(&observed.event);
                self.last_index = self.log.last_index();
            }
            Event::CommitAdvanced { to, .. } => self.commit = self.commit.max(*to),
            Event::Applied { index } => self.applied = self.applied.max(*index),
            _ => {}
        }
    }

    fn stop_clock(&mut self, t: f64) {
        self.clock_stopped = true;
        if let Some(timer) = self.timer.as_mut().filter(|tm| tm.frozen.is_none()) {
            timer.frozen = Some(timer.left(t));
        }
    }

    fn start_clock(&mut self, t: f64) {
        self.clock_stopped = false;
        if let Some(timer) = self.timer.as_mut() {
            if let Some(left) = timer.frozen.take() {
                timer.deadline = t + left * timer.span;
            }
        }
    }
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
pub struct Model {
    pub now: f64,
    pub nodes: Part<Nodes>,
    pub proxies: Vec<String>,
    pub leader: Option<NodeId>,
    pub term: Term,
    pub time_scale: f64,
    pub supervised: bool,
    /// The file the proxy records to, if any.
    pub recording: Option<String>,
    pub stats: RequestStats,
    /// Messages per second across the cluster, as the proxy counts them (all, not just drawn).
    pub messages_per_s: f64,
    pub time: TimeStatus,
    pub alarms: Vec<Alarm>,
    pub lesson: Option<LessonStatus>,
    pub bugs: Vec<Bug>,
    /// Whether the proxy takes writes from pages without the token.
    pub open_writes: bool,
    /// Who votes, and who is still catching up without a vote (a server joining).
    pub members: shared::protocol::Members,
    pub flights: Part<Flights>,
    /// When recent messages were sent (page time), for the rate.
    pub message_times: VecDeque<f64>,
    pub timeline: Part<VecDeque<TimelineItem>>,
    pub charts: Part<Charts>,
}

/// The servers as drawn, by id.
#[derive(Debug, Clone, Default)]
pub struct Nodes(BTreeMap<NodeId, NodeModel>);

impl Nodes {
    /// The leader as shown: the reachable node that says it leads, in the highest term.
    pub fn shown_leader(&self) -> Option<NodeId> {
        self.0
            .values()
            .filter(|n| n.role == Some(Role::Leader) && n.reachable)
            .max_by_key(|n| n.term)
            .map(|n| n.id)
    }

    /// The command the servers run, when they are a student's own node (`--server-cmd`).
    pub fn hosted_command(&self) -> Option<String> {
        self.0.values().find_map(|n| n.hosted.as_ref()).map(|h| h.command.clone())
    }

    /// Servers that still believe they lead an older term (cut off, not yet stepped down).
    pub fn deposed_leaders(&self) -> Vec<(NodeId, Term)> {
        let shown = self.shown_leader();
        self.0
            .values()
            .filter(|n| n.role == Some(Role::Leader) && n.reachable && Some(n.id) != shown)
            .map(|n| (n.id, n.term))
            .collect()
    }

    /// Whether messages from `from` to `to` are cut (a partition or a one-way block).
    pub fn blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.0.get(&from).is_some_and(|n| n.faults.blocked_to.contains(&to))
            || self.0.get(&to).is_some_and(|n| n.faults.blocked_from.contains(&from))
    }

    /// The sides of a partition: groups of servers that can talk both ways. One group when the
    /// network is whole.
    pub fn sides(&self) -> Vec<Vec<NodeId>> {
        let mut sides: Vec<Vec<NodeId>> = Vec::new();
        let mut placed = BTreeSet::new();
        for id in self.0.keys() {
            if !placed.insert(*id) {
                continue;
            }
            let mut side = vec![*id];
            let mut i = 0;
            while i < side.len() {
                let a = side[i];
                for b in self.0.keys() {
                    if !placed.contains(b) && !self.blocked(a, *b) && !self.blocked(*b, a) {
                        placed.insert(*b);
                        side.push(*b);
                    }
                }
                i += 1;
            }
            side.sort_unstable();
            sides.push(side);
        }
        sides
    }
}

impl std::ops::Deref for Nodes {
    type Target = BTreeMap<NodeId, NodeModel>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Nodes {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Model {
    pub fn node(&mut self, id: NodeId) -> &mut NodeModel {
        self.nodes.edit().entry(id).or_insert_with(|| NodeModel { id, ..NodeModel::default() })
    }

    pub fn apply(&mut self, frame: &ProxyFrame, t: f64) {
        self.now = self.now.max(t);
        match frame {
            ProxyFrame::Welcome { proxies, nodes, picture, .. } => {
                self.welcome(proxies, nodes);
                if let Some(picture) = picture {
                    self.status(&picture.cluster, t);
                    for (node, log) in &picture.logs {
                        self.node(*node).log = Part::new(log.clone());
                    }
                    for observed in &picture.recent {
                        self.remember(observed, t);
                    }
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
                n.log = Part::new(LogMirror {
                    snapshot_index: *snapshot_index,
                    snapshot_term: *snapshot_term,
                    skipped: *skipped,
                    entries: entries.clone(),
                });
            }
            ProxyFrame::Done { .. }
            | ProxyFrame::Registered { .. }
            | ProxyFrame::Error { .. }
            | ProxyFrame::AdminDone { .. } => {}
        }
        self.advance_to(t);
    }

    fn welcome(&mut self, proxies: &[String], nodes: &[NodeAddress]) {
        self.proxies = proxies.to_vec();
        for n in nodes {
            self.node(n.id).address = n.address.clone();
        }
    }

    fn status(&mut self, cluster: &ClusterStatus, t: f64) {
        let old_scale = self.time_scale;
        self.leader = cluster.leader;
        self.term = cluster.term;
        self.time_scale = cluster.time_scale;
        self.supervised = cluster.supervised;
        self.recording = cluster.recording.clone();
        self.stats = cluster.stats.clone();
        self.messages_per_s = cluster.messages_per_s;
        self.time = cluster.time.clone();
        self.alarms = cluster.alarms.clone();
        self.lesson = cluster.lesson.clone();
        self.bugs = cluster.bugs.clone();
        self.open_writes = cluster.open_writes;
        self.members = cluster.members.clone();
        // A server that left the cluster leaves the drawing.
        if !cluster.nodes.is_empty() {
            let listed = |id: &NodeId| cluster.nodes.iter().any(|v| v.id == *id);
            if !self.nodes.keys().all(listed) {
                self.nodes.edit().retain(|id, _| listed(id));
            }
        }
        if old_scale != cluster.time_scale {
            self.flights.edit().rescale(t, old_scale, cluster.time_scale);
        }
        let scale = cluster.time_scale.max(0.01);
        for view in &cluster.nodes {
            let n = self.node(view.id);
            let moving_before = n.moving();
            n.take_status(view, t, scale);
            let moving = n.moving();
            if moving != moving_before {
                self.flights.edit().sender_moving(t, view.id, moving);
            }
            let crashed = view.state == ProcessState::Crashed;
            if crashed && self.flights.list.iter().any(|f| f.from == view.id) {
                self.flights.edit().sender_crashed(view.id);
            }
        }
        self.held_by_servers(cluster, t);
        self.chart(cluster, t);
    }

    /// Draws the messages the servers say they hold, even those sent before this page opened.
    fn held_by_servers(&mut self, cluster: &ClusterStatus, t: f64) {
        if !cluster.time.stopped {
            return;
        }
        let held: Vec<(Sent, f64)> = cluster
            .time
            .messages
            .iter()
            .map(|m| {
                let sender_now = cluster
                    .nodes
                    .iter()
                    .find(|n| n.id == m.from)
                    .and_then(|n| n.status.as_ref())
                    .map_or(m.sent_at, |s| s.now);
                let span = m.due.saturating_sub(m.sent_at).max(1) as f64;
                let progress = sender_now.saturating_sub(m.sent_at) as f64 / span;
                let sent = Sent {
                    from: m.from,
                    id: m.id,
                    to: m.to,
                    term: m.term,
                    message: m.message,
                    delay: m.due.saturating_sub(m.sent_at),
                };
                (sent, progress)
            })
            .collect();
        let complete = cluster.time.held as usize <= cluster.time.messages.len();
        self.flights.edit().held_by_servers(t, &held, cluster.time_scale, complete);
    }

    fn chart(&mut self, cluster: &ClusterStatus, t: f64) {
        let leader_commit = cluster.leader.and_then(|l| self.nodes.get(&l)).map(|n| n.commit);
        let charts = self.charts.edit();
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
    }

    fn event(&mut self, observed: &Observed, t: f64) {
        let scale = self.time_scale.max(0.01);
        match &observed.event {
            Event::ClockStopped
            | Event::ClockStarted
            | Event::MessageSent { .. }
            | Event::MessageLost { .. }
            | Event::MessageStepped { .. } => self.traffic(observed, t),
            Event::RoleChanged { .. }
            | Event::VoteCounted { .. }
            | Event::ElectionTimerReset { .. }
            | Event::EntriesAppended { .. }
            | Event::LogTruncated { .. }
            | Event::SnapshotTaken { .. }
            | Event::SnapshotInstalled { .. }
            | Event::CommitAdvanced { .. }
            | Event::Applied { .. } => {
                let quorum = self.nodes.len() as u32 / 2 + 1;
                self.node(observed.node).observe(observed, t, scale, quorum);
            }
            Event::Alarm { alarm } if !self.alarms.contains(alarm) => self.alarms.push(alarm.clone()),
            _ => {}
        }
        self.remember(observed, t);
    }

    /// Messages on their way, and the clocks that move them.
    fn traffic(&mut self, observed: &Observed, t: f64) {
        let id = observed.node;
        let scale = self.time_scale.max(0.01);
        match &observed.event {
            Event::ClockStopped => {
                self.node(id).stop_clock(t);
                self.flights.edit().sender_moving(t, id, false);
            }
            Event::ClockStarted => {
                let n = self.node(id);
                n.start_clock(t);
                let moving = n.moving();
                self.flights.edit().sender_moving(t, id, moving);
            }
            Event::MessageSent { id: message_id, to, term, message, delay } => {
                self.message_times.push_back(t);
                while self.message_times.len() > 20_000
                    || self.message_times.front().is_some_and(|m| t - m > 1_000.0)
                {
                    self.message_times.pop_front();
                }
                let moving = self.nodes.get(&id).is_none_or(NodeModel::moving);
                let sent = Sent {
                    from: id,
                    id: *message_id,
                    to: *to,
                    term: *term,
                    message: *message,
                    delay: *delay,
                };
                self.flights.edit().sent(t, sent, scale, moving);
            }
            Event::MessageLost { from, id: message_id, reason, .. } => {
                self.flights.edit().lost(t, *from, *message_id, *reason);
            }
            Event::MessageStepped { id: message_id, travel_ms, .. } => {
                self.flights.edit().stepped(t, id, *message_id, *travel_ms);
            }
            _ => {}
        }
    }

    /// Adds the event to the timeline if it is worth a line there.
    fn remember(&mut self, observed: &Observed, t: f64) {
        let line = !matches!(
            observed.event,
            Event::ElectionTimerReset { .. }
                | Event::MessageSent { .. }
                | Event::MessageLost { .. }
                | Event::MessageStepped { .. }
                | Event::Applied { .. }
        );
        if line {
            let timeline = self.timeline.edit();
            timeline.push_front(TimelineItem { t, node: observed.node, event: observed.event.clone() });
            timeline.truncate(TIMELINE_LEN);
        }
    }

    /// Messages sent per second, over the last second.
    pub fn message_rate(&self) -> usize {
        // The times are in order: a binary search, not a scan, as this runs every frame.
        let older = self.message_times.partition_point(|t| self.now - *t > 1_000.0);
        self.message_times.len() - older
    }

    /// Called every animation frame: drops messages that arrived or faded.
    pub fn advance_to(&mut self, now: f64) {
        self.now = self.now.max(now);
        let nodes = &self.nodes;
        let paused = |node: NodeId| nodes.get(&node).is_some_and(|n| n.process == Some(ProcessState::Paused));
        if self.flights.any_expired(now, paused) {
            self.flights.edit().expire(now, paused);
        }
    }
}

fn push_point(series: &mut VecDeque<f64>, value: f64) {
    series.push_back(if value.is_finite() { value } else { 0.0 });
    while series.len() > CHART_POINTS {
        series.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::event::{MessageSummary, RoleReason};

    fn observed(node: NodeId, event: Event) -> ProxyFrame {
        ProxyFrame::Events { events: vec![Observed { node, at: 0, event }] }
    }

    fn three_nodes() -> Model {
        let mut m = Model { time_scale: 10.0, ..Model::default() };
        for id in 1..=3 {
            m.node(id).reachable = true;
        }
        m
    }

    #[test]
    fn a_candidate_collects_its_votes_one_by_one() {
        let mut m = three_nodes();
        let became = Event::RoleChanged {
            role: Role::Candidate,
            term: 2,
            leader: None,
            reason: RoleReason::PreVoteWon,
        };
        m.apply(&observed(1, became), 0.0);
        assert_eq!((m.nodes[&1].votes_granted(), m.nodes[&1].votes_needed), (1, 2));
        let counted = |voter, granted| Event::VoteCounted {
            voter,
            term: 2,
            pre_vote: false,
            granted,
            granted_total: 1 + granted as u32,
            needed: 2,
        };
        m.apply(&observed(1, counted(3, false)), 10.0);
        assert_eq!(m.nodes[&1].votes_granted(), 1);
        m.apply(&observed(1, counted(2, true)), 20.0);
        assert_eq!(m.nodes[&1].votes_granted(), 2);
        let won = Event::RoleChanged {
            role: Role::Leader,
            term: 2,
            leader: Some(1),
            reason: RoleReason::ElectionWon { votes: 2 },
        };
        m.apply(&observed(1, won), 30.0);
        assert!(m.nodes[&1].votes.is_empty());
    }

    #[test]
    fn a_stopped_clock_freezes_the_timer_ring_and_holds_the_servers_messages() {
        let mut m = three_nodes();
        m.apply(&observed(2, Event::ElectionTimerReset { deadline: 200, timeout: 200 }), 0.0);
        let message = MessageSummary::TimeoutNow;
        m.apply(&observed(2, Event::MessageSent { id: 5, to: 1, term: 1, message, delay: 20 }), 900.0);
        m.apply(&observed(2, Event::ClockStopped), 1_000.0);
        let left = m.nodes[&2].timer.unwrap().left(1_000.0);
        assert!((left - 0.5).abs() < 1e-9, "half of the 2 s timer left at ×10");
        assert_eq!(m.nodes[&2].timer.unwrap().left(60_000.0), left, "the ring stands still");
        assert_eq!(m.flights.held_count(), 1);
        m.advance_to(60_000.0);
        assert_eq!(m.flights.list.len(), 1, "a held message is not delivered");
        m.apply(&observed(2, Event::ClockStarted), 60_000.0);
        assert!((m.nodes[&2].timer.unwrap().left(60_500.0) - 0.25).abs() < 1e-9);
        assert_eq!(m.flights.held_count(), 0);
    }

    #[test]
    fn the_sides_of_a_partition_and_one_way_blocks() {
        let mut m = three_nodes();
        assert_eq!(m.nodes.sides(), vec![vec![1, 2, 3]]);
        m.node(3).faults.blocked_to = vec![1, 2];
        m.node(3).faults.blocked_from = vec![1, 2];
        m.node(1).faults.blocked_to = vec![3];
        m.node(2).faults.blocked_to = vec![3];
        assert_eq!(m.nodes.sides(), vec![vec![1, 2], vec![3]]);
        let mut m = three_nodes();
        m.node(1).faults.blocked_to = vec![2];
        assert!(m.nodes.blocked(1, 2) && !m.nodes.blocked(2, 1));
    }

    #[test]
    fn a_late_page_sees_the_recent_events_in_its_timeline() {
        let mut m = three_nodes();
        let picture = shared::protocol::Picture {
            cluster: ClusterStatus {
                nodes: Vec::new(),
                leader: None,
                term: 1,
                time_scale: 1.0,
                proxies: Vec::new(),
                supervised: true,
                time: TimeStatus::default(),
                alarms: Vec::new(),
                lesson: None,
                bugs: Vec::new(),
                open_writes: false,
                recording: None,
                members: Default::default(),
                stats: RequestStats::default(),
                messages_per_s: 0.0,
            },
            logs: Vec::new(),
            recent: vec![Observed {
                node: 2,
                at: 0,
                event: Event::RoleChanged {
                    role: Role::Leader,
                    term: 1,
                    leader: Some(2),
                    reason: RoleReason::ElectionWon { votes: 2 },
                },
            }],
        };
        let welcome = ProxyFrame::Welcome {
            version: 1,
            admin: false,
            proxies: Vec::new(),
            nodes: Vec::new(),
            picture: Some(Box::new(picture)),
        };
        m.apply(&welcome, 0.0);
        assert_eq!(m.timeline.len(), 1);
    }
}
